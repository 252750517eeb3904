//! Server lifecycle: start, stop, wait and restart; the concurrency limit; panicking handlers.
//! Every test runs on a private in-memory broker.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use amqp_rpc::{RpcError, RpcServer, ServerConfig, Target, Transport, rpc_client, rpc_endpoint};

use crate::common;
use common::until;

#[rpc_endpoint]
#[rpc_client]
trait Jobs {
    /// Sleeps the worker's delay and returns `n`.
    async fn work(&self, n: u64) -> u64;
    /// Panics.
    async fn boom(&self);
}

/// Counts started, finished and the peak in flight of its `work` calls.
#[derive(Default)]
struct Worker {
    delay: Duration,
    started: AtomicUsize,
    finished: AtomicUsize,
    in_flight: AtomicUsize,
    peak: AtomicUsize,
}

impl Worker {
    fn new(delay: Duration) -> Arc<Worker> {
        Arc::new(Worker {
            delay,
            ..Worker::default()
        })
    }
}

/// Implemented on the `Arc`, so that the test keeps a handle on the counters.
impl Jobs for Arc<Worker> {
    async fn work(&self, n: u64) -> u64 {
        self.started.fetch_add(1, Ordering::SeqCst);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.finished.fetch_add(1, Ordering::SeqCst);
        n
    }

    async fn boom(&self) {
        panic!("kaboom in handler");
    }
}

fn server(
    transport: &Transport,
    name: &str,
    worker: &Arc<Worker>,
    max_concurrency: usize,
) -> RpcServer {
    RpcServer::builder(transport, Target::server("jobs", name))
        .endpoint(JobsEndpoint::new(Arc::clone(worker)))
        .max_concurrency(max_concurrency)
        .build()
        .unwrap()
}

fn client(transport: &Transport) -> JobsClient {
    JobsClient::new(transport, "jobs").with_timeout(Duration::from_secs(20))
}

/// Starts `count` concurrent `work(n)` calls.
fn spawn_calls(
    client: &JobsClient,
    count: u64,
) -> Vec<tokio::task::JoinHandle<Result<u64, RpcError>>> {
    (0..count)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move { client.work(n).await })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_wait_drain_in_flight_calls_and_requeue_the_rest() {
    let transport = Transport::memory();
    let first = Worker::new(Duration::from_millis(300));
    let s1 = server(&transport, "s1", &first, 4);
    s1.start().await.unwrap();
    let calls = spawn_calls(&client(&transport), 20);
    until("four calls run", Duration::from_secs(5), || {
        first.started.load(Ordering::SeqCst) == 4
    })
    .await;

    s1.stop().await;
    assert_eq!(
        first.finished.load(Ordering::SeqCst),
        0,
        "stop does not wait for handlers"
    );
    s1.wait().await;
    assert_eq!(
        first.finished.load(Ordering::SeqCst),
        4,
        "wait returns after in-flight calls end"
    );
    assert_eq!(
        first.started.load(Ordering::SeqCst),
        4,
        "a stopped server takes nothing new"
    );

    // The 16 requests the first server never started are still queued for another server.
    let second = Worker::new(Duration::from_millis(1));
    let s2 = server(&transport, "s2", &second, 4);
    s2.start().await.unwrap();
    let mut results = Vec::new();
    for call in calls {
        results.push(call.await.unwrap().unwrap());
    }
    assert_eq!(
        results,
        (0..20).collect::<Vec<u64>>(),
        "no call lost, each got its own result"
    );
    assert_eq!(second.started.load(Ordering::SeqCst), 16);
    s2.stop().await;
    s2.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrency_limit_bounds_handlers_in_flight() {
    let transport = Transport::memory();
    let worker = Worker::new(Duration::from_millis(30));
    let s = server(&transport, "s", &worker, 3);
    s.start().await.unwrap();
    for call in spawn_calls(&client(&transport), 30) {
        call.await.unwrap().unwrap();
    }
    assert_eq!(worker.peak.load(Ordering::SeqCst), 3);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn default_concurrency_limit_is_64() {
    assert_eq!(ServerConfig::default().max_concurrency, 64);
    let transport = Transport::memory();
    let worker = Worker::new(Duration::from_millis(100));
    let s = RpcServer::builder(&transport, Target::server("jobs", "s"))
        .endpoint(JobsEndpoint::new(Arc::clone(&worker)))
        .build()
        .unwrap();
    s.start().await.unwrap();
    for call in spawn_calls(&client(&transport), 100) {
        call.await.unwrap().unwrap();
    }
    assert_eq!(worker.peak.load(Ordering::SeqCst), 64);
    s.stop().await;
}

#[tokio::test]
async fn zero_concurrency_is_a_configuration_error() {
    let transport = Transport::memory();
    let config = ServerConfig::default().with_max_concurrency(0);
    let err = RpcServer::builder(&transport, Target::server("jobs", "s"))
        .endpoint(JobsEndpoint::new(Worker::new(Duration::ZERO)))
        .config(config)
        .build()
        .unwrap_err();
    assert!(matches!(err, RpcError::InvalidConfig { .. }), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_handler_gives_a_remote_failure_and_the_server_lives_on() {
    let transport = Transport::memory();
    let worker = Worker::new(Duration::ZERO);
    let s = server(&transport, "s", &worker, 2);
    s.start().await.unwrap();
    let client = client(&transport);
    let err = client.boom().await.unwrap_err();
    let remote = err.remote().expect("a remote failure");
    assert_eq!(
        (remote.class(), remote.module()),
        ("RuntimeError", "builtins")
    );
    assert!(
        remote.message().contains("kaboom in handler"),
        "{}",
        remote.message()
    );
    // The panic released its concurrency slot: both slots still serve calls.
    for call in spawn_calls(&client, 4) {
        call.await.unwrap().unwrap();
    }
    s.stop().await;
    s.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stopped_server_starts_again_and_serves_what_queued_meanwhile() {
    let transport = Transport::memory();
    let worker = Worker::new(Duration::ZERO);
    let s = server(&transport, "s", &worker, 4);
    let client = client(&transport);
    s.start().await.unwrap();
    s.start().await.unwrap(); // a second start is ignored
    assert_eq!(client.work(1).await.unwrap(), 1);
    s.stop().await;
    s.wait().await;

    let queued = spawn_calls(&client, 3);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        worker.started.load(Ordering::SeqCst),
        1,
        "nothing served while stopped"
    );
    s.start().await.unwrap();
    for (n, call) in queued.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), n as u64);
    }
    s.stop().await;
    s.wait().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_without_stop_returns_once_another_task_stops_the_server() {
    let transport = Transport::memory();
    let s = Arc::new(server(&transport, "s", &Worker::new(Duration::ZERO), 1));
    s.start().await.unwrap();
    let waiting = tokio::spawn({
        let s = Arc::clone(&s);
        async move { s.wait().await }
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        !waiting.is_finished(),
        "wait must not return while the server runs"
    );
    s.stop().await;
    tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("wait returns after stop")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_running_server_stops_it_consuming() {
    let transport = Transport::memory();
    let dropped = Worker::new(Duration::ZERO);
    let s1 = server(&transport, "s1", &dropped, 4);
    s1.start().await.unwrap();
    drop(s1);
    let kept = Worker::new(Duration::ZERO);
    let s2 = server(&transport, "s2", &kept, 4);
    s2.start().await.unwrap();
    let client = client(&transport);
    for n in 0..6 {
        assert_eq!(client.work(n).await.unwrap(), n);
    }
    assert_eq!(dropped.started.load(Ordering::SeqCst), 0);
    assert_eq!(kept.started.load(Ordering::SeqCst), 6);
    s2.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transport_options_set_the_default_timeout_and_concurrency() {
    let url = format!(
        "memory:///{}?rpc_response_timeout=7&executor_thread_pool_size=3",
        uuid::Uuid::new_v4().simple()
    );
    let transport = Transport::from_url(&url).await.unwrap();
    let rpc = amqp_rpc::RpcClient::new(&transport, Target::new("jobs"));
    assert_eq!(rpc.timeout(), Duration::from_secs(7));
    let worker = Worker::new(Duration::from_millis(30));
    let s = RpcServer::builder(&transport, Target::server("jobs", "s"))
        .endpoint(JobsEndpoint::new(Arc::clone(&worker)))
        .build()
        .unwrap();
    s.start().await.unwrap();
    for call in spawn_calls(&client(&transport), 30) {
        call.await.unwrap().unwrap();
    }
    assert_eq!(worker.peak.load(Ordering::SeqCst), 3);
    s.stop().await;
}

// On the paused clock: the retry time passes without waiting for it, and the bounds are exact.
#[tokio::test(start_paused = true)]
async fn a_reply_queue_missing_for_the_retry_time_is_then_skipped_at_once() {
    use amqp_rpc::driver::{Destination, PublishOptions};
    let url = format!(
        "memory:///{}?kombu_missing_consumer_retry_timeout=1",
        uuid::Uuid::new_v4().simple()
    );
    let transport = Transport::from_url(&url).await.unwrap();
    let worker = Worker::new(Duration::ZERO);
    let s = server(&transport, "s", &worker, 1);
    s.start().await.unwrap();
    let publish_to_missing_queue = |msg_id: &'static str| {
        let transport = transport.clone();
        async move {
            let request = serde_json::json!({
                "method": "work", "args": {"n": 0}, "_msg_id": msg_id,
                "_reply_q": "reply_gone", "_timeout": null, "_unique_id": msg_id,
            });
            let body = amqp_rpc::wire::seal(&request.to_string());
            let to = Destination::Rpc {
                exchange: None,
                topic: "jobs",
                server: None,
            };
            transport
                .driver()
                .publish(to, body.into(), PublishOptions::default())
                .await
                .unwrap();
        }
    };
    let client = client(&transport);

    // The reply is retried for the configured second, in the background: the only handler
    // slot is free at once...
    publish_to_missing_queue("m1").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = tokio::time::Instant::now();
    assert_eq!(client.work(1).await.unwrap(), 1);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(1300)).await;

    // ...after which replies to that queue are dropped without retrying.
    publish_to_missing_queue("m2").await;
    let started = tokio::time::Instant::now();
    assert_eq!(client.work(2).await.unwrap(), 2);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    s.stop().await;
}

// ---------------------------------------------------------------------------------------------
// serve_until and ServerHandle
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_until_drains_in_flight_calls_after_the_signal_and_leaves_the_rest_queued() {
    let transport = Transport::memory();
    let worker = Worker::new(Duration::from_millis(300));
    let s = server(&transport, "s", &worker, 2);
    let (signal, signalled) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        let result = s.serve_until(async { drop(signalled.await) }).await;
        (s, result)
    });
    let calls = spawn_calls(&client(&transport), 5);
    until("two calls run", Duration::from_secs(5), || {
        worker.started.load(Ordering::SeqCst) == 2
    })
    .await;
    signal.send(()).unwrap();
    let (s, result) = serving.await.unwrap();
    result.unwrap();
    assert_eq!(
        worker.finished.load(Ordering::SeqCst),
        2,
        "serve_until returns after the calls in flight are answered"
    );
    assert!(!s.handle().is_running());
    // The three calls not started are still queued: a restart serves them.
    s.start().await.unwrap();
    let results: Vec<u64> = futures_util::future::join_all(calls)
        .await
        .into_iter()
        .map(|call| call.unwrap().unwrap())
        .collect();
    assert_eq!(results, (0..5).collect::<Vec<u64>>(), "no call lost");
    assert_eq!(worker.started.load(Ordering::SeqCst), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_stops_the_server_from_another_task() {
    let transport = Transport::memory();
    let worker = Worker::new(Duration::from_millis(200));
    let s = server(&transport, "s", &worker, 4);
    let handle = s.handle();
    assert!(!handle.is_running(), "not started yet");
    let serving = tokio::spawn(async move { s.serve_until(std::future::pending()).await });
    let client = client(&transport);
    let call = tokio::spawn({
        let client = client.clone();
        async move { client.work(7).await }
    });
    until("the call runs", Duration::from_secs(5), || {
        worker.started.load(Ordering::SeqCst) == 1
    })
    .await;
    assert!(handle.is_running());

    let stopper = handle.clone();
    tokio::spawn(async move { stopper.stop() });
    handle.stopped().await;
    assert!(!handle.is_running());
    assert_eq!(
        worker.finished.load(Ordering::SeqCst),
        1,
        "stopped() waits for the call in flight"
    );
    assert_eq!(call.await.unwrap().unwrap(), 7);
    tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("serve_until returns once the server is stopped")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_before_start_does_not_cancel_the_next_start() {
    let transport = Transport::memory();
    let worker = Worker::new(Duration::ZERO);
    let s = server(&transport, "s", &worker, 4);
    s.handle().stop();
    s.start().await.unwrap();
    assert_eq!(client(&transport).work(3).await.unwrap(), 3);
    // Stopped by the handle, the server starts again at once, without its owner's `stop`.
    s.handle().stop();
    s.handle().stopped().await;
    s.start().await.unwrap();
    assert!(s.handle().is_running());
    assert_eq!(client(&transport).work(4).await.unwrap(), 4);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_until_fails_when_the_transport_is_closed_under_it() {
    let transport = Transport::memory();
    let s = server(&transport, "s", &Worker::new(Duration::ZERO), 4);
    let handle = s.handle();
    let serving = tokio::spawn(async move { s.serve_until(std::future::pending()).await });
    until("the server runs", Duration::from_secs(5), || {
        handle.is_running()
    })
    .await;
    transport.close().await;
    let result = tokio::time::timeout(Duration::from_secs(5), serving)
        .await
        .expect("serve_until returns when its transport closes")
        .unwrap();
    assert!(
        matches!(result, Err(RpcError::Transport(_))),
        "a transport error, not a silent Ok: {result:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_shared_endpoint_serves_on_two_servers() {
    let transport = Transport::memory();
    let worker = Worker::new(Duration::ZERO);
    let shared = Arc::new(JobsEndpoint::new(Arc::clone(&worker)));
    let (a, b) = (
        RpcServer::builder(&transport, Target::server("jobs", "a"))
            .endpoint(Arc::clone(&shared))
            .build()
            .unwrap(),
        RpcServer::builder(&transport, Target::server("jobs", "b"))
            .endpoint(shared)
            .build()
            .unwrap(),
    );
    a.start().await.unwrap();
    b.start().await.unwrap();
    let client = client(&transport);
    assert_eq!(client.with_server("a").work(1).await.unwrap(), 1);
    assert_eq!(client.with_server("b").work(2).await.unwrap(), 2);
    assert_eq!(worker.finished.load(Ordering::SeqCst), 2);
    a.stop().await;
    b.stop().await;
}

#[test]
fn a_builder_without_a_server_name_or_with_zero_concurrency_is_refused() {
    let transport = Transport::memory();
    let no_name = RpcServer::builder(&transport, Target::new("jobs")).build();
    assert!(
        matches!(no_name, Err(RpcError::InvalidTarget { .. })),
        "{no_name:?}"
    );
    let zero = RpcServer::builder(&transport, Target::server("jobs", "s"))
        .max_concurrency(0)
        .build();
    assert!(
        matches!(zero, Err(RpcError::InvalidConfig { .. })),
        "{zero:?}"
    );
}
