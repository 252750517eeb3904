use amqp_rpc::rpc_client;

#[rpc_client]
pub trait Logger {
    #[rpc(cast = true)]
    async fn log(&self, line: String);
}

fn main() {}
