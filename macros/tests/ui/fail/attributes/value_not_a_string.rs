use amqp_rpc::rpc_endpoint;

#[rpc_endpoint(namespace = "calc", version = 1.3)]
pub trait Calculator {
    async fn add(&self, x: i64, y: i64) -> i64;
}

fn main() {}
