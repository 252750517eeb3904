//! The `rabbit://` transport against the local RabbitMQ: routing, message properties, acks and
//! requeue on stop, expiration, call-monitor heartbeats, reply retry, closed connections, and
//! many calls in flight. Each test uses its own topic in the run's vhost (`scripts/test.sh`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use amqp_rpc::{
    Context, RpcClient, RpcError, RpcServer, Target, Transport, TransportError, rpc_client,
    rpc_endpoint, wire,
};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{Value, json};

use crate::common;
use common::{test_broker, unique, until};

#[rpc_endpoint]
#[rpc_client]
trait Worker {
    /// The server's name.
    async fn whoami(&self) -> String;
    /// Sleeps, then returns `n`.
    async fn slow(&self, n: u64, millis: u64) -> u64;
    /// `text` back.
    async fn echo(&self, text: String) -> String;
    /// Counts a cast.
    #[rpc(cast)]
    async fn record(&self);
}

struct Named {
    name: String,
    started: Arc<AtomicUsize>,
    recorded: Arc<AtomicUsize>,
}

impl Named {
    fn new(name: &str) -> Named {
        Named {
            name: name.to_owned(),
            started: Arc::default(),
            recorded: Arc::default(),
        }
    }
}

impl Worker for Named {
    async fn whoami(&self) -> String {
        self.name.clone()
    }

    async fn slow(&self, n: u64, millis: u64) -> u64 {
        self.started.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(millis)).await;
        n
    }

    async fn echo(&self, text: String) -> String {
        text
    }

    async fn record(&self) {
        self.recorded.fetch_add(1, Ordering::SeqCst);
    }
}

async fn transport(url: &str) -> Transport {
    Transport::from_url(url)
        .await
        .expect("connect to the test broker")
}

/// A server on `topic`, named after its worker.
async fn serve(transport: &Transport, topic: &str, worker: Named, max: usize) -> RpcServer {
    let name = worker.name.clone();
    serve_named(transport, topic, &name, worker, max).await
}

/// A server named `name` on `topic`.
async fn serve_named(
    transport: &Transport,
    topic: &str,
    name: &str,
    worker: Named,
    max: usize,
) -> RpcServer {
    let server = RpcServer::builder(transport, Target::server(topic, name))
        .endpoint(WorkerEndpoint::new(worker))
        .max_concurrency(max)
        .build()
        .unwrap();
    server.start().await.unwrap();
    server
}

/// `count` concurrent `slow(n, millis)` calls.
fn spawn_slow(
    client: &WorkerClient,
    count: u64,
    millis: u64,
) -> Vec<tokio::task::JoinHandle<Result<u64, RpcError>>> {
    (0..count)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move { client.slow(n, millis).await })
        })
        .collect()
}

/// A raw AMQP connection to the same vhost, for what the library does not show.
async fn raw(url: &str) -> lapin::Channel {
    let amqp = url.replacen("rabbit://", "amqp://", 1);
    let connection = Connection::connect(&amqp, ConnectionProperties::default())
        .await
        .unwrap();
    let channel = connection.create_channel().await.unwrap();
    // The connection lives as long as the channel's test.
    std::mem::forget(connection);
    channel
}

/// A queue deleted with its last consumer, for raw checks.
async fn declare_temporary_queue(channel: &lapin::Channel, name: &str) {
    let options = QueueDeclareOptions {
        auto_delete: true,
        ..Default::default()
    };
    channel
        .queue_declare(name.into(), options, FieldTable::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn calls_round_robin_direct_and_fanout_over_rabbitmq() {
    let url = test_broker!();
    let transport = transport(&url).await;
    let topic = unique("rr");
    let workers: Vec<Named> = ["s1", "s2", "s3"].into_iter().map(Named::new).collect();
    let recorded: Vec<Arc<AtomicUsize>> = workers.iter().map(|w| Arc::clone(&w.recorded)).collect();
    let mut servers = Vec::new();
    for worker in workers {
        let name = worker.name.clone();
        servers.push(serve_named(&transport, &topic, &name, worker, 8).await);
    }
    let client = WorkerClient::new(&transport, topic.clone()).with_timeout(Duration::from_secs(10));

    let mut answers: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..30 {
        *answers.entry(client.whoami().await.unwrap()).or_default() += 1;
    }
    assert_eq!(
        answers.values().copied().collect::<Vec<_>>(),
        vec![10, 10, 10],
        "{answers:?}"
    );

    for _ in 0..5 {
        assert_eq!(client.with_server("s2").whoami().await.unwrap(), "s2");
    }

    client.fanout().record().await.unwrap();
    until(
        "the fanout reached every server",
        Duration::from_secs(10),
        || recorded.iter().all(|r| r.load(Ordering::SeqCst) > 0),
    )
    .await;
    let counts: Vec<usize> = recorded.iter().map(|r| r.load(Ordering::SeqCst)).collect();
    assert_eq!(
        counts,
        vec![1, 1, 1],
        "a fanout cast reaches every server once"
    );
    for server in &servers {
        server.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn requests_carry_oslos_properties_and_call_expiration() {
    let url = test_broker!();
    let transport = transport(&url).await;
    let topic = unique("props");
    // Our own queue on the control exchange, bound as a topic queue would be.
    let channel = raw(&url).await;
    channel
        .exchange_declare(
            "openstack".into(),
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    declare_temporary_queue(&channel, &topic).await;
    channel
        .queue_bind(
            topic.as_str().into(),
            "openstack".into(),
            topic.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut consumer = channel
        .basic_consume(
            topic.as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();

    let client = RpcClient::new(&transport, Target::new(topic.clone()))
        .with_timeout(Duration::from_millis(1500));
    let calling = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .call::<Value>(&Context::new(), "m", json!({"a": 1}))
                .await
        }
    });
    let call = consumer.next().await.unwrap().unwrap();
    client.cast(&Context::new(), "m", json!({})).await.unwrap();
    let cast = consumer.next().await.unwrap().unwrap();

    for (what, delivery) in [("call", &call), ("cast", &cast)] {
        let p = &delivery.properties;
        assert_eq!(
            p.content_type().as_ref().map(|s| s.as_str()),
            Some("application/json"),
            "{what}"
        );
        assert_eq!(
            p.content_encoding().as_ref().map(|s| s.as_str()),
            Some("utf-8"),
            "{what}"
        );
        assert_eq!(*p.delivery_mode(), Some(2), "{what}");
        assert_eq!(*p.priority(), Some(0), "{what}");
        assert!(
            p.correlation_id().is_none() && p.reply_to().is_none(),
            "{what}: routing is in the body"
        );
    }
    assert_eq!(
        call.properties.expiration().as_ref().map(|s| s.as_str()),
        Some("1500")
    );
    assert_eq!(cast.properties.expiration(), &None, "casts never expire");
    let request = wire::open(&call.data).unwrap();
    assert_eq!(request["method"], "m");
    assert!(request["_reply_q"].as_str().unwrap().starts_with("reply_"));
    call.acker.ack(BasicAckOptions::default()).await.unwrap();
    cast.acker.ack(BasicAckOptions::default()).await.unwrap();
    // Nobody answers: the call times out.
    assert!(calling.await.unwrap().unwrap_err().is_timeout());
    channel
        .queue_delete(topic.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn stopping_a_server_returns_unstarted_requests_to_the_queue() {
    let url = test_broker!();
    let transport = transport(&url).await;
    let topic = unique("stop");
    let first = Named::new("s1");
    let first_started = Arc::clone(&first.started);
    let s1 = serve(&transport, &topic, first, 2).await;
    let client = WorkerClient::new(&transport, topic.clone()).with_timeout(Duration::from_secs(30));
    let calls = spawn_slow(&client, 10, 400);
    until("two requests started", Duration::from_secs(10), || {
        first_started.load(Ordering::SeqCst) == 2
    })
    .await;
    s1.stop().await;
    s1.wait().await;
    assert_eq!(
        first_started.load(Ordering::SeqCst),
        2,
        "prefetch 2: only two requests taken"
    );

    let second = Named::new("s2");
    let second_started = Arc::clone(&second.started);
    let s2 = serve(&transport, &topic, second, 8).await;
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap().unwrap());
    }
    results.sort_unstable();
    assert_eq!(results, (0..10).collect::<Vec<u64>>(), "no request lost");
    assert_eq!(second_started.load(Ordering::SeqCst), 8);
    s2.stop().await;
}

/// Undecodable requests are rejected without requeue (spec §2.5): the server goes on serving,
/// and once it has stopped nothing is back in its queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn undecodable_requests_are_rejected_not_requeued() {
    let url = test_broker!();
    let transport = transport(&url).await;
    let topic = unique("undecodable");
    let server = serve(&transport, &topic, Named::new("s1"), 4).await;
    let channel = raw(&url).await;
    // Confirmed, so they are queued before the call below.
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let bodies: [&[u8]; 3] = [
        b"not json",
        br#"{"oslo.version": "9.9", "oslo.message": "{}"}"#,
        b"[1, 2]",
    ];
    for body in bodies {
        let properties = BasicProperties::default().with_content_type("application/json".into());
        channel
            .basic_publish(
                "".into(),
                topic.as_str().into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .unwrap()
            .await
            .unwrap();
    }
    let client = WorkerClient::new(&transport, topic.clone()).with_timeout(Duration::from_secs(10));
    assert_eq!(
        client.whoami().await.unwrap(),
        "s1",
        "the server still serves"
    );
    server.stop().await;
    server.wait().await;
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let queue = channel
        .queue_declare(topic.as_str().into(), passive, FieldTable::default())
        .await
        .unwrap();
    assert_eq!(queue.message_count(), 0, "rejected, not requeued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn a_dead_server_leaves_its_unstarted_requests_to_another_server() {
    let url = test_broker!();
    let topic = unique("dead");
    let doomed_transport = transport(&url).await;
    let doomed = Named::new("s1");
    let doomed_started = Arc::clone(&doomed.started);
    let _s1 = serve(&doomed_transport, &topic, doomed, 2).await;
    let transport = transport(&url).await;
    let client = WorkerClient::new(&transport, topic.clone()).with_timeout(Duration::from_secs(3));
    let calls = spawn_slow(&client, 10, 400);
    until("two requests started", Duration::from_secs(10), || {
        doomed_started.load(Ordering::SeqCst) == 2
    })
    .await;
    // The server's connection dies with two requests started and more prefetched.
    doomed_transport.close().await;
    let survivor = Named::new("s2");
    let survivor_started = Arc::clone(&survivor.started);
    let s2 = serve(&transport, &topic, survivor, 8).await;
    let (mut answered, mut lost) = (0, 0);
    for call in calls {
        match call.await.unwrap() {
            Ok(_) => answered += 1,
            Err(e) if e.is_timeout() => lost += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    // At-most-once: the two started on the dead server are lost; none of the others is.
    assert_eq!((answered, lost), (8, 2));
    assert_eq!(survivor_started.load(Ordering::SeqCst), 8);
    s2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn expired_call_requests_are_dropped_by_the_broker() {
    let url = test_broker!();
    let transport = transport(&url).await;
    let topic = unique("expire");
    let worker = Named::new("s1");
    let started = Arc::clone(&worker.started);
    // Declare the queues, then stop consuming.
    let server = serve(&transport, &topic, worker, 4).await;
    server.stop().await;
    let client =
        WorkerClient::new(&transport, topic.clone()).with_timeout(Duration::from_millis(300));
    assert!(client.slow(1, 0).await.unwrap_err().is_timeout());
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.start().await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        started.load(Ordering::SeqCst),
        0,
        "the expired request never ran"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn call_monitor_heartbeats_keep_a_long_call_alive_over_rabbitmq() {
    let url = test_broker!();
    let transport = transport(&url).await;
    let topic = unique("beat");
    let server = serve(&transport, &topic, Named::new("s1"), 4).await;
    let client = WorkerClient::new(&transport, topic.clone())
        .with_timeout(Duration::from_secs(10))
        .with_call_monitor_timeout(Duration::from_secs(2));
    assert_eq!(client.slow(7, 3500).await.unwrap(), 7);
    // Without heartbeats (a monitor timeout under 2 s), the same call is given up early.
    let started = Instant::now();
    let impatient = client.with_call_monitor_timeout(Duration::from_secs(1));
    assert!(impatient.slow(8, 2500).await.unwrap_err().is_timeout());
    assert!(started.elapsed() < Duration::from_secs(2));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn a_reply_to_a_missing_reply_queue_is_retried_until_the_queue_appears() {
    let url = test_broker!();
    let transport = transport(&url).await;
    let topic = unique("retry");
    let server = serve(&transport, &topic, Named::new("s1"), 4).await;
    let reply_q = unique("reply_late");
    let channel = raw(&url).await;
    // A call whose reply queue does not exist yet.
    let request = json!({
        "method": "whoami", "args": {}, "_msg_id": "m-late", "_reply_q": reply_q,
        "_timeout": null, "_unique_id": uuid::Uuid::new_v4().simple().to_string(),
    });
    let body = wire::seal(&request.to_string());
    let properties = BasicProperties::default().with_content_type("application/json".into());
    channel
        .basic_publish(
            "openstack".into(),
            topic.as_str().into(),
            BasicPublishOptions::default(),
            &body,
            properties,
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(700)).await;
    declare_temporary_queue(&channel, &reply_q).await;
    let mut replies = channel
        .basic_consume(
            reply_q.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), replies.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let reply = wire::open(&reply.data).unwrap();
    assert_eq!(
        (reply["_msg_id"].as_str(), reply["result"].as_str()),
        (Some("m-late"), Some("s1"))
    );
    server.stop().await;
}

/// Publishes a raw call of `echo(text)` to `topic`, answered to `reply_q`.
async fn raw_echo(channel: &lapin::Channel, topic: &str, msg_id: &str, reply_q: &str, text: &str) {
    let request = json!({
        "method": "echo", "args": {"text": text}, "_msg_id": msg_id, "_reply_q": reply_q,
        "_timeout": null, "_unique_id": uuid::Uuid::new_v4().simple().to_string(),
    });
    let body = wire::seal(&request.to_string());
    let properties = BasicProperties::default().with_content_type("application/json".into());
    channel
        .basic_publish(
            "openstack".into(),
            topic.into(),
            BasicPublishOptions::default(),
            &body,
            properties,
        )
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn replies_to_missing_reply_queues_free_their_slots_and_their_bodies_are_not_logged_again() {
    // lapin logs from its own thread: the subscriber is the process's.
    let log = common::log::capture_everywhere();
    let url = test_broker!();
    let transport = transport(&format!("{url}?kombu_missing_consumer_retry_timeout=2")).await;
    let topic = unique("gone");
    let max = 2;
    let server = serve(&transport, &topic, Named::new("s1"), max).await;
    let channel = raw(&url).await;
    // `late` is declared after a second (a caller reconnecting); `never` is not.
    let (late, never) = (unique("reply_late"), unique("reply_never"));
    let marker = unique("reply-body");
    let text = format!("{marker}{}", "x".repeat(20_000));
    for n in 0..2 * max {
        raw_echo(&channel, &topic, &format!("late-{n}"), &late, &text).await;
    }
    for n in 0..max {
        raw_echo(&channel, &topic, &format!("never-{n}"), &never, &text).await;
    }

    // A call behind them is answered at once: no handler slot waits on a missing queue.
    let client = WorkerClient::new(&transport, topic.clone());
    let answered = tokio::time::timeout(Duration::from_secs(2), client.whoami()).await;
    assert_eq!(answered.expect("answered at once").unwrap(), "s1");

    // lapin logs a returned message whole (at WARN, its body as a list of bytes): only a
    // reply's first publish may be returned, none of the retries, which ask the broker whether
    // the queue is back instead.
    let body_lines = || {
        let mut lines = log.lines_with(&marker);
        lines.extend(log.lines_with(&common::log::as_logged_bytes(&marker)));
        lines
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let first = body_lines();
    assert!(first.len() <= 3 * max, "{} lines", first.len());
    assert!(
        first.iter().all(|l| l.contains("lapin::returned_messages")),
        "{first:#?}"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        body_lines().len(),
        first.len(),
        "a retry published a reply again"
    );

    // The caller's queue is back within the retry time: its replies arrive.
    declare_temporary_queue(&channel, &late).await;
    let mut replies = channel
        .basic_consume(
            late.as_str().into(),
            "".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut msg_ids = Vec::new();
    for _ in 0..2 * max {
        let reply = tokio::time::timeout(Duration::from_secs(2), replies.next())
            .await
            .expect("a kept reply")
            .unwrap()
            .unwrap();
        let reply = wire::open(&reply.data).unwrap();
        assert_eq!(reply["result"].as_str(), Some(text.as_str()));
        msg_ids.push(reply["_msg_id"].as_str().unwrap().to_owned());
    }
    msg_ids.sort();
    assert_eq!(
        msg_ids,
        (0..2 * max)
            .map(|n| format!("late-{n}"))
            .collect::<Vec<_>>()
    );

    // The other queue is given up after the retry time: one line per reply, without its body.
    until(
        "the replies to `never` given up",
        Duration::from_secs(5),
        || {
            log.lines_with(&never)
                .iter()
                .filter(|l| l.contains("reply dropped"))
                .count()
                == max
        },
    )
    .await;
    assert_eq!(body_lines().len(), first.len());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn closing_the_connection_fails_pending_and_new_calls_with_a_transport_error() {
    let url = test_broker!();
    let server_transport = transport(&url).await;
    let topic = unique("close");
    let server = serve(&server_transport, &topic, Named::new("s1"), 4).await;
    let transport = transport(&url).await;
    let client = WorkerClient::new(&transport, topic.clone()).with_timeout(Duration::from_secs(30));
    assert_eq!(client.slow(1, 0).await.unwrap(), 1);
    let pending = tokio::spawn({
        let client = client.clone();
        async move { client.slow(2, 5_000).await }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    transport.close().await;
    let err = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("no hang")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(err, RpcError::Transport(TransportError::Closed { .. })),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(2));
    let err = tokio::time::timeout(Duration::from_secs(5), client.slow(3, 0))
        .await
        .expect("no hang")
        .unwrap_err();
    assert!(err.is_transport(), "{err:?}");
    server.stop().await;
    server.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn two_thousand_concurrent_calls_share_one_client() {
    let url = test_broker!();
    let transport = transport(&url).await;
    let topic = unique("many");
    let server = serve(&transport, &topic, Named::new("s1"), 256).await;
    let client = WorkerClient::new(&transport, topic.clone()).with_timeout(Duration::from_secs(60));
    let calls: Vec<_> = (0..2000u64)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move { client.slow(n, 1).await })
        })
        .collect();
    for (n, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), n as u64);
    }
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn unknown_url_options_and_unreachable_brokers_are_errors_not_hangs() {
    let url = test_broker!();
    let bogus = format!("{url}?no_such_option=1");
    assert!(matches!(
        Transport::from_url(&bogus).await,
        Err(RpcError::Url(_))
    ));
    let started = Instant::now();
    let refused = Transport::from_url("rabbit://guest:guest@127.0.0.1:1/").await;
    assert!(
        matches!(
            &refused,
            Err(e @ RpcError::Transport(TransportError::Unreachable { .. })) if e.is_retryable()
        ),
        "{refused:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn a_call_without_a_usable_timeout_is_sent_with_rabbitmqs_longest_expiration() {
    let url = test_broker!();
    let transport = transport(&url).await;
    let topic = unique("max-timeout");
    let _server = serve(&transport, &topic, Named::new("s1"), 4).await;
    // Duration::MAX in milliseconds is beyond what RabbitMQ takes as an expiration (it would
    // close the channel); the request goes out with 2^32 - 1 ms.
    let client = WorkerClient::new(&transport, &topic).with_timeout(Duration::MAX);
    assert_eq!(client.whoami().await.unwrap(), "s1");
}

/// Starts a server on `topic` and returns why it could not start.
async fn start_failure(transport: &Transport, topic: &str) -> RpcError {
    let server = RpcServer::builder(transport, Target::server(topic, "s1"))
        .endpoint(WorkerEndpoint::new(Named::new("s1")))
        .build()
        .unwrap();
    match server.start().await {
        Ok(()) => {
            server.stop().await;
            panic!("the server started on {topic}");
        }
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn a_queue_declared_otherwise_is_a_broker_refusal_not_retried() {
    let url = test_broker!();
    let transport = transport(&url).await;
    let topic = unique("inequivalent");
    let channel = raw(&url).await;
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    channel
        .queue_declare(topic.as_str().into(), durable, FieldTable::default())
        .await
        .unwrap();
    let err = start_failure(&transport, &topic).await;
    assert!(
        matches!(&err, RpcError::Transport(TransportError::Broker { code: 406, text }) if text.contains("durable")),
        "{err:?}"
    );
    assert!(!err.is_retryable(), "{err:?}");
    // The connection stands: the transport still works.
    assert!(transport.connection_state().is_connected());
    channel
        .queue_delete(topic.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn a_queue_locked_by_another_connection_is_a_retryable_broker_refusal() {
    let url = test_broker!();
    let transport = transport(&url).await;
    let topic = unique("locked");
    let channel = raw(&url).await;
    let exclusive = QueueDeclareOptions {
        exclusive: true,
        ..Default::default()
    };
    channel
        .queue_declare(topic.as_str().into(), exclusive, FieldTable::default())
        .await
        .unwrap();
    let err = start_failure(&transport, &topic).await;
    assert!(
        matches!(
            &err,
            RpcError::Transport(TransportError::Broker { code: 405, .. })
        ),
        "{err:?}"
    );
    assert!(err.is_retryable(), "{err:?}");
    channel
        .queue_delete(topic.as_str().into(), QueueDeleteOptions::default())
        .await
        .unwrap();
    transport.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn a_rabbit_driver_asked_to_listen_without_a_server_reports_an_invalid_target() {
    let url = test_broker!();
    let transport = transport(&url).await;
    let listened = transport
        .driver()
        .listen_rpc(&Target::new(unique("no-server")), 0)
        .await;
    assert!(
        matches!(
            listened,
            Err(TransportError::InvalidTarget(
                amqp_rpc::TargetError::MissingServer { .. }
            ))
        ),
        "{listened:?}"
    );
    transport.close().await;
}
