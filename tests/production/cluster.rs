//! A 3-node RabbitMQ cluster (`scripts/brokers.sh`) with quorum queues and a multi-host URL:
//! the node a client and a server are connected to stops under load.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use amqp_rpc::{ConnectionState, Transport};

use crate::common::{unique, until};
use crate::support::{
    Node, ServiceClient, connect, extra_node_or_skip, quick_config, rabbitmqctl, serve,
};

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
async fn stopping_the_node_in_use_loses_no_call_and_no_confirmed_cast() {
    let url = extra_node_or_skip!("AMQP_RPC_CLUSTER_URL");
    let nodes = extra_node_or_skip!("AMQP_RPC_CLUSTER_NODES");
    let ports = extra_node_or_skip!("AMQP_RPC_CLUSTER_PORTS");
    let node_of_port = |port: &str| {
        let index = ports.split_whitespace().position(|p| p == port).unwrap();
        nodes.split_whitespace().nth(index).unwrap().to_owned()
    };
    let url = format!(
        "{url}?rabbit_quorum_queue=true&control_exchange={}",
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

    let failures = Arc::new(AtomicUsize::new(0));
    let resumed = Arc::new(AtomicUsize::new(0));
    let stop_at = Instant::now() + Duration::from_secs(2);
    let end_at = stop_at + Duration::from_secs(8);
    let mut tasks = Vec::new();
    for task in 0..4 {
        let client = client.clone();
        let failures = Arc::clone(&failures);
        let resumed = Arc::clone(&resumed);
        tasks.push(tokio::spawn(async move {
            let mut confirmed = Vec::new();
            let mut n = 0u64;
            while Instant::now() < end_at {
                let started = Instant::now();
                match client.sleep(n % 3).await {
                    // Calls started well after the stop prove that service resumed.
                    Ok(_) if started > stop_at + Duration::from_secs(1) => {
                        resumed.fetch_add(1, Ordering::SeqCst);
                    }
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("call failed: {e}");
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
                let id = format!("{task}-{n}");
                match client.record(id.clone()).await {
                    Ok(()) => confirmed.push(id),
                    Err(e) => {
                        eprintln!("cast failed: {e}");
                        failures.fetch_add(1, Ordering::SeqCst);
                    }
                }
                n += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            confirmed
        }));
    }
    tokio::time::sleep_until(stop_at.into()).await;
    let stopped = Stopped::stop(&node_of_port(&port));

    let mut confirmed = Vec::new();
    for task in tasks {
        confirmed.extend(task.await.unwrap());
    }
    assert_eq!(failures.load(Ordering::SeqCst), 0, "failed calls or casts");
    assert!(
        resumed.load(Ordering::SeqCst) > 10,
        "calls resumed after the stop"
    );
    for t in [&transport, &server_transport] {
        let now = port_of(t);
        assert!(
            now.is_some() && now != Some(port.clone()),
            "still on the stopped node: {now:?}"
        );
    }
    // No confirmed cast is lost: each is in a quorum queue, or ran.
    until("every confirmed cast ran", Duration::from_secs(20), || {
        confirmed.iter().all(|id| node.times(id) >= 1)
    })
    .await;
    let twice: Vec<&String> = confirmed.iter().filter(|id| node.times(id) > 1).collect();
    assert!(twice.is_empty(), "casts that ran twice: {twice:?}");

    // The node comes back; service goes on.
    drop(stopped);
    assert_eq!(client.whoami().await.unwrap(), "s1");
    server.stop().await;
    server.wait().await;
}
