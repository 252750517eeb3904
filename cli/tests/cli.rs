//! The `amqp-rpc` command, run as a user runs it (a process), against amqp-rpc servers in this
//! process and Python oslo.messaging 18.3.1 peers (`tests/interop/peer.py`).
//!
//! Tests that need RabbitMQ are `#[ignore = "needs RabbitMQ: ..."]`; `scripts/test.sh` runs
//! them (`--include-ignored`) with `AMQP_RPC_TEST_URL` set to a fresh vhost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[allow(dead_code, unreachable_pub)]
#[path = "../../tests/it/common/peer.rs"]
mod peer;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use amqp_rpc::{
    Context, RemoteException, RpcServer, Target, Transport, TransportConfig, rpc_endpoint,
};
use peer::PythonPeer;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

/// What a run of the command gave.
#[derive(Debug)]
struct Run {
    status: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Standard output as JSON (one document).
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:?}"))
    }

    /// Standard error's last line as JSON.
    fn error_json(&self) -> Value {
        let last = self.stderr.lines().last().unwrap_or_default();
        serde_json::from_str(last).unwrap_or_else(|e| panic!("stderr is not JSON ({e}): {self:?}"))
    }

    /// Each line of standard output as JSON.
    fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
            .collect()
    }
}

/// Runs `amqp-rpc ARGS` with `stdin`, without `$TRANSPORT_URL` unless `env` sets it.
async fn amqp_rpc_with(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_amqp-rpc"));
    command
        .args(args)
        .env_remove("TRANSPORT_URL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("run amqp-rpc");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.expect("write stdin");
    }
    drop(input);
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .unwrap_or_else(|_| panic!("amqp-rpc {args:?} did not finish in 60 s"))
        .expect("amqp-rpc output");
    Run {
        status: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

async fn amqp_rpc(args: &[&str]) -> Run {
    amqp_rpc_with(args, None, &[]).await
}

/// The test broker's vhost (see `tests/it/common`).
fn broker_url() -> String {
    match std::env::var("AMQP_RPC_TEST_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!(
            "this test needs RabbitMQ and AMQP_RPC_TEST_URL is not set: run it with scripts/test.sh"
        ),
    }
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::new_v4().simple())
}

#[derive(Debug, Clone, PartialEq, RemoteException)]
enum ShopError {
    #[remote(module = "shop.errors", class = "OutOfStock")]
    OutOfStock { item: String },
}

impl std::fmt::Display for ShopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShopError::OutOfStock { item } => write!(f, "no {item} left"),
        }
    }
}

/// A payload type without a `TypeSchema`: described by name.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Basket {
    items: Vec<String>,
}

#[rpc_endpoint(version = "1.2")]
trait Shop {
    /// The price of `count` of `item`.
    async fn price(&self, item: String, count: u32) -> f64;
    async fn buy(&self, item: String) -> Result<u32, ShopError>;
    async fn whoami(&self, ctx: &Context) -> Option<String>;
    async fn slow(&self, secs: f64) -> bool;
    #[rpc(cast)]
    async fn restock(&self, item: String);
    /// Totals a basket, with an optional discount.
    #[rpc(since = "1.1")]
    async fn total(&self, basket: Basket, discount: Option<f64>) -> Vec<(String, f64)>;
}

struct Store {
    name: &'static str,
    restocked: Arc<AtomicUsize>,
}

impl Shop for Store {
    async fn price(&self, item: String, count: u32) -> f64 {
        let unit = if item == "apple" { 0.5 } else { 2.0 };
        unit * f64::from(count)
    }
    async fn buy(&self, item: String) -> Result<u32, ShopError> {
        match item.as_str() {
            "apple" => Ok(41),
            _ => Err(ShopError::OutOfStock { item }),
        }
    }
    async fn whoami(&self, ctx: &Context) -> Option<String> {
        ctx.user_id().map(|u| format!("{u}@{}", self.name))
    }
    async fn slow(&self, secs: f64) -> bool {
        tokio::time::sleep(Duration::from_secs_f64(secs)).await;
        true
    }
    async fn restock(&self, _item: String) {
        self.restocked.fetch_add(1, Ordering::SeqCst);
    }
    async fn total(&self, basket: Basket, discount: Option<f64>) -> Vec<(String, f64)> {
        let off = 1.0 - discount.unwrap_or(0.0);
        basket.items.into_iter().map(|i| (i, 2.0 * off)).collect()
    }
}

/// A started Rust server `name` of `topic`.
async fn shop(
    transport: &Transport,
    topic: &str,
    name: &'static str,
    ping: bool,
) -> (RpcServer, Arc<AtomicUsize>) {
    shop_with(transport, topic, name, ping, false).await
}

/// [`shop`], describing itself if `describe`.
async fn shop_with(
    transport: &Transport,
    topic: &str,
    name: &'static str,
    ping: bool,
    describe: bool,
) -> (RpcServer, Arc<AtomicUsize>) {
    let restocked = Arc::new(AtomicUsize::new(0));
    let server = RpcServer::builder(transport, Target::server(topic, name))
        .describe(describe)
        .endpoint(
            Store {
                name,
                restocked: Arc::clone(&restocked),
            }
            .into_rpc(),
        )
        .ping(ping)
        .build()
        .unwrap();
    server.start().await.unwrap();
    (server, restocked)
}

async fn until(what: &str, condition: impl Fn() -> bool) {
    for _ in 0..500 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{what}: not within 10 s");
}

// ---- the command line alone ----

#[tokio::test]
async fn a_bad_command_line_exits_64_with_a_usage_message() {
    for args in [
        &[][..],
        &["frobnicate"],
        &["call", "topic"],
        &["ping", "t", "--count", "0"],
        &["call", "t", "m", "--timeout", "soon"],
    ] {
        let run = amqp_rpc(args).await;
        assert_eq!(run.status, 64, "{args:?}: {run:?}");
        assert!(run.stderr.contains("Usage: amqp-rpc"), "{args:?}: {run:?}");
        assert!(run.stdout.is_empty(), "{args:?}: {run:?}");
    }
    // Found after parsing: still 64, with the command's usage.
    let url = ["--url", "rabbit://guest:guest@127.0.0.1:1/"];
    for (args, says) in [
        (&["call", "t", "m", "novalue"][..], "neither key=value"),
        (&["call", "t", "m", "n:=nope"], "is not JSON"),
        (
            &["call", "t", "m", "--args", "[1]"],
            "must be a JSON object",
        ),
        (&["call", "t", "m", "--ctx", "3"], "--ctx"),
        (
            &["call", "t", "m", "--timeout", "0"],
            "positive number of seconds",
        ),
        (&["call", "t", "m", "--version", "one"], "--version one"),
        (&["notify", "t", "loud", "e.x"], "priority \"loud\""),
        (&["notify", "t", "info", "e.x", "{"], "is not JSON"),
        (
            &["notify", "t", "info", "e.x", "--driver", "carrier-pigeon"],
            "--driver",
        ),
        (&["listen", "t", "--priority", "loud"], "priority \"loud\""),
    ] {
        let args: Vec<&str> = url.iter().chain(args).copied().collect();
        let run = amqp_rpc(&args).await;
        assert_eq!(run.status, 64, "{args:?}: {run:?}");
        assert!(run.stderr.contains(says), "{args:?}: {run:?}");
        assert!(run.stderr.contains("Usage: amqp-rpc"), "{args:?}: {run:?}");
    }
    let help = amqp_rpc(&["--help"]).await;
    assert_eq!(help.status, 0, "{help:?}");
    assert!(
        help.stdout.contains("Usage: amqp-rpc [OPTIONS] <COMMAND>"),
        "{help:?}"
    );
}

#[tokio::test]
async fn the_url_comes_from_url_then_env_then_config_file() {
    let none = amqp_rpc(&["call", "t", "m"]).await;
    assert_eq!(none.status, 64, "{none:?}");
    assert!(none.stderr.contains("no transport URL"), "{none:?}");
    // A port nothing listens on: the command says the broker cannot be used (69), naming
    // the host, whichever way the URL came.
    let dead = "rabbit://guest:guest@127.0.0.1:1/";
    let from_flag = amqp_rpc(&["--url", dead, "call", "t", "m"]).await;
    let from_env = amqp_rpc_with(&["call", "t", "m"], None, &[("TRANSPORT_URL", dead)]).await;
    let dir = std::env::temp_dir().join(unique("amqp-rpc-cli"));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("nova.conf");
    std::fs::write(&conf, format!("[DEFAULT]\ntransport_url = {dead}\n")).unwrap();
    let conf = conf.to_str().unwrap();
    let from_file = amqp_rpc(&["--config-file", conf, "call", "t", "m"]).await;
    for run in [&from_flag, &from_env, &from_file] {
        assert_eq!(run.status, 69, "{run:?}");
        assert!(run.stderr.contains("127.0.0.1:1"), "{run:?}");
    }
    // --url wins over the file's URL: a bad --url is the command line's fault (64).
    let bad = amqp_rpc(&["--config-file", conf, "--url", "nope", "call", "t", "m"]).await;
    assert_eq!(bad.status, 64, "{bad:?}");
    assert!(bad.stderr.contains("no scheme"), "{bad:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn configuration_file_errors_exit_66_or_78() {
    let dir = std::env::temp_dir().join(unique("amqp-rpc-cli"));
    std::fs::create_dir_all(&dir).unwrap();
    let missing = dir.join("missing.conf");
    let run = amqp_rpc(&["--config-file", missing.to_str().unwrap(), "call", "t", "m"]).await;
    assert_eq!(run.status, 66, "{run:?}");
    assert!(run.stderr.contains("cannot read"), "{run:?}");
    for (text, says) in [
        (
            "[DEFAULT]\ntransport_url\n",
            "at line 2, No ':' or '=' found in assignment",
        ),
        (
            "[DEFAULT]\ncontrol_exchange = x\n",
            "no [DEFAULT] transport_url",
        ),
        (
            "[DEFAULT]\ntransport_url = rabbit://h/\n[oslo_messaging_rabbit]\nrabbit_qos_prefetch_count = many\n",
            "rabbit_qos_prefetch_count",
        ),
        (
            "[DEFAULT]\ntransport_url = rabbit://$nobody@h/\n",
            "cannot substitute $nobody",
        ),
        ("[DEFAULT]\ntransport_url = nope\n", "no scheme"),
    ] {
        let conf = dir.join("bad.conf");
        std::fs::write(&conf, text).unwrap();
        let run = amqp_rpc(&["--config-file", conf.to_str().unwrap(), "call", "t", "m"]).await;
        assert_eq!(run.status, 78, "{text:?}: {run:?}");
        assert!(run.stderr.contains(says), "{text:?}: {run:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn completions_for_each_shell() {
    for (shell, marker) in [
        ("bash", "complete -F _amqp__rpc"),
        ("zsh", "#compdef amqp-rpc"),
        ("fish", "complete -c amqp-rpc"),
    ] {
        let run = amqp_rpc(&["completions", shell]).await;
        assert_eq!(run.status, 0, "{shell}: {run:?}");
        assert!(run.stdout.contains(marker), "{shell}: {}", run.stdout);
        for command in [
            "call", "cast", "fanout", "ping", "describe", "notify", "listen",
        ] {
            assert!(run.stdout.contains(command), "{shell} lacks {command}");
        }
    }
    let run = amqp_rpc(&["completions", "tcsh"]).await;
    assert_eq!(run.status, 64, "{run:?}");
}

// ---- against amqp-rpc servers ----

#[tokio::test]
#[ignore = "needs RabbitMQ: run with scripts/test.sh"]
async fn call_cast_and_fanout_a_rust_server() {
    let url = broker_url();
    let transport = Transport::from_url(&url).await.unwrap();
    let topic = unique("cli-shop");
    let (one, restocked_one) = shop(&transport, &topic, "one", false).await;
    let (two, restocked_two) = shop(&transport, &topic, "two", false).await;
    let u = ["--url", url.as_str()];
    let run = |args: &[&str]| {
        let args: Vec<String> = u.iter().chain(args).map(|s| (*s).to_owned()).collect();
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            amqp_rpc(&args).await
        }
    };
    // Arguments: key=value strings, key:=json values.
    let price = run(&["call", &topic, "price", "item=apple", "count:=3"]).await;
    assert_eq!((price.status, price.json()), (0, json!(1.5)), "{price:?}");
    // --args as text, @file and standard input; pairs extend it.
    let file = std::env::temp_dir()
        .join(unique("args"))
        .with_extension("json");
    std::fs::write(&file, r#"{"item": "pear", "count": 2}"#).unwrap();
    let at_file = format!("@{}", file.display());
    let from_file = run(&["call", &topic, "price", "--args", &at_file]).await;
    assert_eq!(from_file.json(), json!(4.0), "{from_file:?}");
    let args: Vec<String> = [
        "--url", &url, "call", &topic, "price", "--args", "-", "count:=5",
    ]
    .map(str::to_owned)
    .to_vec();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let from_stdin = amqp_rpc_with(&args, Some(r#"{"item": "apple", "count": 1}"#), &[]).await;
    assert_eq!(from_stdin.json(), json!(2.5), "{from_stdin:?}");
    std::fs::remove_file(&file).unwrap();
    let text = run(&[
        "call",
        &topic,
        "price",
        "--args",
        r#"{"item":"x","count":1}"#,
        "--pretty",
    ])
    .await;
    assert_eq!(text.stdout, "2.0\n", "{text:?}");
    // The context reaches the method.
    let who = run(&[
        "call",
        &topic,
        "whoami",
        "--server",
        "two",
        "--ctx",
        r#"{"user_id": "ada"}"#,
    ])
    .await;
    assert_eq!(who.json(), json!("ada@two"), "{who:?}");
    // A remote failure: its class, module and message on stderr, status 1.
    let out = run(&["call", &topic, "buy", "item=pear"]).await;
    assert_eq!(out.status, 1, "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
    let error = out.error_json();
    assert_eq!(
        (&error["class"], &error["module"], &error["message"]),
        (
            &json!("OutOfStock"),
            &json!("shop.errors"),
            &json!("no pear left")
        ),
        "{out:?}"
    );
    let unknown = run(&["call", &topic, "steal"]).await;
    assert_eq!(unknown.status, 1, "{unknown:?}");
    assert_eq!(unknown.error_json()["class"], "NoSuchMethod", "{unknown:?}");
    let future = run(&[
        "call",
        &topic,
        "price",
        "item=a",
        "count:=1",
        "--version",
        "2.0",
    ])
    .await;
    assert_eq!(future.status, 1, "{future:?}");
    assert_eq!(
        future.error_json()["class"],
        "UnsupportedVersion",
        "{future:?}"
    );
    let wrong_ns = run(&[
        "call",
        &topic,
        "price",
        "item=a",
        "count:=1",
        "--namespace",
        "admin",
    ])
    .await;
    assert_eq!(
        wrong_ns.error_json()["class"],
        "UnsupportedVersion",
        "{wrong_ns:?}"
    );
    // No reply in time: status 2, oslo's MessagingTimeout.
    let slow = run(&["call", &topic, "slow", "secs:=5", "--timeout", "0.5"]).await;
    assert_eq!(slow.status, 2, "{slow:?}");
    assert_eq!(slow.error_json()["class"], "MessagingTimeout", "{slow:?}");
    // A cast to one server, then a fanout to both.
    let cast = run(&["cast", &topic, "restock", "item=apple", "--server", "one"]).await;
    assert_eq!((cast.status, cast.stdout.as_str()), (0, ""), "{cast:?}");
    until("the cast", || restocked_one.load(Ordering::SeqCst) == 1).await;
    assert_eq!(restocked_two.load(Ordering::SeqCst), 0);
    let fanout = run(&["fanout", &topic, "restock", "item=pear"]).await;
    assert_eq!(fanout.status, 0, "{fanout:?}");
    until("the fanout", || {
        restocked_one.load(Ordering::SeqCst) == 2 && restocked_two.load(Ordering::SeqCst) == 1
    })
    .await;
    one.stop().await;
    two.stop().await;
    transport.close().await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run with scripts/test.sh"]
async fn ping_is_a_liveness_probe() {
    let url = broker_url();
    let transport = Transport::from_url(&url).await.unwrap();
    let live = unique("cli-live");
    let deaf = unique("cli-deaf");
    let (pinged, _) = shop(&transport, &live, "a", true).await;
    let (unpinged, _) = shop(&transport, &deaf, "b", false).await;
    let run = amqp_rpc(&["--url", &url, "ping", &live, "--count", "3"]).await;
    assert_eq!(run.status, 0, "{run:?}");
    let lines = run.json_lines();
    assert_eq!(lines.len(), 3, "{run:?}");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["ping"], json!(i + 1), "{run:?}");
        assert_eq!(line["reply"], "pong", "{run:?}");
        assert!(line["ms"].as_f64().is_some_and(|ms| ms > 0.0), "{run:?}");
    }
    let one = amqp_rpc(&["--url", &url, "ping", &live, "--server", "a"]).await;
    assert_eq!(one.status, 0, "{one:?}");
    // Ping not enabled: oslo's NoSuchMethod, status 1.
    let refused = amqp_rpc(&["--url", &url, "ping", &deaf]).await;
    assert_eq!(refused.status, 1, "{refused:?}");
    assert_eq!(refused.error_json()["class"], "NoSuchMethod", "{refused:?}");
    // Nobody there: each ping times out, status 2.
    let nobody = amqp_rpc(&[
        "--url",
        &url,
        "ping",
        &unique("cli-none"),
        "--timeout",
        "0.3",
        "--count",
        "2",
    ])
    .await;
    assert_eq!(nobody.status, 2, "{nobody:?}");
    assert_eq!(nobody.json_lines().len(), 2, "{nobody:?}");
    assert!(
        nobody.json_lines().iter().all(|l| l["reply"].is_null()),
        "{nobody:?}"
    );
    pinged.stop().await;
    unpinged.stop().await;
    transport.close().await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run with scripts/test.sh"]
async fn a_service_config_file_connects_as_the_service_does() {
    let url = broker_url();
    let exchange = unique("nova");
    let config = TransportConfig::default().with_control_exchange(exchange.clone());
    let transport = Transport::from_url_with_config(&url, config).await.unwrap();
    let topic = unique("cli-compute");
    let (server, _) = shop(&transport, &topic, "host1", true).await;
    let dir = std::env::temp_dir().join(unique("amqp-rpc-cli"));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = dir.join("nova.conf");
    std::fs::write(
        &conf,
        format!(
            "# as a deployment writes it\n[DEFAULT]\nmy_broker = {url}\ntransport_url = $my_broker\n\
             control_exchange = {exchange}\n\n[oslo_messaging_rabbit]\nrabbit_ha_queues = true\n\
             heartbeat_timeout_threshold = 30\n"
        ),
    )
    .unwrap();
    let conf = conf.to_str().unwrap();
    let run = amqp_rpc(&[
        "--config-file",
        conf,
        "call",
        &topic,
        "price",
        "item=apple",
        "count:=2",
    ])
    .await;
    assert_eq!((run.status, run.json()), (0, json!(1.0)), "{run:?}");
    // An option only Python has is named and ignored.
    assert!(
        run.stderr.contains(
            "[oslo_messaging_rabbit] rabbit_ha_queues: not an option of amqp-rpc; ignored"
        ),
        "{run:?}"
    );
    let ping = amqp_rpc(&["--config-file", conf, "ping", &topic]).await;
    assert_eq!(ping.status, 0, "{ping:?}");
    // The same call on the default exchange reaches nobody: the file's exchange was used.
    let elsewhere = amqp_rpc(&[
        "--url",
        &url,
        "call",
        &topic,
        "price",
        "item=a",
        "count:=1",
        "--timeout",
        "0.5",
    ])
    .await;
    assert_eq!(elsewhere.status, 2, "{elsewhere:?}");
    // --exchange overrides it.
    let overridden = amqp_rpc(&["--url", &url, "--exchange", &exchange, "ping", &topic]).await;
    assert_eq!(overridden.status, 0, "{overridden:?}");
    std::fs::remove_dir_all(&dir).unwrap();
    server.stop().await;
    transport.close().await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run with scripts/test.sh"]
async fn describe_prints_what_a_rust_server_serves() {
    let url = broker_url();
    let transport = Transport::from_url(&url).await.unwrap();
    let topic = unique("cli-describe");
    let (server, _) = shop_with(&transport, &topic, "d1", false, true).await;
    let run = amqp_rpc(&["--url", &url, "describe", &topic, "--pretty"]).await;
    assert_eq!(run.status, 0, "{run:?}");
    let description = run.json();
    let endpoint = &description["endpoints"][0];
    assert_eq!(endpoint["trait"], "Shop", "{description}");
    assert_eq!(endpoint["namespace"], Value::Null, "{description}");
    assert_eq!(endpoint["version"], "1.2", "{description}");
    let method = |name: &str| {
        endpoint["methods"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {description}"))
            .clone()
    };
    assert_eq!(
        method("price"),
        json!({
            "name": "price", "since": "1.0", "cast": false,
            "doc": "The price of `count` of `item`.",
            "params": {
                "type": "object",
                "properties": {
                    "item": {"type": "string"},
                    "count": {"type": "integer", "minimum": 0, "maximum": 4294967295_u64},
                },
                "required": ["item", "count"],
                "additionalProperties": false,
            },
            "returns": {"type": "number"},
        })
    );
    let restock = method("restock");
    assert_eq!(
        (&restock["cast"], restock.get("returns")),
        (&json!(true), None)
    );
    let total = method("total");
    assert_eq!(total["since"], "1.1");
    assert_eq!(total["params"]["required"], json!(["basket"]), "{total}");
    assert!(
        total["params"]["properties"]["basket"]["x-rust-type"]
            .as_str()
            .is_some_and(|t| t.ends_with("Basket")),
        "{total}"
    );
    assert_eq!(
        total["params"]["properties"]["discount"],
        json!({"anyOf": [{"type": "number"}, {"type": "null"}]})
    );
    assert_eq!(
        total["returns"]["items"]["prefixItems"][1],
        json!({"type": "number"})
    );
    // The ctx parameter is not an argument.
    assert_eq!(method("whoami")["params"]["properties"], json!({}));
    // A server that does not opt in says nothing: status 1.
    let quiet_topic = unique("cli-quiet");
    let (quiet, _) = shop(&transport, &quiet_topic, "q1", false).await;
    let run = amqp_rpc(&["--url", &url, "describe", &quiet_topic]).await;
    assert_eq!(run.status, 1, "{run:?}");
    assert!(run.stderr.contains("does not describe itself"), "{run:?}");
    server.stop().await;
    quiet.stop().await;
    transport.close().await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run with scripts/test.sh"]
async fn bench_loads_a_rust_server_and_sums_up() {
    let url = broker_url();
    let transport = Transport::from_url(&url).await.unwrap();
    let topic = unique("cli-bench");
    let (server, _) = shop(&transport, &topic, "b1", false).await;
    let u = url.as_str();
    let run = amqp_rpc(&[
        "--url",
        u,
        "bench",
        &topic,
        "price",
        "item=apple",
        "count:=1",
        "--calls",
        "300",
        "--concurrency",
        "8",
    ])
    .await;
    assert_eq!(run.status, 0, "{run:?}");
    let summary = run.json();
    assert_eq!(
        (&summary["calls"], &summary["answered"], &summary["failed"]),
        (&json!(300), &json!(300), &json!(0)),
        "{summary}"
    );
    assert_eq!(summary["errors"], json!({}), "{summary}");
    let latency = &summary["latency_ms"];
    let at = |q: &str| {
        latency[q]
            .as_f64()
            .unwrap_or_else(|| panic!("{q}: {summary}"))
    };
    assert!(
        0.0 < at("min")
            && at("min") <= at("p50")
            && at("p50") <= at("p99")
            && at("p99") <= at("max"),
        "{summary}"
    );
    assert!(
        summary["calls_per_second"]
            .as_f64()
            .is_some_and(|r| r > 0.0),
        "{summary}"
    );
    // Failures are counted by class, and make the status 1.
    let run = amqp_rpc(&[
        "--url",
        u,
        "bench",
        &topic,
        "buy",
        "item=pear",
        "--calls",
        "20",
    ])
    .await;
    assert_eq!(run.status, 1, "{run:?}");
    assert_eq!(run.json()["errors"], json!({"OutOfStock": 20}), "{run:?}");
    let run = amqp_rpc(&[
        "--url",
        u,
        "bench",
        &topic,
        "slow",
        "secs:=2",
        "--calls",
        "3",
        "--concurrency",
        "3",
        "--timeout",
        "0.3",
    ])
    .await;
    assert_eq!(
        run.json()["errors"],
        json!({"MessagingTimeout": 3}),
        "{run:?}"
    );
    assert_eq!(run.json()["latency_ms"], Value::Null, "{run:?}");
    // Paced: about rate x duration calls, spread over the duration.
    let run = amqp_rpc(&[
        "--url",
        u,
        "bench",
        &topic,
        "price",
        "item=a",
        "count:=1",
        "--duration",
        "1",
        "--rate",
        "40",
    ])
    .await;
    assert_eq!(run.status, 0, "{run:?}");
    let paced = run.json();
    let calls = paced["calls"].as_u64().unwrap();
    assert!((38..=41).contains(&calls), "{paced}");
    assert!(
        paced["seconds"].as_f64().is_some_and(|s| s >= 0.95),
        "{paced}"
    );
    for bad in [
        &["--rate", "0"][..],
        &["--calls", "0"],
        &["--calls", "5", "--duration", "1"],
        &["--concurrency", "0"],
    ] {
        let args: Vec<&str> = ["--url", u, "bench", &topic, "price"]
            .iter()
            .chain(bad)
            .copied()
            .collect();
        let run = amqp_rpc(&args).await;
        assert_eq!(run.status, 64, "{bad:?}: {run:?}");
    }
    server.stop().await;
    transport.close().await;
}

// ---- against Python oslo.messaging ----

#[tokio::test]
#[ignore = "needs RabbitMQ: run with scripts/test.sh"]
async fn call_cast_and_ping_a_python_server() {
    let url = broker_url();
    let peer = PythonPeer::start(&url).await;
    let topic = unique("cli-py");
    let started = peer
        .request(json!({"cmd": "serve", "topic": topic, "server": "py1", "ping": true}))
        .await;
    assert_eq!(started, Ok(json!("started")));
    let echo = amqp_rpc(&[
        "--url",
        &url,
        "call",
        &topic,
        "echo",
        "a=1",
        "b:=[true, null]",
        "--ctx",
        r#"{"user": "u1"}"#,
    ])
    .await;
    assert_eq!(
        (echo.status, echo.json()),
        (0, json!({"a": "1", "b": [true, null]})),
        "{echo:?}"
    );
    let failed = amqp_rpc(&[
        "--url",
        &url,
        "call",
        &topic,
        "raise_value_error",
        "message=boom",
    ])
    .await;
    assert_eq!(failed.status, 1, "{failed:?}");
    let error = failed.error_json();
    assert_eq!(
        (&error["class"], &error["module"], &error["message"]),
        (&json!("ValueError"), &json!("builtins"), &json!("boom")),
        "{failed:?}"
    );
    assert!(
        error["traceback"].as_array().is_some_and(|t| !t.is_empty()),
        "{failed:?}"
    );
    let custom = amqp_rpc(&[
        "--url",
        &url,
        "call",
        &topic,
        "raise_custom",
        "message=m",
        "code:=7",
    ])
    .await;
    assert_eq!(custom.status, 1, "{custom:?}");
    assert_eq!(custom.error_json()["class"], "CustomError", "{custom:?}");
    let ping = amqp_rpc(&[
        "--url", &url, "ping", &topic, "--server", "py1", "--count", "2",
    ])
    .await;
    assert_eq!(ping.status, 0, "{ping:?}");
    assert!(
        ping.json_lines().iter().all(|l| l["reply"] == "pong"),
        "{ping:?}"
    );
    let cast = amqp_rpc(&["--url", &url, "cast", &topic, "record", "k=v"]).await;
    assert_eq!(cast.status, 0, "{cast:?}");
    let fanout = amqp_rpc(&["--url", &url, "fanout", &topic, "record", "k=all"]).await;
    assert_eq!(fanout.status, 0, "{fanout:?}");
    let log = peer
        .request(json!({"cmd": "log", "server": "py1", "min": 5, "timeout": 10}))
        .await
        .unwrap();
    let recorded: Vec<&Value> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|entry| entry["method"] == "record")
        .collect();
    let mut recorded: Vec<&Value> = recorded.iter().map(|entry| &entry["args"]).collect();
    recorded.sort_by_key(|args| args["k"].to_string());
    assert_eq!(
        recorded,
        [&json!({"k": "all"}), &json!({"k": "v"})],
        "{log}"
    );
    // A Python server without rpc_ping_enabled refuses the ping.
    let deaf = unique("cli-py-deaf");
    let started = peer
        .request(json!({"cmd": "serve", "topic": deaf, "server": "py2"}))
        .await;
    assert_eq!(started, Ok(json!("started")));
    let refused = amqp_rpc(&["--url", &url, "ping", &deaf]).await;
    assert_eq!(refused.status, 1, "{refused:?}");
    assert_eq!(refused.error_json()["class"], "NoSuchMethod", "{refused:?}");
    // The load generator works on any oslo service.
    let bench = amqp_rpc(&[
        "--url",
        &url,
        "bench",
        &topic,
        "echo",
        "a=1",
        "--calls",
        "50",
        "--concurrency",
        "4",
    ])
    .await;
    assert_eq!(bench.status, 0, "{bench:?}");
    assert_eq!(bench.json()["answered"], 50, "{bench:?}");
    // Python servers do not describe themselves.
    let describe = amqp_rpc(&["--url", &url, "describe", &topic]).await;
    assert_eq!(describe.status, 1, "{describe:?}");
    assert!(
        describe.stderr.contains("does not describe itself"),
        "{describe:?}"
    );
    peer.quit().await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run with scripts/test.sh"]
async fn notifications_both_ways_with_python() {
    let url = broker_url();
    let peer = PythonPeer::start(&url).await;
    let topic = unique("cli-notif");
    // The command's notification to a Python listener.
    peer.listen("py", &[(None, &topic)], &["info", "error"], json!({}))
        .await;
    let sent = amqp_rpc(&[
        "--url",
        &url,
        "notify",
        &topic,
        "error",
        "compute.instance.delete.end",
        r#"{"instance_id": "i-1"}"#,
        "--publisher-id",
        "compute.host9",
        "--ctx",
        r#"{"user": "u9"}"#,
    ])
    .await;
    assert_eq!(sent.status, 0, "{sent:?}");
    let got = peer.received("py", 1, Duration::from_secs(10)).await;
    let n = &got.notifications[0];
    assert_eq!(n["priority"], "error", "{n}");
    assert_eq!(n["event_type"], "compute.instance.delete.end", "{n}");
    assert_eq!(n["publisher_id"], "compute.host9", "{n}");
    assert_eq!(n["payload"], json!({"instance_id": "i-1"}), "{n}");
    assert_eq!(n["ctxt"]["user"], "u9", "{n}");
    // The v1 driver, and a payload from standard input.
    let args = [
        "--url",
        &url,
        "notify",
        &topic,
        "info",
        "e.v1",
        "-",
        "--driver",
        "messaging",
    ];
    let sent = amqp_rpc_with(&args, Some("[1, 2]"), &[]).await;
    assert_eq!(sent.status, 0, "{sent:?}");
    let got = peer.received("py", 2, Duration::from_secs(10)).await;
    assert_eq!(got.notifications[1]["payload"], json!([1, 2]));
    assert_eq!(got.notifications[1]["event_type"], "e.v1");
    // A service's file: notifications on their own transport_url (here the only live one),
    // with its driver.
    let dir = std::env::temp_dir().join(unique("amqp-rpc-cli"));
    std::fs::create_dir_all(&dir).unwrap();
    let conf = |driver: &str| {
        let path = dir.join(format!("{driver}.conf"));
        std::fs::write(
            &path,
            format!(
                "[DEFAULT]\ntransport_url = rabbit://guest:guest@127.0.0.1:1/\n\
                 [oslo_messaging_notifications]\ntransport_url = {url}\ndriver = {driver}\n"
            ),
        )
        .unwrap();
        path.to_str().unwrap().to_owned()
    };
    let (v1, noop, routing) = (conf("messaging"), conf("noop"), conf("routing"));
    let sent = amqp_rpc(&["--config-file", &v1, "notify", &topic, "info", "from.conf"]).await;
    assert_eq!(sent.status, 0, "{sent:?}");
    let got = peer.received("py", 3, Duration::from_secs(10)).await;
    assert_eq!(got.notifications[2]["event_type"], "from.conf");
    let quiet = amqp_rpc(&["--config-file", &noop, "notify", &topic, "info", "not.sent"]).await;
    assert_eq!(quiet.status, 0, "{quiet:?}");
    let refused = amqp_rpc(&["--config-file", &routing, "notify", &topic, "info", "x"]).await;
    assert_eq!(refused.status, 78, "{refused:?}");
    // RPC still goes to [DEFAULT]'s URL, where nobody listens.
    let rpc = amqp_rpc(&["--config-file", &v1, "ping", &topic]).await;
    assert_eq!(rpc.status, 69, "{rpc:?}");
    // A last notification through the default driver: it is the next one the listener got,
    // so the noop driver sent nothing.
    let sent = amqp_rpc(&["--url", &url, "notify", &topic, "info", "last"]).await;
    assert_eq!(sent.status, 0, "{sent:?}");
    let got = peer.received("py", 4, Duration::from_secs(10)).await;
    let events: Vec<&Value> = got.notifications.iter().map(|n| &n["event_type"]).collect();
    assert_eq!(
        events[2..],
        [&json!("from.conf"), &json!("last")],
        "{events:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    peer.stop_listener("py").await;

    // Python's notifications to the command's listener: one JSON line each, then exit. oslo's
    // notifier declares the `<topic>.<priority>` queues, so they wait for the listener.
    let other = unique("cli-notif-in");
    for (priority, event) in [
        ("debug", "skipped.debug"),
        ("warning", "disk.low"),
        ("info", "vm.up"),
        ("info", "vm.later"),
    ] {
        let options = json!({"publisher_id": "py.host"});
        peer.notify(&other, priority, event, json!({"e": event}), options)
            .await;
    }
    let args = [
        "--url",
        &url,
        "listen",
        &other,
        "--count",
        "3",
        "--priority",
        "warn",
        "--priority",
        "info",
    ];
    let run = amqp_rpc(&args).await;
    assert_eq!(run.status, 0, "{run:?}");
    let lines = run.json_lines();
    let mut events: Vec<&str> = lines
        .iter()
        .filter_map(|l| l["event_type"].as_str())
        .collect();
    events.sort_unstable();
    assert_eq!(events, ["disk.low", "vm.later", "vm.up"], "{run:?}");
    let warn = lines
        .iter()
        .find(|l| l["event_type"] == "disk.low")
        .unwrap();
    assert_eq!(warn["priority"], "WARN", "{run:?}");
    assert_eq!(warn["publisher_id"], "py.host", "{run:?}");
    assert_eq!(warn["payload"], json!({"e": "disk.low"}), "{run:?}");
    assert!(warn["metadata"]["message_id"].is_string(), "{run:?}");
    assert!(warn["metadata"]["timestamp"].is_string(), "{run:?}");
    // --count takes that many and leaves the rest: the next listener gets them, in order.
    for event in ["first", "second"] {
        peer.notify(&other, "info", event, json!({}), json!({}))
            .await;
    }
    for event in ["first", "second"] {
        let args = [
            "--url",
            &url,
            "listen",
            &other,
            "--count",
            "1",
            "--priority",
            "info",
        ];
        let next = amqp_rpc(&args).await;
        assert_eq!(next.json_lines().len(), 1, "{next:?}");
        assert_eq!(next.json_lines()[0]["event_type"], event, "{next:?}");
    }
    peer.quit().await;
}

#[tokio::test]
#[ignore = "needs RabbitMQ: run with scripts/test.sh"]
async fn listen_runs_until_sigterm_and_exits_0() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let url = broker_url();
    let topic = unique("cli-term");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_amqp-rpc"))
        .args(["--url", &url, "listen", &topic])
        .env_remove("TRANSPORT_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Published until the listener prints it: the queue may not exist before it runs.
    let printed = tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let sent = amqp_rpc(&["--url", &url, "notify", &topic, "info", "up", "{}"]).await;
            assert_eq!(sent.status, 0, "{sent:?}");
            if let Ok(Ok(Some(line))) =
                tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await
            {
                return line;
            }
        }
    })
    .await
    .expect("the listener printed nothing in 30 s");
    let line: Value = serde_json::from_str(&printed).unwrap();
    assert_eq!(line["event_type"], "up");
    let pid = child.id().unwrap().to_string();
    let killed = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("listen did not exit on SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0));
}
