use amqp_rpc::rpc_endpoint;

#[rpc_endpoint(crate = "amqp-rpc")]
pub trait Calculator {
    async fn add(&self, x: i64, y: i64) -> i64;
}

fn main() {}
