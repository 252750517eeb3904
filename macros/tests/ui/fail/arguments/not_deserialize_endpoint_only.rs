// With only the endpoint, the client's half of the wire contract is still checked, once.
use amqp_rpc::rpc_endpoint;

#[derive(serde::Serialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

#[rpc_endpoint]
pub trait Geometry {
    async fn norm(&self, point: Point) -> f64;
}

fn main() {}
