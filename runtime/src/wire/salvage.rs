//! What can be read of a message that cannot be decoded (not JSON, a bad envelope, too large):
//! where the answer to it goes, so that its caller gets a failure at once rather than a
//! timeout.

use serde_json::Value;

use super::ReplyTo;

/// The longest `_msg_id` or `_reply_q` taken from a message that does not decode: AMQP's
/// limit on a queue name.
const LONGEST: usize = 255;

/// The `_msg_id` and `_reply_q` of a request that cannot be decoded, if both can be found:
/// from its JSON when it is JSON (an envelope whose version is not 2.0, an inner message that
/// is not an object), else by looking for the two keys in its text, at the envelope's
/// escaping or without it. Values taken from the text are queue-name characters only
/// (letters, digits, `_`, `-`, `.`, `:`).
/// With `parse` false (a body too large to parse), only the text is searched.
pub(crate) fn reply_to(body: &[u8], parse: bool) -> Option<ReplyTo> {
    parse.then(|| from_json(body)).flatten().or_else(|| {
        [0, 1].into_iter().find_map(|level| {
            Some(ReplyTo {
                msg_id: find_string(body, b"_msg_id", level)?,
                reply_q: find_string(body, b"_reply_q", level)?,
            })
        })
    })
}

/// The `_msg_id` of a reply that cannot be decoded, found as [`reply_to`] finds a request's.
pub(crate) fn msg_id(body: &[u8], parse: bool) -> Option<String> {
    let fields = parse.then(|| json_fields(body)).flatten();
    if let Some(Value::String(id)) = fields.as_ref().and_then(|f| f.get("_msg_id")) {
        return Some(id.clone());
    }
    [0, 1]
        .into_iter()
        .find_map(|level| find_string(body, b"_msg_id", level))
}

fn from_json(body: &[u8]) -> Option<ReplyTo> {
    let fields = json_fields(body)?;
    match (fields.get("_msg_id")?, fields.get("_reply_q")?) {
        (Value::String(msg_id), Value::String(reply_q)) => Some(ReplyTo {
            msg_id: msg_id.clone(),
            reply_q: reply_q.clone(),
        }),
        _ => None,
    }
}

/// The message's object when the body is JSON: the envelope's `oslo.message` if it holds an
/// object, else the body's own.
fn json_fields(body: &[u8]) -> Option<serde_json::Map<String, Value>> {
    let text = super::python::normalize(body);
    let outer: Value = serde_json::from_slice(text.as_deref().unwrap_or(body)).ok()?;
    let Value::Object(outer) = outer else {
        return None;
    };
    let inner = match outer.get("oslo.message") {
        Some(Value::String(inner)) => {
            let text = super::python::normalize(inner.as_bytes());
            serde_json::from_slice::<Value>(text.as_deref().unwrap_or(inner.as_bytes())).ok()
        }
        _ => None,
    };
    match inner {
        Some(Value::Object(inner)) => Some(inner),
        _ => Some(outer),
    }
}

/// The value of string key `key` in `body` at escaping `level` (0: bare JSON; 1: inside the
/// envelope's string, quotes written `\"`), if a value of queue-name characters follows it.
fn find_string(body: &[u8], key: &[u8], level: usize) -> Option<String> {
    let quote: &[u8] = if level == 0 { b"\"" } else { b"\\\"" };
    let pattern = [quote, key, quote].concat();
    let mut from = 0;
    while let Some(found) = find(body.get(from..)?, &pattern) {
        let at = from + found;
        from = at + pattern.len();
        // The key's opening quote must be preceded by exactly `level` backslashes: with more,
        // it is text inside a string.
        let backslashes = body[..at + quote.len() - 1]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if backslashes != level {
            continue;
        }
        let rest = skip_spaces(body.get(from..)?).strip_prefix(b":")?;
        let Some(rest) = skip_spaces(rest).strip_prefix(quote) else {
            continue;
        };
        let len = rest
            .iter()
            .take_while(|&&b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b':'))
            .count();
        if len == 0 || len > LONGEST || !rest[len..].starts_with(quote) {
            continue;
        }
        return String::from_utf8(rest[..len].to_vec()).ok();
    }
    None
}

fn skip_spaces(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .unwrap_or(bytes.len());
    &bytes[start..]
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn to(body: &str) -> Option<(String, String)> {
        reply_to(body.as_bytes(), true).map(|r| (r.msg_id, r.reply_q))
    }

    fn pair(m: &str, q: &str) -> Option<(String, String)> {
        Some((m.to_owned(), q.to_owned()))
    }

    #[test]
    fn finds_where_the_reply_goes_in_messages_that_do_not_decode() {
        // An envelope of another version: JSON, read as such.
        assert_eq!(
            to(
                r#"{"oslo.version": "3.0", "oslo.message": "{\"_msg_id\": \"ab\", \"_reply_q\": \"reply_1\"}"}"#
            ),
            pair("ab", "reply_1")
        );
        // A truncated envelope: found in the text at the envelope's escaping.
        assert_eq!(
            to(
                r#"{"oslo.version":"2.0","oslo.message":"{\"method\":\"m\",\"args\":{\"x\":1},\"_msg_id\":\"cd\",\"_reply_q\":\"reply_2\",\"x\":"#
            ),
            pair("cd", "reply_2")
        );
        // A bare message with invalid UTF-8 in it.
        let mut body =
            br#"{"method": "m", "_msg_id": "ef", "_reply_q": "reply_3", "s": ""#.to_vec();
        body.extend_from_slice(b"\xff\"}");
        let found = reply_to(&body, false).map(|r| (r.msg_id, r.reply_q));
        assert_eq!(found, pair("ef", "reply_3"));
    }

    #[test]
    fn keys_inside_string_values_and_odd_values_are_not_taken() {
        // The keys appear only inside a string argument (one escaping level deeper).
        let body = r#"{"oslo.version":"2.0","oslo.message":"{\"args\":{\"s\":\"\\\"_msg_id\\\":\\\"x\\\",\\\"_reply_q\\\":\\\"q\\\"\"},"#;
        assert_eq!(to(body), None);
        assert_eq!(to(r#"{"_msg_id": "a b", "_reply_q": "q", "#), None);
        assert_eq!(to(r#"{"_msg_id": 5, "_reply_q": "q", "#), None);
        assert_eq!(to(r#"{"_msg_id": "a", "#), None);
        let long = "x".repeat(LONGEST + 1);
        assert_eq!(
            to(&format!(r#"{{"_msg_id": "{long}", "_reply_q": "q", "#)),
            None
        );
        assert_eq!(to(""), None);
    }

    #[test]
    fn a_reply_id_is_found_in_json_and_in_text() {
        assert_eq!(
            msg_id(br#"{"_msg_id": "ab", "failure": 5}"#, true).as_deref(),
            Some("ab")
        );
        assert_eq!(
            msg_id(
                br#"{"oslo.version":"2.0","oslo.message":"{\"result\": [1, \"_msg_id\":\"cd\"}"}"#,
                true
            )
            .as_deref(),
            Some("cd")
        );
        assert_eq!(msg_id(b"garbage", true), None);
    }
}
