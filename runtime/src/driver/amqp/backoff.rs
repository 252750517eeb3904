//! oslo's reconnection schedule: which host is tried next, and how long to wait before it
//! (kombu's `retry_over_time` with oslo's `ensure()` errback; spec addenda §1.1).

use std::time::Duration;

use crate::config::{FailoverStrategy, TransportConfig};

/// The hosts of a URL in the order one connection tries them, and the pauses between tries.
#[derive(Debug, Clone)]
pub(super) struct Schedule {
    /// Indexes into the URL's hosts, shuffled once (oslo shuffles each connection's hosts, so
    /// that a fleet's connections spread over a cluster).
    order: Vec<usize>,
    strategy: FailoverStrategy,
    interval_start: Duration,
    interval_step: Duration,
    interval_max: Duration,
    reconnect_delay: Duration,
    splay: Duration,
}

impl Schedule {
    pub(super) fn new(hosts: usize, config: &TransportConfig) -> Schedule {
        let mut order: Vec<usize> = (0..hosts).collect();
        shuffle(&mut order);
        Schedule {
            order,
            strategy: config.kombu_failover_strategy,
            interval_start: config.rabbit_retry_interval,
            interval_step: config.rabbit_retry_backoff,
            interval_max: config.rabbit_interval_max,
            reconnect_delay: config.kombu_reconnect_delay,
            splay: config.kombu_reconnect_splay,
        }
    }

    /// The hosts in the order the first connection tries them (one round).
    pub(super) fn first_round(&self) -> &[usize] {
        &self.order
    }

    /// The host to try after `current` (an index into the URL's hosts) failed: the next one
    /// in the shuffled order, or with `shuffle` any one at random (kombu's `shufflecycle`,
    /// which may pick the same host again).
    pub(super) fn next_host(&self, current: usize) -> usize {
        match self.strategy {
            FailoverStrategy::RoundRobin => {
                let position = self.order.iter().position(|&h| h == current).unwrap_or(0);
                self.order[(position + 1) % self.order.len()]
            }
            FailoverStrategy::Shuffle => self.order[random_below(self.order.len())],
        }
    }

    /// The pause before reconnection attempt `attempt` (0 is the first after a loss, made at
    /// once): `kombu_reconnect_delay` (+ splay) after each failed attempt, and after each full
    /// round over the hosts the round interval, 1, 3, 5 ... s up to `rabbit_interval_max +
    /// rabbit_retry_interval` with oslo's defaults.
    pub(super) fn pause_before(&self, attempt: u32) -> Duration {
        if attempt == 0 {
            return Duration::ZERO;
        }
        let mut pause = self.reconnect_delay;
        if !self.splay.is_zero() {
            pause += self.splay.mul_f64(random_fraction());
        }
        let hosts = u32::try_from(self.order.len()).unwrap_or(u32::MAX).max(1);
        if attempt.is_multiple_of(hosts) {
            pause += self.round_interval(attempt / hosts);
        }
        pause
    }

    /// The interval slept after round `round` (1-based): kombu's `fxrange(start, max + start,
    /// step, repeatlast=True)`.
    fn round_interval(&self, round: u32) -> Duration {
        let grown = self
            .interval_step
            .saturating_mul(round.saturating_sub(1))
            .saturating_add(self.interval_start);
        grown.min(self.interval_max.saturating_add(self.interval_start))
    }
}

/// A random number below `n` (`n` > 0), from a v4 UUID: no RNG crate for three call sites.
fn random_below(n: usize) -> usize {
    (uuid::Uuid::new_v4().as_u128() % n.max(1) as u128) as usize
}

/// A random number in `[0, 1)`.
fn random_fraction() -> f64 {
    (uuid::Uuid::new_v4().as_u128() >> 75) as f64 / (1u64 << 53) as f64
}

/// Fisher–Yates.
fn shuffle(items: &mut [usize]) {
    for i in (1..items.len()).rev() {
        items.swap(i, random_below(i + 1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(hosts: usize, strategy: FailoverStrategy) -> Schedule {
        let config = TransportConfig {
            kombu_failover_strategy: strategy,
            ..TransportConfig::default()
        };
        Schedule::new(hosts, &config)
    }

    #[test]
    fn one_host_waits_the_reconnect_delay_plus_oslos_growing_interval() {
        let s = schedule(1, FailoverStrategy::RoundRobin);
        let pauses: Vec<u64> = (0..20).map(|a| s.pause_before(a).as_secs()).collect();
        // First at once, then 1 + 1, 1 + 3, ... 1 + 29, 1 + 31, 1 + 31.
        let mut expected = vec![0];
        expected.extend((0..15).map(|r| 1 + 1 + 2 * r));
        expected.extend([32, 32, 32, 32]);
        assert_eq!(pauses, expected);
    }

    #[test]
    fn several_hosts_pause_between_rounds_only() {
        let s = schedule(3, FailoverStrategy::RoundRobin);
        let pauses: Vec<u64> = (0..7).map(|a| s.pause_before(a).as_secs()).collect();
        assert_eq!(pauses, [0, 1, 1, 2, 1, 1, 4]);
    }

    #[test]
    fn round_robin_cycles_through_a_shuffled_order() {
        let s = schedule(4, FailoverStrategy::RoundRobin);
        let mut sorted = s.first_round().to_vec();
        sorted.sort_unstable();
        assert_eq!(sorted, [0, 1, 2, 3]);
        let mut host = s.first_round()[0];
        let mut visited = vec![host];
        for _ in 0..7 {
            host = s.next_host(host);
            visited.push(host);
        }
        let order = s.first_round();
        assert_eq!(visited, [order, order].concat());
    }

    #[test]
    fn shuffle_picks_hosts_of_the_url_at_random() {
        let s = schedule(3, FailoverStrategy::Shuffle);
        let picks: Vec<usize> = (0..300).map(|_| s.next_host(0)).collect();
        for host in 0..3 {
            assert!(
                picks.contains(&host),
                "host {host} never picked in 300 tries"
            );
        }
        assert!(picks.iter().all(|&h| h < 3));
    }

    #[test]
    fn the_splay_adds_at_most_its_value() {
        let config = TransportConfig {
            kombu_reconnect_splay: Duration::from_millis(500),
            ..TransportConfig::default()
        };
        let s = Schedule::new(2, &config);
        for _ in 0..100 {
            let pause = s.pause_before(1);
            assert!(pause >= Duration::from_secs(1) && pause < Duration::from_millis(1500));
        }
    }
}
