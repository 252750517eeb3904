//! `amqp-rpc`: call, cast, ping, notify and listen to any oslo.messaging service (Python
//! oslo.messaging or amqp-rpc) from the command line.
//!
//! Exit status: 0 done; 1 the remote method failed (a ping or description refused, too); 2 a
//! reply did not come in time; 64 a bad command line; 66 a configuration file that cannot be
//! read; 69 the broker cannot be used (unreachable, refused, connection lost); 70 anything
//! else; 78 a configuration that is not valid.

mod arguments;
mod bench;
mod connect;
mod oslo_conf;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};

/// Exit statuses (sysexits.h where it has one).
pub(crate) mod status {
    /// The remote method raised, or the server did not describe itself.
    pub(crate) const REMOTE: u8 = 1;
    /// No reply in time.
    pub(crate) const TIMEOUT: u8 = 2;
    /// EX_USAGE: a bad command line.
    pub(crate) const USAGE: u8 = 64;
    /// EX_NOINPUT: a file that cannot be read.
    pub(crate) const NO_INPUT: u8 = 66;
    /// EX_UNAVAILABLE: the broker cannot be used.
    pub(crate) const UNAVAILABLE: u8 = 69;
    /// EX_SOFTWARE: anything else.
    pub(crate) const SOFTWARE: u8 = 70;
    /// EX_CONFIG: a configuration that is not valid.
    pub(crate) const CONFIG: u8 = 78;
}

/// Call, cast, ping, notify and listen to oslo.messaging services over RabbitMQ.
///
/// The broker's URL comes from --url, else $TRANSPORT_URL, else the [DEFAULT] transport_url of
/// --config-file (an oslo service's own configuration, e.g. /etc/nova/nova.conf, whose
/// control_exchange and [oslo_messaging_rabbit] options are used too).
#[derive(Debug, Parser)]
#[command(name = "amqp-rpc", version, max_term_width = 100)]
pub(crate) struct Cli {
    /// Transport URL, e.g. rabbit://user:pass@host:5672/vhost
    #[arg(long, global = true, value_name = "URL")]
    pub(crate) url: Option<String>,
    /// An oslo service's configuration file (transport_url, control_exchange and the
    /// [oslo_messaging_rabbit] options)
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) config_file: Option<PathBuf>,
    /// The exchange of calls, casts and notifications (default: the control exchange,
    /// `openstack` unless the configuration file names another)
    #[arg(long, value_name = "NAME")]
    pub(crate) exchange: Option<String>,
    /// Indent JSON output
    #[arg(long, global = true)]
    pub(crate) pretty: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Call METHOD on TOPIC and print its result as JSON
    Call(Call),
    /// Cast METHOD to TOPIC (no reply); returns once the broker has it
    Cast(Cast),
    /// Cast METHOD to every server of TOPIC
    Fanout(Fanout),
    /// Ping servers with oslo's oslo_rpc_server_ping (servers with rpc_ping_enabled); exits 0
    /// only if every ping was answered
    Ping(Ping),
    /// Print the description of an amqp-rpc server's endpoints (servers built with
    /// describe(true)): namespaces, versions, methods, their arguments as JSON Schema
    Describe(Describe),
    /// Publish a notification
    Notify(Notify),
    /// Print notifications as they come, one JSON object per line
    Listen(Listen),
    /// Load-test a method: calls from --concurrency tasks for --duration or --calls, with a
    /// progress bar; a summary (calls/s, latency percentiles, errors by class) as JSON
    Bench(Bench),
    /// Print a shell completion script
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

/// A method and its keyword arguments.
#[derive(Debug, Args)]
pub(crate) struct Method {
    /// The topic of the servers
    pub(crate) topic: String,
    /// The method's name
    pub(crate) method: String,
    /// Keyword arguments: key=value (a string) or key:=json (any JSON value)
    #[arg(value_name = "ARG")]
    pub(crate) args: Vec<String>,
    /// Keyword arguments as one JSON object: the text, @FILE, or - for standard input
    /// (key=value arguments extend it)
    #[arg(long = "args", value_name = "JSON")]
    pub(crate) args_json: Option<String>,
    /// The request context, a JSON object
    #[arg(long, value_name = "JSON")]
    pub(crate) ctx: Option<String>,
}

/// Where a call or cast goes.
#[derive(Debug, Args)]
pub(crate) struct Routing {
    /// One server of the topic (its host name in OpenStack)
    #[arg(long, value_name = "S")]
    pub(crate) server: Option<String>,
    /// The endpoints' namespace
    #[arg(long, value_name = "NS")]
    pub(crate) namespace: Option<String>,
    /// The version sent (e.g. 5.0); servers with a compatible endpoint answer
    #[arg(long, value_name = "V")]
    pub(crate) version: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct Call {
    #[command(flatten)]
    pub(crate) method: Method,
    #[command(flatten)]
    pub(crate) routing: Routing,
    /// Seconds to wait for the reply (default: rpc_response_timeout, 60)
    #[arg(long, value_name = "SECS")]
    pub(crate) timeout: Option<f64>,
}

#[derive(Debug, Args)]
pub(crate) struct Cast {
    #[command(flatten)]
    pub(crate) method: Method,
    #[command(flatten)]
    pub(crate) routing: Routing,
}

#[derive(Debug, Args)]
pub(crate) struct Fanout {
    #[command(flatten)]
    pub(crate) method: Method,
}

#[derive(Debug, Args)]
pub(crate) struct Ping {
    /// The topic of the servers
    pub(crate) topic: String,
    /// One server of the topic
    #[arg(long, value_name = "S")]
    pub(crate) server: Option<String>,
    /// How many pings, one after the other
    #[arg(long, default_value_t = 1, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) count: u32,
    /// Seconds to wait for each answer
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub(crate) timeout: f64,
}

#[derive(Debug, Args)]
pub(crate) struct Bench {
    #[command(flatten)]
    pub(crate) method: Method,
    #[command(flatten)]
    pub(crate) routing: Routing,
    /// Calls in flight at once
    #[arg(long, default_value_t = 16, value_name = "N",
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) concurrency: u32,
    /// Run for this many seconds (default 10)
    #[arg(long, value_name = "SECS", conflicts_with = "calls")]
    pub(crate) duration: Option<f64>,
    /// Make this many calls
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub(crate) calls: Option<u64>,
    /// Calls per second in all (default: as fast as the replies come)
    #[arg(long, value_name = "R")]
    pub(crate) rate: Option<f64>,
    /// Seconds to wait for each reply (default: rpc_response_timeout, 60)
    #[arg(long, value_name = "SECS")]
    pub(crate) timeout: Option<f64>,
}

#[derive(Debug, Args)]
pub(crate) struct Describe {
    /// The topic of the servers
    pub(crate) topic: String,
    /// One server of the topic
    #[arg(long, value_name = "S")]
    pub(crate) server: Option<String>,
    /// Seconds to wait for the answer
    #[arg(long, default_value_t = 10.0, value_name = "SECS")]
    pub(crate) timeout: f64,
}

#[derive(Debug, Args)]
pub(crate) struct Notify {
    /// The topic (routing key TOPIC.PRIORITY)
    pub(crate) topic: String,
    /// audit, debug, info, warn (or warning), error, critical or sample
    pub(crate) priority: String,
    /// The event type, e.g. compute.instance.create.end
    pub(crate) event_type: String,
    /// The payload, JSON (default: {}); - reads it from standard input
    pub(crate) payload: Option<String>,
    /// The publisher id, e.g. compute.host1
    #[arg(long, default_value = "amqp-rpc-cli", value_name = "ID")]
    pub(crate) publisher_id: String,
    /// The context, a JSON object
    #[arg(long, value_name = "JSON")]
    pub(crate) ctx: Option<String>,
    /// The notification driver: messagingv2 (enveloped), messaging (the 1.0 format), log or
    /// noop (default: the configuration file's [oslo_messaging_notifications] driver, else
    /// messagingv2)
    #[arg(long, value_name = "DRIVER")]
    pub(crate) driver: Option<String>,
}

#[derive(Debug, Args)]
pub(crate) struct Listen {
    /// The topic (notifications, versioned_notifications, ...)
    pub(crate) topic: String,
    /// An exchange to listen on (repeat for several; default: the control exchange)
    #[arg(long = "exchange", value_name = "E")]
    pub(crate) exchanges: Vec<String>,
    /// Share the stream with the other listeners of this pool (a queue of the pool's name);
    /// without it, the topic's own TOPIC.PRIORITY queues are consumed
    #[arg(long, value_name = "NAME")]
    pub(crate) pool: Option<String>,
    /// A priority to listen to (repeat for several; default: all)
    #[arg(long = "priority", value_name = "P")]
    pub(crate) priorities: Vec<String>,
    /// Exit after this many notifications
    #[arg(long, value_name = "N")]
    pub(crate) count: Option<u64>,
}

/// Locks `mutex`, whether or not a holder panicked.
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let status = match e.kind() {
                clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => 0,
                _ => status::USAGE,
            };
            let _ = e.print();
            if status != 0 && !e.to_string().contains("Usage:") {
                // Some of clap's errors (a bad value) give only a hint: the usage too.
                eprintln!("\n{}", Cli::command().render_usage());
            }
            return ExitCode::from(status);
        }
    };
    if let Command::Completions { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "amqp-rpc",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("amqp-rpc: cannot start: {e}");
            return ExitCode::from(status::SOFTWARE);
        }
    };
    ExitCode::from(runtime.block_on(run::run(cli)))
}
