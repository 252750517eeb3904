//! A 3-node RabbitMQ cluster (`scripts/brokers.sh`) with quorum queues and a multi-host URL:
//! the node a client and a server are connected to stops under load.
//!
//! Every queue is a quorum queue, reply queues included (`rabbit_transient_quorum_queue`): a
//! classic reply queue lives on one node and is lost with it, with any reply in it. A call
//! whose reply the broker had confirmed into it just before the node stopped then times out,
//! in amqp-rpc as in oslo; this test saw that about once in ten runs while reply queues were
//! classic.

use std::time::{Duration, Instant};

use amqp_rpc::{ConnectionState, Transport};

use super::support::{
    Load, Node, ServiceClient, connect, extra_node_or_skip, quick_config, rabbitmqctl, serve,
};
use crate::common::unique;

/// The port a transport is connected to.
fn port_of(transport: &Transport) -> Option<String> {
    match transport.connection_state() {
        ConnectionState::Connected { host } => host.rsplit_once(':').map(|(_, p)| p.to_owned()),
        _ => None,
    }
}

/// Starts a stopped node's app again when dropped, so that a failing test leaves the cluster
/// whole for the next.
struct Stopped(String);

impl Stopped {
    fn stop(node: &str) -> Stopped {
        rabbitmqctl(&["-n", node, "stop_app"]);
        Stopped(node.to_owned())
    }
}

impl Drop for Stopped {
    fn drop(&mut self) {
        rabbitmqctl(&["-n", &self.0, "start_app"]);
        rabbitmqctl(&["-n", &self.0, "await_startup"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ and its extra nodes: scripts/test.sh runs it"]
async fn stopping_the_node_in_use_loses_no_call_and_no_confirmed_cast() {
    let url = extra_node_or_skip!("AMQP_RPC_CLUSTER_URL");
    let nodes = extra_node_or_skip!("AMQP_RPC_CLUSTER_NODES");
    let ports = extra_node_or_skip!("AMQP_RPC_CLUSTER_PORTS");
    let node_of_port = |port: &str| {
        let index = ports.split_whitespace().position(|p| p == port).unwrap();
        nodes.split_whitespace().nth(index).unwrap().to_owned()
    };
    let url = format!(
        "{url}?rabbit_quorum_queue=true&rabbit_transient_quorum_queue=true&control_exchange={}",
        unique("cluster")
    );
    let topic = unique("cluster");

    // A server, and a client on the same node (each connection shuffles the URL's hosts).
    let server_transport = connect(&url, quick_config()).await;
    let port = port_of(&server_transport).unwrap();
    let mut transport = connect(&url, quick_config()).await;
    for _ in 0..40 {
        if port_of(&transport).as_deref() == Some(port.as_str()) {
            break;
        }
        transport.close().await;
        transport = connect(&url, quick_config()).await;
    }
    assert_eq!(
        port_of(&transport),
        Some(port.clone()),
        "no client landed on the server's node"
    );
    let node = Node::new("s1");
    let server = serve(&server_transport, &topic, &node).await;
    let client = ServiceClient::new(&transport, &topic).with_timeout(Duration::from_secs(30));
    assert_eq!(client.whoami().await.unwrap(), "s1");

    let stop_at = Instant::now() + Duration::from_secs(2);
    let end = stop_at + Duration::from_secs(8);
    // Calls started well after the stop prove that service resumed.
    let late = stop_at + Duration::from_secs(1);
    let load = tokio::spawn({
        let client = client.clone();
        async move { Load::run(&client, end, late, Duration::from_millis(10)).await }
    });
    tokio::time::sleep_until(stop_at.into()).await;
    let stopped = Stopped::stop(&node_of_port(&port));
    let load = load.await.unwrap();
    assert_eq!(load.failures, 0, "failed calls or casts");
    assert!(load.late_calls > 10, "calls resumed after the stop");
    for t in [&transport, &server_transport] {
        let now = port_of(t);
        assert!(
            now.is_some() && now != Some(port.clone()),
            "still on the stopped node: {now:?}"
        );
    }
    // No confirmed cast is lost: each is in a quorum queue, or ran.
    load.assert_every_cast_ran_once(&node).await;

    // The node comes back; service goes on.
    drop(stopped);
    assert_eq!(client.whoami().await.unwrap(), "s1");
    server.stop().await;
    server.wait().await;
}
