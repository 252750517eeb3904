//! # amqp-rpc
//!
//! Typed RPC over AMQP with the semantics and wire format of OpenStack's oslo.messaging, so
//! that Rust services and Python oslo.messaging services call each other.
//!
//! * [`Transport`]: a connection, from a URL (`memory://` in-process, `rabbit://` RabbitMQ,
//!   over TLS with `ssl=1`), restored by itself when lost; [`ConnectionState`] says how it is.
//! * [`RpcClient`]: `call` and `cast` (and fanout casts) to a [`Target`].
//! * [`RpcServer`]: serves [`Endpoint`]s on a server target.
//! * [`Context`], [`Version`], [`RpcError`]: the request context, API versions, and errors.
//! * [`RemoteException`](trait@RemoteException): a method's own error as Python exception
//!   classes that Python callers catch and Rust callers decode.
//! * [`notify`]: notifications, oslo's other half: a typed [`Notifier`](notify::Notifier)
//!   and [`NotificationListener`](notify::NotificationListener).
//! * [`hooks`]: code of yours around every request a server handles; [`describe`]: servers
//!   that describe their endpoints.
//! * [`driver`]: the interface a transport's driver implements, below the [`Transport`].
//!
//! ```
//! use std::sync::Arc;
//! use amqp_rpc::{async_trait, Context, Endpoint, RemoteError, Returned, RpcClient, RpcServer, Target, Transport};
//! use serde_json::{json, Map, Value};
//!
//! struct Adder;
//!
//! #[async_trait]
//! impl Endpoint for Adder {
//!     fn has_method(&self, method: &str) -> bool {
//!         method == "add"
//!     }
//!     async fn dispatch(&self, _: Context, _: &str, args: Map<String, Value>) -> Result<Returned, RemoteError> {
//!         let arg = |k: &str| args.get(k).and_then(Value::as_i64);
//!         match (arg("x"), arg("y")) {
//!             (Some(x), Some(y)) => Ok(json!(x + y).into()),
//!             _ => Err(RemoteError::builtin("TypeError", "add() needs integers x and y")),
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), amqp_rpc::RpcError> {
//! let transport = Transport::memory();
//! let server = RpcServer::builder(&transport, Target::server("calc", "calc-1"))
//!     .endpoint(Adder)
//!     .build()?;
//! server.start().await?;
//! let client = RpcClient::new(&transport, Target::new("calc"));
//! let sum: i64 = client.call(&Context::new(), "add", json!({"x": 2, "y": 3})).await?;
//! assert_eq!(sum, 5);
//! server.stop().await;
//! server.wait().await;
//! # Ok(()) }
//! ```
#![deny(missing_docs, unsafe_code)]
#![warn(unreachable_pub, rustdoc::broken_intra_doc_links)]

mod client;
mod config;
mod context;
pub mod describe;
pub mod driver;
mod endpoint;
mod error;
pub mod hooks;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod notify;
mod recent_ids;
mod server;
mod sync;
mod target;
mod telemetry;
mod transport;
mod url;
mod version;
pub mod wire;
mod workers;

#[doc(hidden)]
#[path = "macro_support.rs"]
pub mod __private_v1;

pub use async_trait::async_trait;

/// Makes any implementation of an RPC trait servable: generates `<Trait>Endpoint`, an
/// [`Endpoint`], and the trait's provided method `into_rpc`, which wraps an implementation in
/// it (jsonrpsee's `into_rpc()`): `Arc::new(Calc.into_rpc())`, or any API taking
/// `impl Endpoint`.
///
/// ```
/// use std::sync::Arc;
/// use amqp_rpc::{rpc_client, rpc_endpoint, Context, Endpoint, RpcServer, Target, Transport};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// pub enum CalcError {
///     DivisionByZero,
/// }
///
/// impl std::fmt::Display for CalcError {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("division by zero")
///     }
/// }
///
/// #[rpc_endpoint(namespace = "calc", version = "1.3")]
/// #[rpc_client]
/// pub trait Calculator {
///     /// Adds two integers.
///     async fn add(&self, ctx: &Context, x: i64, y: i64) -> i64;
///     /// Divides, refusing zero.
///     async fn divide(&self, x: f64, y: f64) -> Result<f64, CalcError>;
///     /// Fire and forget.
///     #[rpc(cast)]
///     async fn record(&self, line: String);
///     /// Added in 1.3, sent on the wire as "pow".
///     #[rpc(since = "1.3", name = "pow")]
///     async fn power(&self, base: f64, exp: f64) -> f64;
/// }
///
/// struct Calc;
///
/// impl Calculator for Calc {
///     async fn add(&self, _ctx: &Context, x: i64, y: i64) -> i64 {
///         x + y
///     }
///     async fn divide(&self, x: f64, y: f64) -> Result<f64, CalcError> {
///         if y == 0.0 { Err(CalcError::DivisionByZero) } else { Ok(x / y) }
///     }
///     async fn record(&self, line: String) {
///         println!("{line}");
///     }
///     async fn power(&self, base: f64, exp: f64) -> f64 {
///         base.powf(exp)
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let transport = Transport::memory();
/// let server = RpcServer::builder(&transport, Target::server("calc", "calc-1"))
///     .endpoint(Calc.into_rpc())
///     .build()?;
/// server.start().await?;
///
/// let client = CalculatorClient::new(&transport, "calc");
/// assert_eq!(client.add(&Context::new(), 2, 3).await?, 5);
/// assert_eq!(client.power(2.0, 10.0).await?, 1024.0);
/// let err = client.divide(1.0, 0.0).await.unwrap_err();
/// assert!(matches!(err.application(), Some(CalcError::DivisionByZero)));
/// client.fanout().record("to every server".to_owned()).await?;
/// server.stop().await;
/// server.wait().await;
/// # Ok(()) }
/// ```
///
/// Arguments: `namespace = "..."` (default: none), `version = "X.Y[.Z]"` (default `1.0`),
/// `crate = "path"` (where `amqp_rpc` is, for a renamed dependency). On a method,
/// `#[rpc(cast)]`, `#[rpc(since = "X.Y")]` and `#[rpc(name = "wire_name")]`. The expansion is
/// shown in the documentation of the `amqp-rpc-macros` crate.
///
/// `into_rpc` is `fn into_rpc(self) -> <Trait>Endpoint<Self>`, for implementations that are
/// `Send + Sync + 'static`; `<Trait>Endpoint::new(value)` does the same. A type implementing
/// several RPC traits names the one: `Calculator::into_rpc(calc)`. The trait may not have a
/// method of its own named `into_rpc` (the macro says so; `#[rpc(name = "into_rpc")]` keeps
/// that wire name for a method named otherwise).
///
/// Requests bind arguments as Python binds keyword arguments: a missing one is a `TypeError`
/// naming it (`add() missing 1 required positional argument: 'y'`) whatever its type, a
/// `serde_json::Value` or `()` included, except an `Option<T>` parameter, which is `None` when
/// left out (the Rust spelling of Python's `y=None`); an unknown one is a `TypeError`; a value
/// the parameter's type cannot hold is a `TypeError`, or a `ValueError` for a value Python's
/// `json` writes that no Rust type of that kind holds (`NaN` for an `i64`, a lone surrogate
/// for a `String`: see [`wire::from_value`]).
pub use amqp_rpc_macros::rpc_endpoint;

/// Generates `<Trait>Client`, a typed client: one `async` method per trait method, returning
/// `Result<T, RpcError>`, or `Result<T, CallError<E>>` for a method returning `Result<T, E>`;
/// and `<Trait>Cast`, the same methods sent as casts.
///
/// Alone, it describes a remote service, e.g. one written in Python:
///
/// ```
/// use amqp_rpc::{rpc_client, Context, Transport};
///
/// #[rpc_client(namespace = "compute", version = "5.1")]
/// pub trait ComputeApi {
///     /// Reboots an instance.
///     #[rpc(cast)]
///     async fn reboot_instance(&self, ctx: &Context, instance_id: String, reboot_type: String);
///     /// The console log of an instance.
///     #[rpc(since = "5.1")]
///     async fn get_console_output(&self, ctx: &Context, instance_id: String) -> String;
/// }
///
/// # async fn demo(transport: Transport) -> Result<(), amqp_rpc::RpcError> {
/// let compute = ComputeApiClient::new(&transport, "compute").with_server("host-1");
/// let log = compute.get_console_output(&Context::new(), "i-1".to_owned()).await?;
/// # let _ = log; Ok(()) }
/// ```
///
/// Arguments as for [`rpc_endpoint`]; on a trait carrying both, give them once.
///
/// # Overrides: oslo's `prepare()`
///
/// The client's `with_*` methods each return a modified copy and leave the original as it
/// was, as oslo's `prepare()` does, so an override can be for a single call: `with_server`,
/// `with_timeout`, `with_retry`, `with_call_monitor_timeout`, `with_version_cap`,
/// `with_namespace` and `without_namespace` (oslo's default namespace), `with_context` (the
/// context of the methods that take none), and `with_version`.
///
/// A method is sent at the version that added it, its `#[rpc(since = "X.Y")]` (default: the
/// trait's major, minor 0). `with_version(v)` sends every method at `v` instead, if the method
/// exists at `v` in the trait: `v` must be of the trait's major, not older than the method's
/// `since` and not newer than the trait's version (a method added in 1.3 cannot be sent as
/// 1.1). Otherwise the method is refused before anything is sent, with
/// [`RpcError::VersionOutOfRange`]. The version cap applies to the version sent.
///
/// `cast()` and `fanout()` return a `<Trait>Cast`, whose methods send any method as a cast
/// (to one server of the topic, or to every server): it returns `Result<(), RpcError>` once the
/// message is sent. A call cannot be fanned out (oslo refuses one too): no type offers it.
///
/// ```
/// use std::time::Duration;
/// use amqp_rpc::{rpc_client, Context, Transport, Version};
///
/// #[rpc_client(namespace = "compute", version = "5.1")]
/// pub trait ComputeApi {
///     /// Stops an instance and returns its state.
///     async fn stop_instance(&self, ctx: &Context, instance_id: String) -> String;
///     /// The console log of an instance.
///     #[rpc(since = "5.1")]
///     async fn get_console_output(&self, ctx: &Context, instance_id: String) -> String;
/// }
///
/// # async fn demo(transport: Transport) -> Result<(), amqp_rpc::RpcError> {
/// let (compute, ctx) = (ComputeApiClient::new(&transport, "compute"), Context::new());
/// // For this call only: one server, a shorter timeout, version 5.1 instead of 5.0.
/// let state = compute
///     .with_server("host-1")
///     .with_timeout(Duration::from_secs(5))
///     .with_version(Version::new(5, 1))
///     .stop_instance(&ctx, "i-1".to_owned())
///     .await?;
/// // Without waiting for the reply, on every server of the topic.
/// compute.fanout().stop_instance(&ctx, "i-2".to_owned()).await?;
/// // Refused before sending: `get_console_output` does not exist at 5.0.
/// let err = compute
///     .with_version(Version::new(5, 0))
///     .get_console_output(&ctx, "i-1".to_owned())
///     .await
///     .unwrap_err();
/// assert!(err.is_version_out_of_range());
/// # let _ = state; Ok(()) }
/// ```
///
/// A method's result is its fallible `Result<T, E>` only when written so: a path whose last
/// segment is `Result`, with two type arguments (`Result<T, E>`, `std::result::Result<T, E>`).
/// A `Result` the macro cannot see through, with one argument (`io::Result<T>`, an alias
/// `Result<T>`) or under another name (`type Fallible<T> = Result<T, E>`), is refused at
/// compile time: its `Err` would otherwise be sent as a successful value.
pub use amqp_rpc_macros::rpc_client;
pub use client::{DEFAULT_TIMEOUT, RpcClient};
pub use config::{DEFAULT_MAX_MESSAGE_SIZE, FailoverStrategy, LoginMethod, TransportConfig};
pub use context::Context;
pub use driver::ConnectionState;
pub use endpoint::{Endpoint, Returned};
pub use error::{
    APPLICATION_ERROR_MODULE, CallError, RemoteError, RemoteException, RpcError, TransportError,
};

/// Implements [`RemoteException`](trait@RemoteException): each variant of an enum (or the
/// struct) is an exception of a named Python class.
///
/// On the type, `#[remote(module = "...")]` gives the module of every variant; on a variant,
/// `#[remote(module = "...", class = "...")]` gives its own (`class` defaults to the variant's
/// name, or the struct's). `crate = "path"` on the type names a renamed `amqp_rpc`. The message
/// is the value's `Display`. The fields are the exception's constructor arguments:
///
/// | Rust | Python: `cls(*args, **kwargs)` | e.g. |
/// |---|---|---|
/// | unit variant | `cls(message)` | `Timeout` |
/// | named fields | `cls(message, **fields)`: a nova-style `NovaException(message=None, **kwargs)` | `InstanceNotFound { instance_id: String }` |
/// | tuple fields | `cls(*fields)`: built-in exceptions take positional arguments only | `#[remote(module = "builtins", class = "ValueError")] Invalid(String)` |
///
/// A Rust caller decodes a failure of a variant's class back into that variant (named fields
/// from `kwargs`, ignoring other keys; tuple fields from `args`; a missing one decodes from
/// `null`, so an `Option` field may be absent). So a Python `raise ValueError("bad")` becomes
/// `Invalid("bad".into())`, and `InstanceNotFound(instance_id="i-1")` its variant. As in
/// Python, the class is all that counts: a variant of `builtins.TypeError` also receives the
/// `TypeError` a server sends for wrong arguments, and one of `builtins.RuntimeError` that of
/// a panicking handler.
///
/// Checked at compile time: every variant has a module; module and class are Python names;
/// no two variants share a class; a `builtins` variant has no named fields (Python's built-in
/// exceptions take no keyword arguments); no unknown or repeated keys. Every field's type
/// implements `Serialize` and `Deserialize`, and the type implements `Display` (with
/// `thiserror`, say).
///
/// ```
/// use amqp_rpc::RemoteException;
///
/// /// `nova.exception.QuotaError(message, quota=..., used=...)`.
/// #[derive(Debug, RemoteException)]
/// #[remote(module = "nova.exception", class = "QuotaError")]
/// pub struct QuotaExceeded {
///     pub quota: u32,
///     pub used: u32,
/// }
///
/// impl std::fmt::Display for QuotaExceeded {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         write!(f, "Quota exceeded: {} of {}", self.used, self.quota)
///     }
/// }
///
/// let remote = QuotaExceeded { quota: 10, used: 11 }.to_remote().unwrap();
/// assert_eq!(remote.class(), "QuotaError");
/// assert_eq!(remote.args(), ["Quota exceeded: 11 of 10"]);
/// assert_eq!(remote.kwargs()["used"], 11);
/// ```
pub use amqp_rpc_macros::RemoteException;
pub use server::{PING_METHOD, RpcServer, ServerBuilder, ServerConfig, ServerHandle};
pub use target::{Target, TargetError};
pub use transport::Transport;
pub use url::{Scheme, TransportHost, TransportUrl, UrlError};
pub use version::{ParseVersionError, Version};

/// The README's code, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
