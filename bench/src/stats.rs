//! What one phase of one system measured, and the medians over rounds.

use std::time::Duration;

use crate::cpu::CpuPerOp;

/// The outcome of one phase run of one system.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Sample {
    /// Operations completed (calls answered, casts delivered).
    pub(crate) ops: u64,
    /// Operations per second.
    pub(crate) ops_per_s: f64,
    /// Median latency in milliseconds (calls only).
    pub(crate) p50_ms: Option<f64>,
    /// 99th percentile latency in milliseconds (calls only).
    pub(crate) p99_ms: Option<f64>,
    /// CPU time per operation, when the phase was metered.
    pub(crate) cpu: CpuPerOp,
}

impl Sample {
    /// A call phase: `latencies` of every call, over `elapsed`.
    pub(crate) fn from_latencies(mut latencies: Vec<Duration>, elapsed: Duration) -> Sample {
        latencies.sort_unstable();
        let percentile = |p: f64| {
            let index = ((latencies.len() as f64 * p).ceil() as usize).saturating_sub(1);
            latencies.get(index).map(|d| d.as_secs_f64() * 1e3)
        };
        Sample {
            ops: latencies.len() as u64,
            ops_per_s: latencies.len() as f64 / elapsed.as_secs_f64(),
            p50_ms: percentile(0.50),
            p99_ms: percentile(0.99),
            cpu: CpuPerOp::default(),
        }
    }

    /// A throughput-only phase.
    pub(crate) fn from_count(ops: u64, elapsed: Duration) -> Sample {
        Sample {
            ops,
            ops_per_s: ops as f64 / elapsed.as_secs_f64(),
            p50_ms: None,
            p99_ms: None,
            cpu: CpuPerOp::default(),
        }
    }

    /// The same sample, with the CPU time its operations cost.
    pub(crate) fn with_cpu(self, cpu: CpuPerOp) -> Sample {
        Sample { cpu, ..self }
    }
}

/// One call of a run that records every call (the recovery phase).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct CallRecord {
    /// When the call started, from the run's start.
    pub(crate) start: Duration,
    /// When it returned, from the run's start.
    pub(crate) end: Duration,
    /// Whether it returned the right reply.
    pub(crate) ok: bool,
}

/// The median of `values` (the upper one of an even count); `None` if there are none.
pub(crate) fn mid(mut values: Vec<f64>) -> Option<f64> {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied()
}

/// The median, per field, of several rounds.
pub(crate) fn median(samples: &[Sample]) -> Sample {
    Sample {
        ops: mid(samples.iter().map(|s| s.ops as f64).collect()).unwrap_or(0.0) as u64,
        ops_per_s: mid(samples.iter().map(|s| s.ops_per_s).collect()).unwrap_or(0.0),
        p50_ms: mid(samples.iter().filter_map(|s| s.p50_ms).collect()),
        p99_ms: mid(samples.iter().filter_map(|s| s.p99_ms).collect()),
        cpu: CpuPerOp {
            process_us: mid(samples.iter().filter_map(|s| s.cpu.process_us).collect()),
            broker_us: mid(samples.iter().filter_map(|s| s.cpu.broker_us).collect()),
        },
    }
}
