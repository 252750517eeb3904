//! Interoperability with the real Python oslo.messaging 18.3.1 over the local RabbitMQ: Python
//! clients calling Rust servers, Rust clients calling Python servers, and mixed fleets.
//! `scripts/test.sh` prepares the broker vhost and the virtualenv; see `tests/interop/`.
// `echo` takes one argument per JSON type.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::too_many_arguments)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use amqp_rpc::{
    CallError, Context, RemoteException, RpcClient, RpcError, RpcServer, Target, Transport,
    rpc_client, rpc_endpoint,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::common;
use common::peer::PythonPeer;
use common::{test_broker, unique, until};

/// The Rust service Python calls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CalcError {
    DivisionByZero { dividend: f64 },
}

impl std::fmt::Display for CalcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalcError::DivisionByZero { dividend } => write!(f, "cannot divide {dividend} by zero"),
        }
    }
}

/// Errors that are Python exceptions: classes of `tests/interop/interop_errors.py`, which the
/// peer may import, a built-in one, and one of a module the peer does not allow.
#[derive(Debug, Clone, PartialEq, RemoteException)]
#[remote(module = "interop_errors")]
enum InstanceError {
    /// `interop_errors.InstanceNotFound(message=None, **kwargs)`, nova-style.
    #[remote(class = "InstanceNotFound")]
    NotFound { instance_id: String },
    /// `interop_errors.CustomError(message, code=None)`.
    #[remote(class = "CustomError")]
    Custom { code: i64 },
    /// `ValueError(reason)`.
    #[remote(module = "builtins", class = "ValueError")]
    Invalid(String),
    /// Not in the peer's `allowed_remote_exmods` (nor installed).
    #[remote(module = "nova.exception", class = "InstanceNotFound")]
    NovaNotFound { instance_id: String },
}

impl std::fmt::Display for InstanceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            InstanceError::NotFound { instance_id }
            | InstanceError::NovaNotFound { instance_id } => {
                write!(f, "Instance {instance_id} could not be found.")
            }
            InstanceError::Custom { code } => write!(f, "custom failure {code}"),
            InstanceError::Invalid(reason) => f.write_str(reason),
        }
    }
}

#[rpc_endpoint]
#[rpc_client]
trait Service {
    /// Returns its arguments.
    async fn echo(
        &self,
        a: Value,
        b: Value,
        c: Value,
        d: Value,
        e: Value,
        f: Value,
        g: Value,
    ) -> Value;
    /// The server's name.
    async fn whoami(&self) -> String;
    /// The request context as received.
    async fn context(&self, ctx: &Context) -> Context;
    /// Sleeps `seconds`.
    async fn sleep(&self, seconds: f64) -> f64;
    /// Counts a cast.
    #[rpc(cast)]
    async fn record(&self, line: String);
    /// Divides, refusing zero.
    async fn divide(&self, x: f64, y: f64) -> Result<f64, CalcError>;
    /// Fails with the error `instance_id` names.
    async fn find_instance(&self, instance_id: String) -> Result<String, InstanceError>;
}

#[rpc_endpoint(namespace = "calc", version = "1.3")]
#[rpc_client]
trait Calc {
    /// `x + y`.
    async fn add(&self, x: i64, y: i64) -> i64;
    /// `base ** exp`, since 1.3.
    #[rpc(since = "1.3")]
    async fn pow(&self, base: i64, exp: u32) -> i64;
}

struct Impl {
    name: String,
    recorded: Arc<AtomicUsize>,
}

impl Service for Impl {
    async fn echo(
        &self,
        a: Value,
        b: Value,
        c: Value,
        d: Value,
        e: Value,
        f: Value,
        g: Value,
    ) -> Value {
        json!({"a": a, "b": b, "c": c, "d": d, "e": e, "f": f, "g": g})
    }
    async fn whoami(&self) -> String {
        self.name.clone()
    }
    async fn context(&self, ctx: &Context) -> Context {
        ctx.clone()
    }
    async fn sleep(&self, seconds: f64) -> f64 {
        tokio::time::sleep(Duration::from_secs_f64(seconds)).await;
        seconds
    }
    async fn record(&self, _line: String) {
        self.recorded.fetch_add(1, Ordering::SeqCst);
    }
    async fn divide(&self, x: f64, y: f64) -> Result<f64, CalcError> {
        match y {
            0.0 => Err(CalcError::DivisionByZero { dividend: x }),
            _ => Ok(x / y),
        }
    }
    async fn find_instance(&self, instance_id: String) -> Result<String, InstanceError> {
        Err(match instance_id.as_str() {
            "" => InstanceError::Invalid("empty instance id".to_owned()),
            "custom" => InstanceError::Custom { code: 7 },
            "nova" => InstanceError::NovaNotFound { instance_id },
            _ => InstanceError::NotFound { instance_id },
        })
    }
}

impl Calc for Impl {
    async fn add(&self, x: i64, y: i64) -> i64 {
        x + y
    }
    async fn pow(&self, base: i64, exp: u32) -> i64 {
        base.pow(exp)
    }
}

/// A Rust server `name` on `topic` with both endpoints; returns its cast counter.
async fn rust_server(
    transport: &Transport,
    topic: &str,
    name: &str,
) -> (RpcServer, Arc<AtomicUsize>) {
    let recorded = Arc::new(AtomicUsize::new(0));
    let service = Impl {
        name: name.to_owned(),
        recorded: Arc::clone(&recorded),
    };
    let calc = Impl {
        name: name.to_owned(),
        recorded: Arc::clone(&recorded),
    };
    let server = RpcServer::builder(transport, Target::server(topic, name))
        .endpoint(ServiceEndpoint::new(service))
        .endpoint(CalcEndpoint::new(calc))
        .build()
        .unwrap();
    server.start().await.unwrap();
    (server, recorded)
}

/// Every JSON type, nested values, unicode and a 300 KiB string.
fn all_json_types() -> Map<String, Value> {
    let big: String = "x".repeat(300 * 1024);
    let Value::Object(args) = json!({
        "a": null, "b": true, "c": -42, "d": 3.25,
        "e": "héllo wörld ✓ 日本語 🚀",
        "f": [1, "two", [3.5, null], {"k": false}],
        "g": {"nested": {"deep": [1, 2, {"x": "y"}]}, "big": big},
    }) else {
        unreachable!()
    };
    args
}

// ---------------------------------------------------------------------------------------------
// Python client -> Rust server
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn python_client_calls_a_rust_server() {
    let url = test_broker!();
    let transport = Transport::from_url(&url).await.unwrap();
    let topic = unique("py2rs");
    let (s1, recorded1) = rust_server(&transport, &topic, "r1").await;
    let (s2, recorded2) = rust_server(&transport, &topic, "r2").await;
    let (s3, recorded3) = rust_server(&transport, &topic, "r3").await;
    let py = PythonPeer::start(&url).await;
    let call = |extra: Value| {
        let mut command =
            json!({"cmd": "call", "topic": topic, "ctxt": {}, "args": {}, "timeout": 20});
        for (k, v) in extra.as_object().unwrap() {
            command[k] = v.clone();
        }
        command
    };

    // Keyword arguments of every JSON type, including a 300 KiB string, round-trip exactly.
    let args = all_json_types();
    let echoed = py
        .request(call(json!({"method": "echo", "args": args})))
        .await
        .unwrap();
    assert_eq!(echoed, Value::Object(args), "echo of every JSON type");

    // To one named server.
    for _ in 0..3 {
        let who = py
            .request(call(json!({"method": "whoami", "server": "r2"})))
            .await;
        assert_eq!(who, Ok(json!("r2")));
    }

    // A cast reaches exactly one server; a fanout cast reaches all three.
    let cast = json!({"cmd": "cast", "topic": topic, "method": "record", "args": {"line": "one"}, "ctxt": {}});
    assert_eq!(py.request(cast).await, Ok(Value::Null));
    let total = || {
        [&recorded1, &recorded2, &recorded3]
            .iter()
            .map(|r| r.load(Ordering::SeqCst))
            .sum::<usize>()
    };
    until("the cast ran", Duration::from_secs(15), || total() == 1).await;
    let fanout = json!({"cmd": "cast", "topic": topic, "method": "record", "args": {"line": "all"}, "ctxt": {}, "fanout": true});
    assert_eq!(py.request(fanout).await, Ok(Value::Null));
    until(
        "the fanout ran on every server",
        Duration::from_secs(15),
        || total() == 4,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        total(),
        4,
        "one cast plus one fanout to each of three servers"
    );

    // Namespace and version: accepted, UnsupportedVersion, NoSuchMethod, as oslo's classes.
    let add = |version: &str| {
        call(
            json!({"method": "add", "namespace": "calc", "version": version, "args": {"x": 2, "y": 3}}),
        )
    };
    assert_eq!(py.request(add("1.2")).await, Ok(json!(5)));
    assert_eq!(py.request(add("1.3")).await, Ok(json!(5)));
    for too_new in ["1.4", "2.0"] {
        let err = py.request(add(too_new)).await.unwrap_err();
        assert_eq!(err["class"], "UnsupportedVersion_Remote", "{err}");
        assert_eq!(
            err["module"], "oslo_messaging.rpc.dispatcher_Remote",
            "{err}"
        );
        let message = err["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!(
                "Endpoint does not support RPC version {too_new}. Attempted method: add"
            )),
            "{message}"
        );
    }
    let err = py
        .request(call(
            json!({"method": "nope", "namespace": "calc", "version": "1.0"}),
        ))
        .await
        .unwrap_err();
    assert_eq!(err["class"], "NoSuchMethod_Remote", "{err}");
    assert!(
        err["message"]
            .as_str()
            .unwrap()
            .starts_with("Endpoint does not support RPC method nope")
    );

    // A Rust typed error: Python sees its class name and Display.
    let err = py
        .request(call(
            json!({"method": "divide", "args": {"x": 1.0, "y": 0.0}}),
        ))
        .await
        .unwrap_err();
    assert_eq!(err["class"], "RemoteError", "{err}");
    assert_eq!(err["exc_type"], "DivisionByZero", "{err}");
    assert_eq!(err["value"], "cannot divide 1 by zero", "{err}");

    // Context keys round-trip, with oslo's `client_timeout` added on receipt.
    let ctxt = json!({"user_id": "u1", "project_id": "p1", "roles": ["admin", "reader"], "request_id": "req-42", "nested": {"a": [1, 2]}});
    let seen = py
        .request(call(
            json!({"method": "context", "ctxt": ctxt, "call_monitor_timeout": 4}),
        ))
        .await
        .unwrap();
    let mut expected = ctxt.clone();
    expected["client_timeout"] = json!(4);
    assert_eq!(seen, expected);

    // A long call kept alive by call-monitor heartbeats, and a call that times out.
    let long = py
        .request(call(json!({"method": "sleep", "args": {"seconds": 3.5}, "call_monitor_timeout": 2, "timeout": 10})))
        .await;
    assert_eq!(long, Ok(json!(3.5)));
    let err = py
        .request(call(
            json!({"method": "sleep", "args": {"seconds": 3}, "timeout": 1}),
        ))
        .await
        .unwrap_err();
    assert_eq!(err["class"], "MessagingTimeout", "{err}");

    py.quit().await;
    for server in [s1, s2, s3] {
        server.stop().await;
    }
}

// ---------------------------------------------------------------------------------------------
// Rust client -> Python server
// ---------------------------------------------------------------------------------------------

/// The Python server's `Default` endpoint, as seen from Rust.
#[rpc_client]
trait PyDefault {
    async fn echo(
        &self,
        a: Value,
        b: Value,
        c: Value,
        d: Value,
        e: Value,
        f: Value,
        g: Value,
    ) -> Value;
    async fn whoami(&self) -> String;
    async fn context(&self, ctx: &Context) -> Value;
    async fn sleep(&self, seconds: f64) -> f64;
    async fn raise_value_error(&self, message: String) -> Value;
    async fn raise_custom(&self, message: String, code: i64) -> Value;
    #[rpc(cast)]
    async fn record(&self, line: String);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn rust_client_calls_a_python_server() {
    let url = test_broker!();
    let transport = Transport::from_url(&url).await.unwrap();
    let topic = unique("rs2py");
    let py = PythonPeer::start(&url).await;
    py.serve(&topic, "p1").await;
    py.serve(&topic, "p2").await;
    let client =
        PyDefaultClient::new(&transport, topic.clone()).with_timeout(Duration::from_secs(20));

    let args = all_json_types();
    let arg = |k: &str| args[k].clone();
    let echoed = client
        .echo(
            arg("a"),
            arg("b"),
            arg("c"),
            arg("d"),
            arg("e"),
            arg("f"),
            arg("g"),
        )
        .await
        .unwrap();
    assert_eq!(
        echoed,
        Value::Object(args.clone()),
        "echo of every JSON type"
    );

    assert_eq!(client.with_server("p2").whoami().await.unwrap(), "p2");
    assert_eq!(client.with_server("p1").whoami().await.unwrap(), "p1");

    // Casts: one server; fanout: both.
    let _ = (py.log("p1").await, py.log("p2").await);
    client.record("one".to_owned()).await.unwrap();
    client.fanout().record("all".to_owned()).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let (mut p1, mut p2) = (Vec::new(), Vec::new());
    while p1.len() + p2.len() < 3 && Instant::now() < deadline {
        p1.extend(py.log("p1").await);
        p2.extend(py.log("p2").await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let records = |log: &[Value]| {
        log.iter()
            .filter(|r| r["method"] == "record")
            .map(|r| r["args"]["line"].clone())
            .collect::<Vec<_>>()
    };
    let (r1, r2) = (records(&p1), records(&p2));
    assert_eq!(r1.len() + r2.len(), 3, "p1 {r1:?} p2 {r2:?}");
    assert!(
        r1.contains(&json!("all")) && r2.contains(&json!("all")),
        "fanout reaches both"
    );

    // Namespace and version against Python's Calc endpoint (calc, 1.3).
    let calc = CalcClient::new(&transport, topic.clone()).with_timeout(Duration::from_secs(20));
    assert_eq!(calc.add(2, 3).await.unwrap(), 5);
    assert_eq!(calc.pow(2, 10).await.unwrap(), 1024);
    let dynamic = RpcClient::new(
        &transport,
        Target::new(topic.clone()).with_namespace("calc"),
    )
    .with_timeout(Duration::from_secs(20));
    let err = dynamic
        .prepare()
        .with_version("1.4".parse().unwrap())
        .call::<i64>(&Context::new(), "add", json!({"x": 1, "y": 1}))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::UnsupportedVersion { version, method } if version == "1.4" && method == "add"),
        "{err:?}"
    );
    let err = dynamic
        .call::<Value>(&Context::new(), "nope", json!({}))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::NoSuchMethod { method } if method == "nope"),
        "{err:?}"
    );

    // Python exceptions arrive as remote failures with class, module, message and traceback.
    let err = client
        .raise_value_error("bad value".to_owned())
        .await
        .unwrap_err();
    let remote = err.remote().expect("a remote failure");
    assert_eq!(
        (remote.class(), remote.module(), remote.message()),
        ("ValueError", "builtins", "bad value")
    );
    assert!(
        remote
            .traceback()
            .iter()
            .any(|line| line.contains("Traceback")),
        "{:?}",
        remote.traceback()
    );
    let err = client
        .raise_custom("custom trouble".to_owned(), 7)
        .await
        .unwrap_err();
    let remote = err.remote().expect("a remote failure");
    assert_eq!(
        (remote.class(), remote.module(), remote.message()),
        ("CustomError", "interop_errors", "custom trouble")
    );
    assert_eq!(remote.kwargs().get("code"), Some(&json!(7)));

    // Context round-trip, with Python's `client_timeout` key.
    let ctx = Context::new()
        .with_request_id("req-7")
        .with_user_id("u7")
        .with_roles(["member"]);
    let seen = client
        .with_call_monitor_timeout(Duration::from_secs(6))
        .context(&ctx)
        .await
        .unwrap();
    assert_eq!(
        seen,
        json!({"request_id": "req-7", "user_id": "u7", "roles": ["member"], "client_timeout": 6.0})
    );
    let seen = client.context(&ctx).await.unwrap();
    assert_eq!(seen["client_timeout"], Value::Null);

    // A long call kept alive by Python's heartbeats; a call that times out.
    let monitored = client
        .with_call_monitor_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(10));
    assert_eq!(monitored.sleep(3.5).await.unwrap(), 3.5);
    let err = client
        .with_timeout(Duration::from_secs(1))
        .sleep(3.0)
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");

    py.quit().await;
}

// ---------------------------------------------------------------------------------------------
// Exceptions across languages
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn python_caller_catches_the_exception_class_a_rust_error_names() {
    let url = test_broker!();
    let transport = Transport::from_url(&url).await.unwrap();
    let topic = unique("exc-py2rs");
    let (server, _) = rust_server(&transport, &topic, "r1").await;
    let py = PythonPeer::start(&url).await;
    let find = |instance_id: &str| json!({"cmd": "call", "topic": topic, "method": "find_instance", "ctxt": {}, "timeout": 20, "args": {"instance_id": instance_id}});
    let first_line = |err: &Value| {
        err["message"]
            .as_str()
            .unwrap()
            .lines()
            .next()
            .map(str::to_owned)
    };
    let catches = |err: &Value, class: &str| err["mro"].as_array().unwrap().contains(&json!(class));

    // A module in allowed_remote_exmods: the class itself (oslo's `_Remote` subclass of it),
    // rebuilt as `InstanceNotFound(message, instance_id=...)`; the class adds its `code`.
    let err = py.request(find("i-404")).await.unwrap_err();
    assert_eq!(
        (&err["class"], &err["module"]),
        (
            &json!("InstanceNotFound_Remote"),
            &json!("interop_errors_Remote")
        ),
        "{err}"
    );
    assert!(catches(&err, "interop_errors.InstanceNotFound"), "{err}");
    assert!(catches(&err, "interop_errors.ServiceException"), "{err}");
    assert_eq!(err["kwargs"], json!({"instance_id": "i-404", "code": 404}));
    assert_eq!(
        first_line(&err).as_deref(),
        Some("Instance i-404 could not be found.")
    );
    let err = py.request(find("custom")).await.unwrap_err();
    assert!(catches(&err, "interop_errors.CustomError"), "{err}");
    assert_eq!(err["kwargs"], json!({"code": 7}));

    // A built-in: the very class, as Python raises its own.
    let err = py.request(find("")).await.unwrap_err();
    assert_eq!(
        (&err["class"], &err["module"]),
        (&json!("ValueError"), &json!("builtins")),
        "{err}"
    );
    assert_eq!(err["mro"][0], "builtins.ValueError");
    assert_eq!(first_line(&err).as_deref(), Some("empty instance id"));

    // A module the caller does not allow: oslo's RemoteError, naming the class.
    let err = py.request(find("nova")).await.unwrap_err();
    assert_eq!(err["class"], "RemoteError", "{err}");
    assert_eq!(err["exc_type"], "InstanceNotFound", "{err}");
    assert_eq!(err["value"], "Instance nova could not be found.", "{err}");

    py.quit().await;
    server.stop().await;
}

/// The Python server's raising methods, with the Rust error they raise.
#[rpc_client]
trait PyRaises {
    async fn raise_value_error(&self, message: String) -> Result<Value, InstanceError>;
    async fn raise_custom(&self, message: String, code: i64) -> Result<Value, InstanceError>;
    async fn raise_instance_not_found(&self, instance_id: String) -> Result<Value, InstanceError>;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn python_exceptions_reach_a_rust_client_as_variants_of_its_error() {
    let url = test_broker!();
    let transport = Transport::from_url(&url).await.unwrap();
    let topic = unique("exc-rs2py");
    let py = PythonPeer::start(&url).await;
    py.serve(&topic, "p1").await;
    let client =
        PyRaisesClient::new(&transport, topic.clone()).with_timeout(Duration::from_secs(20));

    let application = |result: Result<Value, CallError<InstanceError>>| match result {
        Err(CallError::Application(e)) => e,
        other => panic!("expected the application error: {other:?}"),
    };
    assert_eq!(
        application(client.raise_value_error("bad value".to_owned()).await),
        InstanceError::Invalid("bad value".to_owned())
    );
    assert_eq!(
        application(client.raise_instance_not_found("i-9".to_owned()).await),
        InstanceError::NotFound {
            instance_id: "i-9".to_owned()
        }
    );
    assert_eq!(
        application(client.raise_custom("custom trouble".to_owned(), 7).await),
        InstanceError::Custom { code: 7 }
    );

    py.quit().await;
}

// ---------------------------------------------------------------------------------------------
// Mixed fleets
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn python_and_rust_servers_share_a_topic_round_robin() {
    let url = test_broker!();
    let transport = Transport::from_url(&url).await.unwrap();
    let topic = unique("mixed");
    let py = PythonPeer::start(&url).await;
    py.serve(&topic, "py").await;
    let (rust, _) = rust_server(&transport, &topic, "rust").await;
    let client =
        ServiceClient::new(&transport, topic.clone()).with_timeout(Duration::from_secs(20));
    let mut by_server = std::collections::BTreeMap::<String, usize>::new();
    for _ in 0..20 {
        *by_server.entry(client.whoami().await.unwrap()).or_default() += 1;
    }
    assert_eq!(by_server.get("py"), Some(&10), "{by_server:?}");
    assert_eq!(by_server.get("rust"), Some(&10), "{by_server:?}");
    py.quit().await;
    rust.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
async fn python_and_rust_clients_call_one_rust_server_concurrently() {
    let url = test_broker!();
    let transport = Transport::from_url(&url).await.unwrap();
    let topic = unique("clients");
    let (server, _) = rust_server(&transport, &topic, "rust").await;
    let py = Arc::new(PythonPeer::start(&url).await);
    let client = CalcClient::new(&transport, topic.clone()).with_timeout(Duration::from_secs(20));
    let rust_calls: Vec<_> = (0..50i64)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move { client.add(n, 1000).await })
        })
        .collect();
    let py_calls: Vec<_> = (0..20i64)
        .map(|n| {
            let py = Arc::clone(&py);
            let topic = topic.clone();
            tokio::spawn(async move {
                py.request(json!({"cmd": "call", "topic": topic, "method": "add", "namespace": "calc", "version": "1.0", "args": {"x": n, "y": 2000}, "ctxt": {}, "timeout": 20}))
                    .await
            })
        })
        .collect();
    for (n, call) in rust_calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap().unwrap(), n as i64 + 1000);
    }
    for (n, call) in py_calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap(), Ok(json!(n as i64 + 2000)));
    }
    // The typed error path from Rust, for contrast with Python's view above.
    let service = ServiceClient::new(&transport, topic.clone());
    assert!(matches!(
        service.divide(1.0, 0.0).await,
        Err(CallError::Application(CalcError::DivisionByZero { .. }))
    ));
    if let Ok(py) = Arc::try_unwrap(py) {
        py.quit().await;
    }
    server.stop().await;
}
