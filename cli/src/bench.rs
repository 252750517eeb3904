//! `amqp-rpc bench`: a load generator for any oslo.messaging service. `--concurrency` tasks
//! call the method back to back (or, with `--rate`, at that many calls per second in all,
//! each at its slot), for `--duration` seconds or `--calls` calls; a progress bar on a
//! terminal shows calls/s, errors and latency percentiles so far; the summary is JSON on
//! standard output (and a table on a terminal).
//!
//! Latency is measured from the moment a call is sent to its reply. With `--rate`, a call
//! that could not be sent at its slot (all tasks busy) is sent late and measured from then:
//! give enough `--concurrency` for the rate.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use amqp_rpc::{RpcClient, RpcError};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Map, Value, json};

use crate::connect::Failure;
use crate::{Cli, status};

/// What the tasks share.
struct Tally {
    /// Latencies of answered calls, in microseconds.
    latency: Mutex<Histogram<u64>>,
    /// Failed calls by error class.
    errors: Mutex<BTreeMap<String, u64>>,
    /// Calls started (their slot number).
    issued: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
}

/// How a run ends.
pub(crate) enum Limit {
    Duration(Duration),
    Calls(u64),
}

/// The class an error counts under.
fn class_of(error: &RpcError) -> String {
    if let Some((class, _)) = crate::run::oslo_exception(error) {
        return class.to_owned();
    }
    match error {
        RpcError::Remote(remote) => remote.class().to_owned(),
        RpcError::Transport(_) => "TransportError".to_owned(),
        _ => "Error".to_owned(),
    }
}

fn ms(micros: u64) -> f64 {
    (micros as f64 / 10.0).round() / 100.0
}

/// The load to make.
pub(crate) struct Load {
    pub(crate) client: RpcClient,
    pub(crate) method: String,
    pub(crate) kwargs: Map<String, Value>,
    pub(crate) ctx: amqp_rpc::Context,
    pub(crate) concurrency: u32,
    pub(crate) limit: Limit,
    /// Calls per second in all, if paced.
    pub(crate) rate: Option<f64>,
}

/// Runs the load; returns the exit status (0 if every call was answered, 1 otherwise).
pub(crate) async fn run(cli: &Cli, load: Load) -> Result<u8, Failure> {
    let Load {
        client,
        method,
        kwargs,
        ctx,
        concurrency,
        limit,
        rate,
    } = load;
    let histogram = Histogram::new_with_bounds(1, 3_600_000_000, 3)
        .map_err(|e| Failure::new(status::SOFTWARE, e.to_string()))?;
    let tally = Arc::new(Tally {
        latency: Mutex::new(histogram),
        errors: Mutex::new(BTreeMap::new()),
        issued: AtomicU64::new(0),
        ok: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let started = tokio::time::Instant::now();
    let (deadline, max_calls) = match limit {
        Limit::Duration(d) => (Some(started + d), None),
        Limit::Calls(n) => (None, Some(n)),
    };
    let slot = rate.map(|r| Duration::from_secs_f64(1.0 / r));
    let args = Arc::new(kwargs);
    let ctx = Arc::new(ctx);
    let method: Arc<str> = method.into();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, args, ctx, method, tally) = (
                client.clone(),
                Arc::clone(&args),
                Arc::clone(&ctx),
                Arc::clone(&method),
                Arc::clone(&tally),
            );
            tokio::spawn(async move {
                loop {
                    let n = tally.issued.fetch_add(1, Ordering::Relaxed);
                    if max_calls.is_some_and(|max| n >= max) {
                        break;
                    }
                    if let Some(slot) = slot {
                        let at = started + slot.mul_f64(n as f64);
                        if deadline.is_some_and(|d| at >= d) {
                            break;
                        }
                        tokio::time::sleep_until(at).await;
                    } else if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
                        break;
                    }
                    let sent = Instant::now();
                    let result: Result<Value, RpcError> = client.call(&ctx, &method, &*args).await;
                    let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                    match result {
                        Ok(_) => {
                            let mut latency = crate::lock(&tally.latency);
                            latency.saturating_record(micros.max(1));
                            tally.ok.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            *crate::lock(&tally.errors).entry(class_of(&e)).or_default() += 1;
                            tally.failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();

    let bar = progress_bar(&limit);
    let progress = {
        let (bar, tally) = (bar.clone(), Arc::clone(&tally));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tick.tick().await;
                let (ok, failed) = (
                    tally.ok.load(Ordering::Relaxed),
                    tally.failed.load(Ordering::Relaxed),
                );
                let secs = started.elapsed().as_secs_f64().max(1e-3);
                let (p50, p99) = {
                    let latency = crate::lock(&tally.latency);
                    (
                        latency.value_at_quantile(0.5),
                        latency.value_at_quantile(0.99),
                    )
                };
                bar.set_message(format!(
                    "{:.0}/s  errors {failed}  p50 {:.2} ms  p99 {:.2} ms",
                    (ok + failed) as f64 / secs,
                    ms(p50),
                    ms(p99),
                ));
                match max_calls {
                    Some(_) => bar.set_position(ok + failed),
                    None => bar.set_position(started.elapsed().as_millis() as u64),
                }
            }
        })
    };
    for task in tasks {
        if let Err(e) = task.await {
            progress.abort();
            bar.finish_and_clear();
            return Err(Failure::new(
                status::SOFTWARE,
                format!("a bench task failed: {e}"),
            ));
        }
    }
    let elapsed = started.elapsed();
    progress.abort();
    bar.finish_and_clear();

    let summary = summarize(&tally, elapsed, concurrency, rate);
    if std::io::stderr().is_terminal() {
        eprintln!("{}", table(&summary));
    }
    println!("{}", crate::run::json_text(&summary, cli.pretty));
    Ok(match tally.failed.load(Ordering::Relaxed) {
        0 => 0,
        _ => status::REMOTE,
    })
}

fn progress_bar(limit: &Limit) -> ProgressBar {
    let (length, template) = match limit {
        Limit::Calls(n) => (*n, "{elapsed_precise} [{bar:20}] {pos}/{len}  {msg}"),
        Limit::Duration(d) => (
            u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
            "{elapsed_precise} [{bar:20}] {msg}",
        ),
    };
    let bar = ProgressBar::with_draw_target(Some(length), ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// The run's figures.
fn summarize(tally: &Tally, elapsed: Duration, concurrency: u32, rate: Option<f64>) -> Value {
    let (ok, failed) = (
        tally.ok.load(Ordering::Relaxed),
        tally.failed.load(Ordering::Relaxed),
    );
    let secs = elapsed.as_secs_f64();
    let latency = crate::lock(&tally.latency);
    let latency_ms = match latency.len() {
        0 => Value::Null,
        _ => json!({
            "min": ms(latency.min()),
            "mean": (latency.mean() / 10.0).round() / 100.0,
            "p50": ms(latency.value_at_quantile(0.5)),
            "p90": ms(latency.value_at_quantile(0.9)),
            "p99": ms(latency.value_at_quantile(0.99)),
            "p999": ms(latency.value_at_quantile(0.999)),
            "max": ms(latency.max()),
        }),
    };
    json!({
        "calls": ok + failed,
        "answered": ok,
        "failed": failed,
        "errors": *crate::lock(&tally.errors),
        "seconds": (secs * 1000.0).round() / 1000.0,
        "calls_per_second": ((ok + failed) as f64 / secs.max(1e-9) * 10.0).round() / 10.0,
        "concurrency": concurrency,
        "rate": rate,
        "latency_ms": latency_ms,
    })
}

/// The summary for a person.
fn table(summary: &Value) -> String {
    let mut out = format!(
        "{} calls in {} s: {} calls/s, {} answered, {} failed\n",
        summary["calls"],
        summary["seconds"],
        summary["calls_per_second"],
        summary["answered"],
        summary["failed"]
    );
    if summary["latency_ms"].is_object() {
        let row: Vec<String> = ["min", "p50", "p90", "p99", "p999", "max", "mean"]
            .iter()
            .map(|k| format!("{k} {}", summary["latency_ms"][k]))
            .collect();
        out.push_str(&format!("latency (ms): {}\n", row.join("  ")));
    }
    if let Value::Object(errors) = &summary["errors"] {
        for (class, count) in errors {
            out.push_str(&format!("  {count} × {class}\n"));
        }
    }
    out
}
