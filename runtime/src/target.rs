//! Where a message goes, or what a server listens on: oslo.messaging's `Target`.
//!
//! One type serves clients (topic, optional server, fanout), servers (topic and server) and
//! endpoints (namespace and version); the checks of each role live here so every driver agrees.

use std::fmt;

use crate::version::Version;

/// The destination of an RPC message and the identity of a server or endpoint.
///
/// ```
/// use amqp_rpc::{Target, Version};
/// let target = Target::new("calculator")
///     .with_server("calc-1")
///     .with_namespace("control")
///     .with_version(Version::new(1, 3));
/// assert_eq!(target.topic(), Some("calculator"));
/// assert!(target.validate_server().is_ok());
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Target {
    exchange: Option<String>,
    topic: Option<String>,
    server: Option<String>,
    fanout: bool,
    namespace: Option<String>,
    version: Option<Version>,
}

impl Target {
    /// A target for `topic`, with every other field unset.
    #[must_use]
    pub fn new(topic: impl Into<String>) -> Self {
        Target {
            topic: Some(topic.into()),
            ..Target::default()
        }
    }

    /// A target addressing (or, for a server, naming) one `server` on `topic`.
    #[must_use]
    pub fn server(topic: impl Into<String>, server: impl Into<String>) -> Self {
        Target::new(topic).with_server(server)
    }

    /// The exchange; `None` means the transport's control exchange (`openstack` by default).
    pub fn exchange(&self) -> Option<&str> {
        self.exchange.as_deref()
    }

    /// The topic: the shared queue that servers of one service consume from.
    pub fn topic(&self) -> Option<&str> {
        self.topic.as_deref()
    }

    /// The server name: its own `<topic>.<server>` queue.
    pub fn server_name(&self) -> Option<&str> {
        self.server.as_deref()
    }

    /// Whether casts go to every server of the topic.
    pub fn fanout(&self) -> bool {
        self.fanout
    }

    /// The API namespace; `None` is oslo's default namespace.
    pub fn namespace(&self) -> Option<&str> {
        self.namespace.as_deref()
    }

    /// The API version a client requests or an endpoint implements.
    pub fn version(&self) -> Option<Version> {
        self.version
    }

    /// Sets the exchange.
    #[must_use]
    pub fn with_exchange(mut self, exchange: impl Into<String>) -> Self {
        self.exchange = Some(exchange.into());
        self
    }

    /// Sets the topic.
    #[must_use]
    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = Some(topic.into());
        self
    }

    /// Sets the server name.
    #[must_use]
    pub fn with_server(mut self, server: impl Into<String>) -> Self {
        self.server = Some(server.into());
        self
    }

    /// Sets or clears fanout.
    #[must_use]
    pub fn with_fanout(mut self, fanout: bool) -> Self {
        self.fanout = fanout;
        self
    }

    /// Sets the namespace.
    #[must_use]
    pub fn with_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = Some(namespace.into());
        self
    }

    /// Sets the version.
    #[must_use]
    pub fn with_version(mut self, version: Version) -> Self {
        self.version = Some(version);
        self
    }

    /// Clears the server name (the message goes to any server of the topic).
    #[must_use]
    pub fn without_server(mut self) -> Self {
        self.server = None;
        self
    }

    /// Clears the namespace (back to oslo's default namespace).
    #[must_use]
    pub fn without_namespace(mut self) -> Self {
        self.namespace = None;
        self
    }

    /// Clears the version (the request is treated as `1.0` by the server).
    #[must_use]
    pub fn without_version(mut self) -> Self {
        self.version = None;
        self
    }

    /// Checks the target can name an RPC server: it needs a topic and a server.
    pub fn validate_server(&self) -> Result<(), TargetError> {
        self.topic_and_server().map(drop)
    }

    /// The topic and server name of a server target; an error if either is missing.
    pub(crate) fn topic_and_server(&self) -> Result<(&str, &str), TargetError> {
        match (&self.topic, &self.server) {
            (Some(topic), Some(server)) => Ok((topic, server)),
            (None, _) => Err(TargetError::MissingTopic {
                target: Box::new(self.clone()),
            }),
            (Some(_), None) => Err(TargetError::MissingServer {
                target: Box::new(self.clone()),
            }),
        }
    }

    /// Checks the target can receive a cast: it needs a topic.
    pub fn validate_cast(&self) -> Result<(), TargetError> {
        if self.topic.is_none() {
            return Err(TargetError::MissingTopic {
                target: Box::new(self.clone()),
            });
        }
        Ok(())
    }

    /// Checks the target can receive a call: it needs a topic and must not be fanout.
    pub fn validate_call(&self) -> Result<(), TargetError> {
        self.validate_cast()?;
        if self.fanout {
            return Err(TargetError::FanoutCall {
                target: Box::new(self.clone()),
            });
        }
        Ok(())
    }
}

/// Why a [`Target`] cannot be used for an operation (oslo's `InvalidTarget`): returned by its
/// `validate_*` methods, and inside [`RpcError::InvalidTarget`] by clients and servers.
///
/// ```
/// use amqp_rpc::{Target, TargetError};
/// let err = Target::new("compute").with_fanout(true).validate_call().unwrap_err();
/// assert!(matches!(err, TargetError::FanoutCall { .. }));
/// assert_eq!(err.target().topic(), Some("compute"));
/// assert_eq!(
///     err.to_string(),
///     "Invalid target: a call cannot be used with fanout (topic=compute, fanout=true)"
/// );
/// ```
///
/// [`RpcError::InvalidTarget`]: crate::RpcError::InvalidTarget
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// The target has no topic: a message goes to a topic, and a server consumes its topic's
    /// queue.
    #[error("Invalid target: a topic is required ({target})")]
    MissingTopic {
        /// The offending target.
        target: Box<Target>,
    },

    /// A server's target has no server name: a server also consumes its own
    /// `<topic>.<server>` queue.
    #[error("Invalid target: a server target needs a server name ({target})")]
    MissingServer {
        /// The offending target.
        target: Box<Target>,
    },

    /// A call to a fanout target: a call has one answer, a fanout cast reaches every server.
    #[error("Invalid target: a call cannot be used with fanout ({target})")]
    FanoutCall {
        /// The offending target.
        target: Box<Target>,
    },
}

impl TargetError {
    /// The target that was refused.
    pub fn target(&self) -> &Target {
        match self {
            TargetError::MissingTopic { target }
            | TargetError::MissingServer { target }
            | TargetError::FanoutCall { target } => target,
        }
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Target({self})")
    }
}

/// Shows the fields that are set, as oslo's `Target.__repr__` does.
impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        let mut field = |f: &mut fmt::Formatter<'_>, name: &str, value: &dyn fmt::Display| {
            let r = write!(f, "{sep}{name}={value}");
            sep = ", ";
            r
        };
        if let Some(v) = &self.exchange {
            field(f, "exchange", v)?;
        }
        if let Some(v) = &self.topic {
            field(f, "topic", v)?;
        }
        if let Some(v) = &self.server {
            field(f, "server", v)?;
        }
        if self.fanout {
            field(f, "fanout", &true)?;
        }
        if let Some(v) = &self.namespace {
            field(f, "namespace", v)?;
        }
        if let Some(v) = &self.version {
            field(f, "version", v)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_target_needs_topic_and_server() {
        assert!(Target::server("t", "s").validate_server().is_ok());
        let no_server = Target::new("t").validate_server();
        assert!(
            matches!(&no_server, Err(TargetError::MissingServer { target }) if target.topic() == Some("t")),
            "{no_server:?}"
        );
        let no_topic = Target::default().with_server("s").validate_server();
        assert!(
            matches!(no_topic, Err(TargetError::MissingTopic { .. })),
            "{no_topic:?}"
        );
    }

    #[test]
    fn call_needs_topic_and_refuses_fanout() {
        assert!(matches!(
            Target::default().validate_call(),
            Err(TargetError::MissingTopic { .. })
        ));
        assert!(matches!(
            Target::default().validate_cast(),
            Err(TargetError::MissingTopic { .. })
        ));
        let fanout = Target::new("t").with_fanout(true);
        assert!(fanout.validate_cast().is_ok());
        let err = fanout.validate_call();
        assert!(
            matches!(&err, Err(e @ TargetError::FanoutCall { .. }) if *e.target() == fanout),
            "{err:?}"
        );
    }

    #[test]
    fn target_errors_read_as_before() {
        let err = Target::new("t")
            .validate_server()
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("Invalid target: a server target needs a server name (topic=t)")
        );
        let err = Target::default()
            .validate_cast()
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("Invalid target: a topic is required ()")
        );
    }

    #[test]
    fn display_lists_set_fields() {
        let t = Target::server("t", "s").with_version(Version::new(1, 2));
        assert_eq!(t.to_string(), "topic=t, server=s, version=1.2");
    }
}
