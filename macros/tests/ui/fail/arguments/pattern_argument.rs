use amqp_rpc::rpc_endpoint;

#[rpc_endpoint]
pub trait Geometry {
    async fn area(&self, (width, height): (f64, f64)) -> f64;
}

fn main() {}
