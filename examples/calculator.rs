//! The classic RPC tutorial: a calculator server and a client calling it.
//!
//! Runs on the in-process `memory://` transport, or on `$TRANSPORT_URL` when it is set.
//! The server has two endpoints: the calculator (default namespace, version 1.1) and a
//! `control` namespace whose `stop` method stops the server.
//!
//! ```text
//! cargo run --example calculator            # server and client in one process
//! cargo run --example calculator -- serve   # only the server, until told to stop
//! cargo run --example calculator -- call    # only the client; it stops the server at the end
//! ```
//!
//! With a broker, e.g. `TRANSPORT_URL=rabbit://guest:guest@127.0.0.1:5672/`, `serve` and
//! `call` run in separate processes, and Python oslo.messaging clients can call the server.

use std::sync::Arc;

use amqp_rpc::{
    CallError, Context, RemoteException, RpcError, RpcServer, Target, Transport, rpc_client,
    rpc_endpoint,
};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

/// The calculator's own error. Each variant is a Python exception class: Python callers catch
/// a `ZeroDivisionError`, Rust callers get the variant.
#[derive(Debug, Clone, PartialEq, RemoteException)]
pub enum CalcError {
    /// Division by zero.
    #[remote(module = "builtins", class = "ZeroDivisionError")]
    DivisionByZero,
}

impl std::fmt::Display for CalcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CalcError::DivisionByZero => f.write_str("division by zero"),
        }
    }
}

/// The calculator's API: the contract between its server and its clients.
#[rpc_endpoint(version = "1.1")]
#[rpc_client]
pub trait Calculator {
    /// `x + y`.
    async fn add(&self, x: f64, y: f64) -> f64;
    /// `x - y`.
    async fn subtract(&self, x: f64, y: f64) -> f64;
    /// `x * y`.
    async fn multiply(&self, x: f64, y: f64) -> f64;
    /// `x / y`, refusing zero.
    #[rpc(since = "1.1")]
    async fn divide(&self, x: f64, y: f64) -> Result<f64, CalcError>;
}

/// Server control, in its own namespace.
#[rpc_endpoint(namespace = "control")]
#[rpc_client]
pub trait Control {
    /// Stops the server (after answering).
    async fn stop(&self, ctx: &Context);
}

struct Calc;

impl Calculator for Calc {
    async fn add(&self, x: f64, y: f64) -> f64 {
        x + y
    }

    async fn subtract(&self, x: f64, y: f64) -> f64 {
        x - y
    }

    async fn multiply(&self, x: f64, y: f64) -> f64 {
        x * y
    }

    async fn divide(&self, x: f64, y: f64) -> Result<f64, CalcError> {
        match y {
            0.0 => Err(CalcError::DivisionByZero),
            _ => Ok(x / y),
        }
    }
}

/// Asks `main` to stop the server.
struct Stopper(Arc<Notify>);

impl Control for Stopper {
    async fn stop(&self, ctx: &Context) {
        println!(
            "server: stop requested (request_id {})",
            ctx.request_id().unwrap_or("-")
        );
        self.0.notify_one();
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mode = std::env::args().nth(1).unwrap_or_else(|| "both".to_owned());
    if !matches!(mode.as_str(), "both" | "serve" | "call") {
        return Err(format!("unknown mode {mode:?}: expected serve, call, or nothing").into());
    }
    let url = std::env::var("TRANSPORT_URL").unwrap_or_else(|_| "memory://".to_owned());
    let transport = Transport::from_url(&url).await?;
    if let Some(url) = transport.url() {
        println!("transport: {url}");
    }

    let serving = match mode.as_str() {
        "call" => None,
        _ => Some(serve(&transport).await?),
    };
    if mode == "serve" {
        println!("serving topic \"calculator\" until control.stop is called");
    } else {
        call(&transport).await?;
    }
    if let Some(serving) = serving {
        serving.await??;
        println!("server stopped");
    }
    Ok(())
}

/// Starts the server; the task it returns ends once `control.stop` has been called and the
/// server has finished its requests.
async fn serve(transport: &Transport) -> Result<JoinHandle<Result<(), RpcError>>, RpcError> {
    let stop = Arc::new(Notify::new());
    let server = RpcServer::builder(transport, Target::server("calculator", "calc-1"))
        .endpoint(Calc.into_rpc())
        .endpoint(Stopper(Arc::clone(&stop)).into_rpc())
        .build()?;
    // Started here, so that the client can call as soon as this returns.
    server.start().await?;
    Ok(tokio::spawn(async move {
        server.serve_until(stop.notified()).await
    }))
}

/// Calls each method, shows the typed error, then stops the server.
async fn call(transport: &Transport) -> Result<(), Box<dyn std::error::Error>> {
    let calculator = CalculatorClient::new(transport, "calculator");
    let (x, y) = (6.0, 4.0);
    println!("add({x}, {y}) = {}", calculator.add(x, y).await?);
    println!("subtract({x}, {y}) = {}", calculator.subtract(x, y).await?);
    println!("multiply({x}, {y}) = {}", calculator.multiply(x, y).await?);
    println!("divide({x}, {y}) = {}", calculator.divide(x, y).await?);

    match calculator.divide(1.0, 0.0).await {
        Err(CallError::Application(CalcError::DivisionByZero)) => {
            println!("divide(1, 0) failed as it should: DivisionByZero");
        }
        other => return Err(format!("divide by zero should fail, got {other:?}").into()),
    }

    let ctx = Context::new().with_request_id("req-calculator-demo");
    ControlClient::new(transport, "calculator")
        .stop(&ctx)
        .await?;
    Ok(())
}
