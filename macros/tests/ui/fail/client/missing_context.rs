// A method declared with a context parameter takes it on the client too.
use amqp_rpc::{Context, Transport, rpc_client};

#[rpc_client]
pub trait Calculator {
    async fn add(&self, ctx: &Context, x: i64, y: i64) -> i64;
}

async fn run(transport: &Transport) {
    let client = CalculatorClient::new(transport, "calc");
    let _ = client.add(2, 3).await;
}

fn main() {
    let _ = run;
}
