//! What the code of `#[rpc_endpoint]` and `#[rpc_client]` calls. Not a public API: it changes
//! with the macros, and the version in its name makes a mismatched pair of `amqp-rpc` and
//! `amqp-rpc-macros` fail to compile rather than misbehave.

use std::fmt::Display;
use std::future::Future;
use std::marker::PhantomData;

use futures_util::future::Either;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

pub use crate::{
    CallError, Context, Endpoint, RemoteError, RemoteException, Returned, RpcClient, RpcError,
    Target, Transport, Version,
};
pub use ::async_trait::async_trait;
pub use ::core;
pub use ::serde;
pub use ::serde_json;
pub use ::std;

/// A request's keyword arguments.
pub type Args = Map<String, Value>;

/// Finds a type's JSON Schema for a description: [`TypeSchema`](crate::describe::TypeSchema)'s
/// when the type has one, else its Rust name. Generated code calls
/// `(&&SchemaProbe::<T>::new()).schema()` with both traits in scope: method lookup tries
/// `&SchemaProbe<T>` (the [`ViaTypeSchema`] impl) before `SchemaProbe<T>` ([`ViaTypeName`]).
pub struct SchemaProbe<T: ?Sized>(PhantomData<fn() -> PhantomData<T>>);

impl<T: ?Sized> SchemaProbe<T> {
    /// The probe.
    pub fn new() -> Self {
        SchemaProbe(PhantomData)
    }
}

impl<T: ?Sized> Default for SchemaProbe<T> {
    fn default() -> Self {
        SchemaProbe::new()
    }
}

/// A type with a [`TypeSchema`](crate::describe::TypeSchema).
pub trait ViaTypeSchema {
    /// The schema.
    fn schema(&self) -> Value;
}

impl<T: crate::describe::TypeSchema + ?Sized> ViaTypeSchema for &SchemaProbe<T> {
    fn schema(&self) -> Value {
        T::schema()
    }
}

/// Any other type: named.
pub trait ViaTypeName {
    /// `{"x-rust-type": "<type name>"}`.
    fn schema(&self) -> Value;
}

impl<T: ?Sized> ViaTypeName for SchemaProbe<T> {
    fn schema(&self) -> Value {
        let mut schema = Map::new();
        schema.insert("x-rust-type".into(), std::any::type_name::<T>().into());
        Value::Object(schema)
    }
}

/// One method's description: its keyword arguments as a JSON Schema object (each required
/// but `Option`s, which may be left out), its result's schema (`None` for a cast).
pub fn describe_method(
    name: &str,
    since: &str,
    doc: &str,
    params: &[(&str, Value, bool)],
    returns: Option<Value>,
) -> Value {
    let mut properties = Map::new();
    let mut required = Vec::new();
    for (param, schema, optional) in params {
        properties.insert((*param).to_owned(), schema.clone());
        if !optional {
            required.push(Value::from(*param));
        }
    }
    let mut method = Map::new();
    method.insert("name".into(), name.into());
    method.insert("since".into(), since.into());
    method.insert("cast".into(), returns.is_none().into());
    method.insert("doc".into(), doc.trim().into());
    let mut schema = Map::new();
    schema.insert("type".into(), "object".into());
    schema.insert("properties".into(), Value::Object(properties));
    schema.insert("required".into(), Value::Array(required));
    schema.insert("additionalProperties".into(), false.into());
    method.insert("params".into(), Value::Object(schema));
    if let Some(returns) = returns {
        method.insert("returns".into(), returns);
    }
    Value::Object(method)
}

/// An endpoint's description: its trait and methods.
pub fn describe_endpoint(trait_name: &str, methods: Vec<Value>) -> Value {
    let mut endpoint = Map::new();
    endpoint.insert("trait".into(), trait_name.into());
    endpoint.insert("methods".into(), Value::Array(methods));
    Value::Object(endpoint)
}

/// An `Option` parameter, which may be left out (see [`take_arg`]).
pub trait ViaOption {
    /// `true`.
    fn optional(&self) -> bool;
}

impl<T> ViaOption for &SchemaProbe<Option<T>> {
    fn optional(&self) -> bool {
        true
    }
}

/// Any other parameter, required.
pub trait ViaRequired {
    /// `false`.
    fn optional(&self) -> bool;
}

impl<T: ?Sized> ViaRequired for SchemaProbe<T> {
    fn optional(&self) -> bool {
        false
    }
}

fn type_error(message: String) -> RemoteError {
    RemoteError::builtin("TypeError", message)
}

/// Takes keyword argument `name` of `method`, decoding it with
/// [`wire::from_value`](crate::wire::from_value) (so Python's `NaN` or big integers reach
/// a type that holds them).
///
/// A missing argument is a `TypeError` naming it, as in Python, whatever the parameter's type
/// (`serde_json::Value` and `()` included), except `Option<T>`, which is `None` when left out:
/// the Rust spelling of Python's `name=None`. A value the type cannot hold is a `TypeError`, or
/// a `ValueError` for a Python value no Rust type of that kind holds (`NaN` for an integer).
pub fn take_arg<T: DeserializeOwned>(
    args: &mut Args,
    method: &str,
    name: &str,
) -> Result<T, RemoteError> {
    match args.remove(name) {
        Some(value) => crate::wire::from_value(value).map_err(|e| {
            let text = e.to_string();
            match text.strip_prefix("ValueError: ") {
                Some(text) => RemoteError::builtin(
                    "ValueError",
                    format!("{method}() argument '{name}': {text}"),
                ),
                None => type_error(format!("{method}() argument '{name}': {text}")),
            }
        }),
        None => T::deserialize(Absent).map_err(|_| {
            type_error(format!(
                "{method}() missing 1 required positional argument: '{name}'"
            ))
        }),
    }
}

/// An argument left out: an `Option` takes it as `None`; every other type refuses it.
struct Absent;

impl<'de> serde::Deserializer<'de> for Absent {
    type Error = serde_json::Error;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(serde::de::Error::custom("missing"))
    }

    fn deserialize_option<V: serde::de::Visitor<'de>>(
        self,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_none()
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        unit unit_struct newtype_struct seq tuple tuple_struct map struct enum identifier
        ignored_any
    }
}

/// Refuses keyword arguments other than `params`, before any is decoded: Python reports an
/// unexpected keyword argument before a missing one.
#[inline]
pub fn only_args(args: &Args, method: &str, params: &[&str]) -> Result<(), RemoteError> {
    match args.keys().find(|name| !params.contains(&name.as_str())) {
        None => Ok(()),
        Some(name) => Err(type_error(format!(
            "{method}() got an unexpected keyword argument '{name}'"
        ))),
    }
}

/// Encodes a method's return value, straight into the start of its reply.
pub fn encode_result<T: Serialize + ?Sized>(
    method: &str,
    value: &T,
) -> Result<Returned, RemoteError> {
    Returned::encode(value)
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

/// How a method's error type `E` crosses the wire: through its [`RemoteException`] impl when
/// it has one ([`ExceptionCodec`]), else as a serde value ([`SerdeCodec`]). The choice is made
/// at compile time by method resolution (autoref specialization), since `E` is a concrete
/// type in the generated code:
///
/// ```text
/// use __private_v1::{ViaException as _, ViaSerde as _};
/// (&ErrorCodec::<E>::NEW).codec().application_error::<E>(method, &error)
/// ```
///
/// [`ViaException`] is implemented for `ErrorCodec<E>` when `E: RemoteException` and matches
/// the receiver as it is; [`ViaSerde`], for every `&ErrorCodec<E>`, matches only after
/// another borrow, so it is picked only when the first does not apply. [`SerdeCodec`]'s
/// methods carry today's serde bounds, so an error type with neither fails at those bounds.
pub struct ErrorCodec<E>(PhantomData<fn() -> E>);

impl<E> ErrorCodec<E> {
    /// The selector for `E`.
    pub const NEW: Self = ErrorCodec(PhantomData);
}

/// Picks [`ExceptionCodec`] for a [`RemoteException`] (see [`ErrorCodec`]).
pub trait ViaException {
    /// The codec.
    fn codec(&self) -> ExceptionCodec {
        ExceptionCodec
    }
}

impl<E: RemoteException> ViaException for ErrorCodec<E> {}

/// Picks [`SerdeCodec`] for any other error type (see [`ErrorCodec`]).
pub trait ViaSerde {
    /// The codec.
    fn codec(&self) -> SerdeCodec {
        SerdeCodec
    }
}

impl<E> ViaSerde for &ErrorCodec<E> {}

/// A method's error through its [`RemoteException`] impl.
#[derive(Clone, Copy)]
pub struct ExceptionCodec;

impl ExceptionCodec {
    /// Encodes a method's own error as the exception it names.
    pub fn application_error<E: RemoteException>(self, method: &str, error: &E) -> RemoteError {
        error.to_remote().unwrap_or_else(|e| {
            type_error(format!(
                "{method}() returned an error that is not JSON: {e}"
            ))
        })
    }

    /// A call's error, as [`CallError::from_rpc_exception`].
    pub fn from_rpc<E: RemoteException>(self, error: RpcError) -> CallError<E> {
        CallError::from_rpc_exception(error)
    }
}

/// A method's error as a serde value ([`RemoteError::from_typed`]).
#[derive(Clone, Copy)]
pub struct SerdeCodec;

impl SerdeCodec {
    /// Encodes a method's own error as a typed remote failure named after it.
    pub fn application_error<E: Serialize + Display>(self, method: &str, error: &E) -> RemoteError {
        application_error(method, error)
    }

    /// A call's error, as [`CallError::from_rpc`].
    pub fn from_rpc<E: DeserializeOwned>(self, error: RpcError) -> CallError<E> {
        CallError::from_rpc(error)
    }
}

/// Refuses a method's return type that is a [`Result`] the macro could not see as one, an
/// alias under another name (`type Fallible<T> = Result<T, E>`): its `Err` would be sent as a
/// successful `{"Err": ...}` value, which Python callers never see as an exception. The macro
/// refuses a `Result` it sees with other than two parameters itself; this check, in the
/// generated code, sees through aliases by autoref specialization (as [`ErrorCodec`]):
///
/// ```text
/// use __private_v1::{ReturnIsResult as _, ReturnIsValue as _};
/// (&ReturnProbe::<T>::NEW).check();
/// ```
///
/// [`ReturnIsResult`] matches a `ReturnProbe<Result<_, _>>` as it is, and its method requires
/// a trait nothing implements, whose message says what to write; [`ReturnIsValue`] matches
/// any other type after another borrow.
pub struct ReturnProbe<T: ?Sized>(PhantomData<fn() -> PhantomData<T>>);

impl<T: ?Sized> ReturnProbe<T> {
    /// The probe of `T`.
    pub const NEW: Self = ReturnProbe(PhantomData);
}

/// Implemented by nothing: what a method returning an alias of `Result` is told.
#[diagnostic::on_unimplemented(
    message = "this return type is a `Result` under another name, whose error type the macro cannot see",
    label = "write it as `Result<T, E>`",
    note = "an `Err` would be sent as a successful value, which Python callers never see as an exception"
)]
pub trait ResultSpelledOut {}

/// Picks the refusal for a `Result` (see [`ReturnProbe`]).
pub trait ReturnIsResult {
    /// Fails to compile.
    fn check(&self)
    where
        Self: ResultSpelledOut,
    {
    }
}

impl<T, E> ReturnIsResult for ReturnProbe<Result<T, E>> {}

/// Accepts any other return type (see [`ReturnProbe`]).
pub trait ReturnIsValue {
    /// Compiles.
    fn check(&self) {}
}

impl<T: ?Sized> ReturnIsValue for &ReturnProbe<T> {}

/// What `#[derive(RemoteException)]` generates calls.
pub mod exception {
    use serde::Serialize;
    use serde::de::{DeserializeOwned, Error as _};
    use serde_json::{Map, Value};

    use crate::{RemoteError, RemoteException, RpcError};

    /// The failure of `error`, of `module.class`: its `Display` as the message, the message as
    /// the only positional argument, and `kwargs` (its named fields).
    // Bounded by `RemoteException`, not by its `Display`, so that a type without `Display` is
    // told so once, at the derived impl.
    pub fn with_kwargs<E: RemoteException, const N: usize>(
        error: &E,
        module: &str,
        class: &str,
        kwargs: [(&str, Value); N],
    ) -> RemoteError {
        let kwargs: Map<String, Value> = kwargs
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect();
        RemoteError::new(class, module, error.to_string()).with_kwargs(kwargs)
    }

    /// The failure of `error`, of `module.class`: its `Display` as the message and `args` (its
    /// tuple fields) as the positional arguments.
    pub fn with_args<E: RemoteException, const N: usize>(
        error: &E,
        module: &str,
        class: &str,
        args: [Value; N],
    ) -> RemoteError {
        RemoteError::new(class, module, error.to_string()).with_args(args.into())
    }

    /// Encodes a field; `what` names it in the error.
    pub fn encode<T: Serialize + ?Sized>(value: &T, what: &'static str) -> Result<Value, RpcError> {
        // Non-finite floats and big integers as Python writes them (see `wire::from_value`).
        crate::wire::to_value(value).map_err(|e| RpcError::encode(what, e))
    }

    /// Whether `remote` is `module.class`, or oslo's `class_Remote` in `module_Remote`.
    pub fn is(remote: &RemoteError, module: &str, class: &str) -> bool {
        remote.is_exception(module, class)
    }

    /// `decode(remote)`: lets the generated code decode the fields with `?`.
    pub fn decode<E>(
        remote: &RemoteError,
        decode: impl FnOnce(&RemoteError) -> Result<E, RpcError>,
    ) -> Option<Result<E, RpcError>> {
        Some(decode(remote))
    }

    /// Keyword argument `name` of `remote`. A missing one decodes from `null`, so an `Option`
    /// field may be left out.
    pub fn kwarg<T: DeserializeOwned>(
        remote: &RemoteError,
        name: &'static str,
        what: &'static str,
    ) -> Result<T, RpcError> {
        field(remote.kwargs().get(name), name, what)
    }

    /// Positional argument `index` of `remote`. A missing one decodes from `null`.
    pub fn arg<T: DeserializeOwned>(
        remote: &RemoteError,
        index: usize,
        what: &'static str,
    ) -> Result<T, RpcError> {
        field(remote.args().get(index), "argument", what)
    }

    fn field<T: DeserializeOwned>(
        value: Option<&Value>,
        name: &'static str,
        what: &'static str,
    ) -> Result<T, RpcError> {
        match value {
            Some(value) => {
                crate::wire::from_value(value.clone()).map_err(|e| RpcError::decode(what, e))
            }
            None => T::deserialize(&Value::Null)
                .map_err(|_| RpcError::decode(what, serde_json::Error::missing_field(name))),
        }
    }
}

/// The failure for a method name the endpoint does not have (the server checks
/// `has_method` first, so this is only reached by direct `dispatch` calls).
#[inline]
pub fn no_such_method(method: &str) -> RemoteError {
    RemoteError::new(
        "NoSuchMethod",
        crate::wire::DISPATCHER_MODULE,
        format!("Endpoint does not support RPC method {method}"),
    )
}

/// `client` addressing `namespace` (`None`: the default namespace).
#[inline]
pub fn with_namespace(client: RpcClient, namespace: Option<&str>) -> RpcClient {
    client.set_namespace(namespace)
}

/// The version a typed client sends `method` as: the client's override
/// ([`RpcClient::with_version`], which the generated `with_version` sets) if it is a version at
/// which the method exists in its trait (of the trait's major, from `since` to `latest`, the
/// trait's version), else the method's `since`.
pub fn method_version(
    client: &RpcClient,
    method: &str,
    since: Version,
    latest: Version,
) -> Result<Version, RpcError> {
    match client.target().version() {
        None => Ok(since),
        Some(version) if version.is_compatible(&since) && latest.is_compatible(&version) => {
            Ok(version)
        }
        Some(version) => Err(RpcError::VersionOutOfRange {
            method: method.to_owned(),
            version,
            since,
            latest,
        }),
    }
}

/// A call of a method added in `since` to a trait of version `latest` (the future of
/// [`RpcClient::call`]), at the version [`method_version`] gives.
pub fn call<R: DeserializeOwned>(
    client: &RpcClient,
    since: Version,
    latest: Version,
    ctx: &Context,
    method: &str,
    args: impl Serialize,
) -> impl Future<Output = Result<R, RpcError>> {
    match method_version(client, method, since, latest) {
        Ok(version) => Either::Left(client.call_as(Some(version), ctx, method, args)),
        Err(e) => Either::Right(std::future::ready(Err(e))),
    }
}

/// A cast of a method added in `since` to a trait of version `latest`, at the version
/// [`method_version`] gives.
pub async fn cast(
    client: &RpcClient,
    since: Version,
    latest: Version,
    ctx: &Context,
    method: &str,
    args: impl Serialize,
) -> Result<(), RpcError> {
    let version = method_version(client, method, since, latest)?;
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
        let request = IncomingRequest::decode(body)?;
        Ok((request.method, request.args, request.context))
    }

    /// Server: completes a final reply carrying `result` (encoded by the endpoint's dispatch,
    /// or a `Value`) and seals it.
    pub fn encode_reply(result: crate::Returned, msg_id: &str) -> Vec<u8> {
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
