//! The reply waiter: one reply queue per transport, shared by every call of every client,
//! demultiplexing replies by `_msg_id` (oslo's `ReplyWaiter`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::{mpsc, oneshot};

use crate::error::{RpcError, TransportError};
use crate::transport::{Driver, Subscription, lock};
use crate::wire::{self, IncomingReply};

/// What a waiting call receives.
#[derive(Debug)]
pub(crate) enum ReplyEvent {
    Reply(IncomingReply),
    /// The reply queue's subscription ended; no reply can arrive any more.
    Closed(String),
}

#[derive(Debug)]
pub(crate) struct ReplyWaiter {
    queue: String,
    state: Mutex<State>,
    /// Dropped with the waiter, which ends the consuming task.
    _shutdown: oneshot::Sender<()>,
}

#[derive(Debug, Default)]
struct State {
    calls: HashMap<String, mpsc::UnboundedSender<ReplyEvent>>,
    /// Why the subscription ended, once it has.
    closed: Option<String>,
}

/// A registered call; dropping it unregisters the `_msg_id`.
#[derive(Debug)]
pub(crate) struct PendingCall {
    waiter: Arc<ReplyWaiter>,
    msg_id: String,
    pub(crate) events: mpsc::UnboundedReceiver<ReplyEvent>,
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        lock(&self.waiter.state).calls.remove(&self.msg_id);
    }
}

impl ReplyWaiter {
    /// Declares a reply queue and starts consuming it.
    pub(crate) async fn start(driver: &dyn Driver) -> Result<Arc<ReplyWaiter>, RpcError> {
        let queue = driver.listen_replies().await?;
        let (shutdown, stopped) = oneshot::channel();
        let waiter = Arc::new(ReplyWaiter {
            queue: queue.name,
            state: Mutex::default(),
            _shutdown: shutdown,
        });
        tokio::spawn(consume(
            Arc::downgrade(&waiter),
            queue.subscription,
            stopped,
        ));
        Ok(waiter)
    }

    /// The reply queue name, sent as `_reply_q`.
    pub(crate) fn queue(&self) -> &str {
        &self.queue
    }

    pub(crate) fn is_closed(&self) -> bool {
        lock(&self.state).closed.is_some()
    }

    /// Registers `msg_id` before its request is published, so no reply can be missed.
    pub(crate) fn register(self: &Arc<Self>, msg_id: &str) -> Result<PendingCall, RpcError> {
        let (tx, events) = mpsc::unbounded_channel();
        let mut state = lock(&self.state);
        if let Some(reason) = &state.closed {
            return Err(TransportError::Closed {
                reason: reason.clone(),
            }
            .into());
        }
        state.calls.insert(msg_id.to_owned(), tx);
        drop(state);
        Ok(PendingCall {
            waiter: Arc::clone(self),
            msg_id: msg_id.to_owned(),
            events,
        })
    }

    fn deliver(&self, reply: IncomingReply) {
        let state = lock(&self.state);
        match state.calls.get(&reply.msg_id) {
            // A send error means the caller just gave up; nothing to do.
            Some(call) => drop(call.send(ReplyEvent::Reply(reply))),
            None => {
                tracing::warn!(msg_id = %reply.msg_id, "no calls waiting for reply; dropping it")
            }
        }
    }

    pub(crate) fn close(&self, reason: String) {
        let mut state = lock(&self.state);
        for (_, call) in state.calls.drain() {
            drop(call.send(ReplyEvent::Closed(reason.clone())));
        }
        state.closed = Some(reason);
    }
}

async fn consume(
    waiter: Weak<ReplyWaiter>,
    mut subscription: Box<dyn Subscription>,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        let delivery = tokio::select! {
            _ = &mut stopped => return,
            delivery = subscription.next() => delivery,
        };
        let Some(waiter) = waiter.upgrade() else {
            return;
        };
        let delivery = match delivery {
            Ok(delivery) => delivery,
            Err(e) => {
                tracing::error!(queue = %waiter.queue, error = %e, "reply queue consumer ended");
                waiter.close(e.to_string());
                return;
            }
        };
        if let Err(e) = delivery.acker.ack().await {
            tracing::warn!(error = %e, "failed to acknowledge a reply");
        }
        match wire::open(&delivery.body).and_then(IncomingReply::from_message) {
            Ok(reply) => waiter.deliver(reply),
            Err(e) => tracing::warn!(error = %e, "dropping malformed reply"),
        }
    }
}
