//! The endpoint interface: what a server dispatches requests to.
//!
//! `#[rpc_endpoint]` implements it for a trait; it can also be written by hand (see
//! [`Endpoint`]). It is object safe, so a server holds `Arc<dyn Endpoint>`s in order.

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::context::Context;
use crate::error::RemoteError;
use crate::version::Version;

/// A set of RPC methods in one namespace at one version.
///
/// A server scans its endpoints in order; the first whose namespace equals the request's, whose
/// version serves the requested one, and which [has the method](Endpoint::has_method) handles
/// it. Method names starting with `_` are never dispatched.
///
/// ```
/// use amqp_rpc::{async_trait, Context, Endpoint, RemoteError, Version};
/// use serde_json::{Map, Value};
///
/// struct Echo;
///
/// #[async_trait]
/// impl Endpoint for Echo {
///     fn namespace(&self) -> Option<&str> {
///         Some("echo")
///     }
///     fn version(&self) -> Version {
///         Version::new(1, 1)
///     }
///     fn has_method(&self, method: &str) -> bool {
///         method == "echo"
///     }
///     async fn dispatch(
///         &self,
///         _ctx: Context,
///         _method: &str,
///         mut args: Map<String, Value>,
///     ) -> Result<Value, RemoteError> {
///         args.remove("text")
///             .ok_or_else(|| RemoteError::builtin("TypeError", "echo() missing argument: 'text'"))
///     }
/// }
/// ```
#[async_trait]
pub trait Endpoint: Send + Sync + 'static {
    /// The namespace served; `None` (the default) is oslo's default namespace.
    fn namespace(&self) -> Option<&str> {
        None
    }

    /// The version implemented; it serves requests of the same major and a minor (and
    /// revision) not above it. Default `1.0`.
    fn version(&self) -> Version {
        Version::DEFAULT
    }

    /// Whether the endpoint has `method`.
    fn has_method(&self, method: &str) -> bool;

    /// A description of the endpoint's methods for servers that describe themselves (see
    /// [`describe`](crate::describe)): an object with `methods` (and anything else to show).
    /// `#[rpc_endpoint]` writes it from the trait; the default, `None`, shows no methods.
    fn description(&self) -> Option<Value> {
        None
    }

    /// Runs `method` (one for which [`Endpoint::has_method`] is true) with the request's
    /// context and keyword arguments, returning its JSON result or its failure.
    ///
    /// Decode arguments with [`wire::from_value`](crate::wire::from_value) rather than
    /// `serde_json::from_value`: Python's `NaN`, `Infinity`, integers beyond 64 bits and lone
    /// surrogates, which a `Value` cannot hold, arrive encoded, and it decodes them.
    async fn dispatch(
        &self,
        ctx: Context,
        method: &str,
        args: Map<String, Value>,
    ) -> Result<Value, RemoteError>;
}

/// A shared endpoint, to serve one value on several servers.
#[async_trait]
impl<E: Endpoint + ?Sized> Endpoint for std::sync::Arc<E> {
    fn namespace(&self) -> Option<&str> {
        (**self).namespace()
    }

    fn version(&self) -> Version {
        (**self).version()
    }

    fn has_method(&self, method: &str) -> bool {
        (**self).has_method(method)
    }

    fn description(&self) -> Option<Value> {
        (**self).description()
    }

    async fn dispatch(
        &self,
        ctx: Context,
        method: &str,
        args: Map<String, Value>,
    ) -> Result<Value, RemoteError> {
        (**self).dispatch(ctx, method, args).await
    }
}
