//! The in-process broker model behind `memory://`: queues, topic and fanout bindings,
//! consumers with prefetch and round-robin, expiry, and the deliveries' acknowledgements.
//! The driver (`super`) is a handle on one of these.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::driver::{Acker, Delivery, Destination, ReplyHandler};
use crate::error::TransportError;
use crate::sync::lock;

#[derive(Debug, Default)]
pub(super) struct Broker {
    pub(super) state: Mutex<State>,
}

#[derive(Debug, Default)]
pub(super) struct State {
    /// Each queue is keyed by the same `Arc` as its [`Queue::name`].
    pub(super) queues: HashMap<Arc<str>, Queue>,
    /// Topic exchanges: exchange -> routing key -> bound queues. oslo binds exact keys only.
    pub(super) bindings: HashMap<String, HashMap<String, Vec<Arc<str>>>>,
    /// Fanout exchanges: exchange -> bound queues.
    pub(super) fanouts: HashMap<String, Vec<Arc<str>>>,
    pub(super) next_consumer: u64,
    /// Reused for the names [`Destination::address_in`] builds, so routing allocates nothing
    /// once warm.
    pub(super) scratch: String,
}

#[derive(Debug)]
pub(super) struct Queue {
    /// Shared with the key in [`State::queues`] and with the ackers of its deliveries.
    pub(super) name: Arc<str>,
    pub(super) messages: VecDeque<Message>,
    pub(super) consumers: Vec<Consumer>,
    /// Index of the consumer to try first, for round-robin.
    pub(super) next: usize,
}

#[derive(Debug)]
pub(super) struct Message {
    pub(super) body: Bytes,
    pub(super) expires_at: Option<Instant>,
}

#[derive(Debug)]
pub(super) struct Consumer {
    pub(super) id: u64,
    pub(super) sink: Sink,
    pub(super) prefetch: usize,
    pub(super) unacked: usize,
}

/// Where a consumer's messages go.
pub(super) enum Sink {
    /// Deliveries for a [`Subscription`], to acknowledge.
    Channel(mpsc::UnboundedSender<Delivery>),
    /// Messages handed to a reply handler in the publisher's task, without acknowledgement.
    Push(Weak<dyn ReplyHandler>),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Sink::Channel(_) => "Channel",
            Sink::Push(_) => "Push",
        })
    }
}

impl Consumer {
    pub(super) fn has_room(&self) -> bool {
        self.prefetch == 0 || self.unacked < self.prefetch
    }
}

/// A message pushed to a [`ReplyHandler`] consumer.
pub(super) type Pushed = (Weak<dyn ReplyHandler>, Bytes);

/// What is done once the broker lock is released: deliveries that could not be handed over
/// are dropped (which requeues them, taking the lock again), and pushed messages are handed to
/// their handlers (which may take locks of their own).
#[derive(Default)]
pub(super) struct AfterUnlock {
    pub(super) orphans: Vec<Delivery>,
    /// The usual single pushed message, held inline; any others follow in `more_pushed`.
    pub(super) pushed: Option<Pushed>,
    pub(super) more_pushed: Vec<Pushed>,
}

impl AfterUnlock {
    pub(super) fn push(&mut self, pushed: Pushed) {
        match self.pushed {
            None => self.pushed = Some(pushed),
            Some(_) => self.more_pushed.push(pushed),
        }
    }

    /// Runs with the lock released.
    pub(super) fn run(self) {
        drop(self.orphans);
        for (handler, body) in self.pushed.into_iter().chain(self.more_pushed) {
            // A handler that is gone cancels its consumer as it goes; a message that reached
            // it in between has nobody left to read it.
            if let Some(handler) = handler.upgrade() {
                handler.on_message(body);
            }
        }
    }
}

impl Queue {
    pub(super) fn new(name: Arc<str>) -> Queue {
        Queue {
            name,
            messages: VecDeque::new(),
            consumers: Vec::new(),
            next: 0,
        }
    }

    /// Hands waiting messages to consumers with room, round-robin, dropping expired ones.
    pub(super) fn pump(&mut self, broker: &Arc<Broker>, after: &mut AfterUnlock) {
        // Read the clock only if a message can expire.
        let mut now = None;
        loop {
            while let Some(at) = self.messages.front().and_then(|m| m.expires_at) {
                if at > *now.get_or_insert_with(Instant::now) {
                    break;
                }
                self.messages.pop_front();
            }
            let count = self.consumers.len();
            if self.messages.is_empty() || count == 0 {
                return;
            }
            let Some(index) = (0..count)
                .map(|i| (self.next + i) % count)
                .find(|&i| self.consumers[i].has_room())
            else {
                return;
            };
            self.next = (index + 1) % count;
            let Some(message) = self.messages.pop_front() else {
                return;
            };
            let consumer = &mut self.consumers[index];
            let tx = match &consumer.sink {
                Sink::Push(handler) => {
                    after.push((Weak::clone(handler), message.body));
                    continue;
                }
                Sink::Channel(tx) => tx,
            };
            consumer.unacked += 1;
            let delivery = Delivery {
                body: message.body.clone(),
                acker: Box::new(MemoryAcker {
                    broker: Arc::downgrade(broker),
                    queue: Arc::clone(&self.name),
                    consumer: consumer.id,
                    message: Some(message),
                }),
            };
            if let Err(mpsc::error::SendError(delivery)) = tx.send(delivery) {
                // Cannot happen while the consumer is registered (its subscription removes it
                // before closing the channel); if it does, the delivery requeues itself once
                // the lock is released.
                after.orphans.push(delivery);
                return;
            }
        }
    }

    /// Appends a message and pumps.
    pub(super) fn push(
        &mut self,
        body: Bytes,
        expires_at: Option<Instant>,
        broker: &Arc<Broker>,
        after: &mut AfterUnlock,
    ) {
        self.messages.push_back(Message { body, expires_at });
        self.pump(broker, after);
    }
}

impl State {
    /// Declares `name` if it does not exist; returns its shared name.
    pub(super) fn declare_queue(&mut self, name: &str) -> Arc<str> {
        if let Some(queue) = self.queues.get(name) {
            return Arc::clone(&queue.name);
        }
        let name: Arc<str> = name.into();
        self.queues
            .insert(Arc::clone(&name), Queue::new(Arc::clone(&name)));
        name
    }

    pub(super) fn bind(&mut self, exchange: &str, key: &str, queue: &Arc<str>) {
        let bound = self
            .bindings
            .entry(exchange.to_owned())
            .or_default()
            .entry(key.to_owned())
            .or_default();
        if !bound.iter().any(|q| q == queue) {
            bound.push(Arc::clone(queue));
        }
    }

    pub(super) fn delete_queue(&mut self, name: &str) {
        self.queues.remove(name);
        for keys in self.bindings.values_mut() {
            for bound in keys.values_mut() {
                bound.retain(|q| &**q != name);
            }
            keys.retain(|_, bound| !bound.is_empty());
        }
        self.bindings.retain(|_, keys| !keys.is_empty());
        for bound in self.fanouts.values_mut() {
            bound.retain(|q| &**q != name);
        }
        // Fanout exchanges are auto-delete: gone with their last queue.
        self.fanouts.retain(|_, bound| !bound.is_empty());
    }

    /// Routes a message to the queues `to` reaches (through a topic exchange, a fanout
    /// exchange, or the default exchange) and pumps them; `false` if it reached none.
    pub(super) fn publish(
        &mut self,
        broker: &Arc<Broker>,
        to: Destination<'_>,
        control_exchange: &str,
        message: Message,
        after: &mut AfterUnlock,
    ) -> bool {
        let State {
            queues,
            bindings,
            fanouts,
            scratch,
            ..
        } = self;
        let (exchange, key) = to.address_in(control_exchange, scratch);
        if let Destination::Notification { .. } = to {
            // oslo's notifier declares the queue `<topic>.<priority>` and binds it before it
            // publishes, so that nothing is lost before a listener comes.
            let queue = match queues.get(key) {
                Some(queue) => Arc::clone(&queue.name),
                None => {
                    let name: Arc<str> = key.into();
                    queues.insert(Arc::clone(&name), Queue::new(Arc::clone(&name)));
                    name
                }
            };
            let bound = bindings
                .entry(exchange.to_owned())
                .or_default()
                .entry(key.to_owned())
                .or_default();
            if !bound.contains(&queue) {
                bound.push(queue);
            }
        }
        let bound = match to {
            Destination::Rpc { .. } | Destination::Notification { .. } => {
                bindings.get(exchange).and_then(|keys| keys.get(key))
            }
            Destination::Fanout { .. } => fanouts.get(exchange),
            Destination::Reply { .. } => {
                let Some(queue) = queues.get_mut(key) else {
                    return false;
                };
                queue.push(message.body, message.expires_at, broker, after);
                return true;
            }
        };
        let Some((last, others)) = bound.and_then(|bound| bound.split_last()) else {
            return false;
        };
        for name in others {
            if let Some(queue) = queues.get_mut(name) {
                queue.push(message.body.clone(), message.expires_at, broker, after);
            }
        }
        if let Some(queue) = queues.get_mut(last) {
            queue.push(message.body, message.expires_at, broker, after);
        }
        true
    }

    /// Settles one delivery of `consumer` on `queue`: requeues `message` if given, then pumps.
    pub(super) fn settle(
        &mut self,
        broker: &Arc<Broker>,
        queue: &str,
        consumer: u64,
        requeue: Option<Message>,
        after: &mut AfterUnlock,
    ) {
        let Some(q) = self.queues.get_mut(queue) else {
            return;
        };
        if let Some(c) = q.consumers.iter_mut().find(|c| c.id == consumer) {
            c.unacked = c.unacked.saturating_sub(1);
        }
        if let Some(message) = requeue {
            q.messages.push_front(message);
        }
        q.pump(broker, after);
    }

    pub(super) fn add_consumer(
        &mut self,
        broker: &Arc<Broker>,
        queue: &str,
        sink: Sink,
        prefetch: u16,
        after: &mut AfterUnlock,
    ) -> u64 {
        self.next_consumer += 1;
        let id = self.next_consumer;
        if let Some(q) = self.queues.get_mut(queue) {
            q.consumers.push(Consumer {
                id,
                sink,
                prefetch: usize::from(prefetch),
                unacked: 0,
            });
            q.pump(broker, after);
        }
        id
    }

    pub(super) fn remove_consumer(&mut self, queue: &str, consumer: u64) {
        if let Some(q) = self.queues.get_mut(queue) {
            q.consumers.retain(|c| c.id != consumer);
            q.next = 0;
        }
    }
}

impl Broker {
    /// Runs `f` on the state under the lock, then what it left to do unlocked.
    pub(super) fn with_state<R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut State, &Arc<Broker>, &mut AfterUnlock) -> R,
    ) -> R {
        let mut after = AfterUnlock::default();
        let result = f(&mut lock(&self.state), self, &mut after);
        after.run();
        result
    }
}

#[derive(Debug)]
pub(super) struct MemoryAcker {
    pub(super) broker: Weak<Broker>,
    /// The queue's shared name: cloning it per delivery costs no allocation.
    pub(super) queue: Arc<str>,
    pub(super) consumer: u64,
    /// `Some` until settled; an unsettled drop requeues it.
    pub(super) message: Option<Message>,
}

impl MemoryAcker {
    pub(super) fn settle(&mut self, requeue: bool) {
        let Some(message) = self.message.take() else {
            return;
        };
        let Some(broker) = self.broker.upgrade() else {
            return;
        };
        let requeue = requeue.then_some(message);
        broker.with_state(|state, broker, after| {
            state.settle(broker, &self.queue, self.consumer, requeue, after);
        });
    }
}

#[async_trait]
impl Acker for MemoryAcker {
    async fn ack(mut self: Box<Self>) -> Result<(), TransportError> {
        self.settle(false);
        Ok(())
    }

    async fn reject(mut self: Box<Self>, requeue: bool) -> Result<(), TransportError> {
        self.settle(requeue);
        Ok(())
    }
}

impl Drop for MemoryAcker {
    fn drop(&mut self) {
        self.settle(true);
    }
}
