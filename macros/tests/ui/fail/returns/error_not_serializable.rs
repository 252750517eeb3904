use amqp_rpc::{rpc_client, rpc_endpoint};

#[derive(Debug)]
pub struct CalcError;

impl std::fmt::Display for CalcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("calculation failed")
    }
}

#[rpc_endpoint]
#[rpc_client]
pub trait Calculator {
    async fn divide(&self, x: f64, y: f64) -> Result<f64, CalcError>;
}

fn main() {}
