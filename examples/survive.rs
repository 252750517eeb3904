//! A server and a client that outlive their broker connections: the client calls once every
//! 50 ms for a while and reports each change of either connection's state, then how the calls
//! went. Cut the connections meanwhile, restart the broker, or stop a node of a cluster.
//!
//! ```text
//! TRANSPORT_URL=rabbit://guest:guest@127.0.0.1:5672/ cargo run --example survive -- 20
//! rabbitmqctl close_all_connections "cut by hand"      # in another terminal
//! ```

use std::time::{Duration, Instant};

use amqp_rpc::{RpcServer, Target, Transport, rpc_client, rpc_endpoint};

/// The service called.
#[rpc_endpoint]
#[rpc_client]
pub trait Clock {
    /// The server's uptime in milliseconds.
    async fn uptime(&self) -> u64;
}

struct Uptime(Instant);

impl Clock for Uptime {
    async fn uptime(&self) -> u64 {
        u64::try_from(self.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Prints every state of `transport`'s connection, with the time since `start`.
fn report_states(name: &'static str, transport: &Transport, start: Instant) {
    let mut states = transport.watch_connection();
    tokio::spawn(async move {
        while states.changed().await.is_ok() {
            let state = states.borrow_and_update().clone();
            println!("{:>6.2} s  {name}: {state}", start.elapsed().as_secs_f64());
        }
    });
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("TRANSPORT_URL")
        .map_err(|_| "set TRANSPORT_URL, e.g. rabbit://guest:guest@127.0.0.1:5672/")?;
    let seconds: u64 = match std::env::args().nth(1) {
        Some(arg) => arg
            .parse()
            .map_err(|_| format!("not a number of seconds: {arg}"))?,
        None => 20,
    };
    let start = Instant::now();

    let server_transport = Transport::from_url(&url).await?;
    let server = RpcServer::builder(&server_transport, Target::server("clock", "clock-1"))
        .endpoint(Uptime(start).into_rpc())
        .build()?;
    server.start().await?;
    let transport = Transport::from_url(&url).await?;
    report_states("server", &server_transport, start);
    report_states("client", &transport, start);
    println!("calling for {seconds} s; cut the connections meanwhile");

    let client = ClockClient::new(&transport, "clock").with_timeout(Duration::from_secs(30));
    let (mut calls, mut failed) = (0u32, 0u32);
    let mut last_success = Instant::now();
    let mut longest_stall = Duration::ZERO;
    while start.elapsed() < Duration::from_secs(seconds) {
        calls += 1;
        match client.uptime().await {
            Ok(_) => {
                longest_stall = longest_stall.max(last_success.elapsed());
                last_success = Instant::now();
            }
            Err(e) => {
                failed += 1;
                println!("{:>6.2} s  call failed: {e}", start.elapsed().as_secs_f64());
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!("{calls} calls, {failed} failed, longest time without an answer {longest_stall:.2?}");
    server.stop().await;
    server.wait().await;
    Ok(())
}
