use amqp_rpc::rpc_endpoint;

#[rpc_endpoint(version = "1.3")]
pub trait Calculator {
    async fn add(&self, x: i64, y: i64) -> i64;
    #[rpc(since = "1.4")]
    async fn power(&self, base: f64, exp: f64) -> f64;
}

fn main() {}
