//! Python's own JSON against the real oslo.messaging 18.3.1, both ways: `NaN`, `Infinity`,
//! `-Infinity`, lone surrogates and integers beyond 64 bits, which Python's `json` writes and
//! strict JSON has not; and Python's rule for missing arguments. `scripts/test.sh` prepares the
//! broker vhost and the virtualenv; see `tests/interop/`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use amqp_rpc::{Context, RpcClient, RpcError, RpcServer, Target, Transport, rpc_endpoint};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::common;
use common::peer::PythonPeer;
use common::{test_broker, unique};

#[rpc_endpoint]
trait Values {
    async fn add(&self, a: f64, b: f64) -> f64;
    async fn big(&self, n: u128) -> u128;
    async fn text(&self, s: String) -> String;
    async fn same(&self, v: Value) -> Value;
    async fn maybe(&self, x: Option<i64>) -> Option<i64>;
    async fn context(&self, ctx: &Context) -> Context;
}

struct Service;

impl Values for Service {
    async fn add(&self, a: f64, b: f64) -> f64 {
        a + b
    }
    async fn big(&self, n: u128) -> u128 {
        n
    }
    async fn text(&self, s: String) -> String {
        s
    }
    async fn same(&self, v: Value) -> Value {
        v
    }
    async fn maybe(&self, x: Option<i64>) -> Option<i64> {
        x
    }
    async fn context(&self, ctx: &Context) -> Context {
        ctx.clone()
    }
}

/// A Python call of `method` with `args_json` (read by Python's json), and its result as
/// Python's `json.dumps` writes it, or its error object.
async fn python_call(
    py: &PythonPeer,
    topic: &str,
    method: &str,
    args_json: &str,
    ctxt_json: &str,
) -> Result<String, Value> {
    py.request(json!({
        "cmd": "call", "topic": topic, "method": method, "args_json": args_json,
        "ctxt_json": ctxt_json, "result_json": true, "timeout": 20,
    }))
    .await
    .map(|ok| ok.as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn a_python_caller_gets_its_own_json_values_served_or_refused_at_once() {
    let url = test_broker!();
    let transport = Transport::from_url(&url).await.unwrap();
    let topic = unique("pyjson");
    let server = RpcServer::builder(&transport, Target::server(&topic, "rust"))
        .endpoint(ValuesEndpoint::new(Service))
        .build()
        .unwrap();
    server.start().await.unwrap();
    let py = PythonPeer::start(&url).await;
    let call =
        |method: &'static str, args: &'static str| python_call(&py, &topic, method, args, "{}");

    // Values a Rust type holds are served, and written back as Python reads them.
    assert_eq!(call("add", r#"{"a": NaN, "b": 1}"#).await.unwrap(), "NaN");
    assert_eq!(
        call("add", r#"{"a": 1e308, "b": 1e308}"#).await.unwrap(),
        "Infinity"
    );
    assert_eq!(
        call("add", r#"{"a": -Infinity, "b": 1}"#).await.unwrap(),
        "-Infinity"
    );
    assert_eq!(
        call("big", r#"{"n": 340282366920938463463374607431768211455}"#)
            .await
            .unwrap(),
        "340282366920938463463374607431768211455"
    );
    assert_eq!(
        call("text", r#"{"s": "\ud83d\ude00"}"#).await.unwrap(),
        r#""\ud83d\ude00""#
    );
    assert_eq!(call("maybe", "{}").await.unwrap(), "null");

    // Values no parameter type holds: Python's own ValueError, at once.
    let started = std::time::Instant::now();
    for (method, args, fragment) in [
        (
            "text",
            r#"{"s": "a\ud800"}"#,
            r#"the string "a\ud800" cannot be held by a string"#,
        ),
        ("same", r#"{"v": [NaN]}"#, "NaN cannot be held"),
        (
            "big",
            r#"{"n": 340282366920938463463374607431768211456}"#,
            "cannot be held by a u128",
        ),
    ] {
        let error = call(method, args).await.unwrap_err();
        assert_eq!(
            (&error["class"], &error["module"]),
            (&json!("ValueError"), &json!("builtins")),
            "{method} {args}: {error}"
        );
        let message = error["message"].as_str().unwrap();
        assert!(message.contains(fragment), "{message}");
    }
    // A missing argument is Python's TypeError naming it, whatever the parameter's type.
    let error = call("same", "{}").await.unwrap_err();
    assert_eq!(error["class"], "TypeError");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .starts_with("same() missing 1 required positional argument: 'v'"),
        "{error}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "no call waited out its timeout"
    );

    // A context Python wrote with such values comes back to Python intact.
    let echoed = python_call(
        &py,
        &topic,
        "context",
        "{}",
        r#"{"nan": NaN, "big": 18446744073709551616, "odd": "x\udc80"}"#,
    )
    .await
    .unwrap();
    for written in [
        r#""nan": NaN"#,
        r#""big": 18446744073709551616"#,
        r#""odd": "x\udc80""#,
    ] {
        assert!(echoed.contains(written), "{written} not in {echoed}");
    }
    py.quit().await;
    server.stop().await;
    transport.close().await;
}

#[derive(Debug, Deserialize)]
struct PythonValues {
    nan: f64,
    inf: f64,
    ninf: f64,
    big: u128,
    neg_big: i128,
}

#[derive(Serialize)]
struct RustValues {
    a: f64,
    b: f64,
    c: u128,
    d: i128,
    e: f32,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn a_rust_caller_reads_python_values_and_sends_its_own_as_python_reads_them() {
    let url = test_broker!();
    let transport = Transport::from_url(&url).await.unwrap();
    let topic = unique("rsjson");
    let py = PythonPeer::start(&url).await;
    py.serve(&topic, "p1").await;
    let client = RpcClient::new(&transport, Target::new(topic.clone()))
        .with_timeout(Duration::from_secs(20));
    let ctx = Context::new();

    let values: PythonValues = client.call(&ctx, "python_values", json!({})).await.unwrap();
    assert!(values.nan.is_nan());
    assert_eq!(
        (values.inf, values.ninf),
        (f64::INFINITY, f64::NEG_INFINITY)
    );
    assert_eq!((values.big, values.neg_big), (1 << 64, -(1 << 70)));
    // The lone surrogate no Rust string holds: a typed decode error at once, not a timeout.
    let err = client
        .call::<Value>(&ctx, "python_values", json!({}))
        .await
        .unwrap_err();
    assert!(matches!(err, RpcError::Decode { .. }), "{err:?}");

    let described: Value = client
        .call(
            &Context::new().with("n", 7),
            "describe",
            RustValues {
                a: f64::NAN,
                b: f64::NEG_INFINITY,
                c: u128::MAX,
                d: i128::MIN,
                e: f32::INFINITY,
            },
        )
        .await
        .unwrap();
    // serde_json alone would write the NaN and infinities as null (Python: None).
    assert_eq!(
        described["args"],
        json!({
            "a": "nan", "b": "-inf", "c": u128::MAX.to_string(), "d": i128::MIN.to_string(),
            "e": "inf",
        })
    );
    assert_eq!(described["ctxt"]["n"], "7");
    py.quit().await;
    transport.close().await;
}
