//! Telemetry: the `tracing` spans of calls, casts, requests and notifications as an
//! OpenTelemetry exporter receives them (the `opentelemetry` feature), the W3C trace context on
//! the wire (oslo.messaging 18.3's `_context_traceparent`), one trace across a Python and a
//! Rust service, and the `metrics` feature's counters and histograms.
//!
//! Its own test binary: it installs a global `tracing` subscriber with an OpenTelemetry layer
//! over an in-memory exporter, which the `it` binary's log capture would conflict with.
//!
//! Tests that need RabbitMQ are `#[ignore = "needs RabbitMQ: ..."]`; `scripts/test.sh` runs
//! them too: `bash scripts/test.sh --test telemetry`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code, unreachable_pub)]
#[path = "../it/common/peer.rs"]
mod peer;

mod metrics;
mod otel;
mod python;

use std::time::Duration;

/// How long a test waits for an answer that should come at once.
pub(crate) const ANSWER: Duration = Duration::from_secs(10);

/// A name no other test (or earlier run) uses.
pub(crate) fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}
