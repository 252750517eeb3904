// Every mistake of the trait is reported in one compilation.
use amqp_rpc::{Context, rpc_client, rpc_endpoint};

#[rpc_endpoint(namespace = "calc", version = "1.2")]
#[rpc_client(timeout = "5")]
pub trait Calculator {
    fn add(&self, x: i64, y: i64) -> i64;
    async fn divide(&mut self, x: f64, y: f64) -> f64;
    #[rpc(since = "2.0")]
    async fn power(&self, base: f64, exp: f64) -> f64;
    async fn log(&self, line: String, ctx: &Context);
    #[rpc(cast)]
    async fn reset(&self) -> bool;
}

fn main() {}
