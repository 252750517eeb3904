//! The notification listener (`notify/listener.py`, `notify/dispatcher.py`): consumes the
//! `<topic>.<priority>` queues (or a pool's queue) of its targets and dispatches each
//! notification to its endpoints, acknowledging it only once they are done (spec §2.5).

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::Instrument;

use super::{
    BatchNotificationEndpoint, HandlerError, Incoming, Metadata, NotificationEndpoint,
    NotificationResult, Priorities, Priority,
};
use crate::driver::{Acker, Delivery, NotificationBinding, Subscription};
use crate::error::{RpcError, TransportError};
use crate::recent_ids::RecentIds;
use crate::sync::lock;
use crate::telemetry;
use crate::transport::Transport;
use crate::wire::IncomingNotification;
use crate::workers::Workers;

/// How many acknowledged `_unique_id`s a listener remembers, to drop a notification that comes
/// again (a publisher's retry after a lost confirm, or a redelivery after a lost ack). oslo
/// remembers 16; a listener here may have many more notifications in flight.
const DUPLICATE_WINDOW: usize = 1024;

/// Listens for notifications: oslo's `get_notification_listener` and
/// `get_batch_notification_listener`. Built with [`NotificationListener::builder`].
///
/// * Queues: for each target `(exchange, topic)` and each priority some endpoint handles, the
///   queue `<topic>.<priority>` bound to the exchange with that key, the one every notifier
///   fills, so that each such listener takes its share of one stream; or, with a
///   [pool](ListenerBuilder::pool), the single queue named after the pool bound with all
///   those keys, so that each pool gets its own copy of the stream and its members share it.
///   (oslo's advice stands: an application using pools also needs a listener without one,
///   since the notifier keeps filling `<topic>.<priority>`.) Queues outlive listeners.
/// * Acknowledgement: after the endpoints are done. [`NotificationResult::Requeue`], an
///   endpoint error or a panic returns the notification to its queue if the listener
///   [allows requeueing](ListenerBuilder::allow_requeue), and acknowledges it otherwise; a
///   notification naming an unknown priority is logged and acknowledged; a message that is not
///   a notification (not JSON, a bad envelope) is logged and rejected without requeueing; a
///   notification whose `_unique_id` was acknowledged recently is acknowledged and dropped.
/// * Stopping: no new notification is taken, those being handled finish and are acknowledged,
///   then the consumers are cancelled and the broker takes back what was delivered but not
///   started. A listener that dies leaves its unacknowledged notifications to the broker, which
///   delivers them again. Nothing is lost either way.
pub struct NotificationListener {
    shared: Arc<Shared>,
    /// The consumer loop, while one was started and not yet joined.
    consumer: tokio::sync::Mutex<Option<JoinHandle<Option<TransportError>>>>,
}

/// How a listener hands notifications over.
enum Endpoints {
    Single(Vec<Arc<dyn NotificationEndpoint>>),
    Batch {
        endpoints: Vec<Arc<dyn BatchNotificationEndpoint>>,
        size: usize,
        timeout: Option<Duration>,
    },
}

/// Builds a [`NotificationListener`]. Made by [`NotificationListener::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct ListenerBuilder {
    transport: Transport,
    targets: Vec<(Option<String>, String)>,
    pool: Option<String>,
    allow_requeue: bool,
    endpoints: Vec<Arc<dyn NotificationEndpoint>>,
    batch_endpoints: Vec<Arc<dyn BatchNotificationEndpoint>>,
    batch: Option<(usize, Option<Duration>)>,
    max_concurrency: usize,
}

impl ListenerBuilder {
    /// Listens on `topic` (e.g. `notifications`) of `exchange` (e.g. `nova`). Several targets
    /// may be given, on several exchanges, as ceilometer listens to every service's.
    pub fn target(mut self, exchange: impl Into<String>, topic: impl Into<String>) -> Self {
        self.targets.push((Some(exchange.into()), topic.into()));
        self
    }

    /// Listens on `topic` of the transport's control exchange.
    pub fn topic(mut self, topic: impl Into<String>) -> Self {
        self.targets.push((None, topic.into()));
        self
    }

    /// Joins pool `pool` (default: none): the listener consumes the queue named `pool`, bound
    /// with every key it listens to; the listeners of one pool share it.
    pub fn pool(mut self, pool: impl Into<String>) -> Self {
        self.pool = Some(pool.into());
        self
    }

    /// Whether [`NotificationResult::Requeue`] (and an endpoint's error) returns the
    /// notification to its queue (default `false`: it is acknowledged all the same, as oslo's
    /// `allow_requeue=False` does).
    pub fn allow_requeue(mut self, allow: bool) -> Self {
        self.allow_requeue = allow;
        self
    }

    /// Adds an endpoint, called after those added before it.
    pub fn endpoint(mut self, endpoint: impl NotificationEndpoint) -> Self {
        self.endpoints.push(Arc::new(endpoint));
        self
    }

    /// Adds a batch endpoint; a listener has either endpoints or batch endpoints.
    pub fn batch_endpoint(mut self, endpoint: impl BatchNotificationEndpoint) -> Self {
        self.batch_endpoints.push(Arc::new(endpoint));
        self
    }

    /// The batch of a listener with batch endpoints (oslo's `batch_size` and `batch_timeout`):
    /// a batch is handed over once it holds `size` notifications, or `timeout` after its first
    /// one arrived (`None`: only when full). Default: 1 and `None`, oslo's defaults. The
    /// transport's `rabbit_qos_prefetch_count`, when set, caps the size, as in oslo.
    pub fn batch(mut self, size: usize, timeout: Option<Duration>) -> Self {
        self.batch = Some((size, timeout));
        self
    }

    /// How many notifications are handled at once (default: the transport's
    /// `executor_thread_pool_size`, 64); also the consumer's prefetch. Not for batch
    /// listeners, which handle one batch at a time.
    pub fn max_concurrency(mut self, max: usize) -> Self {
        self.max_concurrency = max;
        self
    }

    /// The listener, not yet started. Fails ([`RpcError::InvalidConfig`]) without a target,
    /// without an endpoint handling some priority, with both kinds of endpoints, with batch
    /// settings but no batch endpoint, or with a batch size or concurrency of 0.
    pub fn build(self) -> Result<NotificationListener, RpcError> {
        let invalid = |reason| Err(RpcError::InvalidConfig { reason });
        if self.targets.is_empty() {
            return invalid("a notification listener needs a target");
        }
        if self.targets.iter().any(|(_, topic)| topic.is_empty()) {
            return invalid("a notification target needs a topic");
        }
        let endpoints = match (self.endpoints.is_empty(), self.batch_endpoints.is_empty()) {
            (false, false) => {
                return invalid(
                    "a notification listener has endpoints or batch endpoints, not both",
                );
            }
            (false, true) if self.batch.is_some() => {
                return invalid("batch settings need batch endpoints");
            }
            (_, true) => Endpoints::Single(self.endpoints),
            (true, false) => {
                let (size, timeout) = self.batch.unwrap_or((1, None));
                let prefetch = usize::from(self.transport.config().rabbit_qos_prefetch_count);
                let size = match prefetch {
                    0 => size,
                    prefetch => size.min(prefetch),
                };
                if size == 0 {
                    return invalid("batch_size must be at least 1");
                }
                Endpoints::Batch {
                    endpoints: self.batch_endpoints,
                    size,
                    timeout,
                }
            }
        };
        let priorities = match &endpoints {
            Endpoints::Single(endpoints) => endpoints
                .iter()
                .fold(Priorities::none(), |all, e| all.union(e.priorities())),
            Endpoints::Batch { endpoints, .. } => endpoints
                .iter()
                .fold(Priorities::none(), |all, e| all.union(e.priorities())),
        };
        if priorities.is_empty() {
            return invalid("a notification listener needs an endpoint that handles a priority");
        }
        if self.max_concurrency == 0 {
            return invalid("max_concurrency must be at least 1");
        }
        let mut keys = Vec::new();
        for (exchange, topic) in &self.targets {
            for priority in priorities.iter() {
                let key = (exchange.clone(), format!("{topic}.{}", priority.as_lower()));
                if !keys.contains(&key) {
                    keys.push(key);
                }
            }
        }
        Ok(NotificationListener {
            shared: Arc::new(Shared {
                transport: self.transport,
                keys,
                pool: self.pool,
                allow_requeue: self.allow_requeue,
                endpoints,
                max_concurrency: self.max_concurrency.min(u32::MAX as usize),
                running: watch::Sender::new(false),
                stop: std::sync::Mutex::new(None),
                acked: std::sync::Mutex::new(RecentIds::new(DUPLICATE_WINDOW)),
            }),
            consumer: tokio::sync::Mutex::new(None),
        })
    }
}

impl std::fmt::Debug for ListenerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerBuilder")
            .field("targets", &self.targets)
            .field("pool", &self.pool)
            .field("allow_requeue", &self.allow_requeue)
            .field("endpoints", &self.endpoints.len())
            .field("batch_endpoints", &self.batch_endpoints.len())
            .field("batch", &self.batch)
            .finish_non_exhaustive()
    }
}

/// Stops a [`NotificationListener`] from anywhere, and waits for it to stop. Cheap to clone;
/// made by [`NotificationListener::handle`].
#[derive(Clone)]
pub struct ListenerHandle {
    shared: Arc<Shared>,
}

impl ListenerHandle {
    /// Tells the listener to stop, and returns at once; [`ListenerHandle::stopped`] waits.
    pub fn stop(&self) {
        self.shared.tell_stop();
    }

    /// Waits until the listener is not running: stopped (notifications in flight handled and
    /// acknowledged, consumers cancelled), or never started.
    pub async fn stopped(&self) {
        self.shared.stopped().await;
    }

    /// Whether the listener is consuming.
    pub fn is_running(&self) -> bool {
        *self.shared.running.borrow()
    }
}

impl std::fmt::Debug for ListenerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerHandle")
            .field("running", &self.is_running())
            .finish_non_exhaustive()
    }
}

struct Shared {
    transport: Transport,
    /// `(exchange, <topic>.<priority>)`, each once.
    keys: Vec<(Option<String>, String)>,
    pool: Option<String>,
    allow_requeue: bool,
    endpoints: Endpoints,
    max_concurrency: usize,
    /// `true` from start until the consumer loop has finished (in-flight notifications
    /// settled, consumers cancelled).
    running: watch::Sender<bool>,
    /// Tells the running consumer loop to stop; taken by the first to stop it.
    stop: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    acked: std::sync::Mutex<RecentIds>,
}

impl Shared {
    fn tell_stop(&self) {
        if let Some(stop) = lock(&self.stop).take() {
            let _ = stop.send(());
        }
    }

    async fn stopped(&self) {
        let mut running = self.running.subscribe();
        // Err only if the sender is gone, which cannot happen while `self` lives.
        drop(running.wait_for(|running| !running).await);
    }
}

impl NotificationListener {
    /// Starts building a listener on `transport`.
    ///
    /// ```
    /// use amqp_rpc::notify::{NotificationFilter, NotificationListener, Priority, Typed, Incoming};
    /// # #[derive(serde::Deserialize)] struct Sample { counter_volume: f64 }
    /// # impl amqp_rpc::notify::Notification for Sample { const EVENT_TYPE: &'static str = "metering"; }
    /// # fn demo(transport: amqp_rpc::Transport) -> Result<(), Box<dyn std::error::Error>> {
    /// let listener = NotificationListener::builder(&transport)
    ///     .target("nova", "notifications")
    ///     .target("neutron", "notifications")
    ///     .pool("ceilometer")
    ///     .allow_requeue(true)
    ///     .endpoint(
    ///         Typed::new(Priority::Sample, |n: Incoming<Sample>| async move { let _ = n.payload.counter_volume; })
    ///             .with_filter(NotificationFilter::new().publisher_id("^compute")?),
    ///     )
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn builder(transport: &Transport) -> ListenerBuilder {
        ListenerBuilder {
            transport: transport.clone(),
            targets: Vec::new(),
            pool: None,
            allow_requeue: false,
            endpoints: Vec::new(),
            batch_endpoints: Vec::new(),
            batch: None,
            max_concurrency: transport.config().executor_thread_pool_size,
        }
    }

    /// The queues' routing keys and exchanges (`None`: the control exchange), each once.
    pub fn bindings(&self) -> impl Iterator<Item = (Option<&str>, &str)> {
        self.shared
            .keys
            .iter()
            .map(|(exchange, key)| (exchange.as_deref(), key.as_str()))
    }

    /// A handle to stop this listener from another task.
    pub fn handle(&self) -> ListenerHandle {
        ListenerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Starts, listens until `signal` completes or the listener is stopped otherwise (by a
    /// [`ListenerHandle`], or by its transport closing), then stops as
    /// [`NotificationListener::stop`] does. Fails if it cannot start, or if its subscription
    /// ended under it (the transport was closed).
    pub async fn serve_until(&self, signal: impl Future<Output = ()>) -> Result<(), RpcError> {
        self.start().await?;
        let mut running = self.shared.running.subscribe();
        tokio::select! {
            () = signal => {}
            // Err only if the sender is gone, which cannot happen while `self` lives.
            _ = running.wait_for(|running| !running) => {}
        }
        match self.stop_consuming().await {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }

    /// Declares the queues and starts consuming. Starting a running listener does nothing.
    /// On a `rabbit://` transport whose connection is being restored, it waits for it; later
    /// losses are recovered by the listener itself.
    pub async fn start(&self) -> Result<(), RpcError> {
        let mut consumer = self.consumer.lock().await;
        if let Some(running) = consumer.as_ref()
            && !running.is_finished()
            && lock(&self.shared.stop).is_some()
        {
            return Ok(());
        }
        if let Some(old) = consumer.take() {
            join(old).await;
        }
        let bindings: Vec<NotificationBinding<'_>> = self
            .bindings()
            .map(|(exchange, routing_key)| NotificationBinding {
                exchange,
                routing_key,
            })
            .collect();
        let prefetch = match &self.shared.endpoints {
            Endpoints::Single(_) => self.shared.max_concurrency,
            Endpoints::Batch { size, .. } => *size,
        };
        let prefetch = u16::try_from(prefetch).unwrap_or(u16::MAX);
        let subscription = self
            .shared
            .transport
            .driver()
            .listen_notifications(&bindings, self.shared.pool.as_deref(), prefetch)
            .await?;
        let (stop, stopped) = oneshot::channel();
        *lock(&self.shared.stop) = Some(stop);
        self.shared.running.send_replace(true);
        let shared = Arc::clone(&self.shared);
        *consumer = Some(tokio::spawn(async move {
            let ended = match &shared.endpoints {
                Endpoints::Single(_) => consume(&shared, subscription, stopped).await,
                Endpoints::Batch { size, timeout, .. } => {
                    consume_batches(&shared, subscription, stopped, *size, *timeout).await
                }
            };
            shared.running.send_replace(false);
            ended
        }));
        tracing::info!(keys = ?self.shared.keys, pool = self.shared.pool, "notification listener started");
        Ok(())
    }

    /// Stops: takes no new notification, lets those being handled finish and be acknowledged
    /// (or requeued), then cancels the consumers, so that whatever was delivered but not
    /// started goes back to its queue. Returns once all that is done. The listener can be
    /// started again.
    pub async fn stop(&self) {
        self.stop_consuming().await;
    }

    async fn stop_consuming(&self) -> Option<TransportError> {
        self.shared.tell_stop();
        let consumer = self.consumer.lock().await.take()?;
        let ended = join(consumer).await;
        tracing::info!(keys = ?self.shared.keys, "notification listener stopped");
        ended
    }

    /// Waits until the listener is stopped (by [`NotificationListener::stop`] or a
    /// [`ListenerHandle`], possibly from another task) and everything in flight is settled.
    pub async fn wait(&self) {
        self.shared.stopped().await;
    }
}

/// Dropping a running listener tells it to stop; it finishes what it is handling in the
/// background.
impl Drop for NotificationListener {
    fn drop(&mut self) {
        self.shared.tell_stop();
    }
}

impl std::fmt::Debug for NotificationListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotificationListener")
            .field("keys", &self.shared.keys)
            .field("pool", &self.shared.pool)
            .field("running", &*self.shared.running.borrow())
            .finish_non_exhaustive()
    }
}

async fn join(consumer: JoinHandle<Option<TransportError>>) -> Option<TransportError> {
    match consumer.await {
        Ok(ended) => ended,
        Err(e) => {
            tracing::error!(error = %e, "notification listener task failed");
            None
        }
    }
}

/// The single-notification loop: takes a delivery whenever a handling slot is free and hands it
/// to an idle worker (a task kept from one notification to the next, as the RPC server's); on
/// stop, waits for the notifications being handled to be settled, then cancels the consumers.
async fn consume(
    shared: &Arc<Shared>,
    mut subscription: Box<dyn Subscription>,
    mut stopped: oneshot::Receiver<()>,
) -> Option<TransportError> {
    let permits = Arc::new(Semaphore::new(shared.max_concurrency));
    let (later, mut handed) = mpsc::unbounded_channel();
    let mut settling = FuturesUnordered::new();
    let workers = Workers::new();
    let run = {
        let shared = Arc::clone(shared);
        move |delivery| handle_one(Arc::clone(&shared), delivery, later.clone())
    };
    let mut waits = Waits {
        stopped: &mut stopped,
        handed: &mut handed,
        settling: &mut settling,
    };
    let ended = loop {
        let Some(Ok(permit)) = waits
            .until_stopped(Arc::clone(&permits).acquire_owned())
            .await
        else {
            break None;
        };
        let Some(delivery) = waits.until_stopped(subscription.next()).await else {
            break None;
        };
        match delivery {
            Ok(delivery) => workers.submit(delivery, permit, &run),
            Err(e) => {
                tracing::error!(error = %e, "notification listener's subscription ended");
                break Some(e);
            }
        }
    };
    // Idle workers end now, busy ones once their notification is settled; all permits back
    // means none is in hand, and every settlement was handed over.
    drop(workers);
    let all = u32::try_from(shared.max_concurrency).unwrap_or(u32::MAX);
    if let Err(e) = permits.acquire_many(all).await {
        tracing::error!(error = %e, "notification listener semaphore closed");
    }
    while let Ok((acker, how)) = handed.try_recv() {
        start_settling(acker, how, &mut settling);
    }
    // Written before the channel closes: closing cancels the consumers, and what was
    // delivered but not settled goes back to its queue.
    while let Some(settled) = settling.next().await {
        log_settled(settled);
    }
    subscription.close().await;
    ended
}

/// An acknowledgement or rejection handed to the driver and still being written.
type Settling = Pin<Box<dyn Future<Output = Result<(), TransportError>> + Send>>;

/// What the consumer loop polls while it waits for a slot or a delivery.
struct Waits<'a> {
    stopped: &'a mut oneshot::Receiver<()>,
    /// Settlements the workers handed over, to start here.
    handed: &'a mut mpsc::UnboundedReceiver<(Box<dyn Acker>, Settle)>,
    settling: &'a mut FuturesUnordered<Settling>,
}

impl Waits<'_> {
    /// Waits for `work` while taking and polling settlements; `None` if told to stop first.
    async fn until_stopped<T>(&mut self, work: impl Future<Output = T>) -> Option<T> {
        let mut work = std::pin::pin!(work);
        loop {
            tokio::select! {
                biased;
                _ = &mut *self.stopped => return None,
                Some((acker, how)) = self.handed.recv() => {
                    start_settling(acker, how, self.settling);
                    while let Ok((acker, how)) = self.handed.try_recv() {
                        start_settling(acker, how, self.settling);
                    }
                }
                Some(settled) = self.settling.next(), if !self.settling.is_empty() => {
                    log_settled(settled);
                }
                done = &mut work => return Some(done),
            }
        }
    }
}

/// What became of a received message before dispatch.
enum Received {
    /// A notification to dispatch at its priority.
    Notification(Incoming, Option<String>),
    /// Settled already (undecodable, duplicate, unknown priority).
    Settled,
}

/// Decodes a delivery; settles it at once if it is not to be dispatched. Hands the acker back
/// with a notification.
async fn receive(
    shared: &Shared,
    delivery: Delivery,
    later: Option<&Later>,
) -> (Received, Option<Box<dyn Acker>>) {
    let Delivery { body, acker } = delivery;
    let message = match IncomingNotification::decode(&body) {
        Ok(message) => message,
        Err(error) => {
            let excerpt = String::from_utf8_lossy(&body[..body.len().min(1024)]).into_owned();
            tracing::warn!(%error, body = excerpt, "not a notification; rejected");
            settle(acker, Settle::Drop, later).await;
            return (Received::Settled, None);
        }
    };
    if let Some(id) = &message.unique_id
        && lock(&shared.acked).contains(id)
    {
        tracing::info!(
            unique_id = id,
            message_id = message.message_id,
            "duplicate notification dropped"
        );
        settle(acker, Settle::Ack, later).await;
        return (Received::Settled, None);
    }
    let Some(priority) = message.priority.as_deref().and_then(Priority::from_wire) else {
        tracing::warn!(
            priority = message.priority,
            message_id = message.message_id,
            event_type = message.event_type,
            "Unknown priority; notification acknowledged"
        );
        settle(acker, Settle::Ack, later).await;
        return (Received::Settled, None);
    };
    let incoming = Incoming {
        context: message.context,
        publisher_id: message.publisher_id,
        event_type: message.event_type,
        priority,
        payload: message.payload,
        metadata: Metadata {
            message_id: message.message_id,
            timestamp: message.timestamp,
        },
    };
    (
        Received::Notification(incoming, message.unique_id),
        Some(acker),
    )
}

async fn handle_one(shared: Arc<Shared>, delivery: Delivery, later: Later) {
    let later = Some(&later);
    let (received, acker) = receive(&shared, delivery, later).await;
    let (Received::Notification(incoming, unique_id), Some(acker)) = (received, acker) else {
        return;
    };
    let Endpoints::Single(endpoints) = &shared.endpoints else {
        return;
    };
    let span = telemetry::notification_span(
        incoming.event_type.as_deref(),
        incoming.priority.as_lower(),
        incoming.publisher_id.as_deref(),
        incoming.metadata.message_id.as_deref(),
        &incoming.context,
    );
    let result = run_endpoints(endpoints, &incoming)
        .instrument(span.clone())
        .await;
    telemetry::record_outcome(
        &span,
        match result {
            NotificationResult::Handled => "ok",
            NotificationResult::Requeue => "requeue",
        },
    );
    finish(&shared, acker, result, unique_id, later).await;
}

/// Hands a notification to each endpoint that takes it, until one asks for it again.
async fn run_endpoints(
    endpoints: &[Arc<dyn NotificationEndpoint>],
    incoming: &Incoming,
) -> NotificationResult {
    for endpoint in endpoints {
        if !endpoint.priorities().contains(incoming.priority) {
            continue;
        }
        if let Some(filter) = endpoint.filter()
            && !filter.matches(incoming)
        {
            continue;
        }
        let outcome = AssertUnwindSafe(endpoint.handle(incoming))
            .catch_unwind()
            .await;
        if outcome_of(outcome, incoming) == NotificationResult::Requeue {
            return NotificationResult::Requeue;
        }
    }
    NotificationResult::Handled
}

/// The result of an endpoint call; errors and panics are logged and count as requeue.
fn outcome_of(
    outcome: Result<Result<NotificationResult, HandlerError>, Box<dyn std::any::Any + Send>>,
    incoming: &Incoming,
) -> NotificationResult {
    match outcome {
        Ok(Ok(result)) => result,
        Ok(Err(error)) => {
            tracing::error!(
                %error,
                message_id = incoming.metadata.message_id,
                event_type = incoming.event_type,
                "notification endpoint failed"
            );
            NotificationResult::Requeue
        }
        Err(panic) => {
            let text = panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(
                panic = text,
                message_id = incoming.metadata.message_id,
                event_type = incoming.event_type,
                "notification endpoint panicked"
            );
            NotificationResult::Requeue
        }
    }
}

/// Acknowledges, or requeues if asked and allowed.
async fn finish(
    shared: &Shared,
    acker: Box<dyn Acker>,
    result: NotificationResult,
    unique_id: Option<String>,
    later: Option<&Later>,
) {
    if result == NotificationResult::Requeue && shared.allow_requeue {
        settle(acker, Settle::Requeue, later).await;
        return;
    }
    // Remembered before the ack goes out: a copy delivered meanwhile is a duplicate.
    if let Some(id) = unique_id {
        let _ = lock(&shared.acked).insert(id);
    }
    settle(acker, Settle::Ack, later).await;
}

enum Settle {
    Ack,
    Requeue,
    Drop,
}

impl Settle {
    /// The settlement's future; its first poll hands the frame to the driver.
    fn start(self, acker: Box<dyn Acker>) -> Settling {
        match self {
            Settle::Ack => acker.ack(),
            Settle::Requeue => acker.reject(true),
            Settle::Drop => acker.reject(false),
        }
    }
}

/// Where a worker hands a settlement for the consumer loop to make.
type Later = mpsc::UnboundedSender<(Box<dyn Acker>, Settle)>;

/// Starts a settlement in the consumer loop: the frame goes to the driver now, its write is
/// polled with the others.
fn start_settling(acker: Box<dyn Acker>, how: Settle, settling: &mut FuturesUnordered<Settling>) {
    let mut settle = how.start(acker);
    match settle.as_mut().now_or_never() {
        Some(settled) => log_settled(settled),
        None => settling.push(settle),
    }
}

/// Acknowledges or rejects: in the consumer loop when `later` is given, here otherwise.
///
/// A worker hands its settlement over and is free at once. The consumer loop then sends the
/// frames of all the settlements handed over since it last ran, so the connection's I/O task
/// wakes once for several (as it does for the RPC server, which acknowledges in its consumer
/// loop); measured on RabbitMQ, that is about 3% of a notification's cost (bench/PROFILING.md).
async fn settle(acker: Box<dyn Acker>, how: Settle, later: Option<&Later>) {
    let (acker, how) = match later {
        Some(later) => match later.send((acker, how)) {
            Ok(()) => return,
            Err(mpsc::error::SendError(back)) => back,
        },
        None => (acker, how),
    };
    log_settled(how.start(acker).await);
}

fn log_settled(settled: Result<(), TransportError>) {
    if let Err(e) = settled {
        // The channel is gone: the broker has the message back and delivers it again.
        tracing::warn!(error = %e, "could not acknowledge a notification; it comes again");
    }
}

/// The batch loop: collects up to `size` notifications, or what came within `timeout` of the
/// first, and dispatches them grouped by priority; one batch at a time.
async fn consume_batches(
    shared: &Arc<Shared>,
    mut subscription: Box<dyn Subscription>,
    mut stopped: oneshot::Receiver<()>,
    size: usize,
    timeout: Option<Duration>,
) -> Option<TransportError> {
    let mut ended = None;
    let mut stopping = false;
    while !stopping {
        let first = tokio::select! {
            biased;
            _ = &mut stopped => break,
            delivery = subscription.next() => delivery,
        };
        let mut batch = Vec::with_capacity(size);
        match first {
            Ok(delivery) => batch.push(delivery),
            Err(e) => {
                ended = Some(e);
                break;
            }
        }
        let deadline = timeout.map(crate::transport::deadline_after);
        while batch.len() < size {
            let expired = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = &mut stopped => {
                    stopping = true;
                    break;
                }
                () = expired => break,
                delivery = subscription.next() => match delivery {
                    Ok(delivery) => batch.push(delivery),
                    Err(e) => {
                        ended = Some(e);
                        stopping = true;
                        break;
                    }
                },
            }
        }
        handle_batch(shared, batch).await;
    }
    if let Some(e) = &ended {
        tracing::error!(error = %e, "notification listener's subscription ended");
    }
    subscription.close().await;
    ended
}

/// A notification of a batch awaiting its endpoints: with its `_unique_id` and acker.
type Pending = (Incoming, Option<String>, Box<dyn Acker>);

async fn handle_batch(shared: &Shared, batch: Vec<Delivery>) {
    let Endpoints::Batch { endpoints, .. } = &shared.endpoints else {
        return;
    };
    let mut groups: HashMap<Priority, Vec<Pending>> = HashMap::new();
    for delivery in batch {
        if let (Received::Notification(incoming, id), Some(acker)) =
            receive(shared, delivery, None).await
        {
            groups
                .entry(incoming.priority)
                .or_default()
                .push((incoming, id, acker));
        }
    }
    let mut priorities: Vec<Priority> = groups.keys().copied().collect();
    priorities.sort();
    for priority in priorities {
        let Some(group) = groups.remove(&priority) else {
            continue;
        };
        let mut result = NotificationResult::Handled;
        for endpoint in endpoints {
            if !endpoint.priorities().contains(priority) {
                continue;
            }
            let passed: Vec<Incoming> = group
                .iter()
                .filter(|(n, _, _)| endpoint.filter().is_none_or(|f| f.matches(n)))
                .map(|(n, _, _)| n.clone())
                .collect();
            let Some(first) = passed.first() else {
                continue;
            };
            let outcome = AssertUnwindSafe(endpoint.handle_batch(priority, &passed))
                .catch_unwind()
                .await;
            if outcome_of(outcome, first) == NotificationResult::Requeue {
                result = NotificationResult::Requeue;
                break;
            }
        }
        for (_, id, acker) in group {
            finish(shared, acker, result, id, None).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_forget_the_oldest_beyond_the_window() {
        let mut recent = RecentIds::new(DUPLICATE_WINDOW);
        for i in 0..=DUPLICATE_WINDOW {
            let _ = recent.insert(i.to_string());
        }
        assert!(!recent.contains("0"));
        assert!(recent.contains("1"));
        assert!(recent.contains(&DUPLICATE_WINDOW.to_string()));
        assert_eq!(recent.len(), DUPLICATE_WINDOW);
    }
}
