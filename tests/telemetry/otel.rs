//! Spans as OpenTelemetry sees them, on the in-memory broker: names, kinds, parents,
//! attributes and outcomes, and the trace context in the request's context.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use amqp_rpc::notify::{
    HandlerError, Incoming, NotificationEndpoint, NotificationListener, NotificationResult,
    Notifier, Priorities, Priority,
};
use amqp_rpc::{
    Context, Endpoint, RemoteError, Returned, RpcClient, RpcServer, Target, Transport, async_trait,
};
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceContextExt, TraceId, TracerProvider};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use serde_json::{Map, Value, json};
use tracing::Instrument;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::layer::SubscriberExt;

use crate::{ANSWER, unique};

/// The exporter every span of this binary ends in (installed once, with the global
/// subscriber and oslo's propagators: W3C trace context and baggage).
pub(crate) fn exporter() -> &'static InMemorySpanExporter {
    static EXPORTER: OnceLock<InMemorySpanExporter> = OnceLock::new();
    EXPORTER.get_or_init(|| {
        let exporter = InMemorySpanExporter::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exporter.clone())
            .build();
        let tracer = provider.tracer("amqp-rpc-tests");
        let subscriber =
            tracing_subscriber::registry().with(tracing_opentelemetry::layer().with_tracer(tracer));
        tracing::subscriber::set_global_default(subscriber).expect("one global subscriber");
        opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
            Box::new(TraceContextPropagator::new()),
            Box::new(BaggagePropagator::new()),
        ]));
        exporter
    })
}

/// A root span of the test's own, and its trace id.
pub(crate) fn root(name: &'static str) -> (tracing::Span, TraceId) {
    exporter();
    let span = tracing::info_span!("test.root", otel.name = name);
    let trace = span.context().span().span_context().trace_id();
    assert_ne!(
        trace,
        TraceId::INVALID,
        "the OpenTelemetry layer is installed"
    );
    (span, trace)
}

/// The finished spans of `trace`, once there are at least `count` (failing after 10 s).
pub(crate) async fn spans_of(trace: TraceId, count: usize) -> Vec<SpanData> {
    let deadline = tokio::time::Instant::now() + ANSWER;
    loop {
        let spans: Vec<SpanData> = exporter()
            .get_finished_spans()
            .expect("finished spans")
            .into_iter()
            .filter(|span| span.span_context.trace_id() == trace)
            .collect();
        if spans.len() >= count || tokio::time::Instant::now() > deadline {
            let names: Vec<_> = spans.iter().map(|s| s.name.to_string()).collect();
            assert!(spans.len() >= count, "spans of the trace: {names:?}");
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The span named `name`.
pub(crate) fn named<'a>(spans: &'a [SpanData], name: &str) -> &'a SpanData {
    let names: Vec<_> = spans.iter().map(|s| s.name.to_string()).collect();
    spans
        .iter()
        .find(|span| span.name == name)
        .unwrap_or_else(|| panic!("no span {name} among {names:?}"))
}

/// An attribute's value as text.
pub(crate) fn attr(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

fn span_id(span: &SpanData) -> SpanId {
    span.span_context.span_id()
}

/// `add` answers 3 (in a span of its own) and keeps the trace context it got; `fail` raises
/// a ValueError; `forward` calls `add` on the topic in its `to` argument, with its own context.
struct Traced {
    seen: Arc<Mutex<Vec<Context>>>,
    transport: Transport,
    namespace: Option<&'static str>,
}

#[async_trait]
impl Endpoint for Traced {
    fn namespace(&self) -> Option<&str> {
        self.namespace
    }

    fn has_method(&self, method: &str) -> bool {
        matches!(method, "add" | "fail" | "forward" | "note")
    }

    async fn dispatch(
        &self,
        ctx: Context,
        method: &str,
        args: Map<String, Value>,
    ) -> Result<Returned, RemoteError> {
        self.seen.lock().unwrap().push(ctx.clone());
        match method {
            "fail" => Err(RemoteError::builtin("ValueError", "no")),
            "forward" => {
                let to = args["to"].as_str().unwrap_or_default();
                let client = RpcClient::new(&self.transport, Target::new(to)).with_timeout(ANSWER);
                client
                    .call::<Value>(&ctx, "add", json!({}))
                    .await
                    .map(Returned::from)
                    .map_err(|e| RemoteError::builtin("RuntimeError", e.to_string()))
            }
            _ => {
                async { tokio::task::yield_now().await }
                    .instrument(tracing::info_span!("inside"))
                    .await;
                Ok(Returned::from(json!(3)))
            }
        }
    }
}

async fn traced_server(
    transport: &Transport,
    topic: &str,
) -> (RpcServer, Arc<Mutex<Vec<Context>>>) {
    served(transport, topic, None).await
}

async fn served(
    transport: &Transport,
    topic: &str,
    namespace: Option<&'static str>,
) -> (RpcServer, Arc<Mutex<Vec<Context>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let server = RpcServer::builder(transport, Target::server(topic, "s1"))
        .endpoint(Traced {
            seen: Arc::clone(&seen),
            transport: transport.clone(),
            namespace,
        })
        .build()
        .unwrap();
    server.start().await.unwrap();
    (server, seen)
}

#[tokio::test]
async fn a_call_is_one_trace_from_the_caller_through_the_server() {
    let transport = Transport::memory();
    let topic = unique("calc");
    let (server, seen) = served(&transport, &topic, Some("math")).await;
    let client =
        RpcClient::new(&transport, Target::new(&topic).with_namespace("math")).with_timeout(ANSWER);
    let (root, trace) = root("caller");
    let ctx = Context::new().with_request_id("req-1");
    let sum: i64 = async { client.call(&ctx, "add", json!({})).await }
        .instrument(root.clone())
        .await
        .unwrap();
    assert_eq!(sum, 3);
    drop(root);
    let spans = spans_of(trace, 4).await;
    let caller = named(&spans, "caller");
    let call = named(&spans, &format!("{topic}.add"));
    let request = named(&spans, "add receive");
    let inside = named(&spans, "inside");

    // oslo's producer span, under the caller's span.
    assert_eq!(call.span_kind, SpanKind::Producer);
    assert_eq!(call.parent_span_id, span_id(caller));
    for (key, value) in [
        ("messaging.system", "rabbitmq"),
        ("messaging.operation", "call"),
        ("messaging.destination.name", topic.as_str()),
        ("rpc.method", "add"),
        ("rpc.service", "math"),
        ("outcome", "ok"),
    ] {
        assert_eq!(attr(call, key).as_deref(), Some(value), "{key}");
    }
    let msg_id = attr(call, "msg_id").expect("the call's msg_id");
    // oslo's consumer span, the producer's child across the wire.
    assert_eq!(request.span_kind, SpanKind::Consumer);
    assert_eq!(request.parent_span_id, span_id(call));
    assert!(request.parent_span_is_remote);
    for (key, value) in [
        ("messaging.system", "rabbitmq"),
        ("messaging.operation", "receive"),
        ("messaging.message.id", msg_id.as_str()),
        ("rpc.method", "add"),
        ("openstack.request_id", "req-1"),
        ("request_id", "req-1"),
        ("namespace", "math"),
        ("outcome", "ok"),
    ] {
        assert_eq!(attr(request, key).as_deref(), Some(value), "{key}");
    }
    // The handler's own spans are the request's children.
    assert_eq!(inside.parent_span_id, span_id(request));
    for span in [call, request] {
        assert_eq!(span.status, Status::Unset, "{}", span.name);
    }
    // On the wire: W3C traceparent in the context, as `_context_traceparent`; the caller's
    // own context is left as it was.
    let got = seen.lock().unwrap()[0].clone();
    assert_eq!(
        got.get_str("traceparent"),
        Some(format!("00-{trace}-{}-01", span_id(call)).as_str())
    );
    assert_eq!(ctx.get("traceparent"), None);
    server.stop().await;
}

#[tokio::test]
async fn failures_and_timeouts_mark_both_spans() {
    let transport = Transport::memory();
    let topic = unique("failing");
    let (server, _) = traced_server(&transport, &topic).await;
    let client = RpcClient::new(&transport, Target::new(&topic)).with_timeout(ANSWER);
    let (root, trace) = root("caller");
    // The call's span is made when `call` is called: in the caller's span.
    let failed = async {
        client
            .call::<Value>(&Context::new(), "fail", json!({}))
            .await
    }
    .instrument(root.clone())
    .await;
    assert!(failed.unwrap_err().is_remote());
    let nobody = RpcClient::new(&transport, Target::new(unique("nobody")))
        .with_timeout(Duration::from_millis(50));
    let lost = async {
        nobody
            .call::<Value>(&Context::new(), "add", json!({}))
            .await
    }
    .instrument(root.clone())
    .await;
    assert!(lost.unwrap_err().is_timeout());
    drop(root);
    let spans = spans_of(trace, 4).await;
    let call = named(&spans, &format!("{topic}.fail"));
    let request = named(&spans, "fail receive");
    for span in [call, request] {
        assert!(matches!(span.status, Status::Error { .. }), "{}", span.name);
        assert_eq!(attr(span, "outcome").as_deref(), Some("error"));
        assert_eq!(attr(span, "exception").as_deref(), Some("ValueError"));
    }
    let timed_out = spans
        .iter()
        .find(|span| span.name.ends_with(".add"))
        .expect("the lost call's span");
    assert!(matches!(timed_out.status, Status::Error { .. }));
    assert_eq!(attr(timed_out, "outcome").as_deref(), Some("timeout"));
    assert_eq!(
        attr(timed_out, "exception").as_deref(),
        Some("MessagingTimeout")
    );
    server.stop().await;
}

#[tokio::test]
async fn casts_and_fanout_casts_carry_the_trace() {
    let transport = Transport::memory();
    let topic = unique("casts");
    let (server, seen) = traced_server(&transport, &topic).await;
    let client = RpcClient::new(&transport, Target::new(&topic)).with_timeout(ANSWER);
    let (root, trace) = root("caster");
    async {
        client
            .cast(&Context::new(), "note", json!({}))
            .await
            .unwrap();
        client
            .prepare()
            .with_fanout(true)
            .cast(&Context::new(), "note", json!({}))
            .await
            .unwrap();
    }
    .instrument(root.clone())
    .await;
    drop(root);
    let spans = spans_of(trace, 5).await;
    let casts: Vec<_> = spans
        .iter()
        .filter(|span| span.name == format!("{topic}.note"))
        .collect();
    let requests: Vec<_> = spans
        .iter()
        .filter(|span| span.name == "note receive")
        .collect();
    assert_eq!((casts.len(), requests.len()), (2, 2));
    for cast in &casts {
        assert_eq!(cast.span_kind, SpanKind::Producer);
        assert_eq!(attr(cast, "messaging.operation").as_deref(), Some("cast"));
        assert_eq!(attr(cast, "outcome").as_deref(), Some("ok"));
        // Each cast's request is its child, with no msg_id (a cast has none).
        let request = requests
            .iter()
            .find(|r| r.parent_span_id == span_id(cast))
            .expect("the cast's request");
        assert_eq!(attr(request, "messaging.message.id"), None);
    }
    assert_eq!(
        casts
            .iter()
            .filter(|c| attr(c, "fanout").as_deref() == Some("true"))
            .count(),
        1
    );
    assert_eq!(seen.lock().unwrap().len(), 2);
    server.stop().await;
}

#[tokio::test]
async fn a_forwarded_context_carries_the_current_span_not_the_one_it_came_with() {
    let transport = Transport::memory();
    let (front, back) = (unique("front"), unique("back"));
    let (front_server, _) = traced_server(&transport, &front).await;
    let (back_server, back_seen) = traced_server(&transport, &back).await;
    let client = RpcClient::new(&transport, Target::new(&front)).with_timeout(ANSWER);
    let (root, trace) = root("caller");
    let got: i64 = async {
        client
            .call(&Context::new(), "forward", json!({"to": back}))
            .await
    }
    .instrument(root.clone())
    .await
    .unwrap();
    assert_eq!(got, 3);
    drop(root);
    // caller, front call, forward receive, back call, add receive, inside.
    let spans = spans_of(trace, 6).await;
    let forward = named(&spans, "forward receive");
    let nested = named(&spans, &format!("{back}.add"));
    let add = named(&spans, "add receive");
    assert_eq!(nested.parent_span_id, span_id(forward));
    assert_eq!(add.parent_span_id, span_id(nested));
    let sent = back_seen.lock().unwrap()[0].clone();
    assert_eq!(
        sent.get_str("traceparent"),
        Some(format!("00-{trace}-{}-01", span_id(nested)).as_str())
    );
    front_server.stop().await;
    back_server.stop().await;
}

/// Runs `work` on a thread of its own whose subscriber has no OpenTelemetry layer: a sender
/// that traces nothing.
fn untraced<T: Send + 'static>(
    work: impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = T> + Send>> + Send + 'static,
) -> T {
    std::thread::spawn(move || {
        let _plain = tracing::subscriber::set_default(tracing_subscriber::registry());
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(work())
    })
    .join()
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untraced_senders_send_no_trace_context_and_hostile_ones_are_ignored() {
    exporter();
    let transport = Transport::memory();
    let topic = unique("hostile");
    let (server, seen) = traced_server(&transport, &topic).await;
    let hostile = [
        json!("garbage"),
        json!("00-zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz-zzzzzzzzzzzzzzzz-01"),
        json!("00-00000000000000000000000000000000-0000000000000000-01"),
        json!("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        json!("x".repeat(100_000)),
        json!(42),
        json!({"nested": ["traceparent"]}),
    ];
    let contexts: Vec<Context> = std::iter::once(Context::new())
        .chain(hostile.iter().map(|value| {
            Context::new()
                .with("traceparent", value.clone())
                .with("tracestate", value.clone())
                .with("baggage", value.clone())
        }))
        .collect();
    let sent = contexts.len();
    let answers = untraced({
        let transport = transport.clone();
        let topic = topic.clone();
        move || {
            Box::pin(async move {
                let client = RpcClient::new(&transport, Target::new(&topic)).with_timeout(ANSWER);
                let mut answers = Vec::new();
                for ctx in &contexts {
                    answers.push(client.call::<i64>(ctx, "add", json!({})).await.ok());
                }
                answers
            })
        }
    });
    // Every request is answered.
    assert_eq!(answers, vec![Some(3); sent]);
    let seen = seen.lock().unwrap().clone();
    // Nothing was added to an untraced sender's context.
    for key in ["traceparent", "tracestate", "baggage"] {
        assert_eq!(seen[0].get(key), None, "{key}");
    }
    // Each request's span is a root of its own trace: nothing was taken for a parent.
    let deadline = tokio::time::Instant::now() + ANSWER;
    loop {
        let roots: Vec<SpanData> = exporter()
            .get_finished_spans()
            .unwrap()
            .into_iter()
            .filter(|span| {
                span.name == "add receive" && attr(span, "topic").as_deref() == Some(&topic)
            })
            .collect();
        if roots.len() == sent {
            assert!(
                roots
                    .iter()
                    .all(|span| span.parent_span_id == SpanId::INVALID)
            );
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} spans",
            roots.len()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.stop().await;
}

/// Keeps the contexts of the notifications it gets.
struct Keep(Arc<Mutex<Vec<Context>>>);

#[async_trait]
impl NotificationEndpoint for Keep {
    fn priorities(&self) -> Priorities {
        Priorities::all()
    }

    async fn handle(&self, incoming: &Incoming) -> Result<NotificationResult, HandlerError> {
        self.0.lock().unwrap().push(incoming.context.clone());
        Ok(NotificationResult::Handled)
    }
}

#[tokio::test]
async fn notifications_carry_the_trace_to_the_listener() {
    let transport = Transport::memory();
    let topic = unique("notifications");
    let kept = Arc::new(Mutex::new(Vec::new()));
    let listener = NotificationListener::builder(&transport)
        .target("nova", &topic)
        .endpoint(Keep(Arc::clone(&kept)))
        .build()
        .unwrap();
    listener.start().await.unwrap();
    let notifier = Notifier::new(&transport, "compute.host1")
        .with_exchange("nova")
        .with_topics([&topic]);
    let (root, trace) = root("notifier");
    async {
        let payload = json!({"id": 1});
        notifier
            .notify(&Context::new(), Priority::Info, "instance.create", &payload)
            .await
    }
    .instrument(root.clone())
    .await
    .unwrap();
    drop(root);
    let spans = spans_of(trace, 3).await;
    let sent = named(&spans, "instance.create send");
    let received = named(&spans, "instance.create receive");
    assert_eq!(sent.span_kind, SpanKind::Producer);
    assert_eq!(received.span_kind, SpanKind::Consumer);
    assert_eq!(received.parent_span_id, span_id(sent));
    assert_eq!(attr(received, "outcome").as_deref(), Some("ok"));
    assert_eq!(
        attr(received, "publisher_id").as_deref(),
        Some("compute.host1")
    );
    assert_eq!(
        kept.lock().unwrap()[0].get_str("traceparent"),
        Some(format!("00-{trace}-{}-01", span_id(sent)).as_str())
    );
    listener.stop().await;
}
