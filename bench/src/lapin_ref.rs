//! The reference: a minimal hand-written lapin request/reply, with nothing between the
//! application and the broker. The server consumes a queue and answers to `reply_to` with the
//! request's `correlation_id`; the client has one connection, one exclusive server-named reply
//! queue consumed without acks, and pipelines requests, matching replies by correlation id.
//!
//! With [`Contract::OSLO`], the same code does on the wire what oslo.messaging's contract asks of
//! every peer, and nothing else: every publish waits for its publisher confirm (spec §2);
//! requests go through a topic exchange; requests and replies carry oslo's properties (§1.1),
//! persistent, requests with an expiration; replies are published mandatory (§2.2); a request
//! is acknowledged before it runs, and a reply on receipt (§2.5). Each item can also be had
//! alone, to price it (`--price-contract`). Bodies stay the caller's bytes: the envelope, the
//! context and routing replies by `_msg_id` are the work of the library measured against it.

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

/// What of oslo's wire contract a reference does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Contract {
    /// Publisher confirms on both sides; a call waits for its request's confirm, then for its
    /// reply (a reply's confirm is awaited beside the next request).
    pub(crate) confirms: bool,
    /// With `confirms`: a call waits for its confirm and its reply at once, not one after the
    /// other (the reply proves delivery; a nack still fails the call).
    pub(crate) overlapped: bool,
    /// oslo's properties (content type and encoding, priority, headers), persistent (delivery
    /// mode 2), on requests and replies.
    pub(crate) persistent: bool,
    /// Replies published `mandatory`.
    pub(crate) mandatory: bool,
    /// Requests through a topic exchange (else the default exchange).
    pub(crate) topic_exchange: bool,
    /// Requests with an expiration (the call's timeout).
    pub(crate) expiration: bool,
    /// The server acknowledges a request before running it (else after its reply is sent).
    pub(crate) ack_first: bool,
    /// The client acknowledges replies on receipt (else consumes them without acks).
    pub(crate) reply_acks: bool,
}

impl Contract {
    /// Plain lapin: none of it.
    pub(crate) const NONE: Contract = Contract {
        confirms: false,
        overlapped: false,
        persistent: false,
        mandatory: false,
        topic_exchange: false,
        expiration: false,
        ack_first: false,
        reply_acks: false,
    };

    /// All of oslo's contract, a call waiting for its confirm before its reply.
    pub(crate) const OSLO: Contract = Contract {
        confirms: true,
        overlapped: false,
        persistent: true,
        mandatory: true,
        topic_exchange: true,
        expiration: true,
        ack_first: true,
        reply_acks: true,
    };

    /// Each item alone, then all of it, with a label: what `--price-contract` measures.
    pub(crate) fn priced() -> Vec<(&'static str, Contract)> {
        let none = Contract::NONE;
        vec![
            ("none (plain lapin)", none),
            (
                "publisher confirms, the call waiting for its confirm, then its reply",
                Contract {
                    confirms: true,
                    ..none
                },
            ),
            (
                "publisher confirms, confirm and reply awaited together",
                Contract {
                    confirms: true,
                    overlapped: true,
                    ..none
                },
            ),
            (
                "persistent delivery mode and oslo's properties",
                Contract {
                    persistent: true,
                    ..none
                },
            ),
            (
                "replies published mandatory",
                Contract {
                    mandatory: true,
                    ..none
                },
            ),
            (
                "requests through a topic exchange",
                Contract {
                    topic_exchange: true,
                    ..none
                },
            ),
            (
                "requests with an expiration",
                Contract {
                    expiration: true,
                    ..none
                },
            ),
            (
                "request acknowledged before it runs",
                Contract {
                    ack_first: true,
                    ..none
                },
            ),
            (
                "replies acknowledged (not no-ack)",
                Contract {
                    reply_acks: true,
                    ..none
                },
            ),
            ("all of oslo's contract", Contract::OSLO),
            (
                "all, confirm and reply awaited together",
                Contract {
                    overlapped: true,
                    ..Contract::OSLO
                },
            ),
        ]
    }
}

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
        contract: Contract,
    ) -> Result<RefServer> {
        let connection = connect(url).await?;
        let channel = connection.create_channel().await?;
        if contract.confirms {
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
        let exchange = contract.topic_exchange.then(|| topic_exchange(queue));
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
                let acked = contract.ack_first && ack.as_mut().now_or_never().is_some();
                let properties = &delivery.properties;
                match (properties.reply_to(), properties.correlation_id()) {
                    (Some(reply_to), Some(id)) => {
                        let reply = BasicProperties::default().with_correlation_id(id.clone());
                        let published = replies
                            .basic_publish(
                                "".into(),
                                reply_to.clone(),
                                BasicPublishOptions {
                                    mandatory: contract.mandatory,
                                    immediate: false,
                                },
                                &delivery.data,
                                oslo_properties(contract.persistent, reply),
                            )
                            .await;
                        // The confirm is awaited beside the next request, not before it.
                        if let (true, Ok(confirm)) = (contract.confirms, published) {
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
        let _ = self._connection.close(200, "done".into()).await;
    }
}

/// A pipelining client.
#[derive(Clone)]
pub(crate) struct RefClient {
    channel: Channel,
    reply_to: lapin::types::ShortString,
    pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>>,
    next_id: Arc<AtomicU64>,
    contract: Contract,
    _connection: Arc<Connection>,
}

impl RefClient {
    pub(crate) async fn connect(url: &str, contract: Contract) -> Result<RefClient> {
        let connection = connect(url).await?;
        let channel = connection.create_channel().await?;
        if contract.confirms {
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
                    no_ack: !contract.reply_acks,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let pending: Arc<Mutex<HashMap<u64, oneshot::Sender<Vec<u8>>>>> = Arc::default();
        let waiting = Arc::clone(&pending);
        let acks = contract.reply_acks.then(|| channel.clone());
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

    /// Closes the connection (its clones' too).
    pub(crate) async fn close(&self) {
        let _ = self._connection.close(200, "done".into()).await;
    }

    /// Sends `body` to `queue` and waits for the answer.
    pub(crate) async fn call(&self, queue: &str, body: &[u8]) -> Option<Vec<u8>> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().ok()?.insert(id, tx);
        let properties = BasicProperties::default()
            .with_reply_to(self.reply_to.clone())
            .with_correlation_id(id.to_string().into());
        let contract = self.contract;
        let exchange = match contract.topic_exchange {
            true => topic_exchange(queue),
            false => String::new(),
        };
        let mut properties = oslo_properties(contract.persistent, properties);
        if contract.expiration {
            properties = properties.with_expiration("60000".into());
        }
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
        match (contract.confirms, contract.overlapped) {
            (false, _) => rx.await.ok(),
            (true, false) => {
                confirm.await.ok()?;
                rx.await.ok()
            }
            // The reply proves delivery; a nack, or a confirm that fails, still fails the call.
            (true, true) => {
                let (confirmed, reply) = futures_util::join!(confirm, rx);
                confirmed.ok()?;
                reply.ok()
            }
        }
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
        match (published, self.contract.confirms) {
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

/// With `persistent`, oslo's properties (spec §1.1) added to `properties`.
fn oslo_properties(persistent: bool, properties: BasicProperties) -> BasicProperties {
    match persistent {
        true => properties
            .with_content_type("application/json".into())
            .with_content_encoding("utf-8".into())
            .with_delivery_mode(2)
            .with_priority(0)
            .with_headers(FieldTable::default()),
        false => properties,
    }
}
