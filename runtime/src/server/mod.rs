//! The RPC server: consumes a server target's queues and runs requests on its endpoints.
//!
//! Requests are acknowledged when their handler starts (at-most-once, as oslo), and the
//! consumer never holds more unacknowledged requests than the concurrency limit, so requests
//! not yet started go back to the queue when the server stops.

mod dispatcher;
mod reply_retry;

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::OptionFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, StreamExt};
use tokio::sync::{Semaphore, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::driver::{Destination, LONGEST_NAME, PublishOptions, Subscription};
use crate::endpoint::{Endpoint, Returned};
use crate::error::{RemoteError, RpcError, TransportError};
use crate::hooks::{self, Outcome, RequestHook, RequestInfo};
use crate::recent_ids::RecentIds;
use crate::sync::lock;
use crate::target::Target;
use crate::telemetry;
use crate::transport::Transport;
use crate::wire::{self, IncomingRequest, OutgoingReply, ReplyTo};
use crate::workers::Workers;
use dispatcher::Dispatcher;
use reply_retry::{Known, ReplyRetries};

pub use dispatcher::PING_METHOD;

/// Settings of an [`RpcServer`].
///
/// ```
/// let config = amqp_rpc::ServerConfig::default().with_max_concurrency(8).with_ping(true);
/// assert_eq!(config.max_concurrency, 8);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// How many requests may be handled at once (oslo's `executor_thread_pool_size`).
    /// Default 64; must be at least 1. It is also the consumer prefetch, so at most this many
    /// requests wait unacknowledged on the server.
    pub max_concurrency: usize,
    /// Whether the server answers `oslo_rpc_server_ping` with `"pong"` (oslo's
    /// `rpc_ping_enabled`). Default `false`.
    pub ping: bool,
    /// Whether the server answers [`DESCRIBE_METHOD`](crate::describe::DESCRIBE_METHOD) with a
    /// description of its endpoints (see [`describe`](crate::describe)). Default `false`: a
    /// server says what it serves only when asked to.
    pub describe: bool,
    /// How many final replies to missing reply queues the server keeps to try again. A
    /// reply whose queue is missing (the caller may be reconnecting) is tried again every
    /// 0.25 s for `kombu_missing_consumer_retry_timeout`, as oslo does, but without holding a
    /// handler slot. Default 1024. Beyond this many, or beyond
    /// [`ServerConfig::max_pending_reply_bytes`], the oldest kept reply is dropped, with a
    /// WARN line naming its `_msg_id` and queue; `0` keeps none.
    pub max_pending_replies: usize,
    /// How many bytes of encoded replies the server keeps for missing reply queues, over all
    /// of them. Default 64 MiB. A single reply larger than this is dropped when its queue is
    /// found missing.
    pub max_pending_reply_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            max_concurrency: 64,
            ping: false,
            describe: false,
            max_pending_replies: 1024,
            max_pending_reply_bytes: 64 << 20,
        }
    }
}

impl ServerConfig {
    /// Sets [`ServerConfig::max_concurrency`].
    #[must_use]
    pub fn with_max_concurrency(mut self, max: usize) -> Self {
        self.max_concurrency = max;
        self
    }

    /// Sets [`ServerConfig::ping`].
    #[must_use]
    pub fn with_ping(mut self, enabled: bool) -> Self {
        self.ping = enabled;
        self
    }

    /// Sets [`ServerConfig::describe`].
    #[must_use]
    pub fn with_describe(mut self, enabled: bool) -> Self {
        self.describe = enabled;
        self
    }

    /// Sets [`ServerConfig::max_pending_replies`] and
    /// [`ServerConfig::max_pending_reply_bytes`].
    #[must_use]
    pub fn with_max_pending_replies(mut self, replies: usize, bytes: usize) -> Self {
        self.max_pending_replies = replies;
        self.max_pending_reply_bytes = bytes;
        self
    }
}

/// Serves endpoints on a server [`Target`]: the shared `<topic>` queue (round-robin among
/// servers), its own `<topic>.<server>` queue, and the topic's fanout.
///
/// Made by [`RpcServer::builder`]. [`RpcServer::serve_until`] runs it until a future
/// completes (a signal, say) and then shuts it down gracefully; [`RpcServer::start`],
/// [`RpcServer::stop`] and [`RpcServer::wait`] are the steps it takes, for finer control; a
/// [`ServerHandle`] stops it from anywhere.
///
/// ```
/// use amqp_rpc::{Endpoint, RpcServer, Target, Transport};
/// # async fn demo(transport: Transport, endpoint: impl Endpoint) -> Result<(), amqp_rpc::RpcError> {
/// let server = RpcServer::builder(&transport, Target::server("calculator", "calc-1"))
///     .endpoint(endpoint)
///     .max_concurrency(8)
///     .build()?;
/// // Serves until Ctrl-C, then takes no new requests and lets those in flight finish.
/// server.serve_until(async { tokio::signal::ctrl_c().await.unwrap_or(()) }).await?;
/// # Ok(()) }
/// ```
pub struct RpcServer {
    shared: Arc<Shared>,
    /// The consumer loop, while one was started and not yet joined.
    consumer: tokio::sync::Mutex<Option<JoinHandle<Option<TransportError>>>>,
}

/// Builds an [`RpcServer`]: its endpoints, in the order they are scanned, and its settings.
/// Made by [`RpcServer::builder`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct ServerBuilder {
    transport: Transport,
    target: Target,
    endpoints: Vec<Arc<dyn Endpoint>>,
    hooks: Vec<Arc<dyn RequestHook>>,
    config: ServerConfig,
}

impl ServerBuilder {
    /// Adds an endpoint, scanned after those added before it: a request goes to the first
    /// endpoint of its namespace whose version serves it and which has the method. Generated
    /// endpoints come from the trait's `into_rpc()`; an `Arc<E>` is an endpoint too, to share
    /// one between servers.
    pub fn endpoint(mut self, endpoint: impl Endpoint) -> Self {
        self.endpoints.push(Arc::new(endpoint));
        self
    }

    /// Replaces every setting with `config`. The default is [`ServerConfig::default`] but for
    /// [`ServerConfig::max_concurrency`], which is the transport's `executor_thread_pool_size`
    /// (default 64).
    pub fn config(mut self, config: ServerConfig) -> Self {
        self.config = config;
        self
    }

    /// Sets [`ServerConfig::max_concurrency`].
    pub fn max_concurrency(mut self, max: usize) -> Self {
        self.config.max_concurrency = max;
        self
    }

    /// Sets [`ServerConfig::ping`].
    pub fn ping(mut self, enabled: bool) -> Self {
        self.config.ping = enabled;
        self
    }

    /// Adds a hook that sees every request before and after its method runs (see
    /// [`hooks`](crate::hooks)). Hooks run in the order added before a request, and in the
    /// reverse order after it, as nested layers.
    pub fn hook(mut self, hook: impl RequestHook) -> Self {
        self.hooks.push(Arc::new(hook));
        self
    }

    /// Sets [`ServerConfig::describe`]: the server describes its endpoints to
    /// `amqp-rpc describe`.
    pub fn describe(mut self, enabled: bool) -> Self {
        self.config.describe = enabled;
        self
    }

    /// The server, not yet started. Fails on a target without a topic or a server name
    /// ([`RpcError::InvalidTarget`]) and on a concurrency limit of 0
    /// ([`RpcError::InvalidConfig`]). A server without endpoints is valid: it answers every
    /// method with `NoSuchMethod`.
    pub fn build(self) -> Result<RpcServer, RpcError> {
        let ServerBuilder {
            transport,
            target,
            endpoints,
            hooks,
            config,
        } = self;
        target.validate_server()?;
        let max_concurrency = u32::try_from(config.max_concurrency)
            .ok()
            .filter(|&n| (1..=Semaphore::MAX_PERMITS as u64).contains(&u64::from(n)))
            .ok_or(RpcError::InvalidConfig {
                reason: "max_concurrency must be between 1 and 2^32-1",
            })?;
        Ok(RpcServer {
            shared: Arc::new(Shared {
                replies: Arc::new(ReplyRetries::new(
                    transport.clone(),
                    reply_retry::Limits {
                        replies: config.max_pending_replies,
                        bytes: config.max_pending_reply_bytes,
                    },
                )),
                transport,
                target,
                dispatcher: Dispatcher::new(endpoints, config.ping, config.describe),
                hooks,
                max_concurrency,
                permits: Arc::new(Semaphore::new(max_concurrency as usize)),
                consuming: watch::Sender::new(false),
                stop: std::sync::Mutex::new(None),
            }),
            consumer: tokio::sync::Mutex::new(None),
        })
    }
}

impl std::fmt::Debug for ServerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerBuilder")
            .field("target", &self.target)
            .field("endpoints", &self.endpoints.len())
            .field("hooks", &self.hooks.len())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Stops an [`RpcServer`] from anywhere, and waits for it to stop. Cheap to clone; made by
/// [`RpcServer::handle`]. It keeps the server's transport open while it lives.
///
/// ```
/// use amqp_rpc::{RpcServer, Target, Transport};
/// # async fn demo(transport: Transport) -> Result<(), amqp_rpc::RpcError> {
/// let server = RpcServer::builder(&transport, Target::server("jobs", "jobs-1")).build()?;
/// let handle = server.handle();
/// tokio::spawn(async move {
///     // ... on an admin request, a deadline, a health check failing ...
///     handle.stop();
/// });
/// server.serve_until(std::future::pending()).await?; // returns once stopped and drained
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ServerHandle {
    shared: Arc<Shared>,
}

impl ServerHandle {
    /// Tells the server to stop taking requests, and returns at once; requests in flight go
    /// on. A server that is not running is not affected (a later start is not cancelled).
    /// [`ServerHandle::stopped`] waits for the result.
    pub fn stop(&self) {
        if let Some(stop) = lock(&self.shared.stop).take() {
            // The loop may have ended on its own; then there is nobody to tell.
            let _ = stop.send(());
        }
    }

    /// Waits until the server is not running (stopped, or never started) and every request in
    /// flight has finished and been answered: [`RpcServer::wait`] from anywhere.
    pub async fn stopped(&self) {
        self.shared.stopped().await;
    }

    /// Whether the server is taking requests.
    pub fn is_running(&self) -> bool {
        *self.shared.consuming.borrow()
    }
}

impl std::fmt::Debug for ServerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerHandle")
            .field("target", &self.shared.target)
            .field("running", &self.is_running())
            .finish()
    }
}

struct Shared {
    transport: Transport,
    target: Target,
    dispatcher: Dispatcher,
    hooks: Vec<Arc<dyn RequestHook>>,
    max_concurrency: u32,
    permits: Arc<Semaphore>,
    /// `true` while the consumer loop runs.
    consuming: watch::Sender<bool>,
    /// Tells the running consumer loop to stop; taken by the first to stop it.
    stop: std::sync::Mutex<Option<oneshot::Sender<()>>>,
    /// Replies to missing reply queues, retried beside the handlers.
    replies: Arc<ReplyRetries>,
}

impl Shared {
    async fn stopped(&self) {
        let mut consuming = self.consuming.subscribe();
        // Err only if the sender is gone, which cannot happen while `self` lives.
        drop(consuming.wait_for(|running| !running).await);
        match self.permits.acquire_many(self.max_concurrency).await {
            Ok(all) => drop(all),
            Err(e) => tracing::error!(error = %e, "RPC server semaphore closed"),
        }
    }
}

/// How many `_unique_id`s a server remembers at least, to drop duplicates. oslo's
/// `_MsgIdCache` keeps 16; after a lost connection the broker redelivers every request not
/// acknowledged yet (up to the prefetch), and clients send again messages not confirmed, so
/// the window here also covers twice the concurrency limit.
const DUPLICATE_WINDOW: usize = 1024;

impl RpcServer {
    /// Starts building a server on `target`, which needs a topic and a server name.
    ///
    /// ```
    /// use amqp_rpc::{rpc_endpoint, RpcServer, Target, Transport};
    ///
    /// #[rpc_endpoint]
    /// pub trait Greeter {
    ///     /// Greets.
    ///     async fn hello(&self, name: String) -> String;
    /// }
    /// struct English;
    /// impl Greeter for English {
    ///     async fn hello(&self, name: String) -> String {
    ///         format!("hello, {name}")
    ///     }
    /// }
    /// # fn demo(transport: Transport) -> Result<(), amqp_rpc::RpcError> {
    /// let server = RpcServer::builder(&transport, Target::server("greeter", "greeter-1"))
    ///     .endpoint(English.into_rpc())
    ///     .ping(true)
    ///     .build()?;
    /// # Ok(()) }
    /// ```
    pub fn builder(transport: &Transport, target: Target) -> ServerBuilder {
        ServerBuilder {
            transport: transport.clone(),
            target,
            endpoints: Vec::new(),
            hooks: feature_hooks(),
            config: ServerConfig::default()
                .with_max_concurrency(transport.config().executor_thread_pool_size),
        }
    }

    /// The target served.
    pub fn target(&self) -> &Target {
        &self.shared.target
    }

    /// A handle to stop this server from another task.
    pub fn handle(&self) -> ServerHandle {
        ServerHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Starts the server, serves until `signal` completes or the server is stopped otherwise
    /// (by a [`ServerHandle`], or by its transport closing), then shuts down gracefully: takes
    /// no new requests (those not started go back to their queues) and returns once the
    /// requests in flight have finished and been answered.
    ///
    /// Fails if the server cannot start, or if it stopped because its subscription failed
    /// (the transport was closed under it): then requests in flight have finished too.
    pub async fn serve_until(&self, signal: impl Future<Output = ()>) -> Result<(), RpcError> {
        self.start().await?;
        let mut consuming = self.shared.consuming.subscribe();
        tokio::select! {
            () = signal => {}
            // Err only if the sender is gone, which cannot happen while `self` lives.
            _ = consuming.wait_for(|running| !running) => {}
        }
        let ended = self.stop_consuming().await;
        self.wait().await;
        match ended {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }

    /// Declares the queues and starts taking requests. Starting a running server does nothing.
    /// On a `rabbit://` transport whose connection is being restored, it waits for the
    /// connection; afterwards the server declares and consumes its queues again by itself
    /// whenever the connection is lost.
    pub async fn start(&self) -> Result<(), RpcError> {
        let mut consumer = self.consumer.lock().await;
        if let Some(running) = consumer.as_ref()
            && !running.is_finished()
            && lock(&self.shared.stop).is_some()
        {
            return Ok(());
        }
        // A loop told to stop (or ended) is joined before a new one consumes the queues.
        if let Some(old) = consumer.take() {
            join(old).await;
        }
        let prefetch = u16::try_from(self.shared.max_concurrency).unwrap_or(u16::MAX);
        let subscription = self
            .shared
            .transport
            .driver()
            .listen_rpc(&self.shared.target, prefetch)
            .await?;
        let (stop, stopped) = oneshot::channel();
        *lock(&self.shared.stop) = Some(stop);
        self.shared.consuming.send_replace(true);
        *consumer = Some(tokio::spawn(consume(
            Arc::clone(&self.shared),
            subscription,
            stopped,
        )));
        tracing::info!(target = %self.shared.target, "RPC server started");
        Ok(())
    }

    /// Stops taking requests: when it returns, the queues are no longer consumed and requests
    /// not yet started are back in their queues. Requests in flight go on; see
    /// [`RpcServer::wait`].
    pub async fn stop(&self) {
        self.stop_consuming().await;
    }

    /// Stops the consumer loop and joins it: the error it ended on by itself, if it did.
    async fn stop_consuming(&self) -> Option<TransportError> {
        self.handle().stop();
        let consumer = self.consumer.lock().await.take()?;
        let ended = join(consumer).await;
        tracing::info!(target = %self.shared.target, "RPC server stopped");
        ended
    }

    /// Waits until the server is stopped (by [`RpcServer::stop`] or a [`ServerHandle`],
    /// possibly from another task) and every request in flight has finished and been
    /// answered. The server can then be started again.
    ///
    /// A reply whose reply queue is missing counts as answered: it is kept and tried again in
    /// the background (see [`ServerConfig::max_pending_replies`]) until delivered, or for
    /// `kombu_missing_consumer_retry_timeout`, for as long as the transport is open (it keeps
    /// the transport's connection open until then); closing the transport drops it. oslo's
    /// `wait()` waits for such retries, up to that timeout.
    pub async fn wait(&self) {
        self.shared.stopped().await;
    }
}

/// Waits for a consumer loop to end: the error it ended on by itself, if it did.
async fn join(consumer: JoinHandle<Option<TransportError>>) -> Option<TransportError> {
    match consumer.await {
        Ok(ended) => ended,
        Err(e) => {
            tracing::error!(error = %e, "RPC server consumer task failed");
            None
        }
    }
}

/// Dropping a running server stops it taking requests, as [`RpcServer::stop`] does; requests
/// in flight still finish and are answered in the background.
impl Drop for RpcServer {
    fn drop(&mut self) {
        self.handle().stop();
    }
}

impl std::fmt::Debug for RpcServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcServer")
            .field("target", &self.shared.target)
            .field("max_concurrency", &self.shared.max_concurrency)
            .finish_non_exhaustive()
    }
}

/// Takes requests while there is room for a handler, until told to stop.
async fn consume(
    shared: Arc<Shared>,
    mut subscription: Box<dyn Subscription>,
    mut stop: oneshot::Receiver<()>,
) -> Option<TransportError> {
    let mut ended = None;
    let mut recent_ids = RecentIds::new(DUPLICATE_WINDOW.max(2 * shared.max_concurrency as usize));
    // Acknowledgements being written, polled here rather than in a task each.
    let mut acks = FuturesUnordered::new();
    let workers = Workers::new();
    let run = {
        let shared = Arc::clone(&shared);
        move |request| handle(Arc::clone(&shared), request)
    };
    loop {
        let acquire = Arc::clone(&shared.permits).acquire_owned();
        let Some(Ok(permit)) = until_stopped(&mut stop, &mut acks, acquire).await else {
            break;
        };
        let Some(delivery) = until_stopped(&mut stop, &mut acks, subscription.next()).await else {
            break;
        };
        let delivery = match delivery {
            Ok(delivery) => delivery,
            Err(e) => {
                tracing::error!(target = %shared.target, error = %e, "RPC server stopped consuming");
                ended = Some(e);
                break;
            }
        };
        let limit = shared.transport.config().max_message_size;
        let mut request = match read_request(&delivery.body, limit) {
            Ok(request) if request.reply.is_some() || request.refusal.is_none() => request,
            unanswerable => {
                let why = match unanswerable {
                    Ok(request) => request.refusal.map(|r| r.message().to_owned()),
                    Err(e) => Some(e.to_string()),
                };
                tracing::warn!(
                    error = why.as_deref().unwrap_or_default(),
                    bytes = delivery.body.len(),
                    "rejecting an RPC message that cannot be run or answered"
                );
                if let Err(e) = delivery.acker.reject(false).await {
                    tracing::warn!(error = %e, "failed to reject a message");
                }
                continue;
            }
        };
        // At-most-once: the request is acknowledged before it runs. One poll hands the
        // acknowledgement to the driver (a memory ack completes there); the wait for its write
        // runs beside the request, like oslo's write to the socket: if the connection fails
        // before the broker reads it, the broker redelivers the request (oslo has that window,
        // and the duplicate check below closes it for this server). An acknowledgement that
        // fails at once (its channel is gone) means the broker has the request back: as oslo,
        // it is not run here. Acknowledging first is also the cheaper order: 1.31–1.35× the
        // calls/s of acknowledging after the reply, with a fifth less broker CPU (issue 19's
        // pricing, `bench/PROFILING.md`).
        let mut ack = delivery.acker.ack();
        match ack.as_mut().now_or_never() {
            Some(Err(e)) => {
                tracing::warn!(error = %e, "request not acknowledged; the broker redelivers it");
                continue;
            }
            Some(Ok(())) => {}
            None => acks.push(ack),
        }
        if let Some(id) = request.unique_id.take()
            && let Err(id) = recent_ids.insert(id)
        {
            tracing::info!(unique_id = %id, "dropping duplicate message");
            continue;
        }
        workers.submit(request, permit, &run);
    }
    // Idle workers end now, busy ones when their request is answered.
    drop(workers);
    // Acknowledgements of started requests go out before the channel closes; then closing
    // cancels the consumers, and requests not acknowledged (not started) requeue.
    while let Some(acked) = acks.next().await {
        log_ack(acked);
    }
    subscription.close().await;
    shared.consuming.send_replace(false);
    ended
}

/// Reads a request body of at most `limit` bytes. One that is larger or does not decode but
/// names its `_msg_id` and `_reply_q` becomes a request answered with a `ValueError` failure
/// (its caller learns at once instead of timing out); `Err` for one that cannot be answered.
fn read_request(body: &[u8], limit: usize) -> Result<IncomingRequest, wire::WireError> {
    let error = match body.len() > limit {
        true => wire::WireError::TooLarge {
            size: body.len(),
            limit,
        },
        false => match IncomingRequest::decode(body) {
            Ok(request) => return Ok(request),
            Err(e) => e,
        },
    };
    match wire::salvage_reply_to(body, body.len() <= limit) {
        Some(to) => {
            tracing::warn!(msg_id = to.msg_id, error = %error, "answering an RPC request that cannot be read with a failure");
            let failure = RemoteError::builtin(
                "ValueError",
                format!("amqp-rpc server could not read the request: {error}"),
            );
            Ok(IncomingRequest::refused(to, failure))
        }
        None => Err(error),
    }
}

/// Waits for `work` while polling the acknowledgements being written; `None` if told to stop
/// first.
async fn until_stopped<T, A>(
    stop: &mut oneshot::Receiver<()>,
    acks: &mut FuturesUnordered<A>,
    work: impl Future<Output = T>,
) -> Option<T>
where
    A: Future<Output = Result<(), TransportError>>,
{
    let mut work = std::pin::pin!(work);
    loop {
        tokio::select! {
            biased;
            _ = &mut *stop => return None,
            Some(acked) = acks.next(), if !acks.is_empty() => log_ack(acked),
            done = &mut work => return Some(done),
        }
    }
}

/// The hooks every server starts with: those of the crate's features.
fn feature_hooks() -> Vec<Arc<dyn RequestHook>> {
    vec![
        #[cfg(feature = "metrics")]
        Arc::new(crate::metrics::ServerMetrics),
    ]
}

/// Logs an acknowledgement that failed after its request started (it runs all the same).
fn log_ack(acked: Result<(), TransportError>) {
    if let Err(e) = acked {
        tracing::warn!(error = %e, "failed to acknowledge a request");
    }
}

/// Runs one request and answers it if it is a call.
async fn handle(shared: Arc<Shared>, request: IncomingRequest) {
    let IncomingRequest {
        method,
        args,
        namespace,
        version,
        reply,
        call_monitor_timeout,
        context,
        refusal,
        ..
    } = request;
    let span = telemetry::request_span(&telemetry::RequestFields {
        server: &shared.target,
        method: method.as_deref(),
        namespace: namespace.as_deref(),
        version: version.valid(),
        msg_id: reply.as_ref().map(|r| r.msg_id.as_str()),
        context: &context,
    });
    let ended = span.clone();
    async {
        // Only with hooks: the context is moved into the method, and `after` sees it too.
        let hooked_context = (!shared.hooks.is_empty()).then(|| context.clone());
        let hooked = hooked_context.as_ref().map(|context| {
            let info = RequestInfo {
                server: &shared.target,
                method: method.as_deref().unwrap_or_default(),
                namespace: namespace.as_deref(),
                version: version.valid().copied(),
                msg_id: reply.as_ref().map(|r| r.msg_id.as_str()),
                context,
            };
            (info, Instant::now())
        });
        if let Some((info, _)) = &hooked {
            for hook in &shared.hooks {
                hooks::guarded("before", || hook.before(info));
            }
        }
        let work = shared.dispatcher.dispatch(
            context,
            method.as_deref(),
            namespace.as_deref(),
            &version,
            args,
        );
        let work = AssertUnwindSafe(work).catch_unwind();
        let heartbeat = reply.as_ref().zip(heartbeat_interval(call_monitor_timeout));
        let outcome = match (refusal, heartbeat) {
            // A request that must not run (see `IncomingRequest::refusal`).
            (Some(failure), _) => Ok(Err(failure)),
            (None, None) => work.await,
            // Rare: boxed, so that the task of every other request stays small.
            (None, Some((to, interval))) => {
                Box::pin(with_heartbeats(&shared, to, interval, work)).await
            }
        };
        let outcome = outcome.unwrap_or_else(|panic| Err(panic_failure(panic.as_ref())));
        telemetry::record_request(&ended, outcome.as_ref().err());
        if let Some((info, started)) = &hooked {
            let how = match &outcome {
                Ok(_) => Outcome::Returned,
                Err(failure) => Outcome::Raised(failure),
            };
            let elapsed = started.elapsed();
            for hook in shared.hooks.iter().rev() {
                hooks::guarded("after", || hook.after(info, &how, elapsed));
            }
        }
        match &reply {
            Some(to) => {
                let retry_for = shared
                    .transport
                    .config()
                    .kombu_missing_consumer_retry_timeout;
                send_reply(&shared, &to.reply_q, &to.msg_id, outcome, retry_for, true).await;
            }
            None => {
                if let Err(failure) = outcome {
                    tracing::warn!(%failure, "cast failed; no caller to tell");
                }
            }
        }
    }
    .instrument(span)
    .await;
}

/// Runs `work`, sending a heartbeat to `to` every `interval` until it ends (or the reply
/// queue is found missing). A heartbeat is sent beside the work, never holding it up, and
/// given up when not confirmed within its interval (the connection may be stalled or being
/// restored): the next tick sends another.
async fn with_heartbeats<T>(
    shared: &Shared,
    to: &ReplyTo,
    interval: Duration,
    work: impl Future<Output = T>,
) -> T {
    let mut work = std::pin::pin!(work);
    let mut ticks = tokio::time::interval_at(Instant::now() + interval, interval);
    let mut beat = std::pin::pin!(None);
    let mut beating = true;
    loop {
        tokio::select! {
            outcome = &mut work => break outcome,
            Some(sent) = OptionFuture::from(beat.as_mut().as_pin_mut()) => {
                beat.set(None);
                // A missing reply queue ends the heartbeats (oslo).
                beating = sent != Sent::NoQueue;
            }
            _ = ticks.tick(), if beating && beat.is_none() => {
                beat.set(Some(send_reply(shared, &to.reply_q, &to.msg_id, Ok(Returned::NONE), interval, false)));
            }
        }
    }
}

/// oslo's watchdog period: `int(_timeout) / 2` seconds, none when under one second.
///
/// `_timeout` comes from the network: a value no timer can hold (`1e300`, beyond a day's
/// heartbeats) gets no heartbeats, as a caller that waits that long needs none, rather than a
/// panic.
fn heartbeat_interval(call_monitor_timeout: Option<f64>) -> Option<Duration> {
    const LONGEST: Duration = Duration::from_secs(24 * 3600);
    let seconds = call_monitor_timeout?.trunc() / 2.0;
    if seconds < 1.0 || !seconds.is_finite() {
        tracing::debug!("call monitor timeout under 2 s: no heartbeats");
        return None;
    }
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|interval| *interval <= LONGEST)
}

fn panic_failure(panic: &(dyn std::any::Any + Send)) -> RemoteError {
    let text = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    tracing::error!(panic = text, "RPC handler panicked");
    RemoteError::builtin("RuntimeError", format!("RPC handler panicked: {text}"))
}

/// What became of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    Delivered,
    /// The reply queue is missing: a heartbeat is dropped, a final reply to an obsolete queue
    /// too.
    NoQueue,
    /// The reply queue is missing: the final reply is kept and tried again in the background.
    Kept,
    /// The broker could not be reached in time, or refused the reply.
    Failed,
}

/// Sends a reply (final when `ending`, else a heartbeat), given up `within` (also when the
/// connection is not restored by then).
///
/// oslo's rule for a missing reply queue (the caller may be reconnecting): a final reply is
/// tried again every 0.25 s for `kombu_missing_consumer_retry_timeout`, after which the queue
/// is remembered as obsolete for as long and later replies to it are dropped at once. Here the
/// retrying is handed to [`ReplyRetries`], so that the handler's slot is free at once; a final
/// reply to a queue already known missing joins the replies kept for it without being
/// published. A heartbeat is tried once.
async fn send_reply(
    shared: &Shared,
    reply_q: &str,
    msg_id: &str,
    outcome: Result<Returned, RemoteError>,
    within: Duration,
    ending: bool,
) -> Sent {
    if reply_q.len() > LONGEST_NAME {
        // From the network: no queue has such a name (and lapin would panic on it).
        tracing::warn!(
            bytes = reply_q.len(),
            "dropping a reply to a reply queue name longer than AMQP allows"
        );
        return Sent::NoQueue;
    }
    let known = shared.replies.known(reply_q);
    match known {
        Known::Obsolete => {
            tracing::warn!(
                reply_q,
                "dropping a reply to a reply queue found missing earlier"
            );
            return Sent::NoQueue;
        }
        Known::Missing if !ending => return Sent::NoQueue,
        Known::Missing | Known::Nothing => {}
    }
    let (result, failure) = match outcome {
        Ok(value) => (value, None),
        Err(failure) => {
            tracing::debug!(%failure, "replying with a failure");
            (Returned::NONE, Some(failure.to_failure_string()))
        }
    };
    let unique_id = wire::new_id().text();
    let reply = OutgoingReply {
        result,
        failure,
        ending,
        msg_id,
        unique_id: unique_id.as_str(),
    };
    let body = Bytes::from(reply.encode());
    if known == Known::Missing {
        shared.replies.keep(reply_q, msg_id, body);
        return Sent::Kept;
    }
    // Mandatory, as oslo's replies (spec §2.2): a reply queue that is gone is returned and
    // reported, not dropped in silence. Measured within the noise (issue 19's pricing,
    // `bench/PROFILING.md`).
    let options = PublishOptions {
        expiration: None,
        mandatory: true,
    };
    let retry = if ending { None } else { Some(0) };
    let to = Destination::Reply { queue: reply_q };
    match shared
        .transport
        .publish(to, &body, options, retry, within)
        .await
    {
        Ok(()) => Sent::Delivered,
        Err(TransportError::NoRoute { .. }) if ending => {
            tracing::debug!(
                reply_q,
                "reply queue missing; the reply is kept to try again"
            );
            shared.replies.keep(reply_q, msg_id, body);
            Sent::Kept
        }
        Err(TransportError::NoRoute { .. }) => Sent::NoQueue,
        Err(e) => {
            tracing::warn!(reply_q, error = %e, "could not deliver reply");
            Sent::Failed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_intervals_follow_oslo_and_never_overflow() {
        assert_eq!(heartbeat_interval(None), None);
        assert_eq!(heartbeat_interval(Some(1.9)), None);
        assert_eq!(heartbeat_interval(Some(2.0)), Some(Duration::from_secs(1)));
        assert_eq!(
            heartbeat_interval(Some(5.7)),
            Some(Duration::from_millis(2500))
        );
        for hostile in [1e300, 1.8447e19, f64::INFINITY, f64::NAN, -3.0, 1e6] {
            assert_eq!(heartbeat_interval(Some(hostile)), None, "{hostile}");
        }
    }
}
