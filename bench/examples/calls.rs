//! A fixed amount of `memory://` work for instruction counting (callgrind): `CALLS` calls of
//! an `echo(payload: String) -> String` endpoint with a payload of `BYTES` bytes, `IN_FLIGHT`
//! at a time, client and server on one thread (so the count is the same from run to run).
//!
//! ```text
//! cargo build --release -p amqp-rpc-bench --example calls
//! valgrind --tool=callgrind target/release/examples/calls 2000 65536 1
//! valgrind --tool=callgrind target/release/examples/calls 4000 65536 1
//! ```
//!
//! Instructions per call = (total(4000) − total(2000)) / 2000, which takes out start-up. See
//! `bench/PROFILING.md`.

use std::sync::Arc;

use amqp_rpc::{RpcServer, Target, Transport, rpc_client, rpc_endpoint};
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;

/// The bench's endpoint.
#[rpc_endpoint]
#[rpc_client]
pub trait Echo {
    /// Returns `payload`.
    async fn echo(&self, payload: String) -> String;
}

struct Server;

impl Echo for Server {
    async fn echo(&self, payload: String) -> String {
        payload
    }
}

fn arg(n: usize, default: usize) -> usize {
    std::env::args()
        .nth(n)
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (calls, bytes, in_flight) = (arg(1, 2000), arg(2, 100), arg(3, 1).max(1));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let transport = Transport::from_url("memory://").await?;
        let server = RpcServer::builder(&transport, Target::server("calls", "one"))
            .endpoint(Server.into_rpc())
            .build()?;
        server.start().await?;
        let client = Arc::new(EchoClient::new(&transport, "calls"));
        let payload = "x".repeat(bytes);
        let call =
            |client: Arc<EchoClient>, payload: String| async move { client.echo(payload).await };
        let mut pending = FuturesUnordered::new();
        let mut started = 0;
        while started < in_flight.min(calls) {
            pending.push(call(client.clone(), payload.clone()));
            started += 1;
        }
        let mut done = 0;
        while let Some(reply) = pending.next().await {
            if reply?.len() != bytes {
                return Err("a reply of the wrong length".into());
            }
            done += 1;
            if started < calls {
                pending.push(call(client.clone(), payload.clone()));
                started += 1;
            }
        }
        server.stop().await;
        println!("{done} calls of {bytes} B");
        Ok(())
    })
}
