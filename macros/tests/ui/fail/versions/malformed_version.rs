use amqp_rpc::rpc_endpoint;

#[rpc_endpoint(version = "1.x")]
pub trait Calculator {
    async fn add(&self, x: i64, y: i64) -> i64;
}

fn main() {}
