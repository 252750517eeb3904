//! The generated code names everything by absolute path: it compiles without the prelude,
//! with the runtime crate renamed, and passes `#![deny(missing_docs)]`.
#![no_implicit_prelude]
#![deny(missing_docs)]

extern crate amqp_rpc as rpc_renamed;
extern crate serde;
extern crate std;

use rpc_renamed::Context;

// Names the generated code must not pick up from the scope it is expanded in.
#[allow(dead_code)]
struct Result;
#[allow(dead_code)]
struct Option;
#[allow(dead_code)]
struct Box;
#[allow(dead_code)]
struct Send;
#[allow(dead_code)]
struct Endpoint;
#[allow(dead_code)]
struct Version;
#[allow(dead_code)]
mod serde_json {}

/// The error of `Service::fallible`.
#[derive(::std::fmt::Debug, serde::Serialize, serde::Deserialize)]
pub struct Refused {
    /// Why.
    pub reason: ::std::string::String,
}

impl ::std::fmt::Display for Refused {
    fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
        f.write_str(&self.reason)
    }
}

/// A service exercising every kind of method.
#[rpc_renamed::rpc_endpoint(crate = "rpc_renamed", namespace = "hygiene", version = "1.1")]
#[rpc_renamed::rpc_client]
pub trait Service {
    /// Takes the request context.
    async fn with_ctx(&self, ctx: &Context, value: ::std::vec::Vec<u8>) -> ::std::string::String;
    /// May fail with the service's own error.
    async fn fallible(
        &self,
        r#type: ::std::option::Option<i32>,
    ) -> ::std::result::Result<u64, Refused>;
    /// Fire and forget.
    #[rpc(cast, since = "1.1")]
    async fn notify(&self, event: ::std::string::String);
    /// Takes nothing, returns nothing.
    async fn nothing(&self);
}

struct Impl;

impl Service for Impl {
    async fn with_ctx(&self, _ctx: &Context, _value: ::std::vec::Vec<u8>) -> ::std::string::String {
        ::std::string::String::new()
    }
    async fn fallible(
        &self,
        _type: ::std::option::Option<i32>,
    ) -> ::std::result::Result<u64, Refused> {
        ::std::result::Result::Ok(0)
    }
    async fn notify(&self, _event: ::std::string::String) {}
    async fn nothing(&self) {}
}

fn assert_endpoint<E: rpc_renamed::Endpoint>() {}

fn main() {
    assert_endpoint::<ServiceEndpoint<Impl>>();
    let _ = ServiceClient::NAMESPACE;
}
