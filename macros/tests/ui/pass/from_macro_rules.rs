//! The trait written by a `macro_rules!` macro, with the methods from its caller: the names the
//! generated code binds and uses (context, arguments, locals) resolve across the two contexts.

use amqp_rpc::{Context, Endpoint};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize)]
pub struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("refused")
    }
}

macro_rules! service {
    ($name:ident { $($methods:tt)* }) => {
        #[amqp_rpc::rpc_endpoint(namespace = "generated")]
        #[amqp_rpc::rpc_client]
        pub trait $name {
            $($methods)*
        }
    };
}

service!(Generated {
    async fn add(&self, ctx: &Context, x: i64, y: i64) -> Result<i64, Refused>;
    async fn get(&self, key: String) -> Option<String>;
    #[rpc(cast)]
    async fn log(&self, context: &Context, line: String);
});

struct Impl;

impl Generated for Impl {
    async fn add(&self, _ctx: &Context, x: i64, y: i64) -> Result<i64, Refused> {
        Ok(x + y)
    }
    async fn get(&self, _key: String) -> Option<String> {
        None
    }
    async fn log(&self, _context: &Context, _line: String) {}
}

fn main() {
    let endpoint = GeneratedEndpoint::new(Impl);
    assert!(endpoint.has_method("add") && endpoint.has_method("get") && endpoint.has_method("log"));
    let _ = GeneratedClient::NAMESPACE;
}
