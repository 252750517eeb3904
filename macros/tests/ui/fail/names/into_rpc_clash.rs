//! `#[rpc_endpoint]` provides `Trait::into_rpc`: a method of that name is reported by the
//! macro, at the method, and the rest of the trait is still served.
use amqp_rpc::{rpc_client, rpc_endpoint};

#[rpc_endpoint]
#[rpc_client]
pub trait Service {
    async fn into_rpc(&self) -> String;
    async fn ping(&self);
}

struct S;

impl Service for S {
    async fn into_rpc(&self) -> String {
        String::new()
    }
    async fn ping(&self) {}
}

fn main() {
    let _ = ServiceEndpoint::new(S);
}
