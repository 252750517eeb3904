//! `#[rpc_endpoint]` alone serves a trait; no client is generated.

use amqp_rpc::{Endpoint, rpc_endpoint};

#[rpc_endpoint(namespace = "store", version = "2.1.4")]
pub trait Store {
    async fn get(&self, key: String) -> Option<String>;
    async fn put(&self, key: String, value: String);
}

struct Memory;

impl Store for Memory {
    async fn get(&self, _key: String) -> Option<String> {
        None
    }
    async fn put(&self, _key: String, _value: String) {}
}

fn main() {
    let endpoint = StoreEndpoint::new(Memory);
    assert_eq!(endpoint.namespace(), Some("store"));
    assert_eq!(
        endpoint.version(),
        amqp_rpc::Version::with_revision(2, 1, 4)
    );
    assert!(endpoint.has_method("get"));
    assert!(endpoint.has_method("put"));
    assert!(!endpoint.has_method("delete"));
}
