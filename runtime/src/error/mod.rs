//! The one public error type, [`RpcError`], and the remote failure it can carry.
//!
//! Framework errors (timeouts, routing, versions, encoding, transport) are variants of
//! [`RpcError`]; whatever the remote method itself failed with arrives as a [`RemoteError`],
//! which may carry the method's own typed error: a value of a [`RemoteException`], which names
//! a Python exception class, or else a serde value (see [`RemoteError::application`]).

mod exception;
mod type_name;

pub use exception::RemoteException;

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::target::Target;
use crate::url::UrlError;
use crate::version::{ParseVersionError, Version};
use crate::wire::WireError;

/// Everything that can go wrong with an RPC call, cast, or server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// No reply arrived in time (the overall timeout, or the call-monitor timeout without a
    /// heartbeat). The message is oslo's `MessagingTimeout` text.
    #[error("Timed out waiting for a reply to message ID {msg_id}")]
    Timeout {
        /// The `_msg_id` of the unanswered call.
        msg_id: String,
        /// How long the caller waited.
        waited: Duration,
    },

    /// The server has endpoints for the namespace and version, but none has the method
    /// (oslo's `NoSuchMethod`).
    #[error("Endpoint does not support RPC method {method}")]
    NoSuchMethod {
        /// The requested method.
        method: String,
    },

    /// No endpoint of the server serves the namespace and version (oslo's
    /// `UnsupportedVersion`); `version` is `"None"` for an explicit `null`.
    #[error("Endpoint does not support RPC version {version}. Attempted method: {method}")]
    UnsupportedVersion {
        /// The requested version, as the server printed it.
        version: String,
        /// The requested method.
        method: String,
    },

    /// The message's version is above the client's version cap; nothing was sent (oslo's
    /// `RPCVersionCapError`).
    #[error(
        "Requested message version, {} is incompatible. It needs to be equal in major version \
         and less than or equal in minor version as the specified version cap {cap}.",
        display_version(version)
    )]
    VersionCap {
        /// The version the message would have carried (`None`: no version set).
        version: Option<Version>,
        /// The client's cap.
        cap: Version,
    },

    /// A typed client's version override (its `with_version`) is not a version at which the
    /// method exists in the client's trait: one of the trait's major, not older than the
    /// version that added the method (its `since`) and not newer than the trait's. Nothing
    /// was sent.
    #[error(
        "method {method} cannot be sent as version {version}: its trait has it from version \
         {since} to {latest}"
    )]
    VersionOutOfRange {
        /// The method's wire name.
        method: String,
        /// The override.
        version: Version,
        /// The version that added the method.
        since: Version,
        /// The trait's version.
        latest: Version,
    },

    /// The target cannot be used for this operation (oslo's `InvalidTarget`).
    #[error("Invalid target: {reason} ({target})")]
    InvalidTarget {
        /// Which rule was broken.
        reason: &'static str,
        /// The offending target.
        target: Box<Target>,
    },

    /// A setting is out of range.
    #[error("invalid configuration: {reason}")]
    InvalidConfig {
        /// Which rule was broken.
        reason: &'static str,
    },

    /// The remote method failed; the server's failure report.
    #[error(transparent)]
    Remote(RemoteError),

    /// The arguments of a call or cast are not a JSON object of keyword arguments.
    #[error("RPC arguments must encode to a JSON object, got {found}")]
    InvalidArguments {
        /// The JSON type the arguments encoded to.
        found: &'static str,
    },

    /// A value could not be encoded to JSON.
    #[error("failed to encode {what}: {source}")]
    Encode {
        /// What was being encoded.
        what: &'static str,
        /// The serde error.
        source: serde_json::Error,
    },

    /// A reply's result did not decode into the requested type.
    #[error("failed to decode {what}: {source}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// The serde error.
        source: serde_json::Error,
    },

    /// A message on the wire is malformed.
    #[error(transparent)]
    Wire(#[from] WireError),

    /// The transport failed.
    #[error(transparent)]
    Transport(#[from] TransportError),

    /// A transport URL is malformed.
    #[error(transparent)]
    Url(#[from] UrlError),

    /// A version string is malformed.
    #[error(transparent)]
    Version(#[from] ParseVersionError),
}

fn display_version(version: &Option<Version>) -> String {
    version.map_or_else(|| "None".to_owned(), |v| v.to_string())
}

impl RpcError {
    /// Whether no reply came in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, RpcError::Timeout { .. })
    }

    /// Whether the server has no such method.
    pub fn is_no_such_method(&self) -> bool {
        matches!(self, RpcError::NoSuchMethod { .. })
    }

    /// Whether the server does not serve the requested namespace and version.
    pub fn is_unsupported_version(&self) -> bool {
        matches!(self, RpcError::UnsupportedVersion { .. })
    }

    /// Whether the client's version cap refused the message.
    pub fn is_version_cap(&self) -> bool {
        matches!(self, RpcError::VersionCap { .. })
    }

    /// Whether a typed client's version override is outside the method's versions.
    pub fn is_version_out_of_range(&self) -> bool {
        matches!(self, RpcError::VersionOutOfRange { .. })
    }

    /// Whether the remote method itself failed.
    pub fn is_remote(&self) -> bool {
        matches!(self, RpcError::Remote(_))
    }

    /// Whether the transport failed.
    pub fn is_transport(&self) -> bool {
        matches!(self, RpcError::Transport(_))
    }

    /// Whether trying again may succeed: a timeout, or a transport failure that
    /// [`TransportError::is_retryable`] says may pass (not a closed transport, nor a refusal
    /// by the broker's rules).
    pub fn is_retryable(&self) -> bool {
        match self {
            RpcError::Timeout { .. } => true,
            RpcError::Transport(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// The remote failure, when the remote method failed.
    pub fn remote(&self) -> Option<&RemoteError> {
        match self {
            RpcError::Remote(remote) => Some(remote),
            _ => None,
        }
    }

    pub(crate) fn encode(what: &'static str, source: serde_json::Error) -> Self {
        RpcError::Encode { what, source }
    }

    pub(crate) fn decode(what: &'static str, source: serde_json::Error) -> Self {
        RpcError::Decode { what, source }
    }
}

impl From<RemoteError> for RpcError {
    fn from(remote: RemoteError) -> Self {
        RpcError::Remote(remote)
    }
}

/// Errors of a transport and its driver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Nothing is bound to receive the message: for a reply, the caller's reply queue is gone.
    #[error("message to exchange {exchange:?} with routing key {routing_key:?} was unroutable")]
    NoRoute {
        /// The exchange published to (`""` is the default exchange).
        exchange: String,
        /// The routing key.
        routing_key: String,
    },

    /// The application closed the transport; nothing more can be done with it.
    #[error("transport closed: {reason}")]
    Closed {
        /// Why.
        reason: String,
    },

    /// The connection is down, or was lost during the operation (before the broker confirmed
    /// a message, for a publish). The transport reconnects by itself; trying again once it has
    /// may succeed.
    #[error("connection to the broker lost: {reason}")]
    ConnectionLost {
        /// What failed.
        reason: String,
    },

    /// No host of the URL could be connected to (oslo has no such error: its transports
    /// connect lazily and retry forever).
    #[error("could not connect to any broker host: {}", attempts.join("; "))]
    Unreachable {
        /// Each host tried (`user:****@host:port`) and why it failed, in the order tried.
        attempts: Vec<String>,
    },

    /// A message could not be delivered within its retry budget or its deadline (oslo's
    /// `MessageDeliveryFailure`).
    #[error("message not delivered after {attempts} attempt(s) in {elapsed:?}: {reason}")]
    DeliveryFailed {
        /// Attempts made.
        attempts: u32,
        /// Time spent trying.
        elapsed: std::time::Duration,
        /// Why the last attempt failed.
        reason: String,
    },

    /// The broker refused to take a published message (a negative publisher confirm).
    #[error("the broker refused a message to exchange {exchange:?} (negative confirm)")]
    Refused {
        /// The exchange published to.
        exchange: String,
    },

    /// The broker refused an operation with an AMQP error, such as `PRECONDITION_FAILED` (a
    /// queue declared with other arguments elsewhere) or `ACCESS_REFUSED`.
    #[error("the broker refused the operation: {code} {text}")]
    Broker {
        /// The AMQP reply code (e.g. 406).
        code: u16,
        /// The broker's reply text.
        text: String,
    },

    /// A TLS setting is unusable (a CA, certificate or key file that cannot be read or parsed).
    #[error("TLS configuration: {reason}")]
    Tls {
        /// What is wrong.
        reason: String,
    },

    /// A broker or client-library error.
    #[error("transport driver error: {0}")]
    Driver(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl TransportError {
    /// Whether the operation may succeed if tried again: after a lost connection, an
    /// unreachable broker, a delivery that ran out of time or retries, a refused message, or a
    /// missing route (a reply queue may come back). Not after the application closed the
    /// transport, a refusal by the broker's rules, or a configuration error.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            TransportError::NoRoute { .. }
                | TransportError::ConnectionLost { .. }
                | TransportError::Unreachable { .. }
                | TransportError::DeliveryFailed { .. }
                | TransportError::Refused { .. }
        )
    }

    pub(crate) fn delivery_failed(
        attempts: u32,
        elapsed: std::time::Duration,
        reason: impl Into<String>,
    ) -> TransportError {
        TransportError::DeliveryFailed {
            attempts,
            elapsed,
            reason: reason.into(),
        }
    }
}

/// The module name given to the typed application errors of amqp-rpc servers that are not a
/// [`RemoteException`]. No Python module has this name, so Python callers get
/// `oslo_messaging.RemoteError` for them, with the class name as its `exc_type`.
pub const APPLICATION_ERROR_MODULE: &str = "amqp_rpc.remote";

/// The `kwargs` key holding the serialized typed error of an application failure.
const APPLICATION_ERROR_KEY: &str = "amqp_rpc_error";

/// A failure report of a remote method: oslo's serialized exception (`class`, `module`,
/// `message`, `tb`, `args`, `kwargs`).
///
/// Endpoints return it to fail a call; callers receive it in [`RpcError::Remote`]. A Python
/// caller rebuilds it as `module.class(*args, **kwargs)` when `module` is `builtins` or in its
/// `allowed_remote_exmods` and the class takes those arguments; otherwise it gets
/// `oslo_messaging.RemoteError`, with `class` as its `exc_type` and `message` as its `value`.
///
/// ```
/// use amqp_rpc::RemoteError;
/// let err = RemoteError::builtin("ValueError", "x must be positive");
/// assert_eq!(err.module(), "builtins");
/// assert_eq!(err.to_string(), "Remote error: ValueError x must be positive");
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteError {
    /// Boxed so that `Result<_, RemoteError>` stays one pointer wide.
    pub(crate) inner: Box<RemoteParts>,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RemoteParts {
    pub(crate) class: String,
    pub(crate) module: String,
    pub(crate) message: String,
    pub(crate) traceback: Vec<String>,
    pub(crate) args: Vec<Value>,
    pub(crate) kwargs: Map<String, Value>,
}

impl RemoteError {
    /// A failure of exception class `class` from Python module `module`, whose constructor
    /// arguments are `[message]`.
    #[must_use]
    pub fn new(
        class: impl Into<String>,
        module: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let message = message.into();
        RemoteError {
            inner: Box::new(RemoteParts {
                class: class.into(),
                module: module.into(),
                args: vec![Value::String(message.clone())],
                message,
                traceback: Vec::new(),
                kwargs: Map::new(),
            }),
        }
    }

    /// A failure of a Python built-in exception class (module `builtins`), which every Python
    /// caller rebuilds as that very type, e.g. `ValueError`, `KeyError`, `TypeError`.
    #[must_use]
    pub fn builtin(class: impl Into<String>, message: impl Into<String>) -> Self {
        RemoteError::new(class, "builtins", message)
    }

    /// A typed application error: `class` is its type (or variant) name, `message` its
    /// `Display`, and the value itself travels in `kwargs` so that an amqp-rpc caller can
    /// decode it back with [`RemoteError::application`]. The module is
    /// [`APPLICATION_ERROR_MODULE`], which Python callers cannot import: they get
    /// `oslo_messaging.RemoteError`. A [`RemoteException`] names a class they can catch.
    pub fn from_application<E: Serialize + fmt::Display>(
        class: impl Into<String>,
        error: &E,
    ) -> Result<Self, RpcError> {
        let value =
            serde_json::to_value(error).map_err(|e| RpcError::encode("application error", e))?;
        let mut remote = RemoteError::new(class, APPLICATION_ERROR_MODULE, error.to_string());
        remote
            .inner
            .kwargs
            .insert(APPLICATION_ERROR_KEY.to_owned(), value);
        Ok(remote)
    }

    /// A typed application error named after itself (see [`RemoteError::from_application`]):
    /// the variant's name for an enum in serde's default representation, otherwise the type's
    /// name (a struct, or an enum with `#[serde(tag = "...")]`, whose variants serde
    /// serializes as a struct named after the enum).
    pub fn from_typed<E: Serialize + fmt::Display>(error: &E) -> Result<Self, RpcError> {
        RemoteError::from_application(type_name::class_name(error), error)
    }

    /// The typed application error carried by this failure, decoded as `E`: `None` when the
    /// failure carries none (a framework failure, a Python exception, a panic).
    pub fn application<E: DeserializeOwned>(&self) -> Option<Result<E, RpcError>> {
        if self.inner.module != APPLICATION_ERROR_MODULE {
            return None;
        }
        let value = self.inner.kwargs.get(APPLICATION_ERROR_KEY)?;
        Some(E::deserialize(value).map_err(|e| RpcError::decode("application error", e)))
    }

    /// Sets the traceback lines.
    #[must_use]
    pub fn with_traceback(mut self, lines: Vec<String>) -> Self {
        self.inner.traceback = lines;
        self
    }

    /// Sets the constructor's positional arguments (default: `[message]`).
    #[must_use]
    pub fn with_args(mut self, args: Vec<Value>) -> Self {
        self.inner.args = args;
        self
    }

    /// Sets the constructor's keyword arguments (default: none).
    #[must_use]
    pub fn with_kwargs(mut self, kwargs: Map<String, Value>) -> Self {
        self.inner.kwargs = kwargs;
        self
    }

    /// The exception class name, e.g. `ValueError`.
    pub fn class(&self) -> &str {
        &self.inner.class
    }

    /// The Python module of the class, e.g. `builtins`.
    pub fn module(&self) -> &str {
        &self.inner.module
    }

    /// The exception text.
    pub fn message(&self) -> &str {
        &self.inner.message
    }

    /// The remote traceback, one entry per line as Python formats it.
    pub fn traceback(&self) -> &[String] {
        &self.inner.traceback
    }

    /// The exception's positional constructor arguments.
    pub fn args(&self) -> &[Value] {
        &self.inner.args
    }

    /// The exception's keyword constructor arguments.
    pub fn kwargs(&self) -> &Map<String, Value> {
        &self.inner.kwargs
    }
}

impl fmt::Display for RemoteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Remote error: {} {}",
            self.inner.class, self.inner.message
        )
    }
}

impl std::error::Error for RemoteError {}

/// The error of a generated client method whose trait method returns `Result<T, E>`: the
/// method's own error `E`, or a failure of the RPC itself.
#[derive(Debug, thiserror::Error)]
pub enum CallError<E> {
    /// The remote method failed with `E`: a Rust server's `Err(E)`, or, for an `E` that is a
    /// [`RemoteException`], an exception of one of its classes raised by any server.
    #[error("{0}")]
    Application(E),
    /// The call failed: timeout, routing, transport, or a remote failure other than `E`.
    #[error(transparent)]
    Rpc(#[from] RpcError),
}

impl<E> CallError<E> {
    /// The method's own error, if that is what this is.
    pub fn application(self) -> Option<E> {
        match self {
            CallError::Application(e) => Some(e),
            CallError::Rpc(_) => None,
        }
    }

    /// The RPC failure, if that is what this is.
    pub fn rpc(&self) -> Option<&RpcError> {
        match self {
            CallError::Application(_) => None,
            CallError::Rpc(e) => Some(e),
        }
    }
}

impl<E: DeserializeOwned> CallError<E> {
    /// Splits an RPC error: a remote failure carrying a typed application error that decodes
    /// as `E` becomes [`CallError::Application`]; anything else stays [`CallError::Rpc`]. (A
    /// generated client uses [`CallError::from_rpc_exception`] instead when `E` is a
    /// [`RemoteException`].)
    pub fn from_rpc(error: RpcError) -> Self {
        if let RpcError::Remote(remote) = &error {
            // An error that does not decode as `E` (a peer with another version of it) stays
            // the remote failure it is, with its class and message.
            if let Some(Ok(e)) = remote.application::<E>() {
                return CallError::Application(e);
            }
        }
        CallError::Rpc(error)
    }
}

impl<E: RemoteException> CallError<E> {
    /// Splits an RPC error: a remote failure that [`RemoteException::from_remote`] recognises
    /// and decodes becomes [`CallError::Application`]; anything else stays [`CallError::Rpc`].
    pub fn from_rpc_exception(error: RpcError) -> Self {
        if let RpcError::Remote(remote) = &error {
            // A failure of one of `E`'s classes whose arguments do not decode (a peer with
            // another version of the class) stays the remote failure it is.
            if let Some(Ok(e)) = E::from_remote(remote) {
                return CallError::Application(e);
            }
        }
        CallError::Rpc(error)
    }
}
