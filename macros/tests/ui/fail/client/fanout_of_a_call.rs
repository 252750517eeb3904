//! A call cannot be fanned out (oslo refuses it too): `fanout()` sends every method as a cast,
//! which has no result.
use amqp_rpc::{Context, Transport, rpc_client};

#[rpc_client]
pub trait Calculator {
    /// Adds two integers.
    async fn add(&self, ctx: &Context, x: i64, y: i64) -> i64;
}

async fn sum(transport: &Transport) -> Result<i64, amqp_rpc::RpcError> {
    let client = CalculatorClient::new(transport, "calc");
    let sum: i64 = client.fanout().add(&Context::new(), 1, 2).await?;
    Ok(sum)
}

fn main() {
    let _ = sum;
}
