//! The oslo.messaging wire format: the 2.0 envelope, RPC requests, replies and failures.
//!
//! Every transport moves the bytes produced here, so the in-memory driver exercises the same
//! format as RabbitMQ. Field names and quirks follow `../shared/spec/oslo-wire.md` §1 and §4.

mod envelope;
mod failure;
mod reply;
mod request;

pub use envelope::{ENVELOPE_VERSION, open, seal};
pub(crate) use reply::{IncomingReply, OutgoingReply};
pub(crate) use request::{CallFields, IncomingRequest, OutgoingRequest, RequestedVersion};

/// A message that is not valid oslo.messaging wire format.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The body (or the enveloped `oslo.message`) is not valid JSON.
    #[error("message is not valid JSON: {0}")]
    Json(#[source] serde_json::Error),

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

    /// A required field is absent or of the wrong JSON type.
    #[error("field {field:?} is missing or not a {expected}")]
    BadField {
        /// The field name.
        field: &'static str,
        /// The JSON type it must have.
        expected: &'static str,
    },
}

/// A fresh id for `_msg_id` and `_unique_id`: a random UUID as 32 hex digits, like Python's
/// `uuid4().hex`.
pub(crate) fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
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
