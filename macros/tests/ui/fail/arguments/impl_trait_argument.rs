use amqp_rpc::rpc_endpoint;

#[rpc_endpoint]
pub trait Logger {
    async fn log(&self, line: impl Into<String>);
}

fn main() {}
