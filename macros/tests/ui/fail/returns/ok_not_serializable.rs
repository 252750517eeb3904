use amqp_rpc::{rpc_client, rpc_endpoint};

pub struct Point {
    pub x: f64,
    pub y: f64,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct NotFound;

impl std::fmt::Display for NotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not found")
    }
}

#[rpc_endpoint]
#[rpc_client]
pub trait Geometry {
    async fn find(&self, name: String) -> Result<Point, NotFound>;
}

fn main() {}
