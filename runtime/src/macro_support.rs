//! What the code of `#[rpc_endpoint]` and `#[rpc_client]` calls. Not a public API: it changes
//! with the macros, and the version in its name makes a mismatched pair of `amqp-rpc` and
//! `amqp-rpc-macros` fail to compile rather than misbehave.

use std::fmt::Display;
use std::future::Future;
use std::pin::Pin;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub use crate::{
    CallError, Context, Endpoint, RemoteError, RpcClient, RpcError, Target, Transport, Version,
};
pub use ::core;
pub use ::serde;
pub use ::serde_json;
pub use ::std;

/// The future `Endpoint::dispatch` returns.
pub type DispatchFuture<'a> = Pin<Box<dyn Future<Output = Result<Value, RemoteError>> + Send + 'a>>;

/// A request's keyword arguments.
pub type Args = Map<String, Value>;

fn type_error(message: String) -> RemoteError {
    RemoteError::builtin("TypeError", message)
}

/// Takes keyword argument `name` of `method`. A missing argument is decoded from `null`, so an
/// `Option` parameter may be left out; for any other type it is a `TypeError`, as in Python.
pub fn take_arg<T: DeserializeOwned>(
    args: &mut Args,
    method: &str,
    name: &str,
) -> Result<T, RemoteError> {
    match args.remove(name) {
        Some(value) => T::deserialize(value)
            .map_err(|e| type_error(format!("{method}() argument '{name}': {e}"))),
        None => T::deserialize(Value::Null)
            .map_err(|_| type_error(format!("{method}() missing required argument: '{name}'"))),
    }
}

/// Refuses keyword arguments the method does not take, as Python does.
#[inline]
pub fn no_other_args(args: &Args, method: &str) -> Result<(), RemoteError> {
    match args.keys().next() {
        None => Ok(()),
        Some(name) => Err(type_error(format!(
            "{method}() got an unexpected keyword argument '{name}'"
        ))),
    }
}

/// Encodes a method's return value.
pub fn encode_result<T: Serialize + ?Sized>(method: &str, value: &T) -> Result<Value, RemoteError> {
    serde_json::to_value(value)
        .map_err(|e| type_error(format!("{method}() returned a value that is not JSON: {e}")))
}

/// Encodes a method's own error as a typed remote failure named after it.
pub fn application_error<E: Serialize + Display>(method: &str, error: &E) -> RemoteError {
    RemoteError::from_typed(error).unwrap_or_else(|e| {
        type_error(format!(
            "{method}() returned an error that is not JSON: {e}"
        ))
    })
}

/// The failure for a method name the endpoint does not have (the server checks
/// `has_method` first, so this is only reached by direct `dispatch` calls).
#[inline]
pub fn no_such_method(method: &str) -> RemoteError {
    RemoteError::new(
        "NoSuchMethod",
        crate::client::DISPATCHER_MODULE,
        format!("Endpoint does not support RPC method {method}"),
    )
}

/// `client` addressing `namespace` (`None`: the default namespace).
#[inline]
pub fn with_namespace(client: RpcClient, namespace: Option<&str>) -> RpcClient {
    client.set_namespace(namespace)
}

/// A call sending `version` (the future of [`RpcClient::call`]).
pub fn call<R: DeserializeOwned>(
    client: &RpcClient,
    version: Version,
    ctx: &Context,
    method: &str,
    args: impl Serialize,
) -> impl Future<Output = Result<R, RpcError>> {
    client.call_as(Some(version), ctx, method, args)
}

/// A cast sending `version`.
pub async fn cast(
    client: &RpcClient,
    version: Version,
    ctx: &Context,
    method: &str,
    args: impl Serialize,
) -> Result<(), RpcError> {
    client.cast_as(Some(version), ctx, method, args).await
}

/// The steps of one call as the client and server run them, for the benchmark's per-step
/// timings (`amqp-rpc-bench`). Not a public API.
pub mod wire_steps {
    use serde::Serialize;
    use serde_json::Value;

    use crate::Context;
    use crate::wire::{CallFields, IncomingReply, IncomingRequest, OutgoingReply, OutgoingRequest};

    /// Client: encodes a call request and seals it in the envelope (the AMQP body).
    pub fn encode_call(
        ctx: &Context,
        method: &str,
        args: &impl Serialize,
        reply_q: &str,
    ) -> Result<Vec<u8>, crate::RpcError> {
        let msg_id = crate::wire::new_id().text();
        let unique_id = crate::wire::new_id().text();
        OutgoingRequest {
            method,
            args,
            namespace: None,
            version: None,
            call: Some(CallFields {
                msg_id: msg_id.as_str(),
                reply_q,
                call_monitor_timeout: None,
            }),
            unique_id: unique_id.as_str(),
            context: ctx,
        }
        .encode()
    }

    /// Server: opens a request body; returns the method, the arguments and the context.
    pub fn decode_request(
        body: &[u8],
    ) -> Result<(Option<String>, Value, Context), crate::wire::WireError> {
        let request: IncomingRequest = crate::wire::decode(body)?;
        Ok((request.method, request.args, request.context))
    }

    /// Server: encodes a final reply carrying `result` and seals it.
    pub fn encode_reply(result: &Value, msg_id: &str) -> Vec<u8> {
        let unique_id = crate::wire::new_id().text();
        OutgoingReply {
            result,
            failure: None,
            ending: true,
            msg_id,
            unique_id: unique_id.as_str(),
        }
        .encode()
    }

    /// Client: opens a reply body; returns its result.
    pub fn decode_reply(body: &[u8]) -> Result<Value, crate::wire::WireError> {
        IncomingReply::decode(body).map(|reply| reply.result)
    }
}
