//! Hooks around every request a server handles: code of yours that sees each request before
//! its method runs and after, with how it ended and how long it took (an access log, an
//! audit trail, counters), in the spirit of tarpc's request hooks.
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
use crate::error::RemoteError;
use crate::target::Target;

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

/// Runs `call` on a hook, logging a panic instead of unwinding into the request.
pub(crate) fn guarded(which: &str, call: impl FnOnce()) {
    if catch_unwind(AssertUnwindSafe(call)).is_err() {
        tracing::error!(hook = which, "a request hook panicked; skipped");
    }
}
