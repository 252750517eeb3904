//! The failure JSON of a reply (oslo's `serialize_remote_exception`), carried as a JSON
//! *string* in the reply's `failure` field.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::WireError;
use super::python::{Mode, Py};
use crate::error::{RemoteError, RemoteParts};

#[derive(Serialize, Deserialize)]
struct FailureJson {
    class: String,
    module: String,
    message: String,
    #[serde(default)]
    tb: Vec<String>,
    #[serde(default)]
    args: Vec<Value>,
    #[serde(default)]
    kwargs: Map<String, Value>,
}

const REMOTE_SUFFIX: &str = "_Remote";

impl RemoteError {
    /// The failure string of a reply. As oslo does, a failure re-raised from another RPC
    /// (class and module both ending in `_Remote`) loses the suffix.
    pub(crate) fn to_failure_string(&self) -> String {
        let strip =
            self.inner.class.ends_with(REMOTE_SUFFIX) && self.inner.module.ends_with(REMOTE_SUFFIX);
        let name = |s: &str| match strip {
            true => s[..s.len() - REMOTE_SUFFIX.len()].to_owned(),
            false => s.to_owned(),
        };
        let json = FailureJson {
            class: name(&self.inner.class),
            module: name(&self.inner.module),
            message: self.inner.message.clone(),
            tb: self.inner.traceback.clone(),
            args: self.inner.args.clone(),
            kwargs: self.inner.kwargs.clone(),
        };
        // Strings, arrays and maps of JSON values always serialize.
        serde_json::to_string(&Py(&json, Mode::Text)).unwrap_or_default()
    }

    /// Parses a reply's failure: normally a JSON string holding the failure object; an object
    /// in place of the string is tolerated. Python 2's module `exceptions` becomes `builtins`.
    pub(crate) fn from_failure(failure: Value) -> Result<RemoteError, WireError> {
        let bad = |_| WireError::BadField {
            field: "failure",
            expected: "serialized exception",
        };
        let json: FailureJson = match failure {
            // A Python exception's arguments may hold NaN or the like (see `super::python`).
            Value::String(s) => serde_json::from_str(&s)
                .or_else(|e| match super::python::normalize(s.as_bytes()) {
                    Some(text) => serde_json::from_slice(&text),
                    None => Err(e),
                })
                .map_err(bad)?,
            other => serde_json::from_value(other).map_err(bad)?,
        };
        let module = match json.module.as_str() {
            "exceptions" => "builtins".to_owned(),
            _ => json.module,
        };
        Ok(RemoteError {
            inner: Box::new(RemoteParts {
                class: json.class,
                module,
                message: json.message,
                traceback: json.tb,
                args: json.args,
                kwargs: json.kwargs,
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The failure of the captured reply in spec §1.5.
    const SPEC_FAILURE: &str = r#"{"class": "KeyError", "module": "builtins", "message": "'missing'", "tb": ["Traceback (most recent call last):\n", "  File \"x.py\", line 1, in f\n", "KeyError: 'missing'\n"], "args": ["missing"], "kwargs": {}}"#;

    #[test]
    fn decodes_the_spec_failure_and_reencodes_it_identically() {
        let remote = RemoteError::from_failure(Value::String(SPEC_FAILURE.into()))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(remote.class(), "KeyError");
        assert_eq!(remote.module(), "builtins");
        assert_eq!(remote.message(), "'missing'");
        assert_eq!(remote.traceback().len(), 3);
        assert_eq!(remote.args(), &[json!("missing")]);
        let again: Value = serde_json::from_str(&remote.to_failure_string()).unwrap_or_default();
        assert_eq!(
            again,
            serde_json::from_str::<Value>(SPEC_FAILURE).unwrap_or_default()
        );
    }

    #[test]
    fn remote_suffix_is_stripped_when_class_and_module_have_it() {
        let re_raised = RemoteError::new("Boom_Remote", "app.errors_Remote", "b");
        let json: Value = serde_json::from_str(&re_raised.to_failure_string()).unwrap_or_default();
        assert_eq!(
            (json["class"].as_str(), json["module"].as_str()),
            (Some("Boom"), Some("app.errors"))
        );
        let half = RemoteError::new("Boom_Remote", "app.errors", "b");
        let json: Value = serde_json::from_str(&half.to_failure_string()).unwrap_or_default();
        assert_eq!(json["class"], "Boom_Remote");
    }

    #[test]
    fn python2_exceptions_module_is_builtins_and_missing_lists_default() {
        let remote = RemoteError::from_failure(json!(
            r#"{"class": "ValueError", "module": "exceptions", "message": "m"}"#
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(remote.module(), "builtins");
        assert!(remote.traceback().is_empty() && remote.args().is_empty());
    }

    #[test]
    fn a_python_failure_with_python_values_in_its_arguments_decodes() {
        let remote = RemoteError::from_failure(json!(
            r#"{"class": "ValueError", "module": "builtins", "message": "m", "args": [NaN, "\ud800"], "kwargs": {"n": 18446744073709551616}}"#
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(remote.class(), "ValueError");
        // Written back as Python wrote them, when the failure is relayed.
        let again = remote.to_failure_string();
        assert!(again.contains(r#""args":[NaN,"\ud800"]"#), "{again}");
        assert!(again.contains(r#""n":18446744073709551616"#), "{again}");
    }

    #[test]
    fn garbage_failure_is_an_error() {
        assert!(RemoteError::from_failure(json!("not json")).is_err());
        assert!(RemoteError::from_failure(json!(42)).is_err());
        assert!(RemoteError::from_failure(json!(r#"{"class": "X"}"#)).is_err());
    }
}
