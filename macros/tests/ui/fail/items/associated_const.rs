use amqp_rpc::rpc_endpoint;

#[rpc_endpoint]
pub trait Store {
    const CAPACITY: usize;
    async fn get(&self, key: String) -> Option<String>;
}

fn main() {}
