//! Notifications (issue 16): a Notifier and a NotificationListener over `memory://`, and the
//! same core checks over RabbitMQ, plus the topology they leave on the broker (spec §2, §5).
//!
//! Each check is a function of a transport, run by a `memory_*` test and a `rabbit_*` test.
//! Names (exchanges, topics, pools) are unique per run, so that the broker's tests share
//! nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amqp_rpc::driver::memory::MemoryDriver;
use amqp_rpc::driver::{Destination, Driver, NotificationBinding, PublishOptions};
use amqp_rpc::notify::{
    BatchNotificationEndpoint, HandlerError, Incoming, Notification, NotificationEndpoint,
    NotificationFilter, NotificationListener, NotificationResult, Notifier, NotifierDriver,
    Priorities, Priority, Typed,
};
use amqp_rpc::{Context, Transport, async_trait};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::common::{ANSWER, QUIET, log, test_broker, unique};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct InstanceCreated {
    id: u64,
    host: String,
}

impl Notification for InstanceCreated {
    const EVENT_TYPE: &'static str = "compute.instance.create.end";
}

type Script = dyn Fn(&Incoming) -> Result<NotificationResult, HandlerError> + Send + Sync;

/// An endpoint that sends each notification it gets to a channel, then answers as its script
/// says (default: handled).
struct Recorder {
    priorities: Priorities,
    filter: Option<NotificationFilter>,
    seen: mpsc::UnboundedSender<Incoming>,
    script: Arc<Script>,
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
        (self.script)(n)
    }
}

fn recorder(priorities: impl Into<Priorities>) -> (Recorder, mpsc::UnboundedReceiver<Incoming>) {
    let (seen, rx) = mpsc::unbounded_channel();
    let recorder = Recorder {
        priorities: priorities.into(),
        filter: None,
        seen,
        script: Arc::new(|_| Ok(NotificationResult::Handled)),
    };
    (recorder, rx)
}

/// Exactly `count` notifications, then nothing more for [`QUIET`].
async fn exactly(rx: &mut mpsc::UnboundedReceiver<Incoming>, count: usize) -> Vec<Incoming> {
    let got = at_least(rx, count).await;
    if let Ok(Some(extra)) = tokio::time::timeout(QUIET, rx.recv()).await {
        panic!("expected exactly {count}, then got {extra:?}");
    }
    got
}

/// `count` notifications.
async fn at_least(rx: &mut mpsc::UnboundedReceiver<Incoming>, count: usize) -> Vec<Incoming> {
    let mut got = Vec::new();
    while got.len() < count {
        match tokio::time::timeout(ANSWER, rx.recv()).await {
            Ok(Some(n)) => got.push(n),
            other => panic!(
                "expected {count} notifications, got {} then {other:?}",
                got.len()
            ),
        }
    }
    got
}

async fn started(listener: NotificationListener) -> NotificationListener {
    listener.start().await.unwrap();
    listener
}

fn ctx() -> Context {
    Context::new().with("user", "u1").with("project_id", "p1")
}

/// A `rabbit://` transport on the test broker.
async fn rabbit() -> Transport {
    Transport::from_url(&test_broker!()).await.unwrap()
}

// ---------------------------------------------------------------------------------------------
// The checks, each a function of a transport
// ---------------------------------------------------------------------------------------------

/// Each priority reaches an endpoint of that priority, with the fields the notifier sent.
async fn each_priority_arrives(transport: &Transport) {
    let exchange = unique("nova");
    let topic = unique("notifications");
    let (endpoint, mut seen) = recorder(Priorities::all());
    let listener = NotificationListener::builder(transport)
        .target(&exchange, &topic)
        .endpoint(endpoint)
        .build()
        .unwrap();
    let listener = started(listener).await;
    let notifier = Notifier::new(transport, "compute.host1")
        .with_exchange(&exchange)
        .with_topics([&topic]);
    for priority in Priority::ALL {
        let payload = json!({"priority": priority.as_lower()});
        notifier
            .notify(&ctx(), priority, "test.event", &payload)
            .await
            .unwrap();
    }
    let got = exactly(&mut seen, 7).await;
    let priorities: BTreeSet<Priority> = got.iter().map(|n| n.priority).collect();
    assert_eq!(priorities.len(), 7);
    for n in &got {
        assert_eq!(n.payload["priority"], n.priority.as_lower());
        assert_eq!(n.publisher_id.as_deref(), Some("compute.host1"));
        assert_eq!(n.event_type.as_deref(), Some("test.event"));
        assert_eq!(n.context.get_str("user"), Some("u1"));
        assert_eq!(n.context.get("client_timeout"), Some(&Value::Null));
        let id = n.metadata.message_id.as_deref().unwrap_or_default();
        assert_eq!((id.len(), id.matches('-').count()), (36, 4), "{id}");
        assert!(n.metadata.timestamp.is_some());
    }
    listener.stop().await;
}

/// A typed notifier and a typed endpoint: the endpoint sees its event type only, decoded.
async fn typed_both_sides(transport: &Transport) {
    let exchange = unique("nova");
    let topic = unique("notifications");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let listener = NotificationListener::builder(transport)
        .target(&exchange, &topic)
        .endpoint(Typed::new(
            [Priority::Info, Priority::Error],
            move |n: Incoming<InstanceCreated>| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send((n.priority, n.payload));
                }
            },
        ))
        .build()
        .unwrap();
    let listener = started(listener).await;
    let notifier = Notifier::new(transport, "compute.host1")
        .with_exchange(&exchange)
        .with_topics([&topic]);
    let created = InstanceCreated {
        id: 3,
        host: "h1".into(),
    };
    notifier.info(&ctx(), &created).await.unwrap();
    notifier.error(&ctx(), &created).await.unwrap();
    // Another event type at a priority it handles: passed by.
    let other = json!({"id": 4, "host": "h2"});
    notifier
        .notify(
            &ctx(),
            Priority::Info,
            "compute.instance.delete.end",
            &other,
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(
            tokio::time::timeout(ANSWER, rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    got.sort_by_key(|(p, _)| *p);
    assert_eq!(
        got,
        [
            (Priority::Info, created.clone()),
            (Priority::Error, created)
        ]
    );
    assert!(tokio::time::timeout(QUIET, rx.recv()).await.is_err());
    listener.stop().await;
}

/// A notifier on several topics, listeners on several exchanges: each gets what its targets
/// name.
async fn several_topics_and_exchanges(transport: &Transport) {
    let (nova, neutron) = (unique("nova"), unique("neutron"));
    let (a, b) = (unique("a"), unique("b"));
    let (endpoint, mut both) = recorder(Priority::Info);
    let ceilometer = NotificationListener::builder(transport)
        .target(&nova, &a)
        .target(&neutron, &a)
        .endpoint(endpoint)
        .build()
        .unwrap();
    let ceilometer = started(ceilometer).await;
    let (endpoint, mut only_b) = recorder(Priority::Info);
    let sink = NotificationListener::builder(transport)
        .target(&nova, &b)
        .endpoint(endpoint)
        .build()
        .unwrap();
    let sink = started(sink).await;
    let compute = Notifier::new(transport, "compute")
        .with_exchange(&nova)
        .with_topics([&a, &b]);
    let network = Notifier::new(transport, "network")
        .with_exchange(&neutron)
        .with_topics([&a]);
    compute
        .notify(&ctx(), Priority::Info, "e", &json!(1))
        .await
        .unwrap();
    network
        .notify(&ctx(), Priority::Info, "e", &json!(2))
        .await
        .unwrap();
    let got = exactly(&mut both, 2).await;
    let publishers: BTreeSet<_> = got.iter().map(|n| n.publisher_id.clone()).collect();
    assert_eq!(publishers.len(), 2);
    let got = exactly(&mut only_b, 1).await;
    assert_eq!(got[0].payload, json!(1));
    ceilometer.stop().await;
    sink.stop().await;
}

/// Pools: the members of a pool share one copy of the stream; each pool, and the listener
/// without a pool, get a copy each.
async fn pools_share_one_stream(transport: &Transport) {
    let exchange = unique("nova");
    let topic = unique("notifications");
    let (pool_1, pool_2) = (unique("pool1"), unique("pool2"));
    let listen = |pool: Option<&str>| {
        let (endpoint, rx) = recorder(Priority::Info);
        let builder = NotificationListener::builder(transport)
            .target(&exchange, &topic)
            .endpoint(endpoint);
        let builder = match pool {
            Some(pool) => builder.pool(pool),
            None => builder,
        };
        (builder.build().unwrap(), rx)
    };
    let (p1a, mut p1a_rx) = listen(Some(&pool_1));
    let (p1b, mut p1b_rx) = listen(Some(&pool_1));
    let (p2, mut p2_rx) = listen(Some(&pool_2));
    let (plain, mut plain_rx) = listen(None);
    let listeners = [
        started(p1a).await,
        started(p1b).await,
        started(p2).await,
        started(plain).await,
    ];
    let notifier = Notifier::new(transport, "compute")
        .with_exchange(&exchange)
        .with_topics([&topic]);
    const COUNT: usize = 10;
    for i in 0..COUNT {
        notifier
            .notify(&ctx(), Priority::Info, "e", &json!(i))
            .await
            .unwrap();
    }
    let ids = |got: Vec<Incoming>| -> Vec<u64> {
        let mut ids: Vec<u64> = got.iter().filter_map(|n| n.payload.as_u64()).collect();
        ids.sort_unstable();
        ids
    };
    let all: Vec<u64> = (0..COUNT as u64).collect();
    assert_eq!(ids(exactly(&mut p2_rx, COUNT).await), all);
    assert_eq!(ids(exactly(&mut plain_rx, COUNT).await), all);
    // Pool 1's two members: each notification to exactly one of them.
    let mut shared = Vec::new();
    while shared.len() < COUNT {
        tokio::select! {
            Some(n) = p1a_rx.recv() => shared.push(("a", n)),
            Some(n) = p1b_rx.recv() => shared.push(("b", n)),
            () = tokio::time::sleep(ANSWER) => panic!("pool 1 got {} of {COUNT}", shared.len()),
        }
    }
    assert!(tokio::time::timeout(QUIET, p1a_rx.recv()).await.is_err());
    assert!(tokio::time::timeout(QUIET, p1b_rx.recv()).await.is_err());
    let members: BTreeSet<&str> = shared.iter().map(|(m, _)| *m).collect();
    assert_eq!(members.len(), 2, "both members took a share");
    assert_eq!(ids(shared.into_iter().map(|(_, n)| n).collect()), all);
    for listener in &listeners {
        listener.stop().await;
    }
}

/// Filters: an endpoint sees only what its filter lets through; others still see the rest.
async fn filters_choose_what_an_endpoint_sees(transport: &Transport) {
    let exchange = unique("nova");
    let topic = unique("notifications");
    let (mut filtered, mut filtered_rx) = recorder(Priority::Info);
    filtered.filter = Some(
        NotificationFilter::new()
            .publisher_id("compute")
            .unwrap()
            .context("project_id", "p1$")
            .unwrap()
            .payload("state", "act")
            .unwrap(),
    );
    let (all, mut all_rx) = recorder(Priority::Info);
    let listener = NotificationListener::builder(transport)
        .target(&exchange, &topic)
        .endpoint(filtered)
        .endpoint(all)
        .build()
        .unwrap();
    let listener = started(listener).await;
    let notifier = Notifier::new(transport, "compute.host1")
        .with_exchange(&exchange)
        .with_topics([&topic]);
    let send = |n: Notifier, ctx: Context, state: &'static str| async move {
        let payload = json!({"state": state});
        n.notify(&ctx, Priority::Info, "e", &payload).await.unwrap();
    };
    send(notifier.clone(), ctx(), "active").await;
    send(notifier.with_publisher_id("network.host1"), ctx(), "active").await;
    send(notifier.clone(), ctx().with("project_id", "p2"), "active").await;
    send(notifier.clone(), ctx(), "deleted").await;
    let got = exactly(&mut filtered_rx, 1).await;
    assert_eq!(got[0].publisher_id.as_deref(), Some("compute.host1"));
    exactly(&mut all_rx, 4).await;
    listener.stop().await;
}

/// Requeue: with `allow_requeue`, a notification an endpoint requeues (or fails on) comes
/// again; without, it is acknowledged all the same.
async fn requeue_only_when_allowed(transport: &Transport, allow: bool) {
    let exchange = unique("nova");
    let topic = unique("notifications");
    let calls = Arc::new(AtomicUsize::new(0));
    let (mut endpoint, mut seen) = recorder(Priority::Warn);
    endpoint.script = Arc::new({
        let calls = Arc::clone(&calls);
        move |n: &Incoming| match (calls.fetch_add(1, Ordering::SeqCst), n.payload.as_str()) {
            (0, Some("requeue")) => Ok(NotificationResult::Requeue),
            (0, Some("fail")) => Err("endpoint failed".into()),
            _ => Ok(NotificationResult::Handled),
        }
    });
    let listener = NotificationListener::builder(transport)
        .target(&exchange, &topic)
        .allow_requeue(allow)
        .max_concurrency(1)
        .endpoint(endpoint)
        .build()
        .unwrap();
    let listener = started(listener).await;
    let notifier = Notifier::new(transport, "p")
        .with_exchange(&exchange)
        .with_topics([&topic]);
    for how in ["requeue", "fail"] {
        calls.store(0, Ordering::SeqCst);
        notifier
            .notify(&ctx(), Priority::Warn, "e", &json!(how))
            .await
            .unwrap();
        let expected = if allow { 2 } else { 1 };
        let got = exactly(&mut seen, expected).await;
        assert!(got.iter().all(|n| n.payload == json!(how)));
        assert_eq!(
            got.iter()
                .map(|n| n.metadata.message_id.clone())
                .collect::<BTreeSet<_>>()
                .len(),
            1,
            "the same notification again"
        );
    }
    listener.stop().await;
}

/// A notification published before any listener exists waits in `<topic>.<priority>`.
async fn kept_until_a_listener_comes(transport: &Transport) {
    let exchange = unique("nova");
    let topic = unique("early");
    let notifier = Notifier::new(transport, "p")
        .with_exchange(&exchange)
        .with_topics([&topic]);
    notifier
        .notify(&ctx(), Priority::Info, "e", &json!("early"))
        .await
        .unwrap();
    let (endpoint, mut seen) = recorder(Priority::Info);
    let listener = NotificationListener::builder(transport)
        .target(&exchange, &topic)
        .endpoint(endpoint)
        .build()
        .unwrap();
    let listener = started(listener).await;
    assert_eq!(exactly(&mut seen, 1).await[0].payload, "early");
    listener.stop().await;
}

/// Stopping a listener mid-stream: what it was handling is acknowledged, what it had not
/// started goes back to the queue, and the next listener gets it; nothing is lost, nothing
/// handled twice.
async fn stopping_mid_stream_loses_nothing(transport: &Transport) {
    let exchange = unique("nova");
    let topic = unique("notifications");
    let notifier = Notifier::new(transport, "p")
        .with_exchange(&exchange)
        .with_topics([&topic]);
    const COUNT: u64 = 20;
    let slow = |tx: mpsc::UnboundedSender<u64>| {
        Typed::<u64, _>::any_event(Priority::Info, move |n: Incoming<u64>| {
            let tx = tx.clone();
            async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let _ = tx.send(n.payload);
            }
        })
    };
    let (tx, mut first_rx) = mpsc::unbounded_channel();
    let first = NotificationListener::builder(transport)
        .target(&exchange, &topic)
        .max_concurrency(2)
        .endpoint(slow(tx))
        .build()
        .unwrap();
    let first = started(first).await;
    for i in 0..COUNT {
        notifier
            .notify(&ctx(), Priority::Info, "e", &json!(i))
            .await
            .unwrap();
    }
    let mut handled = Vec::new();
    while handled.len() < 3 {
        handled.push(
            tokio::time::timeout(ANSWER, first_rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    first.stop().await;
    // Those in flight when it stopped finished before `stop` returned.
    while let Ok(n) = first_rx.try_recv() {
        handled.push(n);
    }
    assert!(handled.len() < COUNT as usize, "stopped mid-stream");
    let (tx, mut second_rx) = mpsc::unbounded_channel();
    let second = NotificationListener::builder(transport)
        .target(&exchange, &topic)
        .endpoint(slow(tx))
        .build()
        .unwrap();
    let second = started(second).await;
    let rest = COUNT as usize - handled.len();
    for _ in 0..rest {
        handled.push(
            tokio::time::timeout(ANSWER, second_rx.recv())
                .await
                .unwrap()
                .unwrap(),
        );
    }
    assert!(tokio::time::timeout(QUIET, second_rx.recv()).await.is_err());
    handled.sort_unstable();
    assert_eq!(handled, (0..COUNT).collect::<Vec<_>>());
    second.stop().await;
}

/// A payload that does not decode into the endpoint's type is logged with its message id and
/// acknowledged: not handed over, not lost without a trace, not redelivered forever.
async fn undecodable_payload_is_logged_and_acked(transport: &Transport) {
    let (logged, _guard) = log::capture_here();
    let exchange = unique("nova");
    let topic = unique("notifications");
    let (tx, mut rx) = mpsc::unbounded_channel();
    let (plain, mut plain_rx) = recorder(Priority::Info);
    let listener = NotificationListener::builder(transport)
        .target(&exchange, &topic)
        .allow_requeue(true)
        .endpoint(Typed::new(
            Priority::Info,
            move |n: Incoming<InstanceCreated>| {
                let tx = tx.clone();
                async move {
                    let _ = tx.send(n.payload);
                }
            },
        ))
        .endpoint(plain)
        .build()
        .unwrap();
    let listener = started(listener).await;
    let notifier = Notifier::new(transport, "p")
        .with_exchange(&exchange)
        .with_topics([&topic]);
    let bad = json!({"id": "not a number"});
    notifier
        .notify(&ctx(), Priority::Info, InstanceCreated::EVENT_TYPE, &bad)
        .await
        .unwrap();
    let got = exactly(&mut plain_rx, 1).await;
    let message_id = got[0].metadata.message_id.clone().unwrap();
    assert!(rx.try_recv().is_err());
    let lines = logged.lines_with("does not decode");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].starts_with("WARN"), "{lines:?}");
    for expected in [
        message_id.as_str(),
        InstanceCreated::EVENT_TYPE,
        "not a number",
    ] {
        assert!(lines[0].contains(expected), "{expected} in {lines:?}");
    }
    listener.stop().await;
}

// ---------------------------------------------------------------------------------------------
// memory://
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn memory_each_priority_arrives_with_the_notifiers_fields() {
    each_priority_arrives(&Transport::memory()).await;
}

#[tokio::test]
async fn memory_typed_notifier_and_typed_endpoint() {
    typed_both_sides(&Transport::memory()).await;
}

#[tokio::test]
async fn memory_several_topics_and_exchanges() {
    several_topics_and_exchanges(&Transport::memory()).await;
}

#[tokio::test]
async fn memory_pool_members_share_and_each_pool_gets_a_copy() {
    pools_share_one_stream(&Transport::memory()).await;
}

#[tokio::test]
async fn memory_filters_choose_what_an_endpoint_sees() {
    filters_choose_what_an_endpoint_sees(&Transport::memory()).await;
}

#[tokio::test]
async fn memory_requeue_with_allow_requeue_delivers_again() {
    requeue_only_when_allowed(&Transport::memory(), true).await;
}

#[tokio::test]
async fn memory_requeue_without_allow_requeue_acknowledges() {
    requeue_only_when_allowed(&Transport::memory(), false).await;
}

#[tokio::test]
async fn memory_notification_before_any_listener_is_kept() {
    kept_until_a_listener_comes(&Transport::memory()).await;
}

#[tokio::test(start_paused = true)]
async fn memory_stopping_a_listener_mid_stream_loses_nothing() {
    stopping_mid_stream_loses_nothing(&Transport::memory()).await;
}

#[tokio::test]
async fn memory_undecodable_typed_payload_is_logged_and_acknowledged() {
    undecodable_payload_is_logged_and_acked(&Transport::memory()).await;
}

/// A transport on a memory broker whose queues the test can read.
fn memory_with_driver() -> (Transport, MemoryDriver) {
    let driver = MemoryDriver::private();
    (Transport::from_driver(Arc::new(driver.clone())), driver)
}

#[tokio::test]
async fn memory_noop_and_log_drivers_send_nothing_to_the_broker() {
    let (transport, driver) = memory_with_driver();
    let (logged, _guard) = log::capture_here();
    let notifier = Notifier::new(&transport, "p");
    let secret = json!({"admin_password": "hunter2", "name": "vm"});
    for d in [NotifierDriver::Noop, NotifierDriver::Log] {
        notifier
            .with_driver(d)
            .notify(&ctx(), Priority::Info, "compute.x", &secret)
            .await
            .unwrap();
    }
    assert!(driver.queue_names().is_empty());
    let lines = logged.lines_with("compute.x");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].starts_with("INFO oslo.messaging.notification"),
        "{lines:?}"
    );
    assert!(
        lines[0].contains("***") && !lines[0].contains("hunter2"),
        "{lines:?}"
    );
}

#[tokio::test]
async fn memory_v1_and_v2_bodies_on_the_queue_are_as_oslo_writes_them() {
    let (transport, driver) = memory_with_driver();
    let notifier = Notifier::new(&transport, "compute.host1");
    let payload = json!({"id": 3});
    notifier
        .notify(
            &ctx(),
            Priority::Warn,
            "compute.instance.create.end",
            &payload,
        )
        .await
        .unwrap();
    notifier
        .with_driver(NotifierDriver::Messaging)
        .notify(
            &ctx(),
            Priority::Warn,
            "compute.instance.create.end",
            &payload,
        )
        .await
        .unwrap();
    assert_eq!(driver.queue_names(), ["notifications.warn"]);
    let bindings = [NotificationBinding {
        exchange: None,
        routing_key: "notifications.warn",
    }];
    let mut raw = driver
        .listen_notifications(&bindings, None, 0)
        .await
        .unwrap();
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let delivery = raw.next().await.unwrap();
        bodies.push(serde_json::from_slice::<Value>(&delivery.body).unwrap());
        delivery.acker.ack().await.unwrap();
    }
    let v2 = &bodies[0];
    assert_eq!(v2["oslo.version"], "2.0");
    let inner: Value = serde_json::from_str(v2["oslo.message"].as_str().unwrap()).unwrap();
    let v1 = &bodies[1];
    assert!(v1.get("oslo.version").is_none(), "v1 has no envelope");
    for body in [&inner, v1] {
        let keys: BTreeSet<&str> = body
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let expected: BTreeSet<&str> = [
            "message_id",
            "publisher_id",
            "event_type",
            "priority",
            "payload",
            "timestamp",
            "_unique_id",
            "_context_user",
            "_context_project_id",
        ]
        .into();
        assert_eq!(keys, expected);
        assert_eq!(body["priority"], "WARN");
        assert_eq!(body["publisher_id"], "compute.host1");
        assert_eq!(body["payload"], payload);
        assert_eq!(body["_unique_id"].as_str().unwrap().len(), 32);
    }
    assert_ne!(inner["message_id"], v1["message_id"]);
}

#[tokio::test]
async fn memory_duplicates_are_dropped_and_unknown_priorities_acknowledged() {
    let (transport, driver) = memory_with_driver();
    let (endpoint, mut seen) = recorder(Priorities::all());
    let listener = NotificationListener::builder(&transport)
        .topic("notifications")
        .endpoint(endpoint)
        .build()
        .unwrap();
    let listener = started(listener).await;
    let body = |priority: &str, unique: &str| {
        bytes::Bytes::from(
            json!({"message_id": "m", "publisher_id": "p", "event_type": "e",
                   "priority": priority, "payload": {}, "timestamp": "t", "_unique_id": unique})
            .to_string(),
        )
    };
    fn to(key: &str) -> Destination<'_> {
        Destination::Notification {
            exchange: None,
            routing_key: key,
        }
    }
    for (key, priority, unique) in [
        ("notifications.info", "INFO", "u1"),
        ("notifications.info", "INFO", "u1"),
        ("notifications.info", "WARNING", "u2"),
        ("notifications.info", "info", "u3"),
        ("notifications.info", "not json", ""),
    ] {
        let body = match unique {
            "" => bytes::Bytes::from_static(b"{not json"),
            unique => body(priority, unique),
        };
        driver
            .publish(to(key), body, PublishOptions::default())
            .await
            .unwrap();
    }
    let got = exactly(&mut seen, 2).await;
    assert!(got.iter().all(|n| n.priority == Priority::Info));
    assert_eq!(
        driver.queue_depth("notifications.info"),
        Some(0),
        "all settled"
    );
    listener.stop().await;
}

/// A batch endpoint that reports each batch's size and priority.
struct Batches(mpsc::UnboundedSender<(Priority, usize)>);

#[async_trait]
impl BatchNotificationEndpoint for Batches {
    fn priorities(&self) -> Priorities {
        Priorities::all()
    }
    async fn handle_batch(
        &self,
        priority: Priority,
        notifications: &[Incoming],
    ) -> Result<NotificationResult, HandlerError> {
        let _ = self.0.send((priority, notifications.len()));
        Ok(NotificationResult::Handled)
    }
}

#[tokio::test(start_paused = true)]
async fn memory_batches_fill_up_to_their_size_or_their_timeout() {
    let (transport, driver) = memory_with_driver();
    let (tx, mut batches) = mpsc::unbounded_channel();
    let listener = NotificationListener::builder(&transport)
        .topic("notifications")
        .batch_endpoint(Batches(tx))
        .batch(3, Some(Duration::from_secs(10)))
        .build()
        .unwrap();
    let listener = started(listener).await;
    let notifier = Notifier::new(&transport, "p");
    for priority in [Priority::Info; 7] {
        notifier
            .notify(&ctx(), priority, "e", &json!(1))
            .await
            .unwrap();
    }
    let started_at = tokio::time::Instant::now();
    let full = [batches.recv().await.unwrap(), batches.recv().await.unwrap()];
    assert_eq!(full, [(Priority::Info, 3), (Priority::Info, 3)]);
    assert_eq!(
        started_at.elapsed(),
        Duration::ZERO,
        "full batches go at once"
    );
    // The seventh waits for the timeout.
    assert_eq!(batches.recv().await, Some((Priority::Info, 1)));
    assert_eq!(started_at.elapsed(), Duration::from_secs(10));
    // A batch of mixed priorities is handed over per priority.
    notifier
        .notify(&ctx(), Priority::Error, "e", &json!(1))
        .await
        .unwrap();
    notifier
        .notify(&ctx(), Priority::Info, "e", &json!(1))
        .await
        .unwrap();
    notifier
        .notify(&ctx(), Priority::Error, "e", &json!(1))
        .await
        .unwrap();
    let mut mixed = [batches.recv().await.unwrap(), batches.recv().await.unwrap()];
    mixed.sort();
    assert_eq!(mixed, [(Priority::Info, 1), (Priority::Error, 2)]);
    listener.stop().await;
    assert_eq!(driver.queue_depth("notifications.info"), Some(0));
    assert_eq!(driver.queue_depth("notifications.error"), Some(0));
}

#[tokio::test]
async fn memory_listener_queues_are_topic_dot_priority_or_the_pool() {
    let (transport, driver) = memory_with_driver();
    let (endpoint, _seen) = recorder([Priority::Info, Priority::Warn]);
    let plain = NotificationListener::builder(&transport)
        .target("nova", "notifications")
        .endpoint(endpoint)
        .build()
        .unwrap();
    let plain = started(plain).await;
    let (endpoint, _seen_pool) = recorder(Priority::Info);
    let pooled = NotificationListener::builder(&transport)
        .target("nova", "notifications")
        .target("glance", "notifications")
        .pool("ceilometer")
        .endpoint(endpoint)
        .build()
        .unwrap();
    let pooled = started(pooled).await;
    assert_eq!(
        driver.queue_names(),
        ["ceilometer", "notifications.info", "notifications.warn"]
    );
    let keys: BTreeMap<Option<&str>, Vec<&str>> =
        pooled.bindings().fold(BTreeMap::new(), |mut m, (e, k)| {
            m.entry(e).or_default().push(k);
            m
        });
    assert_eq!(keys[&Some("glance")], ["notifications.info"]);
    assert_eq!(keys[&Some("nova")], ["notifications.info"]);
    plain.stop().await;
    pooled.stop().await;
}

#[tokio::test]
async fn memory_builder_refuses_listeners_that_would_consume_nothing() {
    let transport = Transport::memory();
    let (endpoint, _seen) = recorder(Priorities::none());
    let no_priority = NotificationListener::builder(&transport)
        .topic("notifications")
        .endpoint(endpoint)
        .build();
    assert!(no_priority.is_err());
    let (endpoint, _seen) = recorder(Priority::Info);
    assert!(
        NotificationListener::builder(&transport)
            .endpoint(endpoint)
            .build()
            .is_err()
    );
}

#[tokio::test]
async fn memory_serve_until_stops_on_the_signal_and_a_handle_stops_it_too() {
    let transport = Transport::memory();
    let (endpoint, _seen) = recorder(Priority::Info);
    let listener = NotificationListener::builder(&transport)
        .topic("notifications")
        .endpoint(endpoint)
        .build()
        .unwrap();
    let handle = listener.handle();
    let stopper = tokio::spawn({
        let handle = handle.clone();
        async move {
            while !handle.is_running() {
                tokio::task::yield_now().await;
            }
            handle.stop();
        }
    });
    tokio::time::timeout(ANSWER, listener.serve_until(std::future::pending()))
        .await
        .unwrap()
        .unwrap();
    stopper.await.unwrap();
    assert!(!handle.is_running());
    let done = Arc::new(Mutex::new(false));
    listener
        .serve_until({
            let done = Arc::clone(&done);
            async move { *done.lock().unwrap() = true }
        })
        .await
        .unwrap();
    assert!(*done.lock().unwrap());
}

// ---------------------------------------------------------------------------------------------
// RabbitMQ
// ---------------------------------------------------------------------------------------------

#[tokio::test]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn rabbit_each_priority_arrives_with_the_notifiers_fields() {
    each_priority_arrives(&rabbit().await).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn rabbit_typed_notifier_and_typed_endpoint() {
    typed_both_sides(&rabbit().await).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn rabbit_several_topics_and_exchanges() {
    several_topics_and_exchanges(&rabbit().await).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn rabbit_pool_members_share_and_each_pool_gets_a_copy() {
    pools_share_one_stream(&rabbit().await).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn rabbit_filters_choose_what_an_endpoint_sees() {
    filters_choose_what_an_endpoint_sees(&rabbit().await).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn rabbit_requeue_with_allow_requeue_delivers_again() {
    requeue_only_when_allowed(&rabbit().await, true).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn rabbit_requeue_without_allow_requeue_acknowledges() {
    requeue_only_when_allowed(&rabbit().await, false).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn rabbit_notification_before_any_listener_is_kept() {
    kept_until_a_listener_comes(&rabbit().await).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn rabbit_stopping_a_listener_mid_stream_loses_nothing() {
    stopping_mid_stream_loses_nothing(&rabbit().await).await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn rabbit_undecodable_typed_payload_is_logged_and_acknowledged() {
    undecodable_payload_is_logged_and_acked(&rabbit().await).await;
}

/// A listener whose connection goes away while it handles a notification (a process that
/// dies) has not acknowledged it: the broker delivers it to the next listener, nothing lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn rabbit_a_listener_that_dies_mid_notification_loses_nothing() {
    let (exchange, topic) = (unique("nova"), unique("notifications"));
    let dying = rabbit().await;
    let (started_tx, mut started_rx) = mpsc::unbounded_channel();
    let stuck = Typed::<u64, _>::any_event(Priority::Info, move |n: Incoming<u64>| {
        let started = started_tx.clone();
        async move {
            let _ = started.send(n.payload);
            // Never done: the process dies first.
            std::future::pending::<()>().await;
        }
    });
    let first = NotificationListener::builder(&dying)
        .target(&exchange, &topic)
        .endpoint(stuck)
        .build()
        .unwrap();
    let first = started(first).await;
    let notifier = Notifier::new(&rabbit().await, "p")
        .with_exchange(&exchange)
        .with_topics([&topic]);
    notifier
        .notify(&ctx(), Priority::Info, "e", &json!(7))
        .await
        .unwrap();
    let taken = tokio::time::timeout(ANSWER, started_rx.recv()).await;
    assert_eq!(taken.ok().flatten(), Some(7), "the first listener took it");
    dying.close().await;

    let (endpoint, mut seen) = recorder(Priority::Info);
    let second = NotificationListener::builder(&rabbit().await)
        .target(&exchange, &topic)
        .endpoint(endpoint)
        .build()
        .unwrap();
    let second = started(second).await;
    let again = exactly(&mut seen, 1).await;
    assert_eq!(again[0].payload, json!(7), "delivered again, once");
    second.stop().await;
    drop(first);
}

/// The topology a Rust notifier and listeners leave, read with `rabbitmqctl`, is what oslo
/// declares for the same options (spec §2.1, §5): the topic exchange (durable false,
/// auto-delete false); `<topic>.<priority>` queues (durable false, auto-delete false, no
/// arguments) bound with their own name, from the notifier and the plain listener; the pool's
/// queue named exactly after the pool, bound with every key it listens to, on each exchange.
#[tokio::test]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn rabbit_topology_equals_oslos() {
    let transport = rabbit().await;
    let (nova, glance) = (unique("nova"), unique("glance"));
    let topic = unique("notifications");
    let pool = unique("pool");
    Notifier::new(&transport, "compute")
        .with_exchange(&nova)
        .with_topics([&topic])
        .notify(&ctx(), Priority::Error, "e", &json!({}))
        .await
        .unwrap();
    let (endpoint, _seen) = recorder([Priority::Info, Priority::Warn]);
    let plain = NotificationListener::builder(&transport)
        .target(&nova, &topic)
        .endpoint(endpoint)
        .build()
        .unwrap();
    let plain = started(plain).await;
    let (endpoint, _pool_seen) = recorder(Priority::Info);
    let pooled = NotificationListener::builder(&transport)
        .target(&nova, &topic)
        .target(&glance, &topic)
        .pool(&pool)
        .endpoint(endpoint)
        .build()
        .unwrap();
    let pooled = started(pooled).await;

    let vhost = crate::rabbit_topology::test_vhost();
    let exchanges = crate::rabbit_topology::list(&[
        "list_exchanges",
        "-p",
        &vhost,
        "name",
        "type",
        "durable",
        "auto_delete",
        "arguments",
    ])
    .await;
    for exchange in [&nova, &glance] {
        let row = exchanges
            .iter()
            .find(|r| r["name"] == exchange.as_str())
            .unwrap_or_else(|| panic!("no exchange {exchange}"));
        assert_eq!(row["type"], "topic");
        assert_eq!(
            (row["durable"].as_bool(), row["auto_delete"].as_bool()),
            (Some(false), Some(false))
        );
        assert_eq!(row["arguments"], json!([]));
    }
    let queues = crate::rabbit_topology::list(&[
        "list_queues",
        "-p",
        &vhost,
        "name",
        "durable",
        "auto_delete",
        "exclusive",
        "arguments",
    ])
    .await;
    let ours: BTreeSet<String> = queues
        .iter()
        .filter_map(|r| r["name"].as_str())
        .filter(|n| n.starts_with(&topic) || *n == pool)
        .map(str::to_owned)
        .collect();
    let expected: BTreeSet<String> = [
        format!("{topic}.error"),
        format!("{topic}.info"),
        format!("{topic}.warn"),
        pool.clone(),
    ]
    .into();
    assert_eq!(ours, expected);
    for row in queues
        .iter()
        .filter(|r| r["name"].as_str().is_some_and(|n| ours.contains(n)))
    {
        assert_eq!(row["durable"], false, "{row}");
        assert_eq!(row["auto_delete"], false, "{row}");
        assert_eq!(row["exclusive"], false, "{row}");
        assert_eq!(row["arguments"], json!([]), "{row}");
    }
    let bindings = crate::rabbit_topology::list(&[
        "list_bindings",
        "-p",
        &vhost,
        "source_name",
        "destination_name",
        "routing_key",
    ])
    .await;
    let ours: BTreeSet<(String, String, String)> = bindings
        .iter()
        .filter(|r| r["source_name"] == nova.as_str() || r["source_name"] == glance.as_str())
        .map(|r| {
            let s = |k: &str| r[k].as_str().unwrap_or_default().to_owned();
            (s("source_name"), s("destination_name"), s("routing_key"))
        })
        .collect();
    let key = |p: &str| format!("{topic}.{p}");
    let expected: BTreeSet<(String, String, String)> = [
        (nova.clone(), key("error"), key("error")),
        (nova.clone(), key("info"), key("info")),
        (nova.clone(), key("warn"), key("warn")),
        (nova.clone(), pool.clone(), key("info")),
        (glance.clone(), pool.clone(), key("info")),
    ]
    .into();
    assert_eq!(ours, expected);
    plain.stop().await;
    pooled.stop().await;
    // Queues outlive their listeners, as oslo's do.
    let after = crate::rabbit_topology::list(&["list_queues", "-p", &vhost, "name"]).await;
    assert!(after.iter().any(|r| r["name"] == pool.as_str()));
}
