use amqp_rpc::rpc_endpoint;

#[rpc_endpoint]
pub trait Calculator {
    #[rpc(fanout)]
    async fn record(&self, line: String);
}

fn main() {}
