//! A fault-injection TCP proxy, to break the network between a client (lapin) and its server
//! (RabbitMQ) on purpose, at any time, from a test.
//!
//! [`FaultProxy::start`] listens on `127.0.0.1:<ephemeral>` and forwards every connection to
//! the upstream address; the client connects to [`FaultProxy::addr`] instead. The faults, each
//! switchable at any time, and reacted to at once by every connection:
//!
//! - [`FaultProxy::cut`]: every connection open now (forwarded, stalled or black-holed) is
//!   closed on both sides; new ones are still accepted and forwarded.
//! - [`FaultProxy::stall`]: a stalled network. No byte moves any more, either way, on any
//!   connection, open or new, and no socket is closed: the proxy stops reading, so the bytes
//!   wait in kernel buffers (and senders block when those are full). A connection accepted while
//!   stalled connects upstream only once healed.
//! - [`FaultProxy::refuse`]: the proxy stops listening, so new connections are refused
//!   (`ECONNREFUSED`); open ones are left as they are.
//! - [`FaultProxy::blackhole`]: new connections are accepted but never forwarded nor answered
//!   (a host that takes TCP but never speaks AMQP); open ones are left as they are.
//! - [`FaultProxy::heal`]: back to normal: listening again on the same port, forwarding new
//!   connections, stalled ones resuming where they stopped. Black-holed connections stay
//!   black-holed (until [`FaultProxy::cut`] or the drop of the proxy).
//!
//! `stall`, `refuse`, `blackhole` and `heal` switch between exclusive modes: each replaces the
//! previous one (so `refuse` or `blackhole` after `stall` also resumes the stalled connections).
//! `cut` is a one-off and leaves the mode as it is.
//!
//! Dropping the proxy stops listening and closes every connection it holds.
// Each test crate uses only some of these.
#![allow(dead_code, clippy::expect_used)]

use std::future::poll_fn;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;

/// The copy buffer of each direction of each connection.
const BUFFER: usize = 32 * 1024;
/// How long [`FaultProxy::heal`] retries to listen again on the port before giving up.
const REBIND_FOR: Duration = Duration::from_secs(2);

/// What happens to connections, as switched by the test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Forward,
    Stall,
    Refuse,
    Blackhole,
}

/// What every task of the proxy watches.
#[derive(Clone, Copy, Debug)]
struct Control {
    mode: Mode,
    /// How many times [`FaultProxy::cut`] was called: a connection accepted when this was `n`
    /// ends as soon as it is no longer `n`.
    cuts: u64,
    /// The proxy was dropped: everything ends.
    closed: bool,
}

/// The state shared with the tasks.
struct Shared {
    /// `None` while refusing (or once dropped).
    listener: Mutex<Option<TcpListener>>,
    open: AtomicUsize,
    accepted: AtomicUsize,
}

impl Shared {
    fn listener(&self) -> MutexGuard<'_, Option<TcpListener>> {
        self.listener.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A TCP proxy to one upstream address that injects faults on demand (see the module docs).
pub(crate) struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    control: watch::Sender<Control>,
    runtime: tokio::runtime::Handle,
}

impl FaultProxy {
    /// Listens on 127.0.0.1:<ephemeral> and forwards every connection to `upstream`.
    pub(crate) async fn start(upstream: SocketAddr) -> FaultProxy {
        let listener = listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .expect("fault proxy: listen on 127.0.0.1");
        let addr = listener
            .local_addr()
            .expect("fault proxy: the listener's address");
        let shared = Arc::new(Shared {
            listener: Mutex::new(Some(listener)),
            open: AtomicUsize::new(0),
            accepted: AtomicUsize::new(0),
        });
        let (control, watcher) = watch::channel(Control {
            mode: Mode::Forward,
            cuts: 0,
            closed: false,
        });
        tokio::spawn(accept_loop(Arc::clone(&shared), watcher, upstream));
        FaultProxy {
            addr,
            shared,
            control,
            runtime: tokio::runtime::Handle::current(),
        }
    }

    /// The address clients connect to (it stays the same across [`FaultProxy::refuse`]).
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port clients connect to, on 127.0.0.1.
    pub(crate) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Closes every connection open now, on both sides (the client sees its socket
    /// closed/reset at once); new connections are still accepted and forwarded.
    pub(crate) fn cut(&self) {
        self.control.send_modify(|control| control.cuts += 1);
    }

    /// A stalled network: stops moving bytes in both directions on every connection, open or
    /// new, while keeping all sockets open (nothing is closed, nothing is answered). Bytes are
    /// not dropped: they wait in kernel buffers.
    pub(crate) fn stall(&self) {
        self.set_mode(Mode::Stall);
    }

    /// New connections are refused (`ECONNREFUSED`: the proxy stops listening); open
    /// connections are left as they are.
    pub(crate) fn refuse(&self) {
        self.set_mode(Mode::Refuse);
    }

    /// New connections are accepted but never forwarded nor answered; open connections are
    /// left as they are.
    pub(crate) fn blackhole(&self) {
        self.set_mode(Mode::Blackhole);
    }

    /// Back to normal for new and stalled connections: listening (on the same port),
    /// forwarding, stalled ones resume where they stopped.
    pub(crate) fn heal(&self) {
        self.set_mode(Mode::Forward);
    }

    /// How many client connections are open through the proxy now (forwarded ones, stalled
    /// or not; not black-holed ones).
    pub(crate) fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// How many connections were accepted since start, in every mode.
    pub(crate) fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Listens iff the mode is not [`Mode::Refuse`], then tells every task about the mode.
    fn set_mode(&self, mode: Mode) {
        if mode == Mode::Refuse {
            // Closing the listening socket is what makes connecting fail at once.
            drop(self.shared.listener().take());
        } else if self.shared.listener().is_none() {
            let listener = self.listen_again();
            let mut slot = self.shared.listener();
            if slot.is_none() {
                *slot = Some(listener);
            }
        }
        // After the listener changed: this wakes the accept loop, which polls it again.
        self.control.send_modify(|control| control.mode = mode);
    }

    /// Listens on the same address again, retrying briefly (the port is free, but another
    /// socket may grab it meanwhile).
    fn listen_again(&self) -> TcpListener {
        let _runtime = self.runtime.enter();
        let deadline = Instant::now() + REBIND_FOR;
        loop {
            match listen(self.addr) {
                Ok(listener) => return listener,
                Err(error) if Instant::now() < deadline => {
                    eprintln!("fault proxy: listening again on {}: {error}", self.addr);
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(error) => panic!(
                    "fault proxy: cannot listen again on {} after {REBIND_FOR:?}: {error}",
                    self.addr
                ),
            }
        }
    }
}

impl Drop for FaultProxy {
    /// Stops listening now; every task sees `closed` and ends, closing its sockets.
    fn drop(&mut self) {
        drop(self.shared.listener().take());
        self.control.send_modify(|control| control.closed = true);
    }
}

/// A listening socket on `addr`, with `SO_REUSEADDR` so that the port can be bound again while
/// connections accepted on it are still open (or in `TIME_WAIT`).
fn listen(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

/// Accepts connections while the proxy lives, and hands each to a task of its own.
async fn accept_loop(
    shared: Arc<Shared>,
    mut control: watch::Receiver<Control>,
    upstream: SocketAddr,
) {
    loop {
        if control.borrow_and_update().closed {
            return;
        }
        let accepted = tokio::select! {
            biased;
            changed = control.changed() => {
                if changed.is_err() {
                    return;
                }
                continue;
            }
            accepted = poll_fn(|cx| poll_accept(&shared, cx)) => accepted,
        };
        let client = match accepted {
            Ok((client, _)) => client,
            Err(error) => {
                eprintln!("fault proxy: accept failed: {error}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let now = *control.borrow();
        if now.mode == Mode::Blackhole {
            tokio::spawn(hold(client, control.clone(), now.cuts));
        } else {
            let open = OpenConnection::new(&shared);
            tokio::spawn(forward(client, upstream, control.clone(), now.cuts, open));
        }
    }
}

/// Accepts on the current listener; without one (refusing), waits for a change of mode, which
/// wakes the accept loop.
fn poll_accept(shared: &Shared, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
    match shared.listener().as_ref() {
        Some(listener) => listener.poll_accept(cx),
        None => Poll::Pending,
    }
}

/// Counts a forwarded connection as open while it lives.
struct OpenConnection(Arc<Shared>);

impl OpenConnection {
    fn new(shared: &Arc<Shared>) -> OpenConnection {
        shared.open.fetch_add(1, Ordering::SeqCst);
        OpenConnection(Arc::clone(shared))
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The connection ends: cut, proxy dropped, or an I/O failure (already reported).
struct Ended;

/// Waits while stalled; fails once the connection is cut or the proxy dropped.
async fn flowing(control: &mut watch::Receiver<Control>, cuts: u64) -> Result<(), Ended> {
    let now = *control
        .wait_for(|now| now.closed || now.cuts != cuts || now.mode != Mode::Stall)
        .await
        .map_err(|_| Ended)?;
    if now.closed || now.cuts != cuts {
        Err(Ended)
    } else {
        Ok(())
    }
}

/// Returns once the connection is cut or the proxy dropped.
async fn ended(control: &mut watch::Receiver<Control>, cuts: u64) {
    let _ = control.wait_for(|now| now.closed || now.cuts != cuts).await;
}

/// A black-holed connection: held open, never read, until cut or the proxy is dropped.
async fn hold(client: TcpStream, mut control: watch::Receiver<Control>, cuts: u64) {
    ended(&mut control, cuts).await;
    drop(client);
}

/// Forwards one connection both ways until both are done, or either fails or is cut.
async fn forward(
    client: TcpStream,
    upstream: SocketAddr,
    mut control: watch::Receiver<Control>,
    cuts: u64,
    _open: OpenConnection,
) {
    // While stalled, nothing is answered, not even by connecting upstream.
    if flowing(&mut control, cuts).await.is_err() {
        return;
    }
    let server = tokio::select! {
        biased;
        () = ended(&mut control, cuts) => return,
        server = TcpStream::connect(upstream) => match server {
            Ok(server) => server,
            Err(error) => {
                eprintln!("fault proxy: connecting to {upstream}: {error}");
                return;
            }
        },
    };
    // Small frames (heartbeats, acks) should not wait for Nagle.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (server_read, server_write) = server.into_split();
    // The first failure ends both ways; the sockets close when this returns.
    let _ = tokio::try_join!(
        pump(
            client_read,
            server_write,
            control.clone(),
            cuts,
            "client -> upstream"
        ),
        pump(
            server_read,
            client_write,
            control,
            cuts,
            "upstream -> client"
        ),
    );
}

/// Copies `from` to `to` until EOF (passed on by shutting down `to`), failure or cut; holds
/// still while stalled, at any point of the copy.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut control: watch::Receiver<Control>,
    cuts: u64,
    way: &'static str,
) -> Result<(), Ended> {
    let mut buffer = vec![0; BUFFER];
    loop {
        flowing(&mut control, cuts).await?;
        let read = tokio::select! {
            biased;
            changed = control.changed() => {
                changed.map_err(|_| Ended)?;
                continue;
            }
            read = from.read(&mut buffer) => read,
        };
        let len = match read {
            // Half-close: pass the EOF on; the other way goes on.
            Ok(0) => return to.shutdown().await.map_err(|_| Ended),
            Ok(len) => len,
            Err(error) => {
                eprintln!("fault proxy: {way}: read failed: {error}");
                return Err(Ended);
            }
        };
        let mut done = 0;
        while done < len {
            flowing(&mut control, cuts).await?;
            let written = tokio::select! {
                biased;
                changed = control.changed() => {
                    changed.map_err(|_| Ended)?;
                    continue;
                }
                written = to.write(&buffer[done..len]) => written,
            };
            match written {
                Ok(0) => {
                    eprintln!("fault proxy: {way}: the socket takes no more bytes");
                    return Err(Ended);
                }
                Ok(written) => done += written,
                Err(error) => {
                    eprintln!("fault proxy: {way}: write failed: {error}");
                    return Err(Ended);
                }
            }
        }
    }
}
