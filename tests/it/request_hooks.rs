//! Server request hooks (`ServerBuilder::hook`), on the in-memory broker: what they see of
//! each request, in which order, and that a failing hook never fails a request.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use amqp_rpc::hooks::{CallHook, MessageInfo, Outcome, RequestHook, RequestInfo};
use amqp_rpc::{
    Context, Endpoint, RemoteError, Returned, RpcClient, RpcError, RpcServer, Target, Transport,
    async_trait,
};
use serde_json::{Map, Value, json};

use crate::common::ANSWER;

/// `add` returns, `fail` raises a ValueError, `boom` panics, `nap` sleeps 50 ms.
struct Service;

#[async_trait]
impl Endpoint for Service {
    fn has_method(&self, method: &str) -> bool {
        matches!(method, "add" | "fail" | "boom" | "nap")
    }

    async fn dispatch(
        &self,
        _: Context,
        method: &str,
        _: Map<String, Value>,
    ) -> Result<Returned, RemoteError> {
        match method {
            "fail" => Err(RemoteError::builtin("ValueError", "no")),
            "boom" => panic!("boom"),
            "nap" => {
                tokio::time::sleep(Duration::from_millis(50)).await;
                Ok(Returned::from(Value::Null))
            }
            _ => Ok(Returned::from(json!(3))),
        }
    }
}

/// Records what it sees as lines, under its name.
struct Recorder {
    name: &'static str,
    lines: Arc<Mutex<Vec<String>>>,
    elapsed: Arc<Mutex<Vec<Duration>>>,
}

impl RequestHook for Recorder {
    fn before(&self, request: &RequestInfo<'_>) {
        self.lines.lock().unwrap().push(format!(
            "{} before {} ns={:?} call={} user={:?} server={:?}",
            self.name,
            request.method,
            request.namespace,
            request.msg_id.is_some(),
            request.context.user_id(),
            request.server.server_name(),
        ));
    }

    fn after(&self, request: &RequestInfo<'_>, outcome: &Outcome<'_>, elapsed: Duration) {
        let how = match outcome {
            Outcome::Returned => "returned".to_owned(),
            Outcome::Raised(error) => format!("raised {}", error.class()),
            _ => "other".to_owned(),
        };
        self.lines.lock().unwrap().push(format!(
            "{} after {} {how} user={:?}",
            self.name,
            request.method,
            request.context.user_id()
        ));
        self.elapsed.lock().unwrap().push(elapsed);
    }
}

/// Panics in both methods.
struct Broken;

impl RequestHook for Broken {
    fn before(&self, _: &RequestInfo<'_>) {
        panic!("broken hook");
    }
    fn after(&self, _: &RequestInfo<'_>, _: &Outcome<'_>, _: Duration) {
        panic!("broken hook");
    }
}

#[tokio::test]
async fn hooks_see_each_request_before_and_after_as_nested_layers() {
    let transport = Transport::memory();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let elapsed = Arc::new(Mutex::new(Vec::new()));
    let recorder = |name| Recorder {
        name,
        lines: Arc::clone(&lines),
        elapsed: Arc::clone(&elapsed),
    };
    let server = RpcServer::builder(&transport, Target::server("hooked", "h1"))
        .endpoint(Service)
        .hook(recorder("outer"))
        .hook(recorder("inner"))
        .build()
        .unwrap();
    server.start().await.unwrap();
    let client = RpcClient::new(&transport, Target::new("hooked")).with_timeout(ANSWER);
    let ctx = Context::new().with_user_id("ada");
    let take = || std::mem::take(&mut *lines.lock().unwrap());

    let sum: Value = client.call(&ctx, "add", json!({})).await.unwrap();
    assert_eq!(sum, json!(3));
    assert_eq!(
        take(),
        [
            "outer before add ns=None call=true user=Some(\"ada\") server=Some(\"h1\")",
            "inner before add ns=None call=true user=Some(\"ada\") server=Some(\"h1\")",
            "inner after add returned user=Some(\"ada\")",
            "outer after add returned user=Some(\"ada\")",
        ]
    );
    // Each way a request can fail is an exception the hooks see.
    for (method, class) in [
        ("fail", "ValueError"),
        ("boom", "RuntimeError"),
        ("nowhere", "NoSuchMethod"),
    ] {
        let failed: Result<Value, RpcError> = client.call(&ctx, method, json!({})).await;
        assert!(failed.is_err(), "{method}");
        let seen = take();
        assert_eq!(seen.len(), 4, "{seen:?}");
        assert_eq!(
            seen[2],
            format!("inner after {method} raised {class} user=Some(\"ada\")")
        );
    }
    // A cast has no msg_id; the time measured covers the method.
    elapsed.lock().unwrap().clear();
    client
        .cast(&Context::new(), "nap", json!({}))
        .await
        .unwrap();
    crate::common::until("the cast's hooks", Duration::from_secs(5), || {
        lines.lock().unwrap().len() == 4
    })
    .await;
    let seen = take();
    assert_eq!(
        seen[0],
        "outer before nap ns=None call=false user=None server=Some(\"h1\")"
    );
    assert!(
        elapsed
            .lock()
            .unwrap()
            .iter()
            .all(|e| *e >= Duration::from_millis(50)),
        "{:?}",
        elapsed.lock().unwrap()
    );
    server.stop().await;
}

#[tokio::test]
async fn a_panicking_hook_is_skipped_and_the_request_answered() {
    let transport = Transport::memory();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let server = RpcServer::builder(&transport, Target::server("broken", "b1"))
        .endpoint(Service)
        .hook(Broken)
        .hook(Recorder {
            name: "after-broken",
            lines: Arc::clone(&lines),
            elapsed: Arc::default(),
        })
        .build()
        .unwrap();
    server.start().await.unwrap();
    let client = RpcClient::new(&transport, Target::new("broken")).with_timeout(ANSWER);
    let sum: Value = client
        .call(&Context::new(), "add", json!({}))
        .await
        .unwrap();
    assert_eq!(sum, json!(3));
    // The other hook ran both times.
    assert_eq!(lines.lock().unwrap().len(), 2);
    server.stop().await;
}

/// Returns its context; records the contexts of casts.
struct Echo(Arc<Mutex<Vec<Context>>>);

#[async_trait]
impl Endpoint for Echo {
    fn has_method(&self, method: &str) -> bool {
        matches!(method, "context" | "note")
    }

    async fn dispatch(
        &self,
        ctx: Context,
        method: &str,
        _: Map<String, Value>,
    ) -> Result<Returned, RemoteError> {
        if method == "note" {
            self.0.lock().unwrap().push(ctx.clone());
        }
        Ok(Returned::from(Value::Object(ctx.into_map())))
    }
}

#[tokio::test]
async fn context_providers_stamp_every_call_and_cast_in_order() {
    let transport = Transport::memory();
    let noted = Arc::new(Mutex::new(Vec::new()));
    let server = RpcServer::builder(&transport, Target::server("stamped", "s1"))
        .endpoint(Echo(Arc::clone(&noted)))
        .build()
        .unwrap();
    server.start().await.unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let client = RpcClient::new(&transport, Target::new("stamped"))
        .with_timeout(ANSWER)
        .with_context_provider(|ctx: &mut Context, _: &MessageInfo<'_>| {
            if ctx.request_id().is_none() {
                ctx.insert("request_id", "req-generated");
            }
        })
        .with_context_provider({
            let seen = Arc::clone(&seen);
            move |ctx: &mut Context, message: &MessageInfo<'_>| {
                // After the first: it sees its request id.
                seen.lock().unwrap().push(format!(
                    "{} {} {:?}",
                    message.method,
                    message.call,
                    ctx.request_id()
                ));
                ctx.insert("hop", message.target.topic().unwrap_or_default());
            }
        });
    let mine = Context::new().with_user_id("ada");
    let got: Value = client.call(&mine, "context", json!({})).await.unwrap();
    assert_eq!(got["request_id"], "req-generated");
    assert_eq!(
        (&got["user_id"], &got["hop"]),
        (&json!("ada"), &json!("stamped"))
    );
    // The caller's context is not changed.
    assert_eq!(mine.request_id(), None);
    // A request id of the caller's own is kept.
    let own = mine.clone().with_request_id("req-mine");
    let got: Value = client.call(&own, "context", json!({})).await.unwrap();
    assert_eq!(got["request_id"], "req-mine");
    client
        .cast(&Context::new(), "note", json!({}))
        .await
        .unwrap();
    crate::common::until("the cast", Duration::from_secs(5), || {
        !noted.lock().unwrap().is_empty()
    })
    .await;
    assert_eq!(noted.lock().unwrap()[0].request_id(), Some("req-generated"));
    assert_eq!(
        *seen.lock().unwrap(),
        [
            "context true Some(\"req-generated\")",
            "context true Some(\"req-mine\")",
            "note false Some(\"req-generated\")",
        ]
    );
    // A client without providers sends the context as it is.
    let plain = RpcClient::new(&transport, Target::new("stamped")).with_timeout(ANSWER);
    let got: Value = plain.call(&mine, "context", json!({})).await.unwrap();
    assert_eq!(got.get("request_id"), None);
    server.stop().await;
}

/// Writes what a call hook sees into a shared list.
struct CallLog(&'static str, Arc<Mutex<Vec<String>>>);

impl CallHook for CallLog {
    fn before(&self, message: &MessageInfo<'_>) {
        self.1.lock().unwrap().push(format!(
            "{} before {} call={} version={:?} timeout={:?}",
            self.0,
            message.method,
            message.call,
            message.version.map(|v| v.to_string()),
            message.timeout,
        ));
    }

    fn after(&self, message: &MessageInfo<'_>, result: Result<(), &RpcError>, elapsed: Duration) {
        let result = match result {
            Ok(()) => "ok".to_owned(),
            Err(error) => error.class().to_owned(),
        };
        self.1.lock().unwrap().push(format!(
            "{} after {} {result} {}",
            self.0,
            message.method,
            if elapsed >= Duration::from_millis(50) {
                "slow"
            } else {
                "fast"
            },
        ));
    }
}

#[tokio::test]
async fn call_hooks_see_each_call_and_cast_with_its_outcome() {
    let transport = Transport::memory();
    let server = RpcServer::builder(&transport, Target::server("watched", "s1"))
        .endpoint(Service)
        .build()
        .unwrap();
    server.start().await.unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let client = RpcClient::new(
        &transport,
        Target::new("watched").with_version(amqp_rpc::Version::new(1, 0)),
    )
    .with_timeout(ANSWER)
    .with_hook(CallLog("outer", Arc::clone(&lines)))
    .with_hook(CallLog("inner", Arc::clone(&lines)));
    let ctx = Context::new();
    let _: Value = client.call(&ctx, "nap", json!({})).await.unwrap();
    let failed = client.call::<Value>(&ctx, "fail", json!({})).await;
    assert!(failed.unwrap_err().is_remote());
    client.cast(&ctx, "add", json!({})).await.unwrap();
    // Nobody serves this topic: the call times out, and the hooks see the timeout.
    let lost = RpcClient::new(&transport, Target::new("nobody"))
        .with_timeout(Duration::from_millis(100))
        .with_hook(CallLog("lost", Arc::clone(&lines)));
    assert!(
        lost.call::<Value>(&ctx, "add", json!({}))
            .await
            .unwrap_err()
            .is_timeout()
    );
    // Refused before sending (a version above the cap): seen too.
    let capped = client
        .prepare()
        .with_version_cap(amqp_rpc::Version::new(0, 9));
    assert!(
        capped
            .call::<Value>(&ctx, "add", json!({}))
            .await
            .unwrap_err()
            .is_version_cap()
    );
    let timeout = format!("{:?}", Some(ANSWER));
    assert_eq!(
        *lines.lock().unwrap(),
        [
            format!("outer before nap call=true version=Some(\"1.0\") timeout={timeout}"),
            format!("inner before nap call=true version=Some(\"1.0\") timeout={timeout}"),
            "inner after nap ok slow".to_owned(),
            "outer after nap ok slow".to_owned(),
            format!("outer before fail call=true version=Some(\"1.0\") timeout={timeout}"),
            format!("inner before fail call=true version=Some(\"1.0\") timeout={timeout}"),
            "inner after fail ValueError fast".to_owned(),
            "outer after fail ValueError fast".to_owned(),
            "outer before add call=false version=Some(\"1.0\") timeout=None".to_owned(),
            "inner before add call=false version=Some(\"1.0\") timeout=None".to_owned(),
            "inner after add ok fast".to_owned(),
            "outer after add ok fast".to_owned(),
            "lost before add call=true version=None timeout=Some(100ms)".to_owned(),
            "lost after add MessagingTimeout slow".to_owned(),
            format!("outer before add call=true version=Some(\"1.0\") timeout={timeout}"),
            format!("inner before add call=true version=Some(\"1.0\") timeout={timeout}"),
            "inner after add RPCVersionCapError fast".to_owned(),
            "outer after add RPCVersionCapError fast".to_owned(),
        ]
    );
    server.stop().await;
}
