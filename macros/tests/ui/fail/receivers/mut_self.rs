use amqp_rpc::rpc_endpoint;

#[rpc_endpoint]
pub trait Counter {
    async fn increment(&mut self, by: u64) -> u64;
}

fn main() {}
