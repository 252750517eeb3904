//! A `Result` whose error type the macro cannot see is refused: its `Err` would be sent as a
//! successful value, which Python callers never see as an exception.
use amqp_rpc::{rpc_client, rpc_endpoint};

mod fallible {
    pub type Result<T> = std::result::Result<T, String>;
}

#[rpc_endpoint]
#[rpc_client]
pub trait Files {
    /// `io::Result<T>`: one parameter.
    async fn read(&self, path: String) -> std::io::Result<Vec<u8>>;
    /// A crate's alias, `Result<T>`.
    async fn size(&self, path: String) -> fallible::Result<u64>;
    /// A bare `Result`.
    async fn touch(&self, path: String) -> Result;
    /// Spelled out: fine.
    async fn exists(&self, path: String) -> std::result::Result<bool, String>;
}

type Result = std::result::Result<(), String>;

fn main() {}
