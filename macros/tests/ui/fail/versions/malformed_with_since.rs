// A malformed trait version is reported once: the methods' `since` are not checked against it.
use amqp_rpc::rpc_endpoint;

#[rpc_endpoint(version = "2")]
pub trait Calculator {
    #[rpc(since = "2.0")]
    async fn add(&self, x: i64, y: i64) -> i64;
    #[rpc(since = "2.1")]
    async fn power(&self, base: f64, exp: f64) -> f64;
}

fn main() {}
