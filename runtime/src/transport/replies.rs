//! The reply waiter: one reply queue per transport, shared by every call of every client,
//! demultiplexing replies by `_msg_id` (oslo's `ReplyWaiter`).

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use tokio::sync::Notify;

use crate::driver::{Driver, ReplyConsumer, ReplyHandler};
use crate::error::{RpcError, TransportError};
use crate::sync::lock;
use crate::wire::{self, Id, IncomingReply, WireError};

/// What a waiting call receives.
#[derive(Debug)]
pub(crate) enum ReplyEvent {
    Reply(IncomingReply),
    /// A reply to this call that cannot be read (malformed, or larger than the limit).
    Unreadable(WireError),
    /// The reply queue's subscription ended (the transport closed, as a rule); no reply can
    /// arrive any more.
    Closed(TransportError),
}

/// A transport's reply queue, and the calls waiting on it.
#[derive(Debug)]
pub(crate) struct ReplyWaiter {
    mailbox: Arc<Mailbox>,
    /// Dropped with the waiter, which cancels the queue's consumer.
    consumer: ReplyConsumer,
}

/// The calls waiting for replies: the driver hands it the reply queue's messages.
#[derive(Debug, Default)]
struct Mailbox {
    state: Mutex<State>,
    /// The largest reply body read ([`TransportConfig::max_message_size`]).
    ///
    /// [`TransportConfig::max_message_size`]: crate::TransportConfig::max_message_size
    limit: usize,
    /// Set once the consumer has ended (`state.closed` says why).
    closed: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    calls: HashMap<Id, Arc<Inbox>>,
    /// Why the subscription ended, once it has.
    closed: Option<TransportError>,
}

/// What the waiter hands one call. Far smaller than a channel (which allocates a block of
/// slots per call): one event (the usual reply) needs no allocation; only heartbeats queue.
#[derive(Debug, Default)]
struct Inbox {
    events: Mutex<Events>,
    notify: Notify,
}

/// Events in arrival order: `first`, then `rest`.
#[derive(Debug, Default)]
struct Events {
    first: Option<ReplyEvent>,
    rest: VecDeque<ReplyEvent>,
}

impl Inbox {
    fn push(&self, event: ReplyEvent) {
        let mut events = lock(&self.events);
        match events.first.is_none() && events.rest.is_empty() {
            true => events.first = Some(event),
            false => events.rest.push_back(event),
        }
        drop(events);
        self.notify.notify_one();
    }

    fn pop(&self) -> Option<ReplyEvent> {
        let mut events = lock(&self.events);
        events.first.take().or_else(|| events.rest.pop_front())
    }
}

/// A registered call; dropping it unregisters the `_msg_id`.
#[derive(Debug)]
pub(crate) struct PendingCall {
    mailbox: Arc<Mailbox>,
    msg_id: Id,
    inbox: Arc<Inbox>,
}

impl PendingCall {
    /// The call's `_msg_id`.
    pub(crate) fn msg_id(&self) -> Id {
        self.msg_id
    }

    /// The next event for this call. (`notify_one` keeps a permit when nobody waits, so an
    /// event pushed between the check and the wait is not missed.)
    pub(crate) async fn next(&self) -> ReplyEvent {
        loop {
            if let Some(event) = self.inbox.pop() {
                return event;
            }
            self.inbox.notify.notified().await;
        }
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        lock(&self.mailbox.state).calls.remove(&self.msg_id);
    }
}

impl ReplyWaiter {
    /// Declares a reply queue and starts consuming it.
    pub(crate) async fn start(driver: &dyn Driver, limit: usize) -> Result<ReplyWaiter, RpcError> {
        let mailbox = Arc::new(Mailbox {
            limit,
            ..Mailbox::default()
        });
        let handler: Weak<dyn ReplyHandler> = Arc::downgrade(&mailbox) as Weak<Mailbox>;
        let consumer = driver.consume_replies(handler).await?;
        Ok(ReplyWaiter { mailbox, consumer })
    }

    /// The reply queue name, sent as `_reply_q`.
    pub(crate) fn queue(&self) -> &str {
        &self.consumer.name
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.mailbox.closed.load(Ordering::Acquire)
    }

    /// Registers `msg_id` before its request is published, so no reply can be missed.
    pub(crate) fn register(&self, msg_id: Id) -> Result<PendingCall, RpcError> {
        let inbox = Arc::new(Inbox::default());
        let mut state = lock(&self.mailbox.state);
        if let Some(error) = &state.closed {
            return Err(error.clone().into());
        }
        state.calls.insert(msg_id, Arc::clone(&inbox));
        drop(state);
        Ok(PendingCall {
            mailbox: Arc::clone(&self.mailbox),
            msg_id,
            inbox,
        })
    }

    /// Ends every waiting call and refuses new ones.
    pub(crate) fn close(&self, error: TransportError) {
        self.mailbox.close(error);
    }
}

impl Mailbox {
    fn deliver(&self, reply: IncomingReply) {
        let state = lock(&self.state);
        // Ids this process did not make belong to no call of it.
        match Id::parse(&reply.msg_id).and_then(|id| state.calls.get(&id)) {
            Some(call) => call.push(ReplyEvent::Reply(reply)),
            None => {
                tracing::warn!(msg_id = %reply.msg_id, "no calls waiting for reply; dropping it")
            }
        }
    }

    /// Fails the call a reply that cannot be read names, if its `_msg_id` can be found: the
    /// caller learns at once rather than at its timeout.
    fn fail(&self, body: &[u8], error: WireError) {
        let msg_id = wire::salvage_msg_id(body, body.len() <= self.limit);
        let state = lock(&self.state);
        let call = msg_id
            .as_deref()
            .and_then(Id::parse)
            .and_then(|id| state.calls.get(&id));
        match call {
            Some(call) => {
                tracing::warn!(msg_id, error = %error, "failing a call: its reply cannot be read");
                call.push(ReplyEvent::Unreadable(error));
            }
            None => tracing::warn!(msg_id, error = %error, "dropping a reply that cannot be read"),
        }
    }

    fn close(&self, error: TransportError) {
        let mut state = lock(&self.state);
        for (_, call) in state.calls.drain() {
            call.push(ReplyEvent::Closed(error.clone()));
        }
        state.closed = Some(error);
        self.closed.store(true, Ordering::Release);
    }
}

impl ReplyHandler for Mailbox {
    fn on_message(&self, body: Bytes) {
        let read = match body.len() > self.limit {
            true => Err(WireError::TooLarge {
                size: body.len(),
                limit: self.limit,
            }),
            false => IncomingReply::decode(&body),
        };
        match read {
            Ok(reply) => self.deliver(reply),
            Err(e) => self.fail(&body, e),
        }
    }

    fn on_end(&self, error: TransportError) {
        self.close(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::memory::MemoryDriver;

    #[tokio::test]
    async fn calls_get_the_error_their_reply_queue_ended_with() {
        let driver = MemoryDriver::private();
        let waiter = ReplyWaiter::start(&driver, 1 << 20)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let pending = waiter
            .register(wire::new_id())
            .unwrap_or_else(|e| panic!("{e}"));
        waiter.mailbox.on_end(TransportError::SubscriptionEnded {
            reason: "gone".to_owned(),
        });
        let event = pending.next().await;
        assert!(
            matches!(
                event,
                ReplyEvent::Closed(TransportError::SubscriptionEnded { .. })
            ),
            "{event:?}"
        );
        // A later call learns the same, not that the transport was closed.
        let later = waiter.register(wire::new_id());
        assert!(
            matches!(
                later,
                Err(RpcError::Transport(
                    TransportError::SubscriptionEnded { .. }
                ))
            ),
            "{later:?}"
        );
    }

    #[tokio::test]
    async fn closing_the_waiter_ends_calls_with_closed() {
        let driver = MemoryDriver::private();
        let waiter = ReplyWaiter::start(&driver, 1 << 20)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        let pending = waiter
            .register(wire::new_id())
            .unwrap_or_else(|e| panic!("{e}"));
        waiter.close(TransportError::closed());
        let event = pending.next().await;
        assert!(
            matches!(&event, ReplyEvent::Closed(e) if e.is_closed()),
            "{event:?}"
        );
        assert!(waiter.is_closed());
    }
}
