//! amqp-rpc in production conditions: faults of the connection and of the broker (`faults`),
//! TLS (`tls`), a RabbitMQ cluster (`cluster`), and the fault-injection proxy itself (`proxy`).
//!
//! The `faults` tests need the default broker
//! (`AMQP_RPC_TEST_URL`, as every broker test) and make a vhost of their own, so that closing
//! its connections touches no other test; `tls` and `cluster` need the extra nodes that
//! `scripts/brokers.sh` starts (`scripts/test.sh` does), and are skipped, saying so, without
//! them unless `REQUIRE_EXTRA_NODES=1`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cluster;
mod faults;
mod proxy;
mod support;
mod tls;
