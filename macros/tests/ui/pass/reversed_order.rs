//! The client attribute first, carrying the arguments; the endpoint attribute bare.

use amqp_rpc::{Endpoint, rpc_client, rpc_endpoint};

#[rpc_client(namespace = "x", version = "1.2")]
#[rpc_endpoint]
pub trait Echo {
    async fn echo(&self, text: String) -> String;
    #[rpc(since = "1.2")]
    async fn shout(&self, text: String) -> String;
}

struct Impl;

impl Echo for Impl {
    async fn echo(&self, text: String) -> String {
        text
    }
    async fn shout(&self, text: String) -> String {
        text.to_uppercase()
    }
}

fn main() {
    let endpoint = EchoEndpoint::new(Impl);
    assert_eq!(endpoint.namespace(), Some("x"));
    assert_eq!(endpoint.version(), amqp_rpc::Version::new(1, 2));
    assert!(endpoint.has_method("shout"));
    assert_eq!(EchoClient::NAMESPACE, Some("x"));
    assert_eq!(EchoClient::VERSION, amqp_rpc::Version::new(1, 2));
}
