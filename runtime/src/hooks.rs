//! Hooks: code of yours around the messages amqp-rpc sends and handles.
//!
//! * [`RequestHook`], on a server: sees each request before its method runs and after, with how
//!   it ended and how long it took (an access log, an audit trail, counters), in the spirit of
//!   tarpc's request hooks.
//! * [`ContextProvider`], on a client: adds to or changes the context of every call and cast
//!   it sends (the current request id, a trace context).
//! * [`CallHook`], on a client: sees each call and cast it sends, before and after, with how it
//!   ended and how long it took.
//!
//! amqp-rpc's own metrics (the `metrics` feature) are a [`RequestHook`] and a [`CallHook`],
//! added to every server and client when the feature is on; yours run beside them. Its
//! OpenTelemetry propagation (the `opentelemetry` feature) runs where the context providers
//! run, after yours, so that the trace context sent is always the current span's.
//!
//! ```
//! use std::time::Duration;
//! use amqp_rpc::hooks::{Outcome, RequestHook, RequestInfo};
//!
//! struct AccessLog;
//!
//! impl RequestHook for AccessLog {
//!     fn after(&self, request: &RequestInfo<'_>, outcome: &Outcome<'_>, elapsed: Duration) {
//!         let result = match outcome {
//!             Outcome::Returned => "ok".to_owned(),
//!             Outcome::Raised(error) => error.class().to_owned(),
//!             _ => "?".to_owned(),
//!         };
//!         println!(
//!             "{} {} by {:?}: {result} in {elapsed:?}",
//!             request.method,
//!             request.msg_id.unwrap_or("(cast)"),
//!             request.context.user_id(),
//!         );
//!     }
//! }
//! # fn demo(transport: amqp_rpc::Transport) -> Result<(), amqp_rpc::RpcError> {
//! let server = amqp_rpc::RpcServer::builder(&transport, amqp_rpc::Target::server("calc", "c1"))
//!     .hook(AccessLog)
//!     .build()?;
//! # Ok(()) }
//! ```

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Duration;

use crate::context::Context;
use crate::error::{RemoteError, RpcError};
use crate::target::Target;
use crate::version::Version;

/// What a hook sees of a request.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct RequestInfo<'a> {
    /// The server's target (topic and server name).
    pub server: &'a Target,
    /// The method requested (`""` when the request named none).
    pub method: &'a str,
    /// The namespace requested; `None` is the default one.
    pub namespace: Option<&'a str>,
    /// The version requested (`None` when the request's was `null` or not a version).
    pub version: Option<Version>,
    /// The call's `_msg_id`; `None` for a cast.
    pub msg_id: Option<&'a str>,
    /// The request's context.
    pub context: &'a Context,
}

/// How a request ended.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Outcome<'a> {
    /// The method returned; a call's result is sent next.
    Returned,
    /// It failed, with this exception: the method's own error, oslo's `NoSuchMethod` or
    /// `UnsupportedVersion`, a `TypeError` for bad arguments, or a `RuntimeError` for a panic.
    Raised(&'a RemoteError),
}

/// Runs before and after every request of a server: see the [module](self) documentation.
///
/// Both methods run on the request's task, so they should be quick; a hook that panics is
/// logged and skipped, never failing the request.
pub trait RequestHook: Send + Sync + 'static {
    /// Before the method runs.
    fn before(&self, request: &RequestInfo<'_>) {
        let _ = request;
    }

    /// After it ran (or was refused), with how it ended and the time since
    /// [`RequestHook::before`].
    fn after(&self, request: &RequestInfo<'_>, outcome: &Outcome<'_>, elapsed: Duration) {
        let _ = (request, outcome, elapsed);
    }
}

impl<H: RequestHook + ?Sized> RequestHook for std::sync::Arc<H> {
    fn before(&self, request: &RequestInfo<'_>) {
        (**self).before(request);
    }

    fn after(&self, request: &RequestInfo<'_>, outcome: &Outcome<'_>, elapsed: Duration) {
        (**self).after(request, outcome, elapsed);
    }
}

/// What a [`ContextProvider`] sees of a message a client is about to send.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct MessageInfo<'a> {
    /// Where it goes.
    pub target: &'a Target,
    /// The method.
    pub method: &'a str,
    /// `true` for a call, `false` for a cast.
    pub call: bool,
    /// The version the message asks for (the target's, or a generated client's method's
    /// `since`).
    pub version: Option<Version>,
    /// How long a call waits for its result (`None` for a cast).
    pub timeout: Option<Duration>,
}

/// Adds to or changes the context of every call and cast a client sends, given with
/// [`RpcClient::with_context_provider`](crate::RpcClient::with_context_provider); a closure
/// `Fn(&mut Context, &MessageInfo)` is one.
///
/// It runs in the caller's task, on a copy of the caller's context (the caller's own is not
/// changed), before the message is encoded.
///
/// ```
/// use amqp_rpc::{Context, RpcClient, Target, Transport};
/// use amqp_rpc::hooks::MessageInfo;
/// # fn demo(transport: Transport) {
/// // Every message carries a request id: the caller's, or a fresh one.
/// let client = RpcClient::new(&transport, Target::new("compute")).with_context_provider(
///     |ctx: &mut Context, _: &MessageInfo<'_>| {
///         if ctx.request_id().is_none() {
///             ctx.insert("request_id", format!("req-{}", "generated"));
///         }
///     },
/// );
/// # }
/// ```
pub trait ContextProvider: Send + Sync + 'static {
    /// Changes `context`, the context `message` is about to be sent with.
    fn provide(&self, context: &mut Context, message: &MessageInfo<'_>);
}

impl<F> ContextProvider for F
where
    F: Fn(&mut Context, &MessageInfo<'_>) + Send + Sync + 'static,
{
    fn provide(&self, context: &mut Context, message: &MessageInfo<'_>) {
        self(context, message);
    }
}

/// Runs before and after every call and cast a client sends, given with
/// [`RpcClient::with_hook`](crate::RpcClient::with_hook).
///
/// `before` runs in the caller's task before the message is encoded; `after` once the call has
/// its result (or failed: a timeout, a remote exception, a broker that could not be reached)
/// or the cast was confirmed by the broker (or failed), with the time since `before`. Both
/// should be quick; a hook that panics is logged and skipped.
pub trait CallHook: Send + Sync + 'static {
    /// Before `message` is sent.
    fn before(&self, message: &MessageInfo<'_>) {
        let _ = message;
    }

    /// After it ended: `Ok` with a call's result or a cast's confirmation, or the error the
    /// caller gets.
    fn after(&self, message: &MessageInfo<'_>, result: Result<(), &RpcError>, elapsed: Duration) {
        let _ = (message, result, elapsed);
    }
}

impl<H: CallHook + ?Sized> CallHook for std::sync::Arc<H> {
    fn before(&self, message: &MessageInfo<'_>) {
        (**self).before(message);
    }

    fn after(&self, message: &MessageInfo<'_>, result: Result<(), &RpcError>, elapsed: Duration) {
        (**self).after(message, result, elapsed);
    }
}

/// A client's context providers and call hooks, in the order given.
#[derive(Clone, Default)]
pub(crate) struct ClientHooks {
    providers: Vec<std::sync::Arc<dyn ContextProvider>>,
    calls: Vec<std::sync::Arc<dyn CallHook>>,
}

impl ClientHooks {
    /// The hooks every client starts with: those of the crate's features.
    pub(crate) fn with_features() -> ClientHooks {
        #[allow(unused_mut)]
        let mut hooks = ClientHooks::default();
        #[cfg(feature = "metrics")]
        hooks.push_call(crate::metrics::ClientMetrics);
        hooks
    }

    pub(crate) fn push_provider(&mut self, provider: impl ContextProvider) {
        self.providers.push(std::sync::Arc::new(provider));
    }

    pub(crate) fn push_call(&mut self, hook: impl CallHook) {
        self.calls.push(std::sync::Arc::new(hook));
    }

    /// `ctx` as the providers make it for `message`; `None` when nothing changes it (send
    /// `ctx`).
    pub(crate) fn provide(&self, ctx: &Context, message: &MessageInfo<'_>) -> Option<Context> {
        if self.providers.is_empty() {
            return crate::telemetry::traced(ctx);
        }
        let mut ctx = ctx.clone();
        for provider in &self.providers {
            provider.provide(&mut ctx, message);
        }
        // Last, so that the trace context sent is the current span's whatever the providers
        // and the caller's context (say, a request's, forwarded) carried.
        if crate::telemetry::propagating() {
            crate::telemetry::inject(&mut ctx);
        }
        Some(ctx)
    }

    /// Whether there are call hooks (so the time and the outcome are worth taking).
    pub(crate) fn has_calls(&self) -> bool {
        !self.calls.is_empty()
    }

    pub(crate) fn before(&self, message: &MessageInfo<'_>) {
        for hook in &self.calls {
            guarded("before", || hook.before(message));
        }
    }

    pub(crate) fn after(
        &self,
        message: &MessageInfo<'_>,
        result: Result<(), &RpcError>,
        elapsed: Duration,
    ) {
        for hook in self.calls.iter().rev() {
            guarded("after", || hook.after(message, result, elapsed));
        }
    }
}

impl std::fmt::Debug for ClientHooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} context provider(s), {} call hook(s)",
            self.providers.len(),
            self.calls.len()
        )
    }
}

/// Runs `call` on a hook, logging a panic instead of unwinding into the request.
pub(crate) fn guarded(which: &str, call: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(call)).is_err() {
        tracing::error!(hook = which, "a request hook panicked; skipped");
    }
}
