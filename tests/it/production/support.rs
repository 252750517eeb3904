//! What the production tests share: a vhost of their own, `rabbitmqctl`, a service to call,
//! and a record of a transport's connection states.

use std::collections::HashMap;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amqp_rpc::{
    ConnectionState, RpcServer, ServerConfig, Target, Transport, TransportConfig, rpc_client,
    rpc_endpoint,
};

use crate::common::unique;

/// Runs `rabbitmqctl -q <args>` and returns its output; fails the test if it fails.
pub(crate) fn rabbitmqctl(args: &[&str]) -> String {
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
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A vhost of the default broker, deleted when dropped.
pub(crate) struct Vhost(pub(crate) String);

impl Vhost {
    pub(crate) fn new() -> Vhost {
        let name = unique("amqp-rpc-fault");
        rabbitmqctl(&["add_vhost", &name]);
        rabbitmqctl(&["set_permissions", "-p", &name, "guest", ".*", ".*", ".*"]);
        Vhost(name)
    }

    /// The URL of this vhost on the broker at `port` of 127.0.0.1 (the broker's own port, or
    /// a proxy's).
    pub(crate) fn url(&self, port: u16) -> String {
        format!("rabbit://guest:guest@127.0.0.1:{port}/{}", self.0)
    }

    /// Closes every connection of the vhost, as an operator (or a broker restart) would.
    pub(crate) fn close_all_connections(&self) {
        rabbitmqctl(&[
            "close_all_connections",
            "-p",
            &self.0,
            "fault injected by the test",
        ]);
    }

    /// The names of the vhost's queues.
    pub(crate) fn queues(&self) -> Vec<String> {
        rabbitmqctl(&["list_queues", "-p", &self.0, "name", "--no-table-headers"])
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        rabbitmqctl(&["delete_vhost", &self.0]);
    }
}

/// The default broker's port.
pub(crate) const BROKER_PORT: u16 = 5672;

/// Settings that make the tests' reconnections quick: oslo's schedule, with a short
/// `kombu_reconnect_delay` and `connect_timeout`.
pub(crate) fn quick_config() -> TransportConfig {
    TransportConfig::default()
        .with_kombu_reconnect_delay(Duration::from_millis(200))
        .with_connect_timeout(Duration::from_secs(2))
}

pub(crate) async fn connect(url: &str, config: TransportConfig) -> Transport {
    Transport::from_url_with_config(url, config)
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// The service the tests call.
#[rpc_endpoint]
#[rpc_client]
pub(crate) trait Service {
    /// Sleeps `millis`, then returns them.
    async fn sleep(&self, millis: u64) -> u64;
    /// The server's name.
    async fn whoami(&self) -> String;
    /// Records `id` (a cast).
    #[rpc(cast)]
    async fn record(&self, id: String);
}

/// A server's name and what it recorded, id by id, with how often.
#[derive(Clone)]
pub(crate) struct Node {
    name: String,
    pub(crate) recorded: Arc<Mutex<HashMap<String, usize>>>,
}

impl Node {
    pub(crate) fn new(name: &str) -> Node {
        Node {
            name: name.to_owned(),
            recorded: Arc::default(),
        }
    }

    pub(crate) fn times(&self, id: &str) -> usize {
        self.recorded.lock().unwrap().get(id).copied().unwrap_or(0)
    }
}

impl Service for Node {
    async fn sleep(&self, millis: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        millis
    }

    async fn whoami(&self) -> String {
        self.name.clone()
    }

    async fn record(&self, id: String) {
        *self.recorded.lock().unwrap().entry(id).or_default() += 1;
    }
}

/// Starts `node` serving `topic` on `transport`.
pub(crate) async fn serve(transport: &Transport, topic: &str, node: &Node) -> RpcServer {
    let server = RpcServer::builder(transport, Target::server(topic, &node.name))
        .endpoint(ServiceEndpoint::new(node.clone()))
        .config(ServerConfig::default())
        .build()
        .unwrap();
    server.start().await.unwrap();
    server
}

/// Every state a transport's connection went through since `record` was called.
pub(crate) struct States(Arc<Mutex<Vec<ConnectionState>>>);

impl States {
    pub(crate) fn record(transport: &Transport) -> States {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut watch = transport.watch_connection();
        tokio::spawn({
            let seen = Arc::clone(&seen);
            async move {
                while watch.changed().await.is_ok() {
                    let state = watch.borrow_and_update().clone();
                    seen.lock().unwrap().push(state);
                }
            }
        });
        States(seen)
    }

    /// Whether the connection was seen reconnecting.
    pub(crate) fn reconnected(&self) -> bool {
        self.0
            .lock()
            .unwrap()
            .iter()
            .any(|s| matches!(s, ConnectionState::Reconnecting { .. }))
    }
}

/// Waits until the transport's state satisfies `condition`; fails the test after `within`.
pub(crate) async fn wait_state(
    transport: &Transport,
    within: Duration,
    condition: impl Fn(&ConnectionState) -> bool,
) {
    let mut watch = transport.watch_connection();
    let reached = tokio::time::timeout(within, watch.wait_for(|s| condition(s))).await;
    assert!(
        matches!(reached, Ok(Ok(_))),
        "connection state still {} after {within:?}",
        transport.connection_state()
    );
}

/// The extra nodes' settings from `scripts/brokers.sh env`: the test is skipped, saying so,
/// when they are missing, unless `REQUIRE_EXTRA_NODES=1`.
pub(crate) fn extra_node_setting(name: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Some(value),
        _ if std::env::var("REQUIRE_EXTRA_NODES").as_deref() == Ok("1") => {
            panic!(
                "REQUIRE_EXTRA_NODES=1 but {name} is not set: run the tests with scripts/test.sh"
            )
        }
        _ => {
            eprintln!(
                "SKIPPED: {name} is unset (the extra RabbitMQ nodes of scripts/brokers.sh are not running)"
            );
            None
        }
    }
}

/// The extra nodes' setting `$name`, or returns from the test (see [`extra_node_setting`]).
macro_rules! extra_node_or_skip {
    ($name:expr) => {
        match super::support::extra_node_setting($name) {
            Some(value) => value,
            None => return,
        }
    };
}
pub(crate) use extra_node_or_skip;

/// A server `s1` of `topic` on a transport of its own, and a client of the topic on another.
pub(crate) struct Pair {
    pub(crate) node: Node,
    pub(crate) server: RpcServer,
    pub(crate) server_transport: Transport,
    pub(crate) transport: Transport,
    /// Calls may take 20 s.
    pub(crate) client: ServiceClient,
}

impl Pair {
    /// The server connects to `server_url`, the client to `client_url` with `client_config`.
    pub(crate) async fn start(
        topic: &str,
        server_url: &str,
        client_url: &str,
        client_config: TransportConfig,
    ) -> Pair {
        let server_transport = connect(server_url, quick_config()).await;
        let node = Node::new("s1");
        let server = serve(&server_transport, topic, &node).await;
        let transport = connect(client_url, client_config).await;
        let client = ServiceClient::new(&transport, topic).with_timeout(Duration::from_secs(20));
        Pair {
            node,
            server,
            server_transport,
            transport,
            client,
        }
    }
}

/// What a steady load of calls and casts saw.
pub(crate) struct Load {
    /// Calls and casts that failed.
    pub(crate) failures: usize,
    /// Calls started after the load's `late` instant that succeeded.
    pub(crate) late_calls: usize,
    /// The ids of the casts that returned `Ok` (the broker confirmed them).
    pub(crate) confirmed: Vec<String>,
}

impl Load {
    /// Four tasks calling, then casting, then pausing `pause`, until `end`.
    pub(crate) async fn run(
        client: &ServiceClient,
        end: Instant,
        late: Instant,
        pause: Duration,
    ) -> Load {
        let mut tasks = Vec::new();
        for task in 0..4 {
            let client = client.clone();
            tasks.push(tokio::spawn(async move {
                let mut load = Load {
                    failures: 0,
                    late_calls: 0,
                    confirmed: Vec::new(),
                };
                let mut n = 0u64;
                while Instant::now() < end {
                    let started = Instant::now();
                    match client.sleep(n % 3).await {
                        Ok(_) if started > late => load.late_calls += 1,
                        Ok(_) => {}
                        Err(e) => {
                            eprintln!("call failed: {e}");
                            load.failures += 1;
                        }
                    }
                    let id = format!("{task}-{n}");
                    match client.record(id.clone()).await {
                        Ok(()) => load.confirmed.push(id),
                        Err(e) => {
                            eprintln!("cast failed: {e}");
                            load.failures += 1;
                        }
                    }
                    n += 1;
                    tokio::time::sleep(pause).await;
                }
                load
            }));
        }
        let mut total = Load {
            failures: 0,
            late_calls: 0,
            confirmed: Vec::new(),
        };
        for task in tasks {
            let load = task.await.unwrap();
            total.failures += load.failures;
            total.late_calls += load.late_calls;
            total.confirmed.extend(load.confirmed);
        }
        total
    }

    /// Fails unless every confirmed cast ran on `node`, once: none lost, none run twice.
    pub(crate) async fn assert_every_cast_ran_once(&self, node: &Node) {
        crate::common::until("every confirmed cast ran", Duration::from_secs(20), || {
            self.confirmed.iter().all(|id| node.times(id) >= 1)
        })
        .await;
        let twice: Vec<&String> = self
            .confirmed
            .iter()
            .filter(|id| node.times(id) > 1)
            .collect();
        assert!(twice.is_empty(), "casts that ran twice: {twice:?}");
    }
}
