//! RPC requests (spec §1.3): `method`, `args`, optional `namespace` and `version`,
//! `_unique_id`, the flattened context, and for calls `_msg_id`, `_reply_q`, `_timeout`.

use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::context::Context;
use crate::version::Version;

/// The prefix of flattened context keys.
pub(crate) const CONTEXT_PREFIX: &str = "_context_";

/// The fields only calls carry.
pub(crate) struct CallFields<'a> {
    pub(crate) msg_id: &'a str,
    pub(crate) reply_q: &'a str,
    /// The call-monitor timeout in seconds; JSON `null` when unset.
    pub(crate) call_monitor_timeout: Option<f64>,
}

/// A request as sent. `args` is already-encoded JSON (an object).
pub(crate) struct OutgoingRequest<'a> {
    pub(crate) method: &'a str,
    pub(crate) args: &'a RawValue,
    pub(crate) namespace: Option<&'a str>,
    /// Omitted when unset: `null` would mean something else to the server (spec §1.3).
    pub(crate) version: Option<Version>,
    pub(crate) call: Option<CallFields<'a>>,
    pub(crate) unique_id: &'a str,
    pub(crate) context: &'a Context,
}

impl Serialize for OutgoingRequest<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("method", self.method)?;
        map.serialize_entry("args", self.args)?;
        if let Some(namespace) = self.namespace {
            map.serialize_entry("namespace", namespace)?;
        }
        if let Some(version) = &self.version {
            map.serialize_entry("version", version)?;
        }
        if let Some(call) = &self.call {
            map.serialize_entry("_msg_id", call.msg_id)?;
            map.serialize_entry("_reply_q", call.reply_q)?;
            map.serialize_entry("_timeout", &call.call_monitor_timeout)?;
        }
        map.serialize_entry("_unique_id", self.unique_id)?;
        for (key, value) in self.context.iter() {
            map.serialize_entry(&format_args!("{CONTEXT_PREFIX}{key}"), value)?;
        }
        map.end()
    }
}

impl OutgoingRequest<'_> {
    /// The inner JSON text (to be sealed in the envelope).
    pub(crate) fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }
}

/// The `version` of a received request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RequestedVersion {
    /// A valid version; an absent key means `1.0`.
    Valid(Version),
    /// An explicit JSON `null`: compatible with no versioned endpoint.
    Null,
    /// Not a version string; the JSON text as received.
    Invalid(String),
}

/// Where the reply of a call goes.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ReplyTo {
    pub(crate) msg_id: String,
    pub(crate) reply_q: String,
}

/// A request as received, after oslo's `unpack_context`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IncomingRequest {
    /// `None` when absent or not a string.
    pub(crate) method: Option<String>,
    /// `{}` when absent; a non-object is refused at dispatch.
    pub(crate) args: Value,
    /// `null` is the same as absent.
    pub(crate) namespace: Option<String>,
    pub(crate) version: RequestedVersion,
    /// Present for calls only (both `_msg_id` and `_reply_q` are strings).
    pub(crate) reply: Option<ReplyTo>,
    /// `_timeout` when it is a number.
    pub(crate) call_monitor_timeout: Option<f64>,
    pub(crate) unique_id: Option<String>,
    /// The unflattened context plus `client_timeout`.
    pub(crate) context: Context,
}

impl IncomingRequest {
    /// Splits a received message into its parts; never fails, so that a call with odd fields
    /// still gets a failure reply rather than silence.
    pub(crate) fn from_message(mut message: Map<String, Value>) -> Self {
        let take_string = |m: &mut Map<String, Value>, key: &str| match m.remove(key) {
            Some(Value::String(s)) => Some(s),
            _ => None,
        };
        let method = take_string(&mut message, "method");
        let namespace = take_string(&mut message, "namespace");
        let unique_id = take_string(&mut message, "_unique_id");
        let msg_id = take_string(&mut message, "_msg_id");
        let reply_q = take_string(&mut message, "_reply_q");
        let timeout = message.remove("_timeout").unwrap_or(Value::Null);
        let version = match message.remove("version") {
            None => RequestedVersion::Valid(Version::DEFAULT),
            Some(Value::Null) => RequestedVersion::Null,
            Some(Value::String(s)) => match s.parse() {
                Ok(v) => RequestedVersion::Valid(v),
                Err(_) => RequestedVersion::Invalid(Value::String(s).to_string()),
            },
            Some(other) => RequestedVersion::Invalid(other.to_string()),
        };
        let args = message
            .remove("args")
            .unwrap_or_else(|| Value::Object(Map::new()));
        let mut context = Context::new();
        for (key, value) in message {
            if let Some(name) = key.strip_prefix(CONTEXT_PREFIX) {
                context.insert(name, value);
            }
        }
        let call_monitor_timeout = timeout.as_f64();
        context.insert("client_timeout", timeout);
        let reply = match (msg_id, reply_q) {
            (Some(msg_id), Some(reply_q)) => Some(ReplyTo { msg_id, reply_q }),
            _ => None,
        };
        IncomingRequest {
            method,
            args,
            namespace,
            version,
            reply,
            call_monitor_timeout,
            unique_id,
            context,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{open, seal};
    use serde_json::json;

    /// The captured call request of spec §1.3.
    const SPEC_REQUEST: &str = r#"{"method": "add", "args": {"a": 1, "b": 2}, "version": "1.2",
 "_msg_id": "f7bf1089f6f9431db1932dec9c1313cf",
 "_reply_q": "reply_dd16ef441b4e49eaa2e56f543aef0f11",
 "_timeout": null,
 "_unique_id": "fda5a1788ba1489d938fdfd581fbe416",
 "_context_user": "u1", "_context_project_id": "p1", "_context_roles": ["admin"]}"#;

    fn object(text: &str) -> Map<String, Value> {
        match serde_json::from_str(text) {
            Ok(Value::Object(map)) => map,
            other => panic!("not an object: {other:?}"),
        }
    }

    #[test]
    fn decodes_the_spec_request() {
        let req = IncomingRequest::from_message(object(SPEC_REQUEST));
        assert_eq!(req.method.as_deref(), Some("add"));
        assert_eq!(req.args, json!({"a": 1, "b": 2}));
        assert_eq!(req.version, RequestedVersion::Valid(Version::new(1, 2)));
        assert_eq!(req.namespace, None);
        assert_eq!(
            req.reply,
            Some(ReplyTo {
                msg_id: "f7bf1089f6f9431db1932dec9c1313cf".into(),
                reply_q: "reply_dd16ef441b4e49eaa2e56f543aef0f11".into()
            })
        );
        assert_eq!(req.call_monitor_timeout, None);
        assert_eq!(
            req.unique_id.as_deref(),
            Some("fda5a1788ba1489d938fdfd581fbe416")
        );
        assert_eq!(
            serde_json::to_value(&req.context).unwrap_or_default(),
            json!({"user": "u1", "project_id": "p1", "roles": ["admin"], "client_timeout": null})
        );
    }

    #[test]
    fn reencoding_the_spec_request_gives_the_same_json() {
        let original = object(SPEC_REQUEST);
        let req = IncomingRequest::from_message(original.clone());
        let mut context = req.context.clone();
        context.remove("client_timeout");
        let args = serde_json::value::to_raw_value(&req.args).unwrap_or_else(|e| panic!("{e}"));
        let reply = req.reply.clone().unwrap_or_else(|| panic!("a call"));
        let RequestedVersion::Valid(version) = req.version else {
            panic!("version")
        };
        let out = OutgoingRequest {
            method: "add",
            args: &args,
            namespace: None,
            version: Some(version),
            call: Some(CallFields {
                msg_id: &reply.msg_id,
                reply_q: &reply.reply_q,
                call_monitor_timeout: None,
            }),
            unique_id: req.unique_id.as_deref().unwrap_or_default(),
            context: &context,
        };
        let body = seal(&out.to_json().unwrap_or_default());
        assert_eq!(open(&body).ok(), Some(original));
    }

    #[test]
    fn casts_carry_no_call_fields_and_unset_version_is_omitted() {
        let args = serde_json::value::to_raw_value(&json!({})).unwrap_or_else(|e| panic!("{e}"));
        let ctx = Context::new();
        let out = OutgoingRequest {
            method: "m",
            args: &args,
            namespace: Some("ns"),
            version: None,
            call: None,
            unique_id: "u",
            context: &ctx,
        };
        let json: Value =
            serde_json::from_str(&out.to_json().unwrap_or_default()).unwrap_or_default();
        assert_eq!(
            json,
            json!({"method": "m", "args": {}, "namespace": "ns", "_unique_id": "u"})
        );
    }

    #[test]
    fn absent_version_is_1_0_but_null_is_not_absent() {
        let absent = IncomingRequest::from_message(object(r#"{"method": "m"}"#));
        assert_eq!(absent.version, RequestedVersion::Valid(Version::DEFAULT));
        assert_eq!(absent.args, json!({}));
        let null = IncomingRequest::from_message(object(r#"{"method": "m", "version": null}"#));
        assert_eq!(null.version, RequestedVersion::Null);
        let bad = IncomingRequest::from_message(object(r#"{"method": "m", "version": 1.2}"#));
        assert_eq!(bad.version, RequestedVersion::Invalid("1.2".into()));
    }

    #[test]
    fn null_namespace_is_absent_and_timeout_becomes_client_timeout() {
        let req = IncomingRequest::from_message(object(
            r#"{"method": "m", "namespace": null, "_msg_id": "x", "_reply_q": "q", "_timeout": 4}"#,
        ));
        assert_eq!(req.namespace, None);
        assert_eq!(req.call_monitor_timeout, Some(4.0));
        assert_eq!(req.context.client_timeout(), Some(4.0));
        assert!(req.reply.is_some());
    }
}
