//! The `memory://` driver: an in-process broker with RabbitMQ's semantics for what oslo uses.
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

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use super::{
    Acker, ConnectionState, Delivery, Destination, Driver, PublishOptions, ReplyConsumer,
    ReplyHandler, ReplyQueue, Subscription,
};
use crate::error::TransportError;
use crate::sync::lock;
use crate::target::Target;

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

#[derive(Debug, Default)]
struct Broker {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Each queue is keyed by the same `Arc` as its [`Queue::name`].
    queues: HashMap<Arc<str>, Queue>,
    /// Topic exchanges: exchange -> routing key -> bound queues. oslo binds exact keys only.
    bindings: HashMap<String, HashMap<String, Vec<Arc<str>>>>,
    /// Fanout exchanges: exchange -> bound queues.
    fanouts: HashMap<String, Vec<Arc<str>>>,
    next_consumer: u64,
    /// Reused for the names [`Destination::address_in`] builds, so routing allocates nothing
    /// once warm.
    scratch: String,
}

#[derive(Debug)]
struct Queue {
    /// Shared with the key in [`State::queues`] and with the ackers of its deliveries.
    name: Arc<str>,
    messages: VecDeque<Message>,
    consumers: Vec<Consumer>,
    /// Index of the consumer to try first, for round-robin.
    next: usize,
}

#[derive(Debug)]
struct Message {
    body: Bytes,
    expires_at: Option<Instant>,
}

#[derive(Debug)]
struct Consumer {
    id: u64,
    sink: Sink,
    prefetch: usize,
    unacked: usize,
}

/// Where a consumer's messages go.
enum Sink {
    /// Deliveries for a [`Subscription`], to acknowledge.
    Channel(mpsc::UnboundedSender<Delivery>),
    /// Messages handed to a reply handler in the publisher's task, without acknowledgement.
    Push(Weak<dyn ReplyHandler>),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sink::Channel(_) => "Channel",
            Sink::Push(_) => "Push",
        })
    }
}

impl Consumer {
    fn has_room(&self) -> bool {
        self.prefetch == 0 || self.unacked < self.prefetch
    }
}

/// A message pushed to a [`ReplyHandler`] consumer.
type Pushed = (Weak<dyn ReplyHandler>, Bytes);

/// What is done once the broker lock is released: deliveries that could not be handed over
/// are dropped (which requeues them, taking the lock again), and pushed messages are handed to
/// their handlers (which may take locks of their own).
#[derive(Default)]
struct AfterUnlock {
    orphans: Vec<Delivery>,
    /// The usual single pushed message, held inline; any others follow in `more_pushed`.
    pushed: Option<Pushed>,
    more_pushed: Vec<Pushed>,
}

impl AfterUnlock {
    fn push(&mut self, pushed: Pushed) {
        match self.pushed {
            None => self.pushed = Some(pushed),
            Some(_) => self.more_pushed.push(pushed),
        }
    }

    /// Runs with the lock released.
    fn run(self) {
        drop(self.orphans);
        for (handler, body) in self.pushed.into_iter().chain(self.more_pushed) {
            // A handler that is gone cancels its consumer as it goes; a message that reached
            // it in between has nobody left to read it.
            if let Some(handler) = handler.upgrade() {
                handler.on_message(body);
            }
        }
    }
}

impl Queue {
    fn new(name: Arc<str>) -> Queue {
        Queue {
            name,
            messages: VecDeque::new(),
            consumers: Vec::new(),
            next: 0,
        }
    }

    /// Hands waiting messages to consumers with room, round-robin, dropping expired ones.
    fn pump(&mut self, broker: &Arc<Broker>, after: &mut AfterUnlock) {
        // Read the clock only if a message can expire.
        let mut now = None;
        loop {
            while let Some(at) = self.messages.front().and_then(|m| m.expires_at) {
                if at > *now.get_or_insert_with(Instant::now) {
                    break;
                }
                self.messages.pop_front();
            }
            let count = self.consumers.len();
            if self.messages.is_empty() || count == 0 {
                return;
            }
            let Some(index) = (0..count)
                .map(|i| (self.next + i) % count)
                .find(|&i| self.consumers[i].has_room())
            else {
                return;
            };
            self.next = (index + 1) % count;
            let Some(message) = self.messages.pop_front() else {
                return;
            };
            let consumer = &mut self.consumers[index];
            let tx = match &consumer.sink {
                Sink::Push(handler) => {
                    after.push((Weak::clone(handler), message.body));
                    continue;
                }
                Sink::Channel(tx) => tx,
            };
            consumer.unacked += 1;
            let delivery = Delivery {
                body: message.body.clone(),
                acker: Box::new(MemoryAcker {
                    broker: Arc::downgrade(broker),
                    queue: Arc::clone(&self.name),
                    consumer: consumer.id,
                    message: Some(message),
                }),
            };
            if let Err(mpsc::error::SendError(delivery)) = tx.send(delivery) {
                // Cannot happen while the consumer is registered (its subscription removes it
                // before closing the channel); if it does, the delivery requeues itself once
                // the lock is released.
                after.orphans.push(delivery);
                return;
            }
        }
    }

    /// Appends a message and pumps.
    fn push(
        &mut self,
        body: Bytes,
        expires_at: Option<Instant>,
        broker: &Arc<Broker>,
        after: &mut AfterUnlock,
    ) {
        self.messages.push_back(Message { body, expires_at });
        self.pump(broker, after);
    }
}

impl State {
    /// Declares `name` if it does not exist; returns its shared name.
    fn declare_queue(&mut self, name: &str) -> Arc<str> {
        if let Some(queue) = self.queues.get(name) {
            return Arc::clone(&queue.name);
        }
        let name: Arc<str> = name.into();
        self.queues
            .insert(Arc::clone(&name), Queue::new(Arc::clone(&name)));
        name
    }

    fn bind(&mut self, exchange: &str, key: &str, queue: &Arc<str>) {
        let bound = self
            .bindings
            .entry(exchange.to_owned())
            .or_default()
            .entry(key.to_owned())
            .or_default();
        if !bound.iter().any(|q| q == queue) {
            bound.push(Arc::clone(queue));
        }
    }

    fn delete_queue(&mut self, name: &str) {
        self.queues.remove(name);
        for keys in self.bindings.values_mut() {
            for bound in keys.values_mut() {
                bound.retain(|q| &**q != name);
            }
            keys.retain(|_, bound| !bound.is_empty());
        }
        self.bindings.retain(|_, keys| !keys.is_empty());
        for bound in self.fanouts.values_mut() {
            bound.retain(|q| &**q != name);
        }
        // Fanout exchanges are auto-delete: gone with their last queue.
        self.fanouts.retain(|_, bound| !bound.is_empty());
    }

    /// Routes a message to the queues `to` reaches (through a topic exchange, a fanout
    /// exchange, or the default exchange) and pumps them; `false` if it reached none.
    fn publish(
        &mut self,
        broker: &Arc<Broker>,
        to: Destination<'_>,
        control_exchange: &str,
        message: Message,
        after: &mut AfterUnlock,
    ) -> bool {
        let State {
            queues,
            bindings,
            fanouts,
            scratch,
            ..
        } = self;
        let (exchange, key) = to.address_in(control_exchange, scratch);
        let bound = match to {
            Destination::Rpc { .. } => bindings.get(exchange).and_then(|keys| keys.get(key)),
            Destination::Fanout { .. } => fanouts.get(exchange),
            Destination::Reply { .. } => {
                let Some(queue) = queues.get_mut(key) else {
                    return false;
                };
                queue.push(message.body, message.expires_at, broker, after);
                return true;
            }
        };
        let Some((last, others)) = bound.and_then(|bound| bound.split_last()) else {
            return false;
        };
        for name in others {
            if let Some(queue) = queues.get_mut(name) {
                queue.push(message.body.clone(), message.expires_at, broker, after);
            }
        }
        if let Some(queue) = queues.get_mut(last) {
            queue.push(message.body, message.expires_at, broker, after);
        }
        true
    }

    /// Settles one delivery of `consumer` on `queue`: requeues `message` if given, then pumps.
    fn settle(
        &mut self,
        broker: &Arc<Broker>,
        queue: &str,
        consumer: u64,
        requeue: Option<Message>,
        after: &mut AfterUnlock,
    ) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        if let Some(c) = q.consumers.iter_mut().find(|c| c.id == consumer) {
            c.unacked = c.unacked.saturating_sub(1);
        }
        if let Some(message) = requeue {
            q.messages.push_front(message);
        }
        q.pump(broker, after);
    }

    fn add_consumer(
        &mut self,
        broker: &Arc<Broker>,
        queue: &str,
        sink: Sink,
        prefetch: u16,
        after: &mut AfterUnlock,
    ) -> u64 {
        self.next_consumer += 1;
        let id = self.next_consumer;
        if let Some(q) = self.queues.get_mut(queue) {
            q.consumers.push(Consumer {
                id,
                sink,
                prefetch: usize::from(prefetch),
                unacked: 0,
            });
            q.pump(broker, after);
        }
        id
    }

    fn remove_consumer(&mut self, queue: &str, consumer: u64) {
        if let Some(q) = self.queues.get_mut(queue) {
            q.consumers.retain(|c| c.id != consumer);
            q.next = 0;
        }
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

impl Broker {
    /// Runs `f` on the state under the lock, then what it left to do unlocked.
    fn with_state<R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut State, &Arc<Broker>, &mut AfterUnlock) -> R,
    ) -> R {
        let mut after = AfterUnlock::default();
        let result = f(&mut lock(&self.state), self, &mut after);
        after.run();
        result
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

#[derive(Debug)]
struct MemoryAcker {
    broker: Weak<Broker>,
    /// The queue's shared name: cloning it per delivery costs no allocation.
    queue: Arc<str>,
    consumer: u64,
    /// `Some` until settled; an unsettled drop requeues it.
    message: Option<Message>,
}

impl MemoryAcker {
    fn settle(&mut self, requeue: bool) {
        let Some(message) = self.message.take() else {
            return;
        };
        let Some(broker) = self.broker.upgrade() else {
            return;
        };
        let requeue = requeue.then_some(message);
        broker.with_state(|state, broker, after| {
            state.settle(broker, &self.queue, self.consumer, requeue, after);
        });
    }
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(mut self: Box<Self>) -> Result<(), TransportError> {
        self.settle(false);
        Ok(())
    }

    async fn reject(mut self: Box<Self>, requeue: bool) -> Result<(), TransportError> {
        self.settle(requeue);
        Ok(())
    }
}

impl Drop for MemoryAcker {
    fn drop(&mut self) {
        self.settle(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
