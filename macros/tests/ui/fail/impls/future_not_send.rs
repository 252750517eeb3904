// The trait's futures must be `Send` so that a multi-threaded server can run them; an
// implementation holding an `Rc` across an `.await` is refused where it is written.
use std::rc::Rc;

use amqp_rpc::rpc_endpoint;

#[rpc_endpoint]
pub trait Counter {
    async fn next(&self) -> u64;
}

struct Impl;

async fn tick() {}

impl Counter for Impl {
    async fn next(&self) -> u64 {
        let shared = Rc::new(1);
        tick().await;
        *shared
    }
}

fn main() {}
