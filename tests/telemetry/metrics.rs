//! The `metrics` feature: oslo.metrics' counters and histograms on clients and servers, as a
//! `metrics` recorder receives them.

use std::collections::BTreeMap;
use std::time::Duration;

use amqp_rpc::{
    Context, Endpoint, RemoteError, Returned, RpcClient, RpcServer, Target, Transport, async_trait,
};
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use serde_json::{Map, Value, json};

use crate::{ANSWER, unique};

/// `add` answers, `fail` raises a ValueError.
struct Service;

#[async_trait]
impl Endpoint for Service {
    fn has_method(&self, method: &str) -> bool {
        matches!(method, "add" | "fail")
    }

    async fn dispatch(
        &self,
        _: Context,
        method: &str,
        _: Map<String, Value>,
    ) -> Result<Returned, RemoteError> {
        match method {
            "fail" => Err(RemoteError::builtin("ValueError", "no")),
            _ => Ok(Returned::from(json!(3))),
        }
    }
}

/// A metric as `name{label=value,...}`, labels sorted.
fn key(name: &str, labels: &[(&str, &str)]) -> String {
    let labels: BTreeMap<_, _> = labels.iter().copied().collect();
    let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!("{name}{{{}}}", labels.join(","))
}

// Current-thread runtime: the recorder is this thread's, and every task of the test (client,
// server, in-memory broker) runs here.
#[tokio::test]
async fn clients_and_servers_count_and_time_each_method_under_oslo_names() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let _recording = metrics::set_default_local_recorder(&recorder);
    let transport = Transport::memory();
    let topic = unique("metered");
    let server = RpcServer::builder(&transport, Target::server(&topic, "s1"))
        .endpoint(Service)
        .build()
        .unwrap();
    server.start().await.unwrap();
    let client = RpcClient::new(&transport, Target::new(&topic)).with_timeout(ANSWER);
    let ctx = Context::new();
    for _ in 0..3 {
        let _: i64 = client.call(&ctx, "add", json!({})).await.unwrap();
    }
    assert!(client.call::<Value>(&ctx, "fail", json!({})).await.is_err());
    client.cast(&ctx, "add", json!({})).await.unwrap();
    let nobody = unique("nobody");
    let lost =
        RpcClient::new(&transport, Target::new(&nobody)).with_timeout(Duration::from_millis(20));
    assert!(lost.call::<Value>(&ctx, "add", json!({})).await.is_err());
    // The cast's request ends on the server after the cast returned.
    let deadline = tokio::time::Instant::now() + ANSWER;
    let values = loop {
        let values: BTreeMap<String, DebugValue> = snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(composite, _, _, value)| {
                let key = composite.key();
                let labels: Vec<(&str, &str)> =
                    key.labels().map(|l| (l.key(), l.value())).collect();
                (self::key(key.name(), &labels), value)
            })
            .collect();
        let casts_ended = key(
            "oslo_messaging_rpc_server_invocation_end_total",
            &[
                ("topic", &topic),
                ("server", "s1"),
                ("method", "add"),
                ("version", "1.0"),
            ],
        );
        if values.get(&casts_ended) == Some(&DebugValue::Counter(4)) {
            break values;
        }
        assert!(tokio::time::Instant::now() < deadline, "{values:#?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let calls = |method: &'static str| {
        vec![
            ("call_type", "call"),
            ("topic", topic.as_str()),
            ("method", method),
            ("fanout", "false"),
            ("timeout", "10"),
        ]
    };
    let counter = |name: &str, labels: &[(&str, &str)]| match values.get(&key(name, labels)) {
        Some(DebugValue::Counter(n)) => *n,
        other => panic!("{} is {other:?} in {values:#?}", key(name, labels)),
    };
    let timings = |name: &str, labels: &[(&str, &str)]| match values.get(&key(name, labels)) {
        Some(DebugValue::Histogram(seconds)) => seconds.len(),
        other => panic!("{} is {other:?}", key(name, labels)),
    };
    // Client: every start, the successes' ends and times, the failures by class.
    let client_start = "oslo_messaging_rpc_client_invocation_start_total";
    assert_eq!(counter(client_start, &calls("add")), 3);
    assert_eq!(counter(client_start, &calls("fail")), 1);
    assert_eq!(
        counter(
            "oslo_messaging_rpc_client_invocation_end_total",
            &calls("add")
        ),
        3
    );
    assert_eq!(
        timings(
            "oslo_messaging_rpc_client_processing_seconds",
            &calls("add")
        ),
        3
    );
    let mut failed = calls("fail");
    failed.push(("exception", "ValueError"));
    assert_eq!(
        counter("oslo_messaging_rpc_client_exception_total", &failed),
        1
    );
    let cast = [
        ("call_type", "cast"),
        ("topic", topic.as_str()),
        ("method", "add"),
        ("fanout", "false"),
    ];
    assert_eq!(counter(client_start, &cast), 1);
    assert_eq!(
        counter("oslo_messaging_rpc_client_invocation_end_total", &cast),
        1
    );
    let timed_out = [
        ("call_type", "call"),
        ("topic", nobody.as_str()),
        ("method", "add"),
        ("fanout", "false"),
        ("timeout", "0.02"),
        ("exception", "MessagingTimeout"),
    ];
    assert_eq!(
        counter("oslo_messaging_rpc_client_exception_total", &timed_out),
        1
    );
    // Server: calls and the cast alike.
    let served = |method: &'static str| {
        vec![
            ("topic", topic.as_str()),
            ("server", "s1"),
            ("method", method),
            ("version", "1.0"),
        ]
    };
    assert_eq!(
        counter(
            "oslo_messaging_rpc_server_invocation_start_total",
            &served("add")
        ),
        4
    );
    assert_eq!(
        timings(
            "oslo_messaging_rpc_server_processing_seconds",
            &served("add")
        ),
        4
    );
    let mut raised = served("fail");
    raised.push(("exception", "ValueError"));
    assert_eq!(
        counter("oslo_messaging_rpc_server_exception_total", &raised),
        1
    );
    assert_eq!(
        values.get(&key(
            "oslo_messaging_rpc_server_invocation_end_total",
            &served("fail")
        )),
        None
    );
    server.stop().await;
}
