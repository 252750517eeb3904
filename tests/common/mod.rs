//! Helpers shared by the integration tests: timeouts, and starting servers.
// Each test crate uses only some of these.
#![allow(dead_code, clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use amqp_rpc::{Endpoint, RpcServer, ServerConfig, Target, Transport};
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
    let target = Target::server(topic, server);
    let server = RpcServer::with_config(transport, target, endpoints, config).unwrap();
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
