//! The connection of a `rabbit://` transport, kept alive: it connects to the URL's hosts in
//! oslo's order, notices a lost connection, and reconnects with oslo's back-off until the
//! transport is closed.
//!
//! Why a loop of our own on fresh lapin connections rather than lapin's own recovery: lapin 4
//! reconnects to the one address of its URI (oslo fails over across the hosts of a multi-host
//! URL, each with its own credentials), gives up after a bounded number of exponential
//! back-offs (oslo retries forever, on a linear schedule), does not restore consumers the broker
//! cancelled (a deleted queue, a node gone) nor channels closed by an error, and its recovery
//! code changed in most releases since 4.0. Each connection here is a fresh lapin connection
//! with recovery off; the listeners (`subscription.rs`) re-declare and re-consume on it, and
//! publishers wait for it (`Transport::publish`).
//!
//! Each attempt to reach a host is bounded (TCP, TLS, the AMQP handshake and the first channel
//! together): the socket is opened here, not by lapin, so that an attempt that runs out of
//! time can be aborted by shutting the socket down, which also ends lapin's I/O thread.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::ConfirmSelectOptions;
use lapin::tcp::AsyncTcpStream;
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPUri, AMQPUserInfo, SASLMechanism};
use lapin::{Channel, Connection, ConnectionProperties};
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

use super::backoff::Schedule;
use super::tls::{self, Connector};
use crate::config::{LoginMethod, TransportConfig};
use crate::driver::ConnectionState;
use crate::error::TransportError;
use crate::sync::lock;
use crate::url::{TransportHost, TransportUrl};

/// The `tracing` target of connection events (connected, lost, reconnecting, restored,
/// blocked...), each with an `event` field, the host and the virtual host: filter or route
/// them with `amqp_rpc::connection`.
const EVENTS: &str = "amqp_rpc::connection";

/// How often the supervisor looks at the connection's status besides waiting for its events:
/// a safety net, should an error event be missed.
const STATUS_POLL: Duration = Duration::from_secs(1);

/// The transport's connection, as it is now and as it will be after reconnections. Cheap to
/// clone.
#[derive(Clone)]
pub(super) struct Link {
    shared: Arc<Shared>,
}

struct Shared {
    hosts: Vec<TransportHost>,
    virtual_host: String,
    config: TransportConfig,
    schedule: Schedule,
    tls: Option<Connector>,
    /// `connection_name`, as oslo: `<program>:<pid>:<uuid>`; kept across reconnections.
    name: String,
    /// The connection now; `None` while reconnecting and once closed.
    live: watch::Sender<Option<Arc<Live>>>,
    state: watch::Sender<ConnectionState>,
    closed: AtomicBool,
    /// Woken when an operation reports the connection lost.
    lost: Notify,
}

/// One open connection.
pub(super) struct Live {
    /// Counts connections: a listener that failed on generation `n` waits for `n + 1`.
    pub(super) generation: u64,
    pub(super) connection: Connection,
    host: usize,
    /// A duplicate of the socket's descriptor, to abort the connection at once.
    socket: Mutex<Option<std::net::TcpStream>>,
    /// Set once the loss is known, with its reason.
    lost: Mutex<Option<String>>,
    /// The channel opened with the connection, taken by the first publisher.
    pub(super) first_channel: Mutex<Option<Channel>>,
}

impl Live {
    /// Shuts the socket down: lapin's I/O loop ends and every operation on the connection fails.
    fn abort(&self) {
        if let Some(socket) = lock(&self.socket).take() {
            // Already gone is fine: we only want it closed.
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Whether the connection can still be used.
    pub(super) fn is_usable(&self) -> bool {
        lock(&self.lost).is_none() && self.connection.status().connected()
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.abort();
    }
}

impl Link {
    /// Connects to the first host (in oslo's order) that answers, trying each once within
    /// `connect_timeout`, and starts watching the connection.
    pub(super) async fn connect(
        url: &TransportUrl,
        config: TransportConfig,
    ) -> Result<Link, TransportError> {
        let tls = tls::connector(&config)?;
        if config.rabbit_login_method == LoginMethod::External
            && (tls.is_none() || config.ssl_cert_file.is_none())
        {
            return Err(TransportError::Tls {
                reason: "rabbit_login_method EXTERNAL needs ssl with ssl_cert_file and \
                         ssl_key_file"
                    .to_owned(),
            });
        }
        let hosts = url.hosts().to_vec();
        if hosts.is_empty() {
            return Err(TransportError::NoHosts);
        }
        let shared = Arc::new(Shared {
            schedule: Schedule::new(hosts.len(), &config),
            hosts,
            virtual_host: url.virtual_host().to_owned(),
            config,
            tls,
            name: connection_name(),
            live: watch::Sender::new(None),
            state: watch::Sender::new(ConnectionState::Reconnecting {
                attempts: 0,
                reason: "connecting".to_owned(),
            }),
            closed: AtomicBool::new(false),
            lost: Notify::new(),
        });
        let mut failures = Vec::new();
        for &host in shared.schedule.first_round() {
            match shared.connect_host(host, 1).await {
                Ok(live) => {
                    tracing::info!(target: EVENTS, event = "connected", host = %shared.hosts[host], vhost = shared.virtual_host, "connected to RabbitMQ");
                    if let Some(live) = shared.set_live(live) {
                        tokio::spawn(supervise(Arc::clone(&shared), live));
                    }
                    return Ok(Link { shared });
                }
                Err(reason) => {
                    tracing::warn!(target: EVENTS, event = "connect_failed", host = %shared.hosts[host], vhost = shared.virtual_host, reason, "cannot connect to RabbitMQ");
                    failures.push(format!("{} ({reason})", shared.hosts[host]));
                }
            }
        }
        Err(TransportError::Unreachable { attempts: failures })
    }

    pub(super) fn config(&self) -> &TransportConfig {
        &self.shared.config
    }

    /// The connection now, if one is up.
    pub(super) fn live(&self) -> Option<Arc<Live>> {
        self.shared.live.borrow().clone()
    }

    /// Waits for a connection newer than generation `after` (any, with `None`); fails only once
    /// the transport is closed.
    pub(super) async fn live_after(&self, after: Option<u64>) -> Result<Arc<Live>, TransportError> {
        let mut live = self.shared.live.subscribe();
        loop {
            if self.is_closed() {
                return Err(TransportError::closed());
            }
            if let Some(current) = live.borrow_and_update().clone()
                && after.is_none_or(|failed| current.generation > failed)
            {
                return Ok(current);
            }
            if live.changed().await.is_err() {
                return Err(TransportError::closed());
            }
        }
    }

    /// Reports that an operation found connection `live` broken: the supervisor reconnects.
    /// The state says `Reconnecting` when this returns, so a caller that then waits for a
    /// connection waits for the next one.
    pub(super) fn report_lost(&self, live: &Live, reason: impl Into<String>) {
        self.shared.mark_lost(live, reason.into());
    }

    pub(super) fn state(&self) -> watch::Receiver<ConnectionState> {
        self.shared.state.subscribe()
    }

    pub(super) fn is_closed(&self) -> bool {
        self.shared.closed.load(Ordering::Acquire)
    }

    /// Closes the connection for good.
    pub(super) async fn close(&self) {
        if self.shared.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        self.shared.state.send_replace(ConnectionState::Closed);
        let live = self.shared.live.send_replace(None);
        self.shared.lost.notify_one();
        if let Some(live) = live {
            let closing = live
                .connection
                .close(200, "closed by the application".into());
            // A connection that does not answer its close is aborted.
            match tokio::time::timeout(Duration::from_secs(2), closing).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "closing an already closed connection"),
                Err(_) => tracing::debug!("the broker did not confirm the close in time"),
            }
            live.abort();
        }
    }
}

impl Shared {
    /// Publishes a new connection; `None` if the transport was closed meanwhile.
    fn set_live(&self, live: Live) -> Option<Arc<Live>> {
        let host = self.hosts[live.host].to_string();
        let live = Arc::new(live);
        if self.closed.load(Ordering::Acquire) {
            live.abort();
            return None;
        }
        self.live.send_replace(Some(Arc::clone(&live)));
        self.state.send_replace(ConnectionState::Connected { host });
        Some(live)
    }

    /// Records that `live` is lost (once): listeners and publishers stop using it and the
    /// supervisor reconnects.
    fn mark_lost(&self, live: &Live, reason: String) {
        {
            let mut lost = lock(&live.lost);
            if lost.is_some() {
                return;
            }
            *lost = Some(reason.clone());
        }
        let current = self.live.send_if_modified(|current| {
            let is_it = current
                .as_ref()
                .is_some_and(|c| c.generation == live.generation);
            if is_it {
                *current = None;
            }
            is_it
        });
        // An older connection, already replaced, changes nothing.
        if current && !self.closed.load(Ordering::Acquire) {
            self.state.send_replace(ConnectionState::Reconnecting {
                attempts: 0,
                reason,
            });
            self.lost.notify_one();
        }
    }

    /// One attempt to connect to host `host`, bounded by `connect_timeout`.
    async fn connect_host(&self, host: usize, generation: u64) -> Result<Live, String> {
        let socket = Mutex::new(None);
        let attempt = self.open(host, &socket);
        let outcome = match tokio::time::timeout(self.config.connect_timeout, attempt).await {
            Ok(outcome) => outcome,
            Err(_elapsed) => Err(format!(
                "no connection within {:?} (connect_timeout)",
                self.config.connect_timeout
            )),
        };
        let socket = lock(&socket).take();
        match outcome {
            Ok((connection, channel)) => Ok(Live {
                generation,
                connection,
                host,
                socket: Mutex::new(socket),
                lost: Mutex::new(None),
                first_channel: Mutex::new(Some(channel)),
            }),
            Err(reason) => {
                // Ends lapin's I/O thread if the handshake was under way.
                if let Some(socket) = socket {
                    let _ = socket.shutdown(std::net::Shutdown::Both);
                }
                Err(reason)
            }
        }
    }

    /// TCP, TLS, AMQP, and the first channel (in confirm mode, for publishing).
    async fn open(
        &self,
        host: usize,
        socket: &Mutex<Option<std::net::TcpStream>>,
    ) -> Result<(Connection, Channel), String> {
        let target = &self.hosts[host];
        let tcp = tcp_connect(target.hostname(), target.port())
            .await
            .map_err(|e| format!("TCP connection failed: {e}"))?;
        let tcp = keep_descriptor(tcp, socket).map_err(|e| format!("socket: {e}"))?;
        let stream = AsyncTcpStream::Plain(async_compat::Compat::new(tcp));
        let stream = match &self.tls {
            Some(connector) => tls_handshake(stream, connector, target.hostname()).await?,
            None => stream,
        };
        // lapin asks for a stream once per connection (recovery is off): hand it ours.
        let stream = Mutex::new(Some(stream));
        let connect = move |_: AMQPUri, _| {
            let stream = lock(&stream).take();
            async move {
                stream.ok_or_else(|| {
                    lapin::Error::from(io::Error::other("amqp-rpc reconnects on its own"))
                })
            }
        };
        let runtime = lapin::runtime::default_runtime().map_err(|e| e.to_string())?;
        let properties =
            ConnectionProperties::default().with_connection_name(self.name.clone().into());
        let connection = Connection::connector(self.uri(target), runtime, connect, properties)
            .await
            .map_err(|e| format!("AMQP handshake failed: {e}"))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(|e| format!("cannot open a channel: {e}"))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| format!("cannot enable publisher confirms: {e}"))?;
        Ok((connection, channel))
    }

    /// What lapin is told of the host: credentials, virtual host, heartbeat, SASL mechanism.
    /// (The socket is already open: lapin does not use the host and port to connect.)
    fn uri(&self, host: &TransportHost) -> AMQPUri {
        let heartbeat =
            u16::try_from(self.config.heartbeat_timeout_threshold.as_secs()).unwrap_or(u16::MAX);
        AMQPUri {
            authority: AMQPAuthority {
                userinfo: AMQPUserInfo {
                    username: host.username().to_owned(),
                    password: host.password().to_owned(),
                },
                host: host.hostname().to_owned(),
                port: host.port(),
            },
            vhost: self.virtual_host.clone(),
            query: AMQPQueryString {
                heartbeat: Some(heartbeat),
                auth_mechanism: Some(match self.config.rabbit_login_method {
                    LoginMethod::AmqPlain => SASLMechanism::AMQPlain,
                    LoginMethod::Plain => SASLMechanism::Plain,
                    LoginMethod::External => SASLMechanism::External,
                    LoginMethod::RabbitCrDemo => SASLMechanism::RabbitCrDemo,
                }),
                ..AMQPQueryString::default()
            },
            ..AMQPUri::default()
        }
    }
}

/// Watches connection `live` and restores it when lost, until the transport is closed.
async fn supervise(shared: Arc<Shared>, mut live: Arc<Live>) {
    loop {
        let reason = wait_for_loss(&shared, &live).await;
        if shared.closed.load(Ordering::Acquire) {
            return;
        }
        shared.mark_lost(&live, reason.clone());
        live.abort();
        tracing::warn!(target: EVENTS, event = "lost", host = %shared.hosts[live.host], vhost = shared.virtual_host, reason, "connection to RabbitMQ lost; reconnecting");
        let (host, generation) = (live.host, live.generation);
        drop(live);
        match reconnect(&shared, host, generation).await {
            Some(restored) => live = restored,
            None => return,
        }
    }
}

/// Waits until connection `live` fails, and says why.
async fn wait_for_loss(shared: &Shared, live: &Live) -> String {
    let mut events = live.connection.events_listener();
    let mut poll = tokio::time::interval(STATUS_POLL);
    loop {
        if let Some(reason) = lock(&live.lost).clone() {
            return reason;
        }
        if shared.closed.load(Ordering::Acquire) {
            return "closed".to_owned();
        }
        if !live.connection.status().connected() {
            return "the connection is no longer open".to_owned();
        }
        tokio::select! {
            event = events.next() => match event {
                // lapin reports a channel the broker closed (a soft error, such as a 404)
                // here too: only an error that took the connection down is a loss.
                Some(lapin::Event::Error(e)) if !live.connection.status().connected() => {
                    return e.to_string();
                }
                Some(lapin::Event::Error(e)) => {
                    tracing::debug!(error = %e, "a channel error; the connection is fine");
                }
                Some(lapin::Event::ConnectionBlocked(reason)) => {
                    tracing::error!(target: EVENTS, event = "blocked", host = %shared.hosts[live.host], vhost = shared.virtual_host, reason, "the broker has blocked the connection");
                }
                Some(lapin::Event::ConnectionUnblocked) => {
                    tracing::info!(target: EVENTS, event = "unblocked", host = %shared.hosts[live.host], vhost = shared.virtual_host, "the broker has unblocked the connection");
                }
                Some(_) => {}
                None => return "the connection's events ended".to_owned(),
            },
            () = shared.lost.notified() => {}
            _ = poll.tick() => {}
        }
    }
}

/// Reconnects after connection `generation` to host `last_host` was lost: hosts in oslo's
/// failover order, oslo's pauses, until connected, or `None` once closed.
async fn reconnect(shared: &Shared, last_host: usize, generation: u64) -> Option<Arc<Live>> {
    let lost_at = Instant::now();
    let mut host = last_host;
    for attempt in 0u32.. {
        let pause = shared.schedule.pause_before(attempt);
        if !pause.is_zero() {
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                () = wait_closed(shared) => return None,
            }
        }
        if shared.closed.load(Ordering::Acquire) {
            return None;
        }
        host = shared.schedule.next_host(host);
        tracing::info!(target: EVENTS, event = "reconnecting", host = %shared.hosts[host], vhost = shared.virtual_host, attempt = attempt + 1, ?pause, "reconnecting to RabbitMQ");
        let connecting = shared.connect_host(host, generation + 1);
        let outcome = tokio::select! {
            outcome = connecting => outcome,
            () = wait_closed(shared) => return None,
        };
        match outcome {
            Ok(live) => {
                tracing::info!(
                    target: EVENTS,
                    event = "restored",
                    host = %shared.hosts[host],
                    vhost = shared.virtual_host,
                    attempts = attempt + 1,
                    downtime = ?lost_at.elapsed(),
                    "connection to RabbitMQ restored"
                );
                return shared.set_live(live);
            }
            Err(failure) => {
                tracing::warn!(target: EVENTS, event = "reconnect_failed", host = %shared.hosts[host], vhost = shared.virtual_host, attempt = attempt + 1, reason = failure, "reconnection failed");
                if !shared.closed.load(Ordering::Acquire) {
                    shared.state.send_replace(ConnectionState::Reconnecting {
                        attempts: attempt + 1,
                        reason: format!("{}: {failure}", shared.hosts[host]),
                    });
                }
            }
        }
    }
    None
}

async fn wait_closed(shared: &Shared) {
    let mut state = shared.state.subscribe();
    // Err only if the sender is gone, which cannot happen while `shared` lives.
    let _ = state.wait_for(|s| *s == ConnectionState::Closed).await;
}

/// Connects to the first address of `host` that accepts.
async fn tcp_connect(host: &str, port: u16) -> io::Result<tokio::net::TcpStream> {
    let mut last_error = None;
    for address in tokio::net::lookup_host((host, port)).await? {
        match tokio::net::TcpStream::connect(address).await {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| io::Error::other("the host name resolves to no address")))
}

/// Keeps a duplicate of the stream's descriptor in `slot`, to shut it down from outside.
fn keep_descriptor(
    stream: tokio::net::TcpStream,
    slot: &Mutex<Option<std::net::TcpStream>>,
) -> io::Result<tokio::net::TcpStream> {
    let stream = stream.into_std()?;
    *lock(slot) = Some(stream.try_clone()?);
    tokio::net::TcpStream::from_std(stream)
}

#[cfg(feature = "tls")]
async fn tls_handshake(
    stream: AsyncTcpStream<async_compat::Compat<tokio::net::TcpStream>>,
    connector: &Connector,
    hostname: &str,
) -> Result<AsyncTcpStream<async_compat::Compat<tokio::net::TcpStream>>, String> {
    stream
        .into_rustls(connector, hostname)
        .await
        .map_err(|e| format!("TLS handshake with {hostname} failed: {e}"))
}

#[cfg(not(feature = "tls"))]
async fn tls_handshake(
    _: AsyncTcpStream<async_compat::Compat<tokio::net::TcpStream>>,
    connector: &Connector,
    _: &str,
) -> Result<AsyncTcpStream<async_compat::Compat<tokio::net::TcpStream>>, String> {
    match *connector {}
}

/// oslo's `connection_name`: `<program>:<pid>:<uuid4>`.
fn connection_name() -> String {
    let program = std::env::args()
        .next()
        .as_deref()
        .and_then(|a| {
            std::path::Path::new(a)
                .file_name()?
                .to_str()
                .map(str::to_owned)
        })
        .unwrap_or_else(|| "amqp-rpc".to_owned());
    format!("{program}:{}:{}", std::process::id(), uuid::Uuid::new_v4())
}
