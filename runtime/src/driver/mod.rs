//! Drivers: the interface that moves encoded messages between this process and a messaging
//! system (`memory://` in-process, `rabbit://` on lapin), below the user's
//! [`Transport`](crate::Transport).
//!
//! A driver knows the oslo topology (topic and server queues, fanout, reply queues) and its own
//! connection, but nothing of requests, replies, clients or servers: it moves bytes the
//! [`crate::wire`] module produced, and hands them back as acknowledgeable [`Delivery`]s.

#[cfg(feature = "rabbit")]
pub mod amqp;
pub mod memory;

use std::fmt;
use std::sync::Weak;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::stream::{FuturesUnordered, StreamExt};
use tokio::sync::watch;

use crate::error::TransportError;
use crate::target::Target;

/// The state of a driver's connection, as [`Transport::connection_state`] reports it (for
/// readiness and liveness probes).
///
/// [`Transport::connection_state`]: crate::Transport::connection_state
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectionState {
    /// Connected, to `host` (`user:****@host:port`, or `memory` for the in-process driver).
    Connected {
        /// The broker, password masked.
        host: String,
    },
    /// The connection was lost and is being restored; operations wait for it (within their
    /// deadlines).
    Reconnecting {
        /// Connection attempts that failed since the loss.
        attempts: u32,
        /// Why the connection was lost, or why the last attempt failed.
        reason: String,
    },
    /// Closed by the application: every operation fails with [`TransportError::Closed`].
    Closed,
}

impl ConnectionState {
    /// Whether operations can run now.
    pub fn is_connected(&self) -> bool {
        matches!(self, ConnectionState::Connected { .. })
    }
}

impl fmt::Display for ConnectionState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectionState::Connected { host } => write!(f, "connected to {host}"),
            ConnectionState::Reconnecting { attempts, reason } => {
                write!(f, "reconnecting ({attempts} failed attempts): {reason}")
            }
            ConnectionState::Closed => f.write_str("closed"),
        }
    }
}

/// Where a published message goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Destination<'a> {
    /// The topic queue `<topic>`, or with a server the queue `<topic>.<server>`, through
    /// `exchange` (`None`: the control exchange).
    Rpc {
        /// The exchange; `None` means the transport's control exchange.
        exchange: Option<&'a str>,
        /// The topic.
        topic: &'a str,
        /// The server, for a directed message.
        server: Option<&'a str>,
    },
    /// Every server listening on `topic`, through the `<topic>_fanout` exchange.
    Fanout {
        /// The topic.
        topic: &'a str,
    },
    /// A caller's reply queue, through the default exchange.
    Reply {
        /// The reply queue name (`_reply_q` of the request).
        queue: &'a str,
    },
    /// A notification, through `exchange` (`None`: the control exchange) with `routing_key`
    /// `<topic>.<priority>`. Publishing one first declares the queue named `routing_key`,
    /// bound with that key (once per channel), as oslo's notifier does, so that notifications
    /// sent before any listener exists are kept (spec §5.1).
    Notification {
        /// The exchange; `None` means the transport's control exchange.
        exchange: Option<&'a str>,
        /// `<topic>.<priority>`, also the name of the queue declared.
        routing_key: &'a str,
    },
}

/// One binding of a notification listener: `routing_key` (`<topic>.<priority>`) on
/// `exchange` (`None`: the control exchange).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct NotificationBinding<'a> {
    /// The exchange; `None` means the transport's control exchange.
    pub exchange: Option<&'a str>,
    /// The routing key, `<topic>.<priority>`.
    pub routing_key: &'a str,
}

/// The queue of one server of `topic` (oslo: `<topic>.<server>`), also its routing key.
pub(crate) fn server_queue(topic: &str, server: &str) -> String {
    let mut name = String::new();
    push_server_queue(&mut name, topic, server);
    name
}

fn push_server_queue(name: &mut String, topic: &str, server: &str) {
    name.push_str(topic);
    name.push('.');
    name.push_str(server);
}

/// The fanout exchange of `topic` (oslo: `<topic>_fanout`, whatever the control exchange).
pub(crate) fn fanout_exchange(topic: &str) -> String {
    let mut name = String::new();
    push_fanout_exchange(&mut name, topic);
    name
}

fn push_fanout_exchange(name: &mut String, topic: &str) {
    name.push_str(topic);
    name.push_str("_fanout");
}

/// AMQP's limit on the name of a queue or exchange, and on a routing key (a short string):
/// no queue has a longer name, and lapin panics on one.
pub(crate) const LONGEST_NAME: usize = 255;

/// A new reply queue's name (oslo: `reply_<32 hex digits>`).
pub(crate) fn reply_queue_name() -> String {
    format!("reply_{}", crate::wire::new_id())
}

impl<'a> Destination<'a> {
    /// The exchange and routing key oslo publishes such a message with (spec §2.2):
    /// `control_exchange` stands for an RPC destination naming no exchange, and `""` is the
    /// default exchange.
    pub(crate) fn address(&self, control_exchange: &str) -> (String, String) {
        let mut scratch = String::new();
        let (exchange, key) = self.address_in(control_exchange, &mut scratch);
        (exchange.to_owned(), key.to_owned())
    }

    /// [`Destination::address`], borrowed from the destination, `control_exchange` or
    /// `scratch`, which holds a name that has to be built (so that, reused, it allocates
    /// nothing once warm).
    pub(crate) fn address_in<'b>(
        &self,
        control_exchange: &'b str,
        scratch: &'b mut String,
    ) -> (&'b str, &'b str)
    where
        'a: 'b,
    {
        match *self {
            Destination::Rpc {
                exchange,
                topic,
                server,
            } => {
                // Through the control exchange (a topic exchange), never the default one:
                // Python servers bind their queues there, and only there. It costs the broker
                // 8–10% more CPU per call than the default exchange's direct lookup (issue 19's
                // pricing, `bench/PROFILING.md`).
                let exchange = exchange.unwrap_or(control_exchange);
                let Some(server) = server else {
                    return (exchange, topic);
                };
                scratch.clear();
                push_server_queue(scratch, topic, server);
                (exchange, scratch.as_str())
            }
            Destination::Fanout { topic } => {
                scratch.clear();
                push_fanout_exchange(scratch, topic);
                (scratch.as_str(), "")
            }
            Destination::Reply { queue } => ("", queue),
            Destination::Notification {
                exchange,
                routing_key,
            } => (exchange.unwrap_or(control_exchange), routing_key),
        }
    }
}

/// How a message is published.
///
/// ```
/// use std::time::Duration;
/// use amqp_rpc::driver::PublishOptions;
/// let options = PublishOptions::default()
///     .with_expiration(Duration::from_secs(60))
///     .with_mandatory(true);
/// assert_eq!(options.expiration, Some(Duration::from_secs(60)));
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PublishOptions {
    /// Drop the message if it is not consumed within this time (AMQP `expiration`); set on
    /// call requests only. Default `None`: the message waits in its queue for as long as it
    /// takes.
    pub expiration: Option<Duration>,
    /// Fail with [`TransportError::NoRoute`] when no queue receives the message. Default
    /// `false`: an unroutable message is dropped by the broker, as oslo's casts are.
    pub mandatory: bool,
}

impl PublishOptions {
    /// Sets [`PublishOptions::expiration`].
    #[must_use]
    pub fn with_expiration(mut self, ttl: Duration) -> Self {
        self.expiration = Some(ttl);
        self
    }

    /// Sets [`PublishOptions::mandatory`].
    #[must_use]
    pub fn with_mandatory(mut self, mandatory: bool) -> Self {
        self.mandatory = mandatory;
        self
    }
}

/// The acknowledgement of one delivery.
///
/// Dropping it without calling a method leaves the message unacknowledged: the driver returns
/// it to its queue when the subscription ends, as a broker does when a channel closes.
#[async_trait]
pub trait Acker: Send + fmt::Debug {
    /// The message was taken; the broker forgets it.
    async fn ack(self: Box<Self>) -> Result<(), TransportError>;
    /// The message is refused; with `requeue` it goes back to its queue.
    async fn reject(self: Box<Self>, requeue: bool) -> Result<(), TransportError>;
}

/// A message received from a queue, not yet acknowledged.
#[derive(Debug)]
pub struct Delivery {
    /// The AMQP body.
    pub body: Bytes,
    /// Its acknowledgement.
    pub acker: Box<dyn Acker>,
}

/// A stream of deliveries from one or more queues of one listener.
///
/// Dropping it cancels its consumers; deliveries not yet acknowledged go back to their queues.
#[async_trait]
pub trait Subscription: Send + fmt::Debug {
    /// The next delivery; an error means the subscription has ended and will deliver nothing
    /// more: [`TransportError::Closed`] once the transport is closed, or
    /// [`TransportError::SubscriptionEnded`] from a driver that cannot restore its consumers.
    /// A driver that reconnects restores the subscription's consumers itself.
    async fn next(&mut self) -> Result<Delivery, TransportError>;

    /// Cancels the consumers and waits until the broker has them back: deliveries not
    /// acknowledged return to their queues. Dropping does the same without waiting.
    async fn close(self: Box<Self>) {}
}

/// A caller's reply queue and its consumer.
#[derive(Debug)]
pub struct ReplyQueue {
    /// The queue name, sent as `_reply_q`.
    pub name: String,
    /// Deliveries of the queue.
    pub subscription: Box<dyn Subscription>,
}

/// Takes the messages of a reply queue as a driver delivers them, in whatever task it delivers
/// them from (the `memory://` driver calls it in the publisher's task): it must not block.
pub trait ReplyHandler: Send + Sync + 'static {
    /// A message arrived on the reply queue, which is consumed without acknowledgements.
    fn on_message(&self, body: Bytes);
    /// The queue's consumer ended, with the error its subscription ended with (as a rule
    /// [`TransportError::Closed`]): nothing more arrives.
    fn on_end(&self, error: TransportError);
}

/// A reply queue consumed into a [`ReplyHandler`]; dropping it cancels the consumer.
pub struct ReplyConsumer {
    /// The queue name, sent as `_reply_q`.
    pub name: String,
    /// Dropped with the consumer, which cancels it.
    _cancel: Box<dyn Send + Sync>,
}

impl ReplyConsumer {
    /// A consumer of queue `name` that `cancel`, when dropped, ends.
    pub fn new(name: String, cancel: impl Send + Sync + 'static) -> ReplyConsumer {
        ReplyConsumer {
            name,
            _cancel: Box::new(cancel),
        }
    }
}

impl fmt::Debug for ReplyConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReplyConsumer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Feeds a reply queue's deliveries to `handler` until cancelled, the handler is gone or the
/// subscription ends: [`Driver::consume_replies`] for drivers that do not push.
async fn pump_replies(
    queue: String,
    mut subscription: Box<dyn Subscription>,
    handler: Weak<dyn ReplyHandler>,
    mut cancelled: tokio::sync::oneshot::Receiver<()>,
) {
    // Acknowledgements being written, polled beside the next delivery.
    let mut acks = FuturesUnordered::new();
    loop {
        let delivery = loop {
            tokio::select! {
                _ = &mut cancelled => return,
                Some(acked) = acks.next(), if !acks.is_empty() => log_reply_ack(acked),
                delivery = subscription.next() => break delivery,
            }
        };
        let Some(handler) = handler.upgrade() else {
            return;
        };
        match delivery {
            Ok(delivery) => {
                // The reply first, then its acknowledgement: a reply whose acknowledgement is
                // lost with the connection comes again, and the waiter drops the copy.
                handler.on_message(delivery.body);
                let mut ack = delivery.acker.ack();
                match ack.as_mut().now_or_never() {
                    Some(acked) => log_reply_ack(acked),
                    None => acks.push(ack),
                }
            }
            Err(e) => {
                tracing::error!(queue, error = %e, "reply queue consumer ended");
                handler.on_end(e);
                return;
            }
        }
    }
}

fn log_reply_ack(acked: Result<(), TransportError>) {
    if let Err(e) = acked {
        tracing::debug!(error = %e, "failed to acknowledge a reply; it comes again");
    }
}

/// What a transport driver provides. Implemented by `memory://` and `rabbit://`; one driver
/// value is shared (behind an `Arc`) by every client and server of a
/// [`Transport`](crate::Transport).
#[async_trait]
pub trait Driver: Send + Sync + fmt::Debug + 'static {
    /// Publishes an encoded message: one attempt, which fails with a retryable
    /// [`TransportError::ConnectionLost`] when the connection is down or is lost before the
    /// broker confirms the message. [`Transport`](crate::Transport) retries by oslo's rules.
    async fn publish(
        &self,
        to: Destination<'_>,
        body: Bytes,
        options: PublishOptions,
    ) -> Result<(), TransportError>;

    /// Declares and consumes the queues of an RPC server: `<topic>` (shared), `<topic>.<server>`
    /// and a fanout queue of its own. Each consumer has `prefetch` unacknowledged deliveries at
    /// most (`0` = unlimited).
    async fn listen_rpc(
        &self,
        target: &Target,
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, TransportError>;

    /// Declares and consumes the queues of a notification listener (spec §5.2): for each
    /// binding, the topic exchange, then the queue named after the routing key, or the queue
    /// `pool` when given (one queue for every binding, shared by the listeners of the pool),
    /// bound with the routing key. Queues are never deleted by the listener; deliveries not
    /// acknowledged return to their queue when the subscription ends. Each consumer has
    /// `prefetch` unacknowledged deliveries at most (`0` = unlimited).
    async fn listen_notifications(
        &self,
        bindings: &[NotificationBinding<'_>],
        pool: Option<&str>,
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, TransportError>;

    /// Declares and consumes a new reply queue.
    async fn listen_replies(&self) -> Result<ReplyQueue, TransportError>;

    /// Whether reply queue `queue` exists now, asked without publishing to it. A server that
    /// keeps a reply to a missing reply queue asks this before each retry, so that the reply
    /// goes out again only once the queue is back (on `rabbit://`, each returned reply makes
    /// lapin log its whole body).
    ///
    /// The default says `true`, for a driver that cannot ask: the server then publishes, and
    /// the mandatory publish tells.
    async fn reply_queue_exists(&self, queue: &str) -> Result<bool, TransportError> {
        let _ = queue;
        Ok(true)
    }

    /// Declares a new reply queue and hands its messages to `handler` for as long as the
    /// returned consumer and the handler live. Clients receive their replies this way.
    ///
    /// The default consumes [`Driver::listen_replies`] in a task of its own; a driver that
    /// can call the handler as it routes a message (as `memory://` does) saves that task.
    async fn consume_replies(
        &self,
        handler: Weak<dyn ReplyHandler>,
    ) -> Result<ReplyConsumer, TransportError> {
        let queue = self.listen_replies().await?;
        let (cancel, cancelled) = tokio::sync::oneshot::channel::<()>();
        let name = queue.name.clone();
        tokio::spawn(pump_replies(name, queue.subscription, handler, cancelled));
        Ok(ReplyConsumer::new(queue.name, cancel))
    }

    /// The connection's state, now and as it changes.
    fn connection_state(&self) -> watch::Receiver<ConnectionState>;

    /// Closes the connection: later operations fail with [`TransportError::Closed`] and
    /// subscriptions end.
    async fn close(&self);
}
