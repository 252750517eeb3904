//! Procedural macros of amqp-rpc.
//!
//! Use them through the `amqp-rpc` crate, which re-exports them; this crate is filled by the
//! macros work (`#[rpc_endpoint]`, `#[rpc_client]`).
