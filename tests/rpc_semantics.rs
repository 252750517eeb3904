//! RPC semantics on the in-memory broker: routing (round-robin, directed, fanout), dispatch and
//! version rules, errors, call monitoring, and the oslo wire format as raw peers see it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use amqp_rpc::transport::memory::MemoryDriver;
use amqp_rpc::transport::{Destination, PublishOptions, Subscription};
use amqp_rpc::{
    APPLICATION_ERROR_MODULE, Context, Endpoint, PING_METHOD, RemoteError, RpcClient, RpcError,
    RpcServer, ServerConfig, Target, Transport, Version, async_trait, wire,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

/// Long enough for anything that should answer; short enough that a hang fails fast.
const ANSWER: Duration = Duration::from_secs(5);
/// How long we listen before concluding that nothing (more) arrives.
const QUIET: Duration = Duration::from_millis(250);

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

/// A configurable endpoint that counts its dispatches and reports each one as
/// `"<label>:<method>"` on an optional channel.
///
/// Behaviours by method: `echo` returns its kwargs, `context` returns the context it got,
/// `fail` fails with `ValueError("bad")`, `divide` divides `x` by `y` (typed error on 0),
/// `sleep` sleeps `ms` milliseconds (then reports `"<label>:sleep:done"`); every other method
/// it has returns the label.
#[derive(Clone)]
struct Probe {
    label: String,
    namespace: Option<String>,
    version: Version,
    methods: Vec<String>,
    calls: Arc<AtomicUsize>,
    events: Option<mpsc::UnboundedSender<String>>,
}

const BEHAVIOURS: &[&str] = &[
    "whoami", "echo", "context", "fail", "divide", "sleep", "record",
];

impl Probe {
    fn new(label: &str) -> Probe {
        Probe {
            label: label.to_owned(),
            namespace: None,
            version: Version::DEFAULT,
            methods: BEHAVIOURS.iter().map(|m| (*m).to_owned()).collect(),
            calls: Arc::default(),
            events: None,
        }
    }

    fn in_namespace(mut self, namespace: &str) -> Probe {
        self.namespace = Some(namespace.to_owned());
        self
    }

    fn at_version(mut self, version: &str) -> Probe {
        self.version = v(version);
        self
    }

    fn with_methods(mut self, methods: &[&str]) -> Probe {
        self.methods = methods.iter().map(|m| (*m).to_owned()).collect();
        self
    }

    fn reporting_to(mut self, events: &mpsc::UnboundedSender<String>) -> Probe {
        self.events = Some(events.clone());
        self
    }

    fn calls(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.calls)
    }

    fn arc(self) -> Arc<dyn Endpoint> {
        Arc::new(self)
    }

    fn report(&self, event: String) {
        if let Some(events) = &self.events {
            // The test may have stopped listening; that is fine.
            drop(events.send(event));
        }
    }
}

#[async_trait]
impl Endpoint for Probe {
    fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    fn version(&self) -> Version {
        self.version
    }

    fn has_method(&self, method: &str) -> bool {
        self.methods.iter().any(|m| m == method)
    }

    async fn dispatch(
        &self,
        ctx: Context,
        method: &str,
        args: Map<String, Value>,
    ) -> Result<Value, RemoteError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.report(format!("{}:{method}", self.label));
        let int = |key: &str| args.get(key).and_then(Value::as_i64).unwrap_or(0);
        match method {
            "echo" => Ok(Value::Object(args)),
            "context" => Ok(Value::Object(ctx.into_map())),
            "fail" => Err(RemoteError::builtin("ValueError", "bad")),
            "divide" => match (int("x"), int("y")) {
                (x, 0) => Err(RemoteError::from_application(
                    "DivisionByZero",
                    &CalcError::DivisionByZero { dividend: x },
                )
                .unwrap()),
                (x, y) => Ok(json!(x / y)),
            },
            "sleep" => {
                let ms = args.get("ms").and_then(Value::as_u64).unwrap_or(0);
                tokio::time::sleep(Duration::from_millis(ms)).await;
                self.report(format!("{}:sleep:done", self.label));
                Ok(json!(self.label))
            }
            _ => Ok(json!(self.label)),
        }
    }
}

async fn serve_with(
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

async fn serve(
    transport: &Transport,
    topic: &str,
    server: &str,
    endpoints: Vec<Arc<dyn Endpoint>>,
) -> RpcServer {
    serve_with(transport, topic, server, endpoints, ServerConfig::default()).await
}

/// Servers `s1`, `s2`, `s3` on topic `T`, each answering with its name and, if `events` is
/// given, reporting what it ran there.
async fn three_servers(
    transport: &Transport,
    events: Option<&mpsc::UnboundedSender<String>>,
) -> Vec<RpcServer> {
    let mut servers = Vec::new();
    for name in ["s1", "s2", "s3"] {
        let probe = match events {
            Some(tx) => Probe::new(name).reporting_to(tx),
            None => Probe::new(name),
        };
        servers.push(serve(transport, "T", name, vec![probe.arc()]).await);
    }
    servers
}

/// A client of `topic` that gives up after [`ANSWER`].
fn client(transport: &Transport, topic: &str) -> RpcClient {
    RpcClient::new(transport, Target::new(topic)).with_timeout(ANSWER)
}

async fn call_method(client: &RpcClient, method: &str) -> Result<String, RpcError> {
    client.call(&Context::new(), method, ()).await
}

/// Waits for exactly `count` events, then checks that nothing more arrives for [`QUIET`].
async fn expect_events(events: &mut mpsc::UnboundedReceiver<String>, count: usize) -> Vec<String> {
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
    let client = client(&transport, "T");
    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..30 {
        *answers
            .entry(call_method(&client, "whoami").await.unwrap())
            .or_default() += 1;
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
    let directed = client(&transport, "T").with_server("s2");
    for _ in 0..10 {
        assert_eq!(call_method(&directed, "whoami").await.unwrap(), "s2");
    }
    // The server override of prepare() does not stick to the original client.
    let original = client(&transport, "T");
    let _ = original.prepare().with_server("s3");
    assert_eq!(original.target().server_name(), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_cast_reaches_every_server() {
    let transport = Transport::memory();
    let (tx, mut events) = mpsc::unbounded_channel();
    let _servers = three_servers(&transport, Some(&tx)).await;
    client(&transport, "T")
        .with_fanout(true)
        .cast(&Context::new(), "record", ())
        .await
        .unwrap();
    let mut got = expect_events(&mut events, 3).await;
    got.sort();
    assert_eq!(got, ["s1:record", "s2:record", "s3:record"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cast_to_topic_reaches_exactly_one_server() {
    let transport = Transport::memory();
    let (tx, mut events) = mpsc::unbounded_channel();
    let _servers = three_servers(&transport, Some(&tx)).await;
    let client = client(&transport, "T");
    client.cast(&Context::new(), "record", ()).await.unwrap();
    assert_eq!(expect_events(&mut events, 1).await.len(), 1);
    // Three more casts: three deliveries in all (not nine), one per server.
    for _ in 0..3 {
        client.cast(&Context::new(), "record", ()).await.unwrap();
    }
    let mut got = expect_events(&mut events, 3).await;
    got.sort();
    assert_eq!(got, ["s1:record", "s2:record", "s3:record"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cast_gets_no_reply() {
    let driver = MemoryDriver::private();
    let transport = Transport::from_driver(Arc::new(driver.clone()));
    let (tx, mut events) = mpsc::unbounded_channel();
    let _server = serve(
        &transport,
        "T",
        "s1",
        vec![Probe::new("s1").reporting_to(&tx).arc()],
    )
    .await;
    let client = client(&transport, "T");

    // A cast returns as soon as it is published, while the method still runs.
    let started = Instant::now();
    let sent = client
        .cast(&Context::new(), "sleep", json!({"ms": 500}))
        .await;
    assert!(sent.is_ok(), "{sent:?}");
    assert!(
        started.elapsed() < Duration::from_millis(250),
        "cast waited for the method"
    );
    // A cast of a failing method succeeds too: nobody hears of the failure.
    let sent = client.cast(&Context::new(), "fail", ()).await;
    assert!(sent.is_ok(), "{sent:?}");
    let mut got = expect_events(&mut events, 3).await;
    got.sort();
    assert_eq!(got, ["s1:fail", "s1:sleep", "s1:sleep:done"]);
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
    let endpoints = [
        ("v13", Some("calc"), "1.3"),
        ("v131", Some("calc"), "1.3.1"),
        ("v20", Some("calc"), "2.0"),
        ("vdefault", None, "1.0"),
    ];
    let mut servers = Vec::new();
    for (topic, namespace, version) in endpoints {
        let mut probe = Probe::new(topic).at_version(version).with_methods(&["add"]);
        if let Some(namespace) = namespace {
            probe = probe.in_namespace(namespace);
        }
        servers.push(serve(&transport, topic, "s1", vec![probe.arc()]).await);
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
    let calc = Probe::new("calc").in_namespace("calc").at_version("1.3");
    let plain = Probe::new("plain");
    let (calc_calls, plain_calls) = (calc.calls(), plain.calls());
    let _calc = serve(&transport, "calc", "s1", vec![calc.arc()]).await;
    let _plain = serve(&transport, "plain", "s1", vec![plain.arc()]).await;
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
    let calc = Probe::new("calc")
        .in_namespace("calc")
        .at_version("1.3")
        .with_methods(&["add"]);
    let _calc = serve(&transport, "calc", "s1", vec![calc.arc()]).await;
    let calc_client = client(&transport, "calc").with_namespace("calc");

    let err = call_method(&calc_client.prepare().with_version(v("1.1")), "sub")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::NoSuchMethod { method } if method == "sub"),
        "{err:?}"
    );
    assert!(err.is_no_such_method());
    assert_eq!(err.to_string(), "Endpoint does not support RPC method sub");
    let err = call_method(&calc_client.prepare().with_version(v("2.0")), "sub")
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::UnsupportedVersion { version, method } if version == "2.0" && method == "sub"),
        "{err:?}"
    );
    // The method exists, but the version decides first.
    let err = call_method(&calc_client.prepare().with_version(v("2.0")), "add")
        .await
        .unwrap_err();
    assert!(err.is_unsupported_version(), "{err:?}");

    // Two compatible endpoints with the method: the first one answers.
    let first = Probe::new("first").in_namespace("ns");
    let second = Probe::new("second").in_namespace("ns");
    let _both = serve(&transport, "both", "s1", vec![first.arc(), second.arc()]).await;
    let both = client(&transport, "both").with_namespace("ns");
    for _ in 0..3 {
        assert_eq!(call_method(&both, "whoami").await.unwrap(), "first");
    }

    // An incompatible first endpoint is skipped.
    let old = Probe::new("old").in_namespace("ns").at_version("1.5");
    let new = Probe::new("new").in_namespace("ns").at_version("2.1");
    let _versions = serve(&transport, "versions", "s1", vec![old.arc(), new.arc()]).await;
    let versions = client(&transport, "versions").with_namespace("ns");
    let answer = call_method(&versions.prepare().with_version(v("2.0")), "whoami").await;
    assert_eq!(answer.unwrap(), "new");
    let answer = call_method(&versions.prepare().with_version(v("1.2")), "whoami").await;
    assert_eq!(answer.unwrap(), "old");

    // A compatible first endpoint without the method is passed over for one that has it.
    let lacking = Probe::new("lacking")
        .in_namespace("ns")
        .with_methods(&["other"]);
    let having = Probe::new("having").in_namespace("ns");
    let _methods = serve(
        &transport,
        "methods",
        "s1",
        vec![lacking.arc(), having.arc()],
    )
    .await;
    let methods = client(&transport, "methods").with_namespace("ns");
    assert_eq!(call_method(&methods, "whoami").await.unwrap(), "having");
    assert_eq!(call_method(&methods, "other").await.unwrap(), "lacking");
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
    ) -> Result<Value, RemoteError> {
        self.dispatched.store(true, Ordering::SeqCst);
        Ok(json!(method))
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
    let namespaced = Probe::new("calc").in_namespace("calc").arc();
    let _on = serve_with(&transport, "on", "s1", vec![namespaced], with_ping.clone()).await;
    let _off = serve(&transport, "off", "s1", vec![Probe::new("plain").arc()]).await;

    assert_eq!(
        call_method(&client(&transport, "on"), PING_METHOD)
            .await
            .unwrap(),
        "pong"
    );
    let err = call_method(
        &client(&transport, "on").with_namespace("calc"),
        PING_METHOD,
    )
    .await
    .unwrap_err();
    assert!(
        err.is_no_such_method(),
        "ping is not in namespace calc: {err:?}"
    );
    let err = call_method(
        &client(&transport, "on").with_version(v("1.1")),
        PING_METHOD,
    )
    .await
    .unwrap_err();
    assert!(err.is_unsupported_version(), "ping is version 1.0: {err:?}");

    let err = call_method(&client(&transport, "off"), PING_METHOD)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::NoSuchMethod { method } if method == PING_METHOD),
        "{err:?}"
    );

    // An endpoint defining the method itself keeps it; the ping endpoint is not added.
    let own = Probe::new("own-ping").with_methods(&[PING_METHOD]).arc();
    let _own = serve_with(&transport, "own", "s1", vec![own], with_ping).await;
    assert_eq!(
        call_method(&client(&transport, "own"), PING_METHOD)
            .await
            .unwrap(),
        "own-ping"
    );
}

// ---------------------------------------------------------------------------------------------
// Client-side rules: timeouts, version cap, targets
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_without_a_server_times_out_with_the_msg_id() {
    let transport = Transport::memory();
    let timeout = Duration::from_millis(200);
    let started = Instant::now();
    let err = call_method(
        &client(&transport, "nobody").with_timeout(timeout),
        "whoami",
    )
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
    let probe = Probe::new("capped").at_version("1.9");
    let calls = probe.calls();
    // Declare the queues, then leave them unconsumed: whatever is sent stays there.
    let server = serve(&transport, "capped", "s1", vec![probe.arc()]).await;
    server.stop().await;
    server.wait().await;
    assert_eq!(driver.queue_depth("capped"), Some(0));

    let capped = client(&transport, "capped").with_version_cap(v("1.3"));
    let above = capped.prepare().with_version(v("1.5"));
    let is_cap = |err: &RpcError, version: Option<Version>| matches!(err, RpcError::VersionCap { version: got, cap } if *got == version && *cap == v("1.3"));
    let err = call_method(&above, "whoami").await.unwrap_err();
    assert!(is_cap(&err, Some(v("1.5"))), "{err:?}");
    assert!(err.is_version_cap());
    assert!(
        err.to_string().contains("1.5") && err.to_string().contains("1.3"),
        "{err}"
    );
    let err = above.cast(&Context::new(), "record", ()).await.unwrap_err();
    assert!(is_cap(&err, Some(v("1.5"))), "{err:?}");
    // oslo: with a cap, a message without a version is refused too.
    let err = call_method(&capped, "whoami").await.unwrap_err();
    assert!(is_cap(&err, None), "{err:?}");
    let err = capped
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

    // Within the cap, the message is sent.
    let within = capped.prepare().with_version(v("1.3"));
    within.cast(&Context::new(), "record", ()).await.unwrap();
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
        client(&transport, "capped").can_send_version(&v("9.9")),
        "no cap allows all"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_targets_are_refused() {
    let transport = Transport::memory();
    let invalid = |result: &Result<(), RpcError>, needle: &str| matches!(result, Err(RpcError::InvalidTarget { reason, .. }) if reason.contains(needle));

    let fanout = client(&transport, "T").with_fanout(true);
    let call = fanout
        .call::<Value>(&Context::new(), "whoami", ())
        .await
        .map(drop);
    assert!(invalid(&call, "fanout"), "{call:?}");
    let cast = fanout.cast(&Context::new(), "record", ()).await;
    assert!(cast.is_ok(), "a fanout cast is valid: {cast:?}");

    let no_topic = RpcClient::new(&transport, Target::default()).with_timeout(ANSWER);
    let call = no_topic
        .call::<Value>(&Context::new(), "whoami", ())
        .await
        .map(drop);
    assert!(invalid(&call, "topic"), "{call:?}");
    let cast = no_topic.cast(&Context::new(), "record", ()).await;
    assert!(invalid(&cast, "topic"), "{cast:?}");

    let endpoints = || vec![Probe::new("x").arc()];
    let no_server = RpcServer::new(&transport, Target::new("T"), endpoints()).map(drop);
    assert!(invalid(&no_server, "server name"), "{no_server:?}");
    let no_topic =
        RpcServer::new(&transport, Target::default().with_server("s1"), endpoints()).map(drop);
    assert!(invalid(&no_topic, "topic"), "{no_topic:?}");
    let zero = ServerConfig::default().with_max_concurrency(0);
    let zero =
        RpcServer::with_config(&transport, Target::server("T", "s1"), endpoints(), zero).map(drop);
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
    let _server = serve(&transport, "raw", "s1", vec![Probe::new("s1").arc()]).await;
    let mut peer = RawPeer::new(&transport).await;
    let mut request = peer.call_request("m-noenv", "echo");
    request["args"] = json!({"text": "hi"});
    peer.publish_bytes("raw", serde_json::to_vec(&request).unwrap())
        .await;
    let reply = peer.expect_reply().await;
    assert_eq!(reply["_msg_id"], "m-noenv");
    assert_eq!(reply["result"], json!({"text": "hi"}));
    assert_eq!(reply["failure"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_in_an_envelope_2_1_is_dropped_and_the_server_keeps_serving() {
    let transport = Transport::memory();
    let probe = Probe::new("s1");
    let calls = probe.calls();
    let _server = serve(&transport, "raw", "s1", vec![probe.arc()]).await;
    let mut peer = RawPeer::new(&transport).await;

    let inner = peer.call_request("m-21", "whoami").to_string();
    let body = json!({"oslo.version": "2.1", "oslo.message": inner});
    peer.publish_bytes("raw", serde_json::to_vec(&body).unwrap())
        .await;
    assert!(
        peer.reply(QUIET).await.is_none(),
        "a 2.1 envelope was answered"
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_to_a_call_has_exactly_the_oslo_keys_inside_a_2_0_envelope() {
    let transport = Transport::memory();
    let _server = serve(&transport, "raw", "s1", vec![Probe::new("s1").arc()]).await;
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
    let _server = serve(&transport, "raw", "s1", vec![Probe::new("s1").arc()]).await;
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_without_args_is_served_with_empty_kwargs() {
    let transport = Transport::memory();
    let _server = serve(&transport, "raw", "s1", vec![Probe::new("s1").arc()]).await;
    let mut peer = RawPeer::new(&transport).await;
    let mut request = peer.call_request("m-noargs", "echo");
    request.as_object_mut().unwrap().remove("args");
    peer.publish("raw", &request).await;
    let reply = peer.expect_reply().await;
    assert_eq!(reply["failure"], Value::Null, "{reply:?}");
    assert_eq!(reply["result"], json!({}));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flattened_context_keys_arrive_unflattened_with_client_timeout() {
    let transport = Transport::memory();
    let _server = serve(&transport, "raw", "s1", vec![Probe::new("s1").arc()]).await;
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
        vec![Probe::new("s1").reporting_to(&tx).arc()],
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

    // The listener remembers the last 16 ids (oslo's `_MsgIdCache`): after 16 newer ids the
    // oldest is forgotten, while the newest is still known.
    for i in 0..17 {
        peer.publish("raw", &cast(&format!("w-{i}"))).await;
    }
    assert_eq!(expect_events(&mut events, 17).await.len(), 17);
    peer.publish("raw", &cast("w-16")).await;
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
    let _server = serve(transport, "raw", "s1", vec![Probe::new("s1").arc()]).await;
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
    let _server = serve(&transport, "T", "s1", vec![Probe::new("s1").arc()]).await;
    let client = client(&transport, "T");
    let ctx = Context::new()
        .with_request_id("req-42")
        .with_user_id("alice")
        .with_roles(["admin", "reader"])
        .with("nested", json!({"a": {"b": [1, 2]}, "n": null}));

    let seen: Value = client.call(&ctx, "context", ()).await.unwrap();
    let mut expected = ctx.as_map().clone();
    expected.insert("client_timeout".to_owned(), Value::Null);
    assert_eq!(seen, Value::Object(expected.clone()));

    let monitored = client
        .prepare()
        .with_call_monitor_timeout(Duration::from_secs(30));
    let seen: Value = monitored.call(&ctx, "context", ()).await.unwrap();
    assert_eq!(seen["client_timeout"].as_f64(), Some(30.0), "{seen:?}");
    let mut seen = seen.as_object().cloned().unwrap_or_default();
    seen.insert("client_timeout".to_owned(), Value::Null);
    assert_eq!(seen, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_errors_carry_class_module_message_and_typed_application_errors() {
    let transport = Transport::memory();
    let _server = serve(&transport, "T", "s1", vec![Probe::new("s1").arc()]).await;
    let client = client(&transport, "T");

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

    let ok: i64 = client
        .call(&Context::new(), "divide", json!({"x": 7, "y": 2}))
        .await
        .unwrap();
    assert_eq!(ok, 3);
}

// ---------------------------------------------------------------------------------------------
// Call monitoring and expiry
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_monitor_heartbeats_keep_a_long_call_alive() {
    let transport = Transport::memory();
    let _server = serve(&transport, "T", "s1", vec![Probe::new("slow").arc()]).await;
    let monitored = client(&transport, "T")
        .with_call_monitor_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(10));
    let started = Instant::now();
    // Without heartbeats (every 1 s) the 2 s monitor would fail this 3.5 s call.
    let (who, ()) = tokio::join!(
        call_method_with(&monitored, "sleep", json!({"ms": 3500})),
        heartbeats_on_the_wire_follow_the_call_monitor_timeout(&transport),
    );
    assert_eq!(who.unwrap(), "slow");
    assert!(started.elapsed() >= Duration::from_millis(3500));
}

async fn call_method_with(
    client: &RpcClient,
    method: &str,
    args: Value,
) -> Result<String, RpcError> {
    client.call(&Context::new(), method, args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn call_monitor_timeout_fails_a_call_when_heartbeats_stop() {
    let transport = Transport::memory();
    // Under 2 s the server sends no heartbeats at all, so a slow method trips the monitor.
    let _server = serve(&transport, "T", "s1", vec![Probe::new("slow").arc()]).await;
    let monitor = Duration::from_secs(1);
    let unserved = client(&transport, "nobody")
        .with_call_monitor_timeout(monitor)
        .with_timeout(Duration::from_secs(10));
    let silent = client(&transport, "T")
        .with_call_monitor_timeout(monitor)
        .with_timeout(Duration::from_secs(10));
    let timed = |c: RpcClient, args: Value| async move {
        let started = Instant::now();
        let result = call_method_with(&c, "sleep", args).await;
        (result, started.elapsed())
    };
    let ((unserved, unserved_took), (silent, silent_took)) = tokio::join!(
        timed(unserved, json!({"ms": 0})),
        timed(silent, json!({"ms": 2000})),
    );
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_call_requests_are_dropped_by_the_broker() {
    let driver = MemoryDriver::private();
    let transport = Transport::from_driver(Arc::new(driver.clone()));
    let probe = Probe::new("late");
    let calls = probe.calls();
    // Declare the queues (as a server that ran before would have), then stop consuming.
    let server = serve(&transport, "late", "s1", vec![probe.arc()]).await;
    server.stop().await;
    server.wait().await;

    let started = Instant::now();
    let short = client(&transport, "late").with_timeout(Duration::from_millis(200));
    let err = call_method(&short, "whoami").await.unwrap_err();
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
    assert_eq!(
        call_method(&client(&transport, "late"), "whoami")
            .await
            .unwrap(),
        "late"
    );
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
    let _server = serve(&server_side, "T", "s1", vec![Probe::new("vh").arc()]).await;

    let client_side = Transport::from_url(&url).await.unwrap();
    assert_eq!(
        call_method(&client(&client_side, "T"), "whoami")
            .await
            .unwrap(),
        "vh"
    );

    let elsewhere = Transport::from_url(&other).await.unwrap();
    let lost = client(&elsewhere, "T").with_timeout(Duration::from_millis(200));
    let err = call_method(&lost, "whoami").await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let private = client(&Transport::memory(), "T").with_timeout(Duration::from_millis(200));
    assert!(
        call_method(&private, "whoami")
            .await
            .unwrap_err()
            .is_timeout()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_share_one_reply_queue() {
    let driver = MemoryDriver::private();
    let transport = Transport::from_driver(Arc::new(driver.clone()));
    let _server = serve(&transport, "T", "s1", vec![Probe::new("s1").arc()]).await;
    let client = client(&transport, "T");
    let calls: Vec<_> = (0..200)
        .map(|i| {
            // Clones share the transport's reply queue, as every client of it does.
            let client = client.clone();
            tokio::spawn(async move {
                let echoed: Value = client
                    .call(&Context::new(), "echo", json!({"i": i}))
                    .await
                    .unwrap();
                (i, echoed)
            })
        })
        .collect();
    for call in calls {
        let (i, echoed) = call.await.unwrap();
        assert_eq!(echoed, json!({"i": i}));
    }
    let reply_queues: Vec<String> = driver
        .queue_names()
        .into_iter()
        .filter(|q| q.starts_with("reply_"))
        .collect();
    assert_eq!(reply_queues.len(), 1, "{reply_queues:?}");
}
