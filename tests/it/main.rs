//! The integration tests, as one test crate (so that lapin, tokio and amqp-rpc are linked
//! once, not once per file): one module per feature.
//!
//! Tests that need RabbitMQ are `#[ignore = "needs RabbitMQ: ..."]`; `scripts/test.sh` runs
//! them too. One module alone: `bash scripts/test.sh --test it -- interop_oslo::`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

mod example_calculator;
mod exceptions;
mod hostile_input;
mod interop_notifications;
mod interop_oslo;
mod interop_python_json;
mod macro_api;
mod notifications;
mod production;
mod rabbit_topology;
mod rabbit_transport;
mod request_hooks;
mod rpc_semantics;
mod server_lifecycle;
mod transport_url;
