//! The notifier (`notify/notifier.py`, `notify/messaging.py`, `notify/_impl_log.py`): builds
//! the message once, then hands it to its driver for each topic.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;
use tracing::Instrument;

use super::{Notification, Priority};
use crate::context::Context;
use crate::driver::{Destination, PublishOptions};
use crate::error::RpcError;
use crate::telemetry;
use crate::transport::Transport;
use crate::wire::{self, OutgoingNotification};

/// How a [`Notifier`] sends (oslo's `[oslo_messaging_notifications] driver`, by its names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum NotifierDriver {
    /// `messagingv2`: over the transport, in the 2.0 envelope. The default.
    #[default]
    MessagingV2,
    /// `messaging`: over the transport, message format 1.0 (the bare object, no envelope), for
    /// consumers that predate the envelope.
    Messaging,
    /// `log`: nothing is sent; each notification is logged (with `tracing`, target
    /// `oslo.messaging.notification`, field `event_type`) as JSON, values of password-like keys
    /// masked, at its priority's level: `debug`, `info`, `warn`, `error`, and `error` for
    /// `critical`. Python's logger has no `audit` or `sample` level: oslo warns instead and logs
    /// nothing, and so does this.
    Log,
    /// `noop`: nothing is sent or logged.
    Noop,
}

impl NotifierDriver {
    /// oslo's name for it: `messagingv2`, `messaging`, `log`, `noop`.
    pub fn name(self) -> &'static str {
        match self {
            NotifierDriver::MessagingV2 => "messagingv2",
            NotifierDriver::Messaging => "messaging",
            NotifierDriver::Log => "log",
            NotifierDriver::Noop => "noop",
        }
    }

    /// The driver oslo names `name` (`messagingv2`, `messaging`, `log`, `noop`).
    pub fn from_name(name: &str) -> Option<NotifierDriver> {
        [
            NotifierDriver::MessagingV2,
            NotifierDriver::Messaging,
            NotifierDriver::Log,
            NotifierDriver::Noop,
        ]
        .into_iter()
        .find(|d| d.name() == name)
    }
}

/// The topic oslo's notifiers use unless told otherwise (`[oslo_messaging_notifications]
/// topics`).
pub const DEFAULT_TOPIC: &str = "notifications";

/// Sends notifications: oslo's `Notifier`.
///
/// Each notification is built once (`message_id` a uuid4 with dashes, `timestamp` the UTC time
/// as Python's `str(datetime)` writes it) and published to every topic, with routing key
/// `<topic>.<priority>` on the exchange (the transport's control exchange unless
/// [`Notifier::with_exchange`]); publishing declares the queue of that name first, so that
/// notifications wait for listeners that do not exist yet. Each topic's copy has its own
/// `_unique_id`, as oslo's do.
///
/// The context is sent as its `_context_*` keys, as oslo sends an oslo.context
/// `RequestContext` (the Rust [`Context`] stands for one). Python replaces a *plain dict*
/// context by no context at all; send `Context::new()` for that, and leave secrets such as
/// `auth_token` out (oslo sends a redacted copy).
///
/// `with_*` return a modified copy, as oslo's `prepare()` does; cloning is cheap.
///
/// Failures: oslo logs a failed send and never raises. Here the error is logged at ERROR, with
/// the event type, and returned too, for the caller who wants it (`let _ =` keeps oslo's
/// behaviour).
///
/// ```
/// use amqp_rpc::notify::{Notifier, NotifierDriver, Priority};
/// use amqp_rpc::{Context, Transport};
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), amqp_rpc::RpcError> {
/// let transport = Transport::memory();
/// let notifier = Notifier::new(&transport, "compute.host1")
///     .with_topics(["notifications", "designate_sink"])
///     .with_retry(Some(3));
/// let payload = serde_json::json!({"instance_id": "i-1", "state": "active"});
/// notifier.notify(&Context::new(), Priority::Warn, "compute.instance.update", &payload).await?;
/// let legacy = notifier.with_driver(NotifierDriver::Messaging).with_publisher_id("compute.host2");
/// legacy.notify(&Context::new(), Priority::Info, "compute.instance.update", &payload).await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Notifier {
    transport: Transport,
    publisher_id: Option<Arc<str>>,
    topics: Arc<[String]>,
    driver: NotifierDriver,
    retry: Option<u32>,
    exchange: Option<Arc<str>>,
}

impl Notifier {
    /// A notifier on `transport` whose messages carry `publisher_id` (e.g. `compute.host1`):
    /// driver `messagingv2`, topic `notifications`, retrying without limit (oslo's `retry` -1),
    /// on the transport's control exchange.
    pub fn new(transport: &Transport, publisher_id: impl Into<String>) -> Notifier {
        Notifier {
            publisher_id: Some(publisher_id.into().into()),
            ..Notifier::anonymous(transport)
        }
    }

    /// A notifier whose messages carry `"publisher_id": null` (Python's `publisher_id=None`).
    pub fn anonymous(transport: &Transport) -> Notifier {
        Notifier {
            transport: transport.clone(),
            publisher_id: None,
            topics: Arc::new([DEFAULT_TOPIC.to_owned()]),
            driver: NotifierDriver::default(),
            retry: None,
            exchange: None,
        }
    }

    /// The same notifier with another publisher id (oslo's `prepare(publisher_id=...)`).
    #[must_use]
    pub fn with_publisher_id(&self, publisher_id: impl Into<String>) -> Notifier {
        Notifier {
            publisher_id: Some(publisher_id.into().into()),
            ..self.clone()
        }
    }

    /// The same notifier sending to each of `topics` (oslo's `topics`; default
    /// `["notifications"]`). No topic at all sends nothing.
    #[must_use]
    pub fn with_topics<T: Into<String>>(&self, topics: impl IntoIterator<Item = T>) -> Notifier {
        Notifier {
            topics: topics.into_iter().map(Into::into).collect(),
            ..self.clone()
        }
    }

    /// The same notifier with oslo's `retry` (`prepare(retry=...)`): `None` (oslo's -1, the
    /// default) waits for the connection for as long as it takes, `Some(0)` tries once,
    /// `Some(n)` retries `n` times after a lost connection.
    #[must_use]
    pub fn with_retry(&self, retry: Option<u32>) -> Notifier {
        Notifier {
            retry,
            ..self.clone()
        }
    }

    /// The same notifier with another driver (default [`NotifierDriver::MessagingV2`]).
    #[must_use]
    pub fn with_driver(&self, driver: NotifierDriver) -> Notifier {
        Notifier {
            driver,
            ..self.clone()
        }
    }

    /// The same notifier publishing on `exchange` rather than the transport's control
    /// exchange (Python services set their own control exchange: `nova`, `neutron`, ...).
    #[must_use]
    pub fn with_exchange(&self, exchange: impl Into<String>) -> Notifier {
        Notifier {
            exchange: Some(exchange.into().into()),
            ..self.clone()
        }
    }

    /// The publisher id sent, if any.
    pub fn publisher_id(&self) -> Option<&str> {
        self.publisher_id.as_deref()
    }

    /// The topics sent to.
    pub fn topics(&self) -> &[String] {
        &self.topics
    }

    /// The driver.
    pub fn driver(&self) -> NotifierDriver {
        self.driver
    }

    /// Whether notifications go anywhere (oslo's `is_enabled()`): false for `noop` only.
    pub fn is_enabled(&self) -> bool {
        self.driver != NotifierDriver::Noop
    }

    /// Sends a typed notification at `priority`, with its type's event type.
    pub async fn send<N: Notification + Serialize>(
        &self,
        ctx: &Context,
        priority: Priority,
        payload: &N,
    ) -> Result<(), RpcError> {
        self.notify(ctx, priority, N::EVENT_TYPE, payload).await
    }

    /// Sends `payload` (any `Serialize` value, usually a JSON object) as event `event_type` at
    /// `priority`.
    pub async fn notify<P: Serialize + ?Sized>(
        &self,
        ctx: &Context,
        priority: Priority,
        event_type: &str,
        payload: &P,
    ) -> Result<(), RpcError> {
        let span = telemetry::notify_span(event_type, priority.as_lower());
        let sent = self
            .notify_inner(ctx, priority, event_type, payload)
            .instrument(span.clone())
            .await;
        telemetry::record_client(&span, sent.as_ref().err());
        if let Err(e) = &sent {
            tracing::error!(
                event_type,
                priority = priority.as_upper(),
                driver = self.driver.name(),
                error = %e,
                "could not send notification"
            );
        }
        sent
    }

    async fn notify_inner<P: Serialize + ?Sized>(
        &self,
        ctx: &Context,
        priority: Priority,
        event_type: &str,
        payload: &P,
    ) -> Result<(), RpcError> {
        if self.driver == NotifierDriver::Noop {
            return Ok(());
        }
        // The trace context goes in as oslo's RPC client puts it (oslo's notifier sends none).
        let traced = telemetry::traced(ctx);
        let ctx = traced.as_ref().unwrap_or(ctx);
        let message_id = wire::notification_message_id();
        let timestamp = wire::timestamp_now();
        let common = OutgoingNotification {
            message_id: &message_id,
            publisher_id: self.publisher_id.as_deref(),
            event_type,
            priority: priority.as_upper(),
            payload,
            timestamp: &timestamp,
            unique_id: "",
            context: ctx,
        };
        if self.driver == NotifierDriver::Log {
            let logged = common
                .log_value()
                .map_err(|e| RpcError::encode("notification", e))?;
            log(priority, event_type, &mask_passwords(logged));
            return Ok(());
        }
        let mut routing_key = String::new();
        for topic in self.topics.iter() {
            // Each topic's copy has its own `_unique_id`, as oslo's `_send` adds one per send.
            let unique_id = wire::new_id().text();
            let message = OutgoingNotification {
                unique_id: unique_id.as_str(),
                ..common
            };
            let body = match self.driver {
                NotifierDriver::Messaging => message.encode_v1(),
                _ => message.encode_v2(),
            };
            let body = Bytes::from(body.map_err(|e| RpcError::encode("notification", e))?);
            routing_key.clear();
            routing_key.push_str(topic);
            routing_key.push('.');
            routing_key.push_str(priority.as_lower());
            let to = Destination::Notification {
                exchange: self.exchange.as_deref(),
                routing_key: &routing_key,
            };
            self.transport
                .publish(
                    to,
                    &body,
                    PublishOptions::default(),
                    self.retry,
                    Duration::MAX,
                )
                .await?;
        }
        Ok(())
    }
}

macro_rules! typed_priority {
    ($($(#[$doc:meta])* $name:ident => $priority:ident;)*) => {
        impl Notifier {
            $(
                $(#[$doc])*
                pub async fn $name<N: Notification + Serialize>(
                    &self,
                    ctx: &Context,
                    payload: &N,
                ) -> Result<(), RpcError> {
                    self.send(ctx, Priority::$priority, payload).await
                }
            )*
        }
    };
}

typed_priority! {
    /// Sends `payload` at `AUDIT`.
    audit => Audit;
    /// Sends `payload` at `DEBUG`.
    debug => Debug;
    /// Sends `payload` at `INFO`.
    info => Info;
    /// Sends `payload` at `WARN` (Python's `warn` and `warning`).
    warn => Warn;
    /// Sends `payload` at `ERROR`.
    error => Error;
    /// Sends `payload` at `CRITICAL`.
    critical => Critical;
    /// Sends `payload` at `SAMPLE`.
    sample => Sample;
}

/// Logs a notification as the `log` driver does.
fn log(priority: Priority, event_type: &str, message: &Value) {
    const TARGET: &str = "oslo.messaging.notification";
    let text = message.to_string();
    match priority {
        Priority::Debug => tracing::debug!(target: TARGET, event_type, "{text}"),
        Priority::Info => tracing::info!(target: TARGET, event_type, "{text}"),
        Priority::Warn => tracing::warn!(target: TARGET, event_type, "{text}"),
        Priority::Error | Priority::Critical => {
            tracing::error!(target: TARGET, event_type, "{text}")
        }
        Priority::Audit | Priority::Sample => tracing::warn!(
            "Unable to log message as notify cannot find a logger with the priority specified {}",
            priority.as_lower()
        ),
    }
}

/// Key fragments whose values oslo.utils' `mask_dict_password` hides (its `_SANITIZE_KEYS`).
const SECRET_KEYS: &[&str] = &[
    "adminpass",
    "admin_pass",
    "password",
    "admin_password",
    "auth_token",
    "new_pass",
    "auth_password",
    "secret_uuid",
    "secret",
    "sys_pswd",
    "token",
    "configdrive",
    "chappassword",
    "encrypted_key",
    "private_key",
    "fernetkey",
    "sslkey",
    "passphrase",
    "keystone_password",
    "vip_password",
];

/// `value` with the values of password-like keys replaced by `***`, at any depth.
fn mask_passwords(value: Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let lower = key.to_lowercase();
                    let secret = SECRET_KEYS.iter().any(|s| lower.contains(s));
                    let value = match (secret, value) {
                        (true, Value::String(_)) => Value::String("***".to_owned()),
                        (_, value) => mask_passwords(value),
                    };
                    (key, value)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(mask_passwords).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn driver_names_are_oslos() {
        for driver in [
            NotifierDriver::MessagingV2,
            NotifierDriver::Messaging,
            NotifierDriver::Log,
            NotifierDriver::Noop,
        ] {
            assert_eq!(NotifierDriver::from_name(driver.name()), Some(driver));
        }
        assert_eq!(NotifierDriver::from_name("routing"), None);
        assert_eq!(NotifierDriver::default().name(), "messagingv2");
    }

    #[test]
    fn password_like_values_are_masked_at_any_depth() {
        let masked = mask_passwords(json!({
            "payload": {"admin_password": "p", "nested": [{"Auth_Token": "t"}], "name": "n"},
            "password": {"not": "a string"}
        }));
        assert_eq!(
            masked,
            json!({
                "payload": {"admin_password": "***", "nested": [{"Auth_Token": "***"}], "name": "n"},
                "password": {"not": "a string"}
            })
        );
    }

    #[test]
    fn prepare_overrides_leave_the_original_as_it_was() {
        let transport = Transport::memory();
        let base = Notifier::new(&transport, "a");
        let other = base
            .with_publisher_id("b")
            .with_topics(["x", "y"])
            .with_retry(Some(0))
            .with_driver(NotifierDriver::Noop);
        assert_eq!(base.publisher_id(), Some("a"));
        assert_eq!(base.topics(), ["notifications"]);
        assert!(base.is_enabled());
        assert_eq!(other.publisher_id(), Some("b"));
        assert_eq!(other.topics(), ["x", "y"]);
        assert!(!other.is_enabled());
        assert_eq!(Notifier::anonymous(&transport).publisher_id(), None);
    }
}
