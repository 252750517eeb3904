use amqp_rpc::rpc_endpoint;

#[rpc_endpoint]
pub trait Calculator {
    fn add(&self, x: i64, y: i64) -> i64;
}

fn main() {}
