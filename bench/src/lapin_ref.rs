//! The reference: a minimal hand-written lapin request/reply, with nothing between the
//! application and the broker. The server consumes a queue and answers to `reply_to` with the
//! request's `correlation_id`; the client has one connection, one exclusive server-named reply
//! queue consumed without acks, and pipelines requests, matching replies by correlation id.
//!
//! With `contract`, the same code does on the wire what oslo.messaging's contract asks of every
//! peer, and nothing else: every publish waits for its publisher confirm (spec §2); requests go
//! through a topic exchange; requests and replies carry oslo's properties (§1.1), requests with
//! an expiration; replies are published mandatory (§2.2); a request is acknowledged before its
//! reply is published, and a reply on receipt (§2.5). Bodies stay the caller's bytes: the envelope, the context and
//! routing replies by `_msg_id` are the work of the library measured against it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use tokio::sync::oneshot;

type Result<T> = std::result::Result<T, lapin::Error>;

async fn connect(url: &str) -> Result<Connection> {
    Connection::connect(url, ConnectionProperties::default()).await
}

/// A server answering every request with its body, and counting casts (no `reply_to`).
pub(crate) struct RefServer {
    _connection: Connection,
    channel: Channel,
    queue: String,
    /// The contract's topic exchange.
    exchange: Option<String>,
    received_casts: Arc<AtomicU64>,
}

impl RefServer {
    /// Consumes `queue` (declared here; bound to the fanout exchange `fanout` if given).
    pub(crate) async fn start(
        url: &str,
        queue: &str,
        fanout: Option<&str>,
        prefetch: u16,
        contract: bool,
    ) -> Result<RefServer> {
        let connection = connect(url).await?;
        let channel = connection.create_channel().await?;
        if contract {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
        }
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await?;
        channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let exchange = contract.then(|| topic_exchange(queue));
        if let Some(exchange) = &exchange {
            bind(&channel, queue, exchange, ExchangeKind::Topic, queue).await?;
        }
        if let Some(exchange) = fanout {
            bind(&channel, queue, exchange, ExchangeKind::Fanout, "").await?;
        }
        let mut consumer = channel
            .basic_consume(
                queue.into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let received_casts = Arc::new(AtomicU64::new(0));
        let replies = channel.clone();
        let casts = Arc::clone(&received_casts);
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = consumer.next().await {
                let ack = replies.basic_ack(delivery.delivery_tag, BasicAckOptions::default());
                let mut ack = std::pin::pin!(ack);
                // With the contract, acknowledged before it runs: the first poll queues the
                // frame (and may find it written); the write is waited for after the reply.
                let acked = contract && ack.as_mut().now_or_never().is_some();
                let properties = &delivery.properties;
                match (properties.reply_to(), properties.correlation_id()) {
                    (Some(reply_to), Some(id)) => {
                        let reply = BasicProperties::default().with_correlation_id(id.clone());
                        let published = replies
                            .basic_publish(
                                "".into(),
                                reply_to.clone(),
                                BasicPublishOptions {
                                    mandatory: contract,
                                    immediate: false,
                                },
                                &delivery.data,
                                oslo_properties(contract, reply),
                            )
                            .await;
                        // The confirm is awaited beside the next request, not before it.
                        if let (true, Ok(confirm)) = (contract, published) {
                            tokio::spawn(confirm);
                        }
                    }
                    _ => {
                        casts.fetch_add(1, Ordering::Relaxed);
                    }
                }
                if !acked {
                    let _ = ack.await;
                }
            }
        });
        Ok(RefServer {
            _connection: connection,
            channel,
            queue: queue.to_owned(),
            exchange,
            received_casts,
        })
    }

    /// Casts received so far.
    pub(crate) fn casts(&self) -> u64 {
        self.received_casts.load(Ordering::Relaxed)
    }

    /// Zeroes the cast counter.
    pub(crate) fn reset(&self) {
        self.received_casts.store(0, Ordering::Relaxed);
    }

    /// Deletes the queue and the contract's exchange.
    pub(crate) async fn close(self) {
        let _ = self
            .channel
            .queue_delete(self.queue.as_str().into(), QueueDeleteOptions::default())
            .await;
        if let Some(exchange) = self.exchange {
            let _ = self
                .channel
                .exchange_delete(exchange.as_str().into(), Default::default())
                .await;
        }
    }
}

/// A pipelining client.
#[derive(Clone)]
pub(crate) struct RefClient {
    channel: Channel,
    reply_to: lapin::types::ShortString,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>>,
    next_id: Arc<AtomicU64>,
    contract: bool,
    _connection: Arc<Connection>,
}

impl RefClient {
    pub(crate) async fn connect(url: &str, contract: bool) -> Result<RefClient> {
        let connection = connect(url).await?;
        let channel = connection.create_channel().await?;
        if contract {
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await?;
        }
        let reply_queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let reply_to = reply_queue.name().clone();
        // With the contract, replies are acknowledged on receipt, as oslo's reply waiter does
        // (spec §2.5): the broker keeps each until then, and one sent as a connection drops is
        // not lost.
        let mut replies = channel
            .basic_consume(
                reply_to.clone(),
                "".into(),
                BasicConsumeOptions {
                    no_ack: !contract,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>> = Arc::default();
        let waiting = Arc::clone(&pending);
        let acks = contract.then(|| channel.clone());
        tokio::spawn(async move {
            while let Some(Ok(delivery)) = replies.next().await {
                if let Some(acks) = &acks {
                    // The first poll queues the frame; the write completes without us.
                    let ack = acks.basic_ack(delivery.delivery_tag, BasicAckOptions::default());
                    drop(std::pin::pin!(ack).now_or_never());
                }
                let id = delivery
                    .properties
                    .correlation_id()
                    .as_ref()
                    .and_then(|id| id.as_str().parse::<u64>().ok());
                let waiter = id.and_then(|id| waiting.lock().ok()?.remove(&id));
                if let Some(waiter) = waiter {
                    let _ = waiter.send(delivery.data);
                }
            }
        });
        Ok(RefClient {
            channel,
            reply_to,
            pending,
            next_id: Arc::default(),
            contract,
            _connection: Arc::new(connection),
        })
    }

    /// Sends `body` to `queue` and waits for the answer.
    pub(crate) async fn call(&self, queue: &str, body: &[u8]) -> Option<Vec<u8>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().ok()?.insert(id, tx);
        let properties = BasicProperties::default()
            .with_reply_to(self.reply_to.clone())
            .with_correlation_id(id.to_string().into());
        let (exchange, properties) = match self.contract {
            true => (
                topic_exchange(queue),
                oslo_properties(true, properties).with_expiration("60000".into()),
            ),
            false => (String::new(), properties),
        };
        let confirm = self
            .channel
            .basic_publish(
                exchange.as_str().into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .ok()?;
        if self.contract {
            confirm.await.ok()?;
        }
        rx.await.ok()
    }

    /// Sends `body` to `exchange`/`routing_key` without waiting for anything.
    pub(crate) async fn cast(&self, exchange: &str, routing_key: &str, body: &[u8]) -> bool {
        let published = self
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
            .await;
        match (published, self.contract) {
            (Ok(confirm), true) => confirm.await.is_ok(),
            (published, _) => published.is_ok(),
        }
    }
}

/// Declares `exchange` of `kind` and binds `queue` to it with `key`.
async fn bind(
    channel: &Channel,
    queue: &str,
    exchange: &str,
    kind: ExchangeKind,
    key: &str,
) -> Result<()> {
    channel
        .exchange_declare(
            exchange.into(),
            kind,
            Default::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            queue.into(),
            exchange.into(),
            key.into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
}

/// The topic exchange a contract server's queue is bound to, with the queue's name as key.
fn topic_exchange(queue: &str) -> String {
    format!("{queue}-topic")
}

/// With `contract`, oslo's properties (spec §1.1) added to `properties`.
fn oslo_properties(contract: bool, properties: BasicProperties) -> BasicProperties {
    match contract {
        true => properties
            .with_content_type("application/json".into())
            .with_content_encoding("utf-8".into())
            .with_delivery_mode(2)
            .with_priority(0)
            .with_headers(FieldTable::default()),
        false => properties,
    }
}
