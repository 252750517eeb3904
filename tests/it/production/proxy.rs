//! The fault-injection proxy of the tests (`tests/it/common/proxy.rs`) on its own, in front of a
//! local echo server: no broker needed.

use std::future::Future;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::common::proxy::FaultProxy;
use crate::common::until;

/// Long enough for anything that should happen; short enough that a hang fails fast.
const LONG: Duration = Duration::from_secs(5);
/// How long we listen before concluding that nothing (more) arrives.
const QUIET: Duration = Duration::from_millis(300);
/// How soon a cut or dropped connection must look closed to the client.
const CLOSE: Duration = Duration::from_secs(1);

/// An echo server on 127.0.0.1 that counts its connections.
struct Echo {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// Connections whose echo ended (EOF or error from the proxy's side).
    ended: Arc<AtomicUsize>,
}

impl Echo {
    async fn start() -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let ended = Arc::new(AtomicUsize::new(0));
        tokio::spawn({
            let accepted = Arc::clone(&accepted);
            let ended = Arc::clone(&ended);
            async move {
                while let Ok((mut socket, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let ended = Arc::clone(&ended);
                    tokio::spawn(async move {
                        let (mut read, mut write) = socket.split();
                        let _ = tokio::io::copy(&mut read, &mut write).await;
                        let _ = write.shutdown().await;
                        ended.fetch_add(1, Ordering::SeqCst);
                    });
                }
            }
        });
        Echo {
            addr,
            accepted,
            ended,
        }
    }

    fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    fn ended(&self) -> usize {
        self.ended.load(Ordering::SeqCst)
    }
}

/// `future`'s output, or a failed test after [`LONG`].
async fn within<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(LONG, future)
        .await
        .unwrap_or_else(|_| panic!("timed out: {what}"))
}

async fn connect(addr: SocketAddr) -> TcpStream {
    within("connect", TcpStream::connect(addr))
        .await
        .unwrap_or_else(|error| panic!("connect to {addr}: {error}"))
}

/// Bytes that show misplaced or lost chunks.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

/// Sends `len` bytes and reads them back (small enough to fit in socket buffers).
async fn round_trip(stream: &mut TcpStream, len: usize) {
    let sent = pattern(len);
    within("write", stream.write_all(&sent)).await.unwrap();
    let mut got = vec![0; len];
    within("echo", stream.read_exact(&mut got)).await.unwrap();
    assert!(got == sent, "the echo differs from what was sent");
}

/// Sends `sent` then EOF while reading the echo to its EOF, concurrently.
async fn echo_all(stream: TcpStream, sent: &[u8]) -> Vec<u8> {
    let (mut read, mut write) = stream.into_split();
    let writing = async {
        write.write_all(sent).await.unwrap();
        write.shutdown().await.unwrap();
    };
    let reading = async {
        let mut got = Vec::new();
        read.read_to_end(&mut got).await.unwrap();
        got
    };
    within("echo of everything", async {
        tokio::join!(writing, reading).1
    })
    .await
}

/// Nothing arrives for [`QUIET`], and the socket stays open.
async fn quiet(stream: &mut TcpStream) {
    let mut buffer = [0; 1024];
    match tokio::time::timeout(QUIET, stream.read(&mut buffer)).await {
        Err(_) => {}
        Ok(Ok(0)) => panic!("the socket was closed"),
        Ok(Ok(len)) => panic!("{len} bytes arrived"),
        Ok(Err(error)) => panic!("the socket failed: {error}"),
    }
}

/// The socket is closed (EOF or reset) within [`CLOSE`].
async fn closed(stream: &mut TcpStream) {
    let mut buffer = [0; 1024];
    match tokio::time::timeout(CLOSE, stream.read(&mut buffer)).await {
        Err(_) => panic!("the socket is still open after {CLOSE:?}"),
        Ok(Ok(0) | Err(_)) => {}
        Ok(Ok(len)) => panic!("{len} bytes arrived instead of a close"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_bytes_both_ways() {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.addr).await;
    assert_eq!(proxy.addr().port(), proxy.port());
    assert!(proxy.addr().ip().is_loopback());

    let mut stream = connect(proxy.addr()).await;
    for len in [1, 100, 4096, 8000] {
        round_trip(&mut stream, len).await;
    }
    // 1 MB both ways at once, then half-closes: EOF goes through both ways.
    let sent = pattern(1 << 20);
    let got = echo_all(stream, &sent).await;
    assert_eq!(got.len(), sent.len());
    assert!(got == sent, "the 1 MB echo differs from what was sent");

    until("the connection is closed", LONG, || {
        proxy.open_connections() == 0
    })
    .await;
    until("the echo is done", LONG, || echo.ended() == 1).await;
    assert_eq!(proxy.accepted(), 1);
    assert_eq!(echo.accepted(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_closes_open_connections_on_both_sides() {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.addr).await;
    let mut first = connect(proxy.addr()).await;
    let mut second = connect(proxy.addr()).await;
    round_trip(&mut first, 100).await;
    round_trip(&mut second, 100).await;
    assert_eq!(proxy.open_connections(), 2);

    // Both idle.
    proxy.cut();
    closed(&mut first).await;
    closed(&mut second).await;
    until("the cut connections are gone", LONG, || {
        proxy.open_connections() == 0
    })
    .await;
    until("the upstream sides are closed", LONG, || echo.ended() == 2).await;

    let mut third = connect(proxy.addr()).await;
    round_trip(&mut third, 4096).await;
    assert_eq!(proxy.open_connections(), 1);
    assert_eq!(proxy.accepted(), 3);
    assert_eq!(echo.accepted(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_holds_bytes_until_heal() {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.addr).await;
    let mut open = connect(proxy.addr()).await;
    round_trip(&mut open, 100).await;

    proxy.stall();
    let sent = pattern(4096);
    within("write", open.write_all(&sent)).await.unwrap();
    quiet(&mut open).await;
    // A new connection is taken by the kernel, but nothing answers, nor reaches upstream.
    let mut new = connect(proxy.addr()).await;
    within("write", new.write_all(&sent)).await.unwrap();
    quiet(&mut new).await;
    quiet(&mut open).await;
    assert_eq!(echo.accepted(), 1);
    until("the stalled connection is accepted", LONG, || {
        proxy.open_connections() == 2
    })
    .await;

    proxy.heal();
    for stream in [&mut open, &mut new] {
        let mut got = vec![0; sent.len()];
        within("the stalled echo", stream.read_exact(&mut got))
            .await
            .unwrap();
        assert!(got == sent, "the stalled echo differs from what was sent");
        round_trip(stream, 100).await;
    }
    assert_eq!(echo.accepted(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stall_stops_a_transfer_midway_and_heal_resumes_it() {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.addr).await;
    let stream = connect(proxy.addr()).await;
    // More than all the socket buffers on the way can hold.
    let sent = Arc::new(pattern(16 << 20));
    let (mut read, mut write) = stream.into_split();
    let writing = tokio::spawn({
        let sent = Arc::clone(&sent);
        async move {
            write.write_all(&sent).await.unwrap();
            write.shutdown().await.unwrap();
        }
    });

    let mut got = vec![0; 64 << 10];
    within("the start of the echo", read.read_exact(&mut got))
        .await
        .unwrap();
    proxy.stall();
    // What was already on its way still arrives; then nothing, and no EOF.
    let mut buffer = vec![0; 64 << 10];
    within("the stall", async {
        loop {
            match tokio::time::timeout(QUIET, read.read(&mut buffer)).await {
                Err(_) => break,
                Ok(Ok(0)) => panic!("EOF while stalled"),
                Ok(Ok(len)) => got.extend_from_slice(&buffer[..len]),
                Ok(Err(error)) => panic!("the socket failed while stalled: {error}"),
            }
        }
    })
    .await;
    assert!(
        got.len() < sent.len(),
        "the whole transfer went through a stall"
    );
    assert!(!writing.is_finished(), "the writer was not held back");
    assert_eq!(proxy.open_connections(), 1);

    proxy.heal();
    within("the rest of the echo", read.read_to_end(&mut got))
        .await
        .unwrap();
    within("the writer", writing).await.unwrap();
    assert_eq!(got.len(), sent.len());
    assert!(got == *sent, "the echo differs from what was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refuse_refuses_new_connections_only() {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.addr).await;
    let mut open = connect(proxy.addr()).await;
    round_trip(&mut open, 100).await;

    proxy.refuse();
    let refused = within("a refused connect", TcpStream::connect(proxy.addr())).await;
    match refused {
        Err(error) => assert_eq!(error.kind(), ErrorKind::ConnectionRefused, "{error}"),
        Ok(_) => panic!("connected while refusing"),
    }
    round_trip(&mut open, 4096).await;
    assert_eq!(proxy.accepted(), 1);

    proxy.heal();
    let mut new = connect(proxy.addr()).await;
    round_trip(&mut new, 4096).await;
    round_trip(&mut open, 100).await;
    assert_eq!(proxy.accepted(), 2);
    assert_eq!(proxy.open_connections(), 2);
}

/// The same on one thread: switching modes never waits for the proxy's tasks.
#[tokio::test]
async fn refuse_and_heal_on_a_current_thread_runtime() {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.addr).await;
    let port = proxy.port();
    for _ in 0..3 {
        proxy.refuse();
        let refused = within("a refused connect", TcpStream::connect(proxy.addr())).await;
        assert_eq!(
            refused.err().map(|error| error.kind()),
            Some(ErrorKind::ConnectionRefused)
        );
        proxy.heal();
        let mut stream = connect(proxy.addr()).await;
        round_trip(&mut stream, 100).await;
    }
    assert_eq!(proxy.port(), port);
    assert_eq!(proxy.accepted(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackhole_accepts_but_never_answers() {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.addr).await;
    let mut open = connect(proxy.addr()).await;
    round_trip(&mut open, 100).await;

    proxy.blackhole();
    let mut held = connect(proxy.addr()).await;
    within("write", held.write_all(b"AMQP\x00\x00\x09\x01"))
        .await
        .unwrap();
    quiet(&mut held).await;
    until("the black-holed connection is accepted", LONG, || {
        proxy.accepted() == 2
    })
    .await;
    assert_eq!(echo.accepted(), 1);
    assert_eq!(proxy.open_connections(), 1);
    // Open connections are left as they are.
    round_trip(&mut open, 100).await;

    proxy.heal();
    let mut new = connect(proxy.addr()).await;
    round_trip(&mut new, 4096).await;
    // The black-holed one stays so, until cut.
    quiet(&mut held).await;
    assert_eq!(proxy.open_connections(), 2);
    proxy.cut();
    closed(&mut held).await;
    closed(&mut open).await;
    closed(&mut new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_open_and_accepted_connections() {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.addr).await;
    assert_eq!((proxy.open_connections(), proxy.accepted()), (0, 0));

    let mut first = connect(proxy.addr()).await;
    let mut second = connect(proxy.addr()).await;
    round_trip(&mut first, 10).await;
    round_trip(&mut second, 10).await;
    assert_eq!((proxy.open_connections(), proxy.accepted()), (2, 2));

    drop(first);
    until("the closed connection is gone", LONG, || {
        proxy.open_connections() == 1
    })
    .await;

    proxy.blackhole();
    let _held = connect(proxy.addr()).await;
    until("the black-holed connection is accepted", LONG, || {
        proxy.accepted() == 3
    })
    .await;
    assert_eq!(proxy.open_connections(), 1);

    proxy.refuse();
    let refused = within("a refused connect", TcpStream::connect(proxy.addr())).await;
    assert!(refused.is_err(), "connected while refusing");
    proxy.stall();
    let _stalled = connect(proxy.addr()).await;
    until("the stalled connection is accepted", LONG, || {
        proxy.accepted() == 4
    })
    .await;
    assert_eq!(proxy.open_connections(), 2);

    proxy.heal();
    round_trip(&mut second, 10).await;
    proxy.cut();
    until("every connection is gone", LONG, || {
        proxy.open_connections() == 0
    })
    .await;
    assert_eq!(proxy.accepted(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_stops_listening_and_closes_everything() {
    let echo = Echo::start().await;
    let proxy = FaultProxy::start(echo.addr).await;
    let addr = proxy.addr();
    let mut open = connect(addr).await;
    round_trip(&mut open, 100).await;
    proxy.blackhole();
    let mut held = connect(addr).await;
    proxy.stall();
    let mut stalled = connect(addr).await;
    until("every connection is accepted", LONG, || {
        proxy.accepted() == 3
    })
    .await;

    drop(proxy);
    let refused = within("a refused connect", TcpStream::connect(addr)).await;
    assert_eq!(
        refused.err().map(|error| error.kind()),
        Some(ErrorKind::ConnectionRefused)
    );
    closed(&mut open).await;
    closed(&mut stalled).await;
    closed(&mut held).await;
    until("the upstream side is closed", LONG, || echo.ended() == 1).await;
}
