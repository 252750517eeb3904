//! The `rabbit://` driver on lapin, with oslo.messaging's topology, message properties and
//! acknowledgement rules (spec §1–§3), on a connection that restores itself (addenda §1).
//!
//! * `link`: the connection, its hosts, failover and back-off, and its state;
//! * `subscription`: listeners that declare and consume again after a loss;
//! * `topology`: what listeners declare, as data;
//! * `backoff`: oslo's reconnection schedule; `tls`: the TLS settings.
//!
//! Publishing shares one confirm-mode channel per connection, replaced if the broker closes it;
//! exchanges are declared once per channel before their first publish, as oslo does. Each
//! listener has a channel of its own, so that its prefetch is its own and closing it returns its
//! unacknowledged deliveries to their queues.

mod backoff;
mod link;
mod subscription;
mod tls;
mod topology;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::protocol::AMQPErrorKind;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, ErrorKind};
use tokio::sync::watch;

use super::{
    ConnectionState, Destination, Driver, NotificationBinding, PublishOptions, ReplyQueue,
    Subscription,
};
use crate::config::TransportConfig;
use crate::error::TransportError;
use crate::sync::lock;
use crate::target::Target;
use crate::url::TransportUrl;
use link::{Link, Live};
use subscription::RecoveringSubscription;
use topology::{Entity, Plan};

/// What a lapin error means for the operation that got it.
///
/// | lapin error | failure | [`TransportError`] | retryable |
/// |---|---|---|---|
/// | any, while the connection is not open | `Connection` | `ConnectionLost` | yes |
/// | `IOError`, `MissingHeartbeatError`, `InvalidConnectionState` | `Connection` | `ConnectionLost` | yes |
/// | `ProtocolError`, hard (connection) AMQP error | `Connection` | `ConnectionLost` | yes |
/// | `ProtocolError`, soft (channel) AMQP error | `Channel` | `Broker { code, text }` | `RESOURCE_LOCKED` only |
/// | `InvalidChannel`, `InvalidChannelState` | `ChannelGone` | `ChannelClosed` | yes |
/// | anything else (`ChannelsLimitReached`, `ParsingError`, `RuntimeShutdownError`, ...) | `Other` | `Driver` | lapin's `can_be_recovered()` |
#[derive(Debug)]
enum Failure {
    /// The connection is gone: report it lost, and wait for the next one.
    Connection(String),
    /// The broker closed the channel with a soft error (such as 404 or 406).
    Channel { code: u16, text: String },
    /// The channel was closed earlier; the connection is fine.
    ChannelGone(String),
    /// Anything else.
    Other(lapin::Error),
}

impl Failure {
    fn into_error(self) -> TransportError {
        match self {
            Failure::Connection(reason) => TransportError::ConnectionLost { reason },
            Failure::Channel { code, text } => TransportError::Broker { code, text },
            Failure::ChannelGone(reason) => TransportError::ChannelClosed { reason },
            Failure::Other(e) => {
                let retryable = e.can_be_recovered();
                TransportError::driver(e, retryable)
            }
        }
    }
}

/// Classifies an error of an operation on connection `live`.
fn classify(e: &lapin::Error, live: &Live) -> Failure {
    if !live.connection.status().connected() {
        return Failure::Connection(e.to_string());
    }
    failure_of(e)
}

/// What an error says by itself, the connection aside.
fn failure_of(e: &lapin::Error) -> Failure {
    match e.kind() {
        ErrorKind::ProtocolError(amqp) => match amqp.kind() {
            AMQPErrorKind::Soft(_) => Failure::Channel {
                code: amqp.get_id(),
                text: amqp.get_message().to_string(),
            },
            AMQPErrorKind::Hard(_) => Failure::Connection(e.to_string()),
        },
        ErrorKind::IOError(_)
        | ErrorKind::MissingHeartbeatError
        | ErrorKind::InvalidConnectionState(_) => Failure::Connection(e.to_string()),
        ErrorKind::InvalidChannelState(..) | ErrorKind::InvalidChannel(_) => {
            Failure::ChannelGone(e.to_string())
        }
        // `RuntimeShutdownError` is an I/O error to lapin's `is_io_error()`, but nothing is
        // to be recovered once the runtime is going away: `can_be_recovered()` says no.
        _ => Failure::Other(e.clone()),
    }
}

/// A lapin error without the connection at hand (acknowledgements).
fn driver_error(e: lapin::Error) -> TransportError {
    failure_of(&e).into_error()
}

/// The `rabbit://` driver: one AMQP connection, restored when lost.
pub struct RabbitDriver {
    link: Link,
    publisher: Mutex<Option<Arc<PublishChannel>>>,
    /// Serializes opening a publish channel (the rare, slow path).
    opening: tokio::sync::Mutex<()>,
    /// The channel that asks whether reply queues exist, of its connection; held by one
    /// question at a time, since a missing queue closes it (404).
    probe: tokio::sync::Mutex<Option<(Arc<Live>, Channel)>>,
}

impl std::fmt::Debug for RabbitDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitDriver")
            .field("state", &*self.link.state().borrow())
            .field("control_exchange", &self.config().control_exchange)
            .finish_non_exhaustive()
    }
}

/// The publish channel of one connection and the exchanges declared on it.
struct PublishChannel {
    live: Arc<Live>,
    channel: Channel,
    declared: Mutex<HashSet<String>>,
}

impl PublishChannel {
    fn is_usable(&self) -> bool {
        self.channel.status().connected() && self.live.is_usable()
    }
}

impl RabbitDriver {
    /// Connects to the first of the URL's hosts, in oslo's order (shuffled once, then the
    /// failover strategy), that accepts the connection within `connect_timeout`; fails with
    /// [`TransportError::Unreachable`], naming each host tried and why, if none does. Once
    /// connected, the connection is restored whenever it is lost, until closed.
    pub async fn connect(
        url: &TransportUrl,
        config: TransportConfig,
    ) -> Result<Self, TransportError> {
        Ok(RabbitDriver {
            link: Link::connect(url, config).await?,
            publisher: Mutex::new(None),
            opening: tokio::sync::Mutex::new(()),
            probe: tokio::sync::Mutex::new(None),
        })
    }

    fn config(&self) -> &TransportConfig {
        self.link.config()
    }

    /// The connection now; `ConnectionLost` while reconnecting.
    fn live(&self) -> Result<Arc<Live>, TransportError> {
        self.link
            .live()
            .ok_or_else(|| TransportError::ConnectionLost {
                reason: "not connected (reconnecting)".to_owned(),
            })
    }

    /// The publish channel of the connection now; `ConnectionLost` while reconnecting.
    async fn publish_channel(&self) -> Result<Arc<PublishChannel>, TransportError> {
        let usable = |c: &Option<Arc<PublishChannel>>| c.clone().filter(|c| c.is_usable());
        if let Some(channel) = usable(&lock(&self.publisher)) {
            return Ok(channel);
        }
        let _opening = self.opening.lock().await;
        if let Some(channel) = usable(&lock(&self.publisher)) {
            return Ok(channel);
        }
        let live = self.live()?;
        let first = lock(&live.first_channel).take();
        let channel = match first {
            Some(channel) => channel,
            None => self.open_publish_channel(&live).await?,
        };
        let channel = Arc::new(PublishChannel {
            live,
            channel,
            declared: Mutex::new(HashSet::new()),
        });
        *lock(&self.publisher) = Some(Arc::clone(&channel));
        Ok(channel)
    }

    async fn open_publish_channel(&self, live: &Arc<Live>) -> Result<Channel, TransportError> {
        let opened = async {
            let channel = live.connection.create_channel().await?;
            // Publisher confirms: the one item of oslo's contract that costs much (0.79–0.88×
            // plain lapin's calls/s and a quarter more broker CPU per call, `bench/PROFILING.md`,
            // "Pricing oslo's contract"). Kept: only a confirm tells that a publish failed
            // (a nack, or the connection lost before it), and oslo fails the call, cast or
            // notification then, or sends it again under `retry` (spec §2, §6).
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
            Ok(channel)
        };
        opened.await.map_err(|e| self.fail(&e, live))
    }

    /// The error to return for `e` on `live`; reports the connection lost if it is.
    fn fail(&self, e: &lapin::Error, live: &Live) -> TransportError {
        let failure = classify(e, live);
        if let Failure::Connection(reason) = &failure {
            self.link.report_lost(live, reason.clone());
        }
        failure.into_error()
    }

    /// One publish on the connection's publish channel: declares the exchange the first time,
    /// publishes, and waits for the broker's confirm.
    async fn publish_once(
        &self,
        publisher: &PublishChannel,
        to: Destination<'_>,
        body: &[u8],
        options: PublishOptions,
    ) -> Result<Confirmation, lapin::Error> {
        let mut scratch = String::new();
        let (exchange, routing_key) = to.address_in(&self.config().control_exchange, &mut scratch);
        if !exchange.is_empty() && !lock(&publisher.declared).contains(exchange) {
            let entity = match to {
                Destination::Fanout { .. } => Entity::fanout_exchange(self.config(), exchange),
                _ => Entity::control_exchange(self.config(), exchange),
            };
            entity.declare(&publisher.channel).await?;
            lock(&publisher.declared).insert(exchange.to_owned());
        }
        if let Destination::Notification { .. } = to {
            // oslo's `_publish_and_creates_default_queue`: the queue `<topic>.<priority>`,
            // bound with that key, once per channel. The exchange's name ends the key: a
            // queue name is never empty, and an exchange cannot hold a NUL.
            let declared = format!("{routing_key}\0{exchange}");
            if !lock(&publisher.declared).contains(&declared) {
                let config = self.config();
                Entity::topic_queue(config, routing_key)
                    .declare(&publisher.channel)
                    .await?;
                Entity::binding(routing_key, exchange, routing_key)
                    .declare(&publisher.channel)
                    .await?;
                lock(&publisher.declared).insert(declared);
            }
        }
        publisher
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: options.mandatory,
                    immediate: false,
                },
                body,
                properties(&options),
            )
            .await?
            .await
    }
}

/// The properties Python gives every message (spec §1.1).
///
/// Persistent delivery mode on messages to transient queues, and the rest of these, measured
/// within the noise of plain lapin's figures (issue 19's pricing, `bench/PROFILING.md`); a
/// Python peer sees them on every message it reads, so they stay.
fn properties(options: &PublishOptions) -> BasicProperties {
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(2)
        .with_priority(0)
        .with_headers(FieldTable::default());
    match options.expiration {
        // RabbitMQ takes up to 2^32 - 1 ms (49 days); a longer timeout just does not expire.
        Some(ttl) => {
            let millis = ttl.as_millis().min(u128::from(u32::MAX));
            properties.with_expiration(millis.to_string().into())
        }
        None => properties,
    }
}

#[async_trait]
impl Driver for RabbitDriver {
    async fn publish(
        &self,
        to: Destination<'_>,
        body: Bytes,
        options: PublishOptions,
    ) -> Result<(), TransportError> {
        // A channel the broker closed (an auto-delete fanout exchange deleted since it was
        // declared on it gives 404) is replaced, and the message published on the new one,
        // where the exchange is declared again.
        let mut fresh_channel_tried = false;
        let confirmation = loop {
            let publisher = self.publish_channel().await?;
            match self.publish_once(&publisher, to, &body, options).await {
                Ok(confirmation) => break confirmation,
                Err(e) => match classify(&e, &publisher.live) {
                    Failure::Channel { code: 404, .. } | Failure::ChannelGone(_)
                        if !fresh_channel_tried =>
                    {
                        fresh_channel_tried = true;
                    }
                    _ => return Err(self.fail(&e, &publisher.live)),
                },
            }
        };
        // The address is built again only for an error's text: most publishes need none.
        let address = || to.address(&self.config().control_exchange);
        match confirmation {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)) => {
                let (exchange, routing_key) = address();
                Err(TransportError::NoRoute {
                    exchange,
                    routing_key,
                })
            }
            Confirmation::Nack(None) => Err(TransportError::Refused {
                exchange: address().0,
            }),
        }
    }

    /// A passive `queue.declare`, on a channel of its own: a missing queue is a 404, which
    /// closes the channel (lapin and the broker each log that in one short line), so the
    /// next question opens another. Publishing instead would have the broker return the whole
    /// reply, which lapin logs at WARN with its body.
    async fn reply_queue_exists(&self, queue: &str) -> Result<bool, TransportError> {
        if queue.len() > super::LONGEST_NAME {
            return Ok(false);
        }
        let mut probe = self.probe.lock().await;
        let (live, channel) = match &*probe {
            Some((live, channel)) if live.is_usable() && channel.status().connected() => {
                (Arc::clone(live), channel.clone())
            }
            _ => {
                let live = self.live()?;
                let channel = live
                    .connection
                    .create_channel()
                    .await
                    .map_err(|e| self.fail(&e, &live))?;
                *probe = Some((Arc::clone(&live), channel.clone()));
                (live, channel)
            }
        };
        let options = QueueDeclareOptions {
            passive: true,
            ..QueueDeclareOptions::default()
        };
        let declared = channel
            .queue_declare(queue.into(), options, FieldTable::default())
            .await;
        match declared {
            Ok(_) => Ok(true),
            Err(e) => match classify(&e, &live) {
                Failure::Channel { code: 404, .. } => Ok(false),
                // 405: the queue exists, exclusive to its consumer's connection. Other refusals
                // (access) do not say: a publish will.
                Failure::Channel { .. } => Ok(true),
                _ => Err(self.fail(&e, &live)),
            },
        }
    }

    async fn listen_rpc(
        &self,
        target: &Target,
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, TransportError> {
        let (topic, server) = target.topic_and_server()?;
        let config = self.config();
        let exchange = target.exchange().unwrap_or(&config.control_exchange);
        let server_queue = super::server_queue(topic, server);
        let fanout_exchange = super::fanout_exchange(topic);
        let fanout_queue = format!("{fanout_exchange}_{}", crate::wire::new_id());
        let plan = Plan {
            entities: vec![
                Entity::control_exchange(config, exchange),
                Entity::topic_queue(config, topic),
                Entity::binding(topic, exchange, topic),
                Entity::topic_queue(config, &server_queue),
                Entity::binding(&server_queue, exchange, &server_queue),
                Entity::fanout_exchange(config, &fanout_exchange),
                Entity::transient_queue(config, &fanout_queue),
                Entity::binding(&fanout_queue, &fanout_exchange, topic),
            ],
            queues: vec![topic.to_owned(), server_queue.clone(), fanout_queue.clone()],
            prefetch: match config.rabbit_qos_prefetch_count {
                0 => prefetch,
                configured => configured,
            },
            owned_queue: Some(fanout_queue),
        };
        let subscription = RecoveringSubscription::start(self.link.clone(), plan).await?;
        Ok(Box::new(subscription))
    }

    async fn listen_notifications(
        &self,
        bindings: &[NotificationBinding<'_>],
        pool: Option<&str>,
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, TransportError> {
        let config = self.config();
        let mut entities = Vec::new();
        let mut exchanges: Vec<&str> = Vec::new();
        let mut queues: Vec<String> = Vec::new();
        for binding in bindings {
            let exchange = binding.exchange.unwrap_or(&config.control_exchange);
            if !exchanges.contains(&exchange) {
                exchanges.push(exchange);
                entities.push(Entity::control_exchange(config, exchange));
            }
            let queue = pool.unwrap_or(binding.routing_key);
            if !queues.iter().any(|q| q == queue) {
                queues.push(queue.to_owned());
                entities.push(Entity::topic_queue(config, queue));
            }
            entities.push(Entity::binding(queue, exchange, binding.routing_key));
        }
        let plan = Plan {
            entities,
            // One consumer per queue: oslo has one per binding, several on a pool's queue,
            // which changes nothing a listener sees (one channel, one prefetch).
            queues,
            prefetch: match config.rabbit_qos_prefetch_count {
                0 => prefetch,
                configured => configured,
            },
            // Notification queues outlive their listeners.
            owned_queue: None,
        };
        let subscription = RecoveringSubscription::start(self.link.clone(), plan).await?;
        Ok(Box::new(subscription))
    }

    async fn listen_replies(&self) -> Result<ReplyQueue, TransportError> {
        let name = super::reply_queue_name();
        let config = self.config();
        let plan = Plan {
            entities: vec![Entity::transient_queue(config, &name)],
            // Replies are acknowledged on receipt, as oslo does, and not consumed without
            // acknowledgements: the broker would forget a reply as it sends it, and one sent as
            // the connection drops would be lost (a call in flight then timed out about once
            // in 25 cuts); unacknowledged, it comes again on the new connection. The
            // acknowledgements measured within the noise (issue 19's pricing,
            // `bench/PROFILING.md`).
            queues: vec![name.clone()],
            prefetch: config.rabbit_qos_prefetch_count,
            // Reply queues are left to expire, as oslo does.
            owned_queue: None,
        };
        let subscription = RecoveringSubscription::start(self.link.clone(), plan).await?;
        Ok(ReplyQueue {
            subscription: Box::new(subscription),
            name,
        })
    }

    fn connection_state(&self) -> watch::Receiver<ConnectionState> {
        self.link.state()
    }

    async fn close(&self) {
        self.link.close().await;
    }
}

impl Drop for RabbitDriver {
    fn drop(&mut self) {
        // The link's supervisor task would otherwise keep the connection open.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let link = self.link.clone();
            drop(runtime.spawn(async move { link.close().await }));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::Arc;

    use lapin::protocol::{AMQPError, AMQPHardError, AMQPSoftError};
    use lapin::{ChannelState, ConnectionState};

    use super::*;

    /// The error an operation reports for a lapin error of `kind`, its connection aside.
    fn error_of(kind: ErrorKind) -> TransportError {
        failure_of(&lapin::Error::from(kind)).into_error()
    }

    fn amqp(kind: AMQPErrorKind, text: &str) -> ErrorKind {
        ErrorKind::ProtocolError(AMQPError::new(kind, text.into()))
    }

    #[test]
    fn connection_failures_are_connection_lost_and_retryable() {
        for kind in [
            ErrorKind::IOError(Arc::new(io::Error::from(io::ErrorKind::ConnectionReset))),
            ErrorKind::MissingHeartbeatError,
            ErrorKind::InvalidConnectionState(ConnectionState::Closed),
            amqp(
                AMQPErrorKind::Hard(AMQPHardError::CONNECTIONFORCED),
                "CONNECTION_FORCED - cut by hand",
            ),
        ] {
            let error = error_of(kind);
            assert!(
                matches!(error, TransportError::ConnectionLost { .. }),
                "{error:?}"
            );
            assert!(error.is_retryable(), "{error:?}");
        }
    }

    #[test]
    fn channel_errors_are_broker_refusals_with_their_code() {
        let error = error_of(amqp(
            AMQPErrorKind::Soft(AMQPSoftError::PRECONDITIONFAILED),
            "PRECONDITION_FAILED - inequivalent arg 'durable'",
        ));
        assert!(
            matches!(&error, TransportError::Broker { code: 406, text } if text.contains("inequivalent")),
            "{error:?}"
        );
        assert!(
            !error.is_retryable(),
            "a refusal by the broker's rules stays refused"
        );
        for (soft, code) in [
            (AMQPSoftError::ACCESSREFUSED, 403),
            (AMQPSoftError::NOTFOUND, 404),
        ] {
            let error = error_of(amqp(AMQPErrorKind::Soft(soft), "refused"));
            assert!(
                matches!(error, TransportError::Broker { code: c, .. } if c == code),
                "{error:?}"
            );
            assert!(!error.is_retryable(), "{error:?}");
        }
        // Another connection holds the exclusive queue: it may let it go.
        let locked = error_of(amqp(
            AMQPErrorKind::Soft(AMQPSoftError::RESOURCELOCKED),
            "RESOURCE_LOCKED - cannot obtain exclusive access",
        ));
        assert!(
            matches!(locked, TransportError::Broker { code: 405, .. }),
            "{locked:?}"
        );
        assert!(locked.is_retryable());
    }

    #[test]
    fn a_closed_channel_is_not_a_lost_connection() {
        for kind in [
            ErrorKind::InvalidChannelState(ChannelState::Closed, "basic.ack"),
            ErrorKind::InvalidChannel(7),
        ] {
            let error = error_of(kind);
            assert!(
                matches!(error, TransportError::ChannelClosed { .. }),
                "{error:?}"
            );
            assert!(error.is_retryable(), "{error:?}");
        }
    }

    #[tokio::test]
    async fn a_url_without_hosts_is_no_hosts() {
        let url = TransportUrl::parse("memory:///").unwrap_or_else(|e| panic!("{e}"));
        assert!(url.hosts().is_empty());
        let connected = RabbitDriver::connect(&url, TransportConfig::default()).await;
        assert!(
            matches!(connected, Err(TransportError::NoHosts)),
            "{connected:?}"
        );
    }

    #[test]
    fn other_lapin_errors_are_retryable_as_lapin_judges_them() {
        for kind in [
            ErrorKind::ChannelsLimitReached,
            ErrorKind::RuntimeShutdownError(Arc::new(io::Error::other("runtime gone"))),
            ErrorKind::AuthProviderError("no token".to_owned()),
            ErrorKind::FutureCompleted,
        ] {
            let lapin_says = lapin::Error::from(kind.clone()).can_be_recovered();
            let error = error_of(kind);
            assert!(
                matches!(error, TransportError::Driver { retryable, .. } if retryable == lapin_says),
                "{error:?}"
            );
            assert!(!error.is_retryable(), "{error:?}");
        }
    }
}
