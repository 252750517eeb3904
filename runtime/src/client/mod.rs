//! The RPC client: `call` (request and reply), `cast` (one way) and fanout casts, with oslo's
//! `prepare()` overrides, version cap and call-monitor timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::Either;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::time::Instant;
use tracing::Instrument;

use crate::context::Context;
use crate::driver::{Destination, PublishOptions};
use crate::error::{RemoteError, RpcError};
use crate::hooks::{CallHook, ClientHooks, ContextProvider, MessageInfo};
use crate::target::Target;
use crate::telemetry;
use crate::transport::replies::{PendingCall, ReplyEvent, ReplyWaiter};
use crate::transport::{Delivery, Transport, deadline_after};
use crate::version::Version;
use crate::wire::{self, CallFields, DISPATCHER_MODULE, OutgoingRequest};

/// How long a call waits for its reply unless told otherwise (oslo's `rpc_response_timeout`).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Sends calls and casts to a [`Target`].
///
/// Cheap to clone: clones share the transport and its one reply queue, which every concurrent
/// call of every client of the transport uses.
///
/// ```
/// use amqp_rpc::{Context, RpcClient, Target, Transport};
/// use std::time::Duration;
/// # async fn demo(transport: Transport) -> Result<(), amqp_rpc::RpcError> {
/// let client = RpcClient::new(&transport, Target::new("calculator"));
/// let sum: i64 = client.call(&Context::new(), "add", serde_json::json!({"x": 1, "y": 2})).await?;
/// // Overrides for one call, as oslo's prepare():
/// client
///     .prepare()
///     .with_server("calc-1")
///     .with_timeout(Duration::from_secs(5))
///     .cast(&Context::new(), "record", serde_json::json!({"line": "hi"}))
///     .await?;
/// # let _ = sum; Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RpcClient {
    transport: Transport,
    target: Target,
    timeout: Duration,
    call_monitor_timeout: Option<Duration>,
    version_cap: Option<Version>,
    retry: Option<u32>,
    hooks: ClientHooks,
}

impl RpcClient {
    /// A client sending to `target` with the transport's `rpc_response_timeout` (default
    /// [`DEFAULT_TIMEOUT`]), no version cap and no call monitoring.
    pub fn new(transport: &Transport, target: Target) -> RpcClient {
        RpcClient {
            transport: transport.clone(),
            target,
            timeout: transport.config().rpc_response_timeout,
            call_monitor_timeout: None,
            version_cap: None,
            retry: None,
            hooks: ClientHooks::with_features(),
        }
    }

    /// The same client, with `provider` changing the context of every call and cast it sends
    /// (after the providers given before). See [`ContextProvider`].
    #[must_use]
    pub fn with_context_provider(mut self, provider: impl ContextProvider) -> Self {
        self.hooks.push_provider(provider);
        self
    }

    /// The same client, with `hook` seeing every call and cast it sends, before and after
    /// (after the hooks given before; their `after` runs in reverse order). See [`CallHook`].
    #[must_use]
    pub fn with_hook(mut self, hook: impl CallHook) -> Self {
        self.hooks.push_call(hook);
        self
    }

    /// The target messages go to.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The transport.
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// How long a call may take from start to result (default [`DEFAULT_TIMEOUT`]), whatever
    /// happens meanwhile (the broker down, the network stalled, the connection being
    /// restored); also the `expiration` of call requests, so an unanswered request does not
    /// outlive its caller's interest, and how long a cast may try to reach the broker.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// oslo's `retry` for sending: `None` (the default) keeps trying until the timeout,
    /// `Some(0)` tries once, `Some(n)` retries `n` times.
    pub fn retry(&self) -> Option<u32> {
        self.retry
    }

    /// The version cap, if any.
    pub fn version_cap(&self) -> Option<Version> {
        self.version_cap
    }

    /// The call-monitor timeout, if any.
    pub fn call_monitor_timeout(&self) -> Option<Duration> {
        self.call_monitor_timeout
    }

    /// A copy to apply overrides to (oslo's `prepare()`); the original is unchanged.
    #[must_use]
    pub fn prepare(&self) -> RpcClient {
        self.clone()
    }

    /// Sends to `topic`.
    #[must_use]
    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.target = self.target.with_topic(topic);
        self
    }

    /// Sends to one server of the topic (its `<topic>.<server>` queue).
    #[must_use]
    pub fn with_server(mut self, server: impl Into<String>) -> Self {
        self.target = self.target.with_server(server);
        self
    }

    /// Sends through `exchange` instead of the control exchange.
    #[must_use]
    pub fn with_exchange(mut self, exchange: impl Into<String>) -> Self {
        self.target = self.target.with_exchange(exchange);
        self
    }

    /// Addresses endpoints of `namespace`.
    #[must_use]
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.target = self.target.with_namespace(namespace);
        self
    }

    /// Addresses oslo's default namespace (`None`).
    #[must_use]
    pub fn without_namespace(mut self) -> Self {
        self.target = self.target.without_namespace();
        self
    }

    pub(crate) fn set_namespace(mut self, namespace: Option<&str>) -> Self {
        self.target = match namespace {
            Some(namespace) => self.target.with_namespace(namespace),
            None => self.target.without_namespace(),
        };
        self
    }

    /// Requests API `version`.
    #[must_use]
    pub fn with_version(mut self, version: Version) -> Self {
        self.target = self.target.with_version(version);
        self
    }

    /// Casts to every server of the topic. A call with fanout fails with
    /// [`RpcError::InvalidTarget`].
    #[must_use]
    pub fn with_fanout(mut self, fanout: bool) -> Self {
        self.target = self.target.with_fanout(fanout);
        self
    }

    /// Lets calls take `timeout` in all, and casts try for as long (see
    /// [`RpcClient::timeout`]).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often a message is sent again when the connection is lost before the broker
    /// confirmed it (oslo's `retry`): `None` keeps trying, while the transport reconnects, until
    /// the timeout; `Some(0)` tries once and fails at once if the connection is down;
    /// `Some(n)` retries `n` times. A message sent again is the same message (same
    /// `_unique_id`), which servers use to drop duplicates. Giving up fails a cast with
    /// [`TransportError::DeliveryFailed`], a call with the same or, past its timeout,
    /// [`RpcError::Timeout`].
    ///
    /// [`TransportError::DeliveryFailed`]: crate::TransportError::DeliveryFailed
    #[must_use]
    pub fn with_retry(mut self, retry: Option<u32>) -> Self {
        self.retry = retry;
        self
    }

    /// Refuses, before sending, any message whose version is not compatible with `cap`.
    #[must_use]
    pub fn with_version_cap(mut self, cap: Version) -> Self {
        self.version_cap = Some(cap);
        self
    }

    /// Asks the server for a heartbeat every `timeout / 2` while the method runs, and fails the
    /// call when nothing arrives for `timeout` (the overall timeout still applies). Servers
    /// send no heartbeats for timeouts under 2 s.
    #[must_use]
    pub fn with_call_monitor_timeout(mut self, timeout: Duration) -> Self {
        self.call_monitor_timeout = Some(timeout);
        self
    }

    /// Whether a message of `version` passes the version cap (always, without a cap).
    pub fn can_send_version(&self, version: &Version) -> bool {
        Version::compatible(self.version_cap.as_ref(), Some(version))
    }

    /// Calls `method` with keyword arguments `args` and waits for its result.
    ///
    /// `args` must serialize to a JSON object (or to `null`/`()`, sent as `{}`). The request is
    /// encoded when `call` is called (on a transport's first call, when the future first runs),
    /// so the future does not keep the arguments while it waits. The call's `rpc.call` span
    /// (see [`hooks`](crate::hooks) and the README's "Tracing and metrics") is made then too,
    /// as a child of the caller's current span, and ends with the result.
    pub fn call<R: DeserializeOwned>(
        &self,
        ctx: &Context,
        method: &str,
        args: impl Serialize,
    ) -> impl Future<Output = Result<R, RpcError>> {
        self.call_as(self.target.version(), ctx, method, args)
    }

    /// [`RpcClient::call`] sending `version` instead of the target's (generated clients send
    /// each method's `since` version).
    ///
    /// Not an `async fn`: thousands of calls may wait at once, and the future of an `async fn`
    /// would keep slots for the arguments and for starting the reply queue beside the wait.
    pub(crate) fn call_as<R: DeserializeOwned>(
        &self,
        version: Option<Version>,
        ctx: &Context,
        method: &str,
        args: impl Serialize,
    ) -> impl Future<Output = Result<R, RpcError>> {
        let msg_id = wire::new_id();
        let span = telemetry::call_span(&self.target, method, version.as_ref(), msg_id);
        let hooked = self.hooks.has_calls().then(|| {
            self.hooks.before(&self.message_info(method, version, true));
            // Boxed: the future of every call without hooks stays small.
            Box::new(Hooked {
                method,
                version,
                started: Instant::now(),
            })
        });
        // Encoded in the span: the trace context sent is the call's.
        let call = span.in_scope(|| self.call_inner(version, ctx, method, args, msg_id));
        Traced {
            call,
            span,
            client: self,
            hooked,
        }
    }

    /// What hooks and providers see of a message.
    fn message_info<'a>(
        &'a self,
        method: &'a str,
        version: Option<Version>,
        call: bool,
    ) -> MessageInfo<'a> {
        MessageInfo {
            target: &self.target,
            method,
            call,
            version,
            timeout: call.then_some(self.timeout),
        }
    }

    /// [`RpcClient::call_as`] without its span and hooks.
    fn call_inner<R: DeserializeOwned>(
        &self,
        version: Option<Version>,
        ctx: &Context,
        method: &str,
        args: impl Serialize,
        msg_id: wire::Id,
    ) -> impl Future<Output = Result<R, RpcError>> {
        let checked = self
            .target
            .validate_call()
            .map_err(RpcError::from)
            .and_then(|()| self.check_version_cap(version));
        // Every call but a transport's first finds its reply queue running.
        let prepared = match (checked, self.transport.current_reply_waiter()) {
            (Err(e), _) => Prepared::Failed(e),
            (Ok(()), Some(waiter)) => {
                match self.encode_call(version, ctx, method, &args, msg_id, &waiter) {
                    Ok(body) => {
                        let deadline = deadline_after(self.timeout);
                        return Either::Left(self.send_call(waiter, msg_id, body, deadline));
                    }
                    Err(e) => Prepared::Failed(e),
                }
            }
            (Ok(()), None) => Prepared::Later(args),
        };
        // Boxed: only a failed call or a transport's first call (which starts the reply queue)
        // comes here.
        Either::Right(Box::pin(async move {
            let args = match prepared {
                Prepared::Failed(e) => return Err(e),
                Prepared::Later(args) => args,
            };
            // Starting the reply queue counts against the call's time too.
            let deadline = deadline_after(self.timeout);
            let waiter = tokio::time::timeout_at(deadline, self.transport.reply_waiter())
                .await
                .map_err(|_| self.timed_out(msg_id, deadline))??;
            let body = self.encode_call(version, ctx, method, &args, msg_id, &waiter)?;
            drop(args);
            self.send_call(waiter, msg_id, body, deadline).await
        }))
    }

    /// Publishes an encoded call request and waits for its reply, all before `deadline`.
    async fn send_call<R: DeserializeOwned>(
        &self,
        waiter: Arc<ReplyWaiter>,
        msg_id: wire::Id,
        body: Bytes,
        deadline: Instant,
    ) -> Result<R, RpcError> {
        let pending = waiter.register(msg_id)?;
        // The confirm, then the reply; not both at once, although a reply proves delivery too.
        // Awaiting them together gained under 5% of calls/s in issue 19's pricing
        // (`bench/PROFILING.md`: the confirm comes long before the reply, so there is little
        // wait to save), within the noise, and the call's future would hold both waits at once
        // instead of the larger (see `publish_call`), for every call waiting.
        self.publish_call(&body, msg_id, deadline).await?;
        drop(body);
        let result = self.wait_for_reply(&pending, deadline).await?;
        crate::wire::from_value(result).map_err(|e| RpcError::decode("call result", e))
    }

    /// Publishes the request of call `msg_id` by the client's `retry`, before `deadline`.
    ///
    /// A future of its own, awaited where the call awaits its reply, so that the call's future
    /// holds the larger of the two waits rather than both. The first attempt is inline, the
    /// rest boxed (`Transport::retry_publish`); a publish done at its first poll (`memory://`)
    /// sets no timer.
    async fn publish_call(
        &self,
        body: &Bytes,
        msg_id: wire::Id,
        deadline: Instant,
    ) -> Result<(), RpcError> {
        let mut first =
            self.transport
                .driver()
                .publish(self.destination(), body.clone(), self.call_options());
        let first = match first.as_mut().now_or_never() {
            Some(done) => Ok(done),
            None => tokio::time::timeout_at(deadline, first).await,
        };
        let sent = match first {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(error)) => {
                let delivery = Delivery {
                    retry: self.retry,
                    deadline,
                };
                let (to, options) = (self.destination(), self.call_options());
                self.transport
                    .retry_publish(to, body, options, delivery, error)
                    .await
            }
            Err(_elapsed) => return Err(self.timed_out(msg_id, deadline)),
        };
        match sent {
            Ok(()) => Ok(()),
            Err(_) if Instant::now() >= deadline => Err(self.timed_out(msg_id, deadline)),
            Err(e) => Err(e.into()),
        }
    }

    /// The body of a call request with id `msg_id`, answered to `waiter`'s queue.
    fn encode_call(
        &self,
        version: Option<Version>,
        ctx: &Context,
        method: &str,
        args: &impl Serialize,
        msg_id: wire::Id,
        waiter: &ReplyWaiter,
    ) -> Result<Bytes, RpcError> {
        self.encode(
            version,
            ctx,
            method,
            args,
            Some(CallFields {
                msg_id: msg_id.text().as_str(),
                reply_q: waiter.queue(),
                call_monitor_timeout: self.call_monitor_timeout.map(|d| d.as_secs_f64()),
            }),
        )
    }

    /// Sends `method` with keyword arguments `args` and returns once the broker has confirmed
    /// it; no reply is expected. With fanout, every server of the topic receives it. While the
    /// connection is being restored it waits, by [`RpcClient::retry`], for at most the
    /// client's timeout.
    pub async fn cast(
        &self,
        ctx: &Context,
        method: &str,
        args: impl Serialize,
    ) -> Result<(), RpcError> {
        self.cast_as(self.target.version(), ctx, method, args).await
    }

    /// [`RpcClient::cast`] sending `version` instead of the target's.
    pub(crate) async fn cast_as(
        &self,
        version: Option<Version>,
        ctx: &Context,
        method: &str,
        args: impl Serialize,
    ) -> Result<(), RpcError> {
        let span = telemetry::cast_span(&self.target, method, version.as_ref());
        let hooked = self.hooks.has_calls().then(|| {
            let message = self.message_info(method, version, false);
            self.hooks.before(&message);
            (message, Instant::now())
        });
        let result = self
            .cast_inner(version, ctx, method, args)
            .instrument(span.clone())
            .await;
        telemetry::record_client(&span, result.as_ref().err());
        if let Some((message, started)) = hooked {
            let result = result.as_ref().copied();
            self.hooks.after(&message, result, started.elapsed());
        }
        result
    }

    /// [`RpcClient::cast_as`] without its span and hooks.
    async fn cast_inner(
        &self,
        version: Option<Version>,
        ctx: &Context,
        method: &str,
        args: impl Serialize,
    ) -> Result<(), RpcError> {
        self.target.validate_cast()?;
        self.check_version_cap(version)?;
        let body = self.encode(version, ctx, method, &args, None)?;
        let options = PublishOptions::default();
        self.transport
            .publish(self.destination(), &body, options, self.retry, self.timeout)
            .await?;
        Ok(())
    }

    /// How call requests are published: expiring with the call's timeout, as oslo's do (spec
    /// §1.1, §3.2), so that a request nobody took before its caller gave up is dropped by the
    /// broker, not run. The expiration measured within the noise (issue 19's pricing,
    /// `bench/PROFILING.md`).
    fn call_options(&self) -> PublishOptions {
        PublishOptions {
            expiration: Some(self.timeout),
            mandatory: false,
        }
    }

    /// The timeout error of a call whose call monitor heard nothing in time.
    fn monitor_timed_out(&self, pending: &PendingCall) -> RpcError {
        RpcError::Timeout {
            msg_id: pending.msg_id().to_string(),
            waited: self.call_monitor_timeout.unwrap_or_default(),
        }
    }

    /// The timeout error of call `msg_id`, whose deadline was `deadline`.
    fn timed_out(&self, msg_id: wire::Id, deadline: Instant) -> RpcError {
        let started = deadline.checked_sub(self.timeout).unwrap_or(deadline);
        RpcError::Timeout {
            msg_id: msg_id.to_string(),
            waited: started.elapsed(),
        }
    }

    fn check_version_cap(&self, version: Option<Version>) -> Result<(), RpcError> {
        match Version::compatible(self.version_cap.as_ref(), version.as_ref()) {
            true => Ok(()),
            false => Err(RpcError::VersionCap {
                version,
                cap: self.version_cap.unwrap_or(Version::DEFAULT),
            }),
        }
    }

    fn destination(&self) -> Destination<'_> {
        // Targets were validated: a topic is present.
        let topic = self.target.topic().unwrap_or_default();
        match self.target.fanout() {
            true => Destination::Fanout { topic },
            false => Destination::Rpc {
                exchange: self.target.exchange(),
                topic,
                server: self.target.server_name(),
            },
        }
    }

    fn encode(
        &self,
        version: Option<Version>,
        ctx: &Context,
        method: &str,
        args: &(impl Serialize + ?Sized),
        call: Option<CallFields<'_>>,
    ) -> Result<Bytes, RpcError> {
        let message = self.message_info(method, version, call.is_some());
        let provided = self.hooks.provide(ctx, &message);
        let ctx = provided.as_ref().unwrap_or(ctx);
        let unique_id = wire::new_id().text();
        let request = OutgoingRequest {
            method,
            args,
            namespace: self.target.namespace(),
            version,
            call,
            unique_id: unique_id.as_str(),
            context: ctx,
        };
        request.encode().map(Bytes::from)
    }

    /// Waits for the final reply, as oslo's waiter: a non-null result is kept, a reply with
    /// `ending` returns the last result kept, a `null`-result non-final reply is a heartbeat.
    async fn wait_for_reply(
        &self,
        pending: &PendingCall,
        deadline: Instant,
    ) -> Result<Value, RpcError> {
        let mut monitor_deadline = self.call_monitor_timeout.map(deadline_after);
        let mut result = Value::Null;
        loop {
            let until = monitor_deadline.map_or(deadline, |m| m.min(deadline));
            let event = match tokio::time::timeout_at(until, pending.next()).await {
                Ok(event) => event,
                Err(_elapsed) if monitor_deadline.is_some_and(|m| m < deadline) => {
                    return Err(self.monitor_timed_out(pending));
                }
                Err(_elapsed) => return Err(self.timed_out(pending.msg_id(), deadline)),
            };
            let reply = match event {
                ReplyEvent::Reply(reply) => reply,
                ReplyEvent::Unreadable(error) => return Err(error.into()),
                ReplyEvent::Closed(error) => return Err(error.into()),
            };
            if reply.is_heartbeat() {
                tracing::debug!("call monitor heartbeat received; renewing timeout timer");
                monitor_deadline = self.call_monitor_timeout.map(deadline_after);
                continue;
            }
            if let Some(failure) = reply.failure {
                return Err(remote_to_error(failure));
            }
            if !reply.result.is_null() {
                result = reply.result;
            }
            if reply.ending {
                return Ok(result);
            }
        }
    }
}

/// What a call's hooks need once it ended.
struct Hooked<'a> {
    method: &'a str,
    version: Option<Version>,
    started: Instant,
}

pin_project_lite::pin_project! {
    /// A call in its span, recording how it ended and running the client's call hooks.
    ///
    /// A future of its own rather than an `async` block around the call, which would keep the
    /// call's future twice (as the block's capture and as what it awaits).
    struct Traced<'a, 'm, F> {
        #[pin]
        call: F,
        span: tracing::Span,
        client: &'a RpcClient,
        hooked: Option<Box<Hooked<'m>>>,
    }
}

impl<R, F: Future<Output = Result<R, RpcError>>> Future for Traced<'_, '_, F> {
    type Output = Result<R, RpcError>;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _entered = this.span.enter();
            std::task::ready!(this.call.poll(cx))
        };
        telemetry::record_client(this.span, result.as_ref().err());
        if let Some(hooked) = this.hooked.take() {
            let client = *this.client;
            let message = client.message_info(hooked.method, hooked.version, true);
            let elapsed = hooked.started.elapsed();
            client
                .hooks
                .after(&message, result.as_ref().map(|_| ()), elapsed);
        }
        std::task::Poll::Ready(result)
    }
}

/// A call that could not be sent at once.
enum Prepared<A> {
    /// Refused before sending.
    Failed(RpcError),
    /// The transport's first call: encoded once the reply queue runs.
    Later(A),
}

/// Turns oslo's dispatcher failures back into their [`RpcError`] variants.
fn remote_to_error(failure: RemoteError) -> RpcError {
    if failure.module() == DISPATCHER_MODULE {
        let message = failure.message();
        if failure.class() == "NoSuchMethod"
            && let Some(method) = message.strip_prefix("Endpoint does not support RPC method ")
        {
            return RpcError::NoSuchMethod {
                method: method.to_owned(),
            };
        }
        if failure.class() == "UnsupportedVersion" {
            let parsed = message
                .strip_prefix("Endpoint does not support RPC version ")
                .and_then(|rest| rest.split_once(". Attempted method: "));
            if let Some((version, method)) = parsed {
                return RpcError::UnsupportedVersion {
                    version: version.to_owned(),
                    method: method.to_owned(),
                };
            }
        }
    }
    failure.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thousands of calls may wait at once: the future of a waiting call keeps neither its
    /// arguments nor the start-up of the reply queue.
    #[tokio::test]
    async fn a_waiting_calls_future_does_not_keep_its_arguments() {
        #[derive(Serialize)]
        struct Big {
            data: [u64; 32],
        }
        let transport = Transport::memory();
        let client = RpcClient::new(&transport, Target::new("t"));
        let ctx = Context::new();
        // The first call starts the reply queue, in a box of its own; later calls are encoded
        // before their future exists. (An `async fn` kept 800 B besides the arguments; bounding
        // the publish by the call's deadline took the future from 512 to 608 B, the retries
        // after a lost connection being boxed; the call's span and its hooks' box, 640 B.)
        drop(transport.reply_waiter().await);
        let call = client.call::<Value>(&ctx, "m", Big { data: [7; 32] });
        assert!(size_of_val(&call) <= 640, "{} B", size_of_val(&call));
    }

    #[test]
    fn dispatcher_failures_map_to_their_variants() {
        let nsm = RemoteError::new(
            "NoSuchMethod",
            DISPATCHER_MODULE,
            "Endpoint does not support RPC method pow",
        );
        assert!(
            matches!(remote_to_error(nsm), RpcError::NoSuchMethod { method } if method == "pow")
        );
        let uv = RemoteError::new(
            "UnsupportedVersion",
            DISPATCHER_MODULE,
            "Endpoint does not support RPC version 2.0. Attempted method: add",
        );
        assert!(
            matches!(remote_to_error(uv), RpcError::UnsupportedVersion { version, method } if version == "2.0" && method == "add")
        );
        let other = RemoteError::new(
            "NoSuchMethod",
            "my.module",
            "Endpoint does not support RPC method pow",
        );
        assert!(remote_to_error(other).is_remote());
    }
}
