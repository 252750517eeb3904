//! What tracing costs: the same memory:// calls with no subscriber (amqp-rpc's spans are then
//! a level check), with a `tracing-subscriber` formatter at INFO (every call's and request's
//! span recorded, their fields formatted), and with an OpenTelemetry layer exporting every
//! span (W3C trace context in every request, the server's span made the caller's child).

use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing::Dispatch;
use tracing_subscriber::layer::SubscriberExt;

/// How a run is traced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Tracing {
    /// No subscriber.
    Off,
    /// `tracing_subscriber::fmt` at INFO, writing to nothing.
    Spans,
    /// `tracing-opentelemetry` over the SDK's batch processor, whose exporter drops the spans
    /// (the cost of making and batching them, not of sending them anywhere).
    OpenTelemetry,
}

impl Tracing {
    pub(crate) const ALL: [Tracing; 3] = [Tracing::Off, Tracing::Spans, Tracing::OpenTelemetry];

    pub(crate) fn label(self) -> &'static str {
        match self {
            Tracing::Off => "tracing off (no subscriber)",
            Tracing::Spans => "spans on (fmt subscriber at INFO)",
            Tracing::OpenTelemetry => "OpenTelemetry on (tracing-opentelemetry, batch export)",
        }
    }

    /// The dispatcher to run under, and the provider to shut down after.
    pub(crate) fn dispatch(self) -> (Option<Dispatch>, Option<SdkTracerProvider>) {
        match self {
            Tracing::Off => (None, None),
            Tracing::Spans => {
                let subscriber = tracing_subscriber::fmt()
                    .with_max_level(tracing::Level::INFO)
                    .with_writer(std::io::sink)
                    .finish();
                (Some(Dispatch::new(subscriber)), None)
            }
            Tracing::OpenTelemetry => {
                opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(
                    vec![
                        Box::new(TraceContextPropagator::new()),
                        Box::new(BaggagePropagator::new()),
                    ],
                ));
                let provider = SdkTracerProvider::builder()
                    .with_batch_exporter(Dropped)
                    .build();
                let layer =
                    tracing_opentelemetry::layer().with_tracer(provider.tracer("amqp-rpc-bench"));
                let subscriber = tracing_subscriber::registry()
                    .with(layer)
                    .with(tracing_subscriber::filter::LevelFilter::INFO);
                (Some(Dispatch::new(subscriber)), Some(provider))
            }
        }
    }
}

/// An exporter that drops what it is given.
#[derive(Debug)]
struct Dropped;

impl SpanExporter for Dropped {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        drop(batch);
        Ok(())
    }
}
