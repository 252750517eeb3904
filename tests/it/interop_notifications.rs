//! Notifications between Rust and the real Python oslo.messaging 18.3.1 (issue 16), both ways,
//! over the local RabbitMQ: every priority and field, both notifier drivers, pools, filters,
//! batches, requeue, and notifications published before any listener exists.
//!
//! The Python side is `tests/interop/peer.py` (see `tests/interop/README.md`); each test starts
//! its own peer and uses its own exchange and topic, so that the tests share nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use amqp_rpc::notify::{
    BatchNotificationEndpoint, HandlerError, Incoming, Notification, NotificationEndpoint,
    NotificationFilter, NotificationListener, NotificationResult, Notifier, NotifierDriver,
    Priorities, Priority, Typed,
};
use amqp_rpc::{Context, Transport, async_trait};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::common::peer::{PythonPeer, Received};
use crate::common::{test_broker, unique};

/// How long a notification may take to cross the broker and the peer.
const ARRIVE: Duration = Duration::from_secs(20);
/// How long we watch before concluding that nothing more arrives.
const QUIET: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct InstanceCreated {
    id: u64,
    host: String,
}

impl Notification for InstanceCreated {
    const EVENT_TYPE: &'static str = "compute.instance.create.end";
}

/// An endpoint that sends every notification it gets to a channel, answers `Requeue` to the
/// first `requeue_first` of them, and `Handled` afterwards.
struct Recorder {
    priorities: Priorities,
    filter: Option<NotificationFilter>,
    requeue_first: AtomicUsize,
    seen: mpsc::UnboundedSender<Incoming>,
}

#[async_trait]
impl NotificationEndpoint for Recorder {
    fn priorities(&self) -> Priorities {
        self.priorities
    }
    fn filter(&self) -> Option<&NotificationFilter> {
        self.filter.as_ref()
    }
    async fn handle(&self, n: &Incoming) -> Result<NotificationResult, HandlerError> {
        let _ = self.seen.send(n.clone());
        let requeue = self
            .requeue_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
                left.checked_sub(1)
            })
            .is_ok();
        Ok(match requeue {
            true => NotificationResult::Requeue,
            false => NotificationResult::Handled,
        })
    }
}

fn recorder(priorities: impl Into<Priorities>) -> (Recorder, mpsc::UnboundedReceiver<Incoming>) {
    let (seen, rx) = mpsc::unbounded_channel();
    let recorder = Recorder {
        priorities: priorities.into(),
        filter: None,
        requeue_first: AtomicUsize::new(0),
        seen,
    };
    (recorder, rx)
}

/// Exactly `count` notifications within [`ARRIVE`], then none for [`QUIET`].
async fn exactly(rx: &mut mpsc::UnboundedReceiver<Incoming>, count: usize) -> Vec<Incoming> {
    let mut got = Vec::new();
    while got.len() < count {
        match tokio::time::timeout(ARRIVE, rx.recv()).await {
            Ok(Some(n)) => got.push(n),
            other => panic!(
                "expected {count} notifications, got {} then {other:?}",
                got.len()
            ),
        }
    }
    if let Ok(Some(extra)) = tokio::time::timeout(QUIET, rx.recv()).await {
        panic!("expected exactly {count} notifications, then got {extra:?}");
    }
    got
}

/// Exactly `count` notifications received by Python listener `name` within [`ARRIVE`], and no
/// more after [`QUIET`].
async fn py_exactly(py: &PythonPeer, name: &str, count: usize) -> Received {
    let got = py.received(name, count, ARRIVE).await;
    assert_eq!(
        got.notifications.len(),
        count,
        "Python listener {name} got {:#?}",
        got.notifications
    );
    tokio::time::sleep(QUIET).await;
    let after = py.received(name, 0, Duration::ZERO).await;
    assert_eq!(after, got, "Python listener {name} got more");
    got
}

/// The `(exchange, topic)` of one test.
fn names(prefix: &str) -> (String, String) {
    (
        unique(&format!("{prefix}-x")),
        unique(&format!("{prefix}-t")),
    )
}

async fn rabbit(url: &str) -> Transport {
    Transport::from_url(url).await.unwrap()
}

/// Checks that `id` is a uuid4 written with dashes, as oslo's `str(uuid4())`.
fn assert_oslo_message_id(id: &str) {
    let parsed = uuid::Uuid::parse_str(id).unwrap_or_else(|e| panic!("{id}: {e}"));
    assert_eq!(parsed.hyphenated().to_string(), id, "message_id {id}");
    assert_eq!(parsed.get_version_num(), 4, "message_id {id}");
}

/// Checks that `ts` reads as Python's `str()` of a naive datetime: `YYYY-MM-DD HH:MM:SS`
/// and `.ffffff` unless the microseconds are 0.
fn assert_oslo_timestamp(ts: &str) {
    let b = ts.as_bytes();
    let digits = |from: usize, to: usize| b[from..to].iter().all(u8::is_ascii_digit);
    let ok = (b.len() == 19 || b.len() == 26)
        && digits(0, 4)
        && b[4] == b'-'
        && digits(5, 7)
        && b[7] == b'-'
        && digits(8, 10)
        && b[10] == b' '
        && digits(11, 13)
        && b[13] == b':'
        && digits(14, 16)
        && b[16] == b':'
        && digits(17, 19)
        && (b.len() == 19 || (b[19] == b'.' && digits(20, 26)));
    assert!(ok, "timestamp {ts:?}");
}

/// The context oslo's endpoints get for `ctxt` sent as `_context_*` keys: those keys plus
/// `client_timeout: null`.
fn as_received(mut ctxt: Value) -> Value {
    ctxt["client_timeout"] = Value::Null;
    ctxt
}

fn py_ctxt() -> Value {
    json!({"user": "u1", "project_id": "p1", "request_id": "req-1"})
}

fn rust_ctx() -> Context {
    Context::new()
        .with("user", "u1")
        .with_project_id("p1")
        .with_request_id("req-1")
}

/// The Python notifier methods and the priority each sends.
const PY_PRIORITIES: [(&str, Priority); 8] = [
    ("audit", Priority::Audit),
    ("debug", Priority::Debug),
    ("info", Priority::Info),
    ("warn", Priority::Warn),
    ("warning", Priority::Warn),
    ("error", Priority::Error),
    ("critical", Priority::Critical),
    ("sample", Priority::Sample),
];

const ALL_LOWER: [&str; 7] = [
    "audit", "debug", "info", "warn", "error", "critical", "sample",
];

// ---------------------------------------------------------------------------------------------
// Python Notifier -> Rust listener
// ---------------------------------------------------------------------------------------------

/// A Python `Notifier` with `driver` sends at every priority, with an object context, a plain
/// dict context and no publisher id; a Rust listener (a raw endpoint, then a typed one) gets
/// each once with what oslo wrote, which a Python listener in a pool of its own sees too.
async fn python_notifier_reaches_a_rust_listener(driver: &str) {
    let url = test_broker!();
    let transport = rabbit(&url).await;
    let (exchange, topic) = names("py2rs");
    let py = PythonPeer::start(&url).await;
    // What oslo itself reads from the same messages, to compare with.
    py.listen(
        "witness",
        &[(Some(&exchange), &topic)],
        &ALL_LOWER,
        json!({"pool": unique("witness")}),
    )
    .await;
    let (endpoint, mut seen) = recorder(Priorities::all());
    let (typed_tx, mut typed_rx) = mpsc::unbounded_channel();
    let listener = NotificationListener::builder(&transport)
        .target(&exchange, &topic)
        .endpoint(endpoint)
        .endpoint(Typed::new(
            Priorities::all(),
            move |n: Incoming<InstanceCreated>| {
                let typed_tx = typed_tx.clone();
                async move {
                    let _ = typed_tx.send((n.priority, n.payload));
                }
            },
        ))
        .build()
        .unwrap();
    listener.start().await.unwrap();

    let mut expected = BTreeMap::new();
    for (id, (method, priority)) in PY_PRIORITIES.into_iter().enumerate() {
        let payload = json!({"id": id, "host": format!("h{id}")});
        let options = json!({
            "driver": driver, "exchange": exchange, "publisher_id": "compute.host1",
            "ctxt": py_ctxt(), "ctxt_kind": "object",
        });
        py.notify(
            &topic,
            method,
            InstanceCreated::EVENT_TYPE,
            payload,
            options,
        )
        .await;
        expected.insert(
            id,
            (priority, Some("compute.host1"), as_received(py_ctxt())),
        );
    }
    // A plain dict context sends no context keys; no publisher id sends null.
    let dict = json!({"driver": driver, "exchange": exchange, "publisher_id": "compute.host1",
        "ctxt": py_ctxt(), "ctxt_kind": "dict"});
    py.notify(
        &topic,
        "info",
        InstanceCreated::EVENT_TYPE,
        json!({"id": 8, "host": "h8"}),
        dict,
    )
    .await;
    expected.insert(
        8,
        (
            Priority::Info,
            Some("compute.host1"),
            as_received(json!({})),
        ),
    );
    let anonymous = json!({"driver": driver, "exchange": exchange});
    py.notify(
        &topic,
        "error",
        InstanceCreated::EVENT_TYPE,
        json!({"id": 9, "host": "h9"}),
        anonymous,
    )
    .await;
    expected.insert(9, (Priority::Error, None, as_received(json!({}))));

    let got = exactly(&mut seen, expected.len()).await;
    let witness = py_exactly(&py, "witness", expected.len()).await;
    let by_id = |n: &Value| n["payload"]["id"].as_u64().unwrap() as usize;
    let witnessed: BTreeMap<usize, &Value> = witness
        .notifications
        .iter()
        .map(|n| (by_id(n), n))
        .collect();
    let mut message_ids = BTreeSet::new();
    for n in &got {
        let id = n.payload["id"].as_u64().unwrap() as usize;
        let (priority, publisher_id, ctxt) = &expected[&id];
        assert_eq!(n.priority, *priority, "{n:?}");
        assert_eq!(n.publisher_id.as_deref(), *publisher_id, "{n:?}");
        assert_eq!(n.event_type.as_deref(), Some(InstanceCreated::EVENT_TYPE));
        assert_eq!(n.payload, json!({"id": id, "host": format!("h{id}")}));
        assert_eq!(&Value::Object(n.context.as_map().clone()), ctxt, "{n:?}");
        let message_id = n.metadata.message_id.as_deref().unwrap();
        let timestamp = n.metadata.timestamp.as_deref().unwrap();
        assert_oslo_message_id(message_id);
        assert_oslo_timestamp(timestamp);
        message_ids.insert(message_id.to_owned());
        // Exactly what oslo's own listener read from the same message.
        let py = witnessed[&id];
        assert_eq!(py["priority"], n.priority.as_lower());
        assert_eq!(py["publisher_id"], json!(n.publisher_id));
        assert_eq!(py["event_type"], json!(n.event_type));
        assert_eq!(py["ctxt"], *ctxt);
        assert_eq!(
            py["metadata"],
            json!({"message_id": message_id, "timestamp": timestamp})
        );
    }
    assert_eq!(message_ids.len(), expected.len(), "one message id each");

    // The typed endpoint got every one too, decoded.
    let mut typed = Vec::new();
    for _ in 0..expected.len() {
        let next = tokio::time::timeout(ARRIVE, typed_rx.recv()).await;
        typed.push(next.unwrap().unwrap());
    }
    typed.sort_by_key(|(_, payload)| payload.id);
    let want: Vec<(Priority, InstanceCreated)> = expected
        .iter()
        .map(|(id, (priority, _, _))| {
            let payload = InstanceCreated {
                id: *id as u64,
                host: format!("h{id}"),
            };
            (*priority, payload)
        })
        .collect();
    assert_eq!(typed, want);
    listener.stop().await;
    py.quit().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn python_messagingv2_notifier_reaches_a_rust_listener_with_every_field() {
    python_notifier_reaches_a_rust_listener("messagingv2").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn python_messaging_v1_notifier_reaches_a_rust_listener_with_every_field() {
    python_notifier_reaches_a_rust_listener("messaging").await;
}

// ---------------------------------------------------------------------------------------------
// Rust Notifier -> Python listener
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn rust_notifier_both_drivers_reach_a_python_listener_with_every_field() {
    let url = test_broker!();
    let transport = rabbit(&url).await;
    let (exchange, topic) = names("rs2py");
    let py = PythonPeer::start(&url).await;
    py.listen("py", &[(Some(&exchange), &topic)], &ALL_LOWER, json!({}))
        .await;
    let notifier = Notifier::new(&transport, "compute.host1")
        .with_exchange(&exchange)
        .with_topics([&topic]);
    let anonymous = Notifier::anonymous(&transport)
        .with_exchange(&exchange)
        .with_topics([&topic]);
    // payload -> (priority, publisher_id, ctxt as Python's endpoint gets it)
    let mut expected: BTreeMap<String, (&str, Value, Value)> = BTreeMap::new();
    for driver in [NotifierDriver::MessagingV2, NotifierDriver::Messaging] {
        let notifier = notifier.with_driver(driver);
        for priority in Priority::ALL {
            let payload = json!({"driver": driver.name(), "priority": priority.as_lower()});
            notifier
                .notify(&rust_ctx(), priority, "compute.instance.update", &payload)
                .await
                .unwrap();
            expected.insert(
                payload.to_string(),
                (
                    priority.as_lower(),
                    json!("compute.host1"),
                    as_received(py_ctxt()),
                ),
            );
        }
        // Typed, without publisher id or context.
        let created = InstanceCreated {
            id: 7,
            host: driver.name().to_owned(),
        };
        anonymous
            .with_driver(driver)
            .sample(&Context::new(), &created)
            .await
            .unwrap();
        expected.insert(
            serde_json::to_value(&created).unwrap().to_string(),
            ("sample", Value::Null, as_received(json!({}))),
        );
    }
    let got = py_exactly(&py, "py", expected.len()).await;
    let mut message_ids = BTreeSet::new();
    for n in &got.notifications {
        let (priority, publisher_id, ctxt) = &expected[&n["payload"].to_string()];
        assert_eq!(n["priority"], *priority, "{n}");
        assert_eq!(n["publisher_id"], *publisher_id, "{n}");
        assert_eq!(n["ctxt"], *ctxt, "{n}");
        let event_type = match n["payload"].get("id") {
            Some(_) => InstanceCreated::EVENT_TYPE,
            None => "compute.instance.update",
        };
        assert_eq!(n["event_type"], event_type, "{n}");
        assert_eq!(n["result"], "handled");
        let metadata = n["metadata"].as_object().unwrap();
        assert_eq!(metadata.len(), 2, "{n}");
        let message_id = metadata["message_id"].as_str().unwrap();
        assert_oslo_message_id(message_id);
        assert_oslo_timestamp(metadata["timestamp"].as_str().unwrap());
        message_ids.insert(message_id.to_owned());
    }
    assert_eq!(message_ids.len(), expected.len(), "one message id each");
    py.quit().await;
}

// ---------------------------------------------------------------------------------------------
// Pools
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn pools_span_languages_and_each_pool_and_the_plain_queue_get_everything() {
    let url = test_broker!();
    let transport = rabbit(&url).await;
    let (exchange, topic) = names("pools");
    let (shared, other) = (unique("shared"), unique("other"));
    let py = PythonPeer::start(&url).await;
    let target = [(Some(exchange.as_str()), topic.as_str())];
    py.listen("py-shared", &target, &["info"], json!({"pool": shared}))
        .await;
    py.listen("py-other", &target, &["info"], json!({"pool": other}))
        .await;
    let (endpoint, mut rust_shared) = recorder(Priority::Info);
    let pooled = NotificationListener::builder(&transport)
        .target(&exchange, &topic)
        .pool(&shared)
        .endpoint(endpoint)
        .build()
        .unwrap();
    pooled.start().await.unwrap();
    let (endpoint, mut rust_plain) = recorder(Priority::Info);
    let plain = NotificationListener::builder(&transport)
        .target(&exchange, &topic)
        .endpoint(endpoint)
        .build()
        .unwrap();
    plain.start().await.unwrap();

    // 10 from Python, 10 from Rust, all on one stream.
    let per_side = 10;
    py.notify(
        &topic,
        "info",
        "e.python",
        json!({"from": "python"}),
        json!({"exchange": exchange, "publisher_id": "py", "count": per_side}),
    )
    .await;
    let notifier = Notifier::new(&transport, "rs")
        .with_exchange(&exchange)
        .with_topics([&topic]);
    for n in 0..per_side {
        notifier
            .notify(&rust_ctx(), Priority::Info, "e.rust", &json!({"n": n}))
            .await
            .unwrap();
    }
    let total = 2 * per_side as usize;
    let id_of = |n: &Value| n["metadata"]["message_id"].as_str().unwrap().to_owned();

    // The plain Rust queue and the other pool get every notification, once.
    let everything: BTreeSet<String> = exactly(&mut rust_plain, total)
        .await
        .iter()
        .map(|n| n.metadata.message_id.clone().unwrap())
        .collect();
    assert_eq!(everything.len(), total);
    let other_got: BTreeSet<String> = py_exactly(&py, "py-other", total)
        .await
        .notifications
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(other_got, everything);

    // The shared pool: each notification to exactly one member, together all of them.
    let mut rust_ids = Vec::new();
    let deadline = Instant::now() + ARRIVE;
    let mut py_ids: Vec<String> = Vec::new();
    while rust_ids.len() + py_ids.len() < total {
        assert!(
            Instant::now() < deadline,
            "the pool got {} + {} of {total}",
            rust_ids.len(),
            py_ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        while let Ok(n) = rust_shared.try_recv() {
            rust_ids.push(n.metadata.message_id.unwrap());
        }
        let got = py.received("py-shared", 0, Duration::ZERO).await;
        py_ids = got.notifications.iter().map(id_of).collect();
    }
    tokio::time::sleep(QUIET).await;
    while let Ok(n) = rust_shared.try_recv() {
        rust_ids.push(n.metadata.message_id.unwrap());
    }
    let got = py.received("py-shared", 0, Duration::ZERO).await;
    py_ids = got.notifications.iter().map(id_of).collect();
    assert_eq!(rust_ids.len() + py_ids.len(), total, "nothing twice");
    assert!(
        !rust_ids.is_empty() && !py_ids.is_empty(),
        "both members take a share: Rust {}, Python {}",
        rust_ids.len(),
        py_ids.len()
    );
    let union: BTreeSet<String> = rust_ids.into_iter().chain(py_ids).collect();
    assert_eq!(union, everything);

    pooled.stop().await;
    plain.stop().await;
    py.quit().await;
}

// ---------------------------------------------------------------------------------------------
// Filters
// ---------------------------------------------------------------------------------------------

/// Five notifications, of which the first and the last match the filters below.
/// `(publisher_id, event_type, project_id, state)`.
const FILTER_CASES: [(&str, &str, &str, &str); 5] = [
    ("compute.host1", "compute.instance.update", "p1", "active"),
    ("network.host1", "compute.instance.update", "p1", "active"),
    ("compute.host1", "volume.update", "p1", "active"),
    ("compute.host1", "compute.instance.update", "p2", "active"),
    (
        "compute.host2",
        "compute.instance.delete",
        "p1",
        "active-ish",
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn filters_on_both_sides_pass_only_matching_notifications() {
    let url = test_broker!();
    let transport = rabbit(&url).await;
    let (exchange, topic) = names("filters");
    let py = PythonPeer::start(&url).await;

    // Python listener with oslo's NotificationFilter, Rust notifier.
    let filter = json!({
        "publisher_id": "^compute\\.", "event_type": "compute\\.instance\\.",
        "context": {"project_id": "^p1$"}, "payload": {"state": "active"},
    });
    py.listen(
        "filtered",
        &[(Some(&exchange), &topic)],
        &["info"],
        json!({"filter": filter}),
    )
    .await;
    let notifier = Notifier::new(&transport, "unused")
        .with_exchange(&exchange)
        .with_topics([&topic]);
    for (publisher_id, event_type, project_id, state) in FILTER_CASES {
        notifier
            .with_publisher_id(publisher_id)
            .notify(
                &rust_ctx().with_project_id(project_id),
                Priority::Info,
                event_type,
                &json!({"state": state, "publisher": publisher_id}),
            )
            .await
            .unwrap();
    }
    let got = py_exactly(&py, "filtered", 2).await;
    let mut passed: Vec<(Value, Value)> = got
        .notifications
        .iter()
        .map(|n| (n["publisher_id"].clone(), n["payload"].clone()))
        .collect();
    passed.sort_by_key(|(p, _)| p.to_string());
    assert_eq!(
        passed,
        [
            (
                json!("compute.host1"),
                json!({"state": "active", "publisher": "compute.host1"})
            ),
            (
                json!("compute.host2"),
                json!({"state": "active-ish", "publisher": "compute.host2"})
            ),
        ]
    );

    // Rust listener with a NotificationFilter, Python notifier.
    let (rust_exchange, rust_topic) = names("filters-rs");
    let (mut endpoint, mut seen) = recorder(Priority::Info);
    endpoint.filter = Some(
        NotificationFilter::new()
            .publisher_id("^compute\\.")
            .unwrap()
            .event_type("compute\\.instance\\.")
            .unwrap()
            .context("project_id", "^p1$")
            .unwrap()
            .payload("state", "active")
            .unwrap(),
    );
    let listener = NotificationListener::builder(&transport)
        .target(&rust_exchange, &rust_topic)
        .endpoint(endpoint)
        .build()
        .unwrap();
    listener.start().await.unwrap();
    for (publisher_id, event_type, project_id, state) in FILTER_CASES {
        let mut ctxt = py_ctxt();
        ctxt["project_id"] = json!(project_id);
        py.notify(
            &rust_topic,
            "info",
            event_type,
            json!({"state": state, "publisher": publisher_id}),
            json!({"exchange": rust_exchange, "publisher_id": publisher_id, "ctxt": ctxt}),
        )
        .await;
    }
    let mut got = exactly(&mut seen, 2).await;
    got.sort_by(|a, b| a.publisher_id.cmp(&b.publisher_id));
    let passed: Vec<(Option<&str>, &Value)> = got
        .iter()
        .map(|n| (n.publisher_id.as_deref(), &n.payload))
        .collect();
    assert_eq!(
        passed,
        [
            (
                Some("compute.host1"),
                &json!({"state": "active", "publisher": "compute.host1"})
            ),
            (
                Some("compute.host2"),
                &json!({"state": "active-ish", "publisher": "compute.host2"})
            ),
        ]
    );
    listener.stop().await;
    py.quit().await;
}

// ---------------------------------------------------------------------------------------------
// Batches
// ---------------------------------------------------------------------------------------------

/// A batch endpoint that sends each batch, and when it came, to a channel.
struct Batches(mpsc::UnboundedSender<(Instant, Priority, Vec<Incoming>)>);

#[async_trait]
impl BatchNotificationEndpoint for Batches {
    fn priorities(&self) -> Priorities {
        Priority::Info.into()
    }
    async fn handle_batch(
        &self,
        priority: Priority,
        notifications: &[Incoming],
    ) -> Result<NotificationResult, HandlerError> {
        let _ = self
            .0
            .send((Instant::now(), priority, notifications.to_vec()));
        Ok(NotificationResult::Handled)
    }
}

/// Seven notifications wait in the queue; a batch listener of size 5 then takes 5 at once and
/// the other 2 after its timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn batch_listeners_take_full_batches_then_a_partial_one_after_the_timeout() {
    let url = test_broker!();
    let transport = rabbit(&url).await;
    let (exchange, topic) = names("batches");
    let py = PythonPeer::start(&url).await;
    let notifier = Notifier::new(&transport, "rs")
        .with_exchange(&exchange)
        .with_topics([&topic]);
    let batch_timeout = Duration::from_secs(2);

    // Rust notifier -> Python batch listener.
    for n in 0..7 {
        notifier
            .notify(&rust_ctx(), Priority::Info, "e", &json!({"n": n}))
            .await
            .unwrap();
    }
    let listening = Instant::now();
    py.listen(
        "batch",
        &[(Some(&exchange), &topic)],
        &["info"],
        json!({"batch_size": 5, "batch_timeout": batch_timeout.as_secs_f64()}),
    )
    .await;
    let got = py_exactly(&py, "batch", 7).await;
    let waited = listening.elapsed();
    let sizes: Vec<usize> = got
        .batches
        .iter()
        .map(|b| b["notifications"].as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, [5, 2], "{:#?}", got.batches);
    assert!(
        got.batches
            .iter()
            .all(|b| b["priority"] == "info" && b["result"] == "handled")
    );
    assert!(
        waited >= batch_timeout - Duration::from_millis(200),
        "the partial batch waits for the timeout: {waited:?}"
    );
    let payloads: BTreeSet<String> = got
        .notifications
        .iter()
        .map(|n| n["payload"].to_string())
        .collect();
    let want: BTreeSet<String> = (0..7).map(|n| json!({"n": n}).to_string()).collect();
    assert_eq!(payloads, want);

    // Python notifier -> Rust batch listener.
    let (rust_exchange, rust_topic) = names("batches-rs");
    for n in 0..7 {
        py.notify(
            &rust_topic,
            "info",
            "e",
            json!({"n": n}),
            json!({"exchange": rust_exchange, "publisher_id": "py"}),
        )
        .await;
    }
    let (tx, mut batches) = mpsc::unbounded_channel();
    let listener = NotificationListener::builder(&transport)
        .target(&rust_exchange, &rust_topic)
        .batch_endpoint(Batches(tx))
        .batch(5, Some(batch_timeout))
        .build()
        .unwrap();
    listener.start().await.unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let batch = tokio::time::timeout(ARRIVE, batches.recv()).await;
        got.push(batch.unwrap().unwrap());
    }
    assert!(
        tokio::time::timeout(QUIET, batches.recv()).await.is_err(),
        "no third batch"
    );
    let sizes: Vec<(Priority, usize)> = got.iter().map(|(_, p, b)| (*p, b.len())).collect();
    assert_eq!(sizes, [(Priority::Info, 5), (Priority::Info, 2)]);
    let gap = got[1].0 - got[0].0;
    assert!(
        gap >= batch_timeout - Duration::from_millis(200),
        "the partial batch waits for the timeout: {gap:?}"
    );
    let payloads: BTreeSet<String> = got
        .iter()
        .flat_map(|(_, _, batch)| batch.iter().map(|n| n.payload.to_string()))
        .collect();
    assert_eq!(payloads, want);
    assert!(
        got.iter()
            .flat_map(|(_, _, b)| b)
            .all(|n| n.publisher_id.as_deref() == Some("py"))
    );
    listener.stop().await;
    py.quit().await;
}

// ---------------------------------------------------------------------------------------------
// Requeue
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn requeued_notifications_come_again_only_with_allow_requeue() {
    let url = test_broker!();
    let transport = rabbit(&url).await;
    let (exchange, topic) = names("requeue");
    let py = PythonPeer::start(&url).await;

    // Python listener returning REQUEUE twice, Rust notifier.
    let (plain_topic, requeue_topic) = (format!("{topic}-acks"), format!("{topic}-requeues"));
    py.listen(
        "requeues",
        &[(Some(&exchange), &requeue_topic)],
        &["warn"],
        json!({"allow_requeue": true, "requeue_first": 2}),
    )
    .await;
    py.listen(
        "acks",
        &[(Some(&exchange), &plain_topic)],
        &["warn"],
        json!({"allow_requeue": false, "requeue_first": 1}),
    )
    .await;
    let notifier = Notifier::new(&transport, "rs").with_exchange(&exchange);
    for topic in [&requeue_topic, &plain_topic] {
        notifier
            .with_topics([topic])
            .notify(&rust_ctx(), Priority::Warn, "e", &json!({"to": topic}))
            .await
            .unwrap();
    }
    let got = py_exactly(&py, "requeues", 3).await;
    let results: Vec<&Value> = got.notifications.iter().map(|n| &n["result"]).collect();
    assert_eq!(
        results,
        [&json!("requeue"), &json!("requeue"), &json!("handled")]
    );
    let ids: BTreeSet<String> = got
        .notifications
        .iter()
        .map(|n| n["metadata"]["message_id"].to_string())
        .collect();
    assert_eq!(ids.len(), 1, "the same notification again: {ids:?}");
    let got = py_exactly(&py, "acks", 1).await;
    assert_eq!(got.notifications[0]["result"], "requeue");
    assert_eq!(got.notifications[0]["payload"], json!({"to": plain_topic}));

    // Rust endpoint returning Requeue twice, Python notifier.
    for allow in [true, false] {
        let rust_topic = format!("{topic}-rs-{allow}");
        let (endpoint, mut seen) = recorder(Priority::Warn);
        endpoint.requeue_first.store(2, Ordering::SeqCst);
        let listener = NotificationListener::builder(&transport)
            .target(&exchange, &rust_topic)
            .allow_requeue(allow)
            .max_concurrency(1)
            .endpoint(endpoint)
            .build()
            .unwrap();
        listener.start().await.unwrap();
        py.notify(
            &rust_topic,
            "warning",
            "e",
            json!({"allow": allow}),
            json!({"exchange": exchange, "publisher_id": "py"}),
        )
        .await;
        let got = exactly(&mut seen, if allow { 3 } else { 1 }).await;
        assert!(got.iter().all(|n| n.payload == json!({"allow": allow})));
        let ids: BTreeSet<_> = got.iter().map(|n| n.metadata.message_id.clone()).collect();
        assert_eq!(ids.len(), 1, "the same notification again");
        listener.stop().await;
    }
    py.quit().await;
}

// ---------------------------------------------------------------------------------------------
// Before any listener
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn notifications_sent_before_any_listener_wait_for_the_other_language() {
    let url = test_broker!();
    let transport = rabbit(&url).await;
    let (exchange, topic) = names("early");
    let py = PythonPeer::start(&url).await;

    // Rust first, then a Python listener.
    let rs_topic = format!("{topic}-rs");
    Notifier::new(&transport, "rs")
        .with_exchange(&exchange)
        .with_topics([&rs_topic])
        .critical(
            &rust_ctx(),
            &InstanceCreated {
                id: 1,
                host: "early".into(),
            },
        )
        .await
        .unwrap();
    py.listen(
        "late",
        &[(Some(&exchange), &rs_topic)],
        &["critical"],
        json!({}),
    )
    .await;
    let got = py_exactly(&py, "late", 1).await;
    let n = &got.notifications[0];
    assert_eq!(n["priority"], "critical");
    assert_eq!(n["publisher_id"], "rs");
    assert_eq!(n["event_type"], InstanceCreated::EVENT_TYPE);
    assert_eq!(n["payload"], json!({"id": 1, "host": "early"}));
    assert_eq!(n["ctxt"], as_received(py_ctxt()));
    // Again while no Python listener runs: the next one gets it, the stopped one does not.
    py.stop_listener("late").await;
    Notifier::new(&transport, "rs")
        .with_exchange(&exchange)
        .with_topics([&rs_topic])
        .critical(
            &rust_ctx(),
            &InstanceCreated {
                id: 3,
                host: "between".into(),
            },
        )
        .await
        .unwrap();
    py.listen(
        "later",
        &[(Some(&exchange), &rs_topic)],
        &["critical"],
        json!({}),
    )
    .await;
    let got = py_exactly(&py, "later", 1).await;
    assert_eq!(
        got.notifications[0]["payload"],
        json!({"id": 3, "host": "between"})
    );
    assert_eq!(
        py.received("late", 0, Duration::ZERO)
            .await
            .notifications
            .len(),
        1
    );

    // Python first, then a Rust listener.
    let py_topic = format!("{topic}-py");
    py.notify(
        &py_topic,
        "audit",
        InstanceCreated::EVENT_TYPE,
        json!({"id": 2, "host": "early"}),
        json!({"exchange": exchange, "publisher_id": "py", "ctxt": py_ctxt()}),
    )
    .await;
    let (endpoint, mut seen) = recorder(Priority::Audit);
    let listener = NotificationListener::builder(&transport)
        .target(&exchange, &py_topic)
        .endpoint(endpoint)
        .build()
        .unwrap();
    listener.start().await.unwrap();
    let got = exactly(&mut seen, 1).await;
    assert_eq!(got[0].priority, Priority::Audit);
    assert_eq!(got[0].publisher_id.as_deref(), Some("py"));
    assert_eq!(got[0].payload, json!({"id": 2, "host": "early"}));
    assert_eq!(
        Value::Object(got[0].context.as_map().clone()),
        as_received(py_ctxt())
    );
    listener.stop().await;
    py.quit().await;
}
