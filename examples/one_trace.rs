//! One trace across Python and Rust services (the `opentelemetry` feature): a Python
//! oslo.messaging 18.3.1 client ("nova-api") calls a Rust service ("nova-compute"), which calls
//! a Python oslo.messaging server ("glance") while it works. Both Pythons run with oslo's
//! `[oslo_messaging_tracing] tracing_enabled`; every process keeps its spans in memory, and the
//! example draws the one trace they make together.
//!
//! Needs RabbitMQ and the interop venv (`scripts/setup.sh`):
//!
//! ```text
//! cargo run --example one_trace          # TRANSPORT_URL, default rabbit://guest:guest@127.0.0.1:5672/
//! ```

// The interop tests' driver of a Python peer; a peer that misbehaves panics it.
#[allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]
#[path = "../tests/it/common/peer.rs"]
mod peer;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amqp_rpc::{Context, RpcClient, RpcServer, Target, Transport, rpc_endpoint};
use opentelemetry::KeyValue;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::{SpanKind, TracerProvider};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use serde_json::{Value, json};
use tracing_subscriber::layer::SubscriberExt;

use crate::peer::PythonPeer;

/// The Rust service.
#[rpc_endpoint]
trait Compute {
    /// Boots a server from an image, asking the image service about it first.
    async fn boot(&self, ctx: &Context, name: String, image: String) -> Value;
}

struct ComputeService {
    images: RpcClient,
}

impl Compute for ComputeService {
    async fn boot(&self, ctx: &Context, name: String, image: String) -> Value {
        tracing::info!(%name, "booting");
        // The same context goes on: the request id travels, the trace context is this span's.
        let image: Value = self
            .images
            .call(ctx, "echo", json!({"id": image, "status": "active"}))
            .await
            .unwrap_or_else(|e| json!({"error": e.to_string()}));
        json!({"name": name, "image": image, "host": "compute-1"})
    }
}

/// A span as drawn: from Python's `spans` or Rust's exporter.
struct Drawn {
    trace_id: String,
    service: String,
    name: String,
    kind: String,
    span_id: String,
    parent: Option<String>,
    start: u128,
    end: u128,
}

fn nanos(time: SystemTime) -> u128 {
    time.duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos()
}

fn from_python(span: &Value) -> Drawn {
    let text = |key: &str| span[key].as_str().unwrap_or_default().to_owned();
    Drawn {
        trace_id: text("trace_id"),
        service: text("service"),
        name: text("name"),
        kind: text("kind").to_lowercase(),
        span_id: text("span_id"),
        parent: span["parent_span_id"].as_str().map(str::to_owned),
        start: u128::from(span["start_time_unix_nano"].as_u64().unwrap_or_default()),
        end: u128::from(span["end_time_unix_nano"].as_u64().unwrap_or_default()),
    }
}

async fn python_spans(peer: &PythonPeer, min: usize) -> Vec<Value> {
    match peer.request(json!({"cmd": "spans", "min": min})).await {
        Ok(Value::Array(spans)) => spans,
        other => panic!("spans: {other:?}"),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("TRANSPORT_URL")
        .unwrap_or_else(|_| "rabbit://guest:guest@127.0.0.1:5672/".to_owned());

    // Rust's side of OpenTelemetry: oslo's propagators, a tracer, the tracing layer.
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));
    let exporter = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name("nova-compute")
                .build(),
        )
        .with_simple_exporter(exporter.clone())
        .build();
    tracing::subscriber::set_global_default(
        tracing_subscriber::registry()
            .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("nova-compute"))),
    )?;

    let glance = PythonPeer::start_with(&url, &["--tracing", "--service-name", "glance"]).await;
    glance.serve("image", "glance-1").await;
    let transport = Transport::from_url(&url).await?;
    let images = RpcClient::new(&transport, Target::new("image"));
    let server = RpcServer::builder(&transport, Target::server("compute", "compute-1"))
        .endpoint(ComputeService { images }.into_rpc())
        .build()?;
    server.start().await?;
    let nova = PythonPeer::start_with(&url, &["--tracing", "--service-name", "nova-api"]).await;

    let booted = nova
        .request(json!({
            "cmd": "call", "topic": "compute", "method": "boot",
            "args": {"name": "vm-1", "image": "cirros"},
            "ctxt": {"request_id": "req-7f3e"}, "parent_span": "POST /servers",
        }))
        .await;
    println!("nova-api got: {}", booted.map_err(|e| e.to_string())?);

    let mut spans: Vec<Drawn> = python_spans(&nova, 2)
        .await
        .iter()
        .map(from_python)
        .collect();
    spans.extend(python_spans(&glance, 1).await.iter().map(from_python));
    // Rust's two: the request's consumer span and its call's producer span.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let rust = loop {
        let rust = exporter.get_finished_spans()?;
        if rust.len() >= 2 || tokio::time::Instant::now() > deadline {
            break rust;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    for span in rust {
        let attribute = |key: &str| {
            span.attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv: &KeyValue| kv.value.to_string())
        };
        let kind = match span.span_kind {
            SpanKind::Producer => "producer",
            SpanKind::Consumer => "consumer",
            _ => "internal",
        };
        let mut name = span.name.to_string();
        if let Some(outcome) = attribute("outcome") {
            name = format!("{name} [{outcome}]");
        }
        spans.push(Drawn {
            trace_id: span.span_context.trace_id().to_string(),
            service: "nova-compute".to_owned(),
            name,
            kind: kind.to_owned(),
            span_id: span.span_context.span_id().to_string(),
            parent: Some(span.parent_span_id.to_string()).filter(|id| id != "0000000000000000"),
            start: nanos(span.start_time),
            end: nanos(span.end_time),
        });
    }
    draw(&spans);

    nova.quit().await;
    glance.quit().await;
    server.stop().await;
    transport.close().await;
    let _ = provider.shutdown();
    Ok(())
}

/// The trace as a tree with a time bar per span.
fn draw(spans: &[Drawn]) {
    let Some(root) = spans.iter().find(|s| s.parent.is_none()) else {
        return;
    };
    let (start, end) = (root.start, root.end.max(root.start + 1));
    const WIDTH: u128 = 40;
    let services: std::collections::BTreeSet<&str> =
        spans.iter().map(|s| s.service.as_str()).collect();
    println!(
        "\ntrace {}: {} spans, {} services",
        root.trace_id,
        spans.len(),
        services.len()
    );
    println!(
        "{:<14} {:<44} {:<w$}  duration",
        "service",
        "span",
        "timeline",
        w = WIDTH as usize
    );
    fn walk(spans: &[Drawn], span: &Drawn, depth: usize, out: &mut Vec<(usize, usize)>) {
        let index = spans
            .iter()
            .position(|s| std::ptr::eq(s, span))
            .unwrap_or(0);
        out.push((index, depth));
        let mut children: Vec<&Drawn> = spans
            .iter()
            .filter(|s| s.parent.as_deref() == Some(span.span_id.as_str()))
            .collect();
        children.sort_by_key(|s| s.start);
        for child in children {
            walk(spans, child, depth + 1, out);
        }
    }
    let mut order = Vec::new();
    walk(spans, root, 0, &mut order);
    for (index, depth) in order {
        let span = &spans[index];
        let from = (span.start.saturating_sub(start) * WIDTH / (end - start)).min(WIDTH - 1);
        let to = (span.end.saturating_sub(start) * WIDTH / (end - start)).clamp(from + 1, WIDTH);
        let bar: String = (0..WIDTH)
            .map(|i| if (from..to).contains(&i) { '█' } else { ' ' })
            .collect();
        let label = format!("{}{} ({})", "  ".repeat(depth), span.name, span.kind);
        println!(
            "{:<14} {label:<44} {bar}  {:.1} ms",
            span.service,
            (span.end - span.start) as f64 / 1e6
        );
    }
}
