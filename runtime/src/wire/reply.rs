//! RPC replies (spec §1.5): `result`, `failure` (always present), `ending`, `_msg_id`,
//! `_unique_id`. Heartbeats are replies with `result: null, ending: false`.

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::WireError;
use super::envelope::{decode_as, seal_close, seal_open};
use super::escape::Escaped;
use super::keys::{Key, KnownKeys};
use super::python::{Mode, Py, may_hide_big_integer};
use crate::Returned;
use crate::endpoint::Repr;
use crate::error::RemoteError;

/// A reply as sent: its result, encoded ahead (see [`Returned`](crate::Returned)), then the
/// other fields.
pub(crate) struct OutgoingReply<'a> {
    /// `null` for failures and heartbeats.
    pub(crate) result: Returned,
    /// Always present: Python callers fail on a reply without it.
    pub(crate) failure: Option<String>,
    pub(crate) ending: bool,
    pub(crate) msg_id: &'a str,
    pub(crate) unique_id: &'a str,
}

/// The fields after `result`, in the order a reply has always been written.
#[derive(Serialize)]
struct Tail<'a> {
    failure: Option<&'a str>,
    ending: bool,
    #[serde(rename = "_msg_id")]
    msg_id: &'a str,
    #[serde(rename = "_unique_id")]
    unique_id: &'a str,
}

/// `{"result":` as it is written inside the envelope's string.
const RESULT_KEY: &[u8] = br#"{\"result\":"#;

/// The start of a reply's body: the envelope's prefix, `{"result":`, and `value` (escaped),
/// which [`OutgoingReply::encode`] completes. A method's return value is encoded here once,
/// straight into the body that will be sent, not through a [`Value`].
pub(crate) fn begin<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    seal_open(512, |out| {
        out.extend_from_slice(RESULT_KEY);
        Escaped::new(out).serialize(&Py(value, Mode::Text))
    })
}

impl OutgoingReply<'_> {
    /// The AMQP body: the reply sealed in the envelope, encoded in one pass. The same bytes as
    /// `{"result": .., "failure": .., "ending": .., "_msg_id": .., "_unique_id": ..}` sealed.
    pub(crate) fn encode(self) -> Vec<u8> {
        let mut body = match self.result.0 {
            Repr::Encoded(body) => body,
            // A JSON value always serializes (its specials are marked strings).
            Repr::Value(value) => begin(&value).unwrap_or_default(),
        };
        let tail = Tail {
            failure: self.failure.as_deref(),
            ending: self.ending,
            msg_id: self.msg_id,
            unique_id: self.unique_id,
        };
        // The tail is written as an object, whose `{` becomes the `,` after the result.
        let at = body.len();
        // Strings and booleans always serialize, and a Vec takes every write. Through `Py`, as
        // the result: a msg_id Python wrote with a lone surrogate goes back as it came, and a
        // long failure takes the long-string path.
        let _ = Escaped::new(&mut body).serialize(&Py(&tail, Mode::Text));
        if let Some(brace) = body.get_mut(at) {
            *brace = b',';
        }
        seal_close(&mut body);
        body
    }
}

/// The result held by a body begun by [`begin`], decoded (for [`Returned::to_value`]).
pub(crate) fn returned_value(begun: &[u8]) -> Result<Value, WireError> {
    let reply = OutgoingReply {
        result: Returned(Repr::Encoded(begun.to_vec())),
        failure: None,
        ending: true,
        msg_id: "",
        unique_id: "",
    };
    IncomingReply::decode(&reply.encode()).map(|reply| reply.result)
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
    /// Decodes an AMQP body (enveloped or not) into a reply.
    pub(crate) fn decode(body: &[u8]) -> Result<Self, WireError> {
        let mut fields: ReplyFields = super::decode(body)?;
        if may_hide_big_integer(&fields.result) {
            fields = decode_as(body, true)?;
        }
        let msg_id = match fields.msg_id {
            Some(Value::String(id)) => id,
            _ => {
                return Err(WireError::BadField {
                    field: "_msg_id",
                    expected: "string",
                });
            }
        };
        let failure = match fields.failure {
            Value::Null => None,
            failure => Some(RemoteError::from_failure(failure)?),
        };
        Ok(IncomingReply {
            msg_id,
            result: fields.result,
            failure,
            ending: fields.ending.as_bool().unwrap_or(false),
        })
    }

    /// A keep-alive from the server's call monitor, not an answer.
    pub(crate) fn is_heartbeat(&self) -> bool {
        !self.ending && self.result.is_null() && self.failure.is_none()
    }
}

/// A reply's fields, each `null` when absent; other keys are skipped.
struct ReplyFields {
    msg_id: Option<Value>,
    result: Value,
    failure: Value,
    ending: Value,
}

#[derive(Clone, Copy)]
enum ReplyKey {
    MsgId,
    Result,
    Failure,
    Ending,
}

impl KnownKeys for ReplyKey {
    fn from_key(key: &str) -> Option<Self> {
        match key {
            "_msg_id" => Some(ReplyKey::MsgId),
            "result" => Some(ReplyKey::Result),
            "failure" => Some(ReplyKey::Failure),
            "ending" => Some(ReplyKey::Ending),
            _ => None,
        }
    }
}

impl<'de> Deserialize<'de> for ReplyFields {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ReplyVisitor;
        impl<'de> Visitor<'de> for ReplyVisitor {
            type Value = ReplyFields;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an RPC reply object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<ReplyFields, M::Error> {
                let mut fields = ReplyFields {
                    msg_id: None,
                    result: Value::Null,
                    failure: Value::Null,
                    ending: Value::Null,
                };
                while let Some(Key(key)) = map.next_key::<Key<ReplyKey>>()? {
                    match key {
                        Some(ReplyKey::MsgId) => fields.msg_id = Some(map.next_value()?),
                        Some(ReplyKey::Result) => fields.result = map.next_value()?,
                        Some(ReplyKey::Failure) => fields.failure = map.next_value()?,
                        Some(ReplyKey::Ending) => fields.ending = map.next_value()?,
                        None => drop(map.next_value::<IgnoredAny>()?),
                    }
                }
                Ok(fields)
            }
        }
        deserializer.deserialize_map(ReplyVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::open;
    use serde_json::json;

    fn decode(text: &str) -> IncomingReply {
        IncomingReply::decode(text.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
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
        let reply = OutgoingReply {
            result: Returned::from(json!({"slept": 3})),
            failure: None,
            ending: true,
            msg_id: "ede0",
            unique_id: "8893",
        };
        let inner = open(&reply.encode()).map(Value::Object).unwrap_or_default();
        assert_eq!(
            inner,
            json!({"result": {"slept": 3}, "failure": null, "ending": true, "_msg_id": "ede0", "_unique_id": "8893"})
        );
        let failed = OutgoingReply {
            result: Returned::NONE,
            failure: Some(RemoteError::builtin("KeyError", "'missing'").to_failure_string()),
            ending: true,
            msg_id: "61e9",
            unique_id: "f3a8",
        };
        let inner = open(&failed.encode()).unwrap_or_default();
        assert!(
            inner["failure"].is_string(),
            "failure must be a JSON string"
        );
        assert!(inner["result"].is_null());
    }

    #[test]
    fn a_msg_id_python_wrote_with_a_lone_surrogate_goes_back_as_it_came() {
        let request = crate::wire::IncomingRequest::decode(
            br#"{"method": "m", "args": {}, "_msg_id": "a\ud800", "_reply_q": "q"}"#,
        );
        let to = request.ok().and_then(|request| request.reply);
        let msg_id = to.map(|to| to.msg_id).unwrap_or_default();
        let body = OutgoingReply {
            result: Returned::NONE,
            failure: None,
            ending: true,
            msg_id: &msg_id,
            unique_id: "u",
        }
        .encode();
        let outer: Value = serde_json::from_slice(&body).unwrap_or_default();
        let inner = outer["oslo.message"].as_str().unwrap_or_default();
        assert!(inner.contains(r#""_msg_id":"a\ud800""#), "{inner}");
    }

    #[test]
    fn a_long_reply_decodes_as_a_short_one_does_python_s_values_included() {
        let long = "é\"x".repeat(1000);
        let result = json!({"text": long, "n": [1, 2.5, -3], "big": 18446744073709551615u64});
        let body = OutgoingReply {
            result: Returned::from(result.clone()),
            failure: None,
            ending: true,
            msg_id: "m",
            unique_id: "u",
        }
        .encode();
        assert!(body.len() > 4096);
        let reply = IncomingReply::decode(&body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (reply.msg_id.as_str(), &reply.result, reply.ending),
            ("m", &result, true)
        );

        // What only the general path reads (Python's NaN, a lone surrogate, an integer beyond
        // 64 bits) still is, in a long reply too.
        let python = format!(
            r#"{{"oslo.version": "2.0", "oslo.message": "{{\"result\": [NaN, \"\\ud800\", 123456789012345678901234567890, \"{}\"], \"_msg_id\": \"m\", \"ending\": true}}"}}"#,
            "y".repeat(4096)
        );
        let reply = IncomingReply::decode(python.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        let items = reply.result.as_array().map(Vec::len);
        assert_eq!(items, Some(4), "{}", reply.result);
        let shown = crate::wire::display_string(reply.result[1].as_str().unwrap_or_default());
        assert_eq!(shown, r#""\ud800""#);
        assert_eq!(reply.result[3], "y".repeat(4096));
    }

    #[test]
    fn unenveloped_reply_without_ending_is_not_final() {
        let old = decode(r#"{"result": 5, "_msg_id": "m"}"#);
        assert!(!old.ending && !old.is_heartbeat());
        assert!(IncomingReply::decode(b"{}").is_err());
        assert!(IncomingReply::decode(br#"{"_msg_id": 5}"#).is_err());
        assert!(IncomingReply::decode(br#"{"_msg_id": "m", "failure": 5}"#).is_err());
    }
}
