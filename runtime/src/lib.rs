//! # amqp-rpc
//!
//! Typed RPC over AMQP with the semantics and wire format of OpenStack's oslo.messaging, so
//! that Rust services and Python oslo.messaging services call each other.
//!
//! * [`Transport`]: a connection, from a URL (`memory://` in-process, `rabbit://` RabbitMQ).
//! * [`RpcClient`]: `call` and `cast` (and fanout casts) to a [`Target`].
//! * [`RpcServer`]: serves [`Endpoint`]s on a server target.
//! * [`Context`], [`Version`], [`RpcError`]: the request context, API versions, and errors.
//!
//! ```
//! use std::sync::Arc;
//! use amqp_rpc::{async_trait, Context, Endpoint, RemoteError, RpcClient, RpcServer, Target, Transport};
//! use serde_json::{json, Map, Value};
//!
//! struct Adder;
//!
//! #[async_trait]
//! impl Endpoint for Adder {
//!     fn has_method(&self, method: &str) -> bool {
//!         method == "add"
//!     }
//!     async fn dispatch(&self, _: Context, _: &str, args: Map<String, Value>) -> Result<Value, RemoteError> {
//!         let arg = |k: &str| args.get(k).and_then(Value::as_i64);
//!         match (arg("x"), arg("y")) {
//!             (Some(x), Some(y)) => Ok(json!(x + y)),
//!             _ => Err(RemoteError::builtin("TypeError", "add() needs integers x and y")),
//!         }
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), amqp_rpc::RpcError> {
//! let transport = Transport::memory();
//! let server = RpcServer::new(&transport, Target::server("calc", "calc-1"), vec![Arc::new(Adder)])?;
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
mod context;
mod endpoint;
mod error;
mod server;
mod target;
pub mod transport;
mod url;
mod version;
pub mod wire;

pub use async_trait::async_trait;
pub use client::{DEFAULT_TIMEOUT, RpcClient};
pub use context::Context;
pub use endpoint::Endpoint;
pub use error::{APPLICATION_ERROR_MODULE, RemoteError, RpcError, TransportError};
pub use server::{PING_METHOD, RpcServer, ServerConfig};
pub use target::Target;
pub use transport::Transport;
pub use url::{Scheme, TransportHost, TransportUrl, UrlError};
pub use version::{ParseVersionError, Version};

/// The README's code, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
