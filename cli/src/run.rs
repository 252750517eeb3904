//! The commands, each returning its exit status.

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use amqp_rpc::describe::DESCRIBE_METHOD;
use amqp_rpc::notify::{
    HandlerError, Incoming, NotificationEndpoint, NotificationListener, NotificationResult,
    Notifier, NotifierDriver, Priorities, Priority,
};
use amqp_rpc::{
    Context, PING_METHOD, RpcClient, RpcError, Target, Transport, Version, async_trait,
};
use serde_json::{Map, Value, json};
use tokio::sync::Notify;

use crate::arguments::{self, ArgumentError};
use crate::connect::{self, Failure, Purpose};
use crate::{Call, Cli, Command, Fanout, Listen, Method, Ping, Routing, status};

/// Runs the command of `cli`.
pub(crate) async fn run(cli: Cli) -> u8 {
    let outcome = match &cli.command {
        Command::Call(call) => run_call(&cli, call).await,
        Command::Cast(cast) => run_cast(&cli, &cast.method, Some(&cast.routing), false).await,
        Command::Fanout(Fanout { method }) => run_cast(&cli, method, None, true).await,
        Command::Ping(ping) => run_ping(&cli, ping).await,
        Command::Describe(describe) => run_describe(&cli, describe).await,
        Command::Notify(notify) => run_notify(&cli, notify).await,
        Command::Listen(listen) => run_listen(&cli, listen).await,
        Command::Bench(bench) => run_bench(&cli, bench).await,
        Command::Completions { .. } => Ok(0),
    };
    match outcome {
        Ok(status) => status,
        Err(failure) => {
            eprintln!("amqp-rpc: {}", failure.message);
            if failure.status == status::USAGE {
                print_usage(&cli.command);
            }
            failure.status
        }
    }
}

/// The usage of the command, after a command-line error found past parsing (as clap's own).
fn print_usage(command: &Command) {
    let name = match command {
        Command::Call(_) => "call",
        Command::Cast(_) => "cast",
        Command::Fanout(_) => "fanout",
        Command::Ping(_) => "ping",
        Command::Describe(_) => "describe",
        Command::Notify(_) => "notify",
        Command::Listen(_) => "listen",
        Command::Bench(_) => "bench",
        Command::Completions { .. } => "completions",
    };
    let mut cli = <Cli as clap::CommandFactory>::command();
    cli.build();
    if let Some(sub) = cli.find_subcommand_mut(name) {
        eprintln!(
            "\n{}\n\nFor more information, try '--help'.",
            sub.render_usage()
        );
    }
}

fn usage(e: impl std::fmt::Display) -> Failure {
    Failure::new(status::USAGE, e.to_string())
}

impl From<ArgumentError> for Failure {
    fn from(e: ArgumentError) -> Failure {
        usage(e)
    }
}

/// `value` as JSON text, indented with `--pretty`.
pub(crate) fn json_text(value: &Value, pretty: bool) -> String {
    let text = match pretty {
        true => serde_json::to_string_pretty(value),
        false => serde_json::to_string(value),
    };
    // A `Value` always serializes; `Display` is the same compact text.
    text.unwrap_or_else(|_| value.to_string())
}

/// Prints `value` as JSON on standard output.
fn print_json(cli: &Cli, value: &Value) {
    println!("{}", json_text(value, cli.pretty));
}

/// The context of `--ctx`.
fn context(ctx: Option<&str>) -> Result<Context, Failure> {
    match ctx {
        Some(text) => Ok(Context::from(arguments::object_of("--ctx", text)?)),
        None => Ok(Context::new()),
    }
}

/// The target of `topic`, or of one of its servers.
fn target_of(topic: &str, server: Option<&String>) -> Target {
    let target = Target::new(topic.to_owned());
    match server {
        Some(server) => target.with_server(server.clone()),
        None => target,
    }
}

/// A method's target and keyword arguments.
fn request(
    method: &Method,
    routing: Option<&Routing>,
) -> Result<(Target, Map<String, Value>, Context), Failure> {
    let kwargs = arguments::keyword_arguments(method.args_json.as_deref(), &method.args)?;
    let ctx = context(method.ctx.as_deref())?;
    let mut target = target_of(&method.topic, routing.and_then(|r| r.server.as_ref()));
    if let Some(routing) = routing {
        if let Some(namespace) = &routing.namespace {
            target = target.with_namespace(namespace.clone());
        }
        if let Some(version) = &routing.version {
            let version: Version = version
                .parse()
                .map_err(|e| usage(format!("--version {version}: {e}")))?;
            target = target.with_version(version);
        }
    }
    Ok((target, kwargs, ctx))
}

/// The oslo exception (class, module) an error the client library decoded stands for: a
/// timeout, and the dispatcher's refusals.
pub(crate) fn oslo_exception(error: &RpcError) -> Option<(&str, &'static str)> {
    let module = match error {
        RpcError::Timeout { .. } => "oslo_messaging.exceptions",
        RpcError::NoSuchMethod { .. } | RpcError::UnsupportedVersion { .. } => {
            "oslo_messaging.rpc.dispatcher"
        }
        _ => return None,
    };
    Some((error.class(), module))
}

/// Reports a failed call or cast: a remote failure or a timeout as JSON on standard error.
fn report(cli: &Cli, error: RpcError) -> u8 {
    if let Some((class, module)) = oslo_exception(&error) {
        let status = match error.is_timeout() {
            true => status::TIMEOUT,
            false => status::REMOTE,
        };
        let message = error.to_string();
        eprint_json(
            cli,
            &json!({"class": class, "module": module, "message": message}),
        );
        return status;
    }
    match &error {
        RpcError::Remote(remote) => {
            let mut out = Map::new();
            out.insert("class".into(), remote.class().into());
            out.insert("module".into(), remote.module().into());
            out.insert("message".into(), remote.message().into());
            if !remote.args().is_empty() {
                out.insert("args".into(), remote.args().to_vec().into());
            }
            if !remote.kwargs().is_empty() {
                out.insert("kwargs".into(), Value::Object(remote.kwargs().clone()));
            }
            if !remote.traceback().is_empty() {
                out.insert("traceback".into(), remote.traceback().to_vec().into());
            }
            eprint_json(cli, &Value::Object(out));
            status::REMOTE
        }
        RpcError::Transport(_) => {
            eprintln!("amqp-rpc: {error}");
            status::UNAVAILABLE
        }
        RpcError::InvalidTarget(_) | RpcError::InvalidArguments { .. } | RpcError::Version(_) => {
            eprintln!("amqp-rpc: {error}");
            status::USAGE
        }
        _ => {
            eprintln!("amqp-rpc: {error}");
            status::SOFTWARE
        }
    }
}

fn eprint_json(cli: &Cli, value: &Value) {
    eprintln!("{}", json_text(value, cli.pretty));
}

fn timeout_of(secs: f64, what: &str) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(secs)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            usage(format!(
                "{what} {secs}: expected a positive number of seconds"
            ))
        })
}

/// `--timeout`, if given.
fn reply_timeout(secs: Option<f64>) -> Result<Option<Duration>, Failure> {
    secs.map(|t| timeout_of(t, "--timeout")).transpose()
}

/// A client of `target`, waiting `timeout` for replies (default: the transport's
/// `rpc_response_timeout`).
fn client_of(transport: &Transport, target: Target, timeout: Option<Duration>) -> RpcClient {
    let client = RpcClient::new(transport, target);
    match timeout {
        Some(timeout) => client.with_timeout(timeout),
        None => client,
    }
}

async fn run_call(cli: &Cli, call: &Call) -> Result<u8, Failure> {
    let (target, kwargs, ctx) = request(&call.method, Some(&call.routing))?;
    let timeout = reply_timeout(call.timeout)?;
    let transport = connect::transport(cli, Purpose::Rpc).await?;
    let client = client_of(&transport, target, timeout);
    let result: Result<Value, RpcError> = client.call(&ctx, &call.method.method, kwargs).await;
    let status = match result {
        Ok(value) => {
            print_json(cli, &value);
            0
        }
        Err(e) => report(cli, e),
    };
    transport.close().await;
    Ok(status)
}

async fn run_cast(
    cli: &Cli,
    method: &Method,
    routing: Option<&Routing>,
    fanout: bool,
) -> Result<u8, Failure> {
    let (target, kwargs, ctx) = request(method, routing)?;
    let transport = connect::transport(cli, Purpose::Rpc).await?;
    let client = RpcClient::new(&transport, target.with_fanout(fanout));
    let status = match client.cast(&ctx, &method.method, kwargs).await {
        Ok(()) => 0,
        Err(e) => report(cli, e),
    };
    transport.close().await;
    Ok(status)
}

async fn run_ping(cli: &Cli, ping: &Ping) -> Result<u8, Failure> {
    let timeout = timeout_of(ping.timeout, "--timeout")?;
    let transport = connect::transport(cli, Purpose::Rpc).await?;
    let target = target_of(&ping.topic, ping.server.as_ref());
    let client = client_of(&transport, target, Some(timeout));
    let ctx = Context::new();
    let mut worst = 0;
    for seq in 1..=ping.count {
        let started = Instant::now();
        let answer: Result<Value, RpcError> = client.call(&ctx, PING_METHOD, json!({})).await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        let ms = (ms * 1000.0).round() / 1000.0;
        match answer {
            Ok(reply) => print_json(cli, &json!({"ping": seq, "reply": reply, "ms": ms})),
            Err(e) => {
                let status = report(cli, e);
                // A timeout (2) ranks above a refusal (1): a probe wants to know the service is
                // not answering at all.
                worst = worst.max(status);
                print_json(cli, &json!({"ping": seq, "reply": null, "ms": ms}));
            }
        }
    }
    transport.close().await;
    Ok(worst)
}

async fn run_bench(cli: &Cli, bench: &crate::Bench) -> Result<u8, Failure> {
    let (target, kwargs, ctx) = request(&bench.method, Some(&bench.routing))?;
    let limit = match (bench.duration, bench.calls) {
        (_, Some(calls)) => crate::bench::Limit::Calls(calls),
        (duration, None) => {
            crate::bench::Limit::Duration(timeout_of(duration.unwrap_or(10.0), "--duration")?)
        }
    };
    let rate = match bench.rate {
        Some(rate) if rate.is_finite() && rate > 0.0 => Some(rate),
        Some(rate) => {
            return Err(usage(format!(
                "--rate {rate}: expected calls per second > 0"
            )));
        }
        None => None,
    };
    let timeout = reply_timeout(bench.timeout)?;
    let transport = connect::transport(cli, Purpose::Rpc).await?;
    let client = client_of(&transport, target, timeout);
    let load = crate::bench::Load {
        client,
        method: bench.method.method.clone(),
        kwargs,
        ctx,
        concurrency: bench.concurrency,
        limit,
        rate,
    };
    let status = crate::bench::run(cli, load).await;
    transport.close().await;
    status
}

async fn run_describe(cli: &Cli, describe: &crate::Describe) -> Result<u8, Failure> {
    let timeout = timeout_of(describe.timeout, "--timeout")?;
    let transport = connect::transport(cli, Purpose::Rpc).await?;
    let target = target_of(&describe.topic, describe.server.as_ref());
    let client = client_of(&transport, target, Some(timeout));
    let answer: Result<Value, RpcError> = client
        .call(&Context::new(), DESCRIBE_METHOD, json!({}))
        .await;
    let status = match answer {
        Ok(description) => {
            print_json(cli, &description);
            0
        }
        // No endpoint has the method: in the default namespace (NoSuchMethod), or none is in
        // the default namespace at all (UnsupportedVersion).
        Err(RpcError::NoSuchMethod { .. } | RpcError::UnsupportedVersion { .. }) => {
            eprintln!(
                "amqp-rpc: the server of {} does not describe itself (a Python oslo.messaging \
                 server, or an amqp-rpc server built without describe(true))",
                describe.topic
            );
            status::REMOTE
        }
        Err(e) => report(cli, e),
    };
    transport.close().await;
    Ok(status)
}

/// `priority` as the command line names it: oslo's names, `warning` too.
fn priority_named(name: &str) -> Result<Priority, Failure> {
    match name.to_lowercase().as_str() {
        "warning" => Ok(Priority::Warn),
        lower => Priority::from_wire(lower).ok_or_else(|| {
            usage(format!(
                "priority {name:?}: expected audit, debug, info, warn (or warning), error, \
                 critical or sample"
            ))
        }),
    }
}

async fn run_notify(cli: &Cli, notify: &crate::Notify) -> Result<u8, Failure> {
    let priority = priority_named(&notify.priority)?;
    let driver = match &notify.driver {
        Some(name) => NotifierDriver::from_name(name).ok_or_else(|| {
            usage(format!(
                "--driver {name}: expected messagingv2, messaging, log or noop"
            ))
        })?,
        None => configured_driver(connect::conf(cli)?.as_ref())?,
    };
    let ctx = context(notify.ctx.as_deref())?;
    let payload: Value = match notify.payload.as_deref() {
        None => json!({}),
        Some(text) => {
            let text = match text {
                "-" => {
                    let mut text = String::new();
                    std::io::stdin()
                        .read_to_string(&mut text)
                        .map_err(|e| usage(format!("payload from standard input: {e}")))?;
                    text
                }
                text => text.to_owned(),
            };
            serde_json::from_str(&text)
                .map_err(|e| usage(format!("payload {text:?} is not JSON: {e}")))?
        }
    };
    let transport = connect::transport(cli, Purpose::Notifications).await?;
    let notifier = Notifier::new(&transport, notify.publisher_id.clone())
        .with_topics([notify.topic.clone()])
        .with_driver(driver);
    let status = match notifier
        .notify(&ctx, priority, &notify.event_type, &payload)
        .await
    {
        Ok(()) => 0,
        Err(e) => report(cli, e),
    };
    transport.close().await;
    Ok(status)
}

/// The driver of the file's `[oslo_messaging_notifications] driver` (the first of a list), else
/// `messagingv2`.
fn configured_driver(conf: Option<&crate::oslo_conf::OsloConf>) -> Result<NotifierDriver, Failure> {
    let named = match conf {
        Some(conf) => conf.get("oslo_messaging_notifications", "driver")?,
        None => None,
    };
    let Some(named) = named else {
        return Ok(NotifierDriver::MessagingV2);
    };
    let first = named.split(',').map(str::trim).find(|d| !d.is_empty());
    match first {
        None => Ok(NotifierDriver::MessagingV2),
        Some(name) => NotifierDriver::from_name(name).ok_or_else(|| {
            Failure::new(
                status::CONFIG,
                format!(
                    "[oslo_messaging_notifications] driver = {name}: amqp-rpc has messagingv2, \
                     messaging, log and noop"
                ),
            )
        }),
    }
}

/// Prints each notification as a JSON line; after `count` of them, sends the rest back.
struct Printer {
    priorities: Priorities,
    pretty: bool,
    count: Option<u64>,
    seen: AtomicU64,
    done: Arc<Notify>,
}

#[async_trait]
impl NotificationEndpoint for Printer {
    fn priorities(&self) -> Priorities {
        self.priorities
    }

    async fn handle(&self, n: &Incoming) -> Result<NotificationResult, HandlerError> {
        let seen = self.seen.fetch_add(1, Ordering::SeqCst) + 1;
        if self.count.is_some_and(|count| seen > count) {
            // Not ours: one more than asked for came before the listener stopped.
            return Ok(NotificationResult::Requeue);
        }
        let line = json!({
            "priority": n.priority.as_upper(),
            "publisher_id": n.publisher_id,
            "event_type": n.event_type,
            "payload": n.payload,
            "metadata": n.metadata.to_map(),
            "ctxt": n.context.as_map(),
        });
        println!("{}", json_text(&line, self.pretty));
        if self.count == Some(seen) {
            self.done.notify_one();
        }
        Ok(NotificationResult::Handled)
    }
}

/// Waits for Ctrl-C (SIGINT) or, on Unix, SIGTERM (what a container runtime sends): `listen`
/// then stops taking notifications, settles those in hand and exits 0.
async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}

async fn run_listen(cli: &Cli, listen: &Listen) -> Result<u8, Failure> {
    let priorities = match listen.priorities.is_empty() {
        true => Priorities::all(),
        false => listen
            .priorities
            .iter()
            .map(|p| priority_named(p))
            .collect::<Result<Priorities, Failure>>()?,
    };
    if listen.count == Some(0) {
        return Ok(0);
    }
    let transport = connect::transport(cli, Purpose::Notifications).await?;
    let done = Arc::new(Notify::new());
    let mut builder = NotificationListener::builder(&transport)
        .endpoint(Printer {
            priorities,
            pretty: cli.pretty,
            count: listen.count,
            seen: AtomicU64::new(0),
            done: Arc::clone(&done),
        })
        // One at a time: lines come out in the order of each queue, and with --count none
        // is taken beyond it but sent back.
        .max_concurrency(1)
        .allow_requeue(true);
    builder = match listen.exchanges.is_empty() {
        true => builder.topic(listen.topic.clone()),
        false => listen.exchanges.iter().fold(builder, |b, exchange| {
            b.target(exchange.clone(), listen.topic.clone())
        }),
    };
    if let Some(pool) = &listen.pool {
        builder = builder.pool(pool.clone());
    }
    let listener = builder.build().map_err(usage)?;
    let stop = async {
        tokio::select! {
            () = done.notified() => {}
            () = interrupted() => {}
        }
    };
    let status = match listener.serve_until(stop).await {
        Ok(()) => 0,
        Err(e) => report(cli, e),
    };
    transport.close().await;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_by_name() {
        assert_eq!(priority_named("INFO").ok(), Some(Priority::Info));
        assert_eq!(priority_named("warning").ok(), Some(Priority::Warn));
        assert_eq!(priority_named("warn").ok(), Some(Priority::Warn));
        assert_eq!(priority_named("sample").ok(), Some(Priority::Sample));
        let bad = priority_named("loud").err().map(|f| (f.status, f.message));
        assert_eq!(bad.map(|(s, _)| s), Some(status::USAGE));
    }

    #[test]
    fn timeouts_are_positive_seconds() {
        assert_eq!(
            timeout_of(1.5, "--timeout").ok(),
            Some(Duration::from_millis(1500))
        );
        for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(timeout_of(bad, "--timeout").is_err(), "{bad}");
        }
    }
}
