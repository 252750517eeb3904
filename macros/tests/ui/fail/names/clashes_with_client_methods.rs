//! Each RPC method named as an inherent item of the generated client is reported by the macro,
//! at the method, not by rustc as a duplicate definition.
use amqp_rpc::{rpc_client, rpc_endpoint};

#[rpc_endpoint]
#[rpc_client]
pub trait Session {
    async fn new(&self);
    async fn with_retry(&self, times: u32);
    async fn fanout(&self);
    async fn rpc_client(&self) -> String;
    async fn can_send_version(&self, version: String) -> bool;
    /// Not generated: fine.
    async fn map(&self) -> u32;
}

fn main() {}
