//! A method's keyword arguments from the command line, in httpie's convention: `key=value` is
//! a string, `key:=json` a JSON value; or a whole JSON object from `--args JSON`, `--args @FILE`
//! or `--args -` (standard input), which the pairs then extend or override.

use std::io::Read;

use serde_json::{Map, Value};

/// A bad argument: the command line's fault (exit status 64).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ArgumentError {
    /// Neither `key=value` nor `key:=json`.
    #[error("argument {0:?} is neither key=value (a string) nor key:=json (a JSON value)")]
    Malformed(String),
    /// `key:=` with text that is not JSON.
    #[error("argument {key:?}: {text:?} is not JSON: {source}")]
    NotJson {
        /// The key.
        key: String,
        /// The text after `:=`.
        text: String,
        /// serde_json's reason.
        source: serde_json::Error,
    },
    /// `--args` that is not a JSON object.
    #[error("--args {from}: {reason}")]
    Args {
        /// Where the JSON came from (the text, a file, or standard input).
        from: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The keyword arguments of `pairs` (`key=value`, `key:=json`) on top of `args` (`--args`).
pub(crate) fn keyword_arguments(
    args: Option<&str>,
    pairs: &[String],
) -> Result<Map<String, Value>, ArgumentError> {
    let mut kwargs = match args {
        Some(source) => object_from(source)?,
        None => Map::new(),
    };
    for pair in pairs {
        let (key, value) = pair_value(pair)?;
        kwargs.insert(key, value);
    }
    Ok(kwargs)
}

/// One `key=value` or `key:=json`. The first `=` splits, so values may hold `=`; a key ending
/// in `:` before it makes the value JSON.
pub(crate) fn pair_value(pair: &str) -> Result<(String, Value), ArgumentError> {
    let Some((key, text)) = pair.split_once('=') else {
        return Err(ArgumentError::Malformed(pair.to_owned()));
    };
    match key.strip_suffix(':') {
        Some(key) if !key.is_empty() => {
            let value = serde_json::from_str(text).map_err(|source| ArgumentError::NotJson {
                key: key.to_owned(),
                text: text.to_owned(),
                source,
            })?;
            Ok((key.to_owned(), value))
        }
        None if !key.is_empty() => Ok((key.to_owned(), Value::String(text.to_owned()))),
        _ => Err(ArgumentError::Malformed(pair.to_owned())),
    }
}

/// The JSON object of `--args SOURCE`: the text itself, `@FILE`, or `-` for standard input.
fn object_from(source: &str) -> Result<Map<String, Value>, ArgumentError> {
    let failed = |from: &str, reason: String| ArgumentError::Args {
        from: from.to_owned(),
        reason,
    };
    let (from, text) = if source == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .map_err(|e| failed("- (standard input)", e.to_string()))?;
        ("- (standard input)".to_owned(), text)
    } else if let Some(path) = source.strip_prefix('@') {
        let text = std::fs::read_to_string(path).map_err(|e| failed(source, e.to_string()))?;
        (source.to_owned(), text)
    } else {
        ("JSON".to_owned(), source.to_owned())
    };
    object_of(&from, &text)
}

/// `text` as a JSON object (`null` or blank is an empty one).
pub(crate) fn object_of(from: &str, text: &str) -> Result<Map<String, Value>, ArgumentError> {
    let failed = |reason: String| ArgumentError::Args {
        from: from.to_owned(),
        reason,
    };
    if text.trim().is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(Value::Null) => Ok(Map::new()),
        Ok(other) => Err(failed(format!(
            "keyword arguments must be a JSON object, not {}",
            kind(&other)
        ))),
        Err(e) => Err(failed(format!("not JSON: {e}"))),
    }
}

/// A JSON value's kind, for messages.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kwargs(args: Option<&str>, pairs: &[&str]) -> Result<Value, String> {
        let pairs: Vec<String> = pairs.iter().map(|p| (*p).to_owned()).collect();
        keyword_arguments(args, &pairs)
            .map(Value::Object)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn pairs_are_strings_or_json() {
        assert_eq!(
            kwargs(
                None,
                &[
                    "name=vm-1",
                    "count:=3",
                    "tags:=[\"a\"]",
                    "eq=a=b",
                    "empty=",
                    "url=http://x:1/?q=2",
                    "n:=null"
                ]
            ),
            Ok(
                json!({"name": "vm-1", "count": 3, "tags": ["a"], "eq": "a=b", "empty": "",
                      "url": "http://x:1/?q=2", "n": null})
            )
        );
    }

    #[test]
    fn args_json_is_extended_by_pairs() {
        assert_eq!(
            kwargs(Some(r#"{"a": 1, "b": {"c": true}}"#), &["a:=2", "d=x"]),
            Ok(json!({"a": 2, "b": {"c": true}, "d": "x"}))
        );
        assert_eq!(kwargs(Some("null"), &[]), Ok(json!({})));
        assert_eq!(kwargs(Some("  "), &[]), Ok(json!({})));
    }

    #[test]
    fn args_from_a_file() {
        let path =
            std::env::temp_dir().join(format!("amqp-rpc-cli-args-{}.json", std::process::id()));
        std::fs::write(&path, r#"{"x": [1, 2]}"#).unwrap_or_else(|e| panic!("{e}"));
        let source = format!("@{}", path.display());
        assert_eq!(kwargs(Some(&source), &[]), Ok(json!({"x": [1, 2]})));
        let _ = std::fs::remove_file(&path);
        let missing = kwargs(Some("@/nonexistent/args.json"), &[]);
        assert!(
            missing
                .as_ref()
                .is_err_and(|e| e.starts_with("--args @/nonexistent/args.json: ")),
            "{missing:?}"
        );
    }

    #[test]
    fn bad_arguments_are_named() {
        assert_eq!(
            kwargs(None, &["novalue"]),
            Err(r#"argument "novalue" is neither key=value (a string) nor key:=json (a JSON value)"#.to_owned())
        );
        assert!(kwargs(None, &["=x"]).is_err());
        assert!(kwargs(None, &[":=1"]).is_err());
        let bad = kwargs(None, &["n:=nope"]).err().unwrap_or_default();
        assert!(
            bad.starts_with(r#"argument "n": "nope" is not JSON: "#),
            "{bad}"
        );
        assert_eq!(
            kwargs(Some("[1]"), &[]),
            Err("--args JSON: keyword arguments must be a JSON object, not an array".to_owned())
        );
        assert!(kwargs(Some("{"), &[]).is_err_and(|e| e.starts_with("--args JSON: not JSON: ")));
    }
}
