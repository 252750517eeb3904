//! The broker topology of the `rabbit://` driver against the real oslo.messaging 18.3.1
//! (spec §2.1, §2.3): for each option set that shapes the topology, the exchanges, queues,
//! bindings and arguments that a Rust server and client leave on RabbitMQ equal, after
//! normalizing the random names, those a Python server and client leave for the same target
//! and options (read with `rabbitmqctl`), and both equal the spec's table. Then a Rust server
//! joins a Python fleet with durable or quorum queues, in either order, without
//! PRECONDITION_FAILED, while a Rust server with inequivalent options fails to start with it.
//!
//! Both sides get the same URL: the options in its query, `control_exchange` included
//! (`tests/interop/peer.py` takes that one out of the URL and hands it to oslo as its
//! `[DEFAULT]` option). Each side of each option set has its own topic and control exchange,
//! so that every entity on the broker is attributed to the side that declared it (sharing one
//! is what the second test does). Reply queues have random names;
//! a side's reply queue is found through its consumer: the reply queue consumed on a
//! connection of the Python peer's process (oslo's `connection_name` is
//! `<argv0>:<pid>:<uuid>`), or on the Rust transport's connection (the one consuming the Rust
//! server's topic queue: a Rust transport has one connection), so that reply queues of other
//! tests in the same vhost are never mistaken for ours.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use amqp_rpc::{RpcError, RpcServer, Target, Transport, TransportUrl, rpc_client, rpc_endpoint};
use futures_util::future::join_all;
use lapin::options::{ExchangeDeleteOptions, QueueDeleteOptions};
use lapin::{Connection, ConnectionProperties};
use serde_json::{Value, json};

use crate::common;
use common::peer::PythonPeer;
use common::{test_broker, unique};

/// The server name of both sides in the topology comparison, so that `<topic>.<server>`
/// normalizes to the same name.
const SERVER: &str = "srv";

/// How long starting a server or answering a call may take before the test calls it a hang.
const START: Duration = Duration::from_secs(15);

#[rpc_endpoint]
#[rpc_client]
trait Topo {
    /// The server's name (oslo's peer has the same method).
    async fn whoami(&self) -> String;
}

struct Named(String);

impl Topo for Named {
    async fn whoami(&self) -> String {
        self.0.clone()
    }
}

// ---------------------------------------------------------------------------------------------
// Option sets and the spec's topology for them
// ---------------------------------------------------------------------------------------------

/// One set of topology options, as a URL query (oslo's names) and as their effect (spec §2.3).
#[derive(Debug, Clone, Copy)]
struct Options {
    name: &'static str,
    query: &'static str,
    /// Control exchange, topic and server queues durable.
    durable: bool,
    /// Control exchange, topic and server queues auto-delete.
    auto_delete: bool,
    /// Topic and server queues `x-queue-type: quorum`.
    quorum: bool,
    /// Reply and fanout queues `x-queue-type: quorum` and durable, the fanout exchange durable.
    transient_quorum: bool,
    /// `x-expires` of reply and fanout queues, in ms.
    expires_ms: Option<i64>,
}

const DEFAULTS: Options = Options {
    name: "defaults",
    query: "",
    durable: false,
    auto_delete: false,
    quorum: false,
    transient_quorum: false,
    expires_ms: Some(1_800_000),
};

const DURABLE: Options = Options {
    name: "durable",
    query: "amqp_durable_queues=true",
    durable: true,
    ..DEFAULTS
};

const QUORUM: Options = Options {
    name: "quorum",
    query: "rabbit_quorum_queue=true",
    // Quorum queues are durable, and so is the control exchange with them.
    durable: true,
    quorum: true,
    ..DEFAULTS
};

const OPTION_SETS: [Options; 7] = [
    DEFAULTS,
    DURABLE,
    Options {
        name: "auto_delete",
        query: "amqp_auto_delete=true",
        auto_delete: true,
        ..DEFAULTS
    },
    Options {
        name: "ttl60",
        query: "rabbit_transient_queues_ttl=60",
        expires_ms: Some(60_000),
        ..DEFAULTS
    },
    Options {
        name: "ttl0",
        query: "rabbit_transient_queues_ttl=0",
        expires_ms: None,
        ..DEFAULTS
    },
    QUORUM,
    Options {
        name: "transient_quorum",
        query: "rabbit_transient_quorum_queue=true",
        transient_quorum: true,
        ..DEFAULTS
    },
];

/// `base` with `params` (those not empty) added to its query.
fn with_query(base: &str, params: &[&str]) -> String {
    let mut url = base.to_owned();
    for param in params.iter().filter(|p| !p.is_empty()) {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(param);
    }
    url
}

/// The URL of a transport with `options` and control exchange `exchange`. `control_exchange`
/// in the query is an amqp-rpc option; `peer.py` takes it out of the URL for oslo.
fn url_for(base: &str, options: &Options, exchange: &str) -> String {
    with_query(
        base,
        &[options.query, &format!("control_exchange={exchange}")],
    )
}

/// Entities in a normalized, comparable form: one line per exchange, queue and binding.
#[derive(Debug, Default, PartialEq, Eq)]
struct Topology {
    exchanges: BTreeSet<String>,
    queues: BTreeSet<String>,
    bindings: BTreeSet<String>,
}

impl std::fmt::Display for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (kind, rows) in [
            ("exchange", &self.exchanges),
            ("queue", &self.queues),
            ("binding", &self.bindings),
        ] {
            for row in rows {
                writeln!(f, "  {kind:8} {row}")?;
            }
        }
        Ok(())
    }
}

/// Arguments as `name:type=value`, sorted; `args` are `(name, type, value)` triples as
/// `rabbitmqctl --formatter json` prints them.
fn arguments(args: &[(String, String, Value)]) -> String {
    let mut args: Vec<String> = args
        .iter()
        .map(|(name, kind, value)| format!("{name}:{kind}={value}"))
        .collect();
    args.sort();
    args.join(",")
}

fn exchange_row(
    name: &str,
    kind: &str,
    durable: bool,
    auto_delete: bool,
    internal: bool,
    args: &str,
) -> String {
    format!(
        "{name} type={kind} durable={durable} auto_delete={auto_delete} internal={internal} args=[{args}]"
    )
}

/// `exclusive` is `n/a` for queue types that have no such flag (quorum queues:
/// `rabbitmqctl` prints `""`).
fn queue_row(
    name: &str,
    kind: &str,
    durable: bool,
    auto_delete: bool,
    exclusive: &str,
    args: &str,
) -> String {
    format!(
        "{name} type={kind} durable={durable} auto_delete={auto_delete} exclusive={exclusive} args=[{args}]"
    )
}

/// A binding; the default exchange (`""`) is shown as `(default)`.
fn binding_row(
    source: &str,
    destination: &str,
    destination_kind: &str,
    key: &str,
    args: &str,
) -> String {
    let source = if source.is_empty() {
        "(default)"
    } else {
        source
    };
    format!("{source} -> {destination_kind} {destination} key={key} args=[{args}]")
}

/// A queue's row, quorum or classic, with `expires` (an `x-expires` argument) if any.
fn spec_queue(
    name: &str,
    quorum: bool,
    durable: bool,
    auto_delete: bool,
    expires: Option<String>,
) -> String {
    let quorum_arg = quorum.then(|| r#"x-queue-type:longstr="quorum""#.to_owned());
    let mut args: Vec<String> = [expires, quorum_arg].into_iter().flatten().collect();
    args.sort();
    // Quorum queues cannot be exclusive; rabbitmqctl shows no flag for them.
    let (kind, exclusive) = if quorum {
        ("quorum", "n/a")
    } else {
        ("classic", "false")
    };
    queue_row(name, kind, durable, auto_delete, exclusive, &args.join(","))
}

/// What spec §2.1 and §2.3 say a server on `<topic>` named `srv` and a client that made one
/// call leave on the broker with `options`.
fn spec_topology(options: &Options) -> Topology {
    let durable = options.durable;
    let auto_delete = options.auto_delete;
    let expires = options
        .expires_ms
        .map(|ms| format!("x-expires:signedint={ms}"));
    let topic_queue = |name: &str| spec_queue(name, options.quorum, durable, auto_delete, None);
    let transient_queue = |name: &str| {
        // Quorum queues are durable.
        let quorum = options.transient_quorum;
        spec_queue(name, quorum, quorum, false, expires.clone())
    };
    let queues = [
        "<topic>",
        "<topic>.srv",
        "<topic>_fanout_<hex>",
        "reply_<hex>",
    ];
    let mut bindings: BTreeSet<String> = queues
        .iter()
        .map(|q| binding_row("", q, "queue", q, ""))
        .collect();
    bindings.extend([
        binding_row("<exchange>", "<topic>", "queue", "<topic>", ""),
        binding_row("<exchange>", "<topic>.srv", "queue", "<topic>.srv", ""),
        binding_row(
            "<topic>_fanout",
            "<topic>_fanout_<hex>",
            "queue",
            "<topic>",
            "",
        ),
    ]);
    Topology {
        exchanges: BTreeSet::from([
            exchange_row("<exchange>", "topic", durable, auto_delete, false, ""),
            exchange_row(
                "<topic>_fanout",
                "fanout",
                options.transient_quorum,
                true,
                false,
                "",
            ),
        ]),
        queues: BTreeSet::from([
            topic_queue("<topic>"),
            topic_queue("<topic>.srv"),
            transient_queue("<topic>_fanout_<hex>"),
            transient_queue("reply_<hex>"),
        ]),
        bindings,
    }
}

// ---------------------------------------------------------------------------------------------
// Reading the broker with rabbitmqctl
// ---------------------------------------------------------------------------------------------

/// The vhost of the test run (see [`vhost`]), for other modules' checks.
pub(crate) fn test_vhost() -> String {
    vhost(&crate::common::broker_url())
}

/// One `rabbitmqctl -q <args> --formatter json` listing, for other modules' checks.
pub(crate) async fn list(args: &[&str]) -> Vec<Value> {
    rabbitmqctl(args.to_vec()).await
}

/// The vhost of the test run: `AMQP_RPC_TEST_VHOST`, else the URL's.
fn vhost(url: &str) -> String {
    match std::env::var("AMQP_RPC_TEST_VHOST") {
        Ok(vhost) if !vhost.is_empty() => vhost,
        _ => TransportUrl::parse(url)
            .expect("AMQP_RPC_TEST_URL parses")
            .virtual_host()
            .to_owned(),
    }
}

/// `rabbitmqctl`, found in `PATH` or the sbin directories, through `sudo -n` unless we are
/// root, as `scripts/test.sh` runs it.
fn rabbitmqctl_command() -> tokio::process::Command {
    static PROGRAM: OnceLock<(PathBuf, bool)> = OnceLock::new();
    let (program, root) = PROGRAM.get_or_init(|| {
        let path = std::env::var_os("PATH").unwrap_or_default();
        let program = std::env::split_paths(&path)
            .chain(["/usr/local/sbin", "/usr/sbin", "/sbin"].map(PathBuf::from))
            .map(|dir| dir.join("rabbitmqctl"))
            .find(|p| p.is_file())
            .expect("rabbitmqctl not found in PATH or the sbin directories");
        let root = std::process::Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
        (program, root)
    });
    let mut command = if *root {
        tokio::process::Command::new(program)
    } else {
        let mut sudo = tokio::process::Command::new("sudo");
        sudo.arg("-n").arg(program);
        sudo
    };
    command.kill_on_drop(true);
    command
}

/// One `rabbitmqctl -q <args> --formatter json` listing.
async fn rabbitmqctl(args: Vec<&str>) -> Vec<Value> {
    // A listing races the other tests of the vhost: a queue or channel that ends while it is
    // listed fails the whole listing with `badrpc` (`{:EXIT, {:normal, ...}}`), and it is read
    // again, up to three times in all.
    let mut attempts = 0;
    let output = loop {
        let mut command = rabbitmqctl_command();
        command.arg("-q").args(&args).args(["--formatter", "json"]);
        let output = tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .unwrap_or_else(|_| panic!("rabbitmqctl {args:?} did not finish"))
            .expect("run rabbitmqctl");
        attempts += 1;
        let raced = String::from_utf8_lossy(&output.stderr).contains(":badrpc");
        if output.status.success() || !raced || attempts == 3 {
            break output;
        }
    };
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    if output.stdout.iter().all(u8::is_ascii_whitespace) {
        return Vec::new();
    }
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "rabbitmqctl {args:?} printed no JSON array ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}

/// Everything the comparison reads from the broker, listed once for all option sets.
struct Broker {
    exchanges: Vec<Value>,
    queues: Vec<Value>,
    bindings: Vec<Value>,
    /// `queue_name`, `channel_pid`.
    consumers: Vec<Value>,
    /// Channel `pid` → its `connection` pid.
    channel_connection: BTreeMap<String, String>,
    /// Connection `pid` → the client's `connection_name`.
    connection_names: BTreeMap<String, String>,
}

fn text<'a>(row: &'a Value, key: &str) -> &'a str {
    row[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key:?} in {row}"))
}

fn flag(row: &Value, key: &str) -> bool {
    row[key]
        .as_bool()
        .unwrap_or_else(|| panic!("no boolean {key:?} in {row}"))
}

/// A field table as `rabbitmqctl` prints it: `[[name, type, value], ...]`.
fn table(row: &Value, key: &str) -> Vec<(String, String, Value)> {
    row[key]
        .as_array()
        .unwrap_or_else(|| panic!("no array {key:?} in {row}"))
        .iter()
        .map(|entry| match entry.as_array().map(Vec::as_slice) {
            Some([Value::String(name), Value::String(kind), value]) => {
                (name.clone(), kind.clone(), value.clone())
            }
            _ => panic!("unexpected table entry {entry} in {row}"),
        })
        .collect()
}

impl Broker {
    async fn read(vhost: &str) -> Broker {
        let (exchanges, queues, bindings, consumers, channels, connections) = tokio::join!(
            rabbitmqctl(vec![
                "list_exchanges",
                "-p",
                vhost,
                "name",
                "type",
                "durable",
                "auto_delete",
                "internal",
                "arguments"
            ]),
            rabbitmqctl(vec![
                "list_queues",
                "-p",
                vhost,
                "name",
                "type",
                "durable",
                "auto_delete",
                "exclusive",
                "arguments"
            ]),
            rabbitmqctl(vec![
                "list_bindings",
                "-p",
                vhost,
                "source_name",
                "source_kind",
                "destination_name",
                "destination_kind",
                "routing_key",
                "arguments"
            ]),
            rabbitmqctl(vec![
                "list_consumers",
                "-p",
                vhost,
                "queue_name",
                "channel_pid"
            ]),
            rabbitmqctl(vec!["list_channels", "pid", "connection"]),
            rabbitmqctl(vec!["list_connections", "pid", "client_properties"]),
        );
        let channel_connection = channels
            .iter()
            .map(|c| (text(c, "pid").to_owned(), text(c, "connection").to_owned()))
            .collect();
        let connection_names = connections
            .iter()
            .filter_map(|c| {
                // Tolerant: connections of other clients (or still opening) may name none.
                let name = c["client_properties"].as_array()?.iter().find_map(|p| {
                    match p.as_array().map(Vec::as_slice) {
                        Some([Value::String(key), _, Value::String(name)])
                            if key == "connection_name" =>
                        {
                            Some(name.clone())
                        }
                        _ => None,
                    }
                })?;
                Some((c["pid"].as_str()?.to_owned(), name))
            })
            .collect();
        Broker {
            exchanges,
            queues,
            bindings,
            consumers,
            channel_connection,
            connection_names,
        }
    }

    /// The connections consuming from `queue`.
    fn connections_consuming(&self, queue: &str) -> BTreeSet<String> {
        self.consumers
            .iter()
            .filter(|c| text(c, "queue_name") == queue)
            .filter_map(|c| self.channel_connection.get(text(c, "channel_pid")).cloned())
            .collect()
    }

    /// The connections whose client named them `<argv0>:<pid>:<uuid>` (oslo's and this
    /// crate's `connection_name`).
    fn connections_of_process(&self, pid: u64) -> BTreeSet<String> {
        let pid = pid.to_string();
        self.connection_names
            .iter()
            .filter(|(_, name)| name.split(':').nth(1) == Some(pid.as_str()))
            .map(|(connection, _)| connection.clone())
            .collect()
    }

    /// The `reply_` queues consumed on one of `connections`.
    fn reply_queues_on(&self, connections: &BTreeSet<String>) -> BTreeSet<String> {
        self.consumers
            .iter()
            .filter(|c| text(c, "queue_name").starts_with("reply_"))
            .filter(|c| {
                self.channel_connection
                    .get(text(c, "channel_pid"))
                    .is_some_and(|conn| connections.contains(conn))
            })
            .map(|c| text(c, "queue_name").to_owned())
            .collect()
    }

    /// The entities of one side, named as in [`spec_topology`].
    fn topology(&self, side: &Side) -> Topology {
        let mut topology = Topology::default();
        for e in &self.exchanges {
            if let Some(name) = side.normalize(text(e, "name")) {
                topology.exchanges.insert(exchange_row(
                    &name,
                    text(e, "type"),
                    flag(e, "durable"),
                    flag(e, "auto_delete"),
                    flag(e, "internal"),
                    &arguments(&table(e, "arguments")),
                ));
            }
        }
        for q in &self.queues {
            if let Some(name) = side.normalize(text(q, "name")) {
                topology.queues.insert(queue_row(
                    &name,
                    text(q, "type"),
                    flag(q, "durable"),
                    flag(q, "auto_delete"),
                    &match &q["exclusive"] {
                        Value::Bool(b) => b.to_string(),
                        Value::String(s) if s.is_empty() => "n/a".to_owned(),
                        other => panic!("unexpected exclusive {other} in {q}"),
                    },
                    &arguments(&table(q, "arguments")),
                ));
            }
        }
        for b in &self.bindings {
            let Some(destination) = side.normalize(text(b, "destination_name")) else {
                continue;
            };
            let source = text(b, "source_name");
            let source = match source {
                "" => String::new(),
                other => side.normalize(other).unwrap_or_else(|| format!("?{other}")),
            };
            let key = text(b, "routing_key");
            let key = side.normalize(key).unwrap_or_else(|| key.to_owned());
            assert_eq!(text(b, "source_kind"), "exchange", "{b}");
            topology.bindings.insert(binding_row(
                &source,
                &destination,
                text(b, "destination_kind"),
                &key,
                &arguments(&table(b, "arguments")),
            ));
        }
        topology
    }
}

fn is_uuid_hex(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The names one side (Python or Rust) of one option set declared.
#[derive(Debug)]
struct Side {
    topic: String,
    exchange: String,
    reply_queue: String,
    /// The notification listener pool's name, for the notification topology.
    pool: Option<String>,
}

impl Side {
    /// The entity's name with the side's own names replaced by placeholders, or `None` if
    /// the side did not declare it.
    fn normalize(&self, name: &str) -> Option<String> {
        if name == self.exchange {
            return Some("<exchange>".to_owned());
        }
        if name == self.reply_queue {
            return Some("reply_<hex>".to_owned());
        }
        if self.pool.as_deref() == Some(name) {
            return Some("<pool>".to_owned());
        }
        let normalized = match name.strip_prefix(self.topic.as_str())? {
            "" => "<topic>",
            ".srv" => "<topic>.srv",
            priority @ (".audit" | ".debug" | ".info" | ".warn" | ".error" | ".critical"
            | ".sample") => return Some(format!("<topic>{priority}")),
            "_fanout" => "<topic>_fanout",
            rest if rest.strip_prefix("_fanout_").is_some_and(is_uuid_hex) => {
                "<topic>_fanout_<hex>"
            }
            _ => return None,
        };
        Some(normalized.to_owned())
    }
}

// ---------------------------------------------------------------------------------------------
// Starting each side, and cleaning up
// ---------------------------------------------------------------------------------------------

/// Starts a Rust server `name` on `topic`; `Err` (never a hang) if the broker refuses a
/// declaration.
async fn start_rust_server(
    transport: &Transport,
    topic: &str,
    name: &str,
) -> Result<RpcServer, RpcError> {
    let server = RpcServer::builder(transport, Target::server(topic, name))
        .endpoint(TopoEndpoint::new(Named(name.to_owned())))
        .build()?;
    tokio::time::timeout(START, server.start())
        .await
        .unwrap_or_else(|_| panic!("starting Rust server {name} on {topic} hung"))?;
    Ok(server)
}

/// A Python `whoami` call to `topic` (to one `server` if given).
async fn python_whoami(
    peer: &PythonPeer,
    topic: &str,
    server: Option<&str>,
) -> Result<Value, Value> {
    let mut command = json!({"cmd": "call", "topic": topic, "method": "whoami", "ctxt": {}, "args": {}, "timeout": 20});
    if let Some(server) = server {
        command["server"] = json!(server);
    }
    peer.request(command).await
}

/// One option set with a Python and a Rust server and client running on it.
struct Running {
    options: Options,
    peer: PythonPeer,
    peer_pid: u64,
    python_topic: String,
    python_exchange: String,
    transport: Transport,
    server: RpcServer,
    rust_topic: String,
    rust_exchange: String,
}

/// Starts both sides of `options`, each with its own topic and control exchange: a server
/// named [`SERVER`], then one call from a client on the same transport, so that the client's
/// reply queue exists.
async fn start_both(base: &str, options: Options) -> Running {
    let tag = options.name.replace('_', "-");
    let python_topic = unique(&format!("topo-{tag}-py"));
    let python_exchange = unique(&format!("topo-{tag}-pyx"));
    let rust_topic = unique(&format!("topo-{tag}-rs"));
    let rust_exchange = unique(&format!("topo-{tag}-rsx"));

    let python = async {
        let peer = PythonPeer::start(&url_for(base, &options, &python_exchange)).await;
        peer.serve(&python_topic, SERVER).await;
        assert_eq!(
            python_whoami(&peer, &python_topic, None).await,
            Ok(json!(SERVER)),
            "{}: Python call",
            options.name
        );
        let pid = peer_pid(&peer).await;
        (peer, pid)
    };
    let rust = async {
        let transport = Transport::from_url(&url_for(base, &options, &rust_exchange))
            .await
            .unwrap();
        let server = start_rust_server(&transport, &rust_topic, SERVER)
            .await
            .unwrap_or_else(|e| panic!("{}: Rust server: {e}", options.name));
        let client = TopoClient::new(&transport, rust_topic.clone()).with_timeout(START);
        assert_eq!(
            client.whoami().await.unwrap(),
            SERVER,
            "{}: Rust call",
            options.name
        );
        (transport, server)
    };
    let ((peer, peer_pid), (transport, server)) = tokio::join!(python, rust);
    Running {
        options,
        peer,
        peer_pid,
        python_topic,
        python_exchange,
        transport,
        server,
        rust_topic,
        rust_exchange,
    }
}

/// Deletes queues and exchanges by name, ignoring those already gone.
async fn delete_entities(base: &str, queues: &[String], exchanges: &[String]) {
    let amqp = base.replacen("rabbit://", "amqp://", 1);
    let Ok(connection) = Connection::connect(&amqp, ConnectionProperties::default()).await else {
        eprintln!("cleanup: cannot connect to {amqp}");
        return;
    };
    for queue in queues {
        // A fresh channel each time: an error closes the channel.
        if let Ok(channel) = connection.create_channel().await {
            let _ = channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await;
        }
    }
    for exchange in exchanges {
        if let Ok(channel) = connection.create_channel().await {
            let _ = channel
                .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
                .await;
        }
    }
    let _ = connection.close(200, "cleaned up".into()).await;
}

/// Names of the queues and exchanges of `topic` on `exchange` that outlive their server.
fn leftovers(
    topic: &str,
    exchange: &str,
    servers: &[&str],
    queues: &mut Vec<String>,
    exchanges: &mut Vec<String>,
) {
    queues.push(topic.to_owned());
    queues.extend(servers.iter().map(|s| format!("{topic}.{s}")));
    exchanges.push(exchange.to_owned());
    exchanges.push(format!("{topic}_fanout"));
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn rust_and_python_declare_the_same_topology() {
    let base = test_broker!();
    let vhost = vhost(&base);
    let running = join_all(OPTION_SETS.map(|options| start_both(&base, options))).await;

    // One listing of each kind for all option sets, while everything runs.
    let broker = Broker::read(&vhost).await;

    // The sides' names, and their reply queues: Python's is consumed on a connection of the
    // peer's process, Rust's on the transport's connection, which consumes the topic queue.
    let mut sides = Vec::new();
    for r in &running {
        let python_replies = broker.reply_queues_on(&broker.connections_of_process(r.peer_pid));
        let rust_connections = broker.connections_consuming(&r.rust_topic);
        let rust_replies = broker.reply_queues_on(&rust_connections);
        sides.push((r.options, rust_connections, python_replies, rust_replies));
    }

    // Clean up before asserting, so that a failure leaves nothing running.
    let mut queues: Vec<String> = sides
        .iter()
        .flat_map(|(_, _, python, rust)| python.iter().chain(rust).cloned())
        .collect();
    let mut exchanges = Vec::new();
    let mut names = Vec::new();
    let stopping = running.into_iter().map(|r| {
        leftovers(
            &r.python_topic,
            &r.python_exchange,
            &[SERVER],
            &mut queues,
            &mut exchanges,
        );
        leftovers(
            &r.rust_topic,
            &r.rust_exchange,
            &[SERVER],
            &mut queues,
            &mut exchanges,
        );
        names.push((
            r.python_topic,
            r.python_exchange,
            r.rust_topic,
            r.rust_exchange,
        ));
        async move {
            r.server.stop().await;
            r.transport.close().await;
            r.peer.quit().await;
        }
    });
    join_all(stopping.collect::<Vec<_>>()).await;
    delete_entities(&base, &queues, &exchanges).await;

    let mut observed = Vec::new();
    for ((options, rust_connections, python_replies, rust_replies), names) in
        sides.into_iter().zip(names)
    {
        let (python_topic, python_exchange, rust_topic, rust_exchange) = names;
        assert_eq!(
            rust_connections.len(),
            1,
            "{}: the Rust server's topic queue is consumed on one connection",
            options.name
        );
        let only = |replies: BTreeSet<String>, who: &str| -> String {
            assert_eq!(
                replies.len(),
                1,
                "{}: {who} consumes exactly one reply queue: {replies:?}",
                options.name
            );
            let reply = replies.into_iter().next().unwrap();
            assert!(
                reply.strip_prefix("reply_").is_some_and(is_uuid_hex),
                "{}: {who} reply queue name {reply}",
                options.name
            );
            reply
        };
        let python = Side {
            topic: python_topic,
            exchange: python_exchange,
            reply_queue: only(python_replies, "Python"),
            pool: None,
        };
        let rust = Side {
            topic: rust_topic,
            exchange: rust_exchange,
            reply_queue: only(rust_replies, "Rust"),
            pool: None,
        };
        observed.push((options, broker.topology(&python), broker.topology(&rust)));
    }

    for (options, python, rust) in &observed {
        eprintln!(
            "{} (Python):\n{python}{} (Rust):\n{rust}",
            options.name, options.name
        );
    }
    for (options, python, rust) in &observed {
        assert_eq!(
            python, rust,
            "{}: Python and Rust declare different topologies\nPython:\n{python}Rust:\n{rust}",
            options.name
        );
    }
    // The spec's table, so that both sides being equally wrong cannot pass.
    for (options, python, rust) in &observed {
        let spec = spec_topology(options);
        assert_eq!(
            *python, spec,
            "{}: Python's topology is not the spec's\nPython:\n{python}spec:\n{spec}",
            options.name
        );
        assert_eq!(
            *rust, spec,
            "{}: Rust's topology is not the spec's\nRust:\n{rust}spec:\n{spec}",
            options.name
        );
    }
    // A few facts of spec §2.1 spelled out, for both sides.
    let (options, python, rust) = &observed[0];
    assert_eq!(options.name, "defaults");
    for topology in [python, rust] {
        for exchange in [
            // The control exchange: topic, neither durable nor auto-delete.
            "<exchange> type=topic durable=false auto_delete=false internal=false args=[]",
            // The fanout exchange: auto-delete.
            "<topic>_fanout type=fanout durable=false auto_delete=true internal=false args=[]",
        ] {
            assert!(
                topology.exchanges.contains(exchange),
                "{exchange} in\n{topology}"
            );
        }
        for queue in [
            // Topic and server queues: no arguments (no x-expires).
            "<topic> type=classic durable=false auto_delete=false exclusive=false args=[]",
            "<topic>.srv type=classic durable=false auto_delete=false exclusive=false args=[]",
            // Reply and fanout queues: x-expires 1800 s, as a signed 32-bit integer.
            "reply_<hex> type=classic durable=false auto_delete=false exclusive=false args=[x-expires:signedint=1800000]",
            "<topic>_fanout_<hex> type=classic durable=false auto_delete=false exclusive=false args=[x-expires:signedint=1800000]",
        ] {
            assert!(topology.queues.contains(queue), "{queue} in\n{topology}");
        }
        // The fanout queue is bound with the topic as its key; the reply queue to the
        // default exchange only.
        assert!(
            topology
                .bindings
                .contains("<topic>_fanout -> queue <topic>_fanout_<hex> key=<topic> args=[]")
        );
        assert!(
            !topology
                .bindings
                .iter()
                .any(|b| b.contains("-> queue reply_<hex>") && !b.starts_with("(default)")),
            "a reply queue is bound to the default exchange only:\n{topology}"
        );
    }
}

/// A Python server and a Rust server on one topic and control exchange, and the Python
/// peer's pid.
struct Fleet {
    peer: PythonPeer,
    peer_pid: u64,
    transport: Transport,
    server: RpcServer,
    topic: String,
    exchange: String,
}

impl Fleet {
    /// Notes the queues and exchanges this fleet leaves behind, with the reply queues of the
    /// peer and of the transport found on `broker`.
    fn leftovers(&self, broker: &Broker, queues: &mut Vec<String>, exchanges: &mut Vec<String>) {
        let mut connections = broker.connections_of_process(self.peer_pid);
        connections.extend(broker.connections_consuming(&format!("{}.rs", self.topic)));
        queues.extend(broker.reply_queues_on(&connections));
        leftovers(
            &self.topic,
            &self.exchange,
            &["py", "rs"],
            queues,
            exchanges,
        );
    }

    async fn stop(self) {
        self.server.stop().await;
        self.transport.close().await;
        self.peer.quit().await;
    }
}

async fn peer_pid(peer: &PythonPeer) -> u64 {
    let info = peer.request(json!({"cmd": "info"})).await.unwrap();
    info["pid"].as_u64().expect("peer pid")
}

/// A Python server declares first, then a Rust server (`rs`) with the same options joins it
/// on the same topic and control exchange; Python calls both.
async fn rust_joins_python(base: &str, options: Options) -> Fleet {
    let exchange = unique(&format!("fleet-{}-x", options.name));
    let topic = unique(&format!("fleet-{}-py-first", options.name));
    let url = url_for(base, &options, &exchange);
    let peer = PythonPeer::start(&url).await;
    peer.serve(&topic, "py").await;
    let transport = Transport::from_url(&url).await.unwrap();
    let server = start_rust_server(&transport, &topic, "rs")
        .await
        .unwrap_or_else(|e| {
            panic!(
                "{}: a Rust server joining Python's declarations failed to start: {e}",
                options.name
            )
        });
    for name in ["rs", "py"] {
        assert_eq!(
            python_whoami(&peer, &topic, Some(name)).await,
            Ok(json!(name)),
            "{}: Python calls server {name} (Python declared first)",
            options.name
        );
    }
    Fleet {
        peer_pid: peer_pid(&peer).await,
        peer,
        transport,
        server,
        topic,
        exchange,
    }
}

/// A Rust server (`rs`) declares first, then a Python server with the same options joins it
/// on the same topic and control exchange; Rust calls both.
async fn python_joins_rust(base: &str, options: Options) -> Fleet {
    let exchange = unique(&format!("fleet-{}-x", options.name));
    let topic = unique(&format!("fleet-{}-rs-first", options.name));
    let url = url_for(base, &options, &exchange);
    let transport = Transport::from_url(&url).await.unwrap();
    let server = start_rust_server(&transport, &topic, "rs")
        .await
        .unwrap_or_else(|e| panic!("{}: Rust server declaring first: {e}", options.name));
    let peer = PythonPeer::start(&url).await;
    peer.serve(&topic, "py").await;
    let client = TopoClient::new(&transport, topic.clone()).with_timeout(START);
    for name in ["py", "rs"] {
        assert_eq!(
            client.with_server(name).whoami().await.unwrap(),
            name,
            "{}: Rust calls server {name} (Rust declared first)",
            options.name
        );
    }
    Fleet {
        peer_pid: peer_pid(&peer).await,
        peer,
        transport,
        server,
        topic,
        exchange,
    }
}

/// A Rust server whose declarations are inequivalent to the Python fleet's on `topic` and
/// `exchange` fails to start, promptly, with the broker's PRECONDITION_FAILED.
async fn expect_inequivalent(
    base: &str,
    rust_options: &Options,
    topic: &str,
    exchange: &str,
    argument: &str,
) {
    let transport = Transport::from_url(&url_for(base, rust_options, exchange))
        .await
        .unwrap();
    let started = start_rust_server(&transport, topic, "rs-wrong").await;
    transport.close().await;
    let error = match started {
        Ok(server) => {
            server.stop().await;
            panic!(
                "a Rust server with {} options started on a fleet it is inequivalent to",
                rust_options.name
            );
        }
        Err(e) => e.to_string(),
    };
    eprintln!("inequivalent {argument}: {error}");
    assert!(
        error.contains("PRECONDITION_FAILED") || error.contains("PRECONDITION-FAILED"),
        "the error names PRECONDITION_FAILED: {error}"
    );
    assert!(
        error.contains(&format!("inequivalent arg '{argument}'")),
        "the error names the inequivalent {argument}: {error}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn rust_joins_a_python_fleet_without_precondition_failed() {
    let base = test_broker!();
    let vhost = vhost(&base);
    let (durable, durable_rust_first, quorum, quorum_rust_first) = tokio::join!(
        rust_joins_python(&base, DURABLE),
        python_joins_rust(&base, DURABLE),
        rust_joins_python(&base, QUORUM),
        python_joins_rust(&base, QUORUM),
    );

    // Negative controls, on the fleets Python declared first: the test does see a mismatch.
    // Non-durable against a durable control exchange (the exchange declaration fails) ...
    expect_inequivalent(
        &base,
        &DEFAULTS,
        &durable.topic,
        &durable.exchange,
        "durable",
    )
    .await;
    // ... and classic durable against quorum queues (the exchange matches, the queue fails).
    expect_inequivalent(
        &base,
        &DURABLE,
        &quorum.topic,
        &quorum.exchange,
        "x-queue-type",
    )
    .await;
    // The fleets were not disturbed.
    for fleet in [&durable, &quorum] {
        for name in ["py", "rs"] {
            assert_eq!(
                python_whoami(&fleet.peer, &fleet.topic, Some(name)).await,
                Ok(json!(name))
            );
        }
    }

    // Clean up, reply queues included.
    let broker = Broker::read(&vhost).await;
    let (mut queues, mut exchanges) = (Vec::new(), Vec::new());
    let fleets = [durable, durable_rust_first, quorum, quorum_rust_first];
    for fleet in &fleets {
        fleet.leftovers(&broker, &mut queues, &mut exchanges);
    }
    join_all(fleets.map(Fleet::stop)).await;
    delete_entities(&base, &queues, &exchanges).await;
}

// ---------------------------------------------------------------------------------------------
// Notifications (spec §5): what a notifier and its listeners declare
// ---------------------------------------------------------------------------------------------

/// What one side of [`notification_topology_of_both`] declared, to compare and clean up.
struct NotifySide {
    side: Side,
    queues: Vec<String>,
}

/// The names of a side's notification entities: its control exchange, topic and pool.
fn notify_side(tag: &str, lang: &str) -> Side {
    Side {
        topic: unique(&format!("ntopo-{tag}-{lang}")),
        exchange: unique(&format!("ntopo-{tag}-{lang}x")),
        // No reply queue: a name no entity has.
        reply_queue: "\u{0}".to_owned(),
        pool: Some(unique(&format!("ntopo-{tag}-{lang}pool"))),
    }
}

impl NotifySide {
    fn new(side: Side) -> NotifySide {
        let pool = side.pool.clone().unwrap_or_default();
        let queues = ["error", "info", "warn"]
            .iter()
            .map(|p| format!("{}.{p}", side.topic))
            .chain([pool])
            .collect();
        NotifySide { side, queues }
    }
}

/// On each side, for `options`: a notifier sends an ERROR notification (declaring its queue),
/// a listener takes INFO and WARN of the topic, and a pooled listener INFO; everything on the
/// side's own control exchange. Returns both sides' names, the peer and the Rust listeners.
async fn notification_topology_of_both(
    base: &str,
    options: Options,
) -> (
    NotifySide,
    NotifySide,
    PythonPeer,
    Transport,
    Vec<amqp_rpc::notify::NotificationListener>,
) {
    use amqp_rpc::notify::{Incoming, NotificationListener, Notifier, Priority, Typed};
    let tag = options.name.replace('_', "-");
    let (python, rust) = (notify_side(&tag, "py"), notify_side(&tag, "rs"));

    let peer = PythonPeer::start(&url_for(base, &options, &python.exchange)).await;
    peer.notify(&python.topic, "error", "e", json!({}), json!({}))
        .await;
    peer.listen(
        "plain",
        &[(None, &python.topic)],
        &["info", "warn"],
        json!({}),
    )
    .await;
    peer.listen(
        "pooled",
        &[(None, &python.topic)],
        &["info"],
        json!({"pool": python.pool}),
    )
    .await;

    let transport = Transport::from_url(&url_for(base, &options, &rust.exchange))
        .await
        .unwrap();
    Notifier::new(&transport, "compute")
        .with_topics([&rust.topic])
        .notify(&amqp_rpc::Context::new(), Priority::Error, "e", &json!({}))
        .await
        .unwrap();
    let any = |priorities: &[Priority]| {
        let priorities = priorities
            .iter()
            .copied()
            .collect::<amqp_rpc::notify::Priorities>();
        Typed::<Value, _>::any_event(priorities, |_: Incoming<Value>| async {})
    };
    let plain = NotificationListener::builder(&transport)
        .topic(&rust.topic)
        .endpoint(any(&[Priority::Info, Priority::Warn]))
        .build()
        .unwrap();
    let pooled = NotificationListener::builder(&transport)
        .topic(&rust.topic)
        .pool(rust.pool.clone().unwrap_or_default())
        .endpoint(any(&[Priority::Info]))
        .build()
        .unwrap();
    for listener in [&plain, &pooled] {
        tokio::time::timeout(START, listener.start())
            .await
            .unwrap_or_else(|_| panic!("{}: starting a Rust listener hung", options.name))
            .unwrap_or_else(|e| panic!("{}: Rust listener: {e}", options.name));
    }
    (
        NotifySide::new(python),
        NotifySide::new(rust),
        peer,
        transport,
        vec![plain, pooled],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn rust_and_python_declare_the_same_notification_topology() {
    let base = test_broker!();
    let vhost = vhost(&base);
    let base = base.as_str();
    let running = join_all(OPTION_SETS.map(|options| async move {
        (options, notification_topology_of_both(base, options).await)
    }))
    .await;
    let broker = Broker::read(&vhost).await;

    // Clean up before asserting, so that a failure leaves nothing behind.
    let mut observed = Vec::new();
    let (mut queues, mut exchanges) = (Vec::new(), Vec::new());
    for (options, (python, rust, peer, transport, listeners)) in running {
        observed.push((
            options,
            broker.topology(&python.side),
            broker.topology(&rust.side),
        ));
        for listener in &listeners {
            listener.stop().await;
        }
        transport.close().await;
        peer.quit().await;
        for side in [python, rust] {
            queues.extend(side.queues);
            exchanges.push(side.side.exchange);
        }
    }
    delete_entities(base, &queues, &exchanges).await;

    for (options, python, rust) in observed {
        assert_eq!(
            rust, python,
            "{}: the Rust notifier and listeners declared\n{rust}\nPython's declared\n{python}",
            options.name
        );
        // Not vacuous: the side's queues and bindings are there.
        for queue in [
            "<topic>.error ",
            "<topic>.info ",
            "<topic>.warn ",
            "<pool> ",
        ] {
            assert!(
                rust.queues.iter().any(|q| q.starts_with(queue)),
                "{}: {queue} in\n{rust}",
                options.name
            );
        }
        assert!(
            rust.bindings
                .iter()
                .any(|b| b.starts_with("<exchange> -> queue <pool> key=<topic>.info")),
            "{}: the pool is bound to the topic's info key:\n{rust}",
            options.name
        );
    }
}
