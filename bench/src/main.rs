//! Benchmarks amqp-rpc against a hand-written lapin request/reply and Python oslo.messaging,
//! in one run against the local RabbitMQ, and writes `BENCHMARKS.md` and its chart.
//!
//! ```text
//! cargo run --release -p amqp-rpc-bench -- --out BENCHMARKS.md     # full run, a few minutes
//! cargo run --release -p amqp-rpc-bench -- --smoke                 # seconds; what CI runs
//! cargo run --release -p amqp-rpc-bench -- --only sequential --system amqp-rpc  # profiling
//! cargo run --release -p amqp-rpc-bench -- --only recovery         # through a connection cut
//! cargo run --release -p amqp-rpc-bench -- --only "casts delivered,notif"  # notifications vs casts
//! cargo run --release -p amqp-rpc-bench --features jemalloc -- --out BENCHMARKS-jemalloc.md
//! cargo run --release -p amqp-rpc-bench -- --price-contract  # each item of oslo's contract alone
//! ```
//!
//! Each phase runs for a bounded time for each system in turn, round after round (the order
//! of systems alternating), and the report gives the medians over rounds.

mod alloc_count;
mod cpu;
mod lapin_ref;
mod pricing;
mod recovery;
mod report;
mod stats;
mod systems;
mod telemetry;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use clap::{Arg, ArgAction, value_parser};

use crate::lapin_ref::Contract;
use crate::recovery::Recovery;
use crate::stats::Sample;
use crate::systems::{AmqpSystem, LapinSystem, OsloSystem};

/// Counts allocations only while the heap and allocation figures are measured.
#[global_allocator]
static GLOBAL: alloc_count::CountingAlloc = alloc_count::CountingAlloc;

/// The systems compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum SystemKind {
    Amqp,
    Lapin,
    Oslo,
    /// The lapin reference doing what oslo's wire contract asks of every peer (calls only):
    /// what the contract costs, apart from amqp-rpc's own work.
    LapinContract,
}

impl SystemKind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            SystemKind::Amqp => "amqp-rpc",
            SystemKind::Lapin => "lapin (hand-written)",
            SystemKind::Oslo => "oslo.messaging",
            SystemKind::LapinContract => "lapin + oslo's contract (hand-written)",
        }
    }

    /// The name `--system` selects it by.
    fn keyword(self) -> &'static str {
        match self {
            SystemKind::Amqp => "amqp-rpc",
            SystemKind::Lapin => "lapin",
            SystemKind::Oslo => "oslo",
            SystemKind::LapinContract => "lapin-contract",
        }
    }
}

/// One workload.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Workload {
    Calls {
        in_flight: usize,
        payload: usize,
    },
    Casts {
        count: u64,
        payload: usize,
    },
    Fanout {
        count: u64,
        payload: usize,
    },
    /// Notifications published and consumed at once (the counterpart of casts): one
    /// `Notifier` and one `NotificationListener` on one topic, INFO, messagingv2.
    Notify {
        count: u64,
        payload: usize,
    },
    /// Notifications published only, nobody consuming (the queue is checked and purged after).
    NotifyPublish {
        count: u64,
        payload: usize,
    },
}

impl Workload {
    pub(crate) fn title(&self) -> String {
        let size = |bytes: usize| match bytes {
            b if b >= 1024 => format!("{} KiB", b / 1024),
            b => format!("{b} B"),
        };
        match *self {
            Workload::Calls {
                in_flight: 1,
                payload,
            } => format!("calls, sequential, {}", size(payload)),
            Workload::Calls { in_flight, payload } => {
                format!("calls, {in_flight} in flight, {}", size(payload))
            }
            Workload::Casts { payload, .. } => format!("casts delivered, {}", size(payload)),
            Workload::Fanout { payload, .. } => {
                format!(
                    "fanout casts to {} servers (deliveries), {}",
                    systems::FANOUT_SERVERS,
                    size(payload)
                )
            }
            Workload::Notify { payload, .. } => {
                format!("notifications delivered, {}", size(payload))
            }
            Workload::NotifyPublish { payload, .. } => {
                format!("notifications published, {}", size(payload))
            }
        }
    }

    /// The message size.
    pub(crate) fn payload(&self) -> usize {
        match *self {
            Workload::Calls { payload, .. }
            | Workload::Casts { payload, .. }
            | Workload::Fanout { payload, .. }
            | Workload::Notify { payload, .. }
            | Workload::NotifyPublish { payload, .. } => payload,
        }
    }

    /// The systems that run it over RabbitMQ, each of which must measure it. The lapin
    /// references are RPC only: notifications are amqp-rpc's and oslo.messaging's alone, and
    /// oslo's wire contract is measured on calls.
    pub(crate) fn systems(&self) -> &'static [SystemKind] {
        match self {
            Workload::Calls { .. } => &[
                SystemKind::Amqp,
                SystemKind::Lapin,
                SystemKind::LapinContract,
                SystemKind::Oslo,
            ],
            Workload::Casts { .. } | Workload::Fanout { .. } => {
                &[SystemKind::Amqp, SystemKind::Lapin, SystemKind::Oslo]
            }
            Workload::Notify { .. } | Workload::NotifyPublish { .. } => {
                &[SystemKind::Amqp, SystemKind::Oslo]
            }
        }
    }
}

struct Options {
    smoke: bool,
    rounds: usize,
    seconds: Duration,
    out: Option<PathBuf>,
    python: Option<String>,
    /// Whether no oslo.messaging virtualenv was found (as opposed to oslo left out by a flag).
    no_venv: bool,
    base_url: String,
    only: Option<String>,
    /// `--system`: the one system to run (for profiling).
    system: Option<String>,
    /// `--price-contract`: only the pricing of oslo's contract (see `pricing`).
    price_contract: bool,
}

impl Options {
    /// Whether `--only` (if given) selects the workload titled `title`: its title contains one
    /// of the comma-separated texts. A comma followed by a space does not separate: titles hold
    /// such commas, so one title can be given whole (`"calls, 64 in flight, 100 B"`).
    fn selects(&self, title: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only_parts(only).any(|part| title.contains(part)))
    }

    /// Whether `--system` (if given) selects `system` over RabbitMQ.
    fn runs(&self, system: SystemKind) -> bool {
        self.system.as_deref().is_none_or(|s| s == system.keyword())
    }

    /// Whether `--system` (if given) selects the memory:// phases.
    fn runs_memory(&self) -> bool {
        self.system.as_deref().is_none_or(|s| s == "memory")
    }

    /// Whether a filter leaves part of the report out.
    fn filtered(&self) -> bool {
        self.only.is_some() || self.system.is_some()
    }
}

fn options() -> Options {
    let matches = clap::Command::new("amqp-rpc-bench")
        .about("Benchmarks amqp-rpc against hand-written lapin and Python oslo.messaging")
        .arg(
            Arg::new("smoke")
                .long("smoke")
                .action(ArgAction::SetTrue)
                .help("a few seconds, tiny counts (CI)"),
        )
        .arg(
            Arg::new("rounds")
                .long("rounds")
                .value_parser(value_parser!(usize))
                .help("rounds per system (default 3; 1 with --smoke)"),
        )
        .arg(
            Arg::new("seconds")
                .long("seconds")
                .value_parser(value_parser!(f64))
                .help("seconds per phase (default 3; 0.3 with --smoke)"),
        )
        .arg(
            Arg::new("out")
                .long("out")
                .value_parser(value_parser!(PathBuf))
                .help("write the Markdown report here, and its chart beside it (.svg)"),
        )
        .arg(
            Arg::new("python")
                .long("python")
                .help("the oslo.messaging virtualenv's Python (default .venv/bin/python)"),
        )
        .arg(
            Arg::new("only")
                .long("only")
                .help("run only the workloads whose title contains this text, or one of these comma-separated texts (e.g. \"sequential\", \"memory://\", \"casts delivered,notif\"; a comma followed by a space belongs to the text, so a whole title such as \"calls, 64 in flight, 100 B\" can be given); for profiling, not for the report"),
        )
        .arg(
            Arg::new("system")
                .long("system")
                .value_parser(["amqp-rpc", "lapin", "lapin-contract", "oslo", "memory"])
                .help("run only this system (memory: amqp-rpc over memory://); for profiling, not for the report"),
        )
        .arg(
            Arg::new("no-oslo")
                .long("no-oslo")
                .action(ArgAction::SetTrue)
                .help("leave oslo.messaging out (for profiling; not for the report)"),
        )
        .arg(
            Arg::new("price-contract")
                .long("price-contract")
                .action(ArgAction::SetTrue)
                .help("price each item of oslo's wire contract alone with the lapin reference, and print the table (bench/PROFILING.md)"),
        )
        .arg(
            Arg::new("url")
                .long("url")
                .default_value("rabbit://guest:guest@127.0.0.1:5672")
                .help("broker URL without vhost; a vhost is made for the run"),
        )
        .get_matches();
    let smoke = matches.get_flag("smoke");
    let default_python = concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python");
    let python = matches.get_one::<String>("python").cloned().or_else(|| {
        std::path::Path::new(default_python)
            .exists()
            .then(|| default_python.to_owned())
    });
    let system = matches.get_one::<String>("system").cloned();
    let no_venv = python.is_none();
    let python = python.filter(|_| !matches.get_flag("no-oslo"));
    let mut options = Options {
        smoke,
        rounds: matches
            .get_one::<usize>("rounds")
            .copied()
            .unwrap_or(if smoke { 1 } else { 3 }),
        seconds: Duration::from_secs_f64(
            matches
                .get_one::<f64>("seconds")
                .copied()
                .unwrap_or(if smoke { 0.3 } else { 3.0 }),
        ),
        out: matches.get_one::<PathBuf>("out").cloned(),
        python,
        no_venv,
        base_url: matches
            .get_one::<String>("url")
            .cloned()
            .unwrap_or_default(),
        only: matches.get_one::<String>("only").cloned(),
        system,
        price_contract: matches.get_flag("price-contract"),
    };
    // oslo.messaging's peers are started only if `--system` leaves them in.
    if !options.runs(SystemKind::Oslo) {
        options.python = None;
    }
    options
}

fn rabbitmqctl(args: &[&str]) -> Option<String> {
    let output = Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// A vhost of the bench's own (the run's, or a recovery run's), deleted when dropped.
pub(crate) struct Vhost(pub(crate) String);

impl Vhost {
    /// Makes vhost `name`, open to guest.
    pub(crate) fn create(name: String) -> Result<Vhost, &'static str> {
        rabbitmqctl(&["add_vhost", &name])
            .ok_or("rabbitmqctl add_vhost failed: is RabbitMQ running?")?;
        // Deleted from here on, also if the rest fails.
        let vhost = Vhost(name);
        rabbitmqctl(&["set_permissions", "-p", &vhost.0, "guest", ".*", ".*", ".*"])
            .ok_or("set_permissions failed")?;
        Ok(vhost)
    }
}

impl Drop for Vhost {
    fn drop(&mut self) {
        let _ = rabbitmqctl(&["delete_vhost", &self.0]);
    }
}

/// A progress line on stderr, rewritten in place.
fn progress(text: &str) {
    eprint!("\r\x1b[2K{text}");
}

pub(crate) struct Results {
    pub(crate) workloads: Vec<Workload>,
    pub(crate) memory_workloads: Vec<Workload>,
    /// (system, workload index) -> samples over rounds.
    pub(crate) samples: std::collections::BTreeMap<(SystemKind, usize), Vec<Sample>>,
    pub(crate) memory_samples: std::collections::BTreeMap<usize, Vec<Sample>>,
    /// memory:// calls, 64 in flight, on a runtime of one thread (one sample per round), with
    /// no subscriber and with each kind of tracing.
    pub(crate) memory_one_thread: std::collections::BTreeMap<telemetry::Tracing, Vec<Sample>>,
    /// The same over RabbitMQ (amqp-rpc's client and server on one thread, the broker beside).
    pub(crate) rabbit_one_thread: std::collections::BTreeMap<telemetry::Tracing, Vec<Sample>>,
    pub(crate) heap_per_call: Option<f64>,
    /// Heap allocations per sequential 100 B call over `memory://`, client and server.
    pub(crate) allocs_per_call: Option<f64>,
    pub(crate) breakdown: Vec<(String, f64)>,
    /// The recovery phase's runs, per system.
    pub(crate) recovery: std::collections::BTreeMap<SystemKind, Vec<Recovery>>,
    /// The recovery phase's timing, if it ran.
    pub(crate) recovery_timing: Option<recovery::Timing>,
    pub(crate) rounds: usize,
    pub(crate) seconds: Duration,
    pub(crate) oslo_available: bool,
    /// Whether the broker's CPU time was read (it runs on this machine).
    pub(crate) broker_metered: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let options = options();
    let payload_small = 100;
    let (casts, fanouts) = if options.smoke {
        (200, 50)
    } else {
        (20_000, 5_000)
    };
    let calls = |in_flight, payload| Workload::Calls { in_flight, payload };
    // The 100 B call workloads, run over RabbitMQ and over memory:// alike.
    let small_calls = [1, 64, 256].map(|in_flight| calls(in_flight, payload_small));
    let workloads: Vec<Workload> = small_calls
        .into_iter()
        .chain([
            calls(64, 64 * 1024),
            Workload::Casts {
                count: casts,
                payload: payload_small,
            },
            Workload::Fanout {
                count: fanouts,
                payload: payload_small,
            },
            Workload::Notify {
                count: casts,
                payload: payload_small,
            },
            Workload::NotifyPublish {
                count: casts,
                payload: payload_small,
            },
        ])
        .filter(|w| options.selects(&w.title()))
        .collect();
    let memory_workloads: Vec<Workload> = small_calls
        .into_iter()
        .chain([
            Workload::Casts {
                count: casts * 5,
                payload: payload_small,
            },
            Workload::Notify {
                count: casts * 5,
                payload: payload_small,
            },
        ])
        .filter(|w| options.runs_memory() && options.selects(&format!("memory:// {}", w.title())))
        .collect();
    if options.filtered() && options.out.is_some() {
        return Err("--only and --system are for profiling: a report needs everything".into());
    }

    let recovery_systems: Vec<SystemKind> = recovery::SYSTEMS
        .into_iter()
        .filter(|s| options.selects(recovery::TITLE) && options.runs(*s))
        .collect();
    let recovery_timing = recovery::Timing::new(options.smoke);

    let vhost = Vhost::create(format!("amqp-rpc-bench-{}", uuid::Uuid::new_v4().simple()))?;
    let url = format!("{}/{}", options.base_url.trim_end_matches('/'), vhost.0);
    let amqp_url = url.replacen("rabbit://", "amqp://", 1);
    let topic = "bench";
    let broker_is_local = amqp_rpc::TransportUrl::parse(&url).is_ok_and(|url| {
        url.hosts()
            .iter()
            .all(|h| matches!(h.hostname(), "127.0.0.1" | "localhost" | "::1"))
    });
    let meter = cpu::CpuMeter::new(broker_is_local);

    if options.price_contract {
        let table = pricing::price(
            &amqp_url,
            topic,
            &meter,
            options.rounds,
            options.seconds,
            progress,
        )
        .await?;
        progress("");
        println!("{table}");
        return Ok(());
    }

    progress("starting servers...");
    let amqp = AmqpSystem::start(&url, topic, 64).await?;
    let lapin = LapinSystem::start(&amqp_url, topic, 64, Contract::NONE).await?;
    let lapin_contract = LapinSystem::start(&amqp_url, topic, 64, Contract::OSLO).await?;
    let oslo = match &options.python {
        Some(python) => Some(OsloSystem::start(python, &url, topic).await?),
        None => {
            if options.no_venv {
                eprintln!(
                    "\nno oslo.messaging virtualenv (run scripts/setup.sh): oslo.messaging is left out"
                );
            }
            None
        }
    };
    let memory = AmqpSystem::start(&format!("memory:///{}", vhost.0), topic, 64).await?;

    let mut results = Results {
        workloads: workloads.clone(),
        memory_workloads: memory_workloads.clone(),
        samples: Default::default(),
        memory_samples: Default::default(),
        memory_one_thread: Default::default(),
        rabbit_one_thread: Default::default(),
        heap_per_call: None,
        allocs_per_call: None,
        breakdown: Vec::new(),
        recovery: Default::default(),
        recovery_timing: (!recovery_systems.is_empty()).then_some(recovery_timing),
        rounds: options.rounds,
        seconds: options.seconds,
        oslo_available: oslo.is_some(),
        broker_metered: meter.meters_broker(),
    };
    let seconds = options.seconds;
    let bound = seconds * 10 + Duration::from_secs(5);
    let started = Instant::now();
    for round in 0..options.rounds {
        for (index, workload) in workloads.iter().enumerate() {
            let mut order = vec![
                SystemKind::Amqp,
                SystemKind::Lapin,
                SystemKind::LapinContract,
                SystemKind::Oslo,
            ];
            if round % 2 == 1 {
                order.reverse();
            }
            for system in order {
                if !options.runs(system) || !workload.systems().contains(&system) {
                    continue;
                }
                let payload = "x".repeat(workload.payload());
                let label = format!(
                    "[round {}/{}] {} - {}",
                    round + 1,
                    options.rounds,
                    workload.title(),
                    system.label()
                );
                progress(&format!("{label} ..."));
                let run = async {
                    match (system, *workload) {
                        (SystemKind::Amqp, Workload::Calls { in_flight, .. }) => {
                            Some(amqp.calls(in_flight, &payload, seconds).await)
                        }
                        (SystemKind::Amqp, Workload::Casts { count, .. }) => {
                            Some(amqp.casts(count, &payload, bound).await)
                        }
                        (SystemKind::Amqp, Workload::Fanout { count, .. }) => {
                            Some(amqp.fanout(count, &payload, bound).await)
                        }
                        (SystemKind::Amqp, Workload::Notify { count, .. }) => {
                            Some(amqp.notifications(count, &payload, bound).await)
                        }
                        (SystemKind::Amqp, Workload::NotifyPublish { count, .. }) => {
                            Some(amqp.notifications_published(count, &payload, bound).await)
                        }
                        (SystemKind::Lapin, Workload::Calls { in_flight, .. }) => {
                            Some(lapin.calls(in_flight, &payload, seconds).await)
                        }
                        (SystemKind::Lapin, Workload::Casts { count, .. }) => {
                            Some(lapin.casts(count, &payload, bound).await)
                        }
                        (SystemKind::Lapin, Workload::Fanout { count, .. }) => {
                            Some(lapin.fanout(count, &payload, bound).await)
                        }
                        (SystemKind::LapinContract, Workload::Calls { in_flight, .. }) => {
                            Some(lapin_contract.calls(in_flight, &payload, seconds).await)
                        }
                        // Not run (see `Workload::systems`).
                        (SystemKind::Lapin | SystemKind::LapinContract, _) => None,
                        (SystemKind::Oslo, w) => match &oslo {
                            None => None,
                            Some(oslo) => Some(match w {
                                Workload::Calls { in_flight, payload } => {
                                    oslo.calls(in_flight, payload, seconds).await
                                }
                                // Python publishes slowly: a tenth of the count keeps its phase bounded.
                                Workload::Casts { count, payload } => {
                                    oslo.casts((count / 10).max(10), payload, bound).await
                                }
                                Workload::Fanout { count, payload } => {
                                    oslo.fanout((count / 10).max(10), payload, bound).await
                                }
                                Workload::Notify { count, payload } => {
                                    oslo.notifications((count / 10).max(10), payload, bound)
                                        .await
                                }
                                Workload::NotifyPublish { count, payload } => {
                                    oslo.notifications_published(
                                        (count / 10).max(10),
                                        payload,
                                        bound,
                                    )
                                    .await
                                }
                            }),
                        },
                    }
                };
                let before = meter.read();
                let got = tokio::time::timeout(bound * 2, run).await.ok().flatten();
                let after = meter.read();
                if let Some(mut sample) = got {
                    // Python's clients and servers are other processes, each client started
                    // for its phase (with its connection): only in-process systems are metered.
                    if system != SystemKind::Oslo {
                        sample = sample.with_cpu(before.per_op(&after, sample.ops));
                    }
                    progress(&format!("{label}: {:.0} ops/s", sample.ops_per_s));
                    results
                        .samples
                        .entry((system, index))
                        .or_default()
                        .push(sample);
                }
            }
        }
        for (index, workload) in memory_workloads.iter().enumerate() {
            let label = format!(
                "[round {}/{}] memory:// {}",
                round + 1,
                options.rounds,
                workload.title()
            );
            progress(&format!("{label} ..."));
            let payload = "x".repeat(payload_small);
            let before = meter.read();
            let sample = match *workload {
                Workload::Calls { in_flight, .. } => {
                    memory.calls(in_flight, &payload, seconds).await
                }
                Workload::Casts { count, .. } => memory.casts(count, &payload, bound).await,
                Workload::Fanout { count, .. } => memory.fanout(count, &payload, bound).await,
                Workload::Notify { count, .. } => {
                    memory.notifications(count, &payload, bound).await
                }
                Workload::NotifyPublish { count, .. } => {
                    memory.notifications_published(count, &payload, bound).await
                }
            };
            let cpu = before.per_op(&meter.read(), sample.ops);
            // The broker is idle: only this process works.
            let sample = sample.with_cpu(cpu::CpuPerOp {
                broker_us: None,
                ..cpu
            });
            progress(&format!("{label}: {:.0} ops/s", sample.ops_per_s));
            results
                .memory_samples
                .entry(index)
                .or_default()
                .push(sample);
        }
        let mut order = recovery_systems.clone();
        if round % 2 == 1 {
            order.reverse();
        }
        for system in order {
            if system == SystemKind::Oslo && options.python.is_none() {
                continue;
            }
            let label = format!(
                "[round {}/{}] {} - {}",
                round + 1,
                options.rounds,
                recovery::TITLE,
                system.label()
            );
            progress(&format!("{label} ..."));
            match recovery::run(
                system,
                &options.base_url,
                options.python.as_deref(),
                recovery_timing,
            )
            .await
            {
                Ok(run) => {
                    progress(&format!(
                        "{label}: {} failed, first success {} after the cut, longest stall {:.3} s",
                        run.failed,
                        run.first_success.map_or_else(
                            || "never".to_owned(),
                            |d| format!("{:.3} s", d.as_secs_f64())
                        ),
                        run.longest_stall.as_secs_f64()
                    ));
                    results.recovery.entry(system).or_default().push(run);
                }
                Err(error) => eprintln!("\n{label}: {error}"),
            }
        }
        // The order of the three alternates between rounds, as the systems' does.
        let mut kinds = telemetry::Tracing::ALL;
        if round % 2 == 1 {
            kinds.reverse();
        }
        for tracing in kinds {
            let title = format!(
                "memory:// calls, 64 in flight, one worker thread, {}",
                tracing.label()
            );
            if options.runs_memory() && options.selects(&title) {
                let label = format!("[round {}/{}] {title}", round + 1, options.rounds);
                progress(&format!("{label} ..."));
                let url = format!("memory:///{}-one-thread", vhost.0);
                if let Some(sample) = memory_one_thread(url, topic, payload_small, seconds, tracing)
                {
                    progress(&format!("{label}: {:.0} ops/s", sample.ops_per_s));
                    results
                        .memory_one_thread
                        .entry(tracing)
                        .or_default()
                        .push(sample);
                }
            }
            let title = format!(
                "RabbitMQ calls, 64 in flight, one worker thread, {}",
                tracing.label()
            );
            if options.runs(SystemKind::Amqp) && options.selects(&title) {
                let label = format!("[round {}/{}] {title}", round + 1, options.rounds);
                progress(&format!("{label} ..."));
                let topic = format!("{topic}-one-thread");
                let url = url.clone();
                if let Some(sample) =
                    memory_one_thread(url, &topic, payload_small, seconds, tracing)
                {
                    progress(&format!("{label}: {:.0} ops/s", sample.ops_per_s));
                    results
                        .rabbit_one_thread
                        .entry(tracing)
                        .or_default()
                        .push(sample);
                }
            }
        }
    }
    if !options.filtered() {
        progress("counting allocations per memory:// call...");
        results.allocs_per_call = memory
            .allocations_per_call(&"x".repeat(payload_small), 200, 2_000)
            .await;
        progress("measuring client heap per in-flight call...");
        // The median of three: single measurements of the same build vary with timing (1,701 to
        // 2,216 B on one machine).
        let (count, repeats) = if options.smoke {
            (1_000, 1)
        } else {
            (10_000, 3)
        };
        let mut heap = Vec::new();
        for _ in 0..repeats {
            heap.extend(heap_per_in_flight_call(&url, count).await);
        }
        results.heap_per_call = stats::mid(heap);
        results.breakdown = report::call_breakdown(if options.smoke { 2_000 } else { 50_000 });
    }
    progress(&format!(
        "done in {:.0} s\n",
        started.elapsed().as_secs_f64()
    ));

    amqp.stop().await;
    lapin.stop().await;
    lapin_contract.stop().await;
    memory.stop().await;
    if let Some(oslo) = oslo {
        oslo.stop().await;
    }

    // Every system that runs a workload (`Workload::systems`) must have measured it; a silent
    // gap would hide a broken peer.
    let mut missing = Vec::new();
    for (index, workload) in workloads.iter().enumerate() {
        for &system in workload.systems() {
            if !options.runs(system) {
                continue;
            }
            let measured = results
                .samples
                .get(&(system, index))
                .is_some_and(|s| s.iter().all(|s| s.ops > 0));
            if !measured && (system != SystemKind::Oslo || results.oslo_available) {
                missing.push(format!("{} / {}", system.label(), workload.title()));
            }
        }
    }

    for system in &recovery_systems {
        let runs = results.recovery.get(system).map_or(0, Vec::len);
        if runs < options.rounds && (*system != SystemKind::Oslo || results.oslo_available) {
            missing.push(format!("{} / {}", system.label(), recovery::TITLE));
        }
    }

    let machine = report::Machine::read(rabbitmqctl(&["version"]), options.python.as_deref());
    // The report names itself and its chart as written (`BENCHMARKS.md` by default).
    let out_name = options
        .out
        .as_ref()
        .and_then(|out| out.file_name())
        .map_or_else(|| "BENCHMARKS.md".into(), |name| name.to_string_lossy());
    let markdown = report::markdown(&results, &machine, options.smoke, &out_name);
    println!("{markdown}");
    if let Some(out) = &options.out {
        std::fs::write(out, &markdown)?;
        let chart = out.with_extension("svg");
        report::chart(&results, &chart)?;
        eprintln!("wrote {} and {}", out.display(), chart.display());
    }
    drop(vhost);
    match missing.is_empty() {
        true => Ok(()),
        false => Err(format!("no measurement for: {}", missing.join(", ")).into()),
    }
}

/// The texts of `--only`: split at each comma not followed by a space.
fn only_parts(only: &str) -> impl Iterator<Item = &str> {
    let mut rest = Some(only);
    std::iter::from_fn(move || {
        let text = rest?;
        let bytes = text.as_bytes();
        let split = (0..bytes.len()).find(|&i| bytes[i] == b',' && bytes.get(i + 1) != Some(&b' '));
        match split {
            Some(i) => {
                rest = Some(&text[i + 1..]);
                Some(&text[..i])
            }
            None => rest.take(),
        }
    })
}

/// memory:// calls with 64 in flight, client and server on a runtime of one thread (in a
/// thread of their own): the same work as the two-worker figure without hand-offs between
/// cores; traced as `tracing` says (the thread's default subscriber, which every task sees).
fn memory_one_thread(
    url: String,
    topic: &str,
    payload: usize,
    seconds: Duration,
    tracing: telemetry::Tracing,
) -> Option<Sample> {
    let topic = topic.to_owned();
    let run = move || {
        let (dispatch, provider) = tracing.dispatch();
        let _traced = dispatch.as_ref().map(tracing::dispatcher::set_default);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .ok()?;
        let sample = runtime.block_on(async {
            let system = AmqpSystem::start(&url, &topic, 64).await.ok()?;
            let sample = system.calls(64, &"x".repeat(payload), seconds).await;
            system.stop().await;
            Some(sample)
        });
        if let Some(provider) = provider {
            let _ = provider.shutdown();
        }
        sample
    };
    std::thread::spawn(run).join().ok().flatten()
}

/// Heap held by a client per call in flight: `count` calls to a queue nobody consumes.
async fn heap_per_in_flight_call(url: &str, count: usize) -> Option<f64> {
    use amqp_rpc::{Context, RpcClient, RpcServer, Target, Transport};
    let transport = Transport::from_url(url).await.ok()?;
    // Declare the queues, then stop consuming: the calls wait.
    let server = RpcServer::builder(&transport, Target::server("heap", "s"))
        .build()
        .ok()?;
    server.start().await.ok()?;
    server.stop().await;
    let client =
        RpcClient::new(&transport, Target::new("heap")).with_timeout(Duration::from_secs(300));
    // One call first, so the reply queue and channels exist before measuring.
    let _ = client
        .prepare()
        .with_timeout(Duration::from_millis(50))
        .call::<()>(&Context::new(), "warm", ())
        .await;
    let region = alloc_count::start();
    let calls: Vec<_> = (0..count)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .call::<String>(&Context::new(), "echo", serde_json::json!({"payload": n}))
                    .await
            })
        })
        .collect();
    // Let every call publish and settle into waiting: the live heap stops changing (within
    // 0.5% over half a second) once the publishes and their confirms are done. A busy machine
    // publishes slower, so a fixed wait could catch calls still publishing.
    let deadline = Instant::now() + Duration::from_secs(60);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut live = region.change().live_bytes();
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let now = region.change().live_bytes();
        let settled = (now - live).abs() <= live.abs() * 0.005;
        live = now;
        if settled {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("\nthe heap of the waiting calls did not settle within 60 s");
            return None;
        }
    }
    drop(region);
    for call in &calls {
        call.abort();
    }
    transport.close().await;
    Some(live / count as f64)
}

#[cfg(test)]
mod tests {
    use super::only_parts;

    #[test]
    fn only_splits_at_commas_without_a_space_after_them() {
        let parts = |only| only_parts(only).collect::<Vec<_>>();
        assert_eq!(parts("sequential"), ["sequential"]);
        assert_eq!(parts("casts delivered,notif"), ["casts delivered", "notif"]);
        assert_eq!(
            parts("calls, 64 in flight, 100 B,memory://"),
            ["calls, 64 in flight, 100 B", "memory://"]
        );
        assert_eq!(parts("a,,b,"), ["a", "", "b", ""]);
    }
}
