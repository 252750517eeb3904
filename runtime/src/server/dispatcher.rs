//! oslo's dispatch rule (spec §3.4): endpoints in order, namespace and version match, first
//! endpoint with the method wins; `NoSuchMethod` when some endpoint matched namespace and
//! version, `UnsupportedVersion` when none did.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

use crate::context::Context;
use crate::describe::{DESCRIBE_METHOD, DescribeEndpoint};
use crate::endpoint::{Endpoint, Returned};
use crate::error::RemoteError;
use crate::wire::DISPATCHER_MODULE;
use crate::wire::{RequestedVersion, display_string, json_type};

/// The method of the optional ping endpoint; it returns `"pong"`.
pub const PING_METHOD: &str = "oslo_rpc_server_ping";

pub(crate) struct Dispatcher {
    endpoints: Vec<Arc<dyn Endpoint>>,
}

impl Dispatcher {
    /// With `ping`, a ping endpoint is appended unless an endpoint already has the method;
    /// with `describe`, a description endpoint the same way (describing the others).
    pub(crate) fn new(
        mut endpoints: Vec<Arc<dyn Endpoint>>,
        ping: bool,
        describe: bool,
    ) -> Dispatcher {
        let described = describe.then(|| crate::describe::describe(&endpoints));
        if ping {
            if endpoints.iter().any(|e| e.has_method(PING_METHOD)) {
                tracing::warn!("an endpoint defines {PING_METHOD}; the ping endpoint is not added");
            } else {
                endpoints.push(Arc::new(Ping));
            }
        }
        if let Some(description) = described {
            if endpoints.iter().any(|e| e.has_method(DESCRIBE_METHOD)) {
                tracing::warn!(
                    "an endpoint defines {DESCRIBE_METHOD}; the description endpoint is not added"
                );
            } else {
                endpoints.push(Arc::new(DescribeEndpoint { description }));
            }
        }
        Dispatcher { endpoints }
    }

    pub(crate) async fn dispatch(
        &self,
        ctx: Context,
        method: Option<&str>,
        namespace: Option<&str>,
        version: &RequestedVersion,
        args: Value,
    ) -> Result<Returned, RemoteError> {
        let mut found_compatible = false;
        for endpoint in &self.endpoints {
            if endpoint.namespace() != namespace {
                continue;
            }
            match version {
                RequestedVersion::Valid(v) if endpoint.version().is_compatible(v) => {}
                RequestedVersion::Valid(_) | RequestedVersion::Null => continue,
                // Python's int() raises here, and the caller gets that ValueError.
                RequestedVersion::Invalid(raw) => {
                    return Err(RemoteError::builtin(
                        "ValueError",
                        format!("invalid RPC version {raw}: expected \"MAJOR.MINOR[.REVISION]\""),
                    ));
                }
            }
            let Some(method) = method else {
                return Err(RemoteError::builtin(
                    "TypeError",
                    "RPC request has no method name",
                ));
            };
            if !method.starts_with('_') && endpoint.has_method(method) {
                let Value::Object(args) = args else {
                    return Err(RemoteError::builtin(
                        "TypeError",
                        format!(
                            "{method}() argument after ** must be a mapping, not {}",
                            json_type(&args)
                        ),
                    ));
                };
                return endpoint.dispatch(ctx, method, args).await;
            }
            found_compatible = true;
        }
        // A name Python wrote with a lone surrogate is shown as Python wrote it.
        let method = method.map_or("None".into(), display_string);
        Err(match found_compatible {
            true => RemoteError::new(
                "NoSuchMethod",
                DISPATCHER_MODULE,
                format!("Endpoint does not support RPC method {method}"),
            ),
            false => {
                let version = match version {
                    RequestedVersion::Valid(v) => v.to_string(),
                    RequestedVersion::Null => "None".to_owned(),
                    RequestedVersion::Invalid(raw) => raw.clone(),
                };
                RemoteError::new(
                    "UnsupportedVersion",
                    DISPATCHER_MODULE,
                    format!(
                        "Endpoint does not support RPC version {version}. Attempted method: {method}"
                    ),
                )
            }
        })
    }
}

/// oslo's ping endpoint: no namespace, version 1.0, `oslo_rpc_server_ping` returns "pong".
struct Ping;

#[async_trait]
impl Endpoint for Ping {
    fn has_method(&self, method: &str) -> bool {
        method == PING_METHOD
    }

    async fn dispatch(
        &self,
        _: Context,
        _: &str,
        _: Map<String, Value>,
    ) -> Result<Returned, RemoteError> {
        Ok(Value::String("pong".to_owned()).into())
    }
}
