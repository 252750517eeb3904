//! A method with a default body that uses `self` (its future needs `Self: Sync`), and a
//! private client-only trait, which must not warn as unused.
#![deny(warnings)]

use amqp_rpc::{Context, Transport, rpc_client, rpc_endpoint};

#[rpc_endpoint]
#[rpc_client]
pub trait Greeter {
    /// The name to greet.
    async fn name(&self) -> String;
    /// A greeting, built from `name` unless overridden.
    async fn greet(&self, ctx: &Context) -> String {
        let _ = ctx;
        format!("hello, {}", self.name().await)
    }
}

struct World;

impl Greeter for World {
    async fn name(&self) -> String {
        "world".to_owned()
    }
}

#[rpc_client(namespace = "legacy")]
trait LegacyApi {
    async fn ping(&self);
}

fn main() {
    let endpoint = GreeterEndpoint::new(World);
    let greeting = futures_executor_free::block_on(endpoint.get_ref().greet(&Context::new()));
    assert_eq!(greeting, "hello, world");
    let transport = Transport::memory();
    let _legacy = LegacyApiClient::new(&transport, "legacy");
}

/// A tiny single-future executor, to run the default body without a runtime.
mod futures_executor_free {
    use std::future::Future;
    use std::pin::pin;
    use std::task::{Context, Poll, Waker};

    pub fn block_on<F: Future>(future: F) -> F::Output {
        let mut future = pin!(future);
        let mut cx = Context::from_waker(Waker::noop());
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
        }
    }
}
