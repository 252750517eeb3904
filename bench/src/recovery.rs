//! The recovery phase: steady sequential calls while the bench closes every connection of the
//! run's vhost from outside (`rabbitmqctl close_all_connections`), client's and server's at
//! once. Only the systems that reconnect by themselves run it: amqp-rpc and oslo.messaging (the
//! lapin references do not reconnect). Each run has a vhost, a server and a client of its own,
//! so that one run's reconnections cannot spill into another's.

use std::error::Error;
use std::pin::Pin;
use std::time::{Duration, Instant};

use futures_util::{Stream, StreamExt};
use lapin::{Connection, ConnectionProperties};

use crate::stats::{CallRecord, mid};
use crate::systems::{AmqpSystem, CALL_TIMEOUT, OsloSystem};
use crate::{SystemKind, Vhost};

/// The phase's title, which `--only` selects it by.
pub(crate) const TITLE: &str = "recovery from a connection cut";

/// The systems that run the phase.
pub(crate) const SYSTEMS: [SystemKind; 2] = [SystemKind::Amqp, SystemKind::Oslo];

/// Bytes of each call's payload.
const PAYLOAD: usize = 100;

/// amqp-rpc's calls before the run, not counted, as the Python client warms up: the reply
/// queue and the channels exist when the run starts.
const WARM_UP: Duration = Duration::from_millis(200);

/// How long the bench waits for the broker to close its own connection once it has asked.
const CUT_BOUND: Duration = Duration::from_secs(10);

/// How long a run calls, and when the cut comes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Timing {
    /// From the first call to the start of the last one (unless the last ones failed: see
    /// [`crate::systems::call_timeline`]).
    pub(crate) run: Duration,
    /// From the first call to the start of the cut (rabbitmqctl).
    pub(crate) cut_after: Duration,
}

impl Timing {
    pub(crate) fn new(smoke: bool) -> Timing {
        match smoke {
            // Enough to go through a cut (0.5 to 1 s after rabbitmqctl starts), though not
            // always for oslo.messaging to call again after it (1 to 3 s): figures meaningless.
            true => Timing {
                run: Duration::from_secs(2),
                cut_after: Duration::from_millis(500),
            },
            false => Timing {
                run: Duration::from_secs(6),
                cut_after: Duration::from_secs(2),
            },
        }
    }
}

/// What one run of one system measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Recovery {
    /// Calls made, successful or not.
    pub(crate) calls: u64,
    /// Calls that failed: an error of any kind, or a wrong reply.
    pub(crate) failed: u64,
    /// From the cut to the end of the first successful call that started after it; `None` if
    /// none did before the run ended.
    pub(crate) first_success: Option<Duration>,
    /// The longest time without a successful call ending: between the ends of two successive
    /// successful calls, the run's start and its last call's end counting as such ends.
    pub(crate) longest_stall: Duration,
}

impl Recovery {
    /// The figures of the calls of a run whose cut came at `cut` (both from the run's start).
    fn measure(calls: &[CallRecord], cut: Duration) -> Recovery {
        let first_success = calls
            .iter()
            .filter(|c| c.ok && c.start >= cut)
            .map(|c| c.end - cut)
            .min();
        let mut ends: Vec<Duration> = calls.iter().filter(|c| c.ok).map(|c| c.end).collect();
        ends.sort_unstable();
        ends.extend(calls.iter().map(|c| c.end).max());
        let mut last = Duration::ZERO;
        let mut longest_stall = Duration::ZERO;
        for end in ends {
            longest_stall = longest_stall.max(end.saturating_sub(last));
            last = last.max(end);
        }
        Recovery {
            calls: calls.len() as u64,
            failed: calls.iter().filter(|c| !c.ok).count() as u64,
            first_success,
            longest_stall,
        }
    }
}

/// Medians and worst figures of several runs of one system.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Summary {
    /// Median and fewest calls.
    pub(crate) calls: (f64, u64),
    /// Median and most failed calls.
    pub(crate) failed: (f64, u64),
    /// Median and longest time from the cut to a success, in seconds; infinite where a run
    /// had none.
    pub(crate) first_success: (f64, f64),
    /// Median and longest stall, in seconds.
    pub(crate) longest_stall: (f64, f64),
}

impl Summary {
    pub(crate) fn of(runs: &[Recovery]) -> Option<Summary> {
        let median = |values: Vec<f64>| mid(values).unwrap_or(f64::NAN);
        let worst = |values: &[f64]| values.iter().copied().fold(f64::NAN, f64::max);
        let first: Vec<f64> = runs
            .iter()
            .map(|r| r.first_success.map_or(f64::INFINITY, |d| d.as_secs_f64()))
            .collect();
        let stall: Vec<f64> = runs.iter().map(|r| r.longest_stall.as_secs_f64()).collect();
        Some(Summary {
            calls: (
                median(runs.iter().map(|r| r.calls as f64).collect()),
                runs.iter().map(|r| r.calls).min()?,
            ),
            failed: (
                median(runs.iter().map(|r| r.failed as f64).collect()),
                runs.iter().map(|r| r.failed).max()?,
            ),
            first_success: (median(first.clone()), worst(&first)),
            longest_stall: (median(stall.clone()), worst(&stall)),
        })
    }
}

/// One run of `system`: its server and client in a vhost of their own, sequential calls for
/// `timing.run`, every connection of the vhost closed at `timing.cut_after`.
pub(crate) async fn run(
    system: SystemKind,
    base_url: &str,
    python: Option<&str>,
    timing: Timing,
) -> Result<Recovery, Box<dyn Error>> {
    let vhost = Vhost::create(format!(
        "amqp-rpc-bench-recovery-{}",
        uuid::Uuid::new_v4().simple()
    ))?;
    let url = format!("{}/{}", base_url.trim_end_matches('/'), vhost.0);
    let sentinel = Sentinel::open(&url.replacen("rabbit://", "amqp://", 1)).await?;
    let name = vhost.0.as_str();
    let cut = move |started| cut(sentinel, name, started + timing.cut_after, started);
    let topic = "recovery";
    let (calls, cut) = match system {
        SystemKind::Amqp => {
            let amqp = AmqpSystem::start_calls_only(&url, topic, 64).await?;
            let payload = "x".repeat(PAYLOAD);
            amqp.call_timeline(&payload, Instant::now(), WARM_UP).await;
            let started = Instant::now();
            let run = tokio::join!(
                amqp.call_timeline(&payload, started, timing.run),
                cut(started)
            );
            amqp.stop().await;
            run
        }
        SystemKind::Oslo => {
            let python = python.ok_or("no oslo.messaging virtualenv")?;
            let oslo = OsloSystem::start_for_recovery(python, &url, topic).await?;
            let run = oslo
                .call_timeline(PAYLOAD, timing.run, CALL_TIMEOUT, cut)
                .await;
            oslo.stop().await;
            run.ok_or("the oslo.messaging client gave no result")?
        }
        SystemKind::Lapin | SystemKind::LapinContract => {
            return Err("the lapin references do not reconnect".into());
        }
    };
    Ok(Recovery::measure(&calls, cut?))
}

/// At `at`, closes every connection of `vhost`; returns when, from `started`, the broker
/// closed the sentinel's.
async fn cut(
    mut sentinel: Sentinel,
    vhost: &str,
    at: Instant,
    started: Instant,
) -> Result<Duration, String> {
    tokio::time::sleep_until(at.into()).await;
    let closing = async {
        let output = close_all_connections(vhost).await;
        (output, Instant::now())
    };
    let ((output, returned), seen) =
        tokio::join!(closing, tokio::time::timeout(CUT_BOUND, sentinel.closed()));
    output?;
    // rabbitmqctl takes half a second or more (an Erlang node starts and stops), most of it
    // before the broker closes anything: its start would be an early mark, its return a late
    // one (by up to 30 ms here).
    Ok(seen.unwrap_or(returned).saturating_duration_since(started))
}

/// `rabbitmqctl close_all_connections` on `vhost`, without blocking the runtime (the calls
/// go on meanwhile).
async fn close_all_connections(vhost: &str) -> Result<(), String> {
    let output = tokio::process::Command::new("rabbitmqctl")
        .args(["-q", "close_all_connections", "-p", vhost])
        .arg("bench: connection cut")
        .output()
        .await
        .map_err(|e| format!("rabbitmqctl: {e}"))?;
    match output.status.success() {
        true => Ok(()),
        false => Err(format!(
            "rabbitmqctl close_all_connections failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        )),
    }
}

/// The bench's own connection in the run's vhost, which does not reconnect: the moment the
/// broker closes it marks the cut, the same way for every system.
struct Sentinel {
    connection: Connection,
    events: Pin<Box<dyn Stream<Item = lapin::Event> + Send>>,
}

impl Sentinel {
    async fn open(amqp_url: &str) -> Result<Sentinel, lapin::Error> {
        let properties =
            ConnectionProperties::default().with_connection_name("amqp-rpc-bench: cut".into());
        let connection = Connection::connect(amqp_url, properties).await?;
        // Listening from now on: lapin sends events only while someone listens.
        let events = Box::pin(connection.events_listener());
        Ok(Sentinel { connection, events })
    }

    /// When the connection was lost (at once if it is).
    async fn closed(&mut self) -> Instant {
        let mut poll = tokio::time::interval(Duration::from_millis(5));
        loop {
            if !self.connection.status().connected() {
                return Instant::now();
            }
            tokio::select! {
                event = self.events.next() => match event {
                    Some(lapin::Event::Error(_)) | None => return Instant::now(),
                    Some(_) => {}
                },
                _ = poll.tick() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    /// Sequential calls, each `(start, end, ok)` in milliseconds.
    fn calls(spans: &[(u64, u64, bool)]) -> Vec<CallRecord> {
        spans
            .iter()
            .map(|&(start, end, ok)| CallRecord {
                start: ms(start),
                end: ms(end),
                ok,
            })
            .collect()
    }

    #[test]
    fn a_call_held_over_the_cut_is_the_stall_and_the_next_call_the_first_success() {
        let run = calls(&[
            (0, 10, true),
            (10, 20, true),
            (20, 1500, true),
            (1500, 1510, true),
        ]);
        let recovery = Recovery::measure(&run, ms(25));
        assert_eq!(recovery.calls, 4);
        assert_eq!(recovery.failed, 0);
        assert_eq!(recovery.first_success, Some(ms(1485)));
        assert_eq!(recovery.longest_stall, ms(1480));
    }

    #[test]
    fn failed_calls_count_and_do_not_end_a_stall() {
        let run = calls(&[
            (0, 10, true),
            (10, 900, false),
            (900, 1000, false),
            (1000, 1010, true),
        ]);
        let recovery = Recovery::measure(&run, ms(15));
        assert_eq!(recovery.failed, 2);
        assert_eq!(recovery.first_success, Some(ms(995)));
        assert_eq!(recovery.longest_stall, ms(1000));
    }

    #[test]
    fn a_run_that_never_recovers_stalls_until_its_last_call_ends() {
        let run = calls(&[(0, 10, true), (10, 3000, false)]);
        let recovery = Recovery::measure(&run, ms(20));
        assert_eq!(recovery.first_success, None);
        assert_eq!(recovery.longest_stall, ms(2990));
        let summary = Summary::of(&[recovery]);
        assert_eq!(summary.map(|s| s.first_success.1), Some(f64::INFINITY));
    }

    #[test]
    fn no_runs_have_no_summary() {
        assert_eq!(Summary::of(&[]), None);
    }
}
