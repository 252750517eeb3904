//! The "2.0" envelope: `{"oslo.version": "2.0", "oslo.message": "<inner JSON as a string>"}`.

use serde::Serialize;
use serde_json::{Map, Value};

use super::WireError;
use crate::version::Version;

/// The envelope version amqp-rpc sends and accepts.
pub const ENVELOPE_VERSION: &str = "2.0";

const VERSION_KEY: &str = "oslo.version";
const MESSAGE_KEY: &str = "oslo.message";

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "oslo.version")]
    version: &'a str,
    #[serde(rename = "oslo.message")]
    message: &'a str,
}

/// Wraps an encoded inner message (JSON text) in the 2.0 envelope, giving the AMQP body.
///
/// ```
/// let body = amqp_rpc::wire::seal(r#"{"method":"ping"}"#);
/// assert_eq!(
///     std::str::from_utf8(&body).unwrap(),
///     r#"{"oslo.version":"2.0","oslo.message":"{\"method\":\"ping\"}"}"#
/// );
/// ```
pub fn seal(inner_json: &str) -> Vec<u8> {
    let envelope = Envelope {
        version: ENVELOPE_VERSION,
        message: inner_json,
    };
    // Serializing two strings into a Vec cannot fail.
    serde_json::to_vec(&envelope).unwrap_or_default()
}

/// Decodes an AMQP body into the inner message object, as oslo's `deserialize_msg` does: an
/// object holding both `oslo.version` and `oslo.message` is an envelope (its version must be
/// compatible with 2.0); any other object is an un-enveloped message, used as it is.
///
/// ```
/// use amqp_rpc::wire::open;
/// let inner = open(br#"{"oslo.version": "2.0", "oslo.message": "{\"method\": \"ping\"}"}"#)?;
/// assert_eq!(inner["method"], "ping");
/// let bare = open(br#"{"method": "ping"}"#)?;
/// assert_eq!(bare["method"], "ping");
/// assert!(open(br#"{"oslo.version": "2.1", "oslo.message": "{}"}"#).is_err());
/// # Ok::<(), amqp_rpc::wire::WireError>(())
/// ```
pub fn open(body: &[u8]) -> Result<Map<String, Value>, WireError> {
    let mut outer = as_object(serde_json::from_slice(body).map_err(WireError::Json)?)?;
    if !(outer.contains_key(VERSION_KEY) && outer.contains_key(MESSAGE_KEY)) {
        return Ok(outer);
    }
    let version = &outer[VERSION_KEY];
    let compatible = version
        .as_str()
        .and_then(|v| v.parse::<Version>().ok())
        .is_some_and(|v| Version::new(2, 0).is_compatible(&v));
    if !compatible {
        return Err(WireError::UnsupportedEnvelope {
            version: version.to_string(),
        });
    }
    match outer.remove(MESSAGE_KEY) {
        Some(Value::String(inner)) => {
            as_object(serde_json::from_str(&inner).map_err(WireError::Json)?)
        }
        _ => Err(WireError::BadField {
            field: MESSAGE_KEY,
            expected: "string",
        }),
    }
}

fn as_object(value: Value) -> Result<Map<String, Value>, WireError> {
    match value {
        Value::Object(map) => Ok(map),
        _ => Err(WireError::NotAnObject),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn seal_then_open_round_trips() {
        let inner = json!({"method": "add", "args": {"a": "ü \"q\" \n"}}).to_string();
        let body = seal(&inner);
        let outer: Value = serde_json::from_slice(&body).unwrap_or_default();
        assert_eq!(outer["oslo.version"], "2.0");
        assert_eq!(outer["oslo.message"], Value::String(inner.clone()));
        let opened = open(&body).map(Value::Object).ok();
        assert_eq!(opened, serde_json::from_str(&inner).ok());
    }

    #[test]
    fn envelope_versions_other_than_2_0_are_refused() {
        for version in [
            r#""2.1""#,
            r#""3.0""#,
            r#""1.0""#,
            r#""2.0.1""#,
            "2.0",
            "null",
            r#""x""#,
        ] {
            let body = format!(r#"{{"oslo.version": {version}, "oslo.message": "{{}}"}}"#);
            assert!(
                matches!(
                    open(body.as_bytes()),
                    Err(WireError::UnsupportedEnvelope { .. })
                ),
                "{version} accepted"
            );
        }
        assert!(open(br#"{"oslo.version": "2.0.0", "oslo.message": "{}"}"#).is_ok());
    }

    #[test]
    fn object_missing_either_envelope_key_is_unenveloped() {
        let map = open(br#"{"oslo.version": "9.9", "method": "m"}"#).unwrap_or_default();
        assert_eq!(map["method"], "m");
        assert_eq!(map["oslo.version"], "9.9");
    }

    #[test]
    fn non_objects_and_bad_json_are_errors() {
        assert!(matches!(open(b"[1]"), Err(WireError::NotAnObject)));
        assert!(matches!(open(b"{"), Err(WireError::Json(_))));
        assert!(matches!(
            open(br#"{"oslo.version": "2.0", "oslo.message": "[1]"}"#),
            Err(WireError::NotAnObject)
        ));
        assert!(matches!(
            open(br#"{"oslo.version": "2.0", "oslo.message": {"a": 1}}"#),
            Err(WireError::BadField { .. })
        ));
    }
}
