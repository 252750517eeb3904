//! The `tracing` spans of calls, casts, requests and notifications, and, with the
//! `opentelemetry` feature, the trace context they carry across the wire.
//!
//! Spans are at `INFO`, under the target `amqp_rpc::telemetry`; a span costs nothing but a
//! level check when no subscriber wants it. Their outcome (`outcome`: `ok`, `error` or
//! `timeout`; `exception`: the exception's class) is recorded when they end, and
//! `otel.status_code` is `error` for a failure, so that an OpenTelemetry layer marks it.

use tracing::Span;
use tracing::field::Empty;

use crate::context::Context;
use crate::error::{RemoteError, RpcError};
use crate::target::Target;
use crate::version::Version;
use crate::wire::Id;

/// The span of a call from a client, around its encoding, sending and wait.
pub(crate) fn call_span(
    target: &Target,
    method: &str,
    version: Option<&Version>,
    msg_id: Id,
) -> Span {
    let span = tracing::info_span!(
        "rpc.call",
        otel.name = Empty,
        otel.kind = "producer",
        otel.status_code = Empty,
        topic = target.topic(),
        server = target.server_name(),
        namespace = target.namespace(),
        version = version.map(display),
        method,
        msg_id = %msg_id,
        outcome = Empty,
        exception = Empty,
    );
    #[cfg(feature = "opentelemetry")]
    otel::producer(&span, target, method, "call");
    span
}

/// The span of a cast (fanout or not) from a client, until the broker confirmed it.
pub(crate) fn cast_span(target: &Target, method: &str, version: Option<&Version>) -> Span {
    let span = tracing::info_span!(
        "rpc.cast",
        otel.name = Empty,
        otel.kind = "producer",
        otel.status_code = Empty,
        topic = target.topic(),
        server = target.server_name(),
        fanout = target.fanout(),
        namespace = target.namespace(),
        version = version.map(display),
        method,
        outcome = Empty,
        exception = Empty,
    );
    #[cfg(feature = "opentelemetry")]
    otel::producer(&span, target, method, "cast");
    span
}

/// Records how a client's call or cast ended on its span.
pub(crate) fn record_client(span: &Span, error: Option<&RpcError>) {
    match error {
        None => record_outcome(span, "ok"),
        Some(error) => record_failure(span, error),
    }
}

/// Records a client's failure on its span.
pub(crate) fn record_failure(span: &Span, error: &RpcError) {
    let outcome = if error.is_timeout() {
        "timeout"
    } else {
        "error"
    };
    record_error(span, outcome, error.class());
}

/// Records a failure on a span: its outcome, the exception's class, and the error status.
fn record_error(span: &Span, outcome: &'static str, class: &str) {
    if span.is_disabled() {
        return;
    }
    span.record("outcome", outcome);
    span.record("exception", class);
    span.record("otel.status_code", "error");
}

/// What a server's span shows of a request.
pub(crate) struct RequestFields<'a> {
    pub(crate) server: &'a Target,
    pub(crate) method: Option<&'a str>,
    pub(crate) namespace: Option<&'a str>,
    pub(crate) version: Option<&'a Version>,
    pub(crate) msg_id: Option<&'a str>,
    pub(crate) context: &'a Context,
}

/// The span of a request on a server, around its method and reply; with the `opentelemetry`
/// feature its parent is the sender's span, from the request's context.
pub(crate) fn request_span(request: &RequestFields<'_>) -> Span {
    let span = tracing::info_span!(
        "rpc.request",
        otel.name = Empty,
        otel.kind = "consumer",
        otel.status_code = Empty,
        topic = request.server.topic(),
        server = request.server.server_name(),
        namespace = request.namespace,
        version = request.version.map(display),
        method = request.method,
        msg_id = request.msg_id,
        request_id = request.context.request_id(),
        global_request_id = request.context.global_request_id(),
        outcome = Empty,
        exception = Empty,
    );
    #[cfg(feature = "opentelemetry")]
    otel::consumer(&span, request);
    span
}

/// Records how a request ended on its span.
pub(crate) fn record_request(span: &Span, failure: Option<&RemoteError>) {
    match failure {
        None => record_outcome(span, "ok"),
        Some(failure) => record_error(span, "error", failure.class()),
    }
}

/// The span of a notification handed to a listener's endpoints; with the `opentelemetry`
/// feature its parent is the notifier's span, from the notification's context.
pub(crate) fn notification_span(
    event_type: Option<&str>,
    priority: &str,
    publisher_id: Option<&str>,
    message_id: Option<&str>,
    context: &Context,
) -> Span {
    let span = tracing::info_span!(
        "rpc.notification",
        otel.name = Empty,
        otel.kind = "consumer",
        event_type,
        priority,
        publisher_id,
        message_id,
        request_id = context.request_id(),
        outcome = Empty,
    );
    #[cfg(feature = "opentelemetry")]
    otel::adopt(&span, context, || {
        format!("{} receive", event_type.unwrap_or("unknown"))
    });
    span
}

/// The span of a notification sent.
pub(crate) fn notify_span(event_type: &str, priority: &str) -> Span {
    let span = tracing::info_span!(
        "rpc.notify",
        otel.name = Empty,
        otel.kind = "producer",
        otel.status_code = Empty,
        event_type,
        priority,
        outcome = Empty,
        exception = Empty,
    );
    #[cfg(feature = "opentelemetry")]
    if otel::recorded(&span) {
        span.record("otel.name", format!("{event_type} send"));
    }
    span
}

/// Records an outcome that is no failure on a span: `ok`, or `requeue` for a notification
/// sent back.
pub(crate) fn record_outcome(span: &Span, outcome: &'static str) {
    if !span.is_disabled() {
        span.record("outcome", outcome);
    }
}

/// Whether the current span has a trace context to send (an OpenTelemetry layer is
/// installed and the span is sampled or recorded).
#[cfg(feature = "opentelemetry")]
pub(crate) fn propagating() -> bool {
    otel::current_is_valid()
}

#[cfg(not(feature = "opentelemetry"))]
pub(crate) fn propagating() -> bool {
    false
}

/// `ctx` with the current span's trace context, when there is one to send.
pub(crate) fn traced(ctx: &Context) -> Option<Context> {
    propagating().then(|| {
        let mut ctx = ctx.clone();
        inject(&mut ctx);
        ctx
    })
}

/// Writes the current span's trace context into `ctx` (nothing without the `opentelemetry`
/// feature). Only worth calling when [`propagating`].
pub(crate) fn inject(ctx: &mut Context) {
    #[cfg(feature = "opentelemetry")]
    otel::inject(ctx);
    #[cfg(not(feature = "opentelemetry"))]
    let _ = ctx;
}

#[cfg(feature = "opentelemetry")]
mod otel {
    //! W3C trace context in oslo.messaging's request context, as oslo.messaging 18.3's
    //! `_tracing` sends and reads it: `propagate.inject(msg_ctxt)` before the context is
    //! flattened, so the keys travel as `_context_traceparent`, `_context_tracestate` and
    //! `_context_baggage`; the span attributes are oslo's too.

    use opentelemetry::propagation::{Extractor, Injector};
    use opentelemetry::trace::TraceContextExt;
    use tracing::Span;
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::RequestFields;
    use crate::context::Context;
    use crate::target::Target;

    struct Carrier<'a>(&'a mut Context);

    impl Injector for Carrier<'_> {
        fn set(&mut self, key: &str, value: String) {
            self.0.insert(key, value);
        }
    }

    struct Source<'a>(&'a Context);

    impl Extractor for Source<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get_str(key)
        }

        fn keys(&self) -> Vec<&str> {
            self.0.iter().map(|(key, _)| key.as_str()).collect()
        }
    }

    pub(super) fn current_is_valid() -> bool {
        let span = Span::current();
        recorded(&span) && span.context().span().span_context().is_valid()
    }

    /// Whether a subscriber records `span`. Not only `!is_disabled()`: once any subscriber
    /// has existed in the process (a scoped one, say), tracing may make spans against no
    /// subscriber at all, which are not disabled and go nowhere; naming and attributing
    /// them would allocate for nothing.
    pub(super) fn recorded(span: &Span) -> bool {
        !span.is_disabled()
            && span
                .with_subscriber(|(_, dispatch)| {
                    !dispatch.is::<tracing::subscriber::NoSubscriber>()
                })
                .unwrap_or(false)
    }

    /// Writes the current span's trace context into `ctx` with the global propagator.
    pub(crate) fn inject(ctx: &mut Context) {
        let current = Span::current().context();
        opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.inject_context(&current, &mut Carrier(ctx));
        });
    }

    /// Names a client's span and gives it oslo's attributes (`trace_send`).
    pub(super) fn producer(span: &Span, target: &Target, method: &str, operation: &'static str) {
        if !recorded(span) {
            return;
        }
        let topic = target.topic().unwrap_or_default();
        span.record("otel.name", format!("{topic}.{method}"));
        span.set_attribute("messaging.system", "rabbitmq");
        span.set_attribute("messaging.operation", operation);
        span.set_attribute("messaging.destination.name", topic.to_owned());
        span.set_attribute("rpc.method", method.to_owned());
        if let Some(namespace) = target.namespace() {
            span.set_attribute("rpc.service", namespace.to_owned());
        }
    }

    /// Makes a server's span the sender's child and gives it oslo's name and attributes
    /// (`trace_receive`); before the span is first entered, when OpenTelemetry starts it.
    pub(super) fn consumer(span: &Span, request: &RequestFields<'_>) {
        let method = request.method.unwrap_or("unknown");
        if !adopt(span, request.context, || format!("{method} receive")) {
            return;
        }
        span.set_attribute("messaging.system", "rabbitmq");
        span.set_attribute("messaging.operation", "receive");
        span.set_attribute("rpc.method", method.to_owned());
        if let Some(msg_id) = request.msg_id {
            span.set_attribute("messaging.message.id", msg_id.to_owned());
        }
        if let Some(request_id) = request.context.request_id() {
            span.set_attribute("openstack.request_id", request_id.to_owned());
        }
    }

    /// Names `span` and sets its parent from the trace context in `context`, if any; false
    /// when the span is off.
    pub(super) fn adopt(span: &Span, context: &Context, name: impl FnOnce() -> String) -> bool {
        if !recorded(span) {
            return false;
        }
        span.record("otel.name", name());
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&Source(context))
        });
        if parent.span().span_context().is_valid() {
            // Fails only without an OpenTelemetry layer, where there is nothing to link.
            let _ = span.set_parent(parent);
        }
        true
    }
}

#[cfg(all(test, feature = "opentelemetry"))]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    /// Once a subscriber has existed (here a scoped one, on another thread), tracing makes
    /// spans against no subscriber on threads without one: not disabled, but not recorded,
    /// and amqp-rpc must not spend on them.
    #[test]
    fn spans_nobody_records_are_not_named() {
        let target = Target::new("t");
        let scoped = target.clone();
        std::thread::spawn(move || {
            let subscriber = tracing_subscriber::fmt()
                .with_writer(std::io::sink)
                .finish();
            let _scoped = tracing::subscriber::set_default(subscriber);
            let _ = call_span(&scoped, "m", None, crate::wire::new_id());
        })
        .join()
        .expect("the scoped thread ran");
        let span = call_span(&target, "m", None, crate::wire::new_id());
        assert!(!otel::recorded(&span));
        assert!(!propagating());
    }
}
