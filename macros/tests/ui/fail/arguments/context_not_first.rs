use amqp_rpc::{Context, rpc_endpoint};

#[rpc_endpoint]
pub trait Calculator {
    async fn add(&self, x: i64, ctx: &Context, y: i64) -> i64;
}

fn main() {}
