//! Hostile and odd input, over `memory://` and over RabbitMQ: for each message a peer could
//! put on the broker, what the caller gets (served, a failure reply, or nothing for a message
//! that cannot be answered), that nothing panicked, and that the server then serves a normal
//! call at once. Also Python's own JSON (`NaN`, `Infinity`, lone surrogates, integers beyond
//! 64 bits), which is not hostile but which serde_json refuses or changes.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use amqp_rpc::driver::{Destination, PublishOptions, Subscription};
use amqp_rpc::{
    Context, Endpoint, RpcClient, RpcError, ServerConfig, Target, Transport, TransportConfig,
    rpc_client, rpc_endpoint, wire,
};
use serde_json::{Map, Value, json};

use crate::common;
use common::{ANSWER, QUIET, serve_with, unique};

#[rpc_endpoint]
#[rpc_client]
trait Sink {
    async fn echo(&self, text: String) -> String;
    async fn add(&self, a: f64, b: f64) -> f64;
    async fn twice(&self, n: i64) -> i64;
    async fn big(&self, n: u128) -> u128;
    async fn same(&self, value: Value) -> Value;
    async fn maybe(&self, x: Option<i64>) -> Option<i64>;
    async fn unit(&self, nothing: ()) -> bool;
}

struct Handler {
    runs: Arc<AtomicUsize>,
}

impl Sink for Handler {
    async fn echo(&self, text: String) -> String {
        self.runs.fetch_add(1, Ordering::SeqCst);
        text
    }
    async fn add(&self, a: f64, b: f64) -> f64 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        a + b
    }
    async fn twice(&self, n: i64) -> i64 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        n.saturating_mul(2)
    }
    async fn big(&self, n: u128) -> u128 {
        self.runs.fetch_add(1, Ordering::SeqCst);
        n
    }
    async fn same(&self, value: Value) -> Value {
        self.runs.fetch_add(1, Ordering::SeqCst);
        value
    }
    async fn maybe(&self, x: Option<i64>) -> Option<i64> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        x
    }
    async fn unit(&self, _nothing: ()) -> bool {
        self.runs.fetch_add(1, Ordering::SeqCst);
        true
    }
}

/// The largest body the suite's server takes (small, so that "too large" is quick to send).
const LIMIT: usize = 1 << 20;

/// What a caller must see.
#[derive(Debug)]
enum Expect {
    /// A reply whose `result` is this JSON text (as Python would read it: `NaN` stays `NaN`).
    Result(&'static str),
    /// A failure reply of this class whose message holds this text.
    Failure(&'static str, &'static str),
    /// Nothing: the message cannot be answered (rejected without requeue), or is a cast.
    Nothing,
}

struct Case {
    name: &'static str,
    body: Vec<u8>,
    expect: Expect,
}

/// A peer speaking the wire format by hand through the transport's driver.
struct Peer {
    transport: Transport,
    topic: String,
    reply_q: String,
    replies: Box<dyn Subscription>,
}

impl Peer {
    async fn publish(&self, body: Vec<u8>) {
        let to = Destination::Rpc {
            exchange: None,
            topic: &self.topic,
            server: None,
        };
        let options = PublishOptions::default();
        self.transport
            .driver()
            .publish(to, body.into(), options)
            .await
            .unwrap();
    }

    /// The next reply within `wait`: its `_msg_id`, and the inner message's text.
    async fn reply(&mut self, wait: Duration) -> Option<(String, String)> {
        let delivery = tokio::time::timeout(wait, self.replies.next())
            .await
            .ok()?
            .unwrap();
        delivery.acker.ack().await.unwrap();
        // The envelope itself is plain JSON; the inner text is what Python's json.loads reads.
        let outer: Value = serde_json::from_slice(&delivery.body).unwrap();
        let inner = outer["oslo.message"].as_str().unwrap().to_owned();
        let msg_id = wire::open(&delivery.body).unwrap()["_msg_id"]
            .as_str()
            .unwrap()
            .to_owned();
        Some((msg_id, inner))
    }
}

/// The inner text of a call: `method` with `args` (JSON text, as Python might write it) and
/// `extra` fields (text after a comma, or empty).
fn call_text(method: &str, args: &str, msg_id: &str, reply_q: &str, extra: &str) -> String {
    let extra = match extra {
        "" => String::new(),
        extra => format!(", {extra}"),
    };
    format!(
        r#"{{"method": "{method}", "args": {args}, "_msg_id": "{msg_id}", "_reply_q": "{reply_q}", "_timeout": null, "_unique_id": "{}"{extra}}}"#,
        uuid::Uuid::new_v4().simple()
    )
}

/// `inner` in the 2.0 envelope, as Python's json.dumps writes it.
fn python_envelope(inner: &str) -> Vec<u8> {
    format!(
        r#"{{"oslo.version": "2.0", "oslo.message": {}}}"#,
        serde_json::to_string(inner).unwrap()
    )
    .into_bytes()
}

fn cases(reply_q: &str) -> Vec<Case> {
    let call = |name: &'static str, method: &str, args: &str, extra: &str, expect: Expect| {
        let inner = call_text(method, args, name, reply_q, extra);
        Case {
            name,
            body: python_envelope(&inner),
            expect,
        }
    };
    let raw = |name: &'static str, body: Vec<u8>, expect: Expect| Case { name, body, expect };
    let ids = format!(r#""_msg_id": "ID", "_reply_q": "{reply_q}""#);
    let with_ids = |name: &'static str, text: &str| text.replace("ID", name);
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    let many_keys: Map<String, Value> = (0..40_000).map(|i| (format!("k{i}"), json!(i))).collect();
    let huge = "x".repeat(2 * LIMIT);
    // A call that invalid UTF-8 is put into.
    let valid = python_envelope(&call_text(
        "echo",
        r#"{"text": "x"}"#,
        "invalid-utf8",
        reply_q,
        "",
    ));
    vec![
        // Python's JSON.
        call(
            "nan-to-f64",
            "add",
            r#"{"a": NaN, "b": 1.0}"#,
            "",
            Expect::Result("NaN"),
        ),
        call(
            "inf-to-f64",
            "add",
            r#"{"a": Infinity, "b": 1.0}"#,
            "",
            Expect::Result("Infinity"),
        ),
        call(
            "neg-inf",
            "add",
            r#"{"a": -Infinity, "b": -1e308}"#,
            "",
            Expect::Result("-Infinity"),
        ),
        call(
            "overflow",
            "add",
            r#"{"a": 1e308, "b": 1e308}"#,
            "",
            Expect::Result("Infinity"),
        ),
        call(
            "nan-to-i64",
            "twice",
            r#"{"n": NaN}"#,
            "",
            Expect::Failure(
                "ValueError",
                "twice() argument 'n': NaN cannot be held by i64",
            ),
        ),
        call(
            "nan-to-value",
            "same",
            r#"{"value": [1, NaN]}"#,
            "",
            Expect::Failure("ValueError", "NaN cannot be held"),
        ),
        call(
            "surrogate-to-string",
            "echo",
            r#"{"text": "a\ud800b"}"#,
            "",
            Expect::Failure("ValueError", r#""a\ud800b""#),
        ),
        call(
            "surrogate-pair",
            "echo",
            r#"{"text": "\ud83d\ude00"}"#,
            "",
            Expect::Result("\"\u{1F600}\""),
        ),
        call(
            "big-int-to-u128",
            "big",
            r#"{"n": 18446744073709551616}"#,
            "",
            Expect::Result("18446744073709551616"),
        ),
        call(
            "big-int-to-i64",
            "twice",
            r#"{"n": 18446744073709551616}"#,
            "",
            Expect::Failure(
                "ValueError",
                "the integer 18446744073709551616 cannot be held by i64",
            ),
        ),
        call(
            "nan-in-context",
            "twice",
            r#"{"n": 2}"#,
            r#""_context_x": NaN, "_context_s": "\udc80""#,
            Expect::Result("4"),
        ),
        // Arguments.
        call(
            "wrong-type",
            "twice",
            r#"{"n": "2"}"#,
            "",
            Expect::Failure("TypeError", "twice() argument 'n'"),
        ),
        call(
            "missing",
            "twice",
            "{}",
            "",
            Expect::Failure(
                "TypeError",
                "twice() missing 1 required positional argument: 'n'",
            ),
        ),
        call(
            "missing-value",
            "same",
            "{}",
            "",
            Expect::Failure(
                "TypeError",
                "same() missing 1 required positional argument: 'value'",
            ),
        ),
        call(
            "missing-unit",
            "unit",
            "{}",
            "",
            Expect::Failure(
                "TypeError",
                "unit() missing 1 required positional argument: 'nothing'",
            ),
        ),
        call(
            "null-value",
            "same",
            r#"{"value": null}"#,
            "",
            Expect::Result("null"),
        ),
        call("missing-option", "maybe", "{}", "", Expect::Result("null")),
        call(
            "extra",
            "twice",
            r#"{"n": 1, "m": 2}"#,
            "",
            Expect::Failure("TypeError", "unexpected keyword argument 'm'"),
        ),
        call(
            "args-array",
            "twice",
            "[1]",
            "",
            Expect::Failure("TypeError", "must be a mapping, not array"),
        ),
        call(
            "many-keys",
            "twice",
            &serde_json::to_string(&many_keys).unwrap(),
            "",
            Expect::Failure("TypeError", "unexpected keyword argument 'k0'"),
        ),
        call(
            "deep-args",
            "same",
            &deep,
            "",
            Expect::Failure("ValueError", "could not read the request"),
        ),
        call(
            "no-method",
            "",
            "{}",
            "",
            Expect::Failure("NoSuchMethod", ""),
        ),
        // Versions and namespaces.
        call(
            "bad-version",
            "twice",
            r#"{"n": 1}"#,
            r#""version": "1.x""#,
            Expect::Failure("ValueError", "invalid RPC version"),
        ),
        call(
            "numeric-version",
            "twice",
            r#"{"n": 1}"#,
            r#""version": 1.2"#,
            Expect::Failure("ValueError", "invalid RPC version"),
        ),
        call(
            "null-version",
            "twice",
            r#"{"n": 1}"#,
            r#""version": null"#,
            Expect::Failure("UnsupportedVersion", "RPC version None"),
        ),
        call(
            "future-version",
            "twice",
            r#"{"n": 1}"#,
            r#""version": "99.0""#,
            Expect::Failure("UnsupportedVersion", "99.0"),
        ),
        call(
            "numeric-namespace",
            "twice",
            r#"{"n": 1}"#,
            r#""namespace": 5"#,
            Expect::Failure("TypeError", "namespace must be a string, not number"),
        ),
        call(
            "other-namespace",
            "twice",
            r#"{"n": 1}"#,
            r#""namespace": "nope""#,
            Expect::Failure("UnsupportedVersion", ""),
        ),
        // Call-monitor timeouts and contexts.
        call(
            "huge-timeout",
            "twice",
            r#"{"n": 1}"#,
            r#""_timeout": 1e300"#,
            Expect::Result("2"),
        ),
        call(
            "negative-timeout",
            "twice",
            r#"{"n": 1}"#,
            r#""_timeout": -5"#,
            Expect::Result("2"),
        ),
        call(
            "string-timeout",
            "twice",
            r#"{"n": 1}"#,
            r#""_timeout": "soon""#,
            Expect::Result("2"),
        ),
        call(
            "nan-timeout",
            "twice",
            r#"{"n": 1}"#,
            r#""_timeout": NaN"#,
            Expect::Result("2"),
        ),
        call(
            "odd-context",
            "twice",
            r#"{"n": 1}"#,
            r#""_context_": [1], "_context_roles": {"a": [null]}"#,
            Expect::Result("2"),
        ),
        // Bodies that do not decode but say where the answer goes.
        raw(
            "invalid-utf8",
            [&valid[..60], b"\xff\xfe", &valid[60..]].concat(),
            Expect::Failure("ValueError", "could not read the request"),
        ),
        raw(
            "truncated",
            with_ids(
                "truncated",
                &format!(r#"{{"method": "echo", {ids}, "args": {{"text": "#),
            )
            .into_bytes(),
            Expect::Failure("ValueError", "could not read the request"),
        ),
        raw(
            "envelope-2.1",
            format!(
                r#"{{"oslo.version": "2.1", "oslo.message": {}}}"#,
                serde_json::to_string(&call_text(
                    "twice",
                    r#"{"n": 1}"#,
                    "envelope-2.1",
                    reply_q,
                    ""
                ))
                .unwrap()
            )
            .into_bytes(),
            Expect::Failure("ValueError", "unsupported oslo envelope version"),
        ),
        raw(
            "message-not-string",
            with_ids(
                "message-not-string",
                &format!(
                    r#"{{"oslo.version": "2.0", "oslo.message": {{"method": "twice", {ids}}}}}"#
                ),
            )
            .into_bytes(),
            Expect::Failure("ValueError", "oslo.message"),
        ),
        raw(
            "too-large",
            python_envelope(&call_text(
                "echo",
                &format!(r#"{{"text": "{huge}"}}"#),
                "too-large",
                reply_q,
                "",
            )),
            Expect::Failure("ValueError", "larger than the limit"),
        ),
        // Bodies that cannot be answered.
        raw("not-json", b"hello".to_vec(), Expect::Nothing),
        raw("not-an-object", b"[1, 2]".to_vec(), Expect::Nothing),
        raw("a-string", br#""call me""#.to_vec(), Expect::Nothing),
        raw("empty", Vec::new(), Expect::Nothing),
        raw(
            "inner-not-an-object",
            python_envelope("[1]"),
            Expect::Nothing,
        ),
        raw(
            "numeric-msg-id",
            python_envelope(&format!(
                r#"{{"method": "twice", "args": {{"n": 1}}, "_msg_id": 7, "_reply_q": "{reply_q}"}}"#
            )),
            Expect::Nothing,
        ),
        raw(
            "array-reply-q",
            python_envelope(
                r#"{"method": "twice", "args": {"n": 1}, "_msg_id": "array-reply-q", "_reply_q": ["q"]}"#,
            ),
            Expect::Nothing,
        ),
        raw(
            "huge-unanswerable",
            [b"{\"x\": \"".as_slice(), huge.as_bytes()].concat(),
            Expect::Nothing,
        ),
        // Un-enveloped (legacy) requests are served.
        raw(
            "legacy",
            call_text("twice", r#"{"n": 21}"#, "legacy", reply_q, "").into_bytes(),
            Expect::Result("42"),
        ),
        raw(
            "legacy-nan",
            call_text("add", r#"{"a": NaN, "b": 0}"#, "legacy-nan", reply_q, "").into_bytes(),
            Expect::Result("NaN"),
        ),
    ]
}

/// Counts panics anywhere in this test binary but in test code: the library and its
/// dependencies must not panic on hostile input, while other tests, running beside this one in
/// the same process, panic on purpose in their handlers (a panic in test code, an `unwrap`
/// included, is located in `tests/`).
fn count_panics() -> Arc<AtomicUsize> {
    static PANICS: std::sync::OnceLock<Arc<AtomicUsize>> = std::sync::OnceLock::new();
    Arc::clone(PANICS.get_or_init(|| {
        let count = Arc::new(AtomicUsize::new(0));
        let counted = Arc::clone(&count);
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info
                .location()
                .is_some_and(|at| at.file().starts_with("tests/"))
            {
                counted.fetch_add(1, Ordering::SeqCst);
            }
            previous(info);
        }));
        count
    }))
}

/// Runs every case against a server of a fresh topic; returns the topic.
async fn run_suite(transport: Transport) -> String {
    let panics = count_panics();
    let topic = unique("hostile");
    let runs = Arc::new(AtomicUsize::new(0));
    let endpoint: Arc<dyn Endpoint> = Arc::new(SinkEndpoint::new(Handler {
        runs: Arc::clone(&runs),
    }));
    let server = serve_with(
        &transport,
        &topic,
        "s1",
        vec![endpoint],
        ServerConfig::default().with_max_concurrency(4),
    )
    .await;
    let queue = transport.driver().listen_replies().await.unwrap();
    let mut peer = Peer {
        transport: transport.clone(),
        topic: topic.clone(),
        reply_q: queue.name,
        replies: queue.subscription,
    };
    let client = SinkClient::new(&transport, &topic).with_timeout(Duration::from_secs(2));
    let mut failures = Vec::new();
    for case in cases(&peer.reply_q.clone()) {
        let before = panics.load(Ordering::SeqCst);
        peer.publish(case.body).await;
        let wait = match case.expect {
            Expect::Nothing => QUIET,
            _ => ANSWER,
        };
        let reply = peer.reply(wait).await;
        let outcome = check(case.name, &case.expect, reply);
        // The server serves a normal call at once afterwards.
        let normal = client.twice(21).await;
        if !matches!(normal, Ok(42)) {
            failures.push(format!("{}: the next call got {normal:?}", case.name));
        }
        if let Err(e) = outcome {
            failures.push(e);
        }
        if panics.load(Ordering::SeqCst) != before {
            failures.push(format!("{}: panicked", case.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    server.stop().await;
    server.wait().await;
    topic
}

fn check(name: &str, expect: &Expect, reply: Option<(String, String)>) -> Result<(), String> {
    let Some((msg_id, inner)) = reply else {
        return match expect {
            Expect::Nothing => Ok(()),
            _ => Err(format!("{name}: no reply, expected {expect:?}")),
        };
    };
    if msg_id != name {
        return Err(format!("{name}: a reply to {msg_id}: {inner}"));
    }
    let opened = wire::open(&python_envelope(&inner)).unwrap();
    match expect {
        Expect::Nothing => Err(format!("{name}: expected no reply, got {inner}")),
        Expect::Result(text) => {
            let wanted = format!(r#""result":{text},"#);
            match inner.contains(&wanted) && opened["failure"].is_null() {
                true => Ok(()),
                false => Err(format!("{name}: expected result {text}, got {inner}")),
            }
        }
        Expect::Failure(class, fragment) => {
            let failure: Value = opened["failure"]
                .as_str()
                .and_then(|f| serde_json::from_str(f).ok())
                .unwrap_or_default();
            let message = failure["message"].as_str().unwrap_or_default();
            match failure["class"] == *class && message.contains(fragment) {
                true => Ok(()),
                false => Err(format!(
                    "{name}: expected {class} with {fragment:?}, got {failure}"
                )),
            }
        }
    }
}

fn limited(config: TransportConfig) -> TransportConfig {
    config.with_max_message_size(LIMIT)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_hostile_message_gets_its_answer_over_memory() {
    let url = format!("memory:///{}", unique("hostile"));
    let transport = Transport::from_url_with_config(&url, limited(TransportConfig::default()))
        .await
        .unwrap();
    run_suite(transport).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn every_hostile_message_gets_its_answer_over_rabbitmq() {
    let url = common::test_broker!();
    let config = limited(TransportConfig::default());
    let transport = Transport::from_url_with_config(&url, config).await.unwrap();
    let topic = run_suite(transport.clone()).await;
    transport.close().await;
    // Nothing was requeued: a rejected message would be back in the server's queues.
    let amqp = url.replacen("rabbit://", "amqp://", 1);
    let connection = lapin::Connection::connect(&amqp, lapin::ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    for queue in [topic.clone(), format!("{topic}.s1")] {
        let options = lapin::options::QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let declared = channel
            .queue_declare(queue.as_str().into(), options, Default::default())
            .await
            .unwrap();
        assert_eq!(declared.message_count(), 0, "messages left in {queue}");
    }
    connection.close(200, "done".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rust_caller_gets_python_values_back_and_sends_its_own_as_python_writes_them() {
    let transport = Transport::memory();
    let topic = unique("py-values");
    let endpoint: Arc<dyn Endpoint> = Arc::new(SinkEndpoint::new(Handler {
        runs: Arc::default(),
    }));
    let _server = serve_with(
        &transport,
        &topic,
        "s1",
        vec![endpoint],
        ServerConfig::default(),
    )
    .await;
    let client = SinkClient::new(&transport, &topic);
    let ctx = Context::new();
    let sum = client.add(f64::NAN, 1.0).await.unwrap();
    assert!(sum.is_nan());
    assert_eq!(client.add(f64::INFINITY, 1.0).await.unwrap(), f64::INFINITY);
    assert_eq!(client.add(1e308, 1e308).await.unwrap(), f64::INFINITY);
    assert_eq!(client.big(u128::MAX).await.unwrap(), u128::MAX);
    assert_eq!(client.maybe(None).await.unwrap(), None);
    // A NaN in a Value result cannot be decoded as a Value by the caller: an error at once.
    let raw = RpcClient::new(&transport, Target::new(&topic));
    let err = raw
        .call::<Value>(&ctx, "add", json!({"a": 1.0, "b": 1.0}))
        .await;
    assert_eq!(err.unwrap(), json!(2.0));
    let err = raw
        .call::<Value>(&ctx, "add", json!({"a": 1e308, "b": 1e308}))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::Decode { .. }) && err.to_string().contains("Infinity"),
        "{err}"
    );
    // A missing argument is named, whatever its type.
    let err = raw
        .call::<Value>(&ctx, "same", json!({}))
        .await
        .unwrap_err();
    let remote = err.remote().unwrap();
    assert_eq!(
        (remote.class(), remote.message()),
        (
            "TypeError",
            "same() missing 1 required positional argument: 'value'"
        )
    );
}

/// Makes a reply body for a `_msg_id`.
type MakeReply = Box<dyn Fn(&str) -> Vec<u8> + Send>;

/// A server that answers each call with `reply(msg_id)` as the reply body.
async fn answer_with(
    transport: &Transport,
    topic: &str,
    reply: impl Fn(&str) -> Vec<u8> + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    let target = Target::server(topic, "raw");
    let mut requests = transport.driver().listen_rpc(&target, 0).await.unwrap();
    let transport = transport.clone();
    tokio::spawn(async move {
        while let Ok(delivery) = requests.next().await {
            delivery.acker.ack().await.unwrap();
            let request = wire::open(&delivery.body).unwrap();
            let (msg_id, reply_q) = (
                request["_msg_id"].as_str().unwrap(),
                request["_reply_q"].as_str().unwrap(),
            );
            let to = Destination::Reply { queue: reply_q };
            let options = PublishOptions::default();
            let body = reply(msg_id);
            let _ = transport.driver().publish(to, body.into(), options).await;
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_that_cannot_be_read_fails_its_call_at_once_with_a_typed_error() {
    let url = format!("memory:///{}", unique("bad-replies"));
    let config = TransportConfig::default().with_max_message_size(4096);
    let transport = Transport::from_url_with_config(&url, config).await.unwrap();
    let ctx = Context::new();
    let bodies: Vec<(&str, MakeReply)> = vec![
        (
            "truncated",
            Box::new(|id: &str| {
                format!(r#"{{"oslo.version": "2.0", "oslo.message": "{{\"_msg_id\": \"{id}\", \"result\": [1, "#)
                    .into_bytes()
            }),
        ),
        (
            "bad failure",
            Box::new(|id: &str| {
                python_envelope(&format!(
                    r#"{{"_msg_id": "{id}", "result": null, "failure": 5, "ending": true}}"#
                ))
            }),
        ),
        (
            "too large",
            Box::new(|id: &str| {
                let big = "x".repeat(8192);
                python_envelope(&format!(
                    r#"{{"_msg_id": "{id}", "result": "{big}", "failure": null, "ending": true}}"#
                ))
            }),
        ),
    ];
    for (what, body) in bodies {
        let topic = unique("bad-reply");
        let server = answer_with(&transport, &topic, body).await;
        let client =
            RpcClient::new(&transport, Target::new(&topic)).with_timeout(Duration::from_secs(30));
        let started = std::time::Instant::now();
        let err = client
            .call::<Value>(&ctx, "anything", json!({}))
            .await
            .unwrap_err();
        assert!(matches!(err, RpcError::Wire(_)), "{what}: {err:?}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{what}: the call waited {:?}",
            started.elapsed()
        );
        server.abort();
    }
}
