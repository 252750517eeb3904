//! Generated dispatch (`#[rpc_endpoint]`) against a hand-written `Endpoint` with the same
//! behaviour (same methods, same argument checks, same encoding), in the same run.
//!
//! `cargo bench -p amqp-rpc --bench dispatch [-- --quick]`: prints ns per dispatch for both, interleaved
//! over several rounds, their medians and the ratio (target: generated / hand-written <= 1.05).

use std::hint::black_box;
use std::time::Instant;

use amqp_rpc::{Context, Endpoint, RemoteError, Returned, async_trait, rpc_endpoint};
use futures_util::FutureExt;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

/// The error of `divide`.
#[derive(Debug, Serialize, Deserialize)]
pub enum CalcError {
    /// Division by zero.
    DivisionByZero,
}

impl std::fmt::Display for CalcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("division by zero")
    }
}

/// The benchmarked API.
#[rpc_endpoint(namespace = "calc", version = "1.3")]
pub trait Calculator {
    /// Adds.
    async fn add(&self, ctx: &Context, x: i64, y: i64) -> i64;
    /// Divides.
    async fn divide(&self, x: f64, y: f64) -> Result<f64, CalcError>;
    /// Records.
    async fn record(&self, line: String);
    /// Raises.
    #[rpc(since = "1.3", name = "pow")]
    async fn power(&self, base: f64, exp: f64) -> f64;
}

struct Calc;

impl Calculator for Calc {
    async fn add(&self, _ctx: &Context, x: i64, y: i64) -> i64 {
        x.wrapping_add(y)
    }

    async fn divide(&self, x: f64, y: f64) -> Result<f64, CalcError> {
        match y {
            0.0 => Err(CalcError::DivisionByZero),
            _ => Ok(x / y),
        }
    }

    async fn record(&self, line: String) {
        black_box(line);
    }

    async fn power(&self, base: f64, exp: f64) -> f64 {
        base.powf(exp)
    }
}

/// What one would write by hand for the same behaviour: a match on the method name, each
/// argument taken by name (missing or mistyped: `TypeError`), unexpected ones refused.
struct HandWritten(Calc);

fn arg<T: serde::de::DeserializeOwned>(
    args: &mut Map<String, Value>,
    method: &str,
    name: &str,
) -> Result<T, RemoteError> {
    let value = args.remove(name).unwrap_or(Value::Null);
    serde_json::from_value(value).map_err(|e| {
        RemoteError::builtin("TypeError", format!("{method}() argument '{name}': {e}"))
    })
}

fn no_more(args: &Map<String, Value>, method: &str) -> Result<(), RemoteError> {
    match args.keys().next() {
        None => Ok(()),
        Some(k) => Err(RemoteError::builtin(
            "TypeError",
            format!("{method}() got an unexpected keyword argument '{k}'"),
        )),
    }
}

#[async_trait]
impl Endpoint for HandWritten {
    fn namespace(&self) -> Option<&str> {
        Some("calc")
    }

    fn version(&self) -> amqp_rpc::Version {
        amqp_rpc::Version::new(1, 3)
    }

    fn has_method(&self, method: &str) -> bool {
        matches!(method, "add" | "divide" | "record" | "pow")
    }

    async fn dispatch(
        &self,
        ctx: Context,
        method: &str,
        mut args: Map<String, Value>,
    ) -> Result<Returned, RemoteError> {
        match method {
            "add" => {
                let (x, y): (i64, i64) =
                    (arg(&mut args, method, "x")?, arg(&mut args, method, "y")?);
                no_more(&args, method)?;
                to_json(&self.0.add(&ctx, x, y).await)
            }
            "divide" => {
                let (x, y): (f64, f64) =
                    (arg(&mut args, method, "x")?, arg(&mut args, method, "y")?);
                no_more(&args, method)?;
                match self.0.divide(x, y).await {
                    Ok(v) => to_json(&v),
                    Err(e) => Err(RemoteError::from_typed(&e)
                        .unwrap_or_else(|e| RemoteError::builtin("TypeError", e.to_string()))),
                }
            }
            "record" => {
                let line: String = arg(&mut args, method, "line")?;
                no_more(&args, method)?;
                self.0.record(line).await;
                Ok(Returned::NONE)
            }
            "pow" => {
                let (b, e): (f64, f64) = (
                    arg(&mut args, method, "base")?,
                    arg(&mut args, method, "exp")?,
                );
                no_more(&args, method)?;
                to_json(&self.0.power(b, e).await)
            }
            _ => Err(RemoteError::builtin("AttributeError", method.to_owned())),
        }
    }
}

/// Encodes a result, as the generated code does.
fn to_json<T: Serialize>(value: &T) -> Result<Returned, RemoteError> {
    Returned::encode(value).map_err(|e| RemoteError::builtin("TypeError", e.to_string()))
}

/// The requests of one batch: the four methods in turn, one in eight dividing by zero.
fn requests(count: usize) -> Vec<(&'static str, Map<String, Value>)> {
    (0..count)
        .map(|i| {
            let (method, args) = match i % 4 {
                0 => ("add", json!({"x": i, "y": 7})),
                1 => (
                    "divide",
                    json!({"x": i as f64, "y": if i % 8 == 1 { 0.0 } else { 3.0 }}),
                ),
                2 => ("record", json!({"line": "a line of text"})),
                _ => ("pow", json!({"base": 1.0001, "exp": 2.5})),
            };
            match args {
                Value::Object(map) => (method, map),
                _ => unreachable!("json! object literal"),
            }
        })
        .collect()
}

/// Nanoseconds per dispatch over one batch. The methods never wait, so each future completes
/// on its first poll and no executor is measured.
fn run(endpoint: &dyn Endpoint, batch: Vec<(&'static str, Map<String, Value>)>) -> f64 {
    let count = batch.len();
    let ctx = Context::new().with_request_id("req-bench");
    let started = Instant::now();
    for (method, args) in batch {
        let outcome = endpoint.dispatch(ctx.clone(), method, args).now_or_never();
        black_box(outcome);
    }
    started.elapsed().as_nanos() as f64 / count as f64
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let (rounds, batch) = if quick { (3, 20_000) } else { (11, 400_000) };
    let generated = CalculatorEndpoint::new(Calc);
    let hand_written = HandWritten(Calc);
    // `--only generated|hand-written`: one side alone, for an instruction-count profiler.
    if let Some(side) = args
        .iter()
        .position(|a| a == "--only")
        .and_then(|i| args.get(i + 1))
    {
        let endpoint: &dyn Endpoint = match side.as_str() {
            "generated" => &generated,
            _ => &hand_written,
        };
        println!(
            "{side}: {:.1} ns per dispatch",
            run(endpoint, requests(batch))
        );
        return;
    }
    // Warm up both, then alternate so that drift affects both alike.
    run(&generated, requests(batch / 4));
    run(&hand_written, requests(batch / 4));
    let (mut gen_ns, mut hand_ns) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let (a, b) = (requests(batch), requests(batch));
        if round % 2 == 0 {
            gen_ns.push(run(&generated, a));
            hand_ns.push(run(&hand_written, b));
        } else {
            hand_ns.push(run(&hand_written, b));
            gen_ns.push(run(&generated, a));
        }
    }
    let (g, h) = (median(&mut gen_ns), median(&mut hand_ns));
    println!("dispatch of add/divide/record/pow, {rounds} rounds x {batch} requests, interleaved");
    println!("| implementation | ns per dispatch (median) |");
    println!("|---|---|");
    println!("| hand-written match | {h:.1} |");
    println!("| #[rpc_endpoint] | {g:.1} |");
    println!("generated / hand-written = {:.3} (target <= 1.05)", g / h);
}
