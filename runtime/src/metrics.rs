//! Metrics of every call, cast and request (the `metrics` feature), through the
//! [`metrics`](https://docs.rs/metrics) facade: install any exporter (Prometheus, StatsD...)
//! and they appear; without one they cost a few label strings per message.
//!
//! The names and labels are oslo.metrics' (`oslo_metrics.metrics.oslo_messaging`), so that a
//! dashboard made for Python services shows Rust ones too:
//!
//! | metric | kind | when |
//! |---|---|---|
//! | `oslo_messaging_rpc_client_invocation_start_total` | counter | a call or cast starts |
//! | `oslo_messaging_rpc_client_invocation_end_total` | counter | it succeeded |
//! | `oslo_messaging_rpc_client_processing_seconds` | histogram | its duration, when it succeeded |
//! | `oslo_messaging_rpc_client_exception_total` | counter | it failed, by `exception` |
//! | `oslo_messaging_rpc_server_invocation_start_total` | counter | a request starts |
//! | `oslo_messaging_rpc_server_invocation_end_total` | counter | its method returned |
//! | `oslo_messaging_rpc_server_processing_seconds` | histogram | its duration, when it returned |
//! | `oslo_messaging_rpc_server_exception_total` | counter | it failed, by `exception` |
//!
//! Client labels: `call_type` (`call` or `cast`), `exchange`, `topic`, `server`, `fanout`,
//! `namespace`, `version`, `method`, `timeout` (a call's, in seconds); server labels:
//! `exchange`, `topic`, `server` (the server's), `namespace`, `version` (requested), `method`.
//! A label without a value (no namespace, say) is left out, which Prometheus reads as empty.
//! `exception` is [`RpcError::class`] on a client (`MessagingTimeout`, a remote class...) and
//! the exception's class on a server (`ValueError`, `NoSuchMethod`...).
//!
//! Where oslo differs: oslo.messaging 18.3.1 sends only the client metrics (oslo.metrics
//! defines the server ones, which nothing records), adds a `process` label and an `endpoint`
//! (class name) label, and names a remote exception `ValueError_Remote` where amqp-rpc says
//! `ValueError`. Durations are recorded in seconds; oslo.metrics' buckets are
//! [`PROCESSING_SECONDS_BUCKETS`], for exporters that take buckets (see the `prometheus`
//! example).

use std::time::Duration;

use metrics::{Label, counter, histogram};

use crate::error::RpcError;
use crate::hooks::{CallHook, MessageInfo, Outcome, RequestHook, RequestInfo};
use crate::target::Target;

/// oslo.metrics' histogram buckets for `*_processing_seconds`.
pub const PROCESSING_SECONDS_BUCKETS: [f64; 17] = [
    0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 25.0, 50.0, 75.0,
    100.0,
];

/// Labels of `target` (exchange, topic, server), then `more`; those without a value left out.
fn labels(
    target: &Target,
    more: impl IntoIterator<Item = (&'static str, Option<String>)>,
) -> Vec<Label> {
    let of_target = [
        ("exchange", target.exchange()),
        ("topic", target.topic()),
        ("server", target.server_name()),
    ]
    .map(|(key, value)| (key, value.map(str::to_owned)));
    of_target
        .into_iter()
        .chain(more)
        .filter_map(|(key, value)| Some(Label::new(key, value?)))
        .collect()
}

/// The client's metrics, a [`CallHook`] on every client.
pub(crate) struct ClientMetrics;

impl ClientMetrics {
    fn labels(message: &MessageInfo<'_>) -> Vec<Label> {
        let call_type = if message.call { "call" } else { "cast" };
        let mut labels = labels(
            message.target,
            [
                ("namespace", message.target.namespace().map(str::to_owned)),
                ("version", message.version.map(|v| v.to_string())),
                ("method", Some(message.method.to_owned())),
                (
                    "timeout",
                    message.timeout.map(|t| t.as_secs_f64().to_string()),
                ),
            ],
        );
        labels.push(Label::new("call_type", call_type));
        let fanout = if message.target.fanout() {
            "true"
        } else {
            "false"
        };
        labels.push(Label::new("fanout", fanout));
        labels
    }
}

impl CallHook for ClientMetrics {
    fn before(&self, message: &MessageInfo<'_>) {
        counter!(
            "oslo_messaging_rpc_client_invocation_start_total",
            Self::labels(message)
        )
        .increment(1);
    }

    fn after(&self, message: &MessageInfo<'_>, result: Result<(), &RpcError>, elapsed: Duration) {
        let mut labels = Self::labels(message);
        match result {
            Ok(()) => {
                histogram!(
                    "oslo_messaging_rpc_client_processing_seconds",
                    labels.clone()
                )
                .record(elapsed.as_secs_f64());
                counter!("oslo_messaging_rpc_client_invocation_end_total", labels).increment(1);
            }
            Err(error) => {
                labels.push(Label::new("exception", error.class().to_owned()));
                counter!("oslo_messaging_rpc_client_exception_total", labels).increment(1);
            }
        }
    }
}

/// The server's metrics, a [`RequestHook`] on every server.
pub(crate) struct ServerMetrics;

impl ServerMetrics {
    fn labels(request: &RequestInfo<'_>) -> Vec<Label> {
        labels(
            request.server,
            [
                ("namespace", request.namespace.map(str::to_owned)),
                ("version", request.version.map(|v| v.to_string())),
                ("method", Some(request.method.to_owned())),
            ],
        )
    }
}

impl RequestHook for ServerMetrics {
    fn before(&self, request: &RequestInfo<'_>) {
        counter!(
            "oslo_messaging_rpc_server_invocation_start_total",
            Self::labels(request)
        )
        .increment(1);
    }

    fn after(&self, request: &RequestInfo<'_>, outcome: &Outcome<'_>, elapsed: Duration) {
        let mut labels = Self::labels(request);
        match outcome {
            Outcome::Returned => {
                histogram!(
                    "oslo_messaging_rpc_server_processing_seconds",
                    labels.clone()
                )
                .record(elapsed.as_secs_f64());
                counter!("oslo_messaging_rpc_server_invocation_end_total", labels).increment(1);
            }
            Outcome::Raised(failure) => {
                labels.push(Label::new("exception", failure.class().to_owned()));
                counter!("oslo_messaging_rpc_server_exception_total", labels).increment(1);
            }
        }
    }
}
