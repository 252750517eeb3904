//! The `memory://` driver: a handle on an in-process broker (the model is in `broker.rs`) with
//! RabbitMQ's semantics for what oslo uses.
//!
//! Queues are FIFO with round-robin among their consumers, each consumer limited by its
//! prefetch; unacknowledged deliveries return to the front of their queue when the consumer
//! goes away; expired messages are dropped when they reach the head of their queue;
//! publishing to the default exchange with `mandatory` fails when the queue does not exist.
//! The broker lock is a std mutex that is never held across an `.await`, and no delivery is
//! ever dropped while it is held (a dropped delivery re-locks to requeue itself).
//!
//! A reply queue consumed with [`Driver::consume_replies`] has no consumer task: each reply is
//! handed to the caller's handler in the publisher's task, once the broker lock is released.
//!
//! Every call passes through here several times (request published, delivered, acknowledged;
//! reply published and handed over), so the message path allocates only what it must:
//! routing looks bindings up by borrowed names (the `<topic>.<server>` and `<topic>_fanout`
//! names are built by `Destination::address_in` in a buffer kept in the broker state), and
//! queue names are `Arc<str>`s shared with the deliveries' ackers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{
    ConnectionState, Delivery, Destination, Driver, NotificationBinding, PublishOptions,
    ReplyConsumer, ReplyHandler, ReplyQueue, Subscription,
};
use crate::error::TransportError;
use crate::sync::lock;
use crate::target::Target;
use broker::{Broker, Message, Sink};

mod broker;

/// The `memory://` driver: a handle on one in-process broker.
#[derive(Debug, Clone)]
pub struct MemoryDriver {
    broker: Arc<Broker>,
    /// Set by `close`: this handle refuses further operations.
    closed: Arc<std::sync::atomic::AtomicBool>,
    /// `Connected` until closed.
    state: Arc<watch::Sender<ConnectionState>>,
    /// The exchange of destinations that name none.
    control_exchange: Arc<str>,
}

impl MemoryDriver {
    /// The process-wide broker of `vhost`: every `memory://` transport naming the same vhost
    /// reaches the same queues, for as long as the process runs.
    pub fn shared(vhost: &str) -> MemoryDriver {
        static BROKERS: OnceLock<Mutex<HashMap<String, Arc<Broker>>>> = OnceLock::new();
        let mut brokers = lock(BROKERS.get_or_init(Default::default));
        let broker = brokers.entry(vhost.to_owned()).or_default();
        MemoryDriver {
            broker: Arc::clone(broker),
            closed: Arc::default(),
            state: Arc::new(watch::Sender::new(ConnectionState::Connected {
                host: "memory".to_owned(),
            })),
            control_exchange: "openstack".into(),
        }
    }

    /// Uses `exchange` for destinations that name none (default `openstack`).
    #[must_use]
    pub fn with_control_exchange(mut self, exchange: &str) -> Self {
        self.control_exchange = exchange.into();
        self
    }

    /// A broker of its own, unreachable by URL.
    pub fn private() -> MemoryDriver {
        MemoryDriver {
            broker: Arc::default(),
            closed: Arc::default(),
            state: Arc::new(watch::Sender::new(ConnectionState::Connected {
                host: "memory".to_owned(),
            })),
            control_exchange: "openstack".into(),
        }
    }

    /// The names of the queues that exist now, sorted (for tests and diagnostics).
    pub fn queue_names(&self) -> Vec<String> {
        let mut names: Vec<String> = lock(&self.broker.state)
            .queues
            .keys()
            .map(|name| name.to_string())
            .collect();
        names.sort();
        names
    }

    /// The number of messages waiting in `queue` (not counting unacknowledged deliveries).
    pub fn queue_depth(&self, queue: &str) -> Option<usize> {
        lock(&self.broker.state)
            .queues
            .get(queue)
            .map(|q| q.messages.len())
    }
}

impl MemoryDriver {
    fn check_open(&self) -> Result<(), TransportError> {
        match self.closed.load(std::sync::atomic::Ordering::Acquire) {
            true => Err(TransportError::closed()),
            false => Ok(()),
        }
    }

    /// Declares a new reply queue consumed into `sink`: its name, its shared name and the
    /// consumer's id.
    fn reply_queue(&self, sink: Sink) -> Result<(String, Arc<str>, u64), TransportError> {
        self.check_open()?;
        let name = super::reply_queue_name();
        let (queue, consumer) = self.broker.with_state(|state, broker, after| {
            let queue = state.declare_queue(&name);
            let consumer = state.add_consumer(broker, &queue, sink, 0, after);
            (queue, consumer)
        });
        Ok((name, queue, consumer))
    }
}

#[async_trait]
impl Driver for MemoryDriver {
    async fn publish(
        &self,
        to: Destination<'_>,
        body: Bytes,
        options: PublishOptions,
    ) -> Result<(), TransportError> {
        self.check_open()?;
        let message = Message {
            body,
            // A time no `Instant` can hold (`Duration::MAX`) never comes.
            expires_at: options
                .expiration
                .and_then(|ttl| Instant::now().checked_add(ttl)),
        };
        let routed = self.broker.with_state(|state, broker, after| {
            state.publish(broker, to, &self.control_exchange, message, after)
        });
        if !routed && options.mandatory {
            let (exchange, routing_key) = to.address(&self.control_exchange);
            return Err(TransportError::NoRoute {
                exchange,
                routing_key,
            });
        }
        Ok(())
    }

    async fn reply_queue_exists(&self, queue: &str) -> Result<bool, TransportError> {
        self.check_open()?;
        Ok(lock(&self.broker.state).queues.contains_key(queue))
    }

    async fn listen_rpc(
        &self,
        target: &Target,
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, TransportError> {
        self.check_open()?;
        let (topic, server) = target.topic_and_server()?;
        let exchange = target.exchange().unwrap_or(&self.control_exchange);
        let server_queue = super::server_queue(topic, server);
        let fanout_exchange = super::fanout_exchange(topic);
        let fanout_queue = format!("{fanout_exchange}_{}", crate::wire::new_id());
        let (tx, rx) = mpsc::unbounded_channel();
        let (consumers, fanout_queue) = self.broker.with_state(|state, broker, after| {
            let topic_queue = state.declare_queue(topic);
            state.bind(exchange, topic, &topic_queue);
            let server_queue = state.declare_queue(&server_queue);
            state.bind(exchange, &server_queue, &server_queue);
            let fanout_queue = state.declare_queue(&fanout_queue);
            state
                .fanouts
                .entry(fanout_exchange)
                .or_default()
                .push(Arc::clone(&fanout_queue));
            let consumers = [topic_queue, server_queue, Arc::clone(&fanout_queue)]
                .into_iter()
                .map(|q| {
                    let id =
                        state.add_consumer(broker, &q, Sink::Channel(tx.clone()), prefetch, after);
                    (q, id)
                })
                .collect();
            (consumers, fanout_queue)
        });
        Ok(Box::new(MemorySubscription {
            broker: Arc::clone(&self.broker),
            connection: self.state.subscribe(),
            rx,
            consumers,
            owned_queues: vec![fanout_queue],
        }))
    }

    async fn listen_notifications(
        &self,
        bindings: &[NotificationBinding<'_>],
        pool: Option<&str>,
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, TransportError> {
        self.check_open()?;
        let (tx, rx) = mpsc::unbounded_channel();
        let consumers = self.broker.with_state(|state, broker, after| {
            let mut queues: Vec<Arc<str>> = Vec::new();
            for binding in bindings {
                let exchange = binding.exchange.unwrap_or(&self.control_exchange);
                let queue = state.declare_queue(pool.unwrap_or(binding.routing_key));
                state.bind(exchange, binding.routing_key, &queue);
                if !queues.contains(&queue) {
                    queues.push(queue);
                }
            }
            queues
                .into_iter()
                .map(|q| {
                    let id =
                        state.add_consumer(broker, &q, Sink::Channel(tx.clone()), prefetch, after);
                    (q, id)
                })
                .collect()
        });
        Ok(Box::new(MemorySubscription {
            broker: Arc::clone(&self.broker),
            connection: self.state.subscribe(),
            rx,
            consumers,
            owned_queues: Vec::new(),
        }))
    }

    fn connection_state(&self) -> watch::Receiver<ConnectionState> {
        self.state.subscribe()
    }

    async fn close(&self) {
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        self.state.send_replace(ConnectionState::Closed);
    }

    /// Hands each reply to `handler` as it is published, in the publisher's task: no
    /// consumer task, no acknowledgement (RabbitMQ's reply consumers take no acks either).
    async fn consume_replies(
        &self,
        handler: Weak<dyn ReplyHandler>,
    ) -> Result<ReplyConsumer, TransportError> {
        let (name, queue, consumer) = self.reply_queue(Sink::Push(handler))?;
        let cancel = PushedReplies {
            broker: Arc::clone(&self.broker),
            queue,
            consumer,
        };
        Ok(ReplyConsumer::new(name, cancel))
    }

    async fn listen_replies(&self) -> Result<ReplyQueue, TransportError> {
        let (tx, rx) = mpsc::unbounded_channel();
        let (name, queue, consumer) = self.reply_queue(Sink::Channel(tx))?;
        Ok(ReplyQueue {
            subscription: Box::new(MemorySubscription {
                broker: Arc::clone(&self.broker),
                connection: self.state.subscribe(),
                rx,
                consumers: vec![(Arc::clone(&queue), consumer)],
                owned_queues: vec![queue],
            }),
            name,
        })
    }
}

/// A reply queue pushed to a handler; dropping it cancels the consumer and deletes the queue
/// (RabbitMQ lets an abandoned reply queue expire).
struct PushedReplies {
    broker: Arc<Broker>,
    queue: Arc<str>,
    consumer: u64,
}

impl Drop for PushedReplies {
    fn drop(&mut self) {
        self.broker.with_state(|state, _, _| {
            state.remove_consumer(&self.queue, self.consumer);
            state.delete_queue(&self.queue);
        });
    }
}

/// The consumers of one listener, feeding one channel.
#[derive(Debug)]
struct MemorySubscription {
    broker: Arc<Broker>,
    /// The state of the connection it was made on: closing the transport ends it, as it
    /// ends a RabbitMQ consumer.
    connection: watch::Receiver<ConnectionState>,
    rx: mpsc::UnboundedReceiver<Delivery>,
    consumers: Vec<(Arc<str>, u64)>,
    /// Queues that live only as long as this listener (fanout and reply queues; RabbitMQ
    /// deletes or expires them).
    owned_queues: Vec<Arc<str>>,
}

#[async_trait]
impl Subscription for MemorySubscription {
    async fn next(&mut self) -> Result<Delivery, TransportError> {
        // The usual case under load, a delivery waiting on an open connection, without the
        // select's wakers: a memory connection's state changes only when it is closed.
        if matches!(self.connection.has_changed(), Ok(false))
            && let Ok(delivery) = self.rx.try_recv()
        {
            return Ok(delivery);
        }
        let closed = |state: &ConnectionState| matches!(state, ConnectionState::Closed);
        tokio::select! {
            biased;
            // Err only if the driver is gone, which also ends the subscription.
            _ = self.connection.wait_for(closed) => Err(TransportError::closed()),
            delivery = self.rx.recv() => delivery.ok_or_else(|| TransportError::SubscriptionEnded {
                reason: "the memory broker dropped the consumer".to_owned(),
            }),
        }
    }
}

impl Drop for MemorySubscription {
    fn drop(&mut self) {
        // Consumers go first, so the deliveries still buffered in `rx` requeue to the
        // remaining consumers, not to us.
        self.broker.with_state(|state, _, _| {
            for (queue, id) in &self.consumers {
                state.remove_consumer(queue, *id);
            }
            for queue in &self.owned_queues {
                state.delete_queue(queue);
            }
        });
        // Each dropped delivery goes back to the front of its queue: drop the newest first so
        // the queue keeps its original order.
        self.rx.close();
        let mut buffered = Vec::new();
        while let Ok(delivery) = self.rx.try_recv() {
            buffered.push(delivery);
        }
        while let Some(delivery) = buffered.pop() {
            drop(delivery);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::Acker;

    fn rpc<'a>(topic: &'a str, server: Option<&'a str>) -> Destination<'a> {
        Destination::Rpc {
            exchange: None,
            topic,
            server,
        }
    }

    async fn body(sub: &mut Box<dyn Subscription>) -> (String, Box<dyn Acker>) {
        let d = sub.next().await.unwrap_or_else(|e| panic!("{e}"));
        (String::from_utf8_lossy(&d.body).into_owned(), d.acker)
    }

    /// A listener of server `s` of topic `t`, with `prefetch`.
    async fn listen(driver: &MemoryDriver, prefetch: u16) -> Box<dyn Subscription> {
        let sub = driver.listen_rpc(&Target::server("t", "s"), prefetch).await;
        sub.unwrap_or_else(|e| panic!("{e}"))
    }

    /// Publishes each of `texts` to topic `t`.
    async fn publish_to_topic(driver: &MemoryDriver, texts: &[&'static str]) {
        for &text in texts {
            let r = driver.publish(rpc("t", None), Bytes::from(text), PublishOptions::default());
            r.await.unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[tokio::test]
    async fn prefetch_limits_unacked_and_ack_releases_the_next() {
        let driver = MemoryDriver::private();
        let mut sub = listen(&driver, 1).await;
        publish_to_topic(&driver, &["a", "b"]).await;
        let (first, acker) = body(&mut sub).await;
        assert_eq!(first, "a");
        assert_eq!(driver.queue_depth("t"), Some(1), "prefetch 1 holds b back");
        acker.ack().await.unwrap_or_else(|e| panic!("{e}"));
        let (second, _acker) = body(&mut sub).await;
        assert_eq!(second, "b");
    }

    #[tokio::test]
    async fn dropped_subscription_returns_unacked_messages_to_the_queue() {
        let driver = MemoryDriver::private();
        let mut sub = listen(&driver, 0).await;
        publish_to_topic(&driver, &["a", "b", "c"]).await;
        let (first, acker) = body(&mut sub).await;
        assert_eq!(first, "a");
        acker.ack().await.unwrap_or_else(|e| panic!("{e}"));
        drop(sub);
        assert_eq!(driver.queue_depth("t"), Some(2));
        let mut again = listen(&driver, 0).await;
        assert_eq!(body(&mut again).await.0, "b");
        assert_eq!(body(&mut again).await.0, "c");
    }

    #[tokio::test]
    async fn mandatory_reply_to_missing_queue_is_no_route() {
        let driver = MemoryDriver::private();
        let opts = PublishOptions {
            mandatory: true,
            ..PublishOptions::default()
        };
        let err = driver
            .publish(Destination::Reply { queue: "reply_x" }, Bytes::new(), opts)
            .await;
        assert!(
            matches!(err, Err(TransportError::NoRoute { routing_key, .. }) if routing_key == "reply_x")
        );
        // Not mandatory: silently unroutable, as in AMQP.
        let ok = driver
            .publish(rpc("nobody", None), Bytes::new(), PublishOptions::default())
            .await;
        assert!(ok.is_ok());
    }

    #[tokio::test]
    async fn fanout_queue_and_reply_queue_are_deleted_with_their_listener() {
        let driver = MemoryDriver::private();
        let sub = listen(&driver, 0).await;
        let replies = driver
            .listen_replies()
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(driver.queue_names().len(), 4);
        drop(sub);
        drop(replies);
        assert_eq!(driver.queue_names(), vec!["t".to_owned(), "t.s".to_owned()]);
    }

    /// A reply handler that keeps what it is given.
    #[derive(Default)]
    struct Kept {
        messages: Mutex<Vec<Bytes>>,
        ended: Mutex<Option<String>>,
    }

    impl ReplyHandler for Kept {
        fn on_message(&self, body: Bytes) {
            lock(&self.messages).push(body);
        }
        fn on_end(&self, error: TransportError) {
            *lock(&self.ended) = Some(error.to_string());
        }
    }

    /// A reply queue of `driver` consumed into a new [`Kept`].
    async fn kept_replies(driver: &MemoryDriver) -> (Arc<Kept>, ReplyConsumer) {
        let kept = Arc::new(Kept::default());
        let handler: Weak<dyn ReplyHandler> = Arc::downgrade(&kept) as Weak<Kept>;
        let consumer = driver.consume_replies(handler).await;
        (kept, consumer.unwrap_or_else(|e| panic!("{e}")))
    }

    #[tokio::test]
    async fn replies_are_pushed_to_the_handler_as_they_are_published() {
        let driver = MemoryDriver::private();
        let (kept, consumer) = kept_replies(&driver).await;
        let to = Destination::Reply {
            queue: &consumer.name,
        };
        let mandatory = PublishOptions {
            mandatory: true,
            ..PublishOptions::default()
        };
        for text in ["one", "two"] {
            let sent = driver.publish(to, Bytes::from(text), mandatory);
            sent.await.unwrap_or_else(|e| panic!("{e}"));
        }
        // Handed over within `publish`: no other task ran in between.
        assert_eq!(*lock(&kept.messages), ["one", "two"]);
        assert_eq!(
            driver.queue_depth(&consumer.name),
            Some(0),
            "nothing waits unacked"
        );
        assert_eq!(*lock(&kept.ended), None);

        // Dropping the consumer deletes the queue: a reply to it is now unroutable.
        let name = consumer.name.clone();
        drop(consumer);
        assert!(driver.queue_names().is_empty());
        let to = Destination::Reply { queue: &name };
        let sent = driver.publish(to, Bytes::from("three"), mandatory).await;
        assert!(
            matches!(sent, Err(TransportError::NoRoute { .. })),
            "{sent:?}"
        );
        assert_eq!(lock(&kept.messages).len(), 2);
    }

    #[tokio::test]
    async fn a_reply_whose_handler_is_gone_is_dropped_quietly() {
        let driver = MemoryDriver::private();
        let (kept, consumer) = kept_replies(&driver).await;
        drop(kept);
        let to = Destination::Reply {
            queue: &consumer.name,
        };
        let sent = driver.publish(to, Bytes::from("late"), PublishOptions::default());
        sent.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(driver.queue_depth(&consumer.name), Some(0));
    }

    #[tokio::test(start_paused = true)]
    async fn expired_messages_are_dropped_before_delivery() {
        let driver = MemoryDriver::private();
        let target = Target::server("t", "s");
        drop(driver.listen_rpc(&target, 0).await); // declares the queues
        let short = PublishOptions {
            expiration: Some(std::time::Duration::from_millis(100)),
            ..PublishOptions::default()
        };
        let r = driver.publish(rpc("t", None), Bytes::from("old"), short);
        r.await.unwrap_or_else(|e| panic!("{e}"));
        let r = driver.publish(
            rpc("t", None),
            Bytes::from("new"),
            PublishOptions::default(),
        );
        r.await.unwrap_or_else(|e| panic!("{e}"));
        tokio::time::advance(std::time::Duration::from_millis(200)).await;
        let mut sub = driver
            .listen_rpc(&target, 0)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(body(&mut sub).await.0, "new");
    }

    #[test]
    fn borrowed_address_matches_destination_address() {
        let destinations = [
            rpc("t", None),
            rpc("t", Some("s")),
            Destination::Rpc {
                exchange: Some("nova"),
                topic: "t.x",
                server: Some("host-1"),
            },
            Destination::Fanout { topic: "t" },
            Destination::Reply { queue: "reply_x" },
        ];
        let mut scratch = "left over".to_owned();
        for to in destinations {
            let (exchange, key) = to.address("openstack");
            assert_eq!(
                to.address_in("openstack", &mut scratch),
                (exchange.as_str(), key.as_str()),
                "{to:?}"
            );
        }
    }

    /// The body of a delivery already waiting on `sub`, acknowledged.
    fn waiting(sub: &mut Box<dyn Subscription>) -> Option<String> {
        use futures_util::FutureExt as _;
        let d = sub.next().now_or_never()?.unwrap_or_else(|e| panic!("{e}"));
        let acked = d.acker.ack().now_or_never();
        assert!(matches!(acked, Some(Ok(()))), "{acked:?}");
        Some(String::from_utf8_lossy(&d.body).into_owned())
    }

    #[tokio::test]
    async fn directed_fanout_and_round_robin_routing() {
        let driver = MemoryDriver::private();
        let mut subs = Vec::new();
        for server in ["s1", "s2"] {
            let sub = driver.listen_rpc(&Target::server("t", server), 0).await;
            subs.push(sub.unwrap_or_else(|e| panic!("{e}")));
        }
        let send = |to, text: &'static str| {
            driver.publish(to, Bytes::from(text), PublishOptions::default())
        };
        send(rpc("t", Some("s2")), "direct")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(waiting(&mut subs[0]), None);
        assert_eq!(waiting(&mut subs[1]).as_deref(), Some("direct"));
        send(Destination::Fanout { topic: "t" }, "all")
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for sub in &mut subs {
            assert_eq!(waiting(sub).as_deref(), Some("all"));
        }
        for text in ["a", "b", "c", "d"] {
            send(rpc("t", None), text)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(waiting(&mut subs[0]).as_deref(), Some("a"));
        assert_eq!(waiting(&mut subs[0]).as_deref(), Some("c"));
        assert_eq!(waiting(&mut subs[1]).as_deref(), Some("b"));
        assert_eq!(waiting(&mut subs[1]).as_deref(), Some("d"));
        let mandatory = PublishOptions {
            mandatory: true,
            ..PublishOptions::default()
        };
        let err = driver
            .publish(rpc("t", Some("s3")), Bytes::new(), mandatory)
            .await;
        assert!(matches!(
            err,
            Err(TransportError::NoRoute { exchange, routing_key })
                if exchange == "openstack" && routing_key == "t.s3"
        ));
    }

    #[tokio::test]
    async fn rejected_with_requeue_returns_to_the_head_in_order() {
        let driver = MemoryDriver::private();
        let mut sub = listen(&driver, 2).await;
        publish_to_topic(&driver, &["a", "b", "c"]).await;
        let (_, a) = body(&mut sub).await;
        let (_, b) = body(&mut sub).await;
        assert_eq!(driver.queue_depth("t"), Some(1));
        drop(sub);
        b.reject(true).await.unwrap_or_else(|e| panic!("{e}"));
        drop(a);
        let mut again = listen(&driver, 0).await;
        for text in ["a", "b", "c"] {
            assert_eq!(body(&mut again).await.0, text);
        }
    }

    #[tokio::test]
    async fn listening_on_a_target_without_a_server_is_an_invalid_target() {
        let driver = MemoryDriver::private();
        let listened = driver.listen_rpc(&Target::new("t"), 0).await;
        assert!(
            matches!(
                listened,
                Err(TransportError::InvalidTarget(
                    crate::target::TargetError::MissingServer { .. }
                ))
            ),
            "{listened:?}"
        );
        assert!(listened.is_err_and(|e| !e.is_retryable()));
    }

    #[tokio::test]
    async fn a_closed_driver_refuses_with_closed() {
        let driver = MemoryDriver::private();
        driver.close().await;
        let sent = driver
            .publish(rpc("t", None), Bytes::new(), PublishOptions::default())
            .await;
        assert!(matches!(&sent, Err(e) if e.is_closed()), "{sent:?}");
        let listened = driver.listen_rpc(&Target::server("t", "s"), 0).await;
        assert!(matches!(&listened, Err(e) if e.is_closed()), "{listened:?}");
    }
}
