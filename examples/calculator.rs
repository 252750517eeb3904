//! The classic RPC tutorial: a calculator server and a client calling it.
//!
//! Runs on the in-process `memory://` transport, or on `$TRANSPORT_URL` when it is set.
//! The server has two endpoints: the calculator (default namespace, version 1.1) and a
//! `control` namespace whose `stop` method stops the server.
//!
//! ```text
//! cargo run --example calculator
//! ```

use std::sync::Arc;

use amqp_rpc::{
    Context, Endpoint, RemoteError, RpcClient, RpcError, RpcServer, Target, Transport, Version,
    async_trait,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

/// The calculator's own error, sent to callers as a typed remote error.
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

/// `add`, `subtract`, `multiply` and `divide` in the default namespace.
struct Calculator;

/// Takes keyword argument `name`, as Python would bind it, or fails with a `TypeError`.
fn arg<T: DeserializeOwned>(
    args: &mut Map<String, Value>,
    method: &str,
    name: &str,
) -> Result<T, RemoteError> {
    let value = args.remove(name).ok_or_else(|| {
        RemoteError::builtin(
            "TypeError",
            format!("{method}() missing required argument: '{name}'"),
        )
    })?;
    serde_json::from_value(value).map_err(|e| {
        RemoteError::builtin("TypeError", format!("{method}() argument '{name}': {e}"))
    })
}

#[async_trait]
impl Endpoint for Calculator {
    fn version(&self) -> Version {
        Version::new(1, 1)
    }

    fn has_method(&self, method: &str) -> bool {
        matches!(method, "add" | "subtract" | "multiply" | "divide")
    }

    async fn dispatch(
        &self,
        _ctx: Context,
        method: &str,
        mut args: Map<String, Value>,
    ) -> Result<Value, RemoteError> {
        let x: f64 = arg(&mut args, method, "x")?;
        let y: f64 = arg(&mut args, method, "y")?;
        let result = match method {
            "add" => x + y,
            "subtract" => x - y,
            "multiply" => x * y,
            _ if y == 0.0 => {
                let error = CalcError::DivisionByZero { dividend: x };
                return Err(RemoteError::from_application("DivisionByZero", &error)
                    .unwrap_or_else(|e| RemoteError::builtin("ZeroDivisionError", e.to_string())));
            }
            _ => x / y,
        };
        Ok(json!(result))
    }
}

/// `stop` in namespace `control`: asks `main` to stop the server.
struct Control {
    stop: Arc<Notify>,
}

#[async_trait]
impl Endpoint for Control {
    fn namespace(&self) -> Option<&str> {
        Some("control")
    }

    fn has_method(&self, method: &str) -> bool {
        method == "stop"
    }

    async fn dispatch(
        &self,
        ctx: Context,
        _method: &str,
        _args: Map<String, Value>,
    ) -> Result<Value, RemoteError> {
        println!(
            "server: stop requested (request_id {})",
            ctx.request_id().unwrap_or("-")
        );
        self.stop.notify_one();
        Ok(Value::Null)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("TRANSPORT_URL").unwrap_or_else(|_| "memory://".to_owned());
    let transport = Transport::from_url(&url).await?;
    println!(
        "transport: {url}",
        url = transport.url().map_or(url.clone(), |u| u.to_string())
    );

    let stop = Arc::new(Notify::new());
    let endpoints: Vec<Arc<dyn Endpoint>> = vec![
        Arc::new(Calculator),
        Arc::new(Control {
            stop: Arc::clone(&stop),
        }),
    ];
    let server = RpcServer::new(
        &transport,
        Target::server("calculator", "calc-1"),
        endpoints,
    )?;
    server.start().await?;
    let serving = tokio::spawn(async move {
        stop.notified().await;
        server.stop().await;
        server.wait().await;
    });

    let ctx = Context::new().with_request_id("req-calculator-demo");
    let client = RpcClient::new(&transport, Target::new("calculator"));
    for (method, x, y) in [
        ("add", 6.0, 7.0),
        ("subtract", 6.0, 7.0),
        ("multiply", 6.0, 7.0),
        ("divide", 6.0, 4.0),
    ] {
        let result: f64 = client.call(&ctx, method, json!({"x": x, "y": y})).await?;
        println!("{method}({x}, {y}) = {result}");
    }

    match client
        .call::<f64>(&ctx, "divide", json!({"x": 1.0, "y": 0.0}))
        .await
    {
        Err(RpcError::Remote(remote)) => match remote.application::<CalcError>() {
            Some(Ok(CalcError::DivisionByZero { dividend })) => {
                println!("divide({dividend}, 0) failed as expected: {remote}");
            }
            other => return Err(format!("unexpected remote error {remote}: {other:?}").into()),
        },
        other => return Err(format!("divide by zero should fail, got {other:?}").into()),
    }

    client
        .prepare()
        .with_namespace("control")
        .call::<()>(&ctx, "stop", ())
        .await?;
    serving.await?;
    println!("server stopped");
    Ok(())
}
