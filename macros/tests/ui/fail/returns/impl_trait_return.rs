use amqp_rpc::rpc_endpoint;

#[rpc_endpoint]
pub trait Logger {
    async fn lines(&self) -> impl Iterator<Item = String>;
}

fn main() {}
