use amqp_rpc::rpc_endpoint;

#[rpc_endpoint]
pub trait Calculator {
    async fn pow(&self, base: i64, exp: u32) -> i64;
    #[rpc(name = "pow")]
    async fn power(&self, base: f64, exp: f64) -> f64;
}

fn main() {}
