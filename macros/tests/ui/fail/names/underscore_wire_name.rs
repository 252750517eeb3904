use amqp_rpc::rpc_endpoint;

#[rpc_endpoint]
pub trait Store {
    #[rpc(name = "_compact")]
    async fn compact(&self);
}

fn main() {}
