// A type that does not exist is reported once, although the macros use it in several places.
use amqp_rpc::{rpc_client, rpc_endpoint};

#[rpc_endpoint]
#[rpc_client]
pub trait Geometry {
    async fn norm(&self, point: Piont) -> f64;
}

fn main() {}
