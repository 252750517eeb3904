//! The systems under test: amqp-rpc (on `rabbit://`
//! or `memory://`), the hand-written lapin reference (RPC only), and Python oslo.messaging;
//! each runs the workloads `Workload::systems` gives it.

use std::future::Future;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use amqp_rpc::notify::{Incoming, Notification, NotificationListener, Notifier, Priority, Typed};
use amqp_rpc::{Context, RpcServer, ServerConfig, Target, Transport, rpc_client, rpc_endpoint};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::lapin_ref::{Contract, RefClient, RefServer};
use crate::stats::{CallRecord, Sample};

/// Fanout phases use this many servers.
pub(crate) const FANOUT_SERVERS: usize = 4;

/// The timeout of amqp-rpc's calls, and of oslo.messaging's in the recovery phase.
pub(crate) const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The benchmarked service (the same methods as the Python and lapin servers).
#[rpc_endpoint]
#[rpc_client]
pub(crate) trait Bench {
    /// Returns its payload.
    async fn echo(&self, payload: String) -> String;
    /// Counts a delivered cast.
    #[rpc(cast)]
    async fn sink(&self, payload: String);
}

pub(crate) struct Counter(Arc<AtomicU64>);

/// A counter for the in-process breakdown.
pub(crate) fn counter_for_breakdown() -> Counter {
    Counter(Arc::default())
}

impl Bench for Counter {
    async fn echo(&self, payload: String) -> String {
        payload
    }

    async fn sink(&self, _payload: String) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

/// The notification both sides send: its payload a JSON string, as oslo_bench.py's
/// `notifier.info({}, "bench.notify", P)` with P a `str`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub(crate) struct BenchNotification(String);

impl Notification for BenchNotification {
    const EVENT_TYPE: &'static str = "bench.notify";
}

/// The publisher id of the bench's notifications (oslo_bench.py's too).
const NOTIFY_PUBLISHER: &str = "bench";

/// Tasks publishing at once in cast and notification phases.
pub(crate) const PUBLISHERS: u64 = 64;

/// Runs `call` from `in_flight` tasks until `seconds` elapse; returns every latency.
pub(crate) async fn call_loop<F, Fut>(in_flight: usize, seconds: Duration, call: F) -> Sample
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let started = Instant::now();
    let deadline = started + seconds;
    let tasks: Vec<_> = (0..in_flight)
        .map(|_| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let t = Instant::now();
                    if call().await {
                        latencies.push(t.elapsed());
                    }
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap_or_default());
    }
    Sample::from_latencies(latencies, started.elapsed())
}

/// Runs `call` from one task, one call after the other, until `seconds` after `started`, and
/// on while the last call failed (starting calls for at most [`CALL_TIMEOUT`] more), so that
/// a run does not end on a call lost at its end; returns every call's record (the recovery
/// phase, which needs to know when each call ran).
pub(crate) async fn call_timeline<F, Fut>(
    started: Instant,
    seconds: Duration,
    call: F,
) -> Vec<CallRecord>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let deadline = started + seconds;
    let task = tokio::spawn(async move {
        let mut calls: Vec<CallRecord> = Vec::new();
        loop {
            let start = Instant::now();
            let last_failed = calls.last().is_some_and(|c| !c.ok);
            if start >= deadline && !(last_failed && start < deadline + CALL_TIMEOUT) {
                break;
            }
            let ok = call().await;
            calls.push(CallRecord {
                start: start - started,
                end: started.elapsed(),
                ok,
            });
        }
        calls
    });
    task.await.unwrap_or_default()
}

/// Publishes `count` casts from 64 tasks, then waits until `delivered` reaches `expected`.
async fn cast_run<F, Fut>(
    count: u64,
    expected: u64,
    seconds: Duration,
    delivered: impl Fn() -> u64,
    cast: F,
) -> Sample
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let started = Instant::now();
    let publishers = PUBLISHERS;
    let tasks: Vec<_> = (0..publishers)
        .map(|i| {
            let cast = cast.clone();
            let share = count / publishers + u64::from(i < count % publishers);
            tokio::spawn(async move {
                for _ in 0..share {
                    cast().await;
                }
            })
        })
        .collect();
    for task in tasks {
        let _ = task.await;
    }
    let deadline = started + seconds;
    while delivered() < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Sample::from_count(delivered().min(expected), started.elapsed())
}

/// Publishes `count` messages from [`PUBLISHERS`] tasks; returns how many `publish` reported
/// sent and the time from the first publish to the last one's return.
async fn publish_run<F, Fut>(count: u64, publish: F) -> (u64, Duration)
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: Future<Output = bool> + Send,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..PUBLISHERS)
        .map(|i| {
            let publish = publish.clone();
            let share = count / PUBLISHERS + u64::from(i < count % PUBLISHERS);
            tokio::spawn(async move {
                let mut sent = 0;
                for _ in 0..share {
                    sent += u64::from(publish().await);
                }
                sent
            })
        })
        .collect();
    let mut sent = 0;
    for task in tasks {
        sent += task.await.unwrap_or(0);
    }
    (sent, started.elapsed())
}

/// The messages ready in `queue` (a passive declare), then purges it; `None` if the queue
/// cannot be read. Straight through lapin, outside amqp-rpc (as oslo_bench.py uses py-amqp).
async fn depth_and_purge(amqp_url: &str, queue: &str) -> Option<u32> {
    use lapin::options::{QueueDeclareOptions, QueuePurgeOptions};
    let connection = lapin::Connection::connect(amqp_url, Default::default())
        .await
        .ok()?;
    let channel = connection.create_channel().await.ok()?;
    let declared = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            Default::default(),
        )
        .await
        .ok()?;
    let purged = channel
        .queue_purge(queue.into(), QueuePurgeOptions::default())
        .await
        .ok();
    let _ = connection.close(200, "".into()).await;
    purged.map(|_| declared.message_count())
}

/// amqp-rpc's notifications: one notifier (publisher "bench", messagingv2, INFO) on the client
/// transport; a listener (its defaults: 64 handled at once, prefetch 64) on the server
/// transport consuming `<topic>.info`, and a second topic nobody consumes, for publishing
/// alone.
struct Notifications {
    notifier: Notifier,
    publish_only: Notifier,
    /// `<topic>.info` of the publish-only notifier, and the AMQP URL to purge it by (`None`
    /// over memory://, where nothing outlives the process).
    publish_queue: (String, Option<String>),
    received: Arc<AtomicU64>,
    listener: NotificationListener,
}

impl Notifications {
    async fn start(
        url: &str,
        server: &Transport,
        client: &Transport,
        topic: &str,
    ) -> Result<Notifications, amqp_rpc::RpcError> {
        let topic = format!("{topic}-notify");
        let publish_topic = format!("{topic}-publish");
        let received = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&received);
        let listener = NotificationListener::builder(server)
            .topic(topic.clone())
            .endpoint(Typed::new(
                Priority::Info,
                move |_: Incoming<BenchNotification>| {
                    counter.fetch_add(1, Ordering::Relaxed);
                    std::future::ready(())
                },
            ))
            .build()?;
        listener.start().await?;
        let notifier = Notifier::new(client, NOTIFY_PUBLISHER);
        let notifications = Notifications {
            notifier: notifier.with_topics([topic]),
            publish_only: notifier.with_topics([publish_topic.clone()]),
            publish_queue: (
                format!("{publish_topic}.info"),
                url.strip_prefix("rabbit://")
                    .map(|rest| format!("amqp://{rest}")),
            ),
            received,
            listener,
        };
        // Warm-up: declares the exchange and both queues before anything is measured.
        let ctx = Context::new();
        let warm = BenchNotification(String::new());
        notifications.notifier.info(&ctx, &warm).await?;
        notifications.publish_only.info(&ctx, &warm).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while notifications.received.load(Ordering::Relaxed) < 1 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        notifications.purge().await;
        Ok(notifications)
    }

    /// Purges the publish-only queue; returns what it held (`None` over memory://).
    async fn purge(&self) -> Option<u32> {
        let (queue, url) = &self.publish_queue;
        depth_and_purge(url.as_deref()?, queue).await
    }
}

/// amqp-rpc: a server and a client on separate transports (as separate services would be).
pub(crate) struct AmqpSystem {
    client: BenchClient,
    fanout_client: BenchClient,
    received: Arc<AtomicU64>,
    fanout_received: Vec<Arc<AtomicU64>>,
    servers: Vec<RpcServer>,
    notifications: Option<Notifications>,
    transports: [Transport; 2],
}

impl AmqpSystem {
    pub(crate) async fn start(
        url: &str,
        topic: &str,
        max_concurrency: usize,
    ) -> Result<AmqpSystem, amqp_rpc::RpcError> {
        AmqpSystem::launch(url, topic, max_concurrency, FANOUT_SERVERS, true).await
    }

    /// The server on `topic` and its client, no fanout servers: enough for calls.
    pub(crate) async fn start_calls_only(
        url: &str,
        topic: &str,
        max_concurrency: usize,
    ) -> Result<AmqpSystem, amqp_rpc::RpcError> {
        AmqpSystem::launch(url, topic, max_concurrency, 0, false).await
    }

    async fn launch(
        url: &str,
        topic: &str,
        max_concurrency: usize,
        fanout_servers: usize,
        notifications: bool,
    ) -> Result<AmqpSystem, amqp_rpc::RpcError> {
        let server_transport = Transport::from_url(url).await?;
        let client_transport = Transport::from_url(url).await?;
        let config = ServerConfig::default().with_max_concurrency(max_concurrency);
        let serve = |topic: String, name: String| {
            let transport = server_transport.clone();
            let config = config.clone();
            async move {
                let received = Arc::new(AtomicU64::new(0));
                let server = RpcServer::builder(&transport, Target::server(topic, name))
                    .endpoint(Counter(Arc::clone(&received)).into_rpc())
                    .config(config)
                    .build()?;
                server.start().await?;
                Ok::<_, amqp_rpc::RpcError>((server, received))
            }
        };
        let (main, received) = serve(topic.to_owned(), "s".to_owned()).await?;
        let mut servers = vec![main];
        let mut fanout_received = Vec::new();
        let fanout_topic = format!("{topic}-fanout");
        for i in 0..fanout_servers {
            let (server, count) = serve(fanout_topic.clone(), format!("s{i}")).await?;
            servers.push(server);
            fanout_received.push(count);
        }
        let notifications = match notifications {
            true => {
                Some(Notifications::start(url, &server_transport, &client_transport, topic).await?)
            }
            false => None,
        };
        Ok(AmqpSystem {
            client: BenchClient::new(&client_transport, topic).with_timeout(CALL_TIMEOUT),
            fanout_client: BenchClient::new(&client_transport, fanout_topic)
                .with_timeout(CALL_TIMEOUT),
            received,
            fanout_received,
            servers,
            notifications,
            transports: [server_transport, client_transport],
        })
    }

    pub(crate) async fn calls(&self, in_flight: usize, payload: &str, seconds: Duration) -> Sample {
        // Shared, not cloned per call: a clone copies the target's strings.
        let (client, payload) = (Arc::new(self.client.clone()), payload.to_owned());
        call_loop(in_flight, seconds, move || {
            let (client, payload) = (Arc::clone(&client), payload.clone());
            async move { client.echo(payload).await.is_ok() }
        })
        .await
    }

    /// Sequential `echo` calls until `seconds` after `started` (see [`call_timeline`]), each
    /// recorded.
    pub(crate) async fn call_timeline(
        &self,
        payload: &str,
        started: Instant,
        seconds: Duration,
    ) -> Vec<CallRecord> {
        let (client, payload) = (Arc::new(self.client.clone()), payload.to_owned());
        call_timeline(started, seconds, move || {
            let (client, payload) = (Arc::clone(&client), payload.clone());
            async move {
                client
                    .echo(payload.clone())
                    .await
                    .is_ok_and(|reply| reply == payload)
            }
        })
        .await
    }

    /// Heap allocations per sequential `echo` call, counted over `count` calls after `warm_up`
    /// (the whole process: with `memory://`, client and server together, plus the `String` the
    /// caller makes for each call's argument); `None` if a call failed.
    pub(crate) async fn allocations_per_call(
        &self,
        payload: &str,
        warm_up: usize,
        count: usize,
    ) -> Option<f64> {
        let payload = payload.to_owned();
        for _ in 0..warm_up {
            self.client.echo(payload.clone()).await.ok()?;
        }
        let region = crate::alloc_count::start();
        let mut failed = false;
        for _ in 0..count {
            failed |= self.client.echo(payload.clone()).await.is_err();
        }
        let allocations = region.change().allocations;
        drop(region);
        (!failed && count > 0).then(|| allocations as f64 / count as f64)
    }

    pub(crate) async fn casts(&self, count: u64, payload: &str, seconds: Duration) -> Sample {
        self.received.store(0, Ordering::Relaxed);
        let (client, payload) = (self.client.clone(), payload.to_owned());
        let received = Arc::clone(&self.received);
        cast_run(
            count,
            count,
            seconds,
            move || received.load(Ordering::Relaxed),
            move || {
                let (client, payload) = (client.clone(), payload.clone());
                async move { client.sink(payload).await.is_ok() }
            },
        )
        .await
    }

    pub(crate) async fn fanout(&self, count: u64, payload: &str, seconds: Duration) -> Sample {
        for counter in &self.fanout_received {
            counter.store(0, Ordering::Relaxed);
        }
        let (client, payload) = (self.fanout_client.fanout(), payload.to_owned());
        let counters = self.fanout_received.clone();
        let expected = count * FANOUT_SERVERS as u64;
        let delivered = move || counters.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        cast_run(count, expected, seconds, delivered, move || {
            let (client, payload) = (client.clone(), payload.clone());
            async move { client.sink(payload).await.is_ok() }
        })
        .await
    }

    /// Notifications published by [`PUBLISHERS`] tasks while the listener consumes them:
    /// from the first publish until the listener handled all `count` (or `seconds` passed).
    pub(crate) async fn notifications(
        &self,
        count: u64,
        payload: &str,
        seconds: Duration,
    ) -> Sample {
        let Some(n) = &self.notifications else {
            return Sample::default();
        };
        n.received.store(0, Ordering::Relaxed);
        let notifier = n.notifier.clone();
        let payload = Arc::new(BenchNotification(payload.to_owned()));
        let received = Arc::clone(&n.received);
        cast_run(
            count,
            count,
            seconds,
            move || received.load(Ordering::Relaxed),
            move || {
                let (notifier, payload) = (notifier.clone(), Arc::clone(&payload));
                async move { notifier.info(&Context::new(), &*payload).await.is_ok() }
            },
        )
        .await
    }

    /// Notifications published by [`PUBLISHERS`] tasks, nobody consuming: from the first
    /// publish to the last one's return (each returns once the broker confirmed it). Over
    /// RabbitMQ, what counts is what the queue holds afterwards, at most what was sent.
    pub(crate) async fn notifications_published(
        &self,
        count: u64,
        payload: &str,
        _seconds: Duration,
    ) -> Sample {
        let Some(n) = &self.notifications else {
            return Sample::default();
        };
        let notifier = n.publish_only.clone();
        let payload = Arc::new(BenchNotification(payload.to_owned()));
        let (sent, elapsed) = publish_run(count, move || {
            let (notifier, payload) = (notifier.clone(), Arc::clone(&payload));
            async move { notifier.info(&Context::new(), &*payload).await.is_ok() }
        })
        .await;
        let queued = n.purge().await;
        if queued.is_some_and(|q| u64::from(q) != sent) {
            eprintln!("\nnotifications published: {sent} sent, {queued:?} queued");
        }
        let ops = queued.map_or(sent, |q| sent.min(u64::from(q)));
        Sample::from_count(ops, elapsed)
    }

    pub(crate) async fn stop(self) {
        for server in self.servers {
            server.stop().await;
        }
        if let Some(n) = &self.notifications {
            n.listener.stop().await;
        }
        for transport in &self.transports {
            transport.close().await;
        }
    }
}

/// The hand-written lapin reference.
pub(crate) struct LapinSystem {
    client: RefClient,
    queue: String,
    exchange: String,
    server: RefServer,
    fanout_servers: Vec<RefServer>,
}

impl LapinSystem {
    pub(crate) async fn start(
        amqp_url: &str,
        topic: &str,
        prefetch: u16,
        contract: Contract,
    ) -> Result<LapinSystem, lapin::Error> {
        let plain = contract == Contract::NONE;
        let name = match plain {
            false => format!("{topic}-lapin-contract"),
            true => format!("{topic}-lapin"),
        };
        let exchange = format!("{name}-fanout");
        let queue = name;
        let server = RefServer::start(amqp_url, &queue, None, prefetch, contract).await?;
        // The contract reference runs calls only: no fanout servers.
        let fanout_count = if plain { FANOUT_SERVERS } else { 0 };
        let mut fanout_servers = Vec::new();
        for i in 0..fanout_count {
            fanout_servers.push(
                RefServer::start(
                    amqp_url,
                    &format!("{exchange}-{i}"),
                    Some(&exchange),
                    prefetch,
                    contract,
                )
                .await?,
            );
        }
        Ok(LapinSystem {
            client: RefClient::connect(amqp_url, contract).await?,
            queue,
            exchange,
            server,
            fanout_servers,
        })
    }

    pub(crate) async fn calls(&self, in_flight: usize, payload: &str, seconds: Duration) -> Sample {
        let (client, queue) = (self.client.clone(), self.queue.clone());
        let body = Arc::new(
            serde_json::to_vec(&serde_json::json!({ "payload": payload })).unwrap_or_default(),
        );
        call_loop(in_flight, seconds, move || {
            let (client, queue, body) = (client.clone(), queue.clone(), Arc::clone(&body));
            async move { client.call(&queue, &body).await.is_some() }
        })
        .await
    }

    pub(crate) async fn casts(&self, count: u64, payload: &str, seconds: Duration) -> Sample {
        self.server.reset();
        let (client, queue) = (self.client.clone(), self.queue.clone());
        let body = Arc::new(
            serde_json::to_vec(&serde_json::json!({ "payload": payload })).unwrap_or_default(),
        );
        let server = &self.server;
        cast_run(
            count,
            count,
            seconds,
            || server.casts(),
            move || {
                let (client, queue, body) = (client.clone(), queue.clone(), Arc::clone(&body));
                async move { client.cast("", &queue, &body).await }
            },
        )
        .await
    }

    pub(crate) async fn fanout(&self, count: u64, payload: &str, seconds: Duration) -> Sample {
        for server in &self.fanout_servers {
            server.reset();
        }
        let (client, exchange) = (self.client.clone(), self.exchange.clone());
        let body = Arc::new(
            serde_json::to_vec(&serde_json::json!({ "payload": payload })).unwrap_or_default(),
        );
        let servers = &self.fanout_servers;
        let expected = count * FANOUT_SERVERS as u64;
        cast_run(
            count,
            expected,
            seconds,
            || servers.iter().map(RefServer::casts).sum(),
            move || {
                let (client, exchange, body) =
                    (client.clone(), exchange.clone(), Arc::clone(&body));
                async move { client.cast(&exchange, "", &body).await }
            },
        )
        .await
    }

    pub(crate) async fn stop(self) {
        self.client.close().await;
        self.server.close().await;
        for server in self.fanout_servers {
            server.close().await;
        }
    }
}

/// Threads publishing at once in oslo.messaging's notification phases, chosen for oslo's best
/// rate: `info()` blocks until the broker confirms, so a thread publishes one at a time. A probe
/// of notify-deliver (2,000, on 2 cores shared with builds) gave 244/s with 1 thread, 500-651/s
/// with 8, 445-817/s with 16, 415/s with 32. Its cast phases run one thread (oslo_bench.py's
/// default).
pub(crate) const OSLO_NOTIFY_THREADS: usize = 16;

/// Python oslo.messaging: servers in processes of their own; each workload run by a client
/// process (`bench/oslo_bench.py`), which measures itself.
pub(crate) struct OsloSystem {
    python: String,
    script: String,
    url: String,
    topic: String,
    servers: Vec<Child>,
}

impl OsloSystem {
    pub(crate) async fn start(python: &str, url: &str, topic: &str) -> std::io::Result<OsloSystem> {
        let mut system = OsloSystem::new(python, url, topic);
        let main_topic = system.topic.clone();
        system.serve(&main_topic, "s", Stdio::inherit()).await?;
        let fanout_topic = format!("{}-fanout", system.topic);
        for i in 0..FANOUT_SERVERS {
            system
                .serve(&fanout_topic, &format!("s{i}"), Stdio::inherit())
                .await?;
        }
        Ok(system)
    }

    /// The server on `topic` alone, its log left out: for the recovery phase, whose cut it
    /// logs as errors.
    pub(crate) async fn start_for_recovery(
        python: &str,
        url: &str,
        topic: &str,
    ) -> std::io::Result<OsloSystem> {
        let mut system = OsloSystem::new(python, url, topic);
        let main_topic = system.topic.clone();
        system.serve(&main_topic, "s", Stdio::null()).await?;
        Ok(system)
    }

    /// No servers yet.
    fn new(python: &str, url: &str, topic: &str) -> OsloSystem {
        OsloSystem {
            python: python.to_owned(),
            script: concat!(env!("CARGO_MANIFEST_DIR"), "/oslo_bench.py").to_owned(),
            url: url.to_owned(),
            topic: format!("{topic}-oslo"),
            servers: Vec::new(),
        }
    }

    /// Starts server `server` on `topic`, its log (stderr) going to `log`.
    async fn serve(&mut self, topic: &str, server: &str, log: Stdio) -> std::io::Result<()> {
        let mut child = Command::new(&self.python)
            .args([
                &self.script,
                "server",
                "--url",
                &self.url,
                "--topic",
                topic,
                "--server",
                server,
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        let mut lines = BufReader::new(stdout).lines();
        match tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await {
            Ok(Ok(Some(line))) if line.trim() == "READY" => {}
            other => {
                return Err(std::io::Error::other(format!(
                    "oslo server did not start: {other:?}"
                )));
            }
        }
        self.servers.push(child);
        Ok(())
    }

    async fn client(&self, topic: &str, args: &[String]) -> Option<Value> {
        let output = Command::new(&self.python)
            .args([&self.script, "client", "--url", &self.url, "--topic", topic])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .await
            .ok()?;
        serde_json::from_slice(&output.stdout).ok()
    }

    fn sample(value: Option<Value>) -> Sample {
        let Some(value) = value else {
            return Sample::default();
        };
        let field = |name: &str| value.get(name).and_then(Value::as_f64);
        Sample {
            ops: field("ops").unwrap_or(0.0) as u64,
            ops_per_s: field("ops_per_s").unwrap_or(0.0),
            p50_ms: field("p50_ms"),
            p99_ms: field("p99_ms"),
            cpu: Default::default(),
        }
    }

    /// Runs `workload` in a client process with `extra` arguments.
    async fn run(
        &self,
        topic: &str,
        workload: &str,
        extra: &[(&str, String)],
        payload_bytes: usize,
        seconds: Duration,
    ) -> Sample {
        let mut args = vec![
            "--workload".to_owned(),
            workload.to_owned(),
            "--payload-bytes".to_owned(),
            payload_bytes.to_string(),
            "--seconds".to_owned(),
            seconds.as_secs_f64().to_string(),
        ];
        for (flag, value) in extra {
            args.extend([(*flag).to_owned(), value.clone()]);
        }
        Self::sample(self.client(topic, &args).await)
    }

    pub(crate) async fn calls(
        &self,
        in_flight: usize,
        payload_bytes: usize,
        seconds: Duration,
    ) -> Sample {
        let extra = [("--concurrency", in_flight.to_string())];
        self.run(&self.topic, "calls", &extra, payload_bytes, seconds)
            .await
    }

    pub(crate) async fn casts(
        &self,
        count: u64,
        payload_bytes: usize,
        seconds: Duration,
    ) -> Sample {
        let extra = [("--count", count.to_string())];
        self.run(&self.topic, "casts", &extra, payload_bytes, seconds)
            .await
    }

    pub(crate) async fn fanout(
        &self,
        count: u64,
        payload_bytes: usize,
        seconds: Duration,
    ) -> Sample {
        let extra = [
            ("--count", count.to_string()),
            ("--servers", FANOUT_SERVERS.to_string()),
        ];
        let topic = format!("{}-fanout", self.topic);
        self.run(&topic, "fanout", &extra, payload_bytes, seconds)
            .await
    }

    /// `notify-deliver`: [`OSLO_NOTIFY_THREADS`] threads publish `count` while the process's
    /// listener consumes them (no server process is involved).
    pub(crate) async fn notifications(
        &self,
        count: u64,
        payload_bytes: usize,
        seconds: Duration,
    ) -> Sample {
        self.notify("notify-deliver", count, payload_bytes, seconds)
            .await
    }

    /// `notify-publish`: [`OSLO_NOTIFY_THREADS`] threads publish `count`, nobody consuming.
    pub(crate) async fn notifications_published(
        &self,
        count: u64,
        payload_bytes: usize,
        seconds: Duration,
    ) -> Sample {
        self.notify("notify-publish", count, payload_bytes, seconds)
            .await
    }

    async fn notify(
        &self,
        workload: &str,
        count: u64,
        payload_bytes: usize,
        seconds: Duration,
    ) -> Sample {
        let extra = [
            ("--count", count.to_string()),
            ("--concurrency", OSLO_NOTIFY_THREADS.to_string()),
        ];
        let topic = format!("{}-{workload}", self.topic);
        self.run(&topic, workload, &extra, payload_bytes, seconds)
            .await
    }

    /// Sequential `echo` calls for `seconds` in a client process (its `recovery` workload),
    /// each recorded, with `call_timeout`. `beside` runs from the moment the calls start
    /// (the process says when, once warmed up) until it returns, beside them; its output
    /// comes back with the records. `None` if the process did not get to calling or gave no
    /// readable result.
    pub(crate) async fn call_timeline<F: Future>(
        &self,
        payload_bytes: usize,
        seconds: Duration,
        call_timeout: Duration,
        beside: impl FnOnce(Instant) -> F,
    ) -> Option<(Vec<CallRecord>, F::Output)> {
        let mut child = Command::new(&self.python)
            .args([
                &self.script,
                "client",
                "--url",
                &self.url,
                "--topic",
                &self.topic,
            ])
            .args(["--workload", "recovery", "--payload-bytes"])
            .arg(payload_bytes.to_string())
            .arg("--seconds")
            .arg(seconds.as_secs_f64().to_string())
            .arg("--call-timeout")
            .arg(call_timeout.as_secs_f64().to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .ok()?;
        let mut lines = BufReader::new(child.stdout.take()?).lines();
        // Start-up and warm-up: about 2 s, at most 5 s of warm-up.
        let first = tokio::time::timeout(Duration::from_secs(60), lines.next_line()).await;
        match first {
            Ok(Ok(Some(line))) if line.trim() == "START" => {}
            other => {
                eprintln!("\noslo.messaging client did not start calling: {other:?}");
                return None;
            }
        }
        let started = Instant::now();
        // The process ends within S + 2T + 8 s of its start (its watchdog).
        let bound = seconds + call_timeout * 2 + Duration::from_secs(15);
        let (result, beside) = tokio::join!(
            tokio::time::timeout(bound, lines.next_line()),
            beside(started)
        );
        let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
        let line = result.ok()?.ok()??;
        let value: Value = serde_json::from_str(&line).ok()?;
        if let Some(error) = value.get("error") {
            eprintln!("\noslo.messaging client: {error}");
        }
        let record = |call: &Value| {
            let time = |i: usize| {
                call.get(i)
                    .and_then(Value::as_f64)
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
            };
            Some(CallRecord {
                start: time(0)?,
                end: time(1)?,
                ok: call.get(2)?.as_bool()?,
            })
        };
        let calls = value.get("calls")?.as_array()?;
        let calls = calls.iter().map(record).collect::<Option<Vec<_>>>()?;
        Some((calls, beside))
    }

    pub(crate) async fn stop(mut self) {
        for mut server in self.servers.drain(..) {
            drop(server.stdin.take());
            let _ = tokio::time::timeout(Duration::from_secs(15), server.wait()).await;
        }
    }
}
