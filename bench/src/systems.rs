//! The three systems under test, each able to run every workload: amqp-rpc (on `rabbit://`
//! or `memory://`), the hand-written lapin reference, and Python oslo.messaging.

use std::future::Future;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use amqp_rpc::{Endpoint, RpcServer, ServerConfig, Target, Transport, rpc_client, rpc_endpoint};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::lapin_ref::{RefClient, RefServer};
use crate::stats::Sample;

/// Fanout phases use this many servers.
pub(crate) const FANOUT_SERVERS: usize = 4;

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
    let publishers = 64;
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

/// amqp-rpc: a server and a client on separate transports (as separate services would be).
pub(crate) struct AmqpSystem {
    client: BenchClient,
    fanout_client: BenchClient,
    received: Arc<AtomicU64>,
    fanout_received: Vec<Arc<AtomicU64>>,
    servers: Vec<RpcServer>,
}

impl AmqpSystem {
    pub(crate) async fn start(
        url: &str,
        topic: &str,
        max_concurrency: usize,
    ) -> Result<AmqpSystem, amqp_rpc::RpcError> {
        let server_transport = Transport::from_url(url).await?;
        let client_transport = Transport::from_url(url).await?;
        let config = ServerConfig::default().with_max_concurrency(max_concurrency);
        let serve = |topic: String, name: String| {
            let transport = server_transport.clone();
            let config = config.clone();
            async move {
                let received = Arc::new(AtomicU64::new(0));
                let endpoints: Vec<Arc<dyn Endpoint>> =
                    vec![Arc::new(BenchEndpoint::new(Counter(Arc::clone(&received))))];
                let server = RpcServer::with_config(
                    &transport,
                    Target::server(topic, name),
                    endpoints,
                    config,
                )?;
                server.start().await?;
                Ok::<_, amqp_rpc::RpcError>((server, received))
            }
        };
        let (main, received) = serve(topic.to_owned(), "s".to_owned()).await?;
        let mut servers = vec![main];
        let mut fanout_received = Vec::new();
        let fanout_topic = format!("{topic}-fanout");
        for i in 0..FANOUT_SERVERS {
            let (server, count) = serve(fanout_topic.clone(), format!("s{i}")).await?;
            servers.push(server);
            fanout_received.push(count);
        }
        let timeout = Duration::from_secs(30);
        Ok(AmqpSystem {
            client: BenchClient::new(&client_transport, topic).with_timeout(timeout),
            fanout_client: BenchClient::new(&client_transport, fanout_topic).with_timeout(timeout),
            received,
            fanout_received,
            servers,
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

    pub(crate) async fn stop(self) {
        for server in self.servers {
            server.stop().await;
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
        contract: bool,
    ) -> Result<LapinSystem, lapin::Error> {
        let name = match contract {
            true => format!("{topic}-lapin-contract"),
            false => format!("{topic}-lapin"),
        };
        let exchange = format!("{name}-fanout");
        let queue = name;
        let server = RefServer::start(amqp_url, &queue, None, prefetch, contract).await?;
        // The contract reference runs calls only: no fanout servers.
        let fanout_count = if contract { 0 } else { FANOUT_SERVERS };
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
        self.server.close().await;
        for server in self.fanout_servers {
            server.close().await;
        }
    }
}

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
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/oslo_bench.py").to_owned();
        let mut system = OsloSystem {
            python: python.to_owned(),
            script,
            url: url.to_owned(),
            topic: format!("{topic}-oslo"),
            servers: Vec::new(),
        };
        let main_topic = system.topic.clone();
        system.serve(&main_topic, "s").await?;
        let fanout_topic = format!("{}-fanout", system.topic);
        for i in 0..FANOUT_SERVERS {
            system.serve(&fanout_topic, &format!("s{i}")).await?;
        }
        Ok(system)
    }

    async fn serve(&mut self, topic: &str, server: &str) -> std::io::Result<()> {
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

    pub(crate) async fn stop(mut self) {
        for mut server in self.servers.drain(..) {
            drop(server.stdin.take());
            let _ = tokio::time::timeout(Duration::from_secs(15), server.wait()).await;
        }
    }
}
