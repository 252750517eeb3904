//! Procedural macros of amqp-rpc: `#[rpc_endpoint]`, `#[rpc_client]` and
//! `#[derive(RemoteException)]`.
//!
//! Use them through the `amqp-rpc` crate, which re-exports them and documents them with
//! runnable examples. Both take the same trait; put both on it to write its namespace and
//! version once.
//!
//! # What they generate
//!
//! For this trait:
//!
//! ```text
//! #[amqp_rpc::rpc_endpoint(namespace = "calc", version = "1.3")]
//! #[amqp_rpc::rpc_client]
//! pub trait Calculator {
//!     /// Adds two integers.
//!     async fn add(&self, ctx: &Context, x: i64, y: i64) -> i64;
//!     /// Divides, refusing zero.
//!     #[rpc(since = "1.3")]
//!     async fn divide(&self, x: f64, y: f64) -> Result<f64, CalcError>;
//! }
//! ```
//!
//! the expansion is, in outline (bodies elided, paths shortened; the whole of it is in
//! `snapshots/calculator.expanded.rs`, which a test compares with the expansion, as another
//! test compares the items named here with it):
//!
//! ```text
//! pub trait Calculator {
//!     /// Adds two integers.
//!     fn add(&self, ctx: &Context, x: i64, y: i64) -> impl Future<Output = i64> + Send;
//!     /// Divides, refusing zero.
//!     fn divide(&self, x: f64, y: f64) -> impl Future<Output = Result<f64, CalcError>> + Send;
//!     /// Serves this implementation (`server.endpoint(Calc.into_rpc())`).
//!     fn into_rpc(self) -> CalculatorEndpoint<Self>
//!     where
//!         Self: Sized + Send + Sync + 'static,
//!     {
//!         CalculatorEndpoint::new(self)
//!     }
//! }
//!
//! pub struct CalculatorEndpoint<T> { inner: T }
//! impl<T> CalculatorEndpoint<T> {
//!     pub const NAMESPACE: Option<&'static str> = Some("calc");
//!     pub const VERSION: Version = Version::new(1, 3);
//!     pub fn new(inner: T) -> Self;
//!     pub fn get_ref(&self) -> &T;
//!     pub fn into_inner(self) -> T;
//! }
//! #[automatically_derived]
//! #[async_trait]
//! impl<T: Calculator + Send + Sync + 'static> Endpoint for CalculatorEndpoint<T> {
//!     fn namespace(&self) -> Option<&str>; // Self::NAMESPACE
//!     fn version(&self) -> Version; // Self::VERSION
//!     fn has_method(&self, method: &str) -> bool; // matches!(method, "add" | "divide")
//!     // The trait's name and each method's name, `since`, docs, arguments and result, their
//!     // types as JSON Schema (amqp_rpc::describe), for servers that describe themselves.
//!     fn description(&self) -> Option<Value>;
//!     // Matches the wire name, takes each argument by its name from the keyword arguments
//!     // (a TypeError for a missing or unexpected one, as in Python), awaits the method and
//!     // encodes its result straight into the reply (amqp_rpc::Returned), or its
//!     // `Err(CalcError)`: as the exception it names if `CalcError: RemoteException`, else as
//!     // a typed remote error whose class is the error's type or variant name, in module
//!     // `amqp_rpc.remote`.
//!     async fn dispatch(&self, ctx: Context, method: &str, args: Args) -> Result<Returned, RemoteError>;
//! }
//!
//! #[derive(Clone, Debug)]
//! pub struct CalculatorClient { client: RpcClient, context: Context }
//! impl CalculatorClient {
//!     pub const NAMESPACE: Option<&'static str> = Some("calc");
//!     pub const VERSION: Version = Version::new(1, 3);
//!     pub fn new(transport: &Transport, topic: impl Into<String>) -> Self;
//!     pub fn from_rpc_client(client: RpcClient) -> Self;
//!     pub fn rpc_client(&self) -> &RpcClient;
//!     pub fn with_context(&self, context: Context) -> Self;
//!     pub fn with_server(&self, server: impl Into<String>) -> Self;
//!     pub fn with_timeout(&self, timeout: Duration) -> Self;
//!     pub fn with_retry(&self, retry: Option<u32>) -> Self;
//!     pub fn with_call_monitor_timeout(&self, timeout: Duration) -> Self;
//!     pub fn with_version_cap(&self, cap: Version) -> Self;
//!     pub fn with_version(&self, version: Version) -> Self;
//!     pub fn with_namespace(&self, namespace: impl Into<String>) -> Self;
//!     pub fn without_namespace(&self) -> Self;
//!     pub fn can_send_version(&self, version: &Version) -> bool;
//!     pub fn cast(&self) -> CalculatorCast;
//!     pub fn fanout(&self) -> CalculatorCast;
//!     /// Adds two integers.
//!     pub async fn add(&self, ctx: &Context, x: i64, y: i64) -> Result<i64, RpcError>;
//!     /// Divides, refusing zero.
//!     pub async fn divide(&self, x: f64, y: f64) -> Result<f64, CallError<CalcError>>;
//! }
//!
//! #[derive(Clone, Debug)]
//! pub struct CalculatorCast { client: RpcClient, context: Context }
//! impl CalculatorCast {
//!     /// Adds two integers.
//!     pub async fn add(&self, ctx: &Context, x: i64, y: i64) -> Result<(), RpcError>;
//!     /// Divides, refusing zero.
//!     pub async fn divide(&self, x: f64, y: f64) -> Result<(), RpcError>;
//! }
//! ```
//!
//! Beside these, `const _: () = { ... };` blocks hold the type assertions that point errors at
//! the user's types, and the `use` of `Box` that async-trait's expansion needs.
//!
//! `add` is sent as version `1.0` (the default `since` is the trait's major with minor 0),
//! `divide` as `1.3`, unless `with_version` overrides them (within the versions at which each
//! exists in the trait: checked before sending). `CalculatorClient::cast()` and `fanout()`
//! send any method as a cast (fanout: to every server of the topic); a `#[rpc(cast)]` method
//! is a cast on `CalculatorClient` too.

mod ast;
mod attr;
mod errors;
mod exception;
mod expand;
#[cfg(test)]
mod tests;

use proc_macro::TokenStream;

/// Generates `<Trait>Endpoint`, which serves any implementation of the trait. See the
/// `amqp-rpc` crate for the documentation.
#[proc_macro_attribute]
pub fn rpc_endpoint(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::run(ast::Role::Endpoint, args.into(), item.into()).into()
}

/// Generates `<Trait>Client`, a typed client of the trait's methods. See the `amqp-rpc` crate
/// for the documentation.
#[proc_macro_attribute]
pub fn rpc_client(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::run(ast::Role::Client, args.into(), item.into()).into()
}

/// Implements `RemoteException`: each variant of an enum (or the struct) is an exception of a
/// named Python class. See the `amqp-rpc` crate for the documentation.
///
/// For
///
/// ```text
/// #[derive(RemoteException)]
/// #[remote(module = "nova.exception")]
/// pub enum ComputeError {
///     InstanceNotFound { instance_id: String },
///     #[remote(module = "builtins", class = "ValueError")]
///     Invalid(String),
/// }
/// ```
///
/// the expansion is, in outline (paths shortened):
///
/// ```text
/// impl RemoteException for ComputeError {
///     fn to_remote(&self) -> Result<RemoteError, RpcError> {
///         match self {
///             Self::InstanceNotFound { instance_id: __field0 } => Ok(exception::with_kwargs(
///                 self, "nova.exception", "InstanceNotFound",
///                 [("instance_id", exception::encode::<String>(__field0, "...")?)],
///             )),
///             Self::Invalid(__field0) => Ok(exception::with_args(
///                 self, "builtins", "ValueError",
///                 [exception::encode::<String>(__field0, "...")?],
///             )),
///         }
///     }
///     fn from_remote(__remote: &RemoteError) -> Option<Result<Self, RpcError>> {
///         if exception::is(__remote, "nova.exception", "InstanceNotFound") {
///             return exception::decode(__remote, |__remote| Ok(Self::InstanceNotFound {
///                 instance_id: exception::kwarg::<String>(__remote, "instance_id", "...")?,
///             }));
///         }
///         if exception::is(__remote, "builtins", "ValueError") {
///             return exception::decode(__remote, |__remote| Ok(Self::Invalid(
///                 exception::arg::<String>(__remote, 0, "...")?,
///             )));
///         }
///         None
///     }
/// }
/// ```
#[proc_macro_derive(RemoteException, attributes(remote))]
pub fn derive_remote_exception(input: TokenStream) -> TokenStream {
    exception::derive(input.into()).into()
}
