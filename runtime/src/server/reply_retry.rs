//! Final replies whose reply queue is missing, kept and tried again beside the handlers.
//!
//! oslo tries such a reply again every 0.25 s for `kombu_missing_consumer_retry_timeout` (the
//! caller may be reconnecting, about to declare its queue again), but in the executor thread
//! that ran the request: a few calls naming a queue that does not exist held every worker for a
//! minute. Here the handler hands the reply over and its slot is free at once; one task per
//! server then asks the driver every 0.25 s whether each missing queue is back, and publishes
//! the queue's replies, oldest first, only once it is (a reply published into a missing queue
//! comes back whole, and lapin logs it at WARN with its body). Kept replies are bounded in
//! number and bytes: beyond either bound the oldest one is dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use crate::driver::{Destination, PublishOptions};
use crate::error::TransportError;
use crate::sync::lock;
use crate::transport::Transport;

/// How often a reply to a missing reply queue is tried again (oslo: 0.25 s).
const RETRY_INTERVAL: Duration = Duration::from_millis(250);

/// The longest pause between two checks of one missing queue, and at most an eighth of the
/// retry time. Each check that finds the queue still missing doubles the pause from
/// [`RETRY_INTERVAL`] up to this: a caller that is reconnecting (the usual reason) has its
/// queue back within a second or two and gets its reply about as soon as oslo would give it,
/// while a queue that stays missing for oslo's default 60 s costs 20 checks rather than 240
/// (each one an ERROR line in lapin's log and in the broker's).
const LONGEST_CHECK_INTERVAL: Duration = Duration::from_secs(4);

/// How many obsolete reply queues a server remembers (oslo: 200).
const OBSOLETE_REPLY_QUEUES: usize = 200;

/// A reply goes to its queue through the default exchange, and fails if no queue takes it.
const MANDATORY: PublishOptions = PublishOptions {
    expiration: None,
    mandatory: true,
};

/// The replies a server keeps for missing reply queues, and the queues it has given up.
pub(super) struct ReplyRetries {
    transport: Transport,
    /// oslo's `kombu_missing_consumer_retry_timeout`: how long a reply is kept, and then how
    /// long its queue is remembered as obsolete.
    retry_for: Duration,
    limits: Limits,
    state: Mutex<State>,
}

/// How much a server keeps for missing reply queues.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Replies kept, over every queue.
    pub(super) replies: usize,
    /// Bytes of kept replies' bodies, over every queue.
    pub(super) bytes: usize,
}

#[derive(Default)]
struct State {
    /// The queues found missing, each with its kept replies, oldest first.
    missing: HashMap<String, VecDeque<Kept>>,
    replies: usize,
    bytes: usize,
    /// Numbers the kept replies in the order they came, to find the oldest of all.
    next_seq: u64,
    /// Queues missing for the whole retry time, and since when; oldest first.
    obsolete: VecDeque<(String, Instant)>,
    /// Whether the retry task runs.
    retrying: bool,
    /// For each missing queue: when to check it next, and the pause after that.
    checks: HashMap<String, (Instant, Duration)>,
}

struct Kept {
    seq: u64,
    msg_id: String,
    body: Bytes,
    since: Instant,
}

/// What a server knows of a reply queue before replying to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Known {
    /// Missing for the whole retry time lately: replies to it are dropped at once.
    Obsolete,
    /// Missing now: a final reply joins the ones kept for it.
    Missing,
    /// Nothing: publish.
    Nothing,
}

impl ReplyRetries {
    pub(super) fn new(transport: Transport, limits: Limits) -> ReplyRetries {
        ReplyRetries {
            retry_for: transport.config().kombu_missing_consumer_retry_timeout,
            transport,
            limits,
            state: Mutex::new(State::default()),
        }
    }

    /// What is known of `reply_q`.
    pub(super) fn known(&self, reply_q: &str) -> Known {
        let mut state = lock(&self.state);
        // The usual case, without hashing the name.
        if state.missing.is_empty() && state.obsolete.is_empty() {
            return Known::Nothing;
        }
        let retry_for = self.retry_for;
        while let Some((_, since)) = state.obsolete.front() {
            if since.elapsed() < retry_for {
                break;
            }
            state.obsolete.pop_front();
        }
        if state.obsolete.iter().any(|(queue, _)| queue == reply_q) {
            Known::Obsolete
        } else if state.missing.contains_key(reply_q) {
            Known::Missing
        } else {
            Known::Nothing
        }
    }

    /// Keeps final reply `body` to the missing queue `reply_q`, to be sent when the queue is
    /// back; drops the oldest kept replies beyond the limits.
    pub(super) fn keep(self: &Arc<Self>, reply_q: &str, msg_id: &str, body: Bytes) {
        let size = body.len();
        if size > self.limits.bytes || self.limits.replies == 0 {
            tracing::warn!(
                reply_q,
                msg_id,
                bytes = size,
                "reply queue missing; reply dropped (over the limit of replies kept for retrying)"
            );
            return;
        }
        let mut dropped = Vec::new();
        let start = {
            let mut state = lock(&self.state);
            let seq = state.next_seq;
            state.next_seq += 1;
            let kept = Kept {
                seq,
                msg_id: msg_id.to_owned(),
                body,
                since: Instant::now(),
            };
            match state.missing.get_mut(reply_q) {
                Some(replies) => replies.push_back(kept),
                None => {
                    state
                        .missing
                        .insert(reply_q.to_owned(), VecDeque::from([kept]));
                }
            }
            state.replies += 1;
            state.bytes += size;
            while state.replies > self.limits.replies || state.bytes > self.limits.bytes {
                match state.drop_oldest() {
                    Some(oldest) => dropped.push(oldest),
                    None => break,
                }
            }
            !std::mem::replace(&mut state.retrying, true)
        };
        for (queue, kept) in dropped {
            tracing::warn!(
                reply_q = queue,
                msg_id = kept.msg_id,
                "reply queue missing; oldest kept reply dropped (over the limit of replies kept for retrying)"
            );
        }
        if start {
            tokio::spawn(Arc::clone(self).retry());
        }
    }

    /// Every 0.25 s: gives up the queues missing for the retry time, then tries the others;
    /// ends when no reply is kept.
    async fn retry(self: Arc<Self>) {
        loop {
            tokio::time::sleep(RETRY_INTERVAL).await;
            let (given_up, queues) = {
                let mut state = lock(&self.state);
                let given_up = state.give_up(self.retry_for);
                if state.missing.is_empty() {
                    state.retrying = false;
                }
                let State {
                    missing, checks, ..
                } = &mut *state;
                checks.retain(|queue, _| missing.contains_key(queue));
                let now = Instant::now();
                let queues: Vec<String> = missing
                    .keys()
                    .filter(|queue| checks.get(*queue).is_none_or(|(next, _)| *next <= now))
                    .cloned()
                    .collect();
                if missing.is_empty() {
                    return self.report(given_up);
                }
                (given_up, queues)
            };
            self.report(given_up);
            for queue in queues {
                self.retry_queue(&queue).await;
            }
        }
    }

    /// Logs the replies given up, one line each, never their bodies.
    fn report(&self, given_up: Vec<(String, VecDeque<Kept>)>) {
        for (queue, replies) in given_up {
            for kept in replies {
                tracing::warn!(
                    reply_q = queue,
                    msg_id = kept.msg_id,
                    "reply queue missing for {:?}; reply dropped",
                    self.retry_for
                );
            }
        }
    }

    /// Puts the next check of the still missing `queue` off, twice as long as the last time.
    fn check_later(&self, queue: &str) {
        let mut state = lock(&self.state);
        let (next, pause) = state
            .checks
            .entry(queue.to_owned())
            .or_insert((Instant::now(), RETRY_INTERVAL));
        *next = Instant::now() + *pause;
        let longest = LONGEST_CHECK_INTERVAL.min(self.retry_for / 8);
        *pause = (*pause * 2).min(longest).max(RETRY_INTERVAL);
    }

    /// Sends the replies kept for `queue`, oldest first, if the queue is back.
    async fn retry_queue(&self, queue: &str) {
        match self.transport.driver().reply_queue_exists(queue).await {
            Ok(false) => return self.check_later(queue),
            Ok(true) => {}
            // Publishing tells (a lost connection fails it at once, without sending).
            Err(e) => {
                tracing::debug!(reply_q = queue, error = %e, "could not ask whether a reply queue exists")
            }
        }
        loop {
            let next = {
                let state = lock(&self.state);
                let front = state.missing.get(queue).and_then(VecDeque::front);
                front.map(|kept| (kept.seq, kept.body.clone(), kept.since))
            };
            let Some((seq, body, since)) = next else {
                return;
            };
            // Whatever is left of its retry time, but time enough for one publish.
            let within = (since + self.retry_for)
                .saturating_duration_since(Instant::now())
                .max(Duration::from_secs(1));
            let to = Destination::Reply { queue };
            let sent = self
                .transport
                .publish(to, &body, MANDATORY, Some(0), within)
                .await;
            match sent {
                Ok(()) => {
                    if let Some(kept) = self.remove(queue, seq) {
                        tracing::debug!(
                            reply_q = queue,
                            msg_id = kept.msg_id,
                            "kept reply delivered"
                        );
                    }
                }
                Err(TransportError::NoRoute { .. }) => return,
                Err(e) if e.is_retryable() => {
                    tracing::debug!(reply_q = queue, error = %e, "kept reply not sent; trying again");
                    return;
                }
                Err(e) => {
                    if let Some(kept) = self.remove(queue, seq) {
                        tracing::warn!(reply_q = queue, msg_id = kept.msg_id, error = %e, "could not deliver reply");
                    }
                }
            }
        }
    }

    /// Takes reply `seq` of `queue` out, if it is still kept (not dropped meanwhile).
    fn remove(&self, queue: &str, seq: u64) -> Option<Kept> {
        let mut state = lock(&self.state);
        let replies = state.missing.get_mut(queue)?;
        let at = replies.iter().position(|kept| kept.seq == seq)?;
        let kept = replies.remove(at)?;
        if replies.is_empty() {
            state.missing.remove(queue);
        }
        state.replies -= 1;
        state.bytes -= kept.body.len();
        Some(kept)
    }

    #[cfg(test)]
    fn kept(&self) -> (usize, usize) {
        let state = lock(&self.state);
        (state.replies, state.bytes)
    }
}

impl State {
    /// Takes out the oldest kept reply of all, with its queue.
    fn drop_oldest(&mut self) -> Option<(String, Kept)> {
        let queue = self
            .missing
            .iter()
            .filter_map(|(queue, replies)| Some((replies.front()?.seq, queue)))
            .min()
            .map(|(_, queue)| queue.clone())?;
        let replies = self.missing.get_mut(&queue)?;
        let kept = replies.pop_front()?;
        if replies.is_empty() {
            self.missing.remove(&queue);
        }
        self.replies -= 1;
        self.bytes -= kept.body.len();
        Some((queue, kept))
    }

    /// Takes out every queue whose oldest reply has been kept for `retry_for`, with its
    /// replies, and remembers it as obsolete for as long (oslo drops the other replies to it
    /// at their next attempt).
    fn give_up(&mut self, retry_for: Duration) -> Vec<(String, VecDeque<Kept>)> {
        let expired: Vec<String> = self
            .missing
            .iter()
            .filter(|(_, replies)| {
                replies
                    .front()
                    .is_some_and(|kept| kept.since.elapsed() >= retry_for)
            })
            .map(|(queue, _)| queue.clone())
            .collect();
        let mut given_up = Vec::with_capacity(expired.len());
        for queue in expired {
            if let Some(replies) = self.missing.remove(&queue) {
                self.replies -= replies.len();
                self.bytes -= replies.iter().map(|kept| kept.body.len()).sum::<usize>();
                if self.obsolete.len() == OBSOLETE_REPLY_QUEUES {
                    self.obsolete.pop_front();
                }
                self.obsolete.push_back((queue.clone(), Instant::now()));
                given_up.push((queue, replies));
            }
        }
        given_up
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::memory::MemoryDriver;
    use crate::driver::{ConnectionState, Driver, ReplyQueue, Subscription};
    use crate::target::Target;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// `memory://`, counting the checks of whether a reply queue exists.
    #[derive(Debug)]
    struct Counting {
        inner: MemoryDriver,
        checks: Arc<AtomicUsize>,
    }

    #[async_trait::async_trait]
    impl Driver for Counting {
        async fn publish(
            &self,
            to: Destination<'_>,
            body: Bytes,
            options: PublishOptions,
        ) -> Result<(), TransportError> {
            self.inner.publish(to, body, options).await
        }
        async fn listen_rpc(
            &self,
            target: &Target,
            prefetch: u16,
        ) -> Result<Box<dyn Subscription>, TransportError> {
            self.inner.listen_rpc(target, prefetch).await
        }
        async fn listen_replies(&self) -> Result<ReplyQueue, TransportError> {
            self.inner.listen_replies().await
        }
        async fn listen_notifications(
            &self,
            bindings: &[crate::driver::NotificationBinding<'_>],
            pool: Option<&str>,
            prefetch: u16,
        ) -> Result<Box<dyn Subscription>, TransportError> {
            self.inner
                .listen_notifications(bindings, pool, prefetch)
                .await
        }
        async fn reply_queue_exists(&self, queue: &str) -> Result<bool, TransportError> {
            self.checks.fetch_add(1, Ordering::SeqCst);
            self.inner.reply_queue_exists(queue).await
        }
        fn connection_state(&self) -> tokio::sync::watch::Receiver<ConnectionState> {
            self.inner.connection_state()
        }
        async fn close(&self) {
            self.inner.close().await
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_queue_that_stays_missing_is_checked_less_and_less_often() {
        let checks = Arc::new(AtomicUsize::new(0));
        let driver = Counting {
            inner: MemoryDriver::private(),
            checks: Arc::clone(&checks),
        };
        let transport = Transport::from_driver(Arc::new(driver));
        let retry_for = transport.config().kombu_missing_consumer_retry_timeout;
        let retries = retries(&transport, 10, 1000);
        retries.keep("reply_gone", "m1", Bytes::from_static(b"{}"));
        // Every 0.25 s at first, as oslo retries...
        tokio::time::sleep(Duration::from_millis(800)).await;
        let early = checks.load(Ordering::SeqCst);
        assert!((2..=3).contains(&early), "{early} checks in 0.8 s");
        // ...then doubling to 4 s: about 20 checks in oslo's 60 s rather than 240.
        tokio::time::sleep(retry_for).await;
        let all = checks.load(Ordering::SeqCst);
        assert!((15..=25).contains(&all), "{all} checks in {retry_for:?}");
        assert_eq!(retries.known("reply_gone"), Known::Obsolete);
    }

    fn retries(transport: &Transport, replies: usize, bytes: usize) -> Arc<ReplyRetries> {
        Arc::new(ReplyRetries::new(
            transport.clone(),
            Limits { replies, bytes },
        ))
    }

    /// The `_msg_id`s kept, oldest first.
    fn kept_ids(retries: &ReplyRetries) -> Vec<String> {
        let state = lock(&retries.state);
        let mut kept: Vec<&Kept> = state.missing.values().flatten().collect();
        kept.sort_by_key(|kept| kept.seq);
        kept.iter().map(|kept| kept.msg_id.clone()).collect()
    }

    #[tokio::test(start_paused = true)]
    async fn beyond_either_limit_the_oldest_kept_replies_are_dropped() {
        let transport = Transport::memory();
        let retries = retries(&transport, 3, 10);
        retries.keep("reply_a", "m1", Bytes::from_static(b"aaa"));
        retries.keep("reply_b", "m2", Bytes::from_static(b"bbb"));
        retries.keep("reply_a", "m3", Bytes::from_static(b"ccc"));
        assert_eq!(retries.kept(), (3, 9));
        // A fourth reply: the oldest, of another queue, goes.
        retries.keep("reply_b", "m4", Bytes::from_static(b"d"));
        assert_eq!(kept_ids(&retries), ["m2", "m3", "m4"]);
        assert_eq!(retries.kept(), (3, 7));
        // 13 bytes: the oldest goes, which is enough.
        retries.keep("reply_c", "m5", Bytes::from_static(b"eeeeee"));
        assert_eq!(kept_ids(&retries), ["m3", "m4", "m5"]);
        assert_eq!(retries.kept(), (3, 10));
        // Larger than the whole budget: not kept, and nothing else is dropped for it.
        retries.keep("reply_c", "m6", Bytes::from_static(b"fffffffffff"));
        assert_eq!(kept_ids(&retries), ["m3", "m4", "m5"]);
        assert_eq!(retries.known("reply_b"), Known::Missing);
        assert_eq!(retries.known("reply_z"), Known::Nothing);
    }

    #[tokio::test(start_paused = true)]
    async fn a_queue_missing_for_the_retry_time_is_given_up_then_obsolete_for_as_long() {
        let transport = Transport::memory();
        let retries = retries(&transport, 10, 1000);
        let retry_for = transport.config().kombu_missing_consumer_retry_timeout;
        retries.keep("reply_gone", "m1", Bytes::from_static(b"{}"));
        tokio::time::sleep(retry_for / 2).await;
        retries.keep("reply_gone", "m2", Bytes::from_static(b"{}"));
        assert_eq!(retries.known("reply_gone"), Known::Missing);
        // The first reply's time is up: the queue is given up, with every reply to it.
        tokio::time::sleep(retry_for / 2 + RETRY_INTERVAL * 2).await;
        assert_eq!(retries.kept(), (0, 0));
        assert_eq!(retries.known("reply_gone"), Known::Obsolete);
        assert!(!lock(&retries.state).retrying, "the retry task ended");
        tokio::time::sleep(retry_for).await;
        assert_eq!(retries.known("reply_gone"), Known::Nothing);
    }

    #[tokio::test(start_paused = true)]
    async fn kept_replies_go_out_in_order_once_their_queue_is_there() {
        let transport = Transport::memory();
        let retries = retries(&transport, 10, 1000);
        let queue = transport.driver().listen_replies().await;
        let mut queue = queue.unwrap_or_else(|e| panic!("{e}"));
        // As if the queue had been missing when these were first sent.
        for n in 0..3 {
            retries.keep(
                &queue.name,
                &format!("m{n}"),
                Bytes::from(format!("reply {n}")),
            );
        }
        for n in 0..3 {
            let delivery = tokio::time::timeout(RETRY_INTERVAL * 2, queue.subscription.next());
            match delivery.await {
                Ok(Ok(delivery)) => assert_eq!(delivery.body, format!("reply {n}")),
                other => panic!("reply {n}: {other:?}"),
            }
        }
        assert_eq!(retries.kept(), (0, 0));
        assert_eq!(retries.known(&queue.name), Known::Nothing);
    }
}
