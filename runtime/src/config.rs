//! Transport settings with oslo.messaging's option names and defaults, from a struct and from
//! the URL query (which overrides the struct, as oslo's query parameters override its
//! configuration file).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::url::{TransportUrl, UrlError};

/// How the next host of a multi-host URL is chosen after a failure (oslo's
/// `kombu_failover_strategy`). Either way, each connection shuffles the URL's hosts once when it
/// is made, so that a fleet's connections spread over a cluster.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum FailoverStrategy {
    /// The next host in the (shuffled) list, cycling (`round-robin`, the default).
    #[default]
    RoundRobin,
    /// A random host each time, possibly the same one again (`shuffle`).
    Shuffle,
}

impl fmt::Display for FailoverStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FailoverStrategy::RoundRobin => "round-robin",
            FailoverStrategy::Shuffle => "shuffle",
        })
    }
}

/// The SASL mechanism a connection logs in with (oslo's `rabbit_login_method`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum LoginMethod {
    /// `AMQPLAIN`, oslo's default: user name and password.
    #[default]
    AmqPlain,
    /// `PLAIN`: user name and password.
    Plain,
    /// `EXTERNAL`: the TLS client certificate names the user (RabbitMQ's
    /// `rabbitmq_auth_mechanism_ssl` plugin); needs `ssl` and `ssl_cert_file`/`ssl_key_file`.
    External,
    /// `RABBIT-CR-DEMO`: RabbitMQ's demonstration challenge-response mechanism.
    RabbitCrDemo,
}

/// Settings of a [`Transport`](crate::Transport). Each field is the oslo.messaging option of
/// the same name, with the same default; a mixed fleet of Python and Rust services must use
/// the same values for the options that shape the broker topology (marked *topology*).
///
/// Set the options in code with the `with_*` methods, one per field, or from a URL's query
/// (which wins over the code's values when applied after them):
///
/// ```
/// use std::time::Duration;
/// use amqp_rpc::{TransportConfig, TransportUrl};
/// let url = TransportUrl::parse("rabbit://h/?control_exchange=nova&amqp_durable_queues=true")?;
/// let config = TransportConfig::default()
///     .with_rpc_response_timeout(Duration::from_secs(30))
///     .with_control_exchange("openstack")
///     .with_url_options(&url)?;
/// assert_eq!(config.control_exchange, "nova");
/// assert!(config.amqp_durable_queues);
/// assert_eq!(config.rpc_response_timeout, Duration::from_secs(30));
/// # Ok::<(), amqp_rpc::RpcError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct TransportConfig {
    /// The exchange of targets that name none (*topology*). Default `openstack`.
    pub control_exchange: String,
    /// Durable control exchange, topic and server queues (*topology*). Default `false`.
    pub amqp_durable_queues: bool,
    /// Auto-delete control exchange, topic and server queues (*topology*). Default `false`.
    pub amqp_auto_delete: bool,
    /// Quorum topic and server queues, which also makes them and the control exchange durable
    /// (*topology*). Default `false`.
    pub rabbit_quorum_queue: bool,
    /// Quorum reply and fanout queues, durable, and a durable fanout exchange (*topology*):
    /// replicated, so that a reply or fanout cast waiting in one outlives the node it is on,
    /// where a classic queue is lost with its node. Default `false`.
    pub rabbit_transient_quorum_queue: bool,
    /// `x-expires` of reply and fanout queues; zero for none (*topology*). Default 1800 s.
    pub rabbit_transient_queues_ttl: Duration,
    /// Prefetch of listening channels. Default 0, which here means: an RPC server's prefetch
    /// is its concurrency limit (so requests it has not started stay in the queue for other
    /// servers), and reply queues are unlimited. oslo's 0 means unlimited everywhere.
    pub rabbit_qos_prefetch_count: u16,
    /// AMQP heartbeat; zero disables it. Default 60 s.
    pub heartbeat_timeout_threshold: Duration,
    /// Default timeout of calls of clients made on this transport. Default 60 s.
    pub rpc_response_timeout: Duration,
    /// Default concurrency limit of servers made on this transport. Default 64.
    pub executor_thread_pool_size: usize,
    /// How long a server retries a reply whose reply queue is missing before giving it up
    /// (and dropping further replies to that queue for the same time). Default 60 s.
    pub kombu_missing_consumer_retry_timeout: Duration,
    /// The pause between reconnection rounds starts at this (whole seconds). Default 1 s.
    pub rabbit_retry_interval: Duration,
    /// ... and grows by this after each round (whole seconds). Default 2 s.
    pub rabbit_retry_backoff: Duration,
    /// ... up to this plus `rabbit_retry_interval` (kombu's cap: with the defaults 1, 3, 5 ...
    /// 29, 31, 31 s). Default 30 s.
    pub rabbit_interval_max: Duration,
    /// Slept after every failed connection attempt, and before consuming again after the
    /// broker cancelled a consumer (a queue deleted, or its node gone). Default 1 s, at most
    /// 4.5 s. Unlike oslo, the first attempt after a lost connection is made at once: a broker
    /// that closed connections on purpose is back at once, and a dead one refuses fast.
    pub kombu_reconnect_delay: Duration,
    /// A random extra pause, up to this, added to `kombu_reconnect_delay`. Default 0.
    pub kombu_reconnect_splay: Duration,
    /// How the next host of a multi-host URL is chosen. Default round-robin.
    pub kombu_failover_strategy: FailoverStrategy,
    /// amqp-rpc's own: how long one connection attempt to one host may take, TCP connect, TLS
    /// and AMQP handshakes and opening the first channel together, before the next host is
    /// tried. Not a URL option (Python peers would refuse the URL). Default 5 s.
    pub connect_timeout: Duration,
    /// The SASL mechanism. Default `AMQPLAIN`, as oslo.
    pub rabbit_login_method: LoginMethod,
    /// Connect over TLS (`ssl=1`; the port stays 5672 unless the URL names one, as in oslo).
    /// Without `ssl_ca_file` the server's certificate is checked against the system's trusted
    /// roots. The host name is always verified, also where oslo verifies it only with
    /// `ssl_ca_file`. Default `false`.
    pub ssl: bool,
    /// PEM file of the certificate authorities trusted for the broker's certificate, instead of
    /// the system's roots (as Python's `ca_certs`). Default none.
    pub ssl_ca_file: Option<PathBuf>,
    /// PEM file of the client certificate chain, for brokers that ask for one (with
    /// `ssl_key_file`). Default none.
    pub ssl_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key (PKCS#8, PKCS#1 or SEC1). Default none.
    pub ssl_key_file: Option<PathBuf>,
    /// amqp-rpc's own: the largest message body, in bytes, taken or sent. A request above it
    /// gets a `ValueError` failure reply (when its `_msg_id` and `_reply_q` can be found) and
    /// is not run; a reply above it fails its call with [`WireError::TooLarge`]; a call or
    /// result above it is refused before it is sent. oslo has no such limit; the default,
    /// 16 MiB, is RabbitMQ 4's own `max_message_size`, so nothing a default broker carries is
    /// refused. Not a URL option (Python peers would refuse the URL).
    ///
    /// [`WireError::TooLarge`]: crate::wire::WireError::TooLarge
    pub max_message_size: usize,
}

/// The default [`TransportConfig::max_message_size`]: 16 MiB.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 16 << 20;

impl Default for TransportConfig {
    fn default() -> Self {
        TransportConfig {
            control_exchange: "openstack".to_owned(),
            amqp_durable_queues: false,
            amqp_auto_delete: false,
            rabbit_quorum_queue: false,
            rabbit_transient_quorum_queue: false,
            rabbit_transient_queues_ttl: Duration::from_secs(1800),
            rabbit_qos_prefetch_count: 0,
            heartbeat_timeout_threshold: Duration::from_secs(60),
            rpc_response_timeout: crate::DEFAULT_TIMEOUT,
            executor_thread_pool_size: crate::ServerConfig::default().max_concurrency,
            kombu_missing_consumer_retry_timeout: Duration::from_secs(60),
            rabbit_retry_interval: Duration::from_secs(1),
            rabbit_retry_backoff: Duration::from_secs(2),
            rabbit_interval_max: Duration::from_secs(30),
            kombu_reconnect_delay: Duration::from_secs(1),
            kombu_reconnect_splay: Duration::ZERO,
            kombu_failover_strategy: FailoverStrategy::RoundRobin,
            connect_timeout: Duration::from_secs(5),
            rabbit_login_method: LoginMethod::AmqPlain,
            ssl: false,
            ssl_ca_file: None,
            ssl_cert_file: None,
            ssl_key_file: None,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
        }
    }
}

impl TransportConfig {
    /// Sets [`TransportConfig::control_exchange`].
    #[must_use]
    pub fn with_control_exchange(mut self, exchange: impl Into<String>) -> Self {
        self.control_exchange = exchange.into();
        self
    }

    /// Sets [`TransportConfig::amqp_durable_queues`].
    #[must_use]
    pub fn with_amqp_durable_queues(mut self, durable: bool) -> Self {
        self.amqp_durable_queues = durable;
        self
    }

    /// Sets [`TransportConfig::amqp_auto_delete`].
    #[must_use]
    pub fn with_amqp_auto_delete(mut self, auto_delete: bool) -> Self {
        self.amqp_auto_delete = auto_delete;
        self
    }

    /// Sets [`TransportConfig::rabbit_quorum_queue`].
    #[must_use]
    pub fn with_rabbit_quorum_queue(mut self, quorum: bool) -> Self {
        self.rabbit_quorum_queue = quorum;
        self
    }

    /// Sets [`TransportConfig::rabbit_transient_quorum_queue`].
    #[must_use]
    pub fn with_rabbit_transient_quorum_queue(mut self, quorum: bool) -> Self {
        self.rabbit_transient_quorum_queue = quorum;
        self
    }

    /// Sets [`TransportConfig::rabbit_transient_queues_ttl`].
    #[must_use]
    pub fn with_rabbit_transient_queues_ttl(mut self, ttl: Duration) -> Self {
        self.rabbit_transient_queues_ttl = ttl;
        self
    }

    /// Sets [`TransportConfig::rabbit_qos_prefetch_count`].
    #[must_use]
    pub fn with_rabbit_qos_prefetch_count(mut self, prefetch: u16) -> Self {
        self.rabbit_qos_prefetch_count = prefetch;
        self
    }

    /// Sets [`TransportConfig::heartbeat_timeout_threshold`].
    #[must_use]
    pub fn with_heartbeat_timeout_threshold(mut self, threshold: Duration) -> Self {
        self.heartbeat_timeout_threshold = threshold;
        self
    }

    /// Sets [`TransportConfig::rpc_response_timeout`].
    #[must_use]
    pub fn with_rpc_response_timeout(mut self, timeout: Duration) -> Self {
        self.rpc_response_timeout = timeout;
        self
    }

    /// Sets [`TransportConfig::executor_thread_pool_size`].
    #[must_use]
    pub fn with_executor_thread_pool_size(mut self, size: usize) -> Self {
        self.executor_thread_pool_size = size;
        self
    }

    /// Sets [`TransportConfig::kombu_missing_consumer_retry_timeout`].
    #[must_use]
    pub fn with_kombu_missing_consumer_retry_timeout(mut self, timeout: Duration) -> Self {
        self.kombu_missing_consumer_retry_timeout = timeout;
        self
    }

    /// Sets [`TransportConfig::rabbit_retry_interval`].
    #[must_use]
    pub fn with_rabbit_retry_interval(mut self, interval: Duration) -> Self {
        self.rabbit_retry_interval = interval;
        self
    }

    /// Sets [`TransportConfig::rabbit_retry_backoff`].
    #[must_use]
    pub fn with_rabbit_retry_backoff(mut self, backoff: Duration) -> Self {
        self.rabbit_retry_backoff = backoff;
        self
    }

    /// Sets [`TransportConfig::rabbit_interval_max`].
    #[must_use]
    pub fn with_rabbit_interval_max(mut self, max: Duration) -> Self {
        self.rabbit_interval_max = max;
        self
    }

    /// Sets [`TransportConfig::kombu_reconnect_delay`]. A delay above oslo's 4.5 s limit, which the
    /// URL option refuses, is taken as given.
    #[must_use]
    pub fn with_kombu_reconnect_delay(mut self, delay: Duration) -> Self {
        self.kombu_reconnect_delay = delay;
        self
    }

    /// Sets [`TransportConfig::kombu_reconnect_splay`].
    #[must_use]
    pub fn with_kombu_reconnect_splay(mut self, splay: Duration) -> Self {
        self.kombu_reconnect_splay = splay;
        self
    }

    /// Sets [`TransportConfig::kombu_failover_strategy`].
    #[must_use]
    pub fn with_kombu_failover_strategy(mut self, strategy: FailoverStrategy) -> Self {
        self.kombu_failover_strategy = strategy;
        self
    }

    /// Sets [`TransportConfig::connect_timeout`].
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`TransportConfig::rabbit_login_method`].
    #[must_use]
    pub fn with_rabbit_login_method(mut self, method: LoginMethod) -> Self {
        self.rabbit_login_method = method;
        self
    }

    /// Sets [`TransportConfig::ssl`].
    #[must_use]
    pub fn with_ssl(mut self, enabled: bool) -> Self {
        self.ssl = enabled;
        self
    }

    /// Sets [`TransportConfig::ssl_ca_file`].
    #[must_use]
    pub fn with_ssl_ca_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.ssl_ca_file = Some(file.into());
        self
    }

    /// Sets [`TransportConfig::ssl_cert_file`].
    #[must_use]
    pub fn with_ssl_cert_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.ssl_cert_file = Some(file.into());
        self
    }

    /// Sets [`TransportConfig::ssl_key_file`].
    #[must_use]
    pub fn with_ssl_key_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.ssl_key_file = Some(file.into());
        self
    }

    /// Sets [`TransportConfig::max_message_size`].
    #[must_use]
    pub fn with_max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// Applies the options of a URL's query, which override the struct's values. An option
    /// this crate does not know is an error, as in oslo.
    pub fn with_url_options(mut self, url: &TransportUrl) -> Result<Self, UrlError> {
        for (name, value) in url.options() {
            self.set(name, value)?;
        }
        Ok(self)
    }

    /// Sets one option by its oslo name from its text form.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), UrlError> {
        match name {
            "control_exchange" => self.control_exchange = value.to_owned(),
            "amqp_durable_queues" => self.amqp_durable_queues = boolean(name, value)?,
            "amqp_auto_delete" => self.amqp_auto_delete = boolean(name, value)?,
            "rabbit_quorum_queue" => self.rabbit_quorum_queue = boolean(name, value)?,
            "rabbit_transient_quorum_queue" => {
                self.rabbit_transient_quorum_queue = boolean(name, value)?;
            }
            "rabbit_transient_queues_ttl" => {
                self.rabbit_transient_queues_ttl = seconds(name, value)?
            }
            "rabbit_qos_prefetch_count" => self.rabbit_qos_prefetch_count = number(name, value)?,
            "heartbeat_timeout_threshold" => {
                self.heartbeat_timeout_threshold = seconds(name, value)?
            }
            "rpc_response_timeout" => self.rpc_response_timeout = seconds(name, value)?,
            "executor_thread_pool_size" => self.executor_thread_pool_size = number(name, value)?,
            "kombu_missing_consumer_retry_timeout" => {
                self.kombu_missing_consumer_retry_timeout = seconds(name, value)?;
            }
            "rabbit_retry_interval" => self.rabbit_retry_interval = seconds(name, value)?,
            "rabbit_retry_backoff" => self.rabbit_retry_backoff = seconds(name, value)?,
            "rabbit_interval_max" => self.rabbit_interval_max = seconds(name, value)?,
            "kombu_reconnect_delay" => {
                self.kombu_reconnect_delay = fractional_seconds(name, value, 4.5)?;
            }
            "kombu_reconnect_splay" => {
                self.kombu_reconnect_splay = fractional_seconds(name, value, f64::MAX)?;
            }
            "kombu_failover_strategy" => {
                self.kombu_failover_strategy = match value {
                    "round-robin" => FailoverStrategy::RoundRobin,
                    "shuffle" => FailoverStrategy::Shuffle,
                    _ => return Err(invalid(name, value, "round-robin or shuffle")),
                }
            }
            "rabbit_login_method" => {
                self.rabbit_login_method = match value {
                    "AMQPLAIN" => LoginMethod::AmqPlain,
                    "PLAIN" => LoginMethod::Plain,
                    "EXTERNAL" => LoginMethod::External,
                    "RABBIT-CR-DEMO" => LoginMethod::RabbitCrDemo,
                    _ => {
                        return Err(invalid(
                            name,
                            value,
                            "AMQPLAIN, PLAIN, EXTERNAL or RABBIT-CR-DEMO",
                        ));
                    }
                }
            }
            "ssl" => self.ssl = boolean(name, value)?,
            "ssl_ca_file" => self.ssl_ca_file = path(value),
            "ssl_cert_file" => self.ssl_cert_file = path(value),
            "ssl_key_file" => self.ssl_key_file = path(value),
            // rustls speaks TLS 1.2 and 1.3 only: the versions that name those (or "any") are
            // accepted, older ones refused rather than silently not honoured.
            "ssl_version" => match value.to_ascii_lowercase().as_str() {
                "" | "sslv23" | "tls" | "tlsv1_2" | "tlsv1_3" => {}
                _ => {
                    return Err(invalid(
                        name,
                        value,
                        "sslv23, tlsv1_2 or tlsv1_3 (TLS 1.0, 1.1 and SSL are not supported)",
                    ));
                }
            },
            // Deprecated in oslo; 18.3 always verifies host names with a CA file, and this
            // crate always does. Accepted so that oslo's URLs parse, with no effect.
            "ssl_enforce_hostname_verification" | "ssl_enforce_fips_mode" => {
                boolean(name, value)?;
            }
            _ => {
                return Err(UrlError::UnknownOption {
                    name: name.to_owned(),
                });
            }
        }
        Ok(())
    }

    /// Whether the control exchange, topic and server queues are durable.
    #[cfg_attr(not(feature = "rabbit"), allow(dead_code))]
    pub(crate) fn durable(&self) -> bool {
        self.amqp_durable_queues || self.rabbit_quorum_queue
    }
}

fn invalid(name: &str, value: &str, expected: &'static str) -> UrlError {
    UrlError::InvalidOption {
        name: name.to_owned(),
        value: value.to_owned(),
        expected,
    }
}

/// oslo.config's booleans.
fn boolean(name: &str, value: &str) -> Result<bool, UrlError> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(
            name,
            value,
            "a boolean (true/false, yes/no, on/off, 1/0)",
        )),
    }
}

fn number<T: std::str::FromStr>(name: &str, value: &str) -> Result<T, UrlError> {
    value
        .parse()
        .map_err(|_| invalid(name, value, "a non-negative integer in range"))
}

fn seconds(name: &str, value: &str) -> Result<Duration, UrlError> {
    number::<u64>(name, value).map(Duration::from_secs)
}

/// A float number of seconds from 0 to `max` (oslo's `FloatOpt` with `min=0`).
fn fractional_seconds(name: &str, value: &str, max: f64) -> Result<Duration, UrlError> {
    value
        .parse::<f64>()
        .ok()
        .filter(|s| (0.0..=max).contains(s))
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| invalid(name, value, "a number of seconds in range"))
}

/// A file path; empty means none, as oslo's `""` default.
fn path(value: &str) -> Option<PathBuf> {
    (!value.is_empty()).then(|| PathBuf::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: &str) -> Result<TransportConfig, UrlError> {
        let url = TransportUrl::parse(&format!("rabbit://h/?{query}"))?;
        TransportConfig::default().with_url_options(&url)
    }

    #[test]
    fn defaults_are_oslos() {
        let c = TransportConfig::default();
        assert_eq!(c.control_exchange, "openstack");
        assert!(!c.amqp_durable_queues && !c.amqp_auto_delete && !c.rabbit_quorum_queue);
        assert!(!c.rabbit_transient_quorum_queue);
        assert_eq!(c.rabbit_transient_queues_ttl, Duration::from_secs(1800));
        assert_eq!(c.rabbit_qos_prefetch_count, 0);
        assert_eq!(c.heartbeat_timeout_threshold, Duration::from_secs(60));
        assert_eq!(c.rpc_response_timeout, Duration::from_secs(60));
        assert_eq!(c.executor_thread_pool_size, 64);
    }

    #[test]
    fn every_option_is_settable_from_the_query() {
        let c = parse(
            "control_exchange=nova&amqp_durable_queues=yes&amqp_auto_delete=1&rabbit_quorum_queue=On\
             &rabbit_transient_quorum_queue=true&rabbit_transient_queues_ttl=0\
             &rabbit_qos_prefetch_count=10&heartbeat_timeout_threshold=30\
             &rpc_response_timeout=5&executor_thread_pool_size=8&kombu_missing_consumer_retry_timeout=2",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.control_exchange, "nova");
        assert!(c.amqp_durable_queues && c.amqp_auto_delete && c.rabbit_quorum_queue);
        assert!(c.rabbit_transient_quorum_queue);
        assert_eq!(c.rabbit_transient_queues_ttl, Duration::ZERO);
        assert_eq!(c.rabbit_qos_prefetch_count, 10);
        assert_eq!(c.heartbeat_timeout_threshold, Duration::from_secs(30));
        assert_eq!(c.rpc_response_timeout, Duration::from_secs(5));
        assert_eq!(c.executor_thread_pool_size, 8);
        assert_eq!(
            c.kombu_missing_consumer_retry_timeout,
            Duration::from_secs(2)
        );
    }

    #[test]
    fn reconnection_and_tls_options_are_oslos() {
        let c = TransportConfig::default();
        assert_eq!(c.rabbit_retry_interval, Duration::from_secs(1));
        assert_eq!(c.rabbit_retry_backoff, Duration::from_secs(2));
        assert_eq!(c.rabbit_interval_max, Duration::from_secs(30));
        assert_eq!(c.kombu_reconnect_delay, Duration::from_secs(1));
        assert_eq!(c.kombu_failover_strategy, FailoverStrategy::RoundRobin);
        assert_eq!(c.rabbit_login_method, LoginMethod::AmqPlain);
        assert!(!c.ssl && c.ssl_ca_file.is_none());

        let c = parse(
            "rabbit_retry_interval=2&rabbit_retry_backoff=0&rabbit_interval_max=10\
             &kombu_reconnect_delay=0.5&kombu_reconnect_splay=2.25&kombu_failover_strategy=shuffle\
             &rabbit_login_method=EXTERNAL&ssl=1&ssl_ca_file=/etc/ca.pem&ssl_cert_file=/c.pem\
             &ssl_key_file=/k.pem&ssl_version=tlsv1_2&ssl_enforce_hostname_verification=false",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.rabbit_retry_interval, Duration::from_secs(2));
        assert_eq!(c.rabbit_retry_backoff, Duration::ZERO);
        assert_eq!(c.rabbit_interval_max, Duration::from_secs(10));
        assert_eq!(c.kombu_reconnect_delay, Duration::from_millis(500));
        assert_eq!(c.kombu_reconnect_splay, Duration::from_millis(2250));
        assert_eq!(c.kombu_failover_strategy, FailoverStrategy::Shuffle);
        assert_eq!(c.rabbit_login_method, LoginMethod::External);
        assert!(c.ssl);
        assert_eq!(
            c.ssl_ca_file.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
        assert_eq!(
            c.ssl_cert_file.as_deref(),
            Some(std::path::Path::new("/c.pem"))
        );
        assert_eq!(
            c.ssl_key_file.as_deref(),
            Some(std::path::Path::new("/k.pem"))
        );
    }

    #[test]
    fn out_of_range_reconnection_and_tls_options_are_errors() {
        for query in [
            "kombu_reconnect_delay=5",
            "kombu_reconnect_delay=-1",
            "kombu_reconnect_delay=nan",
            "kombu_failover_strategy=random",
            "rabbit_login_method=plain",
            "ssl=maybe",
            "ssl_version=tlsv1",
            "ssl_version=sslv3",
        ] {
            assert!(
                matches!(parse(query), Err(UrlError::InvalidOption { .. })),
                "{query} was accepted"
            );
        }
        // An empty file name means none, as oslo's "" default.
        let c = parse("ssl=1&ssl_ca_file=").unwrap_or_else(|e| panic!("{e}"));
        assert!(c.ssl_ca_file.is_none());
    }

    #[test]
    fn typed_setters_agree_with_the_url_options() {
        let typed = TransportConfig::default()
            .with_control_exchange("nova")
            .with_amqp_durable_queues(true)
            .with_amqp_auto_delete(true)
            .with_rabbit_quorum_queue(true)
            .with_rabbit_transient_quorum_queue(true)
            .with_rabbit_transient_queues_ttl(Duration::from_secs(60))
            .with_rabbit_qos_prefetch_count(10)
            .with_heartbeat_timeout_threshold(Duration::from_secs(30))
            .with_rpc_response_timeout(Duration::from_secs(5))
            .with_executor_thread_pool_size(8)
            .with_kombu_missing_consumer_retry_timeout(Duration::from_secs(2))
            .with_rabbit_retry_interval(Duration::from_secs(2))
            .with_rabbit_retry_backoff(Duration::ZERO)
            .with_rabbit_interval_max(Duration::from_secs(10))
            .with_kombu_reconnect_delay(Duration::from_millis(500))
            .with_kombu_reconnect_splay(Duration::from_millis(2250))
            .with_kombu_failover_strategy(FailoverStrategy::Shuffle)
            .with_rabbit_login_method(LoginMethod::Plain)
            .with_ssl(true)
            .with_ssl_ca_file("/etc/ca.pem")
            .with_ssl_cert_file("/c.pem")
            .with_ssl_key_file("/k.pem");
        let from_url = parse(
            "control_exchange=nova&amqp_durable_queues=1&amqp_auto_delete=1&rabbit_quorum_queue=1\
             &rabbit_transient_quorum_queue=1&rabbit_transient_queues_ttl=60\
             &rabbit_qos_prefetch_count=10\
             &heartbeat_timeout_threshold=30&rpc_response_timeout=5&executor_thread_pool_size=8\
             &kombu_missing_consumer_retry_timeout=2&rabbit_retry_interval=2\
             &rabbit_retry_backoff=0&rabbit_interval_max=10&kombu_reconnect_delay=0.5\
             &kombu_reconnect_splay=2.25&kombu_failover_strategy=shuffle\
             &rabbit_login_method=PLAIN&ssl=1&ssl_ca_file=/etc/ca.pem&ssl_cert_file=/c.pem\
             &ssl_key_file=/k.pem",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(typed, from_url);

        // The two options that are not URL options.
        let own = TransportConfig::default()
            .with_connect_timeout(Duration::from_secs(2))
            .with_max_message_size(4096);
        assert_eq!(own.connect_timeout, Duration::from_secs(2));
        assert_eq!(own.max_message_size, 4096);
        assert_eq!(
            TransportConfig {
                connect_timeout: Duration::from_secs(5),
                max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
                ..own
            },
            TransportConfig::default()
        );
    }

    #[test]
    fn quorum_implies_durable() {
        assert!(
            parse("rabbit_quorum_queue=true")
                .map(|c| c.durable())
                .unwrap_or(false)
        );
        assert!(!TransportConfig::default().durable());
    }

    #[test]
    fn unknown_options_and_bad_values_are_errors() {
        assert!(
            matches!(parse("ssl_bogus=1"), Err(UrlError::UnknownOption { name }) if name == "ssl_bogus")
        );
        assert!(matches!(
            parse("amqp_durable_queues=maybe"),
            Err(UrlError::InvalidOption { .. })
        ));
        assert!(matches!(
            parse("rabbit_qos_prefetch_count=70000"),
            Err(UrlError::InvalidOption { .. })
        ));
        assert!(matches!(
            parse("rpc_response_timeout=-1"),
            Err(UrlError::InvalidOption { .. })
        ));
    }
}
