use amqp_rpc::{Context, rpc_endpoint};

#[rpc_endpoint]
pub trait Calculator {
    async fn add(&self, ctx: Context, x: i64, y: i64) -> i64;
}

fn main() {}
