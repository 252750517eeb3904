//! The endpoint interface: what a server dispatches requests to.
//!
//! `#[rpc_endpoint]` implements it for a trait; it can also be written by hand (see
//! [`Endpoint`]). It is object safe, so a server holds `Arc<dyn Endpoint>`s in order.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::context::Context;
use crate::error::RemoteError;
use crate::version::Version;
use crate::wire::WireError;

/// A set of RPC methods in one namespace at one version.
///
/// A server scans its endpoints in order; the first whose namespace equals the request's, whose
/// version serves the requested one, and which [has the method](Endpoint::has_method) handles
/// it. Method names starting with `_` are never dispatched.
///
/// ```
/// use amqp_rpc::{async_trait, Context, Endpoint, RemoteError, Returned, Version};
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
///     ) -> Result<Returned, RemoteError> {
///         args.remove("text")
///             .map(Returned::from)
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
    /// context and keyword arguments, returning its result or its failure.
    ///
    /// Decode arguments with [`wire::from_value`](crate::wire::from_value) rather than
    /// `serde_json::from_value`: Python's `NaN`, `Infinity`, integers beyond 64 bits and lone
    /// surrogates, which a `Value` cannot hold, arrive encoded, and it decodes them. Return a
    /// typed result with [`Returned::encode`], a JSON value with `Returned::from`.
    async fn dispatch(
        &self,
        ctx: Context,
        method: &str,
        args: Map<String, Value>,
    ) -> Result<Returned, RemoteError>;
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

    /// The endpoint's own future, not one boxed around it (as an `async fn` here would be).
    fn dispatch<'life0, 'life1, 'async_trait>(
        &'life0 self,
        ctx: Context,
        method: &'life1 str,
        args: Map<String, Value>,
    ) -> Pin<Box<dyn Future<Output = Result<Returned, RemoteError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        'life1: 'async_trait,
        Self: 'async_trait,
    {
        (**self).dispatch(ctx, method, args)
    }
}

/// What a method returned, as [`Endpoint::dispatch`] gives it to the server to send back.
///
/// [`Returned::encode`] encodes a typed value at once, straight into the start of the reply's
/// body, so that a large result is not copied into a [`Value`] first (`#[rpc_endpoint]` does
/// this). A [`Value`] converts as it is, and is encoded when the reply is.
///
/// ```
/// use amqp_rpc::Returned;
/// use serde_json::json;
///
/// let typed = Returned::encode(&vec![1.5, f64::NAN])?;
/// let value = Returned::from(json!([1.5, "two"]));
/// assert_eq!(value.to_value()?, json!([1.5, "two"]));
/// // NaN, as Python writes it, which a `Value` cannot hold: `wire::from_value` reads it.
/// let back: Vec<f64> = amqp_rpc::wire::from_value(typed.to_value()?)?;
/// assert!(back[0] == 1.5 && back[1].is_nan());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Returned(pub(crate) Repr);

pub(crate) enum Repr {
    Value(Value),
    /// The start of a reply's body, the result included (`wire::reply::begin`).
    Encoded(Vec<u8>),
}

impl Returned {
    /// Python's `None`, JSON's `null`: what a method without a result returns.
    pub const NONE: Returned = Returned(Repr::Value(Value::Null));

    /// Encodes `value` as the result, as Python would read it: non-finite floats as `NaN` and
    /// `Infinity`, integers beyond 64 bits in full. Fails as `serde_json::to_vec` does (a map
    /// whose keys are not strings, a `Serialize` impl that fails).
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Returned, serde_json::Error> {
        crate::wire::begin_reply(value).map(|body| Returned(Repr::Encoded(body)))
    }

    /// The result as a JSON value, decoded back when it was encoded (Python's specials as
    /// [`wire::from_value`](crate::wire::from_value) reads them): to look at what an endpoint
    /// returned, in a test or a hand-written caller of [`Endpoint::dispatch`].
    pub fn to_value(&self) -> Result<Value, WireError> {
        match &self.0 {
            Repr::Value(value) => Ok(value.clone()),
            Repr::Encoded(body) => crate::wire::returned_value(body),
        }
    }
}

impl From<Value> for Returned {
    fn from(value: Value) -> Returned {
        Returned(Repr::Value(value))
    }
}

impl fmt::Debug for Returned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Value(value) => f.debug_tuple("Returned").field(value).finish(),
            Repr::Encoded(body) => f
                .debug_struct("Returned")
                .field("encoded_bytes", &body.len())
                .finish(),
        }
    }
}
