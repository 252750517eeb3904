//! RPC replies (spec §1.5): `result`, `failure` (always present), `ending`, `_msg_id`,
//! `_unique_id`. Heartbeats are replies with `result: null, ending: false`.

use serde::Serialize;
use serde_json::{Map, Value};

use super::WireError;
use crate::error::RemoteError;

/// A reply as sent.
#[derive(Serialize)]
pub(crate) struct OutgoingReply<'a> {
    /// `null` for failures and heartbeats.
    pub(crate) result: &'a Value,
    /// Always present: Python callers fail on a reply without it.
    pub(crate) failure: Option<String>,
    pub(crate) ending: bool,
    #[serde(rename = "_msg_id")]
    pub(crate) msg_id: &'a str,
    #[serde(rename = "_unique_id")]
    pub(crate) unique_id: &'a str,
}

impl OutgoingReply<'_> {
    /// The inner JSON text (to be sealed in the envelope).
    pub(crate) fn to_json(&self) -> String {
        // Strings, booleans and raw JSON always serialize.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// A reply as received.
#[derive(Debug, PartialEq)]
pub(crate) struct IncomingReply {
    pub(crate) msg_id: String,
    /// `Null` when absent.
    pub(crate) result: Value,
    pub(crate) failure: Option<RemoteError>,
    /// `false` when absent (old two-message replies end with a separate `ending: true`).
    pub(crate) ending: bool,
}

impl IncomingReply {
    pub(crate) fn from_message(mut message: Map<String, Value>) -> Result<Self, WireError> {
        let msg_id = match message.remove("_msg_id") {
            Some(Value::String(id)) => id,
            _ => {
                return Err(WireError::BadField {
                    field: "_msg_id",
                    expected: "string",
                });
            }
        };
        let failure = match message.remove("failure") {
            None | Some(Value::Null) => None,
            Some(failure) => Some(RemoteError::from_failure(failure)?),
        };
        Ok(IncomingReply {
            msg_id,
            result: message.remove("result").unwrap_or(Value::Null),
            failure,
            ending: message
                .remove("ending")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
        })
    }

    /// A keep-alive from the server's call monitor, not an answer.
    pub(crate) fn is_heartbeat(&self) -> bool {
        !self.ending && self.result.is_null() && self.failure.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{open, seal};
    use serde_json::json;

    fn decode(text: &str) -> IncomingReply {
        let map = open(text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        IncomingReply::from_message(map).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn decodes_the_spec_replies() {
        let ok = decode(
            r#"{"result": {"slept": 3}, "failure": null, "ending": true, "_msg_id": "ede0", "_unique_id": "8893"}"#,
        );
        assert_eq!(
            (ok.msg_id.as_str(), &ok.result, ok.ending),
            ("ede0", &json!({"slept": 3}), true)
        );
        assert!(ok.failure.is_none() && !ok.is_heartbeat());

        let beat = decode(
            r#"{"result": null, "failure": null, "ending": false, "_msg_id": "ede0", "_unique_id": "c288"}"#,
        );
        assert!(beat.is_heartbeat());

        let failed = decode(
            r#"{"result": null, "failure": "{\"class\": \"KeyError\", \"module\": \"builtins\", \"message\": \"'missing'\", \"tb\": [\"Traceback (most recent call last):\\n\"], \"args\": [\"missing\"], \"kwargs\": {}}", "ending": true, "_msg_id": "61e9", "_unique_id": "f3a8"}"#,
        );
        let failure = failed.failure.unwrap_or_else(|| panic!("a failure"));
        assert_eq!(
            (failure.class(), failure.message()),
            ("KeyError", "'missing'")
        );
    }

    #[test]
    fn encodes_a_reply_with_failure_always_present_inside_the_envelope() {
        let result = json!({"slept": 3});
        let reply = OutgoingReply {
            result: &result,
            failure: None,
            ending: true,
            msg_id: "ede0",
            unique_id: "8893",
        };
        let inner = open(&seal(&reply.to_json()))
            .map(Value::Object)
            .unwrap_or_default();
        assert_eq!(
            inner,
            json!({"result": {"slept": 3}, "failure": null, "ending": true, "_msg_id": "ede0", "_unique_id": "8893"})
        );
        let failed = OutgoingReply {
            result: &Value::Null,
            failure: Some(RemoteError::builtin("KeyError", "'missing'").to_failure_string()),
            ending: true,
            msg_id: "61e9",
            unique_id: "f3a8",
        };
        let inner = open(&seal(&failed.to_json())).unwrap_or_default();
        assert!(
            inner["failure"].is_string(),
            "failure must be a JSON string"
        );
        assert!(inner["result"].is_null());
    }

    #[test]
    fn unenveloped_reply_without_ending_is_not_final() {
        let old = decode(r#"{"result": 5, "_msg_id": "m"}"#);
        assert!(!old.ending && !old.is_heartbeat());
        assert!(IncomingReply::from_message(Map::new()).is_err());
    }
}
