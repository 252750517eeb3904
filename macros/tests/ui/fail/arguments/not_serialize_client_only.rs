// With only the client, the endpoint's half of the wire contract is still checked, once.
use amqp_rpc::rpc_client;

#[derive(serde::Deserialize)]
pub struct Point {
    pub x: f64,
    pub y: f64,
}

#[rpc_client]
pub trait Geometry {
    async fn norm(&self, point: Point) -> f64;
}

fn main() {}
