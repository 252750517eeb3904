//! The oslo.messaging wire format: the 2.0 envelope, RPC requests, replies and failures, and
//! notifications.
//!
//! Every transport moves the bytes produced here, so the in-memory driver exercises the same
//! format as RabbitMQ. Field names and quirks follow `../shared/spec/oslo-wire.md` §1 and §4.

mod direct;
mod envelope;
mod escape;
mod failure;
mod keys;
mod notification;
#[cfg(test)]
mod proptests;
mod python;
mod reply;
mod request;
mod salvage;

pub(crate) use envelope::decode;
pub use envelope::{ENVELOPE_VERSION, open, seal};
pub(crate) use notification::{
    IncomingNotification, OutgoingNotification, message_id as notification_message_id,
    timestamp_now,
};
pub use python::from_value;
pub(crate) use python::{display_string, to_value};
pub(crate) use reply::{IncomingReply, OutgoingReply, begin as begin_reply, returned_value};
pub(crate) use request::{CallFields, IncomingRequest, OutgoingRequest, ReplyTo, RequestedVersion};
pub(crate) use salvage::{msg_id as salvage_msg_id, reply_to as salvage_reply_to};

/// The module of oslo's dispatcher exceptions (`NoSuchMethod`, `UnsupportedVersion`), which
/// both sides turn into and from their [`RpcError`](crate::RpcError) variants.
pub(crate) const DISPATCHER_MODULE: &str = "oslo_messaging.rpc.dispatcher";

/// A message that is not valid oslo.messaging wire format.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The body (or the enveloped `oslo.message`) is not valid JSON.
    #[error("message is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),

    /// The message is not UTF-8 text (Python refuses it before reading its JSON).
    #[error("message is not UTF-8: invalid byte after {valid_up_to} bytes")]
    NotUtf8 {
        /// How many bytes from the start are valid UTF-8.
        valid_up_to: usize,
    },

    /// The message is JSON but not an object.
    #[error("message is not a JSON object")]
    NotAnObject,

    /// The envelope's `oslo.version` is not compatible with 2.0 (oslo's
    /// `UnsupportedRpcEnvelopeVersion`).
    #[error("unsupported oslo envelope version {version}")]
    UnsupportedEnvelope {
        /// The version found, as JSON text.
        version: String,
    },

    /// The message is larger than the transport's
    /// [`max_message_size`](crate::TransportConfig::max_message_size).
    #[error("message of {size} bytes is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The message's size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },

    /// A required field is absent or of the wrong JSON type.
    #[error("field {field:?} is missing or not a {expected}")]
    BadField {
        /// The field name.
        field: &'static str,
        /// The JSON type it must have.
        expected: &'static str,
    },
}

/// A fresh id for `_msg_id`, `_unique_id` and queue names: a random (version 4) UUID, whose
/// text is 32 hex digits as Python's `uuid4().hex`. Receivers never check the format (spec
/// §1.3), but ids must not be guessable: a peer that can predict a call's `_msg_id` and reply
/// queue can answer it in the server's place. uuid's `fast-rng` draws them from a
/// thread-local generator seeded from the system, without a system call per id: about 160
/// instructions per id more than the per-process prefix and counter it replaces, 1% of a
/// `memory://` call, which the benchmark does not see (see `bench/PROFILING.md`).
pub(crate) fn new_id() -> Id {
    Id(uuid::Uuid::new_v4().as_u128())
}

/// An id from [`new_id`]; its text is 32 lowercase hex digits, made without allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Id(u128);

impl Id {
    /// The id's text, in a stack buffer.
    pub(crate) fn text(self) -> IdText {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 32];
        for (i, digit) in text.iter_mut().enumerate() {
            *digit = HEX[((self.0 >> (124 - 4 * i)) & 0xf) as usize];
        }
        IdText(text)
    }

    /// The id whose text is `text`, if it is 32 lowercase hex digits.
    ///
    /// A shift per digit: `u128::from_str_radix` multiplies with overflow checks, ten times the
    /// instructions, and every reply and request goes through here.
    pub(crate) fn parse(text: &str) -> Option<Id> {
        let digits = text.as_bytes();
        if digits.len() != 32 {
            return None;
        }
        let mut value = 0u128;
        for &digit in digits {
            let nibble = match digit {
                b'0'..=b'9' => digit - b'0',
                b'a'..=b'f' => digit - b'a' + 10,
                _ => return None,
            };
            value = (value << 4) | u128::from(nibble);
        }
        Some(Id(value))
    }
}

impl std::fmt::Display for Id {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.text().as_str())
    }
}

/// The text of an [`Id`].
pub(crate) struct IdText([u8; 32]);

impl IdText {
    pub(crate) fn as_str(&self) -> &str {
        // Hex digits only, hence ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// The JSON type name of a value, for error messages.
pub(crate) fn json_type(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

#[cfg(test)]
mod id_tests {
    #[test]
    fn ids_parse_back_and_nothing_else_parses() {
        let id = super::new_id();
        assert_eq!(super::Id::parse(id.text().as_str()), Some(id));
        for bad in [
            "",
            "0",
            "F7BF1089F6F9431DB1932DEC9C1313CF",
            "f7bf1089f6f9431db1932dec9c1313cf0",
            "+7bf1089f6f9431db1932dec9c1313cf",
        ] {
            assert_eq!(super::Id::parse(bad), None, "{bad}");
        }
        assert!(super::Id::parse("f7bf1089f6f9431db1932dec9c1313cf").is_some());
        for value in [0, 1, 0xf7bf_1089, u128::MAX, u128::MAX / 3] {
            let text = format!("{value:032x}");
            assert_eq!(super::Id::parse(&text), Some(super::Id(value)), "{text}");
        }
    }

    #[test]
    fn ids_are_random_uuids_as_python_writes_them() {
        // Version 4, RFC 4122 variant: as Python's uuid4().hex.
        for _ in 0..100 {
            let id = super::new_id().to_string();
            assert_eq!(&id[12..13], "4", "{id}");
            assert!(matches!(&id[16..17], "8" | "9" | "a" | "b"), "{id}");
        }
        // Not a counter: consecutive ids share no long prefix.
        let (a, b) = (super::new_id().to_string(), super::new_id().to_string());
        assert_ne!(a[..12], b[..12]);
    }

    #[test]
    fn ids_are_32_hex_digits_and_distinct() {
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| super::new_id().to_string()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(
            ids.iter()
                .all(|id| id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()))
        );
    }
}
