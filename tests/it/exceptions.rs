//! Typed errors that are named Python exceptions (`#[derive(RemoteException)]`), on the
//! in-memory broker: the failure a generated endpoint sends for each kind of variant, and what
//! a generated client makes of it and of the failures a Python server sends. The same against
//! the real oslo.messaging is in `interop_oslo.rs`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use amqp_rpc::{
    CallError, Context, Endpoint, RemoteError, RemoteException, Returned, RpcClient, RpcError,
    RpcServer, Target, Transport, async_trait, rpc_client, rpc_endpoint,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::common;
use common::{ANSWER, serve};

// ---------------------------------------------------------------------------------------------
// The service under test
// ---------------------------------------------------------------------------------------------

/// A compute service's errors, named as nova names them.
#[derive(Debug, Clone, PartialEq, RemoteException)]
#[remote(module = "nova.exception")]
enum ComputeError {
    /// `InstanceNotFound(message, instance_id=...)`.
    InstanceNotFound { instance_id: String },
    /// Another class name than the variant's; an optional field, a raw identifier.
    #[remote(class = "FlavorNotFound")]
    NoFlavor {
        flavor_id: String,
        r#type: Option<String>,
    },
    /// `ValueError(reason)`.
    #[remote(module = "builtins", class = "ValueError")]
    Invalid(String),
    /// `TimeoutError(message)`.
    #[remote(module = "builtins", class = "TimeoutError")]
    TimedOut,
}

impl fmt::Display for ComputeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ComputeError::InstanceNotFound { instance_id } => {
                write!(f, "Instance {instance_id} could not be found.")
            }
            ComputeError::NoFlavor { flavor_id, .. } => {
                write!(f, "Flavor {flavor_id} could not be found.")
            }
            ComputeError::Invalid(reason) => write!(f, "invalid: {reason}"),
            ComputeError::TimedOut => f.write_str("timed out"),
        }
    }
}

/// A struct error that derives serde's traits as well: the exception is what travels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, RemoteException)]
#[remote(module = "nova.exception", class = "QuotaError")]
struct QuotaExceeded {
    quota: u32,
    used: u32,
}

impl fmt::Display for QuotaExceeded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Quota exceeded: {} of {}", self.used, self.quota)
    }
}

/// An error whose field JSON cannot hold (a map with non-string keys).
#[derive(Debug, RemoteException)]
#[remote(module = "app.errors")]
struct Unencodable {
    by_pair: BTreeMap<(u8, u8), u8>,
}

impl fmt::Display for Unencodable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unencodable")
    }
}

#[rpc_endpoint(namespace = "compute")]
#[rpc_client]
trait Compute {
    /// Fails with the error named `case`.
    async fn fail(&self, case: String) -> Result<(), ComputeError>;
    /// Takes `units` of a quota of 10.
    async fn reserve(&self, units: u32) -> Result<u32, QuotaExceeded>;
    /// Fails with an error that cannot be encoded.
    async fn break_down(&self) -> Result<(), Unencodable>;
}

/// The error `Compute::fail` returns for `case`.
fn compute_error(case: &str) -> ComputeError {
    match case {
        "not_found" => ComputeError::InstanceNotFound {
            instance_id: "i-1".to_owned(),
        },
        "no_flavor" => ComputeError::NoFlavor {
            flavor_id: "m1.huge".to_owned(),
            r#type: Some("public".to_owned()),
        },
        "no_flavor_untyped" => ComputeError::NoFlavor {
            flavor_id: "m1.huge".to_owned(),
            r#type: None,
        },
        "invalid" => ComputeError::Invalid("negative size".to_owned()),
        _ => ComputeError::TimedOut,
    }
}

struct RustCompute;

impl Compute for RustCompute {
    async fn fail(&self, case: String) -> Result<(), ComputeError> {
        Err(compute_error(&case))
    }
    async fn reserve(&self, units: u32) -> Result<u32, QuotaExceeded> {
        match units {
            0..=10 => Ok(10 - units),
            used => Err(QuotaExceeded { quota: 10, used }),
        }
    }
    async fn break_down(&self) -> Result<(), Unencodable> {
        Err(Unencodable {
            by_pair: BTreeMap::from([((1, 2), 3)]),
        })
    }
}

/// `Compute` as a Python server would answer `fail`: the failure oslo's
/// `serialize_remote_exception` makes of the exception named `case`.
struct PythonCompute;

/// What a Python server sends for `case` (class, module, message, args, kwargs).
fn python_failure(case: &str) -> RemoteError {
    let kwargs = |value: Value| match value {
        Value::Object(map) => map,
        _ => Map::new(),
    };
    let traceback = vec![
        "Traceback (most recent call last):\n".to_owned(),
        "nova.exception.InstanceNotFound: ...\n".to_owned(),
    ];
    match case {
        // `raise ValueError("negative size")`.
        "value_error" => RemoteError::builtin("ValueError", "negative size"),
        // `raise TimeoutError()`: no arguments at all.
        "timeout" => RemoteError::builtin("TimeoutError", "").with_args(Vec::new()),
        // `raise InstanceNotFound(instance_id="i-9")`: nova adds its HTTP code to kwargs.
        "not_found" => RemoteError::new(
            "InstanceNotFound",
            "nova.exception",
            "Instance i-9 could not be found.",
        )
        .with_traceback(traceback)
        .with_kwargs(kwargs(json!({"instance_id": "i-9", "code": 404}))),
        // The same, rebuilt by a Python caller and raised again (oslo's renamed class).
        "not_found_again" => RemoteError::new(
            "InstanceNotFound_Remote",
            "nova.exception_Remote",
            "Instance i-9 could not be found.",
        )
        .with_kwargs(kwargs(json!({"instance_id": "i-9", "code": 404}))),
        // Without the optional keyword argument.
        "no_flavor" => RemoteError::new("FlavorNotFound", "nova.exception", "Flavor x")
            .with_kwargs(kwargs(json!({"flavor_id": "x", "code": 404}))),
        // One of the type's classes, without its required keyword argument.
        "not_found_bare" => RemoteError::new("InstanceNotFound", "nova.exception", "gone"),
        // A class the type does not have.
        _ => RemoteError::builtin("KeyError", "'missing'"),
    }
}

#[async_trait]
impl Endpoint for PythonCompute {
    fn namespace(&self) -> Option<&str> {
        Some("compute")
    }

    fn has_method(&self, method: &str) -> bool {
        method == "fail"
    }

    async fn dispatch(
        &self,
        _: Context,
        _: &str,
        args: Map<String, Value>,
    ) -> Result<Returned, RemoteError> {
        Err(python_failure(args["case"].as_str().unwrap_or_default()))
    }
}

/// A server of `endpoint` on topic "compute", and a typed client of it.
async fn compute(transport: &Transport, endpoint: Arc<dyn Endpoint>) -> (RpcServer, ComputeClient) {
    let server = serve(transport, "compute", "c1", vec![endpoint]).await;
    (
        server,
        ComputeClient::new(transport, "compute").with_timeout(ANSWER),
    )
}

/// The remote failure of `method` called with `args` by an untyped client, as any other
/// caller, a Python one say, receives it.
async fn failure_of(transport: &Transport, method: &str, args: Value) -> RemoteError {
    let client = RpcClient::new(transport, Target::new("compute").with_namespace("compute"))
        .with_timeout(ANSWER);
    match client.call::<Value>(&Context::new(), method, args).await {
        Err(RpcError::Remote(remote)) => remote,
        other => panic!("{method}: expected a remote failure, got {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Rust server
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_variant_is_sent_as_its_python_class_with_its_fields_as_arguments() {
    let transport = Transport::memory();
    let (_server, _client) = compute(&transport, Arc::new(ComputeEndpoint::new(RustCompute))).await;
    let fail = |case: &str| failure_of(&transport, "fail", json!({ "case": case }));

    // Named fields: `cls(message, **fields)`, a raw identifier under its plain name.
    let remote = fail("no_flavor").await;
    assert_eq!(
        (remote.module(), remote.class(), remote.message()),
        (
            "nova.exception",
            "FlavorNotFound",
            "Flavor m1.huge could not be found."
        )
    );
    assert_eq!(remote.args(), [json!("Flavor m1.huge could not be found.")]);
    assert_eq!(
        Value::Object(remote.kwargs().clone()),
        json!({"flavor_id": "m1.huge", "type": "public"})
    );
    let remote = fail("no_flavor_untyped").await;
    assert_eq!(remote.kwargs()["type"], Value::Null);

    // Tuple fields of a built-in exception: `cls(*fields)`, no keyword arguments.
    let remote = fail("invalid").await;
    assert_eq!(
        (remote.module(), remote.class(), remote.message()),
        ("builtins", "ValueError", "invalid: negative size")
    );
    assert_eq!(remote.args(), [json!("negative size")]);
    assert!(remote.kwargs().is_empty());

    // A unit variant: `cls(message)`.
    let remote = fail("timed_out").await;
    assert_eq!(
        (remote.module(), remote.class(), remote.args()),
        ("builtins", "TimeoutError", &[json!("timed out")][..])
    );
    assert!(remote.kwargs().is_empty());

    // No serde value travels beside the exception, even for a type that has one.
    let remote = failure_of(&transport, "reserve", json!({"units": 11})).await;
    assert_eq!(
        (remote.module(), remote.class(), remote.message()),
        ("nova.exception", "QuotaError", "Quota exceeded: 11 of 10")
    );
    assert_eq!(
        Value::Object(remote.kwargs().clone()),
        json!({"quota": 10, "used": 11})
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_client_gets_each_variant_back() {
    let transport = Transport::memory();
    let (_server, client) = compute(&transport, Arc::new(ComputeEndpoint::new(RustCompute))).await;
    for case in [
        "not_found",
        "no_flavor",
        "no_flavor_untyped",
        "invalid",
        "timed_out",
    ] {
        match client.fail(case.to_owned()).await {
            Err(CallError::Application(got)) => assert_eq!(got, compute_error(case)),
            other => panic!("{case}: expected the application error, got {other:?}"),
        }
    }
    assert_eq!(client.reserve(4).await.unwrap(), 6);
    let err = client.reserve(11).await.unwrap_err();
    assert_eq!(err.to_string(), "Quota exceeded: 11 of 10");
    assert_eq!(
        err.into_application(),
        Some(QuotaExceeded {
            quota: 10,
            used: 11
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_whose_field_does_not_encode_fails_the_call_with_a_type_error() {
    let transport = Transport::memory();
    let (_server, client) = compute(&transport, Arc::new(ComputeEndpoint::new(RustCompute))).await;
    match client.break_down().await {
        Err(CallError::Rpc(RpcError::Remote(remote))) => {
            assert_eq!((remote.module(), remote.class()), ("builtins", "TypeError"));
            assert!(
                remote.message().starts_with(
                    "break_down() returned an error that is not JSON: failed to encode field \
                     `by_pair` of Unencodable: "
                ),
                "{}",
                remote.message()
            );
        }
        other => panic!("expected a TypeError: {other:?}"),
    }
}

// ---------------------------------------------------------------------------------------------
// Python server
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_exceptions_of_the_types_classes_become_its_variants() {
    let transport = Transport::memory();
    let (_server, client) = compute(&transport, Arc::new(PythonCompute)).await;
    let not_found = ComputeError::InstanceNotFound {
        instance_id: "i-9".to_owned(),
    };
    let cases = [
        // Positional arguments fill tuple fields.
        (
            "value_error",
            ComputeError::Invalid("negative size".to_owned()),
        ),
        ("timeout", ComputeError::TimedOut),
        // Keyword arguments fill named fields; nova's `code` is not a field.
        ("not_found", not_found.clone()),
        ("not_found_again", not_found),
        // An `Option` field may be absent.
        (
            "no_flavor",
            ComputeError::NoFlavor {
                flavor_id: "x".to_owned(),
                r#type: None,
            },
        ),
    ];
    for (case, expected) in cases {
        match client.fail(case.to_owned()).await {
            Err(CallError::Application(got)) => assert_eq!(got, expected, "{case}"),
            other => panic!("{case}: expected the application error, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_classes_and_undecodable_arguments_stay_remote_failures() {
    let transport = Transport::memory();
    let (_server, client) = compute(&transport, Arc::new(PythonCompute)).await;

    match client.fail("key_error".to_owned()).await {
        Err(CallError::Rpc(RpcError::Remote(remote))) => {
            assert_eq!((remote.module(), remote.class()), ("builtins", "KeyError"));
        }
        other => panic!("expected the remote KeyError: {other:?}"),
    }

    // One of the type's classes, but without the field it needs: the failure as it came,
    // and the decoding error from `from_remote`.
    match client.fail("not_found_bare".to_owned()).await {
        Err(CallError::Rpc(RpcError::Remote(remote))) => {
            assert_eq!(remote.class(), "InstanceNotFound");
            let err = ComputeError::from_remote(&remote).unwrap().unwrap_err();
            assert_eq!(
                err.to_string(),
                "failed to decode keyword argument `instance_id` of \
                 nova.exception.InstanceNotFound: missing field `instance_id`"
            );
        }
        other => panic!("expected the remote InstanceNotFound: {other:?}"),
    }
}
