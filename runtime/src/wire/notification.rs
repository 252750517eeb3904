//! Notification messages (spec §1.6): `message_id`, `publisher_id`, `event_type`, `priority`,
//! `payload`, `timestamp`, then `_unique_id` and the flattened context, in the order
//! `Notifier._notify` and `AMQPDriverBase._send` write them; enveloped for `messagingv2`, the
//! bare object for `messaging` (v1).

use std::time::{SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use serde_json::{Map, Value};

use super::WireError;
use super::envelope::{decode_as, seal_with};
use super::keys::{Key, KnownKeys};
use super::python::{Mode, Py, may_hide_big_integer};
use super::request::{CONTEXT_PREFIX, ContextKey};
use crate::context::Context;

/// A notification as sent.
pub(crate) struct OutgoingNotification<'a, P: ?Sized> {
    /// `str(uuid4())`: 36 characters, with dashes.
    pub(crate) message_id: &'a str,
    /// JSON `null` when unset, as Python sends `None`.
    pub(crate) publisher_id: Option<&'a str>,
    pub(crate) event_type: &'a str,
    /// Upper case: `INFO`, `WARN`, ...
    pub(crate) priority: &'a str,
    pub(crate) payload: &'a P,
    /// [`timestamp`]'s text.
    pub(crate) timestamp: &'a str,
    /// `uuid4().hex`, fresh for each topic a notification goes to.
    pub(crate) unique_id: &'a str,
    pub(crate) context: &'a Context,
}

impl<P: Serialize + ?Sized> Serialize for OutgoingNotification<'_, P> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(7 + self.context.len()))?;
        map.serialize_entry("message_id", self.message_id)?;
        map.serialize_entry("publisher_id", &self.publisher_id)?;
        map.serialize_entry("event_type", self.event_type)?;
        map.serialize_entry("priority", self.priority)?;
        map.serialize_entry("payload", self.payload)?;
        map.serialize_entry("timestamp", self.timestamp)?;
        map.serialize_entry("_unique_id", self.unique_id)?;
        for (key, value) in self.context.iter() {
            map.serialize_entry(&ContextKey(key), value)?;
        }
        map.end()
    }
}

impl<P: Serialize + ?Sized> OutgoingNotification<'_, P> {
    /// The AMQP body of driver `messagingv2`: the notification in the 2.0 envelope.
    pub(crate) fn encode_v2(&self) -> Result<Vec<u8>, serde_json::Error> {
        seal_with(512, |out| out.serialize(&Py(self, Mode::Text)))
    }

    /// The AMQP body of driver `messaging` (format 1.0): the notification object itself.
    pub(crate) fn encode_v1(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&Py(self, Mode::Text))
    }

    /// The notification as the `log` driver writes it: the message without `_unique_id` and
    /// context (oslo logs the message dict before the transport adds them).
    pub(crate) fn log_value(&self) -> Result<Value, serde_json::Error> {
        let mut message = Map::new();
        message.insert("message_id".into(), self.message_id.into());
        message.insert("publisher_id".into(), self.publisher_id.into());
        message.insert("event_type".into(), self.event_type.into());
        message.insert("priority".into(), self.priority.into());
        message.insert("payload".into(), super::to_value(self.payload)?);
        message.insert("timestamp".into(), self.timestamp.into());
        Ok(Value::Object(message))
    }
}

/// A notification as received. Fields are what Python's dispatcher reads with
/// `message.get(...)`: absent ones are `None` (`null`); a `publisher_id` or `event_type` that is
/// not a string is `None` too (no filter matches either).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IncomingNotification {
    pub(crate) message_id: Option<String>,
    pub(crate) publisher_id: Option<String>,
    pub(crate) event_type: Option<String>,
    /// As sent (any case); `None` when absent or not a string.
    pub(crate) priority: Option<String>,
    pub(crate) payload: Value,
    pub(crate) timestamp: Option<String>,
    pub(crate) unique_id: Option<String>,
    /// The `_context_*` keys without their prefix, plus `client_timeout` (`_timeout`, or
    /// `null`), as oslo's `unpack_context` makes it.
    pub(crate) context: Context,
}

impl IncomingNotification {
    /// Decodes an AMQP body, enveloped (v2) or not (v1). Values Python writes that serde_json
    /// refuses or changes (`NaN`, integers beyond 64 bits) are read as Python wrote them.
    pub(crate) fn decode(body: &[u8]) -> Result<IncomingNotification, WireError> {
        let message: IncomingNotification = super::decode(body)?;
        let suspect = may_hide_big_integer(&message.payload)
            || message.context.iter().any(|(_, v)| may_hide_big_integer(v));
        match suspect {
            true => decode_as(body, true),
            false => Ok(message),
        }
    }
}

/// The keys of a notification.
enum NotificationKey {
    MessageId,
    PublisherId,
    EventType,
    Priority,
    Payload,
    Timestamp,
    UniqueId,
    Timeout,
    /// A flattened context key, without its prefix.
    Context(String),
}

impl KnownKeys for NotificationKey {
    fn from_key(key: &str) -> Option<Self> {
        Some(match key {
            "message_id" => NotificationKey::MessageId,
            "publisher_id" => NotificationKey::PublisherId,
            "event_type" => NotificationKey::EventType,
            "priority" => NotificationKey::Priority,
            "payload" => NotificationKey::Payload,
            "timestamp" => NotificationKey::Timestamp,
            "_unique_id" => NotificationKey::UniqueId,
            "_timeout" => NotificationKey::Timeout,
            other => NotificationKey::Context(other.strip_prefix(CONTEXT_PREFIX)?.to_owned()),
        })
    }
}

/// A string-or-nothing field, as the dispatcher can use it.
fn text(value: Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s),
        _ => None,
    }
}

/// Reads a notification in one pass, straight into its fields, without failing on odd ones:
/// other keys are ignored, a repeated key keeps its last value.
impl<'de> Deserialize<'de> for IncomingNotification {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NotificationVisitor;
        impl<'de> Visitor<'de> for NotificationVisitor {
            type Value = IncomingNotification;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a notification object")
            }
            fn visit_map<M: MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<IncomingNotification, M::Error> {
                let mut message = IncomingNotification {
                    message_id: None,
                    publisher_id: None,
                    event_type: None,
                    priority: None,
                    payload: Value::Null,
                    timestamp: None,
                    unique_id: None,
                    context: Context::new(),
                };
                let mut timeout = Value::Null;
                while let Some(Key(key)) = map.next_key::<Key<NotificationKey>>()? {
                    let Some(key) = key else {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    };
                    let value: Value = map.next_value()?;
                    match key {
                        NotificationKey::MessageId => message.message_id = text(value),
                        NotificationKey::PublisherId => message.publisher_id = text(value),
                        NotificationKey::EventType => message.event_type = text(value),
                        NotificationKey::Priority => message.priority = text(value),
                        NotificationKey::Payload => message.payload = value,
                        NotificationKey::Timestamp => message.timestamp = text(value),
                        NotificationKey::UniqueId => message.unique_id = text(value),
                        NotificationKey::Timeout => timeout = value,
                        NotificationKey::Context(name) => {
                            drop(message.context.insert(name, value));
                        }
                    }
                }
                message.context.insert("client_timeout", timeout);
                Ok(message)
            }
        }
        deserializer.deserialize_map(NotificationVisitor)
    }
}

/// A fresh `message_id`: `str(uuid4())`, 36 characters with dashes.
pub(crate) fn message_id() -> String {
    let mut text = [0u8; uuid::fmt::Hyphenated::LENGTH];
    // Written into a buffer: `to_string` goes through the formatting machinery.
    uuid::Uuid::new_v4()
        .hyphenated()
        .encode_lower(&mut text)
        .to_owned()
}

/// The time now as oslo writes a notification's `timestamp`: `str(timeutils.utcnow())`.
pub(crate) fn timestamp_now() -> String {
    let since_epoch = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    timestamp(since_epoch.as_secs(), since_epoch.subsec_micros())
}

/// Python's `str()` of a naive UTC datetime `secs` seconds and `micros` microseconds after the
/// epoch: `YYYY-MM-DD HH:MM:SS.ffffff`, without the fraction when it is 0.
pub(crate) fn timestamp(secs: u64, micros: u32) -> String {
    let days = secs / 86_400;
    let rest = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (rest / 3600, rest % 3600 / 60, rest % 60);
    // Written digit by digit: `format!` cost more than the rest of a notification's encoding.
    let mut text = String::with_capacity(26);
    // At least 4 digits, as `{year:04}`.
    push_digits(
        &mut text,
        year,
        year.checked_ilog10().map_or(1, |l| l + 1).max(4),
    );
    text.push('-');
    push_digits(&mut text, month, 2);
    text.push('-');
    push_digits(&mut text, day, 2);
    text.push(' ');
    push_digits(&mut text, hour, 2);
    text.push(':');
    push_digits(&mut text, minute, 2);
    text.push(':');
    push_digits(&mut text, second, 2);
    if micros != 0 {
        text.push('.');
        push_digits(&mut text, u64::from(micros), 6);
    }
    text
}

/// Appends `n`'s last `width` decimal digits, zero-padded.
fn push_digits(text: &mut String, n: u64, width: u32) {
    for place in (0..width).rev() {
        let digit = n / 10u64.pow(place) % 10;
        text.push(char::from(b'0' + digit as u8));
    }
}

/// The proleptic Gregorian date `days` days after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The captured v1 body of spec §1.6, its `_unique_id` completed.
    const SPEC_V1: &str = r#"{"message_id": "0f5d053f-e187-4fcd-9ade-0b4584c9c121", "publisher_id": "compute.host1",
 "event_type": "compute.instance.create.end", "priority": "INFO",
 "payload": {"id": 3, "when": "2020-01-02T03:04:05.000000"},
 "timestamp": "2026-11-21 13:17:53.278295", "_unique_id": "276f0e9b2b6a4b8e9d8a7c6b5a4f3e2d",
 "_context_user": "u1", "_context_project_id": "p1", "_context_request_id": "req-abc"}"#;

    fn spec_context() -> Context {
        Context::new()
            .with("user", "u1")
            .with("project_id", "p1")
            .with("request_id", "req-abc")
    }

    fn spec_notification<'a>(
        context: &'a Context,
        payload: &'a Value,
    ) -> OutgoingNotification<'a, Value> {
        OutgoingNotification {
            message_id: "0f5d053f-e187-4fcd-9ade-0b4584c9c121",
            publisher_id: Some("compute.host1"),
            event_type: "compute.instance.create.end",
            priority: "INFO",
            payload,
            timestamp: "2026-11-21 13:17:53.278295",
            unique_id: "276f0e9b2b6a4b8e9d8a7c6b5a4f3e2d",
            context,
        }
    }

    fn parse(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn v1_body_is_the_spec_object_without_envelope() {
        let (context, payload) = (
            spec_context(),
            json!({"id": 3, "when": "2020-01-02T03:04:05.000000"}),
        );
        let body = spec_notification(&context, &payload)
            .encode_v1()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(parse(&body), parse(SPEC_V1.as_bytes()));
        // Keys in oslo's order: the message's, then `_unique_id`, then the context.
        let text = String::from_utf8_lossy(&body);
        let order: Vec<usize> = ["message_id", "publisher_id", "event_type", "priority"]
            .iter()
            .chain(&["payload", "timestamp", "_unique_id", "_context_"])
            .map(|k| text.find(&format!("\"{k}")).unwrap_or(usize::MAX))
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn v2_body_is_the_same_object_in_the_envelope() {
        let (context, payload) = (spec_context(), json!({"id": 3}));
        let notification = spec_notification(&context, &payload);
        let body = notification.encode_v2().unwrap_or_else(|e| panic!("{e}"));
        let outer = parse(&body);
        assert_eq!(outer["oslo.version"], "2.0");
        let inner = outer["oslo.message"].as_str().unwrap_or_default();
        let v1 = notification.encode_v1().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(inner.as_bytes(), &v1[..]);
    }

    #[test]
    fn unset_publisher_id_is_null_and_empty_context_adds_no_keys() {
        let (context, payload) = (Context::new(), json!(null));
        let mut notification = spec_notification(&context, &payload);
        notification.publisher_id = None;
        let body = parse(&notification.encode_v1().unwrap_or_else(|e| panic!("{e}")));
        assert_eq!(body["publisher_id"], Value::Null);
        let keys: Vec<&String> = body
            .as_object()
            .map(|o| o.keys().collect())
            .unwrap_or_default();
        assert_eq!(keys.len(), 7, "{keys:?}");
    }

    #[test]
    fn decodes_the_spec_body_enveloped_or_not() {
        let v1 = IncomingNotification::decode(SPEC_V1.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            v1.message_id.as_deref(),
            Some("0f5d053f-e187-4fcd-9ade-0b4584c9c121")
        );
        assert_eq!(v1.publisher_id.as_deref(), Some("compute.host1"));
        assert_eq!(
            v1.event_type.as_deref(),
            Some("compute.instance.create.end")
        );
        assert_eq!(v1.priority.as_deref(), Some("INFO"));
        assert_eq!(v1.payload["id"], 3);
        assert_eq!(v1.timestamp.as_deref(), Some("2026-11-21 13:17:53.278295"));
        assert_eq!(
            v1.unique_id.as_deref(),
            Some("276f0e9b2b6a4b8e9d8a7c6b5a4f3e2d")
        );
        assert_eq!(v1.context.get_str("user"), Some("u1"));
        assert_eq!(v1.context.get("client_timeout"), Some(&Value::Null));
        assert_eq!(v1.context.len(), 4);
        let inner = serde_json::to_string(&parse(SPEC_V1.as_bytes())).unwrap_or_default();
        let v2 = IncomingNotification::decode(&super::super::seal(&inner));
        assert_eq!(v2.ok(), Some(v1));
    }

    #[test]
    fn hostile_bodies_are_errors_or_empty_fields_never_panics() {
        for bad in [
            &b""[..],
            b"[]",
            b"null",
            b"\"x\"",
            b"{",
            b"\xff\xfe",
            b"{\"oslo.version\":\"3.0\",\"oslo.message\":\"{}\"}",
        ] {
            assert!(IncomingNotification::decode(bad).is_err(), "{bad:?}");
        }
        let odd = IncomingNotification::decode(
            br#"{"priority": 7, "publisher_id": ["x"], "event_type": {"a": 1}, "message_id": null, "_context_": 1, "payload": NaN}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(odd.priority, None);
        assert_eq!(odd.publisher_id, None);
        assert_eq!(odd.event_type, None);
        assert_eq!(odd.message_id, None);
        assert_eq!(odd.context.get(""), Some(&json!(1)));
        assert!(
            odd.payload.is_string(),
            "NaN is kept as Python's marked value"
        );
        let empty = IncomingNotification::decode(b"{}").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(empty.payload, Value::Null);
        // A repeated key keeps its last value, as Python's json does; unknown keys are ignored;
        // an integer beyond 64 bits, in the payload or the context, is kept as Python wrote it.
        let repeated = IncomingNotification::decode(
            br#"{"event_type": "a", "x": [1], "event_type": "b", "payload": {"n": 123456789012345678901234567890}, "_context_big": -99999999999999999999, "_timeout": 5}"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(repeated.event_type.as_deref(), Some("b"));
        let written = |value: &Value| serde_json::to_string(&Py(value, Mode::Text)).ok();
        assert_eq!(
            written(&repeated.payload).as_deref(),
            Some(r#"{"n":123456789012345678901234567890}"#)
        );
        let big = repeated.context.get("big").unwrap_or(&Value::Null);
        assert_eq!(written(big).as_deref(), Some("-99999999999999999999"));
        assert_eq!(repeated.context.get("client_timeout"), Some(&json!(5)));
    }

    #[test]
    fn timestamps_are_pythons_str_of_a_naive_utc_datetime() {
        assert_eq!(timestamp(0, 0), "1970-01-01 00:00:00");
        assert_eq!(timestamp(0, 1), "1970-01-01 00:00:00.000001");
        // 2026-11-21 13:17:53.278295, the spec's example.
        assert_eq!(
            timestamp(1_795_267_073, 278_295),
            "2026-11-21 13:17:53.278295"
        );
        // Leap day, end of a leap year, the turn of a century.
        assert_eq!(
            timestamp(951_782_400, 500_000),
            "2000-02-29 00:00:00.500000"
        );
        assert_eq!(timestamp(1_735_689_599, 0), "2024-12-31 23:59:59");
        assert_eq!(timestamp(4_107_542_400, 0), "2100-03-01 00:00:00");
        assert_eq!(timestamp(253_402_300_800, 7), "10000-01-01 00:00:00.000007");
        let now = timestamp_now();
        assert!(now.len() == 19 || now.len() == 26, "{now}");
        assert_eq!(&now[10..11], " ");
    }

    #[test]
    fn message_ids_are_uuid4_with_dashes() {
        let id = message_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
        assert_eq!(&id[14..15], "4");
    }
}
