//! A real Python oslo.messaging peer (`tests/interop/peer.py`, in the venv that
//! `scripts/setup.sh` makes), driven over JSON lines.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{Mutex, oneshot};

type Waiters = Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

/// One `peer.py` process.
pub(crate) struct PythonPeer {
    child: Child,
    stdin: Mutex<ChildStdin>,
    waiters: Waiters,
    next_id: AtomicU64,
}

/// The repository's root: the package's directory or the first above it holding the peer
/// (this file is also compiled into the `cli` package's tests).
fn repo_root() -> PathBuf {
    let package = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    package
        .ancestors()
        .find(|dir| dir.join("tests/interop/peer.py").exists())
        .unwrap_or(package)
        .to_owned()
}

/// The venv's Python: `$AMQP_RPC_PYTHON`, else `<repo>/.venv/bin/python`.
fn python() -> PathBuf {
    match std::env::var_os("AMQP_RPC_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => repo_root().join(".venv/bin/python"),
    }
}

impl PythonPeer {
    /// Starts a peer connected to `url`; panics (failing the test) if the venv is missing.
    pub(crate) async fn start(url: &str) -> PythonPeer {
        PythonPeer::start_with(url, &[]).await
    }

    /// Starts a peer connected to `url` with more command-line arguments (`--tracing`...).
    pub(crate) async fn start_with(url: &str, args: &[&str]) -> PythonPeer {
        let python = python();
        assert!(
            python.exists(),
            "no Python venv at {} (AMQP_RPC_PYTHON): run scripts/setup.sh or scripts/test.sh",
            python.display()
        );
        let script = repo_root().join("tests/interop/peer.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg("--url")
            .arg(url)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the Python peer");
        let stdin = child.stdin.take().expect("peer stdin");
        let stdout = child.stdout.take().expect("peer stdout");
        let waiters: Waiters = Arc::default();
        tokio::spawn({
            let waiters = Arc::clone(&waiters);
            async move {
                let mut lines = BufReader::new(stdout).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let response: Value = match serde_json::from_str(&line) {
                        Ok(v) => v,
                        Err(e) => panic!("peer wrote a line that is not JSON ({e}): {line}"),
                    };
                    let id = response["id"].as_u64();
                    let waiter = id.and_then(|id| waiters.lock().unwrap().remove(&id));
                    if let Some(waiter) = waiter {
                        let _ = waiter.send(response);
                    }
                }
            }
        });
        let peer = PythonPeer {
            child,
            stdin: Mutex::new(stdin),
            waiters,
            next_id: AtomicU64::new(1),
        };
        // Importing oslo.messaging takes a while; wait until the peer answers.
        peer.request(json!({"cmd": "info"}))
            .await
            .expect("peer info");
        peer
    }

    /// Sends a command and returns its `ok` value, or its `error` object.
    pub(crate) async fn request(&self, mut command: Value) -> Result<Value, Value> {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst);
        command["id"] = json!(id);
        let (tx, rx) = oneshot::channel();
        self.waiters.lock().unwrap().insert(id, tx);
        let mut line = command.to_string();
        line.push('\n');
        {
            let mut stdin = self.stdin.lock().await;
            stdin
                .write_all(line.as_bytes())
                .await
                .expect("write to peer");
            stdin.flush().await.expect("flush peer stdin");
        }
        let response = tokio::time::timeout(Duration::from_secs(90), rx)
            .await
            .unwrap_or_else(|_| panic!("peer did not answer {command}"))
            .expect("peer exited");
        match response.get("error") {
            Some(error) => Err(error.clone()),
            None => Ok(response["ok"].clone()),
        }
    }

    /// Starts a Python RPC server `server` on `topic` (endpoints: see `peer.py`).
    pub(crate) async fn serve(&self, topic: &str, server: &str) {
        let started = self
            .request(json!({"cmd": "serve", "topic": topic, "server": server}))
            .await;
        assert_eq!(
            started,
            Ok(json!("started")),
            "Python server {server} on {topic}"
        );
    }

    /// The requests Python server `server` handled since the last call.
    pub(crate) async fn log(&self, server: &str) -> Vec<Value> {
        match self.request(json!({"cmd": "log", "server": server})).await {
            Ok(Value::Array(log)) => log,
            other => panic!("log of {server}: {other:?}"),
        }
    }

    /// Stops everything and waits for the process to exit.
    pub(crate) async fn quit(mut self) {
        let _ = self.request(json!({"cmd": "quit"})).await;
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
    }
}

/// What a Python notification listener received (`received`; see tests/interop/README.md).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Received {
    /// Every endpoint invocation, in arrival order: `{"priority", "ctxt", "publisher_id",
    /// "event_type", "payload", "metadata": {"message_id", "timestamp"}, "result"}`, where
    /// `result` is `"requeue"` for the first `requeue_first` ones, else `"handled"`.
    pub(crate) notifications: Vec<Value>,
    /// A batch listener's endpoint calls: `{"priority", "result", "notifications": [...]}`
    /// (empty for a plain listener).
    pub(crate) batches: Vec<Value>,
}

/// One `(exchange, topic)` a Python listener subscribes to; `None`: the control exchange.
pub(crate) type PyTarget<'a> = (Option<&'a str>, &'a str);

impl PythonPeer {
    /// Publishes `count` (1 unless `options` says otherwise) notifications with oslo's
    /// `Notifier` on `topic` and waits until they are sent; panics if oslo logged a send
    /// failure. `priority`: `audit`, `debug`, `info`, `warn`/`warning`, `error`,
    /// `critical`, `sample`. `options`: a JSON object of the optional fields of the
    /// `notify` command (`driver` — default `messagingv2` —, `topics` instead of `topic`,
    /// `publisher_id`, `ctxt`, `ctxt_kind`, `exchange`, `retry`, `count`, `payload_json`),
    /// `json!({})` for none.
    pub(crate) async fn notify(
        &self,
        topic: &str,
        priority: &str,
        event_type: &str,
        payload: Value,
        options: Value,
    ) {
        let mut command = json!({
            "cmd": "notify", "topics": [topic], "priority": priority,
            "event_type": event_type, "payload": payload,
        });
        merge(&mut command, options);
        let count = command.get("count").and_then(Value::as_u64).unwrap_or(1);
        let sent = self.request(command.clone()).await;
        assert_eq!(
            sent,
            Ok(json!({"notified": count, "errors": []})),
            "Python notify {command}"
        );
    }

    /// Starts Python notification listener `name` on `targets` for `priorities` (lower
    /// case: `info`, `warn`, ...) and returns once it consumes. `options`: a JSON object of
    /// the optional fields of the `listen` command (`pool`, `allow_requeue`,
    /// `requeue_first`, `filter`, `batch_size`, `batch_timeout`), `json!({})` for none.
    pub(crate) async fn listen(
        &self,
        name: &str,
        targets: &[PyTarget<'_>],
        priorities: &[&str],
        options: Value,
    ) {
        let targets: Vec<Value> = targets
            .iter()
            .map(|(exchange, topic)| match exchange {
                Some(exchange) => json!({"exchange": exchange, "topic": topic}),
                None => json!({"topic": topic}),
            })
            .collect();
        let mut command = json!({
            "cmd": "listen", "name": name, "targets": targets, "priorities": priorities,
        });
        merge(&mut command, options);
        let started = self.request(command.clone()).await;
        assert_eq!(started, Ok(json!("listening")), "Python listen {command}");
    }

    /// What listener `name` received so far (kept, not cleared), first waiting up to
    /// `timeout` for at least `min` notifications (then returns what there is).
    pub(crate) async fn received(&self, name: &str, min: usize, timeout: Duration) -> Received {
        let command = json!({
            "cmd": "received", "name": name, "min": min, "timeout": timeout.as_secs_f64(),
        });
        match self.request(command).await {
            Ok(mut got) => {
                let mut take = |key: &str| match got[key].take() {
                    Value::Array(items) => items,
                    other => panic!("received of {name}: {key} is {other}"),
                };
                Received {
                    notifications: take("notifications"),
                    batches: take("batches"),
                }
            }
            Err(error) => panic!("received of {name}: {error}"),
        }
    }

    /// Stops listener `name` (`stop()` + `wait()`); what it received stays readable.
    pub(crate) async fn stop_listener(&self, name: &str) {
        let stopped = self
            .request(json!({"cmd": "stop_listener", "name": name}))
            .await;
        assert_eq!(stopped, Ok(json!("stopped")), "Python stop_listener {name}");
    }
}

/// Adds the fields of the JSON object `options` to `command` (replacing the ones there).
fn merge(command: &mut Value, options: Value) {
    match options {
        Value::Object(fields) => {
            for (key, value) in fields {
                command[key] = value;
            }
        }
        Value::Null => {}
        other => panic!("options must be a JSON object, not {other}"),
    }
}
