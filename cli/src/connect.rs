//! The transport the command line names: the URL from `--url`, else `$TRANSPORT_URL`, else the
//! configuration file's `[DEFAULT] transport_url`; the options from the configuration file
//! (`control_exchange`, `rpc_response_timeout` and `[oslo_messaging_rabbit]`), which the URL's
//! own query options override, as in oslo.

use amqp_rpc::{RpcError, Transport, TransportConfig, UrlError};

use crate::oslo_conf::{ConfError, OsloConf};
use crate::{Cli, status};

/// Why no transport: a message and the exit status it gives.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) status: u8,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(status: u8, message: impl Into<String>) -> Failure {
        Failure {
            status,
            message: message.into(),
        }
    }
}

impl From<ConfError> for Failure {
    fn from(e: ConfError) -> Failure {
        let status = match e {
            ConfError::Read { .. } => status::NO_INPUT,
            ConfError::Parse { .. } | ConfError::Substitution { .. } => status::CONFIG,
        };
        Failure::new(status, e.to_string())
    }
}

/// The `[DEFAULT]` options read besides `transport_url` (those of [`TransportConfig`]).
const DEFAULT_OPTIONS: [&str; 3] = [
    "control_exchange",
    "rpc_response_timeout",
    "executor_thread_pool_size",
];

/// The configuration the file gives, with a warning on standard error for each
/// `[oslo_messaging_rabbit]` option this crate does not have (a service's file names many that
/// only matter to Python, such as `rabbit_ha_queues`).
pub(crate) fn config_of(conf: &OsloConf) -> Result<TransportConfig, Failure> {
    let mut config = TransportConfig::default();
    let mut set = |section: &str, key: &str, value: &str| match config.set(key, value) {
        Ok(()) => Ok(()),
        Err(UrlError::UnknownOption { .. }) => {
            eprintln!("amqp-rpc: [{section}] {key}: not an option of amqp-rpc; ignored");
            Ok(())
        }
        Err(e) => Err(Failure::new(status::CONFIG, format!("[{section}] {e}"))),
    };
    for key in DEFAULT_OPTIONS {
        if let Some(value) = conf.get("DEFAULT", key)? {
            set("DEFAULT", key, &value)?;
        }
    }
    for key in conf.keys("oslo_messaging_rabbit") {
        if let Some(value) = conf.get("oslo_messaging_rabbit", key)? {
            set("oslo_messaging_rabbit", key, &value)?;
        }
    }
    Ok(config)
}

/// Which of a service's transports: RPC's, or notifications' (oslo lets
/// `[oslo_messaging_notifications] transport_url` send them elsewhere).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    Rpc,
    Notifications,
}

/// The file's URL for `purpose`: for notifications, `[oslo_messaging_notifications]
/// transport_url` when set, as oslo's `get_notification_transport`; else `[DEFAULT]`'s.
fn configured_url(conf: &OsloConf, purpose: Purpose) -> Result<Option<String>, ConfError> {
    if purpose == Purpose::Notifications
        && let Some(url) = conf.get("oslo_messaging_notifications", "transport_url")?
        && !url.is_empty()
    {
        return Ok(Some(url));
    }
    conf.get("DEFAULT", "transport_url")
}

/// The configuration file of `cli`, read, if any.
pub(crate) fn conf(cli: &Cli) -> Result<Option<OsloConf>, Failure> {
    match &cli.config_file {
        Some(path) => Ok(Some(OsloConf::read(path)?)),
        None => Ok(None),
    }
}

/// Opens the transport of `cli` for `purpose`.
pub(crate) async fn transport(cli: &Cli, purpose: Purpose) -> Result<Transport, Failure> {
    let conf = conf(cli)?;
    let mut config = match &conf {
        Some(conf) => config_of(conf)?,
        None => TransportConfig::default(),
    };
    if let Some(exchange) = &cli.exchange {
        config = config.with_control_exchange(exchange.clone());
    }
    let from_env = std::env::var("TRANSPORT_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let (url, bad_url_status) = match (&cli.url, from_env, &conf) {
        (Some(url), _, _) => (url.clone(), status::USAGE),
        (None, Some(url), _) => (url, status::USAGE),
        (None, None, Some(conf)) => match configured_url(conf, purpose)? {
            Some(url) => (url, status::CONFIG),
            None => {
                return Err(Failure::new(
                    status::CONFIG,
                    format!(
                        "{}: no [DEFAULT] transport_url",
                        cli.config_file
                            .as_deref()
                            .unwrap_or(std::path::Path::new("?"))
                            .display()
                    ),
                ));
            }
        },
        (None, None, None) => {
            return Err(Failure::new(
                status::USAGE,
                "no transport URL: give --url, set $TRANSPORT_URL, or give --config-file",
            ));
        }
    };
    Transport::from_url_with_config(&url, config)
        .await
        .map_err(|e| match e {
            RpcError::Url(_) | RpcError::InvalidConfig { .. } => {
                Failure::new(bad_url_status, e.to_string())
            }
            other => Failure::new(status::UNAVAILABLE, other.to_string()),
        })
}
