//! RPC semantics on the in-memory broker: routing (round-robin, directed, fanout), dispatch and
//! version rules, errors, call monitoring, and the oslo wire format as raw peers see it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use amqp_rpc::driver::memory::MemoryDriver;
use amqp_rpc::driver::{Destination, PublishOptions, Subscription};
use amqp_rpc::{
    APPLICATION_ERROR_MODULE, CallError, Context, Endpoint, PING_METHOD, RemoteError, Returned,
    RpcClient, RpcError, RpcServer, ServerConfig, Target, Transport, Version, async_trait,
    rpc_client, rpc_endpoint, wire,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
// Timing tests run on tokio's paused clock: sleeps take no wall time and bounds are exact.
use tokio::time::Instant;

use crate::common;
use common::{ANSWER, QUIET, expect_events, serve, serve_with};

fn v(text: &str) -> Version {
    text.parse().unwrap()
}

/// A typed application error, as a service would define it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CalcError {
    DivisionByZero { dividend: i64 },
    Overflow,
}

impl fmt::Display for CalcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CalcError::DivisionByZero { dividend } => write!(f, "cannot divide {dividend} by 0"),
            CalcError::Overflow => write!(f, "overflow"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------------------------

/// The service most tests use: the default namespace, version 1.0.
#[rpc_endpoint]
#[rpc_client]
trait Probe {
    /// The label of the server that answered.
    async fn whoami(&self) -> String;
    /// `text` back.
    async fn echo(&self, text: Option<String>) -> Option<String>;
    /// The context the method received.
    async fn context(&self, ctx: &Context) -> Context;
    /// `x / y`, with a typed error for `y == 0`.
    async fn divide(&self, x: i64, y: i64) -> Result<i64, CalcError>;
    /// Sleeps `ms` milliseconds, reports `"<label>:sleep:done"` and returns the label.
    async fn sleep(&self, ms: u64) -> String;
    /// Only reports.
    #[rpc(cast)]
    async fn record(&self);
}

/// The implementation of every generated endpoint here: it counts its dispatches, reports each
/// one as `"<label>:<method>"` on an optional channel, and answers with its label.
#[derive(Clone)]
struct Agent {
    label: String,
    calls: Arc<AtomicUsize>,
    events: Option<mpsc::UnboundedSender<String>>,
}

impl Agent {
    fn new(label: &str) -> Agent {
        Agent {
            label: label.to_owned(),
            calls: Arc::default(),
            events: None,
        }
    }

    fn reporting_to(mut self, events: &mpsc::UnboundedSender<String>) -> Agent {
        self.events = Some(events.clone());
        self
    }

    fn calls(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.calls)
    }

    /// Served as a [`Probe`].
    fn probe(self) -> Arc<dyn Endpoint> {
        Arc::new(ProbeEndpoint::new(self))
    }

    fn report(&self, event: String) {
        if let Some(events) = &self.events {
            // The test may have stopped listening; that is fine.
            drop(events.send(event));
        }
    }

    /// Counts and reports a dispatch of `method`; returns the label.
    fn enter(&self, method: &str) -> String {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.report(format!("{}:{method}", self.label));
        self.label.clone()
    }
}

impl Probe for Agent {
    async fn whoami(&self) -> String {
        self.enter("whoami")
    }

    async fn echo(&self, text: Option<String>) -> Option<String> {
        self.enter("echo");
        text
    }

    async fn context(&self, ctx: &Context) -> Context {
        self.enter("context");
        ctx.clone()
    }

    async fn divide(&self, x: i64, y: i64) -> Result<i64, CalcError> {
        self.enter("divide");
        match y {
            0 => Err(CalcError::DivisionByZero { dividend: x }),
            y => Ok(x / y),
        }
    }

    async fn sleep(&self, ms: u64) -> String {
        self.enter("sleep");
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.report(format!("{}:sleep:done", self.label));
        self.label.clone()
    }

    async fn record(&self) {
        self.enter("record");
    }
}

/// Namespace "calc" at 1.3: `add` and `whoami` answer with the agent's label.
#[rpc_endpoint(namespace = "calc", version = "1.3")]
trait Calc13 {
    async fn add(&self) -> String;
    async fn whoami(&self) -> String;
}

/// Namespace "calc" at 1.3.1.
#[rpc_endpoint(namespace = "calc", version = "1.3.1")]
trait Calc131 {
    async fn add(&self) -> String;
}

/// Namespace "calc" at 2.0.
#[rpc_endpoint(namespace = "calc", version = "2.0")]
trait Calc20 {
    async fn add(&self) -> String;
}

/// The default namespace at 1.0, with only `add`.
#[rpc_endpoint]
trait Default10 {
    async fn add(&self) -> String;
}

/// Namespace "ns" at 1.0, with only `other`.
#[rpc_endpoint(namespace = "ns")]
#[rpc_client]
trait NsLacking {
    async fn other(&self) -> String;
}

impl Calc13 for Agent {
    async fn add(&self) -> String {
        self.enter("add")
    }

    async fn whoami(&self) -> String {
        self.enter("whoami")
    }
}

impl Calc131 for Agent {
    async fn add(&self) -> String {
        self.enter("add")
    }
}

impl Calc20 for Agent {
    async fn add(&self) -> String {
        self.enter("add")
    }
}

impl Default10 for Agent {
    async fn add(&self) -> String {
        self.enter("add")
    }
}

impl NsLacking for Agent {
    async fn other(&self) -> String {
        self.enter("other")
    }
}

/// Namespace "ns" at three versions, with typed clients: `whoami` sends 1.0, 1.2 and 2.0.
#[rpc_endpoint(namespace = "ns")]
#[rpc_client]
trait Ns10 {
    async fn whoami(&self) -> String;
}

#[rpc_endpoint(namespace = "ns", version = "1.5")]
#[rpc_client]
trait Ns15 {
    #[rpc(since = "1.2")]
    async fn whoami(&self) -> String;
}

#[rpc_endpoint(namespace = "ns", version = "2.1")]
#[rpc_client]
trait Ns21 {
    async fn whoami(&self) -> String;
}

impl Ns10 for Agent {
    async fn whoami(&self) -> String {
        self.enter("whoami")
    }
}

impl Ns15 for Agent {
    async fn whoami(&self) -> String {
        self.enter("whoami")
    }
}

impl Ns21 for Agent {
    async fn whoami(&self) -> String {
        self.enter("whoami")
    }
}

/// What newer clients of namespace "calc" call: `sub` (since 1.1), and a 2.0 API.
#[rpc_client(namespace = "calc", version = "1.3")]
#[allow(dead_code)] // A client-only trait is never implemented.
trait CalcWithSub {
    #[rpc(since = "1.1")]
    async fn sub(&self) -> String;
}

#[rpc_client(namespace = "calc", version = "2.0")]
#[allow(dead_code)] // A client-only trait is never implemented.
trait CalcV2 {
    async fn add(&self) -> String;
    async fn sub(&self) -> String;
}

/// A service defining oslo's ping method itself.
#[rpc_endpoint]
#[rpc_client]
trait OwnPing {
    async fn oslo_rpc_server_ping(&self) -> String;
}

impl OwnPing for Agent {
    async fn oslo_rpc_server_ping(&self) -> String {
        self.enter(PING_METHOD)
    }
}

/// Version 1.9, whose methods were added in 1.5 (`whoami`, `record`) and 1.3 (`note`).
#[rpc_endpoint(version = "1.9")]
#[rpc_client]
trait Capped {
    #[rpc(since = "1.5")]
    async fn whoami(&self) -> String;
    #[rpc(cast, since = "1.5")]
    async fn record(&self);
    #[rpc(cast, since = "1.3")]
    async fn note(&self);
}

impl Capped for Agent {
    async fn whoami(&self) -> String {
        self.enter("whoami")
    }

    async fn record(&self) {
        self.enter("record");
    }

    async fn note(&self) {
        self.enter("note");
    }
}

/// A hand-written endpoint, as code written before the macros: `fail` raises Python's
/// `ValueError("bad")` (which no trait method can), `shout` upper-cases `text`.
#[derive(Default)]
struct Legacy {
    calls: AtomicUsize,
}

#[async_trait]
impl Endpoint for Legacy {
    fn has_method(&self, method: &str) -> bool {
        matches!(method, "fail" | "shout")
    }

    async fn dispatch(
        &self,
        _ctx: Context,
        method: &str,
        args: Map<String, Value>,
    ) -> Result<Returned, RemoteError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match (method, args.get("text").and_then(Value::as_str)) {
            ("shout", Some(text)) => Ok(Returned::from(json!(text.to_uppercase()))),
            ("shout", None) => Err(RemoteError::builtin("TypeError", "shout() needs text")),
            _ => Err(RemoteError::builtin("ValueError", "bad")),
        }
    }
}

/// The typed view of [`Legacy`].
#[rpc_client]
#[allow(dead_code)] // A client-only trait is never implemented.
trait LegacyApi {
    async fn shout(&self, text: String) -> String;
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Servers `s1`, `s2`, `s3` on topic `T`, each answering with its name and, if `events` is
/// given, reporting what it ran there.
async fn three_servers(
    transport: &Transport,
    events: Option<&mpsc::UnboundedSender<String>>,
) -> Vec<RpcServer> {
    let mut servers = Vec::new();
    for name in ["s1", "s2", "s3"] {
        let agent = match events {
            Some(tx) => Agent::new(name).reporting_to(tx),
            None => Agent::new(name),
        };
        servers.push(serve(transport, "T", name, vec![agent.probe()]).await);
    }
    servers
}

/// `endpoint`, as a server takes it.
fn arc(endpoint: impl Endpoint) -> Arc<dyn Endpoint> {
    Arc::new(endpoint)
}

/// A typed client of `topic` that gives up after [`ANSWER`].
fn probe(transport: &Transport, topic: &str) -> ProbeClient {
    ProbeClient::new(transport, topic).with_timeout(ANSWER)
}

/// A dynamic client of `topic` that gives up after [`ANSWER`].
fn client(transport: &Transport, topic: &str) -> RpcClient {
    RpcClient::new(transport, Target::new(topic)).with_timeout(ANSWER)
}

async fn call_method(client: &RpcClient, method: &str) -> Result<String, RpcError> {
    client.call(&Context::new(), method, ()).await
}

/// A peer speaking the wire format by hand: publishes raw bodies and reads its own reply queue.
struct RawPeer {
    transport: Transport,
    reply_q: String,
    replies: Box<dyn Subscription>,
}

impl RawPeer {
    async fn new(transport: &Transport) -> RawPeer {
        let queue = transport.driver().listen_replies().await.unwrap();
        RawPeer {
            transport: transport.clone(),
            reply_q: queue.name,
            replies: queue.subscription,
        }
    }

    async fn publish_bytes(&self, topic: &str, body: Vec<u8>) {
        let to = Destination::Rpc {
            exchange: None,
            topic,
            server: None,
        };
        let driver = self.transport.driver();
        let sent = driver.publish(to, body.into(), PublishOptions::default());
        sent.await.unwrap();
    }

    /// Publishes `inner` in the 2.0 envelope.
    async fn publish(&self, topic: &str, inner: &Value) {
        self.publish_bytes(topic, wire::seal(&inner.to_string()))
            .await;
    }

    /// The inner message of a call of `method` (no args) answered to this peer.
    fn call_request(&self, msg_id: &str, method: &str) -> Value {
        json!({
            "method": method,
            "args": {},
            "_msg_id": msg_id,
            "_reply_q": self.reply_q,
            "_timeout": null,
            "_unique_id": format!("u-{msg_id}"),
        })
    }

    /// The next reply within `wait`: the outer JSON body and the opened inner message.
    async fn reply(&mut self, wait: Duration) -> Option<(Value, Map<String, Value>)> {
        let delivery = tokio::time::timeout(wait, self.replies.next())
            .await
            .ok()?
            .unwrap();
        let outer: Value = serde_json::from_slice(&delivery.body).unwrap();
        let inner = wire::open(&delivery.body).unwrap();
        delivery.acker.ack().await.unwrap();
        Some((outer, inner))
    }

    async fn expect_reply(&mut self) -> Map<String, Value> {
        self.reply(ANSWER).await.expect("a reply").1
    }
}

fn is_uuid_hex(text: &str) -> bool {
    text.len() == 32 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn sorted_keys(map: &Map<String, Value>) -> Vec<&str> {
    let mut keys: Vec<&str> = map.keys().map(String::as_str).collect();
    keys.sort_unstable();
    keys
}

/// The failure object of a failure reply, whose `failure` must be a JSON string.
fn failure_of(reply: &Map<String, Value>) -> Map<String, Value> {
    let text = reply["failure"]
        .as_str()
        .unwrap_or_else(|| panic!("failure is not a JSON string: {reply:?}"));
    match serde_json::from_str(text) {
        Ok(Value::Object(failure)) => failure,
        other => panic!("failure string is not a JSON object: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Routing
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn calls_to_a_topic_are_spread_round_robin_across_three_servers() {
    let transport = Transport::memory();
    let _servers = three_servers(&transport, None).await;
    let client = probe(&transport, "T");
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..30 {
        *answers.entry(client.whoami().await.unwrap()).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> = [("s1", 10), ("s2", 10), ("s3", 10)]
        .into_iter()
        .map(|(s, n)| (s.to_owned(), n))
        .collect();
    assert_eq!(answers, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_to_a_named_server_reaches_only_that_server() {
    let transport = Transport::memory();
    let _servers = three_servers(&transport, None).await;
    let directed = probe(&transport, "T").with_server("s2");
    for _ in 0..10 {
        assert_eq!(directed.whoami().await.unwrap(), "s2");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_cast_reaches_every_server() {
    let transport = Transport::memory();
    let (tx, mut events) = mpsc::unbounded_channel();
    let _servers = three_servers(&transport, Some(&tx)).await;
    probe(&transport, "T").fanout().record().await.unwrap();
    let mut got = expect_events(&mut events, 3).await;
    got.sort();
    assert_eq!(got, ["s1:record", "s2:record", "s3:record"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cast_to_topic_reaches_exactly_one_server() {
    let transport = Transport::memory();
    let (tx, mut events) = mpsc::unbounded_channel();
    let _servers = three_servers(&transport, Some(&tx)).await;
    let client = probe(&transport, "T");
    client.record().await.unwrap();
    assert_eq!(expect_events(&mut events, 1).await.len(), 1);
    // Three more casts: three deliveries in all (not nine), one per server.
    for _ in 0..3 {
        client.record().await.unwrap();
    }
    let mut got = expect_events(&mut events, 3).await;
    got.sort();
    assert_eq!(got, ["s1:record", "s2:record", "s3:record"]);
}

#[tokio::test(start_paused = true)]
async fn cast_gets_no_reply() {
    let driver = MemoryDriver::private();
    let transport = Transport::from_driver(Arc::new(driver.clone()));
    let (tx, mut events) = mpsc::unbounded_channel();
    let agent = Agent::new("s1").reporting_to(&tx);
    let _server = serve(&transport, "T", "s1", vec![agent.probe()]).await;
    let client = probe(&transport, "T");
    // Any method can be cast (oslo's `cast`), not only those declared `#[rpc(cast)]`.
    let dynamic = client.rpc_client();

    // A cast returns as soon as it is published, while the method still runs.
    let started = Instant::now();
    let sent = dynamic
        .cast(&Context::new(), "sleep", json!({"ms": 500}))
        .await;
    assert!(sent.is_ok(), "{sent:?}");
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "cast waited for the method"
    );
    // A cast of a failing method succeeds too: nobody hears of the failure.
    let sent = dynamic
        .cast(&Context::new(), "divide", json!({"x": 1, "y": 0}))
        .await;
    assert!(sent.is_ok(), "{sent:?}");
    let sent = client.record().await;
    assert!(sent.is_ok(), "{sent:?}");
    let mut got = expect_events(&mut events, 4).await;
    got.sort();
    assert_eq!(got, ["s1:divide", "s1:record", "s1:sleep", "s1:sleep:done"]);
    // Casting never needed a reply queue.
    let reply_queues: Vec<String> = driver
        .queue_names()
        .into_iter()
        .filter(|q| q.starts_with("reply_"))
        .collect();
    assert!(reply_queues.is_empty(), "{reply_queues:?}");

    // A request with a reply queue but no `_msg_id` is a cast: it runs and is not answered.
    let mut peer = RawPeer::new(&transport).await;
    let mut cast = peer.call_request("unused", "record");
    cast.as_object_mut().unwrap().remove("_msg_id");
    peer.publish("T", &cast).await;
    assert_eq!(expect_events(&mut events, 1).await, ["s1:record"]);
    assert!(peer.reply(QUIET).await.is_none(), "a cast was answered");
}

// ---------------------------------------------------------------------------------------------
// Dispatch: namespaces, versions, methods
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
enum Expect {
    /// Answered by the server whose label is the topic.
    Served,
    /// Refused with UnsupportedVersion showing this version.
    Refused(&'static str),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespace_and_version_matrix_follows_oslo_rules() {
    let transport = Transport::memory();
    // One server per endpoint, on the topic named after it; `add` answers with the topic.
    let endpoints = [
        (
            "v13",
            Some("calc"),
            "1.3",
            arc(Calc13Endpoint::new(Agent::new("v13"))),
        ),
        (
            "v131",
            Some("calc"),
            "1.3.1",
            arc(Calc131Endpoint::new(Agent::new("v131"))),
        ),
        (
            "v20",
            Some("calc"),
            "2.0",
            arc(Calc20Endpoint::new(Agent::new("v20"))),
        ),
        (
            "vdefault",
            None,
            "1.0",
            arc(Default10Endpoint::new(Agent::new("vdefault"))),
        ),
    ];
    let mut servers = Vec::new();
    for (topic, namespace, version, endpoint) in endpoints {
        assert_eq!(
            (endpoint.namespace(), endpoint.version()),
            (namespace, v(version))
        );
        servers.push(serve(&transport, topic, "s1", vec![endpoint]).await);
    }
    use Expect::{Refused, Served};
    let cases: [(&str, Option<&str>, Option<&str>, Expect); 24] = [
        ("v13", Some("calc"), Some("1.0"), Served),
        ("v13", Some("calc"), Some("1.2"), Served),
        ("v13", Some("calc"), Some("1.3"), Served),
        ("v13", Some("calc"), Some("1.3.0"), Served),
        ("v13", Some("calc"), Some("1.2.9"), Served),
        ("v13", Some("calc"), None, Served),
        ("v13", Some("calc"), Some("1.4"), Refused("1.4")),
        ("v13", Some("calc"), Some("2.0"), Refused("2.0")),
        ("v13", Some("calc"), Some("1.3.1"), Refused("1.3.1")),
        ("v13", Some("calc"), Some("0.9"), Refused("0.9")),
        ("v131", Some("calc"), Some("1.3.1"), Served),
        ("v131", Some("calc"), Some("1.3"), Served),
        ("v131", Some("calc"), Some("1.3.2"), Refused("1.3.2")),
        ("v131", Some("calc"), Some("1.4"), Refused("1.4")),
        ("v20", Some("calc"), Some("2.0"), Served),
        ("v20", Some("calc"), None, Refused("1.0")),
        ("v20", Some("calc"), Some("1.3"), Refused("1.3")),
        ("vdefault", None, None, Served),
        ("vdefault", None, Some("1.0"), Served),
        ("vdefault", None, Some("1.0.1"), Refused("1.0.1")),
        // Namespaces must match exactly, and no namespace is a namespace of its own.
        ("v13", Some("other"), Some("1.0"), Refused("1.0")),
        ("v13", None, Some("1.0"), Refused("1.0")),
        ("v13", None, None, Refused("1.0")),
        ("vdefault", Some("calc"), None, Refused("1.0")),
    ];
    for (topic, namespace, version, expect) in cases {
        let mut c = client(&transport, topic);
        if let Some(namespace) = namespace {
            c = c.with_namespace(namespace);
        }
        if let Some(version) = version {
            c = c.with_version(v(version));
        }
        let got = call_method(&c, "add").await;
        let case = format!("{topic} namespace={namespace:?} version={version:?}: {got:?}");
        match expect {
            Served => assert_eq!(got.as_deref().ok(), Some(topic), "{case}"),
            Refused(shown) => assert!(
                matches!(&got, Err(RpcError::UnsupportedVersion { version, method })
                    if version == shown && method == "add"),
                "{case}"
            ),
        }
    }

    let refused = call_method(
        &client(&transport, "v13")
            .with_namespace("calc")
            .with_version(v("1.4")),
        "add",
    )
    .await
    .unwrap_err();
    assert!(refused.is_unsupported_version());
    assert_eq!(
        refused.to_string(),
        "Endpoint does not support RPC version 1.4. Attempted method: add"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explicit_null_version_is_refused_as_version_none() {
    let transport = Transport::memory();
    let calc = Agent::new("calc");
    let plain = Agent::new("plain");
    let (calc_calls, plain_calls) = (calc.calls(), plain.calls());
    let _calc = serve(
        &transport,
        "calc",
        "s1",
        vec![arc(Calc13Endpoint::new(calc))],
    )
    .await;
    let _plain = serve(&transport, "plain", "s1", vec![plain.probe()]).await;
    let mut peer = RawPeer::new(&transport).await;

    for (topic, namespace) in [("calc", Some("calc")), ("plain", None)] {
        let mut request = peer.call_request(&format!("null-{topic}"), "whoami");
        request["version"] = Value::Null;
        if let Some(namespace) = namespace {
            request["namespace"] = json!(namespace);
        }
        peer.publish(topic, &request).await;
        let reply = peer.expect_reply().await;
        let failure = failure_of(&reply);
        assert_eq!(
            failure["class"], "UnsupportedVersion",
            "{topic}: {failure:?}"
        );
        assert_eq!(failure["module"], "oslo_messaging.rpc.dispatcher");
        assert_eq!(
            failure["message"],
            "Endpoint does not support RPC version None. Attempted method: whoami"
        );

        // The same request without the version key is served (absent means 1.0).
        request.as_object_mut().unwrap().remove("version");
        request["_msg_id"] = json!(format!("absent-{topic}"));
        request["_unique_id"] = json!(format!("u-absent-{topic}"));
        peer.publish(topic, &request).await;
        let reply = peer.expect_reply().await;
        assert_eq!(reply["failure"], Value::Null, "{reply:?}");
        assert_eq!(reply["result"], json!(topic));
    }
    assert_eq!(calc_calls.load(Ordering::SeqCst), 1);
    assert_eq!(plain_calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_such_method_vs_unsupported_version() {
    let transport = Transport::memory();
    let calc = arc(Calc13Endpoint::new(Agent::new("calc")));
    let _calc = serve(&transport, "calc", "s1", vec![calc]).await;

    // `sub`, added in 1.1 by a newer release, is unknown to this 1.3 server.
    let newer = CalcWithSubClient::new(&transport, "calc").with_timeout(ANSWER);
    let err = newer.sub().await.unwrap_err();
    assert!(
        matches!(&err, RpcError::NoSuchMethod { method } if method == "sub"),
        "{err:?}"
    );
    assert!(err.is_no_such_method());
    assert_eq!(err.to_string(), "Endpoint does not support RPC method sub");
    let v2 = CalcV2Client::new(&transport, "calc").with_timeout(ANSWER);
    let err = v2.sub().await.unwrap_err();
    assert!(
        matches!(&err, RpcError::UnsupportedVersion { version, method } if version == "2.0" && method == "sub"),
        "{err:?}"
    );
    // The method exists, but the version decides first.
    let err = v2.add().await.unwrap_err();
    assert!(err.is_unsupported_version(), "{err:?}");

    // Two compatible endpoints with the method: the first one answers.
    let first = arc(Ns10Endpoint::new(Agent::new("first")));
    let second = arc(Ns10Endpoint::new(Agent::new("second")));
    let _both = serve(&transport, "both", "s1", vec![first, second]).await;
    let both = Ns10Client::new(&transport, "both").with_timeout(ANSWER);
    for _ in 0..3 {
        assert_eq!(both.whoami().await.unwrap(), "first");
    }

    // An incompatible first endpoint is skipped.
    let old = arc(Ns15Endpoint::new(Agent::new("old")));
    let new = arc(Ns21Endpoint::new(Agent::new("new")));
    let _versions = serve(&transport, "versions", "s1", vec![old, new]).await;
    let at_2_0 = Ns21Client::new(&transport, "versions").with_timeout(ANSWER);
    assert_eq!(at_2_0.whoami().await.unwrap(), "new");
    let at_1_2 = Ns15Client::new(&transport, "versions").with_timeout(ANSWER);
    assert_eq!(at_1_2.whoami().await.unwrap(), "old");

    // A compatible first endpoint without the method is passed over for one that has it.
    let lacking = arc(NsLackingEndpoint::new(Agent::new("lacking")));
    let having = arc(Ns10Endpoint::new(Agent::new("having")));
    let _methods = serve(&transport, "methods", "s1", vec![lacking, having]).await;
    let whoami = Ns10Client::new(&transport, "methods").with_timeout(ANSWER);
    assert_eq!(whoami.whoami().await.unwrap(), "having");
    let other = NsLackingClient::new(&transport, "methods").with_timeout(ANSWER);
    assert_eq!(other.other().await.unwrap(), "lacking");
}

/// An endpoint claiming every method, to show the dispatcher itself refuses `_` names.
struct Secretive {
    dispatched: Arc<AtomicBool>,
}

#[async_trait]
impl Endpoint for Secretive {
    fn has_method(&self, _method: &str) -> bool {
        true
    }

    async fn dispatch(
        &self,
        _ctx: Context,
        method: &str,
        _args: Map<String, Value>,
    ) -> Result<Returned, RemoteError> {
        self.dispatched.store(true, Ordering::SeqCst);
        Ok(Returned::from(json!(method)))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn methods_starting_with_underscore_are_refused() {
    let transport = Transport::memory();
    let dispatched = Arc::new(AtomicBool::new(false));
    let endpoint = Secretive {
        dispatched: Arc::clone(&dispatched),
    };
    let _server = serve(&transport, "T", "s1", vec![Arc::new(endpoint)]).await;
    let client = client(&transport, "T");
    for method in ["_secret", "__init__"] {
        let err = call_method(&client, method).await.unwrap_err();
        assert!(
            matches!(&err, RpcError::NoSuchMethod { method: m } if m == method),
            "{err:?}"
        );
    }
    assert!(
        !dispatched.load(Ordering::SeqCst),
        "an underscore method was dispatched"
    );
    assert_eq!(call_method(&client, "public").await.unwrap(), "public");
    assert!(dispatched.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_is_off_by_default_and_answers_pong_when_enabled() {
    assert_eq!(PING_METHOD, "oslo_rpc_server_ping");
    let transport = Transport::memory();
    let with_ping = ServerConfig::default().with_ping(true);
    // The ping endpoint has no namespace: it answers even when every endpoint has one.
    let namespaced = arc(Calc13Endpoint::new(Agent::new("calc")));
    let _on = serve_with(&transport, "on", "s1", vec![namespaced], with_ping.clone()).await;
    let _off = serve(&transport, "off", "s1", vec![Agent::new("plain").probe()]).await;
    let pinger = |topic: &str| OwnPingClient::new(&transport, topic).with_timeout(ANSWER);

    assert_eq!(pinger("on").oslo_rpc_server_ping().await.unwrap(), "pong");
    let err = pinger("on")
        .with_namespace("calc")
        .oslo_rpc_server_ping()
        .await
        .unwrap_err();
    assert!(
        err.is_no_such_method(),
        "ping is not in namespace calc: {err:?}"
    );
    // A typed client sends its methods' own versions; any other takes a dynamic client.
    let err = call_method(
        &client(&transport, "on").with_version(v("1.1")),
        PING_METHOD,
    )
    .await
    .unwrap_err();
    assert!(err.is_unsupported_version(), "ping is version 1.0: {err:?}");

    let err = pinger("off").oslo_rpc_server_ping().await.unwrap_err();
    assert!(
        matches!(&err, RpcError::NoSuchMethod { method } if method == PING_METHOD),
        "{err:?}"
    );

    // An endpoint defining the method itself keeps it; the ping endpoint is not added.
    let own = arc(OwnPingEndpoint::new(Agent::new("own-ping")));
    let _own = serve_with(&transport, "own", "s1", vec![own], with_ping).await;
    assert_eq!(
        pinger("own").oslo_rpc_server_ping().await.unwrap(),
        "own-ping"
    );
}

// ---------------------------------------------------------------------------------------------
// Client-side rules: timeouts, version cap, targets
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn call_without_a_server_times_out_with_the_msg_id() {
    let transport = Transport::memory();
    let timeout = Duration::from_millis(200);
    let started = Instant::now();
    let err = probe(&transport, "nobody")
        .with_timeout(timeout)
        .whoami()
        .await
        .unwrap_err();
    let elapsed = started.elapsed();
    assert!(err.is_timeout(), "{err:?}");
    assert!(err.is_retryable());
    let text = err.to_string();
    let id = text
        .strip_prefix("Timed out waiting for a reply to message ID ")
        .unwrap_or_else(|| panic!("unexpected text {text:?}"));
    assert!(is_uuid_hex(id), "{id:?} is not 32 lowercase hex digits");
    match &err {
        RpcError::Timeout { msg_id, waited } => {
            assert_eq!(msg_id, id);
            assert!(*waited >= timeout, "waited {waited:?}");
        }
        other => panic!("not a timeout: {other:?}"),
    }
    assert!(elapsed >= timeout, "gave up early: {elapsed:?}");
    assert!(
        elapsed < timeout + Duration::from_millis(500),
        "took {elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_cap_refuses_before_sending() {
    let driver = MemoryDriver::private();
    let transport = Transport::from_driver(Arc::new(driver.clone()));
    let agent = Agent::new("capped");
    let calls = agent.calls();
    // Declare the queues, then leave them unconsumed: whatever is sent stays there.
    let endpoint = arc(CappedEndpoint::new(agent));
    let server = serve(&transport, "capped", "s1", vec![endpoint]).await;
    server.stop().await;
    server.wait().await;
    assert_eq!(driver.queue_depth("capped"), Some(0));

    // `whoami` and `record` send 1.5, above the cap.
    let capped = CappedClient::new(&transport, "capped")
        .with_timeout(ANSWER)
        .with_version_cap(v("1.3"));
    let is_cap = |err: &RpcError, version: Option<Version>| matches!(err, RpcError::VersionCap { version: got, cap } if *got == version && *cap == v("1.3"));
    let err = capped.whoami().await.unwrap_err();
    assert!(is_cap(&err, Some(v("1.5"))), "{err:?}");
    assert!(err.is_version_cap());
    assert!(
        err.to_string().contains("1.5") && err.to_string().contains("1.3"),
        "{err}"
    );
    let err = capped.record().await.unwrap_err();
    assert!(is_cap(&err, Some(v("1.5"))), "{err:?}");
    // oslo: with a cap, a message without a version (as a dynamic client sends) is refused too.
    let unversioned = capped.rpc_client();
    let err = call_method(unversioned, "whoami").await.unwrap_err();
    assert!(is_cap(&err, None), "{err:?}");
    let err = unversioned
        .cast(&Context::new(), "record", ())
        .await
        .unwrap_err();
    assert!(is_cap(&err, None), "{err:?}");
    assert_eq!(
        driver.queue_depth("capped"),
        Some(0),
        "a refused message was sent"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    // Within the cap (`note` sends 1.3), the message is sent.
    capped.note().await.unwrap();
    assert_eq!(driver.queue_depth("capped"), Some(1));

    for (version, allowed) in [
        ("1.0", true),
        ("1.2.9", true),
        ("1.3", true),
        ("1.3.0", true),
        ("1.3.1", false),
        ("1.4", false),
        ("2.0", false),
        ("0.9", false),
    ] {
        assert_eq!(
            capped.can_send_version(&v(version)),
            allowed,
            "cap 1.3, version {version}"
        );
    }
    assert!(
        CappedClient::new(&transport, "capped").can_send_version(&v("9.9")),
        "no cap allows all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_targets_are_refused() {
    let transport = Transport::memory();
    use amqp_rpc::TargetError::{FanoutCall, MissingServer, MissingTopic};

    let fanout = ProbeClient::from_rpc_client(client(&transport, "T").with_fanout(true));
    let call = fanout.whoami().await.map(drop);
    assert!(
        matches!(call, Err(RpcError::InvalidTarget(FanoutCall { .. }))),
        "{call:?}"
    );
    let cast = fanout.record().await;
    assert!(cast.is_ok(), "a fanout cast is valid: {cast:?}");
    let cast = probe(&transport, "T").fanout().record().await;
    assert!(cast.is_ok(), "a fanout cast is valid: {cast:?}");

    let no_topic = RpcClient::new(&transport, Target::default()).with_timeout(ANSWER);
    let no_topic = ProbeClient::from_rpc_client(no_topic);
    let call = no_topic.whoami().await.map(drop);
    assert!(
        matches!(call, Err(RpcError::InvalidTarget(MissingTopic { .. }))),
        "{call:?}"
    );
    let cast = no_topic.record().await;
    assert!(
        matches!(cast, Err(RpcError::InvalidTarget(MissingTopic { .. }))),
        "{cast:?}"
    );

    let build = |target| RpcServer::builder(&transport, target).endpoint(Agent::new("x").probe());
    let no_server = build(Target::new("T")).build().map(drop);
    assert!(
        matches!(
            no_server,
            Err(RpcError::InvalidTarget(MissingServer { .. }))
        ),
        "{no_server:?}"
    );
    let no_topic = build(Target::default().with_server("s1")).build().map(drop);
    assert!(
        matches!(no_topic, Err(RpcError::InvalidTarget(MissingTopic { .. }))),
        "{no_topic:?}"
    );
    let zero = build(Target::server("T", "s1"))
        .max_concurrency(0)
        .build()
        .map(drop);
    assert!(
        matches!(zero, Err(RpcError::InvalidConfig { .. })),
        "{zero:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// The wire, seen by a raw peer
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unenveloped_request_is_served() {
    let transport = Transport::memory();
    let _server = serve(&transport, "raw", "s1", vec![Agent::new("s1").probe()]).await;
    let mut peer = RawPeer::new(&transport).await;
    let mut request = peer.call_request("m-noenv", "echo");
    request["args"] = json!({"text": "hi"});
    peer.publish_bytes("raw", serde_json::to_vec(&request).unwrap())
        .await;
    let reply = peer.expect_reply().await;
    assert_eq!(reply["_msg_id"], "m-noenv");
    assert_eq!(reply["result"], json!("hi"));
    assert_eq!(reply["failure"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_in_an_envelope_2_1_is_refused_with_a_failure_and_the_server_keeps_serving() {
    let transport = Transport::memory();
    let agent = Agent::new("s1");
    let calls = agent.calls();
    let _server = serve(&transport, "raw", "s1", vec![agent.probe()]).await;
    let mut peer = RawPeer::new(&transport).await;

    let inner = peer.call_request("m-21", "whoami").to_string();
    let body = json!({"oslo.version": "2.1", "oslo.message": inner});
    peer.publish_bytes("raw", serde_json::to_vec(&body).unwrap())
        .await;
    // Not run, but its caller learns why at once rather than at its timeout.
    let reply = peer.expect_reply().await;
    assert_eq!(reply["_msg_id"], "m-21");
    let failure = failure_of(&reply);
    assert_eq!(failure["class"], "ValueError");
    assert!(
        failure["message"]
            .as_str()
            .is_some_and(|m| m.contains("unsupported oslo envelope version \"2.1\"")),
        "{failure:?}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);

    peer.publish("raw", &peer.call_request("m-ok", "whoami"))
        .await;
    let reply = peer.expect_reply().await;
    assert_eq!(
        (&reply["_msg_id"], &reply["result"]),
        (&json!("m-ok"), &json!("s1"))
    );
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_timeout_no_instant_can_hold_means_no_timeout_not_a_panic() {
    let transport = Transport::memory();
    let _server = serve(&transport, "max", "s1", vec![Agent::new("s1").probe()]).await;
    let client = ProbeClient::new(&transport, "max").with_timeout(Duration::MAX);
    assert_eq!(client.whoami().await.unwrap(), "s1");
    client.record().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_monitor_timeout_no_timer_can_hold_is_answered_not_a_panic() {
    let transport = Transport::memory();
    let _server = serve(&transport, "raw", "s1", vec![Agent::new("s1").probe()]).await;
    let mut peer = RawPeer::new(&transport).await;
    for (n, timeout) in [json!(1e300), json!(1.8447e19), json!(-5), json!(4.0)]
        .into_iter()
        .enumerate()
    {
        let mut request = peer.call_request(&format!("m-{n}"), "whoami");
        request["_timeout"] = timeout.clone();
        peer.publish("raw", &request).await;
        let reply = peer.expect_reply().await;
        assert_eq!(reply["result"], json!("s1"), "_timeout {timeout}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_to_a_call_has_exactly_the_oslo_keys_inside_a_2_0_envelope() {
    let transport = Transport::memory();
    let _server = serve(&transport, "raw", "s1", vec![Agent::new("s1").probe()]).await;
    let mut peer = RawPeer::new(&transport).await;
    peer.publish("raw", &peer.call_request("m-keys", "whoami"))
        .await;
    let (outer, inner) = peer.reply(ANSWER).await.expect("a reply");

    let outer = outer.as_object().expect("the body is a JSON object");
    assert_eq!(sorted_keys(outer), ["oslo.message", "oslo.version"]);
    assert_eq!(outer["oslo.version"], "2.0");
    let message = outer["oslo.message"]
        .as_str()
        .expect("oslo.message is a string");
    assert_eq!(
        serde_json::from_str::<Value>(message).unwrap(),
        Value::Object(inner.clone())
    );

    assert_eq!(
        sorted_keys(&inner),
        ["_msg_id", "_unique_id", "ending", "failure", "result"]
    );
    assert_eq!(inner["result"], "s1");
    assert_eq!(inner["failure"], Value::Null);
    assert_eq!(inner["ending"], true);
    assert_eq!(inner["_msg_id"], "m-keys");
    let unique = inner["_unique_id"].as_str().unwrap_or_default();
    assert!(is_uuid_hex(unique), "_unique_id {unique:?}");
    assert_ne!(unique, "u-m-keys", "the reply has an id of its own");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_reply_carries_the_serialized_exception_as_a_json_string() {
    let transport = Transport::memory();
    let endpoints = vec![Agent::new("s1").probe(), arc(Legacy::default())];
    let _server = serve(&transport, "raw", "s1", endpoints).await;
    let mut peer = RawPeer::new(&transport).await;

    peer.publish("raw", &peer.call_request("m-nsm", "missing"))
        .await;
    let reply = peer.expect_reply().await;
    assert_eq!(
        sorted_keys(&reply),
        ["_msg_id", "_unique_id", "ending", "failure", "result"]
    );
    assert_eq!(
        (&reply["result"], &reply["ending"]),
        (&Value::Null, &json!(true))
    );
    let failure = failure_of(&reply);
    assert_eq!(
        sorted_keys(&failure),
        ["args", "class", "kwargs", "message", "module", "tb"]
    );
    let text = "Endpoint does not support RPC method missing";
    assert_eq!(failure["class"], "NoSuchMethod");
    assert_eq!(failure["module"], "oslo_messaging.rpc.dispatcher");
    assert_eq!(failure["message"], text);
    assert_eq!(failure["args"], json!([text]));
    assert_eq!(failure["kwargs"], json!({}));
    assert!(failure["tb"].is_array(), "{failure:?}");

    peer.publish("raw", &peer.call_request("m-fail", "fail"))
        .await;
    let failure = failure_of(&peer.expect_reply().await);
    assert_eq!(
        (
            &failure["class"],
            &failure["module"],
            &failure["message"],
            &failure["args"]
        ),
        (
            &json!("ValueError"),
            &json!("builtins"),
            &json!("bad"),
            &json!(["bad"])
        )
    );

    // A typed application error of a generated endpoint.
    let mut request = peer.call_request("m-typed", "divide");
    request["args"] = json!({"x": 7, "y": 0});
    peer.publish("raw", &request).await;
    let failure = failure_of(&peer.expect_reply().await);
    let text = "cannot divide 7 by 0";
    assert_eq!(
        (
            &failure["class"],
            &failure["module"],
            &failure["message"],
            &failure["args"]
        ),
        (
            &json!("DivisionByZero"),
            &json!(APPLICATION_ERROR_MODULE),
            &json!(text),
            &json!([text])
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_without_args_is_served_with_empty_kwargs() {
    let transport = Transport::memory();
    let _server = serve(&transport, "raw", "s1", vec![Agent::new("s1").probe()]).await;
    let mut peer = RawPeer::new(&transport).await;
    // `whoami` takes no arguments, and refuses any it is given: served, its kwargs were empty.
    let mut request = peer.call_request("m-noargs", "whoami");
    request.as_object_mut().unwrap().remove("args");
    peer.publish("raw", &request).await;
    let reply = peer.expect_reply().await;
    assert_eq!(reply["failure"], Value::Null, "{reply:?}");
    assert_eq!(reply["result"], json!("s1"));
    // `echo(text: Option<String>)` finds no `text`.
    let mut request = peer.call_request("m-noargs-echo", "echo");
    request.as_object_mut().unwrap().remove("args");
    peer.publish("raw", &request).await;
    let reply = peer.expect_reply().await;
    assert_eq!(reply["failure"], Value::Null, "{reply:?}");
    assert_eq!(reply["result"], Value::Null);
    // Whereas an argument `whoami` does not take is refused.
    let mut request = peer.call_request("m-args", "whoami");
    request["args"] = json!({"text": "hi"});
    peer.publish("raw", &request).await;
    let failure = failure_of(&peer.expect_reply().await);
    assert_eq!(failure["class"], "TypeError");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flattened_context_keys_arrive_unflattened_with_client_timeout() {
    let transport = Transport::memory();
    let _server = serve(&transport, "raw", "s1", vec![Agent::new("s1").probe()]).await;
    let mut peer = RawPeer::new(&transport).await;
    let mut request = peer.call_request("m-ctx", "context");
    request["_context_user"] = json!("u1");
    request["_context_project_id"] = json!("p1");
    request["_context_roles"] = json!(["admin"]);
    request["_context_nested"] = json!({"a": {"b": [1, null]}});
    request["_context_nothing"] = Value::Null;
    peer.publish("raw", &request).await;
    let reply = peer.expect_reply().await;
    assert_eq!(
        reply["result"],
        json!({
            "user": "u1",
            "project_id": "p1",
            "roles": ["admin"],
            "nested": {"a": {"b": [1, null]}},
            "nothing": null,
            "client_timeout": null,
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_unique_ids_are_dropped() {
    let transport = Transport::memory();
    let (tx, mut events) = mpsc::unbounded_channel();
    let _server = serve(
        &transport,
        "raw",
        "s1",
        vec![Agent::new("s1").reporting_to(&tx).probe()],
    )
    .await;
    let peer = RawPeer::new(&transport).await;
    let cast = |id: &str| json!({"method": "record", "args": {}, "_unique_id": id});

    peer.publish("raw", &cast("dup-1")).await;
    peer.publish("raw", &cast("dup-1")).await;
    assert_eq!(expect_events(&mut events, 1).await, ["s1:record"]);

    peer.publish("raw", &cast("id-a")).await;
    peer.publish("raw", &cast("id-b")).await;
    assert_eq!(expect_events(&mut events, 2).await.len(), 2);

    // Messages without `_unique_id` are never duplicates.
    let bare = json!({"method": "record", "args": {}});
    peer.publish("raw", &bare).await;
    peer.publish("raw", &bare).await;
    assert_eq!(expect_events(&mut events, 2).await.len(), 2);

    // The server remembers the last 1024 ids (oslo's `_MsgIdCache` keeps 16; redeliveries
    // after a lost connection need more): after 1024 newer ids the oldest is forgotten, while
    // the newest is still known.
    for i in 0..1025 {
        peer.publish("raw", &cast(&format!("w-{i}"))).await;
    }
    assert_eq!(expect_events(&mut events, 1025).await.len(), 1025);
    peer.publish("raw", &cast("w-1024")).await;
    peer.publish("raw", &cast("w-0")).await;
    assert_eq!(expect_events(&mut events, 1).await, ["s1:record"]);
}

/// Replies to `peer` until the final one (`ending: true`), then checks that nothing follows
/// for `quiet`.
async fn replies_until_final(peer: &mut RawPeer, quiet: Duration) -> Vec<Map<String, Value>> {
    let mut replies = Vec::new();
    while replies
        .last()
        .is_none_or(|r: &Map<String, Value>| r["ending"] != true)
    {
        match peer.reply(ANSWER).await {
            Some((_, reply)) => replies.push(reply),
            None => panic!("no final reply after {replies:?}"),
        }
    }
    if let Some((_, extra)) = peer.reply(quiet).await {
        panic!("a reply after the final one: {extra:?}");
    }
    replies
}

/// Checks, as a raw peer, the heartbeats a server sends (run beside the long call of
/// `call_monitor_heartbeats_keep_a_long_call_alive`, to share its wait).
async fn heartbeats_on_the_wire_follow_the_call_monitor_timeout(transport: &Transport) {
    let _server = serve(transport, "raw", "s1", vec![Agent::new("s1").probe()]).await;
    let (mut monitored, mut unmonitored, mut missing) = (
        RawPeer::new(transport).await,
        RawPeer::new(transport).await,
        RawPeer::new(transport).await,
    );

    // `_timeout: 2`: a heartbeat every second while the method runs, then the final reply.
    let mut request = monitored.call_request("m-beat", "sleep");
    request["_timeout"] = json!(2);
    request["args"] = json!({"ms": 2500});
    monitored.publish("raw", &request).await;
    // No `_timeout`: no heartbeats, however long the method runs.
    let mut request = unmonitored.call_request("m-quiet", "sleep");
    request["args"] = json!({"ms": 1300});
    unmonitored.publish("raw", &request).await;
    // A dispatch failure ends the heartbeats too (oslo's orphaned watchdog is not copied).
    let mut request = missing.call_request("m-missing", "missing");
    request["_timeout"] = json!(2);
    missing.publish("raw", &request).await;

    let (beats, quiet, failed) = tokio::join!(
        replies_until_final(&mut monitored, QUIET),
        replies_until_final(&mut unmonitored, QUIET),
        replies_until_final(&mut missing, Duration::from_millis(1500)),
    );

    let (last, heartbeats) = beats.split_last().expect("replies");
    assert_eq!(heartbeats.len(), 2, "{beats:?}");
    for beat in heartbeats {
        let keys = sorted_keys(beat);
        assert_eq!(
            keys,
            ["_msg_id", "_unique_id", "ending", "failure", "result"]
        );
        assert_eq!(
            (
                &beat["result"],
                &beat["failure"],
                &beat["ending"],
                &beat["_msg_id"]
            ),
            (&Value::Null, &Value::Null, &json!(false), &json!("m-beat"))
        );
    }
    assert_ne!(heartbeats[0]["_unique_id"], heartbeats[1]["_unique_id"]);
    assert_eq!(
        (&last["result"], &last["_msg_id"]),
        (&json!("s1"), &json!("m-beat"))
    );

    assert_eq!(quiet.len(), 1, "{quiet:?}");
    assert_eq!(quiet[0]["result"], "s1");

    assert_eq!(failed.len(), 1, "{failed:?}");
    assert_eq!(failure_of(&failed[0])["class"], "NoSuchMethod");
}

// ---------------------------------------------------------------------------------------------
// Context and errors through a real client
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_round_trips_to_the_endpoint() {
    let transport = Transport::memory();
    let _server = serve(&transport, "T", "s1", vec![Agent::new("s1").probe()]).await;
    let client = probe(&transport, "T");
    let ctx = Context::new()
        .with_request_id("req-42")
        .with_user_id("alice")
        .with_roles(["admin", "reader"])
        .with("nested", json!({"a": {"b": [1, 2]}, "n": null}));

    let seen = client.context(&ctx).await.unwrap();
    let mut expected = ctx.as_map().clone();
    expected.insert("client_timeout".to_owned(), Value::Null);
    assert_eq!(seen.as_map(), &expected);

    let monitored = client.with_call_monitor_timeout(Duration::from_secs(30));
    let seen = monitored.context(&ctx).await.unwrap();
    assert_eq!(seen.client_timeout(), Some(30.0), "{seen:?}");
    let mut seen = seen.into_map();
    seen.insert("client_timeout".to_owned(), Value::Null);
    assert_eq!(seen, expected);
    // The original client is not monitored.
    let seen = client.context(&ctx).await.unwrap();
    assert_eq!(seen.get("client_timeout"), Some(&Value::Null));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_errors_carry_class_module_message_and_typed_application_errors() {
    let transport = Transport::memory();
    let endpoints = vec![Agent::new("s1").probe(), arc(Legacy::default())];
    let _server = serve(&transport, "T", "s1", endpoints).await;
    let client = client(&transport, "T");

    // A Python built-in exception, from the hand-written endpoint.
    let err = call_method(&client, "fail").await.unwrap_err();
    assert!(err.is_remote(), "{err:?}");
    let remote = err.remote().unwrap();
    assert_eq!(
        (remote.class(), remote.module(), remote.message()),
        ("ValueError", "builtins", "bad")
    );
    assert_eq!(remote.args(), [json!("bad")]);
    assert!(
        remote.application::<CalcError>().is_none(),
        "a builtin carries no typed error"
    );
    assert_eq!(err.to_string(), "Remote error: ValueError bad");

    // A typed error of a generated endpoint, as an untyped caller sees it.
    let err = client
        .call::<i64>(&Context::new(), "divide", json!({"x": 7, "y": 0}))
        .await
        .unwrap_err();
    let remote = err
        .remote()
        .unwrap_or_else(|| panic!("not remote: {err:?}"));
    assert_eq!(remote.class(), "DivisionByZero");
    assert_eq!(remote.module(), APPLICATION_ERROR_MODULE);
    assert_eq!(remote.message(), "cannot divide 7 by 0");
    let typed = remote.application::<CalcError>().unwrap().unwrap();
    assert_eq!(typed, CalcError::DivisionByZero { dividend: 7 });
    // Decoding as the wrong type is an error, not a silent default.
    assert!(matches!(remote.application::<u32>(), Some(Err(_))));

    // The same through the typed client: the value itself.
    let typed_client = probe(&transport, "T");
    match typed_client.divide(7, 0).await {
        Err(CallError::Application(e)) => assert_eq!(e, CalcError::DivisionByZero { dividend: 7 }),
        other => panic!("not the application error: {other:?}"),
    }

    let ok: i64 = client
        .call(&Context::new(), "divide", json!({"x": 7, "y": 2}))
        .await
        .unwrap();
    assert_eq!(ok, 3);
    assert_eq!(typed_client.divide(7, 2).await.unwrap(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hand_written_endpoint_is_served_alongside_generated_ones() {
    let transport = Transport::memory();
    let legacy = Arc::new(Legacy::default());
    let (tx, mut events) = mpsc::unbounded_channel();
    // The hand-written endpoint comes first: it answers its methods, and only those.
    let endpoints: Vec<Arc<dyn Endpoint>> = vec![
        legacy.clone(),
        Agent::new("gen").reporting_to(&tx).probe(),
        arc(Calc13Endpoint::new(Agent::new("calc").reporting_to(&tx))),
    ];
    let _server = serve(&transport, "T", "s1", endpoints).await;

    let generated = probe(&transport, "T");
    assert_eq!(generated.whoami().await.unwrap(), "gen");
    assert_eq!(
        generated
            .echo(Some("x".to_owned()))
            .await
            .unwrap()
            .as_deref(),
        Some("x")
    );
    let shout = LegacyApiClient::new(&transport, "T").with_timeout(ANSWER);
    assert_eq!(shout.shout("hi".to_owned()).await.unwrap(), "HI");
    let err = call_method(&client(&transport, "T"), "fail")
        .await
        .unwrap_err();
    assert_eq!(err.remote().map(RemoteError::class), Some("ValueError"));
    let add = call_method(&client(&transport, "T").with_namespace("calc"), "add").await;
    assert_eq!(add.unwrap(), "calc");
    assert_eq!(legacy.calls.load(Ordering::SeqCst), 2);
    assert_eq!(
        expect_events(&mut events, 3).await,
        ["gen:whoami", "gen:echo", "calc:add"]
    );
}

// ---------------------------------------------------------------------------------------------
// Call monitoring and expiry
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn call_monitor_heartbeats_keep_a_long_call_alive() {
    let transport = Transport::memory();
    let _server = serve(&transport, "T", "s1", vec![Agent::new("slow").probe()]).await;
    let monitored = probe(&transport, "T")
        .with_call_monitor_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(10));
    let started = Instant::now();
    // Without heartbeats (every 1 s) the 2 s monitor would fail this 3.5 s call.
    let (who, ()) = tokio::join!(
        monitored.sleep(3500),
        heartbeats_on_the_wire_follow_the_call_monitor_timeout(&transport),
    );
    assert_eq!(who.unwrap(), "slow");
    assert!(started.elapsed() >= Duration::from_millis(3500));
}

#[tokio::test(start_paused = true)]
async fn call_monitor_timeout_fails_a_call_when_heartbeats_stop() {
    let transport = Transport::memory();
    // Under 2 s the server sends no heartbeats at all, so a slow method trips the monitor.
    let _server = serve(&transport, "T", "s1", vec![Agent::new("slow").probe()]).await;
    let monitor = Duration::from_secs(1);
    let unserved = probe(&transport, "nobody")
        .with_call_monitor_timeout(monitor)
        .with_timeout(Duration::from_secs(10));
    let silent = probe(&transport, "T")
        .with_call_monitor_timeout(monitor)
        .with_timeout(Duration::from_secs(10));
    let timed = |c: ProbeClient, ms: u64| async move {
        let started = Instant::now();
        let result = c.sleep(ms).await;
        (result, started.elapsed())
    };
    let ((unserved, unserved_took), (silent, silent_took)) =
        tokio::join!(timed(unserved, 0), timed(silent, 2000));
    for (result, took) in [(unserved, unserved_took), (silent, silent_took)] {
        assert!(
            result.as_ref().is_err_and(RpcError::is_timeout),
            "{result:?}"
        );
        assert!(
            took >= monitor && took < Duration::from_secs(3),
            "took {took:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn expired_call_requests_are_dropped_by_the_broker() {
    let driver = MemoryDriver::private();
    let transport = Transport::from_driver(Arc::new(driver.clone()));
    let agent = Agent::new("late");
    let calls = agent.calls();
    // Declare the queues (as a server that ran before would have), then stop consuming.
    let server = serve(&transport, "late", "s1", vec![agent.probe()]).await;
    server.stop().await;
    server.wait().await;

    let started = Instant::now();
    let short = probe(&transport, "late").with_timeout(Duration::from_millis(200));
    let err = short.whoami().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(
        driver.queue_depth("late"),
        Some(1),
        "the request waits in its queue"
    );

    tokio::time::sleep(Duration::from_millis(400).saturating_sub(started.elapsed())).await;
    server.start().await.unwrap();
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "an expired request was run"
    );
    assert_eq!(driver.queue_depth("late"), Some(0));

    // The restarted server does serve fresh requests.
    assert_eq!(probe(&transport, "late").whoami().await.unwrap(), "late");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------------
// Transports
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_url_transports_with_the_same_vhost_share_a_broker() {
    let url = format!("memory:///vh-shared-{}", std::process::id());
    let other = format!("memory:///vh-other-{}", std::process::id());
    let server_side = Transport::from_url(&url).await.unwrap();
    let _server = serve(&server_side, "T", "s1", vec![Agent::new("vh").probe()]).await;

    let client_side = Transport::from_url(&url).await.unwrap();
    assert_eq!(probe(&client_side, "T").whoami().await.unwrap(), "vh");

    let elsewhere = Transport::from_url(&other).await.unwrap();
    let lost = probe(&elsewhere, "T").with_timeout(Duration::from_millis(200));
    let err = lost.whoami().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let private = probe(&Transport::memory(), "T").with_timeout(Duration::from_millis(200));
    assert!(private.whoami().await.unwrap_err().is_timeout());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_share_one_reply_queue() {
    let driver = MemoryDriver::private();
    let transport = Transport::from_driver(Arc::new(driver.clone()));
    let _server = serve(&transport, "T", "s1", vec![Agent::new("s1").probe()]).await;
    let client = probe(&transport, "T");
    let calls: Vec<_> = (0..200)
        .map(|i| {
            // Clones share the transport's reply queue, as every client of it does.
            let client = client.clone();
            tokio::spawn(async move {
                let echoed = client.echo(Some(format!("call {i}"))).await.unwrap();
                (i, echoed)
            })
        })
        .collect();
    for call in calls {
        let (i, echoed) = call.await.unwrap();
        assert_eq!(echoed, Some(format!("call {i}")));
    }
    let reply_queues: Vec<String> = driver
        .queue_names()
        .into_iter()
        .filter(|q| q.starts_with("reply_"))
        .collect();
    assert_eq!(reply_queues.len(), 1, "{reply_queues:?}");
}

/// A `memory://` driver on which one reply queue looks missing until revealed: a mandatory
/// publish to it fails with `NoRoute` and `reply_queue_exists` says no, as RabbitMQ does for a
/// queue not declared (again) yet. Counts the publishes to it while hidden.
#[derive(Debug)]
struct HiddenQueue {
    inner: MemoryDriver,
    hidden: std::sync::Mutex<Option<String>>,
    publishes_while_hidden: AtomicUsize,
}

impl HiddenQueue {
    fn new() -> Arc<HiddenQueue> {
        Arc::new(HiddenQueue {
            inner: MemoryDriver::private(),
            hidden: std::sync::Mutex::new(None),
            publishes_while_hidden: AtomicUsize::new(0),
        })
    }

    fn hide(&self, queue: &str) {
        *self.hidden.lock().unwrap() = Some(queue.to_owned());
    }

    fn reveal(&self) {
        *self.hidden.lock().unwrap() = None;
    }

    fn is_hidden(&self, queue: &str) -> bool {
        self.hidden.lock().unwrap().as_deref() == Some(queue)
    }
}

#[async_trait]
impl amqp_rpc::driver::Driver for HiddenQueue {
    async fn publish(
        &self,
        to: Destination<'_>,
        body: bytes::Bytes,
        options: PublishOptions,
    ) -> Result<(), amqp_rpc::TransportError> {
        if let Destination::Reply { queue } = to
            && self.is_hidden(queue)
        {
            self.publishes_while_hidden.fetch_add(1, Ordering::SeqCst);
            return Err(amqp_rpc::TransportError::NoRoute {
                exchange: String::new(),
                routing_key: queue.to_owned(),
            });
        }
        self.inner.publish(to, body, options).await
    }

    async fn reply_queue_exists(&self, queue: &str) -> Result<bool, amqp_rpc::TransportError> {
        match self.is_hidden(queue) {
            true => Ok(false),
            false => self.inner.reply_queue_exists(queue).await,
        }
    }

    async fn listen_rpc(
        &self,
        target: &Target,
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, amqp_rpc::TransportError> {
        self.inner.listen_rpc(target, prefetch).await
    }

    async fn listen_replies(
        &self,
    ) -> Result<amqp_rpc::driver::ReplyQueue, amqp_rpc::TransportError> {
        self.inner.listen_replies().await
    }

    async fn listen_notifications(
        &self,
        bindings: &[amqp_rpc::driver::NotificationBinding<'_>],
        pool: Option<&str>,
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, amqp_rpc::TransportError> {
        self.inner
            .listen_notifications(bindings, pool, prefetch)
            .await
    }

    async fn consume_replies(
        &self,
        handler: std::sync::Weak<dyn amqp_rpc::driver::ReplyHandler>,
    ) -> Result<amqp_rpc::driver::ReplyConsumer, amqp_rpc::TransportError> {
        self.inner.consume_replies(handler).await
    }

    fn connection_state(&self) -> tokio::sync::watch::Receiver<amqp_rpc::ConnectionState> {
        self.inner.connection_state()
    }

    async fn close(&self) {
        self.inner.close().await;
    }
}

#[tokio::test(start_paused = true)]
async fn replies_to_a_missing_reply_queue_hold_no_handler_slot_and_go_out_when_it_appears() {
    let (log, _capturing) = common::log::capture_here();
    let driver = HiddenQueue::new();
    let transport = Transport::from_driver(driver.clone());
    let max = 4;
    let config = ServerConfig::default().with_max_concurrency(max);
    let agent = Agent::new("s1").probe();
    let _server = serve_with(&transport, "hidden", "s1", vec![agent], config).await;
    let mut peer = RawPeer::new(&transport).await;
    driver.hide(&peer.reply_q);
    let marker = format!("reply-body-{}", "x".repeat(10_000));
    let calls = 2 * max;
    for n in 0..calls {
        let mut request = peer.call_request(&format!("m{n}"), "echo");
        request["args"] = json!({"text": marker});
        peer.publish("hidden", &request).await;
    }

    // A call behind them is answered at once: no handler waits on the missing queue (oslo's
    // executor thread would, for kombu_missing_consumer_retry_timeout, 60 s).
    let client = probe(&transport, "hidden");
    let answered = tokio::time::timeout(Duration::from_secs(2), client.whoami());
    assert_eq!(answered.await.expect("answered at once").unwrap(), "s1");

    // Seconds of retrying: the queue is asked after, not published to again, and the replies
    // found it missing share that work.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let publishes = driver.publishes_while_hidden.load(Ordering::SeqCst);
    assert!((1..=max).contains(&publishes), "{publishes} publishes");

    // The caller's queue is back (oslo's reason for retrying): every reply arrives, at the
    // next check of the queue (after 5 s missing, checks are up to 4 s apart).
    driver.reveal();
    let mut msg_ids = std::collections::BTreeSet::new();
    for n in 0..calls {
        let wait = Duration::from_secs(if n == 0 { 5 } else { 1 });
        let (_, reply) = peer.reply(wait).await.expect("a kept reply");
        assert_eq!(reply["result"], json!(marker));
        msg_ids.insert(reply["_msg_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(msg_ids.len(), calls);
    assert!(peer.reply(QUIET).await.is_none());
    // Nothing logged the body, however often the replies were tried.
    assert_eq!(log.lines_with("reply-body-"), Vec::<String>::new());
}

#[tokio::test(start_paused = true)]
async fn a_reply_queue_missing_for_the_retry_time_drops_its_replies_with_one_line_each() {
    let (log, _capturing) = common::log::capture_here();
    let transport = Transport::memory();
    let config = ServerConfig::default().with_max_concurrency(2);
    let _server = serve_with(
        &transport,
        "gone",
        "s1",
        vec![Agent::new("s1").probe()],
        config,
    )
    .await;
    let peer = RawPeer::new(&transport).await;
    for n in 0..3 {
        let mut request = peer.call_request(&format!("gone-{n}"), "echo");
        request["_reply_q"] = json!("reply_never_declared");
        request["args"] = json!({"text": "secret-reply-body"});
        peer.publish("gone", &request).await;
    }
    let client = probe(&transport, "gone");
    let answered = tokio::time::timeout(Duration::from_secs(2), client.whoami());
    assert_eq!(answered.await.expect("answered at once").unwrap(), "s1");
    let retry_for = transport.config().kombu_missing_consumer_retry_timeout;
    tokio::time::sleep(retry_for + Duration::from_secs(1)).await;
    let dropped = log.lines_with("reply dropped");
    assert_eq!(dropped.len(), 3, "{dropped:#?}");
    for n in 0..3 {
        assert!(
            dropped.iter().any(|l| l.contains(&format!("gone-{n}"))),
            "{dropped:#?}"
        );
    }
    assert_eq!(log.lines_with("secret-reply-body"), Vec::<String>::new());
    // Obsolete now: a later reply to it is dropped at once, without a retry.
    let mut request = peer.call_request("gone-late", "echo");
    request["_reply_q"] = json!("reply_never_declared");
    peer.publish("gone", &request).await;
    let client = probe(&transport, "gone");
    let answered = tokio::time::timeout(Duration::from_secs(2), client.whoami());
    assert_eq!(answered.await.expect("answered at once").unwrap(), "s1");
    tokio::time::sleep(QUIET).await;
    assert_eq!(log.lines_with("found missing earlier").len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_reply_queue_name_longer_than_amqp_allows_gets_no_reply_and_no_retry() {
    let (log, _capturing) = common::log::capture_here();
    let transport = Transport::memory();
    let _server = serve(&transport, "long", "s1", vec![Agent::new("s1").probe()]).await;
    let peer = RawPeer::new(&transport).await;
    let mut request = peer.call_request("m-long", "whoami");
    // On RabbitMQ, publishing to it made lapin panic in the handler's task.
    request["_reply_q"] = json!("r".repeat(256));
    peer.publish("long", &request).await;
    let client = probe(&transport, "long");
    let answered = tokio::time::timeout(Duration::from_secs(2), client.whoami());
    assert_eq!(answered.await.expect("answered at once").unwrap(), "s1");
    let dropped = log.lines_with("longer than AMQP allows");
    assert_eq!(dropped.len(), 1, "{dropped:#?}");
}
