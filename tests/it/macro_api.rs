//! What `#[rpc_endpoint]` and `#[rpc_client]` generate, on the in-memory broker: wire names and
//! keyword arguments, versions, typed errors, casts, and the typed client's overrides.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use amqp_rpc::driver::memory::MemoryDriver;
use amqp_rpc::driver::{Destination, PublishOptions, Subscription};
use amqp_rpc::{
    APPLICATION_ERROR_MODULE, CallError, Context, Endpoint, RemoteError, Returned, RpcClient,
    RpcError, RpcServer, Target, Transport, Version, async_trait, rpc_client, rpc_endpoint, wire,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;
// Timing tests run on tokio's paused clock: sleeps take no wall time and bounds are exact.
use tokio::time::Instant;

use crate::common;
use common::{ANSWER, expect_events, serve};

/// The timeout of calls that nothing answers.
const SHORT: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------------------------
// The service under test
// ---------------------------------------------------------------------------------------------

/// The calculator's own error: a unit variant and a struct variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum CalcError {
    DivisionByZero,
    Overflow { op: String, limit: i64 },
}

impl fmt::Display for CalcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CalcError::DivisionByZero => f.write_str("division by zero"),
            CalcError::Overflow { op, limit } => write!(f, "{op} overflows {limit}"),
        }
    }
}

/// An error that is a struct.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct QuotaExceeded {
    used: u32,
    limit: u32,
}

impl fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "quota exceeded: {} of {}", self.used, self.limit)
    }
}

/// The units `reserve` has.
const QUOTA: u32 = 10;

#[rpc_endpoint(namespace = "calc", version = "1.3")]
#[rpc_client]
trait Calculator {
    /// The label of the server that answered.
    async fn whoami(&self) -> String;
    /// Adds two integers.
    async fn add(&self, ctx: &Context, x: i64, y: i64) -> i64;
    /// The context the method received.
    async fn context(&self, ctx: &Context) -> Context;
    /// Divides, refusing zero.
    async fn divide(&self, x: f64, y: f64) -> Result<f64, CalcError>;
    /// Multiplies, refusing overflow.
    async fn multiply(&self, x: i64, y: i64) -> Result<i64, CalcError>;
    /// A greeting; the title is optional.
    #[rpc(since = "1.1")]
    async fn greet(&self, name: String, title: Option<String>) -> String;
    /// `"<type>=<value>"`: a raw identifier is sent under its plain name.
    async fn label(&self, r#type: String, value: i64) -> String;
    /// Takes `units` of a quota of [`QUOTA`], returning what is left.
    #[rpc(since = "1.3")]
    async fn reserve(&self, units: u32) -> Result<u32, QuotaExceeded>;
    /// Added in 1.3, sent on the wire as "pow".
    #[rpc(since = "1.3", name = "pow")]
    async fn power(&self, base: f64, exp: f64) -> f64;
    /// Sleeps `ms` milliseconds, then returns them.
    async fn slow(&self, ms: u64) -> u64;
    /// Sleeps `ms` milliseconds, then reports `"<label>:flushed"`; returns nothing.
    async fn flush(&self, ms: u64);
    /// Panics with `why`.
    async fn explode(&self, why: String) -> Result<i64, CalcError>;
    /// Reports `"<label>:record:<line>"` at once and `"<label>:recorded:<line>"` after
    /// `delay_ms`.
    #[rpc(cast)]
    async fn record(&self, line: String, delay_ms: u64);
}

/// The implementation: answers with its label and reports what it did on a channel.
#[derive(Clone)]
struct Calc {
    label: String,
    events: Option<mpsc::UnboundedSender<String>>,
}

impl Calc {
    fn new(label: &str) -> Calc {
        Calc {
            label: label.to_owned(),
            events: None,
        }
    }

    fn reporting_to(mut self, events: &mpsc::UnboundedSender<String>) -> Calc {
        self.events = Some(events.clone());
        self
    }

    fn endpoint(self) -> Arc<dyn Endpoint> {
        // `Calc` implements two RPC traits, so `into_rpc` is named by its trait.
        Arc::new(Calculator::into_rpc(self))
    }

    fn report(&self, event: String) {
        if let Some(events) = &self.events {
            // The test may have stopped listening; that is fine.
            drop(events.send(event));
        }
    }
}

impl Calculator for Calc {
    async fn whoami(&self) -> String {
        self.label.clone()
    }

    async fn add(&self, _ctx: &Context, x: i64, y: i64) -> i64 {
        x + y
    }

    async fn context(&self, ctx: &Context) -> Context {
        ctx.clone()
    }

    async fn divide(&self, x: f64, y: f64) -> Result<f64, CalcError> {
        match y == 0.0 {
            true => Err(CalcError::DivisionByZero),
            false => Ok(x / y),
        }
    }

    async fn multiply(&self, x: i64, y: i64) -> Result<i64, CalcError> {
        x.checked_mul(y).ok_or_else(|| CalcError::Overflow {
            op: "multiply".to_owned(),
            limit: i64::MAX,
        })
    }

    async fn greet(&self, name: String, title: Option<String>) -> String {
        match title {
            Some(title) => format!("Hello, {title} {name}"),
            None => format!("Hello, {name}"),
        }
    }

    async fn label(&self, r#type: String, value: i64) -> String {
        format!("{type}={value}")
    }

    async fn reserve(&self, units: u32) -> Result<u32, QuotaExceeded> {
        QUOTA.checked_sub(units).ok_or(QuotaExceeded {
            used: units,
            limit: QUOTA,
        })
    }

    async fn power(&self, base: f64, exp: f64) -> f64 {
        base.powf(exp)
    }

    async fn slow(&self, ms: u64) -> u64 {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        ms
    }

    async fn flush(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.report(format!("{}:flushed", self.label));
    }

    async fn explode(&self, why: String) -> Result<i64, CalcError> {
        panic!("{why}");
    }

    async fn record(&self, line: String, delay_ms: u64) {
        self.report(format!("{}:record:{line}", self.label));
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        self.report(format!("{}:recorded:{line}", self.label));
    }
}

/// An older release of the same namespace: version 1.2, without `divide`, `greet` and the
/// 1.3 methods.
#[rpc_endpoint(namespace = "calc", version = "1.2")]
trait CalculatorLite {
    async fn add(&self, ctx: &Context, x: i64, y: i64) -> i64;
    async fn whoami(&self) -> String;
}

impl CalculatorLite for Calc {
    async fn add(&self, _ctx: &Context, x: i64, y: i64) -> i64 {
        x + y
    }

    async fn whoami(&self) -> String {
        self.label.clone()
    }
}

/// Another namespace with a method of the same name.
#[rpc_endpoint(namespace = "calc_next", version = "1.3")]
trait CalculatorNext {
    async fn whoami(&self) -> String;
}

struct Next;

impl CalculatorNext for Next {
    async fn whoami(&self) -> String {
        "next".to_owned()
    }
}

/// A trait with neither namespace nor version.
#[rpc_endpoint]
#[rpc_client]
trait Plain {
    async fn nothing(&self);
}

impl Plain for Next {
    async fn nothing(&self) {}
}

/// Parameters and methods named as the generated code's own locals and helpers: each is the
/// user's, on the wire and in the implementation.
#[rpc_endpoint(namespace = "names")]
#[rpc_client]
trait Internals {
    /// A method named as the helper that generated clients once had.
    async fn map(&self, __args: i64, __kwargs: i64) -> i64;
    /// The dispatcher's and the client's locals as parameter names; the context parameter is
    /// named as the dispatcher's.
    #[allow(clippy::too_many_arguments)]
    async fn locals(
        &self,
        __ctx: &Context,
        __method: String,
        __args: Vec<i64>,
        __ok: i64,
        __err: i64,
        __error: i64,
        __self: i64,
        __ret: i64,
        __map: i64,
    ) -> Result<String, CalcError>;
    /// A cast whose parameter is named as the client's keyword-argument local.
    #[rpc(cast)]
    async fn noted(&self, __kwargs: String);
}

/// Reports the `noted` casts it receives.
struct Names(mpsc::UnboundedSender<String>);

impl Internals for Names {
    async fn map(&self, __args: i64, __kwargs: i64) -> i64 {
        __args * 10 + __kwargs
    }

    async fn locals(
        &self,
        __ctx: &Context,
        __method: String,
        __args: Vec<i64>,
        __ok: i64,
        __err: i64,
        __error: i64,
        __self: i64,
        __ret: i64,
        __map: i64,
    ) -> Result<String, CalcError> {
        if __err != 0 {
            return Err(CalcError::Overflow {
                op: __method,
                limit: __err,
            });
        }
        Ok(format!(
            "{} {__method} {__args:?} {__ok} {__error} {__self} {__ret} {__map}",
            __ctx.user_id().unwrap_or("-")
        ))
    }

    async fn noted(&self, __kwargs: String) {
        let _ = self.0.send(__kwargs);
    }
}

/// A client-only description of a remote service that returns the context it got.
#[rpc_client(namespace = "mirror")]
// Nothing implements a client-only trait, so rustc warns that it is never used.
#[allow(dead_code)]
trait Mirror {
    /// No context parameter: sends the client's `with_context` context.
    async fn context(&self) -> Context;
}

/// A typed error whose enum is internally tagged, as JSON APIs often define them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind")]
enum Tagged {
    Busy { retry_after: u32 },
}

impl fmt::Display for Tagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tagged::Busy { retry_after } => write!(f, "busy, retry after {retry_after} s"),
        }
    }
}

#[rpc_endpoint(namespace = "tagged")]
#[rpc_client]
trait TaggedService {
    async fn attempt(&self) -> Result<(), Tagged>;
}

impl TaggedService for Next {
    async fn attempt(&self) -> Result<(), Tagged> {
        Err(Tagged::Busy { retry_after: 3 })
    }
}

// ---------------------------------------------------------------------------------------------
// Hand-written peers
// ---------------------------------------------------------------------------------------------

/// A hand-written endpoint of the calculator's wire contract (namespace "calc", 1.3, methods
/// "add", "divide", "pow"), recording each method and the sorted keys of its arguments.
#[derive(Default)]
struct HandCalc {
    seen: Mutex<Vec<String>>,
}

#[async_trait]
impl Endpoint for HandCalc {
    fn namespace(&self) -> Option<&str> {
        Some("calc")
    }

    fn version(&self) -> Version {
        Version::new(1, 3)
    }

    fn has_method(&self, method: &str) -> bool {
        matches!(method, "add" | "divide" | "pow")
    }

    async fn dispatch(
        &self,
        _ctx: Context,
        method: &str,
        args: Map<String, Value>,
    ) -> Result<Returned, RemoteError> {
        let mut keys: Vec<&str> = args.keys().map(String::as_str).collect();
        keys.sort_unstable();
        self.seen
            .lock()
            .unwrap()
            .push(format!("{method}({})", keys.join(",")));
        let num = |key: &str| {
            args.get(key).and_then(Value::as_f64).ok_or_else(|| {
                RemoteError::builtin("TypeError", format!("{method}() needs a number {key}"))
            })
        };
        match method {
            "add" => Ok(Returned::from(json!(num("x")? as i64 + num("y")? as i64))),
            "pow" => Ok(Returned::from(json!(num("base")?.powf(num("exp")?)))),
            _ => match (num("x")?, num("y")?) {
                (_, 0.0) => Err(RemoteError::from_typed(&CalcError::DivisionByZero).unwrap()),
                (x, y) => Ok(Returned::from(json!(x / y))),
            },
        }
    }
}

/// A hand-written "divide" that fails with an error of another type than the client expects.
struct WrongError;

#[async_trait]
impl Endpoint for WrongError {
    fn namespace(&self) -> Option<&str> {
        Some("calc")
    }

    fn version(&self) -> Version {
        Version::new(1, 3)
    }

    fn has_method(&self, method: &str) -> bool {
        method == "divide"
    }

    async fn dispatch(
        &self,
        _: Context,
        _: &str,
        _: Map<String, Value>,
    ) -> Result<Returned, RemoteError> {
        Err(RemoteError::from_typed(&QuotaExceeded { used: 1, limit: 0 }).unwrap())
    }
}

/// A hand-written endpoint returning the context it received (namespace "mirror").
struct ContextMirror;

#[async_trait]
impl Endpoint for ContextMirror {
    fn namespace(&self) -> Option<&str> {
        Some("mirror")
    }

    fn has_method(&self, method: &str) -> bool {
        method == "context"
    }

    async fn dispatch(
        &self,
        ctx: Context,
        _: &str,
        _: Map<String, Value>,
    ) -> Result<Returned, RemoteError> {
        Ok(Returned::from(Value::Object(ctx.into_map())))
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// A transport with one calculator server `s1` on topic "calc", and its typed client.
async fn calculator(transport: &Transport) -> (RpcServer, CalculatorClient) {
    let server = serve(transport, "calc", "s1", vec![Calc::new("s1").endpoint()]).await;
    let client = CalculatorClient::new(transport, "calc").with_timeout(ANSWER);
    (server, client)
}

/// A dynamic client of the "calc" namespace on topic "calc", sending no version.
fn dynamic(transport: &Transport) -> RpcClient {
    RpcClient::new(transport, Target::new("calc").with_namespace("calc")).with_timeout(ANSWER)
}

/// Servers `s1`, `s2`, `s3` on topic "calc", reporting to `events`.
async fn three_servers(
    transport: &Transport,
    events: &mpsc::UnboundedSender<String>,
) -> Vec<RpcServer> {
    let mut servers = Vec::new();
    for name in ["s1", "s2", "s3"] {
        let calc = Calc::new(name).reporting_to(events);
        servers.push(serve(transport, "calc", name, vec![calc.endpoint()]).await);
    }
    servers
}

/// The remote failure of a dynamic call, which must have failed remotely.
async fn remote_failure(client: &RpcClient, method: &str, args: Value) -> RemoteError {
    match client.call::<Value>(&Context::new(), method, args).await {
        Err(RpcError::Remote(remote)) => remote,
        other => panic!("{method}: expected a remote failure, got {other:?}"),
    }
}

/// Runs `send` while taking the request it publishes from `requests`: its result and the
/// opened request.
async fn capture<T>(
    requests: &mut Box<dyn Subscription>,
    send: impl Future<Output = T>,
) -> (T, Map<String, Value>) {
    let (result, delivery) = tokio::join!(send, tokio::time::timeout(ANSWER, requests.next()));
    let delivery = delivery.expect("a request was published").unwrap();
    let request = wire::open(&delivery.body).unwrap();
    delivery.acker.ack().await.unwrap();
    (result, request)
}

/// The `_context_*` entries of a request, with the prefix removed.
fn context_of(request: &Map<String, Value>) -> Map<String, Value> {
    request
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("_context_")?.to_owned(), v.clone())))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Wire names and keyword arguments
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_name_is_the_wire_name_unless_rpc_name_renames_it() {
    let transport = Transport::memory();
    let (_server, client) = calculator(&transport).await;
    let dynamic = dynamic(&transport);
    let ctx = Context::new();

    assert_eq!(client.add(&ctx, 2, 3).await.unwrap(), 5);
    assert_eq!(
        dynamic
            .call::<i64>(&ctx, "add", json!({"x": 2, "y": 3}))
            .await
            .unwrap(),
        5
    );

    // `power` is "pow" on the wire, for the typed client and for anyone else.
    assert_eq!(client.power(2.0, 10.0).await.unwrap(), 1024.0);
    let pow: f64 = dynamic
        .call(&ctx, "pow", json!({"base": 2.0, "exp": 10.0}))
        .await
        .unwrap();
    assert_eq!(pow, 1024.0);
    let err = dynamic
        .call::<f64>(&ctx, "power", json!({"base": 2.0, "exp": 10.0}))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::NoSuchMethod { method } if method == "power"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_style_keyword_arguments_reach_the_generated_endpoint() {
    let transport = Transport::memory();
    let (_server, _client) = calculator(&transport).await;
    let dynamic = dynamic(&transport);
    let ctx = Context::new();
    // What Python's `client.call(ctxt, 'add', x=1, y=2)` sends; key order does not matter.
    assert_eq!(
        dynamic
            .call::<i64>(&ctx, "add", json!({"x": 1, "y": 2}))
            .await
            .unwrap(),
        3
    );
    assert_eq!(
        dynamic
            .call::<i64>(&ctx, "add", json!({"y": 2, "x": 40}))
            .await
            .unwrap(),
        42
    );
    // A raw identifier parameter is keyed by its plain name.
    let label: String = dynamic
        .call(&ctx, "label", json!({"type": "disk", "value": 3}))
        .await
        .unwrap();
    assert_eq!(label, "disk=3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_argument_is_a_type_error_naming_it() {
    let transport = Transport::memory();
    let (_server, _client) = calculator(&transport).await;
    let dynamic = dynamic(&transport);

    let err = remote_failure(&dynamic, "add", json!({"x": 1})).await;
    assert_eq!((err.class(), err.module()), ("TypeError", "builtins"));
    assert_eq!(
        err.message(),
        "add() missing 1 required positional argument: 'y'"
    );
    // The message names the method by its wire name.
    let err = remote_failure(&dynamic, "pow", json!({"base": 2.0})).await;
    assert_eq!(err.class(), "TypeError");
    assert_eq!(
        err.message(),
        "pow() missing 1 required positional argument: 'exp'"
    );
    // No arguments at all.
    let err = remote_failure(&dynamic, "label", json!({})).await;
    assert_eq!(err.class(), "TypeError");
    assert!(err.message().contains("'type'"), "{}", err.message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unexpected_keyword_argument_is_a_type_error_naming_it() {
    let transport = Transport::memory();
    let (_server, _client) = calculator(&transport).await;
    let dynamic = dynamic(&transport);

    let err = remote_failure(&dynamic, "add", json!({"x": 1, "y": 2, "z": 3})).await;
    assert_eq!((err.class(), err.module()), ("TypeError", "builtins"));
    assert_eq!(
        err.message(),
        "add() got an unexpected keyword argument 'z'"
    );
    // The context parameter is not a keyword argument.
    let err = remote_failure(&dynamic, "add", json!({"ctx": {}, "x": 1, "y": 2})).await;
    assert_eq!(
        err.message(),
        "add() got an unexpected keyword argument 'ctx'"
    );
    // Nor is the Rust spelling of a raw identifier.
    let err = remote_failure(
        &dynamic,
        "label",
        json!({"r#type": "a", "type": "a", "value": 1}),
    )
    .await;
    assert_eq!(
        err.message(),
        "label() got an unexpected keyword argument 'r#type'"
    );
    let err = remote_failure(&dynamic, "whoami", json!({"verbose": true})).await;
    assert_eq!(
        err.message(),
        "whoami() got an unexpected keyword argument 'verbose'"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn argument_of_the_wrong_json_type_is_a_type_error() {
    let transport = Transport::memory();
    let (_server, _client) = calculator(&transport).await;
    let dynamic = dynamic(&transport);

    for (args, name) in [
        (json!({"x": "one", "y": 2}), "x"),
        (json!({"x": 1, "y": 2.5}), "y"),
        (json!({"x": null, "y": 2}), "x"),
        (json!({"x": [1], "y": 2}), "x"),
    ] {
        let err = remote_failure(&dynamic, "add", args.clone()).await;
        assert_eq!(
            (err.class(), err.module()),
            ("TypeError", "builtins"),
            "{args}"
        );
        let prefix = format!("add() argument '{name}': ");
        assert!(
            err.message().starts_with(&prefix),
            "{args}: {}",
            err.message()
        );
    }
    let err = remote_failure(&dynamic, "greet", json!({"name": "Ada", "title": 7})).await;
    assert_eq!(err.class(), "TypeError");
    assert!(
        err.message().starts_with("greet() argument 'title': "),
        "{}",
        err.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn option_parameter_may_be_omitted() {
    let transport = Transport::memory();
    let (_server, client) = calculator(&transport).await;
    let dynamic = dynamic(&transport);
    let ctx = Context::new();

    let greet = |args: Value| {
        let dynamic = dynamic.clone();
        async move {
            dynamic
                .call::<String>(&Context::new(), "greet", args)
                .await
                .unwrap()
        }
    };
    assert_eq!(greet(json!({"name": "Ada"})).await, "Hello, Ada");
    assert_eq!(
        greet(json!({"name": "Ada", "title": null})).await,
        "Hello, Ada"
    );
    assert_eq!(
        greet(json!({"name": "Ada", "title": "Dr"})).await,
        "Hello, Dr Ada"
    );
    assert_eq!(
        client.greet("Ada".to_owned(), None).await.unwrap(),
        "Hello, Ada"
    );
    let titled = client.greet("Ada".to_owned(), Some("Dr".to_owned())).await;
    assert_eq!(titled.unwrap(), "Hello, Dr Ada");
    // The required one may not be omitted.
    let err = dynamic
        .call::<String>(&ctx, "greet", json!({"title": "Dr"}))
        .await
        .unwrap_err();
    let remote = err.remote().unwrap_or_else(|| panic!("{err:?}"));
    assert_eq!(
        remote.message(),
        "greet() missing 1 required positional argument: 'name'"
    );
}

#[tokio::test(start_paused = true)]
async fn unit_method_is_a_call_that_waits_for_the_implementation() {
    let transport = Transport::memory();
    let (tx, mut events) = mpsc::unbounded_channel();
    let calc = Calc::new("s1").reporting_to(&tx);
    let _server = serve(&transport, "calc", "s1", vec![calc.endpoint()]).await;
    let client = CalculatorClient::new(&transport, "calc").with_timeout(ANSWER);
    let started = Instant::now();
    client.flush(300).await.unwrap();
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "returned before the method ended"
    );
    // The report was made before the reply, so it is already there.
    assert_eq!(events.try_recv().ok().as_deref(), Some("s1:flushed"));
}

// ---------------------------------------------------------------------------------------------
// Interoperation with hand-written endpoints and dynamic clients
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_client_reaches_a_hand_written_endpoint() {
    let transport = Transport::memory();
    let hand = Arc::new(HandCalc::default());
    let endpoints: Vec<Arc<dyn Endpoint>> = vec![hand.clone()];
    let _server = serve(&transport, "calc", "s1", endpoints).await;
    let client = CalculatorClient::new(&transport, "calc").with_timeout(ANSWER);

    assert_eq!(client.add(&Context::new(), 2, 3).await.unwrap(), 5);
    assert_eq!(client.power(2.0, 3.0).await.unwrap(), 8.0);
    assert_eq!(client.divide(6.0, 3.0).await.unwrap(), 2.0);
    let err = client.divide(1.0, 0.0).await.unwrap_err();
    assert!(
        matches!(err, CallError::Application(CalcError::DivisionByZero)),
        "{err:?}"
    );
    assert_eq!(
        *hand.seen.lock().unwrap(),
        ["add(x,y)", "pow(base,exp)", "divide(x,y)", "divide(x,y)"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_client_reaches_a_generated_endpoint() {
    let transport = Transport::memory();
    let (tx, mut events) = mpsc::unbounded_channel();
    let calc = Calc::new("s1").reporting_to(&tx);
    let _server = serve(&transport, "calc", "s1", vec![calc.endpoint()]).await;
    let dynamic = dynamic(&transport);
    let ctx = Context::new().with_user_id("alice");

    assert_eq!(
        dynamic
            .call::<i64>(&ctx, "add", json!({"x": 2, "y": 3}))
            .await
            .unwrap(),
        5
    );
    let quotient: f64 = dynamic
        .call(&ctx, "divide", json!({"x": 7.0, "y": 2.0}))
        .await
        .unwrap();
    assert_eq!(quotient, 3.5);
    let seen: Context = dynamic.call(&ctx, "context", ()).await.unwrap();
    assert_eq!(seen.user_id(), Some("alice"));
    // Versions the endpoint serves, sent explicitly.
    let at_13 = dynamic.prepare().with_version(Version::new(1, 3));
    let pow: f64 = at_13
        .call(&ctx, "pow", json!({"base": 3.0, "exp": 2.0}))
        .await
        .unwrap();
    assert_eq!(pow, 9.0);

    let err = dynamic
        .call::<f64>(&ctx, "divide", json!({"x": 1.0, "y": 0.0}))
        .await
        .unwrap_err();
    let remote = err.remote().unwrap_or_else(|| panic!("{err:?}"));
    assert_eq!(
        remote.application::<CalcError>().unwrap().unwrap(),
        CalcError::DivisionByZero
    );

    dynamic
        .cast(&ctx, "record", json!({"line": "dyn", "delay_ms": 0}))
        .await
        .unwrap();
    assert_eq!(
        expect_events(&mut events, 2).await,
        ["s1:record:dyn", "s1:recorded:dyn"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn method_without_context_parameter_sends_the_with_context_context() {
    let transport = Transport::memory();
    let _server = serve(&transport, "mirror", "s1", vec![Arc::new(ContextMirror)]).await;
    let plain = MirrorClient::new(&transport, "mirror").with_timeout(ANSWER);
    let ctx = Context::new().with_request_id("req-7").with("tenant", "t1");
    let with_ctx = plain.with_context(ctx.clone());

    let seen = with_ctx.context().await.unwrap();
    assert_eq!(seen.request_id(), Some("req-7"));
    assert_eq!(seen.get_str("tenant"), Some("t1"));
    // The original client still sends an empty context (the server adds `client_timeout`).
    let seen = plain.context().await.unwrap();
    assert_eq!(
        seen.into_map(),
        Map::from_iter([("client_timeout".to_owned(), Value::Null)])
    );
    // Copies of the context client keep its context.
    let seen = with_ctx.with_timeout(ANSWER).context().await.unwrap();
    assert_eq!(seen.request_id(), Some("req-7"));
}

// ---------------------------------------------------------------------------------------------
// Versions
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_method_sends_its_since_version_namespace_arguments_and_context() {
    let transport = Transport::memory();
    // Take the requests off the topic queue ourselves: nothing answers them.
    let mut requests = transport
        .driver()
        .listen_rpc(&Target::server("calc", "probe"), 0)
        .await
        .unwrap();
    let client = CalculatorClient::new(&transport, "calc").with_timeout(SHORT);
    let with_ctx = client.with_context(Context::new().with_request_id("req-1"));
    let explicit = Context::new().with_user_id("alice").with_roles(["admin"]);

    let (result, add) = capture(&mut requests, with_ctx.add(&explicit, 1, 2)).await;
    assert!(result.unwrap_err().is_timeout());
    assert_eq!(add["method"], "add");
    assert_eq!(
        add["version"], "1.0",
        "default since: the trait's major, minor 0"
    );
    assert_eq!(add["namespace"], "calc");
    assert_eq!(add["args"], json!({"x": 1, "y": 2}));
    // The explicit context, flattened, and not the client's.
    assert_eq!(
        Value::Object(context_of(&add)),
        json!({"user_id": "alice", "roles": ["admin"]})
    );
    assert!(
        add["_msg_id"].is_string() && add["_reply_q"].is_string(),
        "{add:?}"
    );

    let (result, pow) = capture(&mut requests, client.power(2.0, 3.0)).await;
    assert!(result.unwrap_err().is_timeout());
    assert_eq!(
        (&pow["method"], &pow["version"]),
        (&json!("pow"), &json!("1.3"))
    );
    assert_eq!(pow["namespace"], "calc");
    assert_eq!(pow["args"], json!({"base": 2.0, "exp": 3.0}));

    let (result, greet) = capture(&mut requests, client.greet("Ada".to_owned(), None)).await;
    assert!(result.unwrap_err().is_timeout());
    assert_eq!(
        (&greet["method"], &greet["version"]),
        (&json!("greet"), &json!("1.1"))
    );
    assert_eq!(greet["args"], json!({"name": "Ada", "title": null}));

    let (result, label) = capture(&mut requests, client.label("disk".to_owned(), 1)).await;
    assert!(result.unwrap_err().is_timeout());
    assert_eq!(label["args"], json!({"type": "disk", "value": 1}));

    // A fallible method without a context parameter: the client's `with_context` context.
    let (result, divide) = capture(&mut requests, with_ctx.divide(1.0, 2.0)).await;
    assert!(matches!(result, Err(CallError::Rpc(e)) if e.is_timeout()));
    assert_eq!(
        (&divide["version"], &divide["namespace"]),
        (&json!("1.0"), &json!("calc"))
    );
    assert_eq!(divide["args"], json!({"x": 1.0, "y": 2.0}));
    assert_eq!(
        Value::Object(context_of(&divide)),
        json!({"request_id": "req-1"})
    );
    // The original client, from which `with_ctx` was made, sends an empty context.
    let (_, divide) = capture(&mut requests, client.divide(1.0, 2.0)).await;
    assert_eq!(context_of(&divide), Map::new());

    let (result, reserve) = capture(&mut requests, client.reserve(1)).await;
    assert!(matches!(result, Err(CallError::Rpc(e)) if e.is_timeout()));
    assert_eq!(reserve["version"], "1.3");

    // A cast: its since version, and no reply fields.
    let (result, record) = capture(&mut requests, with_ctx.record("l".to_owned(), 5)).await;
    result.unwrap();
    assert_eq!(
        (&record["method"], &record["version"]),
        (&json!("record"), &json!("1.0"))
    );
    assert_eq!(record["args"], json!({"line": "l", "delay_ms": 5}));
    assert!(
        !record.contains_key("_msg_id") && !record.contains_key("_reply_q"),
        "{record:?}"
    );
    assert_eq!(
        Value::Object(context_of(&record)),
        json!({"request_id": "req-1"})
    );
    // The fanout client keeps the context too (our listener has a fanout queue of "calc").
    let (result, fanout) =
        capture(&mut requests, with_ctx.fanout().record("f".to_owned(), 0)).await;
    result.unwrap();
    assert_eq!(
        (&fanout["method"], &fanout["version"]),
        (&json!("record"), &json!("1.0"))
    );
    assert_eq!(
        Value::Object(context_of(&fanout)),
        json!({"request_id": "req-1"})
    );

    // A trait without namespace sends none, and version 1.0.
    let plain = PlainClient::new(&transport, "calc").with_timeout(SHORT);
    let (result, nothing) = capture(&mut requests, plain.nothing()).await;
    assert!(result.unwrap_err().is_timeout());
    assert!(!nothing.contains_key("namespace"), "{nothing:?}");
    assert_eq!(
        (&nothing["version"], &nothing["args"]),
        (&json!("1.0"), &json!({}))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_cap_refuses_a_newer_method_before_sending() {
    let driver = MemoryDriver::private();
    let transport = Transport::from_driver(Arc::new(driver.clone()));
    // Declare the queues, then leave them unconsumed: whatever is sent stays there.
    let server = serve(&transport, "calc", "s1", vec![Calc::new("s1").endpoint()]).await;
    server.stop().await;
    server.wait().await;
    assert_eq!(driver.queue_depth("calc"), Some(0));

    let client = CalculatorClient::new(&transport, "calc").with_timeout(ANSWER);
    let capped = client.with_version_cap(Version::new(1, 2));
    let is_cap = |err: &RpcError, version: Version| matches!(err, RpcError::VersionCap { version: Some(got), cap } if *got == version && *cap == Version::new(1, 2));
    let err = capped.power(2.0, 2.0).await.unwrap_err();
    assert!(is_cap(&err, Version::new(1, 3)), "{err:?}");
    match capped.reserve(1).await {
        Err(CallError::Rpc(err)) => assert!(is_cap(&err, Version::new(1, 3)), "{err:?}"),
        other => panic!("not refused by the cap: {other:?}"),
    }
    assert_eq!(
        driver.queue_depth("calc"),
        Some(0),
        "a refused message was sent"
    );

    // Within the cap, messages are sent (a cast, which leaves its message in the queue).
    capped.record("kept".to_owned(), 0).await.unwrap();
    capped.fanout().record("kept".to_owned(), 0).await.unwrap();
    assert_eq!(driver.queue_depth("calc"), Some(1));

    assert!(capped.can_send_version(&Version::new(1, 2)));
    assert!(capped.can_send_version(&Version::new(1, 0)));
    assert!(!capped.can_send_version(&Version::new(1, 3)));
    assert!(!capped.can_send_version(&Version::new(2, 0)));
    assert_eq!(capped.rpc_client().version_cap(), Some(Version::new(1, 2)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newer_method_against_an_older_endpoint_is_unsupported_version() {
    let transport = Transport::memory();
    let lite: Arc<dyn Endpoint> = Arc::new(CalculatorLiteEndpoint::new(Calc::new("lite")));
    let _server = serve(&transport, "calc", "s1", vec![lite]).await;
    let client = CalculatorClient::new(&transport, "calc").with_timeout(ANSWER);

    // Same namespace, a version 1.2 serves: answered.
    assert_eq!(client.add(&Context::new(), 2, 2).await.unwrap(), 4);
    assert_eq!(client.whoami().await.unwrap(), "lite");
    let err = client.power(2.0, 2.0).await.unwrap_err();
    assert!(
        matches!(&err, RpcError::UnsupportedVersion { version, method } if version == "1.3" && method == "pow"),
        "{err:?}"
    );
    match client.reserve(1).await {
        Err(CallError::Rpc(RpcError::UnsupportedVersion { version, method })) => {
            assert_eq!((version.as_str(), method.as_str()), ("1.3", "reserve"));
        }
        other => panic!("expected UnsupportedVersion: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Typed errors
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_error_arrives_as_the_application_value() {
    let transport = Transport::memory();
    let (_server, client) = calculator(&transport).await;

    assert_eq!(client.divide(6.0, 3.0).await.unwrap(), 2.0);
    let err = client.divide(1.0, 0.0).await.unwrap_err();
    assert!(err.rpc().is_none(), "{err:?}");
    assert_eq!(err.to_string(), "division by zero");
    assert_eq!(err.application(), Some(&CalcError::DivisionByZero));
    assert!(err.is_application() && !err.is_remote() && !err.is_retryable());

    assert_eq!(client.multiply(6, 7).await.unwrap(), 42);
    let err = client.multiply(i64::MAX, 2).await.unwrap_err();
    let expected = CalcError::Overflow {
        op: "multiply".to_owned(),
        limit: i64::MAX,
    };
    match err {
        CallError::Application(got) => assert_eq!(got, expected),
        other => panic!("not the application error: {other:?}"),
    }

    assert_eq!(client.reserve(4).await.unwrap(), 6);
    let err = client.reserve(11).await.unwrap_err();
    assert_eq!(err.to_string(), "quota exceeded: 11 of 10");
    assert_eq!(
        err.into_application(),
        Some(QuotaExceeded {
            used: 11,
            limit: 10
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_error_is_seen_by_other_callers_as_class_and_message() {
    let transport = Transport::memory();
    let (_server, _client) = calculator(&transport).await;
    let dynamic = dynamic(&transport);

    let cases = [
        (
            "divide",
            json!({"x": 1.0, "y": 0.0}),
            "DivisionByZero",
            "division by zero",
        ),
        (
            "multiply",
            json!({"x": i64::MAX, "y": 2}),
            "Overflow",
            "multiply overflows 9223372036854775807",
        ),
        (
            "reserve",
            json!({"units": 11}),
            "QuotaExceeded",
            "quota exceeded: 11 of 10",
        ),
    ];
    for (method, args, class, message) in cases {
        let remote = remote_failure(&dynamic, method, args).await;
        assert_eq!(
            (remote.class(), remote.module(), remote.message()),
            (class, APPLICATION_ERROR_MODULE, message)
        );
        assert_eq!(remote.args(), [json!(message)]);
    }

    // A Python caller reads the failure reply: a JSON string of oslo's serialized exception.
    let mut replies = transport.driver().listen_replies().await.unwrap();
    let request = json!({
        "method": "divide",
        "args": {"x": 1.0, "y": 0.0},
        "namespace": "calc",
        "version": "1.0",
        "_msg_id": "m-py",
        "_reply_q": replies.name,
        "_timeout": null,
        "_unique_id": "u-py",
    });
    let to = Destination::Rpc {
        exchange: None,
        topic: "calc",
        server: None,
    };
    let body = wire::seal(&request.to_string());
    transport
        .driver()
        .publish(to, body.into(), PublishOptions::default())
        .await
        .unwrap();
    let delivery = tokio::time::timeout(ANSWER, replies.subscription.next())
        .await
        .expect("a reply")
        .unwrap();
    let reply = wire::open(&delivery.body).unwrap();
    assert_eq!(
        (&reply["_msg_id"], &reply["result"]),
        (&json!("m-py"), &Value::Null)
    );
    let failure: Value = serde_json::from_str(reply["failure"].as_str().unwrap()).unwrap();
    assert_eq!(failure["class"], "DivisionByZero");
    assert_eq!(failure["module"], APPLICATION_ERROR_MODULE);
    assert_eq!(failure["message"], "division by zero");
    assert_eq!(failure["args"], json!(["division by zero"]));
    let kwargs = failure["kwargs"].as_object().unwrap();
    assert!(
        kwargs.values().any(|v| v == "DivisionByZero"),
        "the typed value travels: {kwargs:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internally_tagged_error_enum_is_named_after_its_type() {
    let transport = Transport::memory();
    let endpoint: Arc<dyn Endpoint> = Arc::new(TaggedServiceEndpoint::new(Next));
    let _server = serve(&transport, "tagged", "s1", vec![endpoint]).await;
    let client = TaggedServiceClient::new(&transport, "tagged").with_timeout(ANSWER);

    // The typed value round-trips...
    let err = client.attempt().await.unwrap_err();
    assert_eq!(err.application(), Some(&Tagged::Busy { retry_after: 3 }));
    // ...and other callers see the enum's name as the class: serde serializes a tagged
    // variant as a struct named after the enum, so the variant name is not available.
    let dynamic = RpcClient::new(&transport, Target::new("tagged").with_namespace("tagged"))
        .with_timeout(ANSWER);
    let remote = remote_failure(&dynamic, "attempt", json!({})).await;
    assert_eq!(remote.message(), "busy, retry after 3 s");
    assert_eq!(
        remote.class(),
        "Tagged",
        "class of a #[serde(tag)] enum's variant"
    );
}

#[tokio::test(start_paused = true)]
async fn framework_failures_of_fallible_methods_are_rpc_errors() {
    let transport = Transport::memory();
    let lite: Arc<dyn Endpoint> = Arc::new(CalculatorLiteEndpoint::new(Calc::new("lite")));
    let _lite = serve(&transport, "lite", "s1", vec![lite]).await;
    let on_lite = CalculatorClient::new(&transport, "lite").with_timeout(ANSWER);

    // A server without the method (its version does serve 1.0).
    match on_lite.divide(1.0, 0.0).await {
        Err(CallError::Rpc(RpcError::NoSuchMethod { method })) => assert_eq!(method, "divide"),
        other => panic!("expected NoSuchMethod: {other:?}"),
    }
    // No server at all.
    let nobody = CalculatorClient::new(&transport, "nobody").with_timeout(SHORT);
    let started = Instant::now();
    let err = nobody.divide(1.0, 0.0).await.unwrap_err();
    // The call's error answers as an RpcError does, without matching its two levels.
    assert!(
        err.is_timeout() && err.is_retryable() && !err.is_application(),
        "{err:?}"
    );
    assert!(err.rpc().is_some_and(RpcError::is_timeout));
    assert!(started.elapsed() >= SHORT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn panicking_implementation_is_a_remote_runtime_error_not_an_application_error() {
    let transport = Transport::memory();
    let (_server, client) = calculator(&transport).await;
    match client.explode("kaboom".to_owned()).await {
        Err(CallError::Rpc(RpcError::Remote(remote))) => {
            assert_eq!(
                (remote.class(), remote.module()),
                ("RuntimeError", "builtins")
            );
            assert!(remote.message().contains("kaboom"), "{}", remote.message());
        }
        other => panic!("expected a remote RuntimeError: {other:?}"),
    }
    // The server lives on.
    assert_eq!(client.divide(1.0, 4.0).await.unwrap(), 0.25);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn application_error_of_another_type_stays_a_remote_failure() {
    let transport = Transport::memory();
    let _server = serve(&transport, "calc", "s1", vec![Arc::new(WrongError)]).await;
    let client = CalculatorClient::new(&transport, "calc").with_timeout(ANSWER);
    match client.divide(1.0, 1.0).await {
        Err(CallError::Rpc(RpcError::Remote(remote))) => {
            assert_eq!(remote.class(), "QuotaExceeded");
            assert_eq!(remote.message(), "quota exceeded: 1 of 0");
            let carried = remote.application::<QuotaExceeded>().unwrap().unwrap();
            assert_eq!(carried, QuotaExceeded { used: 1, limit: 0 });
        }
        other => panic!("expected the remote failure: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Casts
// ---------------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn cast_returns_once_published_while_the_implementation_runs() {
    let transport = Transport::memory();
    let (tx, mut events) = mpsc::unbounded_channel();
    let calc = Calc::new("s1").reporting_to(&tx);
    let _server = serve(&transport, "calc", "s1", vec![calc.endpoint()]).await;
    let client = CalculatorClient::new(&transport, "calc");

    let started = Instant::now();
    client.record("slow".to_owned(), 2000).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "the cast waited for the method: {:?}",
        started.elapsed()
    );
    let event = tokio::time::timeout(ANSWER, events.recv()).await.unwrap();
    assert_eq!(event.as_deref(), Some("s1:record:slow"));
    let event = tokio::time::timeout(ANSWER, events.recv()).await.unwrap();
    assert_eq!(event.as_deref(), Some("s1:recorded:slow"));
    assert!(started.elapsed() >= Duration::from_secs(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_cast_reaches_every_server_exactly_once() {
    let transport = Transport::memory();
    let (tx, mut events) = mpsc::unbounded_channel();
    let _servers = three_servers(&transport, &tx).await;
    let client = CalculatorClient::new(&transport, "calc");
    client.fanout().record("all".to_owned(), 0).await.unwrap();
    let mut got: Vec<String> = expect_events(&mut events, 6)
        .await
        .into_iter()
        .filter(|e| e.contains(":record:"))
        .collect();
    got.sort();
    assert_eq!(got, ["s1:record:all", "s2:record:all", "s3:record:all"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_server_reaches_only_that_server() {
    let transport = Transport::memory();
    let (tx, mut events) = mpsc::unbounded_channel();
    let _servers = three_servers(&transport, &tx).await;
    let client = CalculatorClient::new(&transport, "calc").with_timeout(ANSWER);
    let s2 = client.with_server("s2");
    for i in 0..3 {
        s2.record(format!("{i}"), 0).await.unwrap();
    }
    let got = expect_events(&mut events, 6).await;
    assert!(got.iter().all(|e| e.starts_with("s2:")), "{got:?}");
    for _ in 0..6 {
        assert_eq!(s2.whoami().await.unwrap(), "s2");
    }
    // The topic client still spreads its calls.
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(client.whoami().await.unwrap());
    }
    answers.sort();
    assert_eq!(answers, ["s1", "s2", "s3"]);
}

// ---------------------------------------------------------------------------------------------
// Overrides as oslo's prepare(): version, namespace, cast and fanout of a call method
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_version_sends_the_override_if_the_method_exists_at_it() {
    let transport = Transport::memory();
    let mut requests = transport
        .driver()
        .listen_rpc(&Target::server("calc", "probe"), 0)
        .await
        .unwrap();
    let client = CalculatorClient::new(&transport, "calc").with_timeout(SHORT);
    let ctx = Context::new();

    // `add` exists from 1.0 on: sent as 1.2, by calls and casts alike.
    let v12 = client.with_version(Version::new(1, 2));
    let (result, add) = capture(&mut requests, v12.add(&ctx, 1, 2)).await;
    assert!(result.unwrap_err().is_timeout());
    assert_eq!(
        (&add["method"], &add["version"]),
        (&json!("add"), &json!("1.2"))
    );
    let (result, record) = capture(&mut requests, v12.record("l".to_owned(), 0)).await;
    result.unwrap();
    assert_eq!(record["version"], "1.2");
    let (result, cast) = capture(&mut requests, v12.cast().add(&ctx, 1, 2)).await;
    result.unwrap();
    assert_eq!(cast["version"], "1.2");
    assert_eq!(
        v12.rpc_client().target().version(),
        Some(Version::new(1, 2))
    );
    // `pow`, added in 1.3, at 1.3.
    let (result, pow) = capture(
        &mut requests,
        client.with_version(Version::new(1, 3)).power(2.0, 2.0),
    )
    .await;
    assert!(result.unwrap_err().is_timeout());
    assert_eq!(
        (&pow["method"], &pow["version"]),
        (&json!("pow"), &json!("1.3"))
    );

    // Refused before sending: older than the method, newer than the trait, another major.
    let out_of_range = |err: &RpcError, method: &str, version: Version, since: Version| {
        matches!(err, RpcError::VersionOutOfRange { method: m, version: v, since: s, latest }
            if m == method && *v == version && *s == since && *latest == Version::new(1, 3))
    };
    let err = v12.power(2.0, 2.0).await.unwrap_err();
    assert!(
        out_of_range(&err, "pow", Version::new(1, 2), Version::new(1, 3)),
        "{err:?}"
    );
    assert!(err.is_version_out_of_range());
    assert_eq!(
        err.to_string(),
        "method pow cannot be sent as version 1.2: its trait has it from version 1.3 to 1.3"
    );
    match v12.reserve(1).await {
        Err(CallError::Rpc(err)) => assert!(
            out_of_range(&err, "reserve", Version::new(1, 2), Version::new(1, 3)),
            "{err:?}"
        ),
        other => panic!("not refused: {other:?}"),
    }
    let v14 = client.with_version(Version::new(1, 4));
    let err = v14.add(&ctx, 1, 2).await.unwrap_err();
    assert!(
        out_of_range(&err, "add", Version::new(1, 4), Version::new(1, 0)),
        "{err:?}"
    );
    let err = v14.cast().add(&ctx, 1, 2).await.unwrap_err();
    assert!(err.is_version_out_of_range(), "{err:?}");
    let err = client
        .with_version(Version::new(2, 0))
        .record("l".to_owned(), 0)
        .await
        .unwrap_err();
    assert!(
        out_of_range(&err, "record", Version::new(2, 0), Version::new(1, 0)),
        "{err:?}"
    );
    let err = client
        .with_version(Version::with_revision(1, 3, 1))
        .whoami()
        .await
        .unwrap_err();
    assert!(err.is_version_out_of_range(), "{err:?}");

    // The version cap applies to the override.
    let err = v12
        .with_version_cap(Version::new(1, 1))
        .add(&ctx, 1, 2)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::VersionCap { version: Some(v), .. } if *v == Version::new(1, 2)),
        "{err:?}"
    );

    // A version on the target of the wrapped RpcClient is such an override. (Its request is
    // the next one taken: no refused message was sent.)
    let rpc = RpcClient::new(
        &transport,
        Target::new("calc").with_version(Version::new(1, 1)),
    )
    .with_timeout(SHORT);
    let wrapped = CalculatorClient::from_rpc_client(rpc);
    let (result, greet) = capture(&mut requests, wrapped.greet("Ada".to_owned(), None)).await;
    assert!(result.unwrap_err().is_timeout());
    assert_eq!(
        (&greet["method"], &greet["version"]),
        (&json!("greet"), &json!("1.1"))
    );
    assert!(
        wrapped
            .power(2.0, 2.0)
            .await
            .unwrap_err()
            .is_version_out_of_range()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_version_is_served_by_an_endpoint_of_that_version() {
    let transport = Transport::memory();
    let lite: Arc<dyn Endpoint> = Arc::new(CalculatorLiteEndpoint::new(Calc::new("lite")));
    let _server = serve(&transport, "calc", "s1", vec![lite]).await;
    let client = CalculatorClient::new(&transport, "calc").with_timeout(ANSWER);
    let ctx = Context::new();
    // The 1.2 endpoint serves `add` sent as 1.2 but not as 1.3.
    let v12 = client.with_version(Version::new(1, 2));
    assert_eq!(v12.add(&ctx, 2, 2).await.unwrap(), 4);
    let err = client
        .with_version(Version::new(1, 3))
        .add(&ctx, 2, 2)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, RpcError::UnsupportedVersion { version, method } if version == "1.3" && method == "add"),
        "{err:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_namespace_addresses_the_default_namespace() {
    let transport = Transport::memory();
    let mut requests = transport
        .driver()
        .listen_rpc(&Target::server("calc", "probe"), 0)
        .await
        .unwrap();
    let client = CalculatorClient::new(&transport, "calc").with_timeout(SHORT);
    let default = client.without_namespace();
    assert_eq!(default.rpc_client().target().namespace(), None);
    assert_eq!(client.rpc_client().target().namespace(), Some("calc"));
    let (result, whoami) = capture(&mut requests, default.whoami()).await;
    assert!(result.unwrap_err().is_timeout());
    assert!(!whoami.contains_key("namespace"), "{whoami:?}");
    let (_, again) = capture(&mut requests, client.whoami()).await;
    assert_eq!(again["namespace"], "calc");

    // End to end: a server with a default-namespace endpoint answers it.
    let _server = serve(
        &transport,
        "plain",
        "s1",
        vec![Arc::new(PlainEndpoint::new(Next))],
    )
    .await;
    let plain = CalculatorClient::new(&transport, "plain").with_timeout(ANSWER);
    let err = plain.whoami().await.unwrap_err();
    assert!(err.is_unsupported_version(), "{err:?}");
    let err = plain.without_namespace().whoami().await.unwrap_err();
    assert!(
        err.is_no_such_method(),
        "the default namespace is served: {err:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn cast_sends_a_call_method_without_waiting_for_its_reply() {
    let transport = Transport::memory();
    let mut requests = transport
        .driver()
        .listen_rpc(&Target::server("calc", "probe"), 0)
        .await
        .unwrap();
    let client = CalculatorClient::new(&transport, "calc")
        .with_timeout(SHORT)
        .with_context(Context::new().with_request_id("req-1"));
    let (result, add) = capture(&mut requests, client.cast().add(&Context::new(), 1, 2)).await;
    result.unwrap();
    assert_eq!(
        (&add["method"], &add["version"]),
        (&json!("add"), &json!("1.0"))
    );
    assert_eq!(
        (&add["namespace"], &add["args"]),
        (&json!("calc"), &json!({"x": 1, "y": 2}))
    );
    assert!(
        !add.contains_key("_msg_id") && !add.contains_key("_reply_q"),
        "a cast: {add:?}"
    );
    // A fallible method and a renamed one, as casts; the client's context goes along.
    let (result, divide) = capture(&mut requests, client.cast().divide(1.0, 0.0)).await;
    result.unwrap();
    assert_eq!(divide["method"], "divide");
    assert_eq!(
        Value::Object(context_of(&divide)),
        json!({"request_id": "req-1"})
    );
    let (result, pow) = capture(&mut requests, client.cast().power(2.0, 2.0)).await;
    result.unwrap();
    assert_eq!(
        (&pow["method"], &pow["version"]),
        (&json!("pow"), &json!("1.3"))
    );

    // End to end: the cast returns at once, the server runs the method; `with_server` holds.
    let (tx, mut events) = mpsc::unbounded_channel();
    let _servers = three_servers(&transport, &tx).await;
    let client = CalculatorClient::new(&transport, "calc").with_timeout(ANSWER);
    let started = Instant::now();
    client.with_server("s2").cast().flush(300).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "waited for the method"
    );
    assert_eq!(expect_events(&mut events, 1).await, ["s2:flushed"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fanout_sends_a_call_method_to_every_server_as_a_cast() {
    let transport = Transport::memory();
    let (tx, mut events) = mpsc::unbounded_channel();
    let _servers = three_servers(&transport, &tx).await;
    let client = CalculatorClient::new(&transport, "calc").with_timeout(ANSWER);
    // A call method, fanned out: a cast to each server (the server named is ignored).
    client.with_server("s1").fanout().flush(0).await.unwrap();
    let mut got = expect_events(&mut events, 3).await;
    got.sort();
    assert_eq!(got, ["s1:flushed", "s2:flushed", "s3:flushed"]);
}

// ---------------------------------------------------------------------------------------------
// Serving in one step
// ---------------------------------------------------------------------------------------------

/// What a server builder taking `impl Endpoint + 'static` does with it.
fn servable(endpoint: impl Endpoint + 'static) -> Arc<dyn Endpoint> {
    Arc::new(endpoint)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn into_rpc_makes_an_implementation_servable_in_one_step() {
    let transport = Transport::memory();
    let (tx, _noted) = mpsc::unbounded_channel();
    let endpoint: InternalsEndpoint<Names> = Names(tx).into_rpc();
    assert_eq!(endpoint.namespace(), Some("names"));
    let _server = serve(&transport, "names", "s1", vec![servable(endpoint)]).await;
    let client = InternalsClient::new(&transport, "names").with_timeout(ANSWER);
    assert_eq!(client.map(1, 2).await.unwrap(), 12);

    // A type implementing several RPC traits names the one.
    let calc = Calculator::into_rpc(Calc::new("c"));
    assert_eq!(
        (calc.get_ref().label.as_str(), calc.version()),
        ("c", Version::new(1, 3))
    );
    let lite = CalculatorLite::into_rpc(Calc::new("l"));
    assert_eq!(lite.version(), Version::new(1, 2));
}

// ---------------------------------------------------------------------------------------------
// Names the generated code uses itself
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parameters_and_methods_named_as_generated_internals_work_end_to_end() {
    let transport = Transport::memory();
    let (tx, mut noted) = mpsc::unbounded_channel();
    let endpoint: Arc<dyn Endpoint> = Arc::new(InternalsEndpoint::new(Names(tx)));
    let _server = serve(&transport, "names", "s1", vec![endpoint]).await;
    let client = InternalsClient::new(&transport, "names").with_timeout(ANSWER);

    assert_eq!(client.map(4, 2).await.unwrap(), 42);
    let ctx = Context::new().with_user_id("ada");
    let text = client
        .locals(&ctx, "m".to_owned(), vec![1, 2], 3, 0, 5, 6, 7, 8)
        .await
        .unwrap();
    assert_eq!(text, "ada m [1, 2] 3 5 6 7 8");
    match client
        .locals(&ctx, "op".to_owned(), vec![], 0, 9, 0, 0, 0, 0)
        .await
    {
        Err(CallError::Application(CalcError::Overflow { op, limit })) => {
            assert_eq!((op.as_str(), limit), ("op", 9));
        }
        other => panic!("expected the typed error: {other:?}"),
    }
    client.noted("kept".to_owned()).await.unwrap();
    assert_eq!(expect_events(&mut noted, 1).await, ["kept"]);

    // On the wire, the parameters are keyword arguments of their own names.
    let dynamic = RpcClient::new(&transport, Target::new("names").with_namespace("names"))
        .with_timeout(ANSWER);
    let sum: i64 = dynamic
        .call(&Context::new(), "map", json!({"__args": 1, "__kwargs": 5}))
        .await
        .unwrap();
    assert_eq!(sum, 15);
    let missing = remote_failure(&dynamic, "map", json!({"__args": 1})).await;
    assert_eq!(
        missing.message(),
        "map() missing 1 required positional argument: '__kwargs'"
    );
}

// ---------------------------------------------------------------------------------------------
// The typed client's overrides and constants
// ---------------------------------------------------------------------------------------------

// The `with_*` methods take `&self`, so the compiler already keeps the original as it was:
// what is tested is that each override reaches the wire, beside a call without it.
#[tokio::test(start_paused = true)]
async fn with_methods_give_a_client_that_sends_with_the_override() {
    let transport = Transport::memory();
    let (_server, client) = calculator(&transport).await;

    let short = client.with_timeout(Duration::from_millis(200));
    let (short_result, original_result) = tokio::join!(short.slow(600), client.slow(600));
    assert!(
        short_result.as_ref().is_err_and(RpcError::is_timeout),
        "{short_result:?}"
    );
    assert_eq!(original_result.unwrap(), 600);

    let directed = client.with_server("s1");
    assert_eq!(directed.rpc_client().target().server_name(), Some("s1"));
    assert_eq!(directed.whoami().await.unwrap(), "s1");

    let capped = client.with_version_cap(Version::new(1, 0));
    assert!(capped.power(2.0, 2.0).await.unwrap_err().is_version_cap());
    assert_eq!(client.power(2.0, 2.0).await.unwrap(), 4.0);

    let monitored = client.with_call_monitor_timeout(Duration::from_secs(30));
    let ctx = Context::new().with_user_id("bob");
    let seen = monitored.context(&ctx).await.unwrap();
    assert_eq!(seen.client_timeout(), Some(30.0));
    assert_eq!(seen.user_id(), Some("bob"));
    assert_eq!(client.context(&ctx).await.unwrap().client_timeout(), None);

    let elsewhere = client.with_namespace("calc_next");
    assert_eq!(
        elsewhere.rpc_client().target().namespace(),
        Some("calc_next")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_namespace_addresses_another_namespace() {
    let transport = Transport::memory();
    let next: Arc<dyn Endpoint> = Arc::new(CalculatorNextEndpoint::new(Next));
    let _server = serve(
        &transport,
        "calc",
        "s1",
        vec![Calc::new("s1").endpoint(), next],
    )
    .await;
    let client = CalculatorClient::new(&transport, "calc").with_timeout(ANSWER);

    assert_eq!(client.whoami().await.unwrap(), "s1");
    assert_eq!(
        client.with_namespace("calc_next").whoami().await.unwrap(),
        "next"
    );
    let err = client.with_namespace("nowhere").whoami().await.unwrap_err();
    assert!(
        matches!(&err, RpcError::UnsupportedVersion { version, method } if version == "1.0" && method == "whoami"),
        "{err:?}"
    );
}

#[test]
fn generated_constants_give_the_namespace_and_version() {
    assert_eq!(CalculatorClient::NAMESPACE, Some("calc"));
    assert_eq!(CalculatorClient::VERSION, Version::new(1, 3));
    assert_eq!(CalculatorEndpoint::<Calc>::NAMESPACE, Some("calc"));
    assert_eq!(CalculatorEndpoint::<Calc>::VERSION, Version::new(1, 3));
    assert_eq!(CalculatorLiteEndpoint::<Calc>::VERSION, Version::new(1, 2));
    assert_eq!(PlainClient::NAMESPACE, None);
    assert_eq!(PlainClient::VERSION, Version::new(1, 0));
    assert_eq!(PlainEndpoint::<Next>::NAMESPACE, None);
    assert_eq!(MirrorClient::NAMESPACE, Some("mirror"));
    assert_eq!(MirrorClient::VERSION, Version::DEFAULT);

    // The Endpoint implementation reports the same, and has the wire names.
    let endpoint = CalculatorEndpoint::new(Calc::new("c"));
    assert_eq!(endpoint.namespace(), Some("calc"));
    assert_eq!(endpoint.version(), Version::new(1, 3));
    for method in [
        "whoami", "add", "divide", "greet", "label", "reserve", "pow", "record",
    ] {
        assert!(endpoint.has_method(method), "{method}");
    }
    for method in ["power", "Add", "", "_add"] {
        assert!(!endpoint.has_method(method), "{method}");
    }
    assert_eq!(endpoint.get_ref().label, "c");
    assert_eq!(endpoint.into_inner().label, "c");
    let plain = PlainEndpoint::new(Next);
    assert_eq!(
        (plain.namespace(), plain.version()),
        (None, Version::DEFAULT)
    );
}

#[tokio::test]
async fn dispatching_an_unknown_wire_name_directly_is_no_such_method() {
    let endpoint = CalculatorEndpoint::new(Calc::new("c"));
    let err = endpoint
        .dispatch(Context::new(), "power", Map::new())
        .await
        .unwrap_err();
    assert_eq!(err.class(), "NoSuchMethod");
    assert_eq!(err.module(), "oslo_messaging.rpc.dispatcher");
    assert_eq!(err.message(), "Endpoint does not support RPC method power");
    let args = Map::from_iter([("x".to_owned(), json!(2)), ("y".to_owned(), json!(5))]);
    let returned = endpoint.dispatch(Context::new(), "add", args).await;
    assert_eq!(returned.unwrap().to_value().unwrap(), json!(7));
}

#[tokio::test(start_paused = true)]
async fn from_rpc_client_keeps_the_target_timeout_and_cap() {
    let transport = Transport::memory();
    let (tx, _events) = mpsc::unbounded_channel();
    let _servers = three_servers(&transport, &tx).await;
    let rpc = RpcClient::new(&transport, Target::new("calc").with_server("s2"))
        .with_timeout(Duration::from_millis(250))
        .with_version_cap(Version::new(1, 2))
        .with_namespace("replaced");
    let client = CalculatorClient::from_rpc_client(rpc);

    let target = client.rpc_client().target();
    assert_eq!(
        (target.topic(), target.server_name()),
        (Some("calc"), Some("s2"))
    );
    assert_eq!(target.namespace(), Some("calc"), "the trait's namespace");
    assert_eq!(client.rpc_client().timeout(), Duration::from_millis(250));
    assert_eq!(client.rpc_client().version_cap(), Some(Version::new(1, 2)));

    for _ in 0..4 {
        assert_eq!(client.whoami().await.unwrap(), "s2");
    }
    let started = Instant::now();
    assert!(client.slow(1000).await.unwrap_err().is_timeout());
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(250) && took < Duration::from_millis(900),
        "{took:?}"
    );
    assert!(client.power(2.0, 2.0).await.unwrap_err().is_version_cap());

    // A trait without namespace clears the client's.
    let rpc = RpcClient::new(&transport, Target::new("calc").with_namespace("calc"));
    let plain = PlainClient::from_rpc_client(rpc);
    assert_eq!(plain.rpc_client().target().namespace(), None);
}

#[tokio::test]
async fn a_describing_server_describes_each_method_from_the_trait() {
    let transport = Transport::memory();
    let server = RpcServer::builder(&transport, Target::server("described", "d1"))
        .endpoint(Calc::new("d1").endpoint())
        .describe(true)
        .build()
        .unwrap();
    server.start().await.unwrap();
    // As oslo's ping: no namespace, version 1.0.
    let client = RpcClient::new(&transport, Target::new("described")).with_timeout(ANSWER);
    let described: Value = client
        .call(
            &Context::new(),
            amqp_rpc::describe::DESCRIBE_METHOD,
            json!({}),
        )
        .await
        .unwrap();
    let endpoint = &described["endpoints"][0];
    assert_eq!(
        (
            &endpoint["trait"],
            &endpoint["namespace"],
            &endpoint["version"]
        ),
        (&json!("Calculator"), &json!("calc"), &json!("1.3"))
    );
    let methods = endpoint["methods"].as_array().unwrap();
    let names: Vec<&str> = methods.iter().filter_map(|m| m["name"].as_str()).collect();
    assert_eq!(
        names,
        [
            "whoami", "add", "context", "divide", "multiply", "greet", "label", "reserve", "pow",
            "slow", "flush", "explode", "record"
        ]
    );
    let method = |name: &str| methods.iter().find(|m| m["name"] == name).unwrap();
    // The context is not an argument; a raw identifier goes by its plain name; an Option may
    // be left out; the wire name and `since` are the attribute's.
    assert_eq!(method("add")["params"]["required"], json!(["x", "y"]));
    assert_eq!(
        method("label")["params"]["required"],
        json!(["type", "value"])
    );
    assert_eq!(method("greet")["params"]["required"], json!(["name"]));
    assert_eq!(method("greet")["since"], "1.1");
    assert_eq!(method("pow")["since"], "1.3");
    assert_eq!(
        method("pow")["doc"],
        "Added in 1.3, sent on the wire as \"pow\"."
    );
    assert_eq!(method("divide")["returns"], json!({"type": "number"}));
    assert_eq!(method("flush")["returns"], json!({"type": "null"}));
    assert_eq!(
        (&method("record")["cast"], method("record").get("returns")),
        (&json!(true), None)
    );
    assert_eq!(
        method("slow")["params"]["properties"]["ms"],
        json!({"type": "integer", "minimum": 0, "maximum": u64::MAX})
    );
    // A server that does not opt in answers as oslo does for a method of no endpoint (here
    // `UnsupportedVersion`: its only endpoint has another namespace).
    let quiet = RpcServer::builder(&transport, Target::server("quiet", "q1"))
        .endpoint(Calc::new("q1").endpoint())
        .build()
        .unwrap();
    quiet.start().await.unwrap();
    let refused: Result<Value, RpcError> = RpcClient::new(&transport, Target::new("quiet"))
        .with_timeout(ANSWER)
        .call(
            &Context::new(),
            amqp_rpc::describe::DESCRIBE_METHOD,
            json!({}),
        )
        .await;
    assert!(refused.is_err_and(|e| e.is_unsupported_version()));
    server.stop().await;
    quiet.stop().await;
}

/// A result whose encoding fails part-way, after its first field is written.
struct HalfWritten;

impl Serialize for HalfWritten {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeStruct};
        let mut fields = serializer.serialize_struct("HalfWritten", 2)?;
        fields.serialize_field("written", "yes")?;
        Err(S::Error::custom("the second field cannot be written"))
    }
}

/// Results that cannot be encoded, one failing part-way (the generated code encodes a result
/// straight into its reply's body).
#[rpc_endpoint(namespace = "unencodable")]
#[rpc_client]
pub(crate) trait Unencodable {
    async fn half(&self) -> HalfWrittenResult;
    async fn tuple_keys(&self) -> std::collections::BTreeMap<(u8, u8), u8>;
    async fn fine(&self) -> String;
}

/// `HalfWritten` as a client reads it (it never arrives).
#[derive(Debug, Deserialize)]
pub(crate) struct HalfWrittenResult(#[allow(dead_code)] Value);

impl Serialize for HalfWrittenResult {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        HalfWritten.serialize(serializer)
    }
}

struct Unencoded;

impl Unencodable for Unencoded {
    async fn half(&self) -> HalfWrittenResult {
        HalfWrittenResult(Value::Null)
    }
    async fn tuple_keys(&self) -> std::collections::BTreeMap<(u8, u8), u8> {
        std::collections::BTreeMap::from([((1, 2), 3)])
    }
    async fn fine(&self) -> String {
        "fine".into()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_that_cannot_be_encoded_is_a_type_error_and_the_server_goes_on() {
    let transport = Transport::memory();
    let server = serve(
        &transport,
        "unencodable",
        "u1",
        vec![Arc::new(Unencoded.into_rpc())],
    )
    .await;
    let client = UnencodableClient::new(&transport, "unencodable").with_timeout(ANSWER);
    for (method, error) in [
        ("half", "the second field cannot be written"),
        ("tuple_keys", "key must be a string"),
    ] {
        let remote = match method {
            "half" => client.half().await.map(drop),
            _ => client.tuple_keys().await.map(drop),
        };
        let Err(RpcError::Remote(remote)) = remote else {
            panic!("{method}: {remote:?}");
        };
        assert_eq!(remote.class(), "TypeError", "{method}");
        assert_eq!(
            remote.message(),
            format!("{method}() returned a value that is not JSON: {error}")
        );
    }
    assert_eq!(client.fine().await.unwrap(), "fine");
    // The direct dispatch sees the same failure; a good result reads back.
    let endpoint = Unencoded.into_rpc();
    let failed = endpoint.dispatch(Context::new(), "half", Map::new()).await;
    assert_eq!(failed.unwrap_err().class(), "TypeError");
    let fine = endpoint.dispatch(Context::new(), "fine", Map::new()).await;
    assert_eq!(fine.unwrap().to_value().unwrap(), json!("fine"));
    server.stop().await;
}
