//! A `Result` under another name is refused by a type check, at the return type.
use amqp_rpc::{rpc_client, rpc_endpoint};

/// Looks like a value to the macro.
pub type Fallible<T> = Result<T, String>;

#[rpc_endpoint]
#[rpc_client]
pub trait Files {
    async fn size(&self, path: String) -> Fallible<u64>;
    /// An `Option` of a `Result` is a value: fine.
    async fn maybe(&self) -> Option<Fallible<u64>>;
}

fn main() {}
