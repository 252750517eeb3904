use amqp_rpc::rpc_endpoint;

#[rpc_endpoint]
pub struct Calculator {
    precision: u32,
}

fn main() {}
