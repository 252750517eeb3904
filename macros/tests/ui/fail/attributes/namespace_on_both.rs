use amqp_rpc::{rpc_client, rpc_endpoint};

#[rpc_endpoint(namespace = "calc")]
#[rpc_client(namespace = "calc")]
pub trait Calculator {
    async fn add(&self, x: i64, y: i64) -> i64;
}

fn main() {}
