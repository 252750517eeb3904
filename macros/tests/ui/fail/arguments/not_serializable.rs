use amqp_rpc::{rpc_client, rpc_endpoint};

pub struct Point {
    pub x: f64,
    pub y: f64,
}

#[rpc_endpoint]
#[rpc_client]
pub trait Geometry {
    async fn norm(&self, point: Point) -> f64;
}

fn main() {}
