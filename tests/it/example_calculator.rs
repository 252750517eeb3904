//! The calculator example on RabbitMQ, unchanged: in one process, and serving while other
//! processes call it, one of them the README's Python oslo.messaging snippet (run as written
//! there, but for the broker URL).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common;
use common::test_broker;

/// The example always serves topic `calculator`: its tests take turns.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The example binary, which `cargo test` builds beside the test binaries.
fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path = dir.join("examples").join("calculator");
    assert!(path.exists(), "{} not built", path.display());
    path
}

fn run(mode: Option<&str>, url: &str) -> Output {
    let mut command = Command::new(example());
    command.args(mode).env("TRANSPORT_URL", url);
    command.output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The first ```python block of the README.
fn readme_python() -> String {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme
        .find("```python\n")
        .expect("a Python snippet in the README")
        + "```python\n".len();
    let end = start + readme[start..].find("```").unwrap();
    readme[start..end].to_owned()
}

#[test]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
fn calculator_runs_unchanged_on_rabbitmq() {
    let url = test_broker!();
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let output = run(None, &url);
    let text = stdout(&output);
    assert!(
        output.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for line in [
        "add(6, 4) = 10",
        "divide(6, 4) = 1.5",
        "failed as it should: DivisionByZero",
        "server stopped",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }
}

#[test]
#[ignore = "needs RabbitMQ: scripts/test.sh runs it"]
fn python_and_a_second_process_call_the_serving_calculator() {
    let url = test_broker!();
    let _turn = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut server = Command::new(example())
        .arg("serve")
        .env("TRANSPORT_URL", &url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it serves: its first lines are the transport and "serving ...".
    let mut out = std::io::BufReader::new(server.stdout.take().unwrap());
    let mut line = String::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !line.starts_with("serving") {
        line.clear();
        assert!(
            std::io::BufRead::read_line(&mut out, &mut line).unwrap() > 0,
            "server exited"
        );
        assert!(Instant::now() < deadline);
    }

    let snippet = readme_python();
    assert!(
        snippet.lines().count() <= 5,
        "the README promises a five-line snippet:\n{snippet}"
    );
    let snippet = snippet.replace("rabbit://guest:guest@127.0.0.1:5672/", &url);
    let python = std::env::var("AMQP_RPC_PYTHON")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/.venv/bin/python").to_owned());
    let output = Command::new(python)
        .arg("-c")
        .arg(&snippet)
        .output()
        .expect("run the venv's Python");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(stdout(&output).trim(), "10.0");

    // A second Rust process calls, then stops the server.
    let client = run(Some("call"), &url);
    assert!(client.status.success(), "{}", stdout(&client));
    assert!(stdout(&client).contains("add(6, 4) = 10"));
    let status = server.wait().unwrap();
    assert!(status.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(rest.contains("server stopped"), "{rest}");
}
