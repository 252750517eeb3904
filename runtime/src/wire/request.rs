//! RPC requests (spec §1.3): `method`, `args`, optional `namespace` and `version`,
//! `_unique_id`, the flattened context, and for calls `_msg_id`, `_reply_q`, `_timeout`.

use std::io::Write;

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::ser::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::WireError;
use super::envelope::{decode_as, seal_with};
use super::escape::Escaped;
use super::keys::{Key, KnownKeys};
use super::python::{Mode, Py, may_hide_big_integer};
use crate::context::Context;
use crate::error::{RemoteError, RpcError};
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

/// A request as sent, with its keyword arguments `A` (which must serialize as a JSON object,
/// or as `null` for none).
pub(crate) struct OutgoingRequest<'a, A: ?Sized> {
    pub(crate) method: &'a str,
    pub(crate) args: &'a A,
    pub(crate) namespace: Option<&'a str>,
    /// Omitted when unset: `null` would mean something else to the server (spec §1.3).
    pub(crate) version: Option<Version>,
    pub(crate) call: Option<CallFields<'a>>,
    pub(crate) unique_id: &'a str,
    pub(crate) context: &'a Context,
}

/// A context key with its `_context_` prefix, written without building the string.
pub(super) struct ContextKey<'a>(pub(super) &'a str);

impl Serialize for ContextKey<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&format_args!("{CONTEXT_PREFIX}{}", self.0))
    }
}

impl<A: Serialize + ?Sized> OutgoingRequest<'_, A> {
    /// The AMQP body: the request, sealed in the envelope, encoded in one pass. Fails with
    /// [`RpcError::InvalidArguments`] when the arguments are not a JSON object.
    pub(crate) fn encode(&self) -> Result<Vec<u8>, RpcError> {
        seal_with(768 + self.method.len(), |out| self.write(out))
    }

    fn write(&self, out: &mut Escaped<'_>) -> Result<(), RpcError> {
        let encode = |e| RpcError::encode("request", e);
        let io = |e| RpcError::encode("request", serde_json::Error::io(e));
        out.write_all(br#"{"method":"#).map_err(io)?;
        out.serialize(self.method).map_err(encode)?;
        out.write_all(br#","args":"#).map_err(io)?;
        let at = out.written().len();
        out.serialize(&Py(self.args, Mode::Text))
            .map_err(|e| RpcError::encode("arguments", e))?;
        // Escaped, a string argument starts with `\"`.
        let found = match out.written().get(at) {
            Some(b'{') => None,
            Some(b'n') => {
                out.truncate(at);
                out.write_all(b"{}").map_err(io)?;
                None
            }
            Some(b'[') => Some("array"),
            Some(b'\\') => Some("string"),
            Some(b't' | b'f') => Some("boolean"),
            _ => Some("number"),
        };
        if let Some(found) = found {
            return Err(RpcError::InvalidArguments { found });
        }
        if let Some(namespace) = self.namespace {
            out.write_all(br#","namespace":"#).map_err(io)?;
            out.serialize(namespace).map_err(encode)?;
        }
        if let Some(version) = &self.version {
            out.write_all(br#","version":"#).map_err(io)?;
            out.serialize(version).map_err(encode)?;
        }
        if let Some(call) = &self.call {
            out.write_all(br#","_msg_id":"#).map_err(io)?;
            out.serialize(call.msg_id).map_err(encode)?;
            out.write_all(br#","_reply_q":"#).map_err(io)?;
            out.serialize(call.reply_q).map_err(encode)?;
            out.write_all(br#","_timeout":"#).map_err(io)?;
            out.serialize(&call.call_monitor_timeout).map_err(encode)?;
        }
        out.write_all(br#","_unique_id":"#).map_err(io)?;
        out.serialize(self.unique_id).map_err(encode)?;
        for (key, value) in self.context.iter() {
            out.write_all(b",").map_err(io)?;
            out.serialize(&ContextKey(key)).map_err(encode)?;
            out.write_all(b":").map_err(io)?;
            out.serialize(&Py(value, Mode::Text)).map_err(encode)?;
        }
        out.write_all(b"}").map_err(io)
    }
}

/// The `version` of a received request.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum RequestedVersion {
    /// A valid version; an absent key means `1.0`.
    Valid(Version),
    /// An explicit JSON `null`: compatible with no versioned endpoint.
    Null,
    /// Not a version string; its JSON text (compact, as serde_json writes the value; a value
    /// Python wrote that serde_json refuses, as Python wrote it).
    Invalid(String),
}

impl RequestedVersion {
    /// The version, when the request's is one.
    pub(crate) fn valid(&self) -> Option<&Version> {
        match self {
            RequestedVersion::Valid(version) => Some(version),
            RequestedVersion::Null | RequestedVersion::Invalid(_) => None,
        }
    }
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
    /// Why the request must not run, though it decoded: a `namespace`, `_msg_id` or
    /// `_reply_q` that is not a string (oslo's peers send strings; a number is not "absent"),
    /// or, for a request made by the server from one that did not decode, why not.
    pub(crate) refusal: Option<RemoteError>,
}

impl IncomingRequest {
    /// A request that did not decode but names where its answer goes: it is answered with
    /// `failure` and not run.
    pub(crate) fn refused(to: ReplyTo, failure: RemoteError) -> IncomingRequest {
        IncomingRequest {
            method: None,
            args: Value::Null,
            namespace: None,
            version: RequestedVersion::Valid(Version::DEFAULT),
            reply: Some(to),
            call_monitor_timeout: None,
            unique_id: None,
            context: Context::new(),
            refusal: Some(failure),
        }
    }

    /// Decodes an AMQP body (enveloped or not) into a request. Values Python writes that
    /// serde_json refuses or changes are read as Python wrote them (see [`super::python`]).
    pub(crate) fn decode(body: &[u8]) -> Result<IncomingRequest, WireError> {
        let request: IncomingRequest = super::decode(body)?;
        let suspect = may_hide_big_integer(&request.args)
            || request.context.iter().any(|(_, v)| may_hide_big_integer(v));
        match suspect {
            true => decode_as(body, true),
            false => Ok(request),
        }
    }
}

/// The keys of a request.
enum RequestKey {
    Method,
    Args,
    Namespace,
    Version,
    MsgId,
    ReplyQ,
    Timeout,
    UniqueId,
    /// A flattened context key, without its prefix.
    Context(String),
}

impl KnownKeys for RequestKey {
    fn from_key(key: &str) -> Option<Self> {
        Some(match key {
            "method" => RequestKey::Method,
            "args" => RequestKey::Args,
            "namespace" => RequestKey::Namespace,
            "version" => RequestKey::Version,
            "_msg_id" => RequestKey::MsgId,
            "_reply_q" => RequestKey::ReplyQ,
            "_timeout" => RequestKey::Timeout,
            "_unique_id" => RequestKey::UniqueId,
            other => RequestKey::Context(other.strip_prefix(CONTEXT_PREFIX)?.to_owned()),
        })
    }
}

/// The string `value` of request field `field`; anything else is recorded as a defect. A
/// repeated key keeps its last value, and its defect only if that value is not a string.
fn checked(field: &'static str, value: Value, defects: &mut Vec<String>) -> Option<String> {
    if !defects.is_empty() {
        defects.retain(|d| !d.starts_with(field));
    }
    match value {
        Value::String(s) => Some(s),
        other => {
            defects.push(format!(
                "{field} must be a string, not {}",
                super::json_type(&other)
            ));
            None
        }
    }
}

fn string(value: Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// Decodes a request without failing on odd fields, so that a call with odd fields still
/// gets a failure reply rather than silence. Keys other than oslo's are ignored; a repeated
/// key keeps its last value.
impl<'de> Deserialize<'de> for IncomingRequest {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct RequestVisitor;
        impl<'de> Visitor<'de> for RequestVisitor {
            type Value = IncomingRequest;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an RPC request object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<IncomingRequest, M::Error> {
                let mut method = None;
                let mut args = None;
                let mut namespace = None;
                let mut version = None;
                let mut msg_id = None;
                let mut reply_q = None;
                let mut defects: Vec<String> = Vec::new();
                let mut timeout = Value::Null;
                let mut unique_id = None;
                let mut context = Context::new();
                while let Some(Key(key)) = map.next_key::<Key<RequestKey>>()? {
                    let Some(key) = key else {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    };
                    if let RequestKey::Version = key {
                        version = Some(map.next_value::<VersionField>()?.0);
                        continue;
                    }
                    let value: Value = map.next_value()?;
                    match key {
                        RequestKey::Method => method = string(value),
                        RequestKey::Args => args = Some(value),
                        RequestKey::Namespace => {
                            namespace = match value {
                                Value::Null => {
                                    defects.retain(|d| !d.starts_with("namespace"));
                                    None
                                }
                                value => checked("namespace", value, &mut defects),
                            }
                        }
                        RequestKey::Version => {}
                        RequestKey::MsgId => msg_id = checked("_msg_id", value, &mut defects),
                        RequestKey::ReplyQ => reply_q = checked("_reply_q", value, &mut defects),
                        RequestKey::Timeout => timeout = value,
                        RequestKey::UniqueId => unique_id = string(value),
                        RequestKey::Context(name) => drop(context.insert(name, value)),
                    }
                }
                let version = version.unwrap_or(RequestedVersion::Valid(Version::DEFAULT));
                let call_monitor_timeout = timeout.as_f64();
                context.insert("client_timeout", timeout);
                let reply = match (msg_id, reply_q) {
                    (Some(msg_id), Some(reply_q)) => Some(ReplyTo { msg_id, reply_q }),
                    _ => None,
                };
                Ok(IncomingRequest {
                    method,
                    args: args.unwrap_or_else(|| Value::Object(Map::new())),
                    namespace,
                    version,
                    reply,
                    call_monitor_timeout,
                    unique_id,
                    context,
                    refusal: (!defects.is_empty())
                        .then(|| RemoteError::builtin("TypeError", defects.join("; "))),
                })
            }
        }
        deserializer.deserialize_map(RequestVisitor)
    }
}

/// A request's `version` value, read from any value without keeping its text: so that a
/// request decodes the same from its JSON text and from a [`Value`] (`super::direct`). A
/// string is parsed where it is read; any other value is [`RequestedVersion::Invalid`], with
/// its compact JSON text.
struct VersionField(RequestedVersion);

impl<'de> Deserialize<'de> for VersionField {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct VersionVisitor;
        impl VersionVisitor {
            fn invalid<E>(value: Value) -> Result<VersionField, E> {
                Ok(VersionField(RequestedVersion::Invalid(value.to_string())))
            }
        }
        impl<'de> Visitor<'de> for VersionVisitor {
            type Value = VersionField;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<VersionField, E> {
                Ok(VersionField(match text.parse() {
                    Ok(version) => RequestedVersion::Valid(version),
                    // A string Python wrote that serde_json refuses is shown as Python wrote it.
                    Err(_) => match super::python::marked_json(text) {
                        Some(json) => RequestedVersion::Invalid(json),
                        None => RequestedVersion::Invalid(Value::from(text).to_string()),
                    },
                }))
            }
            fn visit_unit<E>(self) -> Result<VersionField, E> {
                Ok(VersionField(RequestedVersion::Null))
            }
            fn visit_none<E>(self) -> Result<VersionField, E> {
                Ok(VersionField(RequestedVersion::Null))
            }
            fn visit_bool<E>(self, value: bool) -> Result<VersionField, E> {
                Self::invalid(value.into())
            }
            fn visit_i64<E>(self, value: i64) -> Result<VersionField, E> {
                Self::invalid(value.into())
            }
            fn visit_u64<E>(self, value: u64) -> Result<VersionField, E> {
                Self::invalid(value.into())
            }
            fn visit_f64<E>(self, value: f64) -> Result<VersionField, E> {
                Self::invalid(value.into())
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<VersionField, A::Error> {
                Self::invalid(Value::deserialize(de::value::SeqAccessDeserializer::new(
                    seq,
                ))?)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<VersionField, A::Error> {
                // A number under serde_json's `arbitrary_precision` is such a map too.
                Self::invalid(Value::deserialize(de::value::MapAccessDeserializer::new(
                    map,
                ))?)
            }
        }
        deserializer.deserialize_any(VersionVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{decode, open};
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

    fn request(text: &str) -> IncomingRequest {
        decode(text.as_bytes()).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn decodes_the_spec_request() {
        let req = request(SPEC_REQUEST);
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
        let req = request(SPEC_REQUEST);
        let mut context = req.context.clone();
        context.remove("client_timeout");
        let reply = req.reply.clone().unwrap_or_else(|| panic!("a call"));
        let RequestedVersion::Valid(version) = req.version else {
            panic!("version")
        };
        let out = OutgoingRequest {
            method: "add",
            args: &req.args,
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
        let body = out.encode().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(open(&body).ok(), Some(original));
    }

    #[test]
    fn casts_carry_no_call_fields_and_unset_version_is_omitted() {
        let ctx = Context::new();
        let out = OutgoingRequest {
            method: "m",
            args: &(),
            namespace: Some("ns"),
            version: None,
            call: None,
            unique_id: "u",
            context: &ctx,
        };
        let json = out.encode().ok().and_then(|body| open(&body).ok());
        assert_eq!(
            json.map(Value::Object),
            Some(json!({"method": "m", "args": {}, "namespace": "ns", "_unique_id": "u"}))
        );
    }

    #[test]
    fn arguments_must_be_an_object_and_unit_or_null_means_none() {
        let ctx = Context::new().with_request_id("req-\"1\"");
        let encode = |args: &Value| {
            OutgoingRequest {
                method: "m",
                args,
                namespace: None,
                version: None,
                call: None,
                unique_id: "u",
                context: &ctx,
            }
            .encode()
            .map(|body| open(&body).map(|m| m["args"].clone()).ok())
        };
        assert_eq!(
            encode(&json!({"a": "\"x\""})).ok().flatten(),
            Some(json!({"a": "\"x\""}))
        );
        assert_eq!(encode(&Value::Null).ok().flatten(), Some(json!({})));
        for (value, found) in [
            (json!([1]), "array"),
            (json!("s"), "string"),
            (json!(true), "boolean"),
            (json!(false), "boolean"),
            (json!(1.5), "number"),
            (json!(-1), "number"),
        ] {
            assert!(
                matches!(encode(&value), Err(RpcError::InvalidArguments { found: f }) if f == found),
                "{value}"
            );
        }
    }

    #[test]
    fn context_keys_are_flattened_and_escaped() {
        let ctx = Context::new()
            .with("we\"ird", "v")
            .with("user", json!({"n": 1}));
        let out = OutgoingRequest {
            method: "m",
            args: &(),
            namespace: None,
            version: None,
            call: None,
            unique_id: "u",
            context: &ctx,
        };
        let body = out.encode().unwrap_or_else(|e| panic!("{e}"));
        let map = open(&body).unwrap_or_default();
        assert_eq!(map["_context_we\"ird"], "v");
        assert_eq!(map["_context_user"], json!({"n": 1}));
        let back: IncomingRequest = decode(&body).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back.context.get("we\"ird"), Some(&json!("v")));
    }

    #[test]
    fn unknown_keys_are_ignored_and_repeated_keys_keep_the_last() {
        let req = request(
            r#"{"method": 1, "method": "m", "x": [1, {"y": 2}], "_context_a": 1, "_context_a": 2}"#,
        );
        assert_eq!(req.method.as_deref(), Some("m"));
        assert_eq!(req.context.get("a"), Some(&json!(2)));
        let odd = request(r#"{"method": 5, "namespace": 3, "_unique_id": [], "_msg_id": "x"}"#);
        assert_eq!(
            (odd.method, odd.namespace, odd.unique_id, odd.reply),
            (None, None, None, None)
        );
        assert_eq!(
            odd.refusal.map(|r| r.message().to_owned()).as_deref(),
            Some("namespace must be a string, not number")
        );
    }

    #[test]
    fn non_string_namespace_msg_id_and_reply_q_are_defects_not_absent() {
        let req = request(r#"{"method": "m", "_msg_id": 5, "_reply_q": ["q"]}"#);
        assert_eq!(req.reply, None);
        assert_eq!(
            req.refusal.map(|r| r.message().to_owned()).as_deref(),
            Some("_msg_id must be a string, not number; _reply_q must be a string, not array")
        );
        let fine = request(
            r#"{"method": "m", "namespace": 1, "namespace": null, "_msg_id": "a", "_reply_q": "q"}"#,
        );
        assert_eq!((fine.refusal, fine.namespace), (None, None));
        assert!(fine.reply.is_some());
    }

    #[test]
    fn absent_version_is_1_0_but_null_is_not_absent() {
        let absent = request(r#"{"method": "m"}"#);
        assert_eq!(absent.version, RequestedVersion::Valid(Version::DEFAULT));
        assert_eq!(absent.args, json!({}));
        let null = request(r#"{"method": "m", "version": null}"#);
        assert_eq!(null.version, RequestedVersion::Null);
        let bad = request(r#"{"method": "m", "version": 1.2}"#);
        assert_eq!(bad.version, RequestedVersion::Invalid("1.2".into()));
        let bad = request(r#"{"method": "m", "version": "1.x"}"#);
        assert_eq!(bad.version, RequestedVersion::Invalid(r#""1.x""#.into()));
        let escaped = request(r#"{"method": "m", "version": "1\u002e3"}"#);
        assert_eq!(escaped.version, RequestedVersion::Valid(Version::new(1, 3)));
    }

    #[test]
    fn null_namespace_is_absent_and_timeout_becomes_client_timeout() {
        let req = request(
            r#"{"method": "m", "namespace": null, "_msg_id": "x", "_reply_q": "q", "_timeout": 4}"#,
        );
        assert_eq!(req.namespace, None);
        assert_eq!(req.call_monitor_timeout, Some(4.0));
        assert_eq!(req.context.client_timeout(), Some(4.0));
        assert!(req.reply.is_some());
    }
}
