//! One trace across Python oslo.messaging 18.3.1, its tracing enabled
//! (`[oslo_messaging_tracing] tracing_enabled`, spans kept in memory by `peer.py --tracing`),
//! and Rust, over RabbitMQ: each side's consumer span is the other side's producer span's child.

use std::time::Duration;

use amqp_rpc::{Context, RpcClient, RpcServer, Target, Transport, rpc_endpoint};
use opentelemetry::trace::TraceContextExt;
use serde_json::{Value, json};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;

use crate::otel::{attr, exporter, named, root, spans_of};
use crate::peer::PythonPeer;
use crate::{ANSWER, unique};

fn broker_url() -> String {
    match std::env::var("AMQP_RPC_TEST_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "this test needs RabbitMQ and AMQP_RPC_TEST_URL is not set: run it with scripts/test.sh"
        ),
    }
}

#[rpc_endpoint]
trait Calculator {
    async fn add(&self, ctx: &Context, x: i64, y: i64) -> i64;
}

struct Calc;

impl Calculator for Calc {
    async fn add(&self, _: &Context, x: i64, y: i64) -> i64 {
        x + y
    }
}

/// The peer's finished spans (at least `min`).
async fn python_spans(peer: &PythonPeer, min: usize) -> Vec<Value> {
    match peer
        .request(json!({"cmd": "spans", "min": min, "timeout": 10}))
        .await
    {
        Ok(Value::Array(spans)) if spans.len() >= min => spans,
        other => panic!("Python spans: {other:?}"),
    }
}

fn python_span<'a>(spans: &'a [Value], name: &str) -> &'a Value {
    spans
        .iter()
        .find(|span| span["name"] == name)
        .unwrap_or_else(|| panic!("no Python span {name} in {spans:#?}"))
}

#[tokio::test]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn a_python_call_to_a_rust_server_is_one_trace() {
    exporter();
    let url = broker_url();
    let transport = Transport::from_url(&url).await.unwrap();
    let topic = unique("otel-rust-server");
    let server = RpcServer::builder(&transport, Target::server(&topic, "rust-1"))
        .endpoint(Calc.into_rpc())
        .build()
        .unwrap();
    server.start().await.unwrap();
    let peer = PythonPeer::start_with(&url, &["--tracing", "--service-name", "nova-api"]).await;
    let sum = peer
        .request(json!({
            "cmd": "call", "topic": topic, "method": "add", "args": {"x": 2, "y": 3},
            "ctxt": {"request_id": "req-py"}, "parent_span": "nova-api request",
        }))
        .await;
    assert_eq!(sum, Ok(json!(5)));
    let spans = python_spans(&peer, 2).await;
    let python_root = python_span(&spans, "nova-api request");
    let producer = python_span(&spans, &format!("{topic}.add"));
    assert_eq!(producer["kind"], "PRODUCER");
    assert_eq!(producer["parent_span_id"], python_root["span_id"]);
    let trace =
        opentelemetry::trace::TraceId::from_hex(producer["trace_id"].as_str().unwrap()).unwrap();
    // The Rust server's span: same trace, the Python producer's child.
    let rust = spans_of(trace, 1).await;
    let request = named(&rust, "add receive");
    assert_eq!(
        request.parent_span_id.to_string(),
        producer["span_id"].as_str().unwrap()
    );
    assert!(request.parent_span_is_remote);
    assert_eq!(
        attr(request, "openstack.request_id").as_deref(),
        Some("req-py")
    );
    assert_eq!(attr(request, "outcome").as_deref(), Some("ok"));
    peer.quit().await;
    server.stop().await;
    transport.close().await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn a_rust_call_to_a_python_server_is_one_trace() {
    exporter();
    let url = broker_url();
    let topic = unique("otel-python-server");
    let peer = PythonPeer::start_with(&url, &["--tracing", "--service-name", "nova-compute"]).await;
    peer.serve(&topic, "py-1").await;
    let transport = Transport::from_url(&url).await.unwrap();
    let client = RpcClient::new(&transport, Target::new(&topic)).with_timeout(ANSWER);
    let (root, trace) = root("rust caller");
    let ctx = Context::new().with_request_id("req-rust");
    let echoed: Value = async { client.call(&ctx, "echo", json!({"word": "hi"})).await }
        .instrument(root.clone())
        .await
        .unwrap();
    assert_eq!(echoed["word"], "hi");
    let root_id = root.context().span().span_context().span_id();
    drop(root);
    let rust = spans_of(trace, 2).await;
    let call = named(&rust, &format!("{topic}.echo"));
    assert_eq!(call.parent_span_id, root_id);
    // The Python server's span: same trace, the Rust producer's child.
    let spans = python_spans(&peer, 1).await;
    let consumer = python_span(&spans, "echo receive");
    assert_eq!(consumer["kind"], "CONSUMER");
    assert_eq!(consumer["trace_id"], trace.to_string());
    assert_eq!(
        consumer["parent_span_id"],
        call.span_context.span_id().to_string()
    );
    assert_eq!(consumer["parent_is_remote"], true);
    assert_eq!(consumer["attributes"]["openstack.request_id"], "req-rust");
    assert_eq!(
        consumer["attributes"]["messaging.message.id"].as_str(),
        attr(call, "msg_id").as_deref()
    );
    // The handler saw the trace context as a context key, as oslo's endpoints do.
    let log = peer.log("py-1").await;
    let sent = log[0]["ctxt"]["traceparent"].as_str().unwrap_or_default();
    assert_eq!(
        sent,
        format!("00-{trace}-{}-01", call.span_context.span_id())
    );
    peer.quit().await;
    tokio::time::timeout(Duration::from_secs(10), transport.close())
        .await
        .unwrap();
}
