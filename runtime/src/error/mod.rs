//! The one public error type, [`RpcError`], and the remote failure it can carry.
//!
//! Framework errors (timeouts, routing, versions, encoding, transport) are variants of
//! [`RpcError`]; whatever the remote method itself failed with arrives as a [`RemoteError`],
//! which may carry the method's own typed error: a value of a [`RemoteException`], which names
//! a Python exception class, or else a serde value (see [`RemoteError::application`]). A
//! generated client method returning `Result<T, E>` fails with [`CallError<E>`]: `E`, or an
//! [`RpcError`].
//!
//! [`RpcError`] and [`CallError`] answer the same questions (`is_timeout()`,
//! `is_retryable()`, ...), so callers need not match variants. Accessors borrow (`remote()`,
//! `rpc()`, `application()`); their `into_*` twins take the error apart.

mod exception;
mod type_name;

pub use exception::RemoteException;

use std::fmt;
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::target::TargetError;
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

    /// The target cannot be used for this operation (oslo's `InvalidTarget`): a call to a
    /// fanout target, a message without a topic, a server without a server name.
    #[error(transparent)]
    InvalidTarget(#[from] TargetError),

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

    /// Whether the target cannot be used for the operation.
    pub fn is_invalid_target(&self) -> bool {
        matches!(self, RpcError::InvalidTarget(_))
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

    /// The class of the exception oslo.messaging raises to a Python caller in the same case,
    /// as metrics and spans name a failure: `MessagingTimeout`, `NoSuchMethod`,
    /// `UnsupportedVersion`, `RPCVersionCapError`, `InvalidTarget`, `MessageDeliveryFailure`
    /// (the broker could not be reached or refused the message), `TypeError` (arguments or
    /// results that do not encode or decode), the remote class for a remote failure
    /// (`ValueError`, `NotFound`...), and `RpcError` for the cases only amqp-rpc has (a bad
    /// URL or configuration, a version out of a trait's range).
    pub fn class(&self) -> &str {
        match self {
            RpcError::Timeout { .. } => "MessagingTimeout",
            RpcError::NoSuchMethod { .. } => "NoSuchMethod",
            RpcError::UnsupportedVersion { .. } => "UnsupportedVersion",
            RpcError::VersionCap { .. } => "RPCVersionCapError",
            RpcError::InvalidTarget(_) => "InvalidTarget",
            RpcError::Remote(remote) => remote.class(),
            RpcError::Transport(_) => "MessageDeliveryFailure",
            RpcError::InvalidArguments { .. }
            | RpcError::Encode { .. }
            | RpcError::Decode { .. }
            | RpcError::Wire(_) => "TypeError",
            RpcError::VersionOutOfRange { .. }
            | RpcError::InvalidConfig { .. }
            | RpcError::Url(_)
            | RpcError::Version(_) => "RpcError",
        }
    }

    /// The remote failure, taken out of the error, when the remote method failed.
    pub fn into_remote(self) -> Option<RemoteError> {
        match self {
            RpcError::Remote(remote) => Some(remote),
            _ => None,
        }
    }

    /// The transport's failure, when the transport failed.
    pub fn transport(&self) -> Option<&TransportError> {
        match self {
            RpcError::Transport(error) => Some(error),
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

/// Errors of a transport and its driver: one variant per cause, and
/// [`TransportError::is_retryable`] to tell, without matching them, whether trying again may
/// help.
#[derive(Debug, Clone, thiserror::Error)]
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

    /// The application closed the transport ([`Transport::close`]); nothing more can be done
    /// with it.
    ///
    /// [`Transport::close`]: crate::Transport::close
    #[error("transport closed: {reason}")]
    Closed {
        /// Why.
        reason: String,
    },

    /// The connection is down, or was lost during the operation (before the broker confirmed
    /// a message, for a publish; a heartbeat missed, a socket error, or an AMQP connection
    /// error such as `CONNECTION_FORCED`). The transport reconnects by itself; trying again
    /// once it has may succeed.
    #[error("connection to the broker lost: {reason}")]
    ConnectionLost {
        /// What failed.
        reason: String,
    },

    /// The AMQP channel the operation used is closed (by the broker, after an earlier error on
    /// it), while the connection stands. The next attempt opens another channel.
    #[error("AMQP channel closed: {reason}")]
    ChannelClosed {
        /// What the client library said.
        reason: String,
    },

    /// No host of the URL could be connected to (oslo has no such error: its transports
    /// connect lazily and retry forever).
    #[error("could not connect to any broker host: {}", attempts.join("; "))]
    Unreachable {
        /// Each host tried (`user:****@host:port`) and why it failed, in the order tried.
        attempts: Vec<String>,
    },

    /// The transport URL names no broker host to connect to.
    #[error("the transport URL names no broker host")]
    NoHosts,

    /// A driver was asked to listen on a target that cannot name a server (clients and
    /// servers check their targets first, and report [`RpcError::InvalidTarget`]).
    #[error(transparent)]
    InvalidTarget(#[from] TargetError),

    /// A listener's consumers ended and its driver does not restore them: the `memory://`
    /// broker dropped them. (A `rabbit://` listener consumes again by itself, and ends only
    /// with [`TransportError::Closed`].)
    #[error("subscription ended: {reason}")]
    SubscriptionEnded {
        /// Why.
        reason: String,
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

    /// The broker refused to take a published message (a negative publisher confirm: a queue
    /// at its `x-max-length` with `reject-publish`, or an internal error of the queue).
    #[error("the broker refused a message to exchange {exchange:?} (negative confirm)")]
    Refused {
        /// The exchange published to.
        exchange: String,
    },

    /// The broker refused an operation with an AMQP channel error, such as
    /// `PRECONDITION_FAILED` (406: a queue declared with other arguments elsewhere),
    /// `ACCESS_REFUSED` (403) or `RESOURCE_LOCKED` (405: an exclusive queue of another
    /// connection). The connection stands.
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

    /// A failure of the driver or its client library that no other variant describes (for
    /// `rabbit://`: a lapin error that is neither a connection nor a channel failure, such as
    /// a frame that cannot be parsed or the channel limit reached).
    #[error("transport driver error: {source}")]
    Driver {
        /// The driver's error.
        source: std::sync::Arc<dyn std::error::Error + Send + Sync>,
        /// Whether trying again may succeed, as the driver judged it (for lapin errors: its
        /// `can_be_recovered()`).
        retryable: bool,
    },
}

/// AMQP's `RESOURCE_LOCKED`: another connection holds the entity, for now.
const RESOURCE_LOCKED: u16 = 405;

impl TransportError {
    /// Whether the operation may succeed if tried again, from what happened: after a lost
    /// connection or closed channel, an unreachable broker, a delivery that ran out of time or
    /// retries, a refused message, a missing route (a reply queue may come back), an entity
    /// locked by another connection (`RESOURCE_LOCKED`), or a driver error its driver deems
    /// recoverable. Not after the application closed the transport, another refusal by the
    /// broker's rules, an invalid target, a subscription that ended, or a configuration error.
    pub fn is_retryable(&self) -> bool {
        match self {
            TransportError::NoRoute { .. }
            | TransportError::ConnectionLost { .. }
            | TransportError::ChannelClosed { .. }
            | TransportError::Unreachable { .. }
            | TransportError::DeliveryFailed { .. }
            | TransportError::Refused { .. } => true,
            TransportError::Broker { code, .. } => *code == RESOURCE_LOCKED,
            TransportError::Driver { retryable, .. } => *retryable,
            TransportError::Closed { .. }
            | TransportError::NoHosts
            | TransportError::InvalidTarget(_)
            | TransportError::SubscriptionEnded { .. }
            | TransportError::Tls { .. } => false,
        }
    }

    /// Whether the application closed the transport.
    pub fn is_closed(&self) -> bool {
        matches!(self, TransportError::Closed { .. })
    }

    /// A [`TransportError::Driver`] for `error`, which `retryable` says may pass if the
    /// operation is tried again.
    pub fn driver(error: impl std::error::Error + Send + Sync + 'static, retryable: bool) -> Self {
        TransportError::Driver {
            source: std::sync::Arc::new(error),
            retryable,
        }
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

    /// What the transport's own [`Transport::close`](crate::Transport::close) reports.
    pub(crate) fn closed() -> TransportError {
        TransportError::Closed {
            reason: "the transport was closed".to_owned(),
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
///
/// It answers the questions [`RpcError`] does, so a caller can tell what happened without
/// matching both levels:
///
/// ```
/// use amqp_rpc::{CallError, RpcError};
/// let err: CallError<String> = CallError::Rpc(RpcError::NoSuchMethod { method: "resize".into() });
/// assert!(err.is_no_such_method() && !err.is_application() && !err.is_retryable());
/// assert!(err.application().is_none());
///
/// let err: CallError<String> = CallError::Application("no such flavor".into());
/// assert_eq!(err.application().map(String::as_str), Some("no such flavor"));
/// assert_eq!(err.into_application(), Some("no such flavor".to_owned()));
/// ```
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
    /// Whether the remote method failed with its own error `E`.
    pub fn is_application(&self) -> bool {
        matches!(self, CallError::Application(_))
    }

    /// Whether no reply came in time ([`RpcError::is_timeout`]).
    pub fn is_timeout(&self) -> bool {
        self.rpc().is_some_and(RpcError::is_timeout)
    }

    /// Whether the server has no such method ([`RpcError::is_no_such_method`]).
    pub fn is_no_such_method(&self) -> bool {
        self.rpc().is_some_and(RpcError::is_no_such_method)
    }

    /// Whether the server does not serve the requested namespace and version
    /// ([`RpcError::is_unsupported_version`]).
    pub fn is_unsupported_version(&self) -> bool {
        self.rpc().is_some_and(RpcError::is_unsupported_version)
    }

    /// Whether the client's version cap refused the message ([`RpcError::is_version_cap`]).
    pub fn is_version_cap(&self) -> bool {
        self.rpc().is_some_and(RpcError::is_version_cap)
    }

    /// Whether a typed client's version override is outside the method's versions
    /// ([`RpcError::is_version_out_of_range`]).
    pub fn is_version_out_of_range(&self) -> bool {
        self.rpc().is_some_and(RpcError::is_version_out_of_range)
    }

    /// Whether the remote method failed with something other than `E` (a Python exception
    /// `E` does not name, a panic): [`RpcError::is_remote`]. A failure with `E` is
    /// [`CallError::is_application`].
    pub fn is_remote(&self) -> bool {
        self.rpc().is_some_and(RpcError::is_remote)
    }

    /// Whether the transport failed ([`RpcError::is_transport`]).
    pub fn is_transport(&self) -> bool {
        self.rpc().is_some_and(RpcError::is_transport)
    }

    /// Whether the target cannot be used for the call ([`RpcError::is_invalid_target`]).
    pub fn is_invalid_target(&self) -> bool {
        self.rpc().is_some_and(RpcError::is_invalid_target)
    }

    /// Whether trying again may succeed ([`RpcError::is_retryable`]); never for the method's
    /// own error, which its server chose to return.
    pub fn is_retryable(&self) -> bool {
        self.rpc().is_some_and(RpcError::is_retryable)
    }

    /// The method's own error, if that is what this is.
    pub fn application(&self) -> Option<&E> {
        match self {
            CallError::Application(e) => Some(e),
            CallError::Rpc(_) => None,
        }
    }

    /// The method's own error, taken out of the error, if that is what this is.
    pub fn into_application(self) -> Option<E> {
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

    /// The RPC failure, taken out of the error, if that is what this is.
    pub fn into_rpc(self) -> Option<RpcError> {
        match self {
            CallError::Application(_) => None,
            CallError::Rpc(e) => Some(e),
        }
    }

    /// The remote failure, when the remote method failed with something other than `E`
    /// ([`RpcError::remote`]).
    pub fn remote(&self) -> Option<&RemoteError> {
        self.rpc().and_then(RpcError::remote)
    }

    /// The transport's failure, when the transport failed ([`RpcError::transport`]).
    pub fn transport(&self) -> Option<&TransportError> {
        self.rpc().and_then(RpcError::transport)
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::target::Target;

    fn text(s: &str) -> String {
        s.to_owned()
    }

    fn no_server() -> TargetError {
        TargetError::MissingServer {
            target: Box::new(Target::new("t")),
        }
    }

    #[test]
    fn transport_errors_are_retryable_by_what_happened() {
        let retryable = [
            TransportError::NoRoute {
                exchange: text(""),
                routing_key: text("reply_x"),
            },
            TransportError::ConnectionLost {
                reason: text("reset"),
            },
            TransportError::ChannelClosed {
                reason: text("closed"),
            },
            TransportError::Unreachable {
                attempts: vec![text("h:5672 (refused)")],
            },
            TransportError::delivery_failed(3, Duration::from_secs(1), "lost"),
            TransportError::Refused {
                exchange: text("openstack"),
            },
            TransportError::Broker {
                code: 405,
                text: text("RESOURCE_LOCKED"),
            },
            TransportError::driver(std::io::Error::other("odd"), true),
        ];
        for error in retryable {
            assert!(error.is_retryable(), "{error:?}");
            assert!(RpcError::from(error).is_retryable());
        }
        let final_ = [
            TransportError::closed(),
            TransportError::NoHosts,
            TransportError::InvalidTarget(no_server()),
            TransportError::SubscriptionEnded {
                reason: text("gone"),
            },
            TransportError::Broker {
                code: 406,
                text: text("PRECONDITION_FAILED"),
            },
            TransportError::Broker {
                code: 403,
                text: text("ACCESS_REFUSED"),
            },
            TransportError::Tls {
                reason: text("no such file"),
            },
            TransportError::driver(std::io::Error::other("odd"), false),
        ];
        for error in final_ {
            assert!(!error.is_retryable(), "{error:?}");
            assert!(!RpcError::from(error).is_retryable());
        }
    }

    #[test]
    fn transport_error_texts_name_their_cause() {
        assert_eq!(
            TransportError::closed().to_string(),
            "transport closed: the transport was closed"
        );
        assert_eq!(
            TransportError::NoHosts.to_string(),
            "the transport URL names no broker host"
        );
        let target = TransportError::from(no_server());
        assert_eq!(
            target.to_string(),
            "Invalid target: a server target needs a server name (topic=t)"
        );
        let driver = TransportError::driver(std::io::Error::other("odd"), false);
        assert_eq!(driver.to_string(), "transport driver error: odd");
        assert!(std::error::Error::source(&driver).is_some());
    }
}

#[cfg(test)]
mod call_error_tests {
    use std::time::Duration;

    use super::*;

    type Call = CallError<String>;

    #[test]
    fn call_errors_answer_what_rpc_errors_do() {
        let timeout = Call::Rpc(RpcError::Timeout {
            msg_id: "m".to_owned(),
            waited: Duration::from_secs(1),
        });
        assert!(timeout.is_timeout() && timeout.is_retryable() && !timeout.is_application());

        let missing = Call::Rpc(RpcError::NoSuchMethod {
            method: "m".to_owned(),
        });
        assert!(missing.is_no_such_method() && !missing.is_retryable());

        let version = Call::Rpc(RpcError::UnsupportedVersion {
            version: "2.0".to_owned(),
            method: "m".to_owned(),
        });
        assert!(version.is_unsupported_version());

        let cap = Call::Rpc(RpcError::VersionCap {
            version: Some(Version::new(2, 0)),
            cap: Version::new(1, 0),
        });
        assert!(cap.is_version_cap());

        let range = Call::Rpc(RpcError::VersionOutOfRange {
            method: "m".to_owned(),
            version: Version::new(1, 1),
            since: Version::new(1, 3),
            latest: Version::new(1, 4),
        });
        assert!(range.is_version_out_of_range() && !range.is_version_cap());

        let remote = Call::Rpc(RpcError::Remote(RemoteError::builtin("ValueError", "bad")));
        assert!(remote.is_remote() && !remote.is_application());
        assert_eq!(remote.remote().map(RemoteError::class), Some("ValueError"));

        let lost = Call::Rpc(RpcError::Transport(TransportError::ConnectionLost {
            reason: "reset".to_owned(),
        }));
        assert!(lost.is_transport() && lost.is_retryable());
        assert!(lost.transport().is_some_and(TransportError::is_retryable));

        let target = crate::Target::new("t").with_fanout(true);
        let fanout = Call::Rpc(RpcError::from(TargetError::FanoutCall {
            target: Box::new(target),
        }));
        assert!(fanout.is_invalid_target() && !fanout.is_retryable());

        let application = Call::Application("quota".to_owned());
        assert!(application.is_application());
        assert!(!application.is_remote() && !application.is_retryable());
        assert!(application.rpc().is_none() && application.remote().is_none());
    }

    #[test]
    fn accessors_borrow_and_into_takes_apart() {
        let application = Call::Application("quota".to_owned());
        assert_eq!(application.application().map(String::as_str), Some("quota"));
        assert_eq!(application.into_application().as_deref(), Some("quota"));

        let rpc = Call::Rpc(RpcError::Remote(RemoteError::builtin("KeyError", "k")));
        assert!(rpc.rpc().is_some_and(RpcError::is_remote));
        let remote = rpc.into_rpc().and_then(RpcError::into_remote);
        assert_eq!(remote.as_ref().map(RemoteError::message), Some("k"));
    }
}
