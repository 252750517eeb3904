//! Typed errors that are named Python exceptions: a [`RemoteException`] says which exception
//! class each of its values is, so that Python callers catch that class and Rust callers get the
//! value back. `#[derive(RemoteException)]` implements it; error types without it travel as
//! typed application errors ([`RemoteError::from_typed`]).

use std::fmt;

use super::{RemoteError, RpcError};

/// A Rust error that is an exception of a named Python class: each value has a module and a
/// class, its fields are the exception's constructor arguments, its `Display` the exception's
/// text.
///
/// A method of an `#[rpc_endpoint]` trait returning `Result<T, E>` with `E: RemoteException`
/// fails with `E::to_remote`, and the generated client turns a failure that `E::from_remote`
/// recognises into `CallError::Application(E)`, whatever language the other side is written
/// in. oslo.messaging rebuilds the class on the Python side only when its module is `builtins`
/// or in the caller's `allowed_remote_exmods`, and only when the class accepts the arguments
/// (`cls(*args, **kwargs)`); otherwise the Python caller gets `oslo_messaging.RemoteError`,
/// whose `exc_type` is the class name.
///
/// Derive it (see [`derive@crate::RemoteException`] for the attributes):
///
/// ```
/// use amqp_rpc::{RemoteError, RemoteException};
///
/// #[derive(Debug, PartialEq, RemoteException)]
/// #[remote(module = "nova.exception")]
/// pub enum ComputeError {
///     /// `nova.exception.InstanceNotFound(message, instance_id=...)`.
///     InstanceNotFound { instance_id: String },
///     /// `ValueError(reason)`.
///     #[remote(module = "builtins", class = "ValueError")]
///     Invalid(String),
/// }
///
/// impl std::fmt::Display for ComputeError {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         match self {
///             ComputeError::InstanceNotFound { instance_id } => {
///                 write!(f, "Instance {instance_id} could not be found.")
///             }
///             ComputeError::Invalid(reason) => f.write_str(reason),
///         }
///     }
/// }
///
/// # fn main() -> Result<(), amqp_rpc::RpcError> {
/// let missing = ComputeError::InstanceNotFound { instance_id: "i-1".to_owned() };
/// let remote = missing.to_remote()?;
/// assert_eq!((remote.module(), remote.class()), ("nova.exception", "InstanceNotFound"));
/// assert_eq!(remote.message(), "Instance i-1 could not be found.");
/// assert_eq!(remote.kwargs()["instance_id"], "i-1");
/// assert_eq!(ComputeError::from_remote(&remote).transpose()?, Some(missing));
///
/// // What a Python server's `raise ValueError("no such flavor")` sends.
/// let python = RemoteError::builtin("ValueError", "no such flavor");
/// assert_eq!(
///     ComputeError::from_remote(&python).transpose()?,
///     Some(ComputeError::Invalid("no such flavor".to_owned())),
/// );
/// assert!(ComputeError::from_remote(&RemoteError::builtin("KeyError", "x")).is_none());
/// # Ok(()) }
/// ```
pub trait RemoteException: fmt::Display + Sized {
    /// The failure report of `self`: its module and class, `Display` as the message, and its
    /// fields as the constructor's arguments. Fails only if a field does not encode to JSON.
    fn to_remote(&self) -> Result<RemoteError, RpcError>;

    /// The value that `remote` reports: `None` when its module and class are none of this
    /// type's (oslo's renamed `<class>_Remote` in `<module>_Remote` counts as the class
    /// itself), an error when they are but its arguments do not decode into the fields.
    fn from_remote(remote: &RemoteError) -> Option<Result<Self, RpcError>>;
}

const REMOTE_SUFFIX: &str = "_Remote";

impl RemoteError {
    /// Whether this failure is of class `class` in module `module`, or of oslo's renamed
    /// `<class>_Remote` in `<module>_Remote` (an exception a Python peer rebuilt and raised
    /// again).
    pub(crate) fn is_exception(&self, module: &str, class: &str) -> bool {
        let (own_module, own_class) = (self.module(), self.class());
        (own_module == module && own_class == class)
            || (own_module.strip_suffix(REMOTE_SUFFIX) == Some(module)
                && own_class.strip_suffix(REMOTE_SUFFIX) == Some(class))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exception_is_its_class_or_the_class_renamed_by_oslo() {
        let plain = RemoteError::new("InstanceNotFound", "nova.exception", "m");
        assert!(plain.is_exception("nova.exception", "InstanceNotFound"));
        assert!(!plain.is_exception("nova.exception", "NotFound"));
        assert!(!plain.is_exception("nova", "InstanceNotFound"));
        let renamed = RemoteError::new("InstanceNotFound_Remote", "nova.exception_Remote", "m");
        assert!(renamed.is_exception("nova.exception", "InstanceNotFound"));
        let half = RemoteError::new("InstanceNotFound_Remote", "nova.exception", "m");
        assert!(!half.is_exception("nova.exception", "InstanceNotFound"));
    }
}
