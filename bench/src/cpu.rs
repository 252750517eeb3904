//! CPU time per operation, for this process and for the local broker, read from `/proc`
//! around each phase (Linux). On a machine whose cores run both peers and the broker, the CPU
//! time one call costs all of them together bounds the calls per second.

use std::time::Duration;

/// The unit of the times in `/proc/<pid>/stat`: `USER_HZ`, fixed at 100 per second by the
/// Linux ABI whatever the kernel's own tick rate.
const USER_HZ: f64 = 100.0;

/// Less CPU time than this between two readings (ten ticks) gives no figure: one tick either
/// way would be more than a tenth of it.
const LEAST_MEASURED: Duration = Duration::from_millis(100);

/// CPU time, user and system, of every thread of the process `pid` (`"self"` for this one).
fn cpu_time(pid: &str) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: fields are counted after it.
    let (_, fields) = stat.rsplit_once(')')?;
    let mut fields = fields.split_whitespace().skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some(Duration::from_secs_f64((user + system) as f64 / USER_HZ))
}

/// The pid of the RabbitMQ node running on this machine (its Erlang VM, `beam.smp`), if
/// exactly one runs.
fn local_broker() -> Option<String> {
    let mut found = std::fs::read_dir("/proc")
        .ok()?
        .filter_map(Result::ok)
        .filter(|entry| {
            std::fs::read_to_string(entry.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end() == "beam.smp")
        })
        .filter_map(|entry| entry.file_name().into_string().ok());
    let pid = found.next()?;
    found.next().is_none().then_some(pid)
}

/// Reads the CPU time of this process and of the broker.
#[derive(Debug, Clone)]
pub(crate) struct CpuMeter {
    /// `None` when the broker is not on this machine or could not be told apart.
    broker: Option<String>,
}

/// CPU times read at one instant.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuReading {
    process: Option<Duration>,
    broker: Option<Duration>,
}

/// CPU time per operation between two readings, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct CpuPerOp {
    /// This process: the client and server of the system measured (the other systems idle).
    pub(crate) process_us: Option<f64>,
    /// The broker.
    pub(crate) broker_us: Option<f64>,
}

impl CpuMeter {
    /// Meters the broker too when it runs here (`broker_is_local`) as one `beam.smp`.
    pub(crate) fn new(broker_is_local: bool) -> CpuMeter {
        CpuMeter {
            broker: broker_is_local.then(local_broker).flatten(),
        }
    }

    /// Whether the broker's CPU time is read.
    pub(crate) fn meters_broker(&self) -> bool {
        self.broker.is_some()
    }

    pub(crate) fn read(&self) -> CpuReading {
        CpuReading {
            process: cpu_time("self"),
            broker: self.broker.as_deref().and_then(cpu_time),
        }
    }
}

impl CpuReading {
    /// The CPU time each of `ops` operations cost between `self` and `later`; `None` for a
    /// process that spent too little to measure (under [`LEAST_MEASURED`]).
    pub(crate) fn per_op(&self, later: &CpuReading, ops: u64) -> CpuPerOp {
        let per_op = |before: Option<Duration>, after: Option<Duration>| {
            let spent = after?.checked_sub(before?)?;
            (ops > 0 && spent >= LEAST_MEASURED).then(|| spent.as_secs_f64() * 1e6 / ops as f64)
        };
        CpuPerOp {
            process_us: per_op(self.process, later.process),
            broker_us: per_op(self.broker, later.broker),
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn this_process_cpu_time_grows_with_work() {
        let before = cpu_time("self").expect("/proc/self/stat is readable");
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(1));
        }
        let after = cpu_time("self").expect("/proc/self/stat is readable");
        let spent = after - before;
        assert!(
            spent >= Duration::from_millis(150) && spent <= Duration::from_secs(2),
            "300 ms of spinning counted as {spent:?}"
        );
    }

    #[test]
    fn per_op_divides_the_difference_and_refuses_zero_ops() {
        let reading = |p: u64, b: Option<u64>| CpuReading {
            process: Some(Duration::from_millis(p)),
            broker: b.map(Duration::from_millis),
        };
        let cost = reading(100, Some(50)).per_op(&reading(300, Some(150)), 1_000);
        assert_eq!(cost.process_us, Some(200.0));
        assert_eq!(cost.broker_us, Some(100.0));
        let no_broker = reading(100, None).per_op(&reading(300, None), 1_000);
        assert_eq!(no_broker.broker_us, None);
        assert_eq!(
            reading(0, None).per_op(&reading(500, None), 0).process_us,
            None
        );
        let too_little = reading(0, Some(0)).per_op(&reading(90, Some(200)), 10);
        assert_eq!(too_little.process_us, None);
        assert_eq!(too_little.broker_us, Some(20_000.0));
    }
}
