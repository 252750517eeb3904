use amqp_rpc::rpc_client;

#[rpc_client]
pub trait Logger {
    #[rpc(cast)]
    async fn log(&self, line: String) -> bool;
}

fn main() {}
