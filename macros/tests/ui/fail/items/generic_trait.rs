use amqp_rpc::rpc_endpoint;

#[rpc_endpoint]
pub trait Store<T> {
    async fn get(&self, key: String) -> Option<String>;
}

fn main() {}
