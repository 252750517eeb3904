//! A listener that outlives its connection: when the connection is lost, or the broker cancels
//! one of its consumers (its queue deleted, or the queue's node gone), it declares its queues
//! again under the same names and consumes them again, on the next connection or, for a cancel,
//! on a new channel after `kombu_reconnect_delay` (oslo reconnects in both cases).
//!
//! Deliveries of a lost channel are never acknowledged on the new one: each acker holds the
//! channel its delivery came on, and acknowledging on a closed channel fails (the broker has
//! requeued the message already).

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{self, SelectAll, Stream, StreamExt};
use lapin::Channel;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::{FieldTable, ShortString};

use super::link::{Link, Live};
use super::topology::{Entity, Plan, delete_queue};
use super::{Failure, classify, driver_error};
use crate::driver::{Acker, Delivery, Subscription};
use crate::error::TransportError;

/// What the merged consumers of a listener yield.
// Boxing the delivery would cost an allocation per message for a variant that comes once.
#[allow(clippy::large_enum_variant)]
enum Item {
    Delivery(lapin::Result<lapin::message::Delivery>),
    /// The consumer of this queue ended: cancelled by the broker, or its channel closed.
    Ended(String),
}

type Deliveries = SelectAll<Pin<Box<dyn Stream<Item = Item> + Send>>>;

/// The consumers of one listener on one channel of one connection.
struct Active {
    live: Arc<Live>,
    channel: Arc<Channel>,
    deliveries: Deliveries,
}

/// A listener that restores its consumers (see the module documentation).
pub(super) struct RecoveringSubscription {
    link: Link,
    plan: Plan,
    /// `None` between a loss and the consumers' restoration, and once closed.
    active: Option<Active>,
    /// The connection generation that failed: consume again on a newer one.
    failed_generation: Option<u64>,
    /// Pause before consuming again (after a cancel by the broker, or an error).
    pause: Option<Duration>,
}

impl RecoveringSubscription {
    /// Declares and consumes `plan` on the transport's connection, waiting for one if it is
    /// being restored. An error from the broker (such as declaring a queue with other
    /// arguments than it has) is returned, not retried.
    pub(super) async fn start(link: Link, plan: Plan) -> Result<Self, TransportError> {
        let mut after = None;
        loop {
            let live = link.live_after(after).await?;
            match open(&plan, &live).await {
                Ok(active) => {
                    return Ok(RecoveringSubscription {
                        link,
                        plan,
                        active: Some(active),
                        failed_generation: None,
                        pause: None,
                    });
                }
                Err(Failure::Connection(reason)) => {
                    link.report_lost(&live, reason);
                    after = Some(live.generation);
                }
                Err(failure) => return Err(failure.into_error()),
            }
        }
    }

    /// Consumes again after a loss, until it works or the transport is closed.
    async fn restore(&mut self) -> Result<(), TransportError> {
        loop {
            if let Some(pause) = self.pause.take() {
                tokio::time::sleep(pause).await;
            }
            let live = self.link.live_after(self.failed_generation).await?;
            match open(&self.plan, &live).await {
                Ok(active) => {
                    tracing::info!(target: "amqp_rpc::connection", event = "consuming_again", queues = ?self.plan.queues, "consuming again");
                    self.active = Some(active);
                    self.failed_generation = None;
                    return Ok(());
                }
                Err(Failure::Connection(reason)) => {
                    self.link.report_lost(&live, reason);
                    self.failed_generation = Some(live.generation);
                }
                Err(failure) => {
                    let pause = self
                        .link
                        .config()
                        .kombu_reconnect_delay
                        .max(Duration::from_secs(1));
                    tracing::error!(target: "amqp_rpc::connection", event = "consume_failed", queues = ?self.plan.queues, error = %failure.into_error(), ?pause, "cannot consume again; retrying");
                    self.pause = Some(pause);
                }
            }
        }
    }

    /// The consumers stopped (`reason`): drop them, and decide whether to wait for a new
    /// connection or to consume again on this one.
    fn lose(&mut self, reason: String) {
        let Some(active) = self.active.take() else {
            return;
        };
        if active.live.is_usable() {
            // The broker cancelled a consumer (queue deleted, node down) or closed the channel:
            // oslo waits kombu_reconnect_delay, then declares and consumes again.
            let pause = self.link.config().kombu_reconnect_delay;
            tracing::warn!(target: "amqp_rpc::connection", event = "consumers_ended", queues = ?self.plan.queues, reason, ?pause, "listener's consumers ended; consuming again");
            self.pause = Some(pause);
            if active.channel.status().connected() {
                drop(tokio::spawn(close_channel(active.channel, None)));
            }
        } else {
            tracing::warn!(target: "amqp_rpc::connection", event = "consumer_lost", queues = ?self.plan.queues, reason, "listener lost its connection; consuming again once reconnected");
            self.link.report_lost(&active.live, reason);
            self.failed_generation = Some(active.live.generation);
        }
    }
}

/// Opens a channel on `live`, declares the plan's topology, and consumes its queues.
async fn open(plan: &Plan, live: &Arc<Live>) -> Result<Active, Failure> {
    let failure = |e: lapin::Error| classify(&e, live);
    let mut channel = ChannelGuard(Some(
        live.connection.create_channel().await.map_err(failure)?,
    ));
    let mut stuck_retried = false;
    for entity in &plan.entities {
        let Err(e) = entity.declare(channel.get()).await else {
            continue;
        };
        match (entity, classify(&e, live)) {
            // A queue whose node is down, in a cluster: oslo deletes it and declares it again
            // (bug 2068630). The failed declaration closed the channel.
            (Entity::Queue { name, .. }, Failure::Channel { code: 404, text })
                if !stuck_retried =>
            {
                tracing::warn!(
                    queue = name,
                    text,
                    "queue unavailable; deleting it and declaring it again"
                );
                stuck_retried = true;
                channel = ChannelGuard(Some(
                    live.connection.create_channel().await.map_err(failure)?,
                ));
                delete_queue(channel.get(), name).await.map_err(failure)?;
                entity.declare(channel.get()).await.map_err(failure)?;
            }
            (_, failure) => return Err(failure),
        }
    }
    let channel = channel.take();
    if plan.prefetch > 0 {
        channel
            .basic_qos(plan.prefetch, BasicQosOptions { global: false })
            .await
            .map_err(failure)?;
    }
    let mut deliveries: Deliveries = SelectAll::new();
    for queue in &plan.queues {
        let options = BasicConsumeOptions::default();
        let consumer = channel
            .basic_consume(
                queue.as_str().into(),
                ShortString::from(""),
                options,
                FieldTable::default(),
            )
            .await
            .map_err(failure)?;
        let end = Item::Ended(queue.clone());
        deliveries.push(Box::pin(
            consumer
                .map(Item::Delivery)
                .chain(stream::once(async move { end })),
        ));
    }
    Ok(Active {
        live: Arc::clone(live),
        channel: Arc::new(channel),
        deliveries,
    })
}

/// Closes its channel when dropped, unless taken: a listener being set up when its future is
/// dropped must not leave consumers that nobody reads (the broker would hold their deliveries).
struct ChannelGuard(Option<Channel>);

impl ChannelGuard {
    fn get(&self) -> &Channel {
        // Only `take` empties it, and it consumes the guard.
        self.0
            .as_ref()
            .unwrap_or_else(|| unreachable!("a guard is used after take"))
    }

    fn take(mut self) -> Channel {
        self.0
            .take()
            .unwrap_or_else(|| unreachable!("a guard is taken once"))
    }
}

impl Drop for ChannelGuard {
    fn drop(&mut self) {
        if let Some(channel) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            drop(runtime.spawn(close_channel(Arc::new(channel), None)));
        }
    }
}

impl std::fmt::Debug for RecoveringSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecoveringSubscription")
            .field("queues", &self.plan.queues)
            .field("channel", &self.active.as_ref().map(|a| a.channel.id()))
            .finish_non_exhaustive()
    }
}

/// Deletes the listener's own queue if any, then closes the channel: the broker returns the
/// deliveries not acknowledged to their queues.
async fn close_channel(channel: Arc<Channel>, owned_queue: Option<String>) {
    if let Some(queue) = owned_queue
        && let Err(e) = delete_queue(&channel, &queue).await
    {
        tracing::debug!(queue, error = %e, "could not delete the listener's queue");
    }
    if let Err(e) = channel.close(200, "listener closed".into()).await {
        tracing::debug!(error = %e, "could not close the listener's channel");
    }
}

#[async_trait]
impl Subscription for RecoveringSubscription {
    async fn next(&mut self) -> Result<Delivery, TransportError> {
        loop {
            let Some(active) = &mut self.active else {
                self.restore().await?;
                continue;
            };
            let reason = match active.deliveries.next().await {
                Some(Item::Delivery(Ok(delivery))) => {
                    return Ok(Delivery {
                        acker: Box::new(RabbitAcker {
                            channel: Arc::clone(&active.channel),
                            delivery_tag: delivery.delivery_tag,
                        }),
                        body: Bytes::from(delivery.data),
                    });
                }
                Some(Item::Delivery(Err(e))) => e.to_string(),
                Some(Item::Ended(queue)) => format!("the consumer of queue {queue} ended"),
                None => "no consumers".to_owned(),
            };
            self.lose(reason);
        }
    }

    async fn close(mut self: Box<Self>) {
        if let Some(active) = self.active.take() {
            close_channel(active.channel, self.plan.owned_queue.take()).await;
        }
    }
}

impl Drop for RecoveringSubscription {
    fn drop(&mut self) {
        let Some(active) = self.active.take() else {
            return;
        };
        let queue = self.plan.owned_queue.take();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(close_channel(active.channel, queue))),
            Err(_) => tracing::debug!(
                "listener dropped outside a runtime; its channel closes with the connection"
            ),
        }
    }
}

/// Settles one delivery on the channel it came on.
///
/// It writes `basic.ack` on the channel itself rather than through the delivery's
/// `lapin::Acker`: the acker hands each acknowledgement to lapin's internal task, which spawns
/// a task for it, and that cost a task and two wake-ups per request. The frame is queued when
/// the future is first polled, as the acker's is; on a channel that is gone it fails at once.
#[derive(Debug)]
struct RabbitAcker {
    channel: Arc<Channel>,
    delivery_tag: u64,
}

#[async_trait]
impl Acker for RabbitAcker {
    async fn ack(self: Box<Self>) -> Result<(), TransportError> {
        self.channel
            .basic_ack(self.delivery_tag, BasicAckOptions::default())
            .await
            .map_err(driver_error)
    }

    async fn reject(self: Box<Self>, requeue: bool) -> Result<(), TransportError> {
        self.channel
            .basic_reject(self.delivery_tag, BasicRejectOptions { requeue })
            .await
            .map_err(driver_error)
    }
}
