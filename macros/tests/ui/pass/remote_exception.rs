//! `#[derive(RemoteException)]` names everything by absolute path: it compiles without the
//! prelude, with the runtime crate renamed, for a generic type, and its types serve as the error
//! of an endpoint-only and a client-only trait without implementing serde's traits.
#![no_implicit_prelude]
#![deny(missing_docs)]

extern crate amqp_rpc as rpc_renamed;
extern crate std;

use rpc_renamed::RemoteException;

// Names the generated code must not pick up from the scope it is expanded in.
#[allow(dead_code)]
struct Result;
#[allow(dead_code)]
struct Option;
#[allow(dead_code)]
struct Self_;
#[allow(dead_code)]
mod serde {}

/// Every kind of variant.
#[derive(::std::fmt::Debug, ::std::cmp::PartialEq, rpc_renamed::RemoteException)]
#[remote(crate = "rpc_renamed", module = "nova.exception")]
pub enum ComputeError<T> {
    /// Named fields, a raw identifier among them.
    InstanceNotFound {
        /// The instance.
        instance_id: T,
        /// Its kind.
        r#type: ::std::option::Option<::std::string::String>,
    },
    /// Tuple fields.
    #[remote(module = "builtins", class = "ValueError")]
    Invalid(::std::string::String, u32),
    /// No fields.
    #[remote(class = "Timeout")]
    TimedOut,
    /// No fields, in braces.
    Empty {},
}

impl<T> ::std::fmt::Display for ComputeError<T> {
    fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
        f.write_str("compute failed")
    }
}

/// A unit struct.
#[derive(::std::fmt::Debug, rpc_renamed::RemoteException)]
#[remote(crate = "rpc_renamed", module = "builtins", class = "TimeoutError")]
pub struct TimedOut;

impl ::std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
        f.write_str("timed out")
    }
}

/// A tuple struct.
#[derive(::std::fmt::Debug, ::std::cmp::PartialEq, rpc_renamed::RemoteException)]
#[remote(crate = "rpc_renamed", module = "builtins", class = "LookupError")]
pub struct Missing(pub ::std::string::String);

impl ::std::fmt::Display for Missing {
    fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Served only.
#[rpc_renamed::rpc_endpoint(crate = "rpc_renamed")]
pub trait Served {
    /// Fails.
    async fn fail(&self) -> ::std::result::Result<(), ComputeError<u64>>;
}

/// Called only.
#[rpc_renamed::rpc_client(crate = "rpc_renamed")]
pub trait Called {
    /// Fails.
    async fn fail(&self) -> ::std::result::Result<(), TimedOut>;
}

fn main() {
    let error = ComputeError::InstanceNotFound {
        instance_id: 7u64,
        r#type: ::std::option::Option::None,
    };
    let remote = match error.to_remote() {
        ::std::result::Result::Ok(remote) => remote,
        ::std::result::Result::Err(e) => ::std::panic!("{e}"),
    };
    ::std::assert_eq!(remote.kwargs()["instance_id"], 7);
    let back = ComputeError::<u64>::from_remote(&remote);
    ::std::assert!(
        ::std::matches!(back, ::std::option::Option::Some(::std::result::Result::Ok(e)) if e == error)
    );
    let invalid = ComputeError::<u64>::Invalid(::std::borrow::ToOwned::to_owned("bad"), 2);
    let remote = match invalid.to_remote() {
        ::std::result::Result::Ok(remote) => remote,
        ::std::result::Result::Err(e) => ::std::panic!("{e}"),
    };
    ::std::assert_eq!(remote.args().len(), 2);
    let _ = TimedOut.to_remote();
    let missing = Missing(::std::borrow::ToOwned::to_owned("key"));
    let remote = match missing.to_remote() {
        ::std::result::Result::Ok(remote) => remote,
        ::std::result::Result::Err(e) => ::std::panic!("{e}"),
    };
    ::std::assert!(::std::matches!(
        Missing::from_remote(&remote),
        ::std::option::Option::Some(::std::result::Result::Ok(m)) if m == missing
    ));
}
