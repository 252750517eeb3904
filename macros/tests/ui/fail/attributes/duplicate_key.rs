use amqp_rpc::rpc_client;

#[rpc_client(namespace = "calc", namespace = "calculator")]
pub trait Calculator {
    async fn add(&self, x: i64, y: i64) -> i64;
}

fn main() {}
