//! The report: `BENCHMARKS.md` (tables, ratios, targets, where the time goes) and its chart.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use amqp_rpc::Endpoint;
use futures_util::FutureExt;
use plotters::prelude::*;

use crate::recovery::{self, Summary};
use crate::stats::{Sample, median};
use crate::systems::BenchEndpoint;
use crate::telemetry::Tracing;
use crate::{Results, SystemKind, Workload};

/// What the run ran on.
pub(crate) struct Machine {
    cpu: String,
    cores: usize,
    memory: String,
    broker: String,
    oslo: String,
}

impl Machine {
    pub(crate) fn read(broker: Option<String>, python: Option<&str>) -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name")
                    .and_then(|r| r.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown CPU".to_owned());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory = meminfo
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches(" kB").parse::<f64>().ok())
            .map_or_else(
                || "unknown".to_owned(),
                |kb| format!("{:.0} GiB", kb / 1024.0 / 1024.0),
            );
        let oslo = python
            .and_then(|python| {
                let output = std::process::Command::new(python)
                    .args([
                        "-c",
                        "import importlib.metadata as m; print(m.version('oslo.messaging'))",
                    ])
                    .output()
                    .ok()?;
                Some(String::from_utf8_lossy(&output.stdout).trim().to_owned())
            })
            .unwrap_or_else(|| "not run".to_owned());
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            memory,
            broker: broker.unwrap_or_else(|| "unknown".to_owned()),
            oslo,
        }
    }
}

fn fmt_rate(v: f64) -> String {
    match v {
        v if v >= 100.0 => format!("{v:.0}"),
        v => format!("{v:.1}"),
    }
}

/// A target row for a figure that must reach `threshold`.
fn at_least(
    text: String,
    value: Option<f64>,
    threshold: f64,
    unit: &str,
) -> (String, String, Option<bool>) {
    (
        text,
        value.map_or_else(|| "–".to_owned(), |v| fmt_target(v, unit)),
        value.map(|v| v >= threshold),
    )
}

/// A measured figure beside its target: ratios with two decimals, rates as rates.
fn fmt_target(v: f64, unit: &str) -> String {
    match unit {
        "×" => format!("{v:.2}×"),
        _ => format!("{}{unit}", fmt_rate(v)),
    }
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}"))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".to_owned(),
    }
}

impl Results {
    fn median(&self, system: SystemKind, index: usize) -> Option<Sample> {
        self.samples.get(&(system, index)).map(|s| median(s))
    }

    fn index_of(&self, wanted: Workload) -> Option<usize> {
        self.workloads.iter().position(|w| match (w, wanted) {
            (
                Workload::Calls {
                    in_flight: a,
                    payload: p,
                },
                Workload::Calls {
                    in_flight: b,
                    payload: q,
                },
            ) => *a == b && *p == q,
            (Workload::Casts { .. }, Workload::Casts { .. }) => true,
            (Workload::Fanout { .. }, Workload::Fanout { .. }) => true,
            (Workload::Notify { .. }, Workload::Notify { .. }) => true,
            (Workload::NotifyPublish { .. }, Workload::NotifyPublish { .. }) => true,
            _ => false,
        })
    }
}

/// The median calls or deliveries per second of `system` on `workload`.
fn rate_of(results: &Results, system: SystemKind, workload: Workload) -> Option<f64> {
    results
        .index_of(workload)
        .and_then(|i| results.median(system, i))
        .map(|s| s.ops_per_s)
}

/// The median p50 of `system` on `workload`.
fn p50_of(results: &Results, system: SystemKind, workload: Workload) -> Option<f64> {
    results
        .index_of(workload)
        .and_then(|i| results.median(system, i))
        .and_then(|s| s.p50_ms)
}

/// 100 B calls with `in_flight` in flight.
fn calls(in_flight: usize) -> Workload {
    Workload::Calls {
        in_flight,
        payload: 100,
    }
}

/// A target: its text, the measured value, and whether it holds.
fn targets(results: &Results) -> Vec<(String, String, Option<bool>)> {
    let rate = |system, workload| rate_of(results, system, workload);
    let p50 = |system, workload| p50_of(results, system, workload);
    let casts = Workload::Casts {
        count: 0,
        payload: 100,
    };
    let mut out = Vec::new();
    for in_flight in [64, 256] {
        let r = rate(SystemKind::Amqp, calls(in_flight))
            .zip(rate(SystemKind::Lapin, calls(in_flight)))
            .map(|(a, b)| a / b);
        out.push(at_least(
            format!("calls/s at {in_flight} in flight ≥ 0.95× lapin"),
            r,
            0.95,
            "×",
        ));
    }
    let r = rate(SystemKind::Amqp, casts)
        .zip(rate(SystemKind::Lapin, casts))
        .map(|(a, b)| a / b);
    out.push(at_least("casts/s ≥ 0.9× lapin".to_owned(), r, 0.9, "×"));
    let r = p50(SystemKind::Amqp, calls(1))
        .zip(p50(SystemKind::Lapin, calls(1)))
        .map(|(a, b)| a / b);
    out.push((
        "sequential p50 ≤ 1.10× lapin".to_owned(),
        r.map_or_else(|| "–".to_owned(), |v| fmt_target(v, "×")),
        r.map(|v| v <= 1.10),
    ));
    let r = rate(SystemKind::Amqp, calls(64))
        .zip(rate(SystemKind::Oslo, calls(64)))
        .map(|(a, b)| a / b);
    out.push(at_least(
        "calls/s at 64 in flight ≥ 25× oslo.messaging".to_owned(),
        r,
        25.0,
        "×",
    ));
    let notify = Workload::Notify {
        count: 0,
        payload: 100,
    };
    let r = rate(SystemKind::Amqp, notify)
        .zip(rate(SystemKind::Oslo, notify))
        .map(|(a, b)| a / b);
    out.push(at_least(
        "notifications delivered/s ≥ 10× oslo.messaging".to_owned(),
        r,
        10.0,
        "×",
    ));
    let r = rate(SystemKind::Amqp, notify)
        .zip(rate(SystemKind::Amqp, casts))
        .map(|(a, b)| a / b);
    out.push(at_least(
        "notifications delivered/s ≥ casts delivered/s (amqp-rpc)".to_owned(),
        r,
        1.0,
        "×",
    ));
    let memory = results
        .memory_workloads
        .iter()
        .position(|w| {
            *w == Workload::Calls {
                in_flight: 64,
                payload: 100,
            }
        })
        .and_then(|i| results.memory_samples.get(&i))
        .map(|s| median(s).ops_per_s);
    out.push(at_least(
        "memory:// calls/s at 64 in flight ≥ 200k".to_owned(),
        memory,
        200_000.0,
        " calls/s",
    ));
    let heap = results.heap_per_call;
    out.push((
        "client heap per in-flight call ≤ 2 KiB".to_owned(),
        heap.map_or_else(|| "–".to_owned(), |b| format!("{b:.0} B")),
        heap.map(|b| b <= 2048.0),
    ));
    out
}

/// The report, naming itself `out_name` and its chart the same with `.svg`.
pub(crate) fn markdown(
    results: &Results,
    machine: &Machine,
    smoke: bool,
    out_name: &str,
) -> String {
    let chart = std::path::Path::new(out_name).with_extension("svg");
    let chart = chart.display();
    let mut md = String::new();
    let _ = writeln!(md, "# Benchmarks\n");
    if smoke {
        let _ = writeln!(md, "**Smoke run: tiny counts, figures meaningless.**\n");
    }
    let _ = writeln!(
        md,
        "Generated by `cargo run --release -p amqp-rpc-bench{} -- --out {out_name}` (one \
         command writes this file and `{chart}`).\n\n\
         - Machine: {}, {} cores, {} RAM; RabbitMQ {} on the same machine.\n\
         - Allocator: {}, for every system in the process alike.\n\
         - Peers: amqp-rpc {}; a hand-written lapin request/reply (one connection per side, an \
           exclusive server-named reply queue, correlation ids, pipelined, no confirms), and the \
           same reference doing what oslo's wire contract asks of every peer (calls only; see \
           below); Python oslo.messaging {} \
           (threading executor, 64 workers).\n\
         - Method: every phase runs {:.1} s (casts, fanout and notifications: a fixed count, time-bounded) for each \
           system in turn, {} rounds with the order of systems alternating; figures are medians over \
           rounds. Servers and clients use separate connections; amqp-rpc servers run 64 handlers \
           at most, the lapin server has prefetch 64. Only ratios within one run mean anything on \
           a shared machine.\n",
        if cfg!(feature = "jemalloc") {
            " --features jemalloc"
        } else {
            ""
        },
        machine.cpu,
        machine.cores,
        machine.memory,
        machine.broker,
        crate::alloc_count::ALLOCATOR,
        env!("CARGO_PKG_VERSION"),
        machine.oslo,
        results.seconds.as_secs_f64(),
        results.rounds,
    );
    let _ = writeln!(md, "## RabbitMQ\n");
    let _ = writeln!(
        md,
        "| workload | figure | amqp-rpc | lapin | oslo.messaging | amqp-rpc / lapin | amqp-rpc / oslo |\n|---|---|---|---|---|---|---|"
    );
    for (index, workload) in results.workloads.iter().enumerate() {
        let [a, l, o] = [SystemKind::Amqp, SystemKind::Lapin, SystemKind::Oslo]
            .map(|s| results.median(s, index));
        let rate = |s: Option<Sample>| s.map(|s| s.ops_per_s);
        let unit = match workload {
            Workload::Calls { .. } => "calls/s",
            Workload::NotifyPublish { .. } => "publishes/s",
            _ => "deliveries/s",
        };
        // "not run" where the workload is not the system's (see `Workload::systems`), "–"
        // where a measurement is missing.
        let cell = |system, s: Option<Sample>| match workload.systems().contains(&system) {
            true => rate(s).map_or("–".into(), fmt_rate),
            false => "not run".to_owned(),
        };
        let _ = writeln!(
            md,
            "| {} | {unit} | {} | {} | {} | {} | {} |",
            workload.title(),
            cell(SystemKind::Amqp, a),
            cell(SystemKind::Lapin, l),
            cell(SystemKind::Oslo, o),
            ratio(rate(a), rate(l)),
            ratio(rate(a), rate(o)),
        );
        if let Workload::Calls { .. } = workload {
            for (name, pick) in [("p50 ms", 0), ("p99 ms", 1)] {
                let get =
                    |s: Option<Sample>| s.and_then(|s| if pick == 0 { s.p50_ms } else { s.p99_ms });
                let _ = writeln!(
                    md,
                    "| | {name} | {} | {} | {} | {} | {} |",
                    fmt_ms(get(a)),
                    fmt_ms(get(l)),
                    fmt_ms(get(o)),
                    ratio(get(a), get(l)),
                    ratio(get(a), get(o)),
                );
            }
        }
    }
    if !results.oslo_available {
        let _ = writeln!(
            md,
            "\noslo.messaging was not run: no virtualenv (`scripts/setup.sh` makes it)."
        );
    }
    let _ = writeln!(
        md,
        "\nPython publishes casts slowly, so its cast, fanout and notification phases use a tenth \
         of the count.\n"
    );
    notifications_section(&mut md, results);
    let contract_rows: Vec<String> = results
        .workloads
        .iter()
        .enumerate()
        .filter(|(_, w)| matches!(w, Workload::Calls { .. }))
        .filter_map(|(index, workload)| {
            let a = results.median(SystemKind::Amqp, index)?;
            let c = results.median(SystemKind::LapinContract, index)?;
            Some(format!(
                "| {} | {} | {} | {} | {} | {} |",
                workload.title(),
                fmt_rate(a.ops_per_s),
                fmt_rate(c.ops_per_s),
                ratio(Some(a.ops_per_s), Some(c.ops_per_s)),
                fmt_ms(a.p50_ms),
                ratio(a.p50_ms, c.p50_ms),
            ))
        })
        .collect();
    if !contract_rows.is_empty() {
        let _ = writeln!(
            md,
            "## oslo's wire contract\n\n\
             oslo.messaging's wire contract asks things of every peer that the hand-written \
             reference above skips, and each costs the broker work: every publish waits for its \
             publisher confirm (spec §2); requests go through a topic exchange and carry an \
             expiration; every message carries oslo's properties, persistent delivery mode \
             included (§1.1); replies are published mandatory (§2.2); and a request is \
             acknowledged before it runs (§2.5). The same reference doing all of that, and \
             nothing of amqp-rpc's own (no envelope, no context, replies routed by correlation \
             id), in the same rounds:\n\n\
             | workload | amqp-rpc calls/s | lapin + contract calls/s | ratio | amqp-rpc p50 ms | p50 ratio |\n\
             |---|---|---|---|---|---|\n{}\n",
            contract_rows.join("\n")
        );
    }
    recovery_section(&mut md, results);
    cpu_section(&mut md, results);
    let _ = writeln!(
        md,
        "## memory:// (in process)\n\n| workload | calls or deliveries/s | p50 ms | p99 ms | CPU µs per call or delivery |\n|---|---|---|---|---|"
    );
    for (index, workload) in results.memory_workloads.iter().enumerate() {
        if let Some(samples) = results.memory_samples.get(&index) {
            let s = median(samples);
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} |",
                workload.title(),
                fmt_rate(s.ops_per_s),
                fmt_ms(s.p50_ms),
                fmt_ms(s.p99_ms),
                fmt_us(s.cpu.process_us),
            );
        }
    }
    if let Some(off) = results.memory_one_thread.get(&Tracing::Off) {
        let s = median(off);
        let _ = writeln!(
            md,
            "| calls, 64 in flight, 100 B, runtime of one thread | {} | {} | {} | – |\n\n\
             The rows above run on the bench's runtime of two worker threads, as a server would; \
             the last row runs the same client and server on one thread. The difference is the \
             cost of handing work between cores: wake-ups, locks, and blocks allocated on one \
             core and freed on the other, which glibc's allocator serves slowly (the bench's \
             `--features jemalloc` measures the same on jemalloc); see \
             [bench/PROFILING.md](bench/PROFILING.md).",
            fmt_rate(s.ops_per_s),
            fmt_ms(s.p50_ms),
            fmt_ms(s.p99_ms)
        );
    }
    tracing_section(&mut md, results);
    let _ = writeln!(
        md,
        "\n## Targets\n\n| target | measured | holds |\n|---|---|---|"
    );
    for (text, value, holds) in targets(results) {
        let verdict = match holds {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "not measured",
        };
        let _ = writeln!(md, "| {text} | {value} | {verdict} |");
    }
    references_beside_targets(&mut md, results);
    let _ = writeln!(
        md,
        "\nClient heap per in-flight call: the growth of live heap while {} `RpcClient::call`s \
         (arguments: a one-key JSON object; each call in a task of its own) wait for replies that \
         do not come, divided by their number (a counting global allocator), once the heap has \
         stopped changing. {}\n",
        if smoke { "1,000" } else { "10,000" },
        if smoke {
            "One measurement."
        } else {
            "The median of three measurements, each on a new connection: single measurements of \
             the same build vary with timing (see bench/PROFILING.md)."
        }
    );
    let _ = writeln!(md, "## Where the time of one call goes\n");
    let lapin_seq = results.median(SystemKind::Lapin, 0).and_then(|s| s.p50_ms);
    let amqp_seq = results.median(SystemKind::Amqp, 0).and_then(|s| s.p50_ms);
    let memory_seq = results
        .memory_samples
        .get(&0)
        .and_then(|s| median(s).p50_ms);
    let _ = writeln!(
        md,
        "A sequential call's median is {} ms with amqp-rpc and {} ms with hand-written lapin: \
         the broker round trips (request in, reply out) dominate. The same call through \
         `memory://`, which has all of amqp-rpc's work and no broker, takes {} ms end to end. \
         amqp-rpc's own CPU work per call, measured in process on the same machine:\n",
        fmt_ms(amqp_seq),
        fmt_ms(lapin_seq),
        fmt_ms(memory_seq),
    );
    let _ = writeln!(md, "| step | µs |\n|---|---|");
    for (step, micros) in &results.breakdown {
        let _ = writeln!(md, "| {step} | {micros:.2} |");
    }
    if let Some(allocs) = results.allocs_per_call {
        let _ = writeln!(
            md,
            "\nOne call over `memory://` makes {allocs:.1} heap allocations (client and server \
             together, counted by the bench's allocator over 2,000 sequential 100 B `echo` calls \
             after 200 to warm up; the `String` argument the caller makes is one of them)."
        );
    }
    under_load(&mut md, results);
    let _ = writeln!(md, "\n![calls/s and p99 against calls in flight]({chart})");
    md
}

/// Notifications beside casts: amqp-rpc against oslo.messaging, and amqp-rpc's notifications
/// against its own casts in the same rounds.
fn notifications_section(md: &mut String, results: &Results) {
    let rate = |system, workload| rate_of(results, system, workload);
    let (casts, notify, publish) = (
        Workload::Casts {
            count: 0,
            payload: 100,
        },
        Workload::Notify {
            count: 0,
            payload: 100,
        },
        Workload::NotifyPublish {
            count: 0,
            payload: 100,
        },
    );
    let rows: Vec<String> = [notify, publish]
        .into_iter()
        .filter(|w| results.index_of(*w).is_some())
        .map(|w| {
            let (a, o) = (rate(SystemKind::Amqp, w), rate(SystemKind::Oslo, w));
            format!(
                "| {} | {} | {} | {} | {} |",
                w.title(),
                a.map_or("–".into(), fmt_rate),
                o.map_or("–".into(), fmt_rate),
                ratio(a, o),
                ratio(a, rate(SystemKind::Amqp, casts)),
            )
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "## Notifications\n\n\
         Both sides send the same notification: driver messagingv2, publisher `bench`, event \
         `bench.notify`, priority INFO, payload a 100 B string, one topic (routing key and \
         queue `<topic>.info` on the control exchange), each publish waiting for its publisher \
         confirm. amqp-rpc: one `Notifier` (typed `info`) shared by {} tasks on the client's \
         transport, as its casts; a `NotificationListener` with a typed endpoint that counts, \
         on the server's transport (its defaults: 64 handled at once, prefetch 64). \
         oslo.messaging (`bench/oslo_bench.py`, one process per phase): one `Notifier` shared \
         by {} threads (its casts run one; a thread publishes one at a time, as `info()` waits \
         for the confirm, and 16 gave oslo its best rate in a probe of 1, 8, 16 and 32), and in the \
         same process a notification listener (threading executor, 64 workers, no prefetch \
         limit) that counts; it warms up and purges its queue before measuring. *Delivered*: \
         the publishers send the count while the listener consumes, from the first publish to \
         the last delivery (the counterpart of casts delivered). *Published*: nobody consumes; \
         from the first publish to the last one's return; the queue is read and purged \
         afterwards (amqp-rpc counts at most what it holds). The lapin references are RPC only \
         and do not run these.\n\n\
         | workload | amqp-rpc /s | oslo.messaging /s | amqp-rpc / oslo | amqp-rpc / amqp-rpc casts delivered |\n\
         |---|---|---|---|---|\n{}\n",
        crate::systems::PUBLISHERS,
        crate::systems::OSLO_NOTIFY_THREADS,
        rows.join("\n"),
    );
}

/// A time in seconds: milliseconds below one second; "never" if infinite.
fn fmt_span(seconds: f64) -> String {
    match seconds {
        s if s.is_infinite() => "never".to_owned(),
        s if s >= 1.0 => format!("{s:.2} s"),
        s if s >= 0.01 => format!("{:.0} ms", s * 1e3),
        s => format!("{:.1} ms", s * 1e3),
    }
}

/// Each system's calls through a cut of every connection: medians and the worst round.
fn recovery_section(md: &mut String, results: &Results) {
    let Some(timing) = results.recovery_timing else {
        return;
    };
    let rows: Vec<String> = recovery::SYSTEMS
        .iter()
        .filter_map(|system| {
            let s = Summary::of(results.recovery.get(system)?)?;
            Some(format!(
                "| {} | {:.0} (fewest {}) | {:.0} (most {}) | {} (worst {}) | {} (worst {}) |",
                system.label(),
                s.calls.0,
                s.calls.1,
                s.failed.0,
                s.failed.1,
                fmt_span(s.first_success.0),
                fmt_span(s.first_success.1),
                fmt_span(s.longest_stall.0),
                fmt_span(s.longest_stall.1),
            ))
        })
        .collect();
    let _ = writeln!(
        md,
        "## Recovery from a connection cut\n\n\
         Each system's client calls its server for {:.0} s (and on while its last call failed), \
         one 100 B call at a time (timeout {:.0} s), both with their default reconnection settings (oslo's: kombu_reconnect_delay \
         of 1 s...; amqp-rpc has the same, but makes its first attempt after a loss at once); \
         {:.1} s in, the bench runs `rabbitmqctl close_all_connections` on the run's vhost, \
         which closes the client's and the server's connections at once; each run has a vhost, \
         server and client of its own. The cut is the moment the broker closes a connection of \
         the bench's own in that vhost; *cut → first success* ends with the first successful \
         call that started after it, and the *longest stall* is the longest time in the run \
         without a successful call ending. Medians over {}, the worst round in brackets.\n\n\
         | system | calls | failed calls | cut → first success | longest stall |\n\
         |---|---|---|---|---|\n{}\n",
        timing.run.as_secs_f64(),
        crate::systems::CALL_TIMEOUT.as_secs_f64(),
        timing.cut_after.as_secs_f64(),
        match results.rounds {
            1 => "one round".to_owned(),
            n => format!("{n} rounds"),
        },
        rows.join("\n"),
    );
    if !results.oslo_available {
        let _ = writeln!(
            md,
            "oslo.messaging was not run: no virtualenv (`scripts/setup.sh` makes it).\n"
        );
    }
}

fn fmt_us(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_owned(), |v| format!("{v:.1}"))
}

/// What the references themselves make of the two ratio targets that do not compare with
/// plain lapin alone: the sequential p50 that oslo's contract allows, and lapin's own
/// multiple of oslo.messaging.
fn references_beside_targets(md: &mut String, results: &Results) {
    let ratio_of = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| fmt_target(a / b, "×"));
    let p50 = |system| p50_of(results, system, calls(1));
    let contract = ratio_of(p50(SystemKind::LapinContract), p50(SystemKind::Lapin));
    let amqp = ratio_of(p50(SystemKind::Amqp), p50(SystemKind::LapinContract));
    if let (Some(contract), Some(amqp)) = (contract, amqp) {
        let _ = writeln!(
            md,
            "\nThe same run's references: hand-written lapin doing oslo's wire contract has a \
             sequential p50 of {contract} plain lapin's, and amqp-rpc's is {amqp} its."
        );
    }
    let rate = |system| rate_of(results, system, calls(64));
    if let Some(lapin) = ratio_of(rate(SystemKind::Lapin), rate(SystemKind::Oslo)) {
        let _ = writeln!(
            md,
            "\nAt 64 in flight, hand-written lapin makes {lapin} oslo.messaging's calls/s."
        );
    }
}

/// Where a call's CPU goes at 64 in flight: amqp-rpc's own steps, the rest of the process, the
/// broker; beside the two references.
fn under_load(md: &mut String, results: &Results) {
    let Some(index) = results.index_of(Workload::Calls {
        in_flight: 64,
        payload: 100,
    }) else {
        return;
    };
    let cpu = |system| results.median(system, index).map(|s| s.cpu);
    let (Some(a), Some(l), Some(c)) = (
        cpu(SystemKind::Amqp),
        cpu(SystemKind::Lapin),
        cpu(SystemKind::LapinContract),
    ) else {
        return;
    };
    let (Some(process), Some(broker)) = (a.process_us, a.broker_us) else {
        return;
    };
    let own: f64 = results.breakdown.iter().map(|(_, us)| us).sum();
    let reference = |r: crate::cpu::CpuPerOp| match (r.process_us, r.broker_us) {
        (Some(p), Some(b)) => format!("{p:.0} + {b:.0} µs"),
        _ => "not measured".to_owned(),
    };
    let _ = writeln!(
        md,
        "\nUnder load (64 calls in flight, 100 B), one call costs amqp-rpc's process (client and \
         server) {process:.0} µs of CPU and the broker {broker:.0} µs (CPU per call above); \
         hand-written lapin costs {} (process + broker), and lapin with oslo's contract {}. \
         amqp-rpc's own steps above are {own:.1} µs of its share; the rest is lapin's I/O threads and tokio (frames, wake-ups, \
         system calls), which the references pay too. With the broker on the same cores, the \
         sum of the two bounds the calls per second.",
        reference(l),
        reference(c),
    );
}

/// The CPU time each system's calls and deliveries cost this process and the broker.
fn cpu_section(md: &mut String, results: &Results) {
    let systems = [
        SystemKind::Amqp,
        SystemKind::Lapin,
        SystemKind::LapinContract,
    ];
    let part = |v: Option<f64>| v.map_or_else(|| "–".to_owned(), |v| format!("{v:.0}"));
    let cell = |s: Option<Sample>| {
        let Some(cpu) = s.map(|s| s.cpu) else {
            return "–".to_owned();
        };
        match (cpu.process_us, cpu.broker_us, results.broker_metered) {
            (Some(p), Some(b), _) => format!("{p:.0} + {b:.0} = **{:.0}**", p + b),
            (p, _, false) => part(p),
            (p, b, true) => format!("{} + {}", part(p), part(b)),
        }
    };
    let rows: Vec<String> = results
        .workloads
        .iter()
        .enumerate()
        .map(|(index, workload)| {
            let cells = systems.map(|s| match workload.systems().contains(&s) {
                true => cell(results.median(s, index)),
                false => "not run".to_owned(),
            });
            format!("| {} | {} |", workload.title(), cells.join(" | "))
        })
        .collect();
    let whose = match results.broker_metered {
        true => {
            "this process (the client and the server of the system measured; the others \
                 idle) + the broker = their sum"
        }
        false => {
            "this process only (the client and the server of the system measured; the \
                  others idle): the broker was not found on this machine"
        }
    };
    let _ = writeln!(
        md,
        "## CPU per call\n\n\
         CPU time in µs per call (per delivery for casts and fanout): {whose}. Read from \
         `/proc` around each phase; medians over rounds; – where a phase spent under 0.1 s of \
         CPU (too little to measure in 10 ms ticks). oslo.messaging's clients and servers are \
         other processes, so it is not metered. When both peers and the broker share the \
         machine's cores, those cores' CPU time per second divided by the sum bounds the rate.\n\n\
         | workload | amqp-rpc | lapin | lapin + contract |\n|---|---|---|---|\n{}\n",
        rows.join("\n")
    );
}

/// amqp-rpc's CPU work for one 100 B call, step by step, over `iterations`: the functions
/// the client and server run, one after the other on one thread.
pub(crate) fn call_breakdown(iterations: usize) -> Vec<(String, f64)> {
    use amqp_rpc::__private_v1::wire_steps;
    let payload = "x".repeat(100);
    let args = serde_json::json!({"payload": payload});
    let ctx = amqp_rpc::Context::new().with_request_id("req-1");
    let reply_q = "reply_dd16ef441b4e49eaa2e56f543aef0f11";
    let msg_id = "f7bf1089f6f9431db1932dec9c1313cf";
    let request_body = wire_steps::encode_call(&ctx, "echo", &args, reply_q).unwrap_or_default();
    let result = amqp_rpc::Returned::encode(&payload).unwrap_or(amqp_rpc::Returned::NONE);
    let reply_body = wire_steps::encode_reply(result, msg_id);
    let endpoint = BenchEndpoint::new(crate::systems::counter_for_breakdown());
    let time = |f: &mut dyn FnMut()| {
        let started = Instant::now();
        for _ in 0..iterations {
            f();
        }
        started.elapsed().as_secs_f64() * 1e6 / iterations as f64
    };
    vec![
        (
            "client: encode the request into its envelope".to_owned(),
            time(&mut || {
                std::hint::black_box(wire_steps::encode_call(&ctx, "echo", &args, reply_q).ok());
            }),
        ),
        (
            "server: open the envelope and decode the request".to_owned(),
            time(&mut || {
                std::hint::black_box(wire_steps::decode_request(&request_body).ok());
            }),
        ),
        (
            "server: dispatch to the generated endpoint (decode args, call, encode the result \
             into the reply)"
                .to_owned(),
            time(&mut || {
                let mut args = serde_json::Map::new();
                args.insert(
                    "payload".to_owned(),
                    serde_json::Value::String(payload.clone()),
                );
                let outcome = endpoint
                    .dispatch(amqp_rpc::Context::new(), "echo", args)
                    .now_or_never();
                std::hint::black_box(outcome);
            }),
        ),
        (
            "server: complete the reply (its other fields, the envelope's end)".to_owned(),
            time(&mut || {
                // The result is encoded by the dispatch, above; `null` here.
                std::hint::black_box(wire_steps::encode_reply(amqp_rpc::Returned::NONE, msg_id));
            }),
        ),
        (
            "client: open the envelope and decode the reply".to_owned(),
            time(&mut || {
                std::hint::black_box(wire_steps::decode_reply(&reply_body).ok());
            }),
        ),
    ]
}

/// calls/s and p99 against calls in flight (100 B payloads), one line per system.
pub(crate) fn chart(results: &Results, path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let points = |system: SystemKind| -> Vec<(usize, Sample)> {
        results
            .workloads
            .iter()
            .enumerate()
            .filter_map(|(i, w)| match w {
                Workload::Calls {
                    in_flight,
                    payload: 100,
                } => results.median(system, i).map(|s| (*in_flight, s)),
                _ => None,
            })
            .collect()
    };
    let systems = [
        (SystemKind::Amqp, RED),
        (SystemKind::Lapin, BLUE),
        (SystemKind::Oslo, GREEN),
    ];
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let (left, right) = root.split_horizontally(500);
    let x_range = (1f64).log10()..(256f64).log10() + 0.1;
    for (area, title, pick) in [(left, "calls/s", 0), (right, "p99 latency, ms", 1)] {
        let value = |s: &Sample| {
            if pick == 0 {
                Some(s.ops_per_s)
            } else {
                s.p99_ms
            }
        };
        let max = systems
            .iter()
            .flat_map(|(s, _)| points(*s))
            .filter_map(|(_, s)| value(&s))
            .fold(1.0f64, f64::max);
        let mut chart = ChartBuilder::on(&area)
            .caption(title, ("sans-serif", 20))
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(55)
            .build_cartesian_2d(x_range.clone(), 0.0..max * 1.1)?;
        chart
            .configure_mesh()
            .x_desc("calls in flight")
            .x_label_formatter(&|x| format!("{:.0}", 10f64.powf(*x)))
            .draw()?;
        for (system, color) in systems {
            let line: Vec<(f64, f64)> = points(system)
                .into_iter()
                .filter_map(|(n, s)| value(&s).map(|v| ((n as f64).log10(), v)))
                .collect();
            chart
                .draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
                .label(system.label())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
            chart.draw_series(line.into_iter().map(|p| Circle::new(p, 3, color.filled())))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    root.present()?;
    Ok(())
}

/// The cost of tracing: the one-thread memory:// calls under each kind of tracing, beside the
/// untraced run of the same rounds.
fn tracing_section(md: &mut String, results: &Results) {
    if results.memory_one_thread.is_empty() && results.rabbit_one_thread.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "\n## What tracing costs\n\n\
         Calls, 64 in flight, 100 B, amqp-rpc's client and server on a runtime of one thread \
         (whose default subscriber is the one measured), each kind of tracing in turn in every \
         round: over memory:// (no broker, so amqp-rpc's own work is all there is) and over \
         RabbitMQ. amqp-rpc makes an INFO span for every call and every request (see the README's \
         \"Tracing\"); with no subscriber each is a level check. This bench is built with the \
         `opentelemetry` feature, so every row above pays for the feature's checks too.\n\n\
         | transport | tracing | calls/s | p50 ms | p99 ms | calls/s vs off |\n\
         |---|---|---|---|---|---|"
    );
    let rows = [
        ("memory://", &results.memory_one_thread),
        ("RabbitMQ", &results.rabbit_one_thread),
    ];
    for (transport, runs) in rows {
        let Some(off) = runs.get(&Tracing::Off).map(|s| median(s)) else {
            continue;
        };
        for (tracing, samples) in runs {
            let s = median(samples);
            let _ = writeln!(
                md,
                "| {transport} | {} | {} | {} | {} | {:.2}× |",
                tracing.label(),
                fmt_rate(s.ops_per_s),
                fmt_ms(s.p50_ms),
                fmt_ms(s.p99_ms),
                s.ops_per_s / off.ops_per_s,
            );
        }
    }
}
