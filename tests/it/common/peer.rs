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

/// The venv's Python: `$AMQP_RPC_PYTHON`, else `<repo>/.venv/bin/python`.
fn python() -> PathBuf {
    match std::env::var_os("AMQP_RPC_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"),
    }
}

impl PythonPeer {
    /// Starts a peer connected to `url`; panics (failing the test) if the venv is missing.
    pub(crate) async fn start(url: &str) -> PythonPeer {
        let python = python();
        assert!(
            python.exists(),
            "no Python venv at {} (AMQP_RPC_PYTHON): run scripts/setup.sh or scripts/test.sh",
            python.display()
        );
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop/peer.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg("--url")
            .arg(url)
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
