//! `--price-contract`: what each item of oslo's wire contract costs on its own, measured with
//! the hand-written lapin reference doing that item alone (see [`Contract`]): calls/s with 64
//! in flight and the CPU per call of this process and of the broker, and the sequential
//! call's median latency, each beside plain lapin's from the same rounds.

use std::time::Duration;

use crate::cpu::CpuMeter;
use crate::lapin_ref::Contract;
use crate::stats::{Sample, median};
use crate::systems::LapinSystem;

/// One variant's samples: 64 in flight, and sequential.
#[derive(Default)]
struct Runs {
    loaded: Vec<Sample>,
    sequential: Vec<Sample>,
}

/// Runs every variant `rounds` times (the order reversed every other round) and returns the
/// Markdown table.
pub(crate) async fn price(
    amqp_url: &str,
    topic: &str,
    meter: &CpuMeter,
    rounds: usize,
    seconds: Duration,
    progress: impl Fn(&str),
) -> Result<String, Box<dyn std::error::Error>> {
    let variants = Contract::priced();
    let mut runs: Vec<Runs> = variants.iter().map(|_| Runs::default()).collect();
    let payload = "x".repeat(100);
    for round in 0..rounds {
        let mut order: Vec<usize> = (0..variants.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for index in order {
            let (label, contract) = variants[index];
            progress(&format!("[round {}/{rounds}] {label} ...", round + 1));
            let system = LapinSystem::start(amqp_url, topic, 64, contract).await?;
            // A warm-up, outside the measures.
            let _ = system.calls(8, &payload, Duration::from_millis(200)).await;
            let before = meter.read();
            let loaded = system.calls(64, &payload, seconds).await;
            let after = meter.read();
            runs[index]
                .loaded
                .push(loaded.with_cpu(before.per_op(&after, loaded.ops)));
            runs[index]
                .sequential
                .push(system.calls(1, &payload, seconds).await);
            system.stop().await;
        }
    }
    let medians: Vec<(Sample, Sample)> = runs
        .iter()
        .map(|r| (median(&r.loaded), median(&r.sequential)))
        .collect();
    // A variant that completed no call measured nothing: an error, not a row of zeros.
    for ((label, _), (loaded, sequential)) in variants.iter().zip(&medians) {
        if loaded.ops == 0 || sequential.ops == 0 {
            return Err(format!("{label}: no call completed").into());
        }
    }
    let (plain, plain_sequential) = medians[0];
    let us = |v: Option<f64>| v.map_or("–".to_owned(), |v| format!("{v:.0}"));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}×", a / b),
        _ => "–".to_owned(),
    };
    let mut md = String::from(
        "| item (alone, on plain lapin) | calls/s, 64 in flight | vs plain | CPU µs per call: process + broker | broker vs plain | sequential p50 ms | vs plain |\n\
         |---|---|---|---|---|---|---|\n",
    );
    for ((label, _), (loaded, sequential)) in variants.iter().zip(&medians) {
        md.push_str(&format!(
            "| {label} | {:.0} | {} | {} + {} | {} | {} | {} |\n",
            loaded.ops_per_s,
            ratio(Some(loaded.ops_per_s), Some(plain.ops_per_s)),
            us(loaded.cpu.process_us),
            us(loaded.cpu.broker_us),
            ratio(loaded.cpu.broker_us, plain.cpu.broker_us),
            sequential
                .p50_ms
                .map_or("–".to_owned(), |v| format!("{v:.3}")),
            ratio(sequential.p50_ms, plain_sequential.p50_ms),
        ));
    }
    Ok(md)
}
