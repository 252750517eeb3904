//! amqp-rpc's metrics (the `metrics` feature) exposed for Prometheus: a calculator served and
//! called over `memory://`, and its client's and server's `oslo_messaging_rpc_*` metrics on
//! `http://127.0.0.1:9464/metrics`, with oslo.metrics' histogram buckets.
//!
//! ```text
//! cargo run --example prometheus              # makes some calls, prints the metrics, exits
//! cargo run --example prometheus -- --serve   # then keeps serving /metrics until Ctrl-C
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use amqp_rpc::metrics::PROCESSING_SECONDS_BUCKETS;
use amqp_rpc::{RemoteException, RpcServer, Target, Transport, rpc_client, rpc_endpoint};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder};

/// Dividing by zero.
#[derive(Debug, Clone, PartialEq, RemoteException)]
enum CalcError {
    /// Python's ZeroDivisionError.
    #[remote(module = "builtins", class = "ZeroDivisionError")]
    DivisionByZero,
}

impl std::fmt::Display for CalcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("division by zero")
    }
}

/// A calculator.
#[rpc_endpoint]
#[rpc_client]
trait Calculator {
    /// `x + y`.
    async fn add(&self, x: f64, y: f64) -> f64;
    /// `x / y`, refusing zero.
    async fn divide(&self, x: f64, y: f64) -> Result<f64, CalcError>;
}

struct Calc;

impl Calculator for Calc {
    async fn add(&self, x: f64, y: f64) -> f64 {
        x + y
    }

    async fn divide(&self, x: f64, y: f64) -> Result<f64, CalcError> {
        if y == 0.0 {
            return Err(CalcError::DivisionByZero);
        }
        Ok(x / y)
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let serve = std::env::args().any(|arg| arg == "--serve");
    let listen: SocketAddr = ([127, 0, 0, 1], 9464).into();
    // The recorder first: metrics go to whichever recorder is installed when they happen.
    let exporter = PrometheusBuilder::new().set_buckets_for_metric(
        Matcher::Suffix("_processing_seconds".to_owned()),
        &PROCESSING_SECONDS_BUCKETS,
    )?;
    let prometheus = if serve {
        exporter.with_http_listener(listen).install()?;
        None
    } else {
        Some(exporter.install_recorder()?)
    };

    let transport = Transport::memory();
    let server = RpcServer::builder(&transport, Target::server("calculator", "calc-1"))
        .endpoint(Calc.into_rpc())
        .build()?;
    server.start().await?;
    let calc = CalculatorClient::new(&transport, "calculator");
    for i in 0..10 {
        calc.add(f64::from(i), 1.0).await?;
    }
    let _ = calc.divide(1.0, 0.0).await;

    match prometheus {
        Some(handle) => {
            // What a scrape of /metrics returns.
            print!("{}", handle.render());
        }
        None => {
            println!("metrics on http://{listen}/metrics; Ctrl-C to stop");
            tokio::signal::ctrl_c().await?;
        }
    }
    server.stop().await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    Ok(())
}
