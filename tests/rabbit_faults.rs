//! Faults of the `rabbit://` transport: the broker drops the connection. The test makes a
//! vhost of its own, so that closing its connections touches no other test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use amqp_rpc::{Endpoint, RpcServer, Target, Transport, rpc_client, rpc_endpoint};

mod common;
use common::{broker_or_skip, unique};

#[rpc_endpoint]
#[rpc_client]
trait Sleeper {
    /// Sleeps `millis`, then returns them.
    async fn sleep(&self, millis: u64) -> u64;
}

struct Impl;

impl Sleeper for Impl {
    async fn sleep(&self, millis: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }
}

fn rabbitmqctl(args: &[&str]) {
    let output = Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .output()
        .expect("run rabbitmqctl");
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A vhost deleted when dropped.
struct Vhost(String);

impl Vhost {
    fn new() -> Vhost {
        let name = unique("amqp-rpc-fault");
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        Vhost(name)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        rabbitmqctl(&["delete_vhost", &self.0]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_connection_fails_pending_and_new_calls_instead_of_hanging() {
    let test_url = broker_or_skip!();
    let vhost = Vhost::new();
    let base = test_url.rsplit_once('/').map(|(base, _)| base).unwrap();
    let url = format!("{base}/{}", vhost.0);

    let server_transport = Transport::from_url(&url).await.unwrap();
    let endpoints: Vec<Arc<dyn Endpoint>> = vec![Arc::new(SleeperEndpoint::new(Impl))];
    let server =
        RpcServer::new(&server_transport, Target::server("faults", "s1"), endpoints).unwrap();
    server.start().await.unwrap();
    let transport = Transport::from_url(&url).await.unwrap();
    let client = SleeperClient::new(&transport, "faults").with_timeout(Duration::from_secs(60));
    assert_eq!(client.sleep(1).await.unwrap(), 1);

    let pending = tokio::spawn({
        let client = client.clone();
        async move { client.sleep(3_000).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let dropped = Instant::now();
    rabbitmqctl(&[
        "close_all_connections",
        "-p",
        &vhost.0,
        "fault injected by the test",
    ]);

    let err = tokio::time::timeout(Duration::from_secs(10), pending)
        .await
        .expect("the pending call must not hang")
        .unwrap()
        .unwrap_err();
    assert!(err.is_transport(), "pending call: {err:?}");
    assert!(dropped.elapsed() < Duration::from_secs(10));
    let err = tokio::time::timeout(Duration::from_secs(10), client.sleep(1))
        .await
        .expect("a new call must not hang")
        .unwrap_err();
    assert!(err.is_transport(), "new call: {err:?}");

    // The server lost its connection too: stopping it returns at once, and waiting returns
    // once the handler still running (3 s) is done, though its reply cannot be delivered.
    tokio::time::timeout(Duration::from_secs(2), server.stop())
        .await
        .expect("stopping a server whose connection is gone must not hang");
    tokio::time::timeout(Duration::from_secs(10), server.wait())
        .await
        .expect("waiting for a server whose connection is gone must not hang");
}
