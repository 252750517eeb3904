use amqp_rpc::rpc_endpoint;

#[rpc_endpoint]
pub trait Store {
    async fn put<T: serde::Serialize>(&self, key: String, value: T);
}

fn main() {}
