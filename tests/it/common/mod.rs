//! Helpers shared by the integration tests: timeouts, and starting servers.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use amqp_rpc::{Endpoint, RpcServer, ServerConfig, Target, Transport};

pub(crate) mod log;
pub(crate) mod peer;
pub(crate) mod proxy;
use tokio::sync::mpsc;

/// Long enough for anything that should answer; short enough that a hang fails fast.
pub(crate) const ANSWER: Duration = Duration::from_secs(5);
/// How long we listen before concluding that nothing (more) arrives.
pub(crate) const QUIET: Duration = Duration::from_millis(250);

pub(crate) async fn serve_with(
    transport: &Transport,
    topic: &str,
    server: &str,
    endpoints: Vec<Arc<dyn Endpoint>>,
    config: ServerConfig,
) -> RpcServer {
    let builder = RpcServer::builder(transport, Target::server(topic, server)).config(config);
    let server = endpoints
        .into_iter()
        .fold(builder, |builder, endpoint| builder.endpoint(endpoint))
        .build()
        .unwrap();
    server.start().await.unwrap();
    server
}

pub(crate) async fn serve(
    transport: &Transport,
    topic: &str,
    server: &str,
    endpoints: Vec<Arc<dyn Endpoint>>,
) -> RpcServer {
    serve_with(transport, topic, server, endpoints, ServerConfig::default()).await
}

/// Waits for exactly `count` events, then checks that nothing more arrives for [`QUIET`].
pub(crate) async fn expect_events(
    events: &mut mpsc::UnboundedReceiver<String>,
    count: usize,
) -> Vec<String> {
    let mut got = Vec::new();
    while got.len() < count {
        match tokio::time::timeout(ANSWER, events.recv()).await {
            Ok(Some(event)) => got.push(event),
            other => panic!("expected {count} events, got {got:?} then {other:?}"),
        }
    }
    if let Ok(Some(extra)) = tokio::time::timeout(QUIET, events.recv()).await {
        panic!("expected exactly {count} events {got:?}, then got {extra:?}");
    }
    got
}

/// Polls `condition` every 10 ms; fails the test if it does not hold `within`.
pub(crate) async fn until(what: &str, within: Duration, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The URL of the test broker's vhost (`AMQP_RPC_TEST_URL`, which `scripts/test.sh` sets up).
///
/// Tests that need RabbitMQ are `#[ignore = "needs RabbitMQ: ..."]`, so that plain `cargo test`
/// reports them as ignored rather than passed; `scripts/test.sh` runs them
/// (`--include-ignored`). Run without the URL, such a test fails, saying why.
pub(crate) fn broker_url() -> String {
    match std::env::var("AMQP_RPC_TEST_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "this test needs RabbitMQ and AMQP_RPC_TEST_URL is not set: run it with scripts/test.sh"
        ),
    }
}

/// A name no other test uses.
pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

/// The broker URL (see [`broker_url`]).
macro_rules! test_broker {
    () => {
        crate::common::broker_url()
    };
}
pub(crate) use test_broker;
