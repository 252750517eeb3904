//! The runtime documentation's Calculator with both macros, implemented with plain `async fn`s,
//! served on the in-memory transport and called through the generated client.

use std::sync::Arc;

use amqp_rpc::{Context, Endpoint, RpcServer, Target, Transport, rpc_client, rpc_endpoint};
use serde::{Deserialize, Serialize};

#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum CalcError {
    DivisionByZero,
}

impl std::fmt::Display for CalcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("division by zero")
    }
}

#[rpc_endpoint(namespace = "calc", version = "1.3")]
#[rpc_client]
pub trait Calculator {
    /// Adds two integers.
    async fn add(&self, ctx: &Context, x: i64, y: i64) -> i64;
    /// Divides, refusing zero.
    async fn divide(&self, x: f64, y: f64) -> Result<f64, CalcError>;
    /// Fire and forget.
    #[rpc(cast)]
    async fn record(&self, line: String);
    /// Added in 1.3, sent on the wire as "pow".
    #[rpc(since = "1.3", name = "pow")]
    async fn power(&self, base: f64, exp: f64) -> f64;
}

struct Calc;

impl Calculator for Calc {
    async fn add(&self, _ctx: &Context, x: i64, y: i64) -> i64 {
        x + y
    }
    async fn divide(&self, x: f64, y: f64) -> Result<f64, CalcError> {
        if y == 0.0 {
            Err(CalcError::DivisionByZero)
        } else {
            Ok(x / y)
        }
    }
    async fn record(&self, _line: String) {}
    async fn power(&self, base: f64, exp: f64) -> f64 {
        base.powf(exp)
    }
}

fn assert_endpoint<E: Endpoint>() {}
fn assert_send<T: Send>(_: &T) {}

/// Client futures can be spawned on a multi-threaded runtime.
#[allow(dead_code)]
fn client_futures_are_send(client: &CalculatorClient, ctx: &Context) {
    assert_send(&client.add(ctx, 1, 2));
    assert_send(&client.divide(1.0, 2.0));
    assert_send(&client.power(2.0, 3.0));
    assert_send(&client.fanout().record(String::new()));
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    assert_endpoint::<CalculatorEndpoint<Calc>>();
    assert_eq!(CalculatorClient::NAMESPACE, Some("calc"));
    assert_eq!(
        CalculatorEndpoint::<Calc>::VERSION,
        amqp_rpc::Version::new(1, 3)
    );

    let transport = Transport::memory();
    let server = RpcServer::builder(&transport, Target::server("calc", "calc-1"))
        .endpoint(CalculatorEndpoint::new(Calc))
        .build()
        .expect("server");
    server.start().await.expect("start");

    let client = CalculatorClient::new(&transport, "calc");
    assert_eq!(client.add(&Context::new(), 2, 3).await.expect("add"), 5);
    assert_eq!(client.power(2.0, 10.0).await.expect("pow"), 1024.0);
    let err = client.divide(1.0, 0.0).await.expect_err("division by zero");
    assert!(matches!(err.application(), Some(CalcError::DivisionByZero)));
    client
        .fanout()
        .record("to every server".to_owned())
        .await
        .expect("cast");

    server.stop().await;
    server.wait().await;
}
