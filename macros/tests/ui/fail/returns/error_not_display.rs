use amqp_rpc::{rpc_client, rpc_endpoint};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub enum CalcError {
    DivisionByZero,
}

#[rpc_endpoint]
#[rpc_client]
pub trait Calculator {
    async fn divide(&self, x: f64, y: f64) -> Result<f64, CalcError>;
}

fn main() {}
