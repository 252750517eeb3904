use amqp_rpc::rpc_client;

#[rpc_client]
pub trait Session {
    async fn with_timeout(&self, seconds: u64);
}

fn main() {}
