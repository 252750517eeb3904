//! The `rabbit://` driver on lapin, with oslo.messaging's topology, message properties and
//! acknowledgement rules (spec §1–§3).
//!
//! One connection per transport. Publishing shares one confirm-mode channel, replaced if the
//! broker closes it; exchanges are declared once per channel before their first publish, as
//! oslo does. Each listener has a channel of its own, so that its prefetch is its own and
//! closing it returns its unacknowledged deliveries to their queues.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{SelectAll, StreamExt, select_all};
use lapin::Confirmation;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
    QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::uri::{AMQPAuthority, AMQPQueryString, AMQPUri, AMQPUserInfo};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, Consumer, ExchangeKind};

use super::config::TransportConfig;
use super::{Acker, Delivery, Destination, Driver, PublishOptions, ReplyQueue, Subscription, lock};
use crate::error::TransportError;
use crate::target::Target;
use crate::url::TransportUrl;

fn driver_error(e: lapin::Error) -> TransportError {
    TransportError::Driver(Box::new(e))
}

/// The `rabbit://` driver: one AMQP connection.
pub struct RabbitDriver {
    connection: Arc<Connection>,
    config: TransportConfig,
    publisher: Mutex<Option<Arc<PublishChannel>>>,
    /// Serializes opening a publish channel (the rare, slow path).
    opening: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for RabbitDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitDriver")
            .field("connected", &self.connection.status().connected())
            .field("control_exchange", &self.config.control_exchange)
            .finish_non_exhaustive()
    }
}

/// The publish channel and the exchanges declared on it.
struct PublishChannel {
    channel: Channel,
    declared: Mutex<HashSet<String>>,
}

impl RabbitDriver {
    /// Connects to the first of the URL's hosts that accepts the connection.
    pub async fn connect(
        url: &TransportUrl,
        config: TransportConfig,
    ) -> Result<Self, TransportError> {
        let heartbeat =
            u16::try_from(config.heartbeat_timeout_threshold.as_secs()).unwrap_or(u16::MAX);
        let name = format!(
            "{}:{}:{}",
            std::env::args()
                .next()
                .as_deref()
                .and_then(|a| std::path::Path::new(a)
                    .file_name()?
                    .to_str()
                    .map(str::to_owned))
                .unwrap_or_else(|| "amqp-rpc".to_owned()),
            std::process::id(),
            uuid::Uuid::new_v4()
        );
        let mut last_error = None;
        for host in url.hosts() {
            let uri = AMQPUri {
                authority: AMQPAuthority {
                    userinfo: AMQPUserInfo {
                        username: host.username().to_owned(),
                        password: host.password().to_owned(),
                    },
                    host: host.hostname().to_owned(),
                    port: host.port(),
                },
                vhost: url.virtual_host().to_owned(),
                query: AMQPQueryString {
                    heartbeat: Some(heartbeat),
                    connection_timeout: Some(10_000),
                    ..AMQPQueryString::default()
                },
                ..AMQPUri::default()
            };
            let properties =
                ConnectionProperties::default().with_connection_name(name.clone().into());
            match Connection::connect_uri(uri, properties).await {
                Ok(connection) => {
                    tracing::info!(host = %host, vhost = url.virtual_host(), "connected to RabbitMQ");
                    return Ok(RabbitDriver {
                        connection: Arc::new(connection),
                        config,
                        publisher: Mutex::new(None),
                        opening: tokio::sync::Mutex::new(()),
                    });
                }
                Err(e) => {
                    tracing::warn!(host = %host, error = %e, "cannot connect to RabbitMQ");
                    last_error = Some(e);
                }
            }
        }
        Err(match last_error {
            Some(e) => driver_error(e),
            None => TransportError::Closed {
                reason: "the transport URL names no host".to_owned(),
            },
        })
    }

    async fn publish_channel(&self) -> Result<Arc<PublishChannel>, TransportError> {
        let usable =
            |c: &Option<Arc<PublishChannel>>| c.clone().filter(|c| c.channel.status().connected());
        if let Some(channel) = usable(&lock(&self.publisher)) {
            return Ok(channel);
        }
        let _opening = self.opening.lock().await;
        if let Some(channel) = usable(&lock(&self.publisher)) {
            return Ok(channel);
        }
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(driver_error)?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(driver_error)?;
        let channel = Arc::new(PublishChannel {
            channel,
            declared: Mutex::new(HashSet::new()),
        });
        *lock(&self.publisher) = Some(Arc::clone(&channel));
        Ok(channel)
    }

    /// The control exchange: topic, durable and auto-delete as the options say.
    async fn declare_control_exchange(
        &self,
        channel: &Channel,
        name: &str,
    ) -> Result<(), TransportError> {
        let options = ExchangeDeclareOptions {
            durable: self.config.durable(),
            auto_delete: self.config.amqp_auto_delete,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                name.into(),
                ExchangeKind::Topic,
                options,
                FieldTable::default(),
            )
            .await
            .map_err(driver_error)
    }

    /// A topic's fanout exchange: fanout, not durable, auto-delete.
    async fn declare_fanout_exchange(
        &self,
        channel: &Channel,
        name: &str,
    ) -> Result<(), TransportError> {
        let options = ExchangeDeclareOptions {
            durable: false,
            auto_delete: true,
            ..ExchangeDeclareOptions::default()
        };
        channel
            .exchange_declare(
                name.into(),
                ExchangeKind::Fanout,
                options,
                FieldTable::default(),
            )
            .await
            .map_err(driver_error)
    }

    /// A topic or server queue: durable and auto-delete as the options say, quorum if asked.
    async fn declare_topic_queue(
        &self,
        channel: &Channel,
        name: &str,
    ) -> Result<(), TransportError> {
        let mut arguments = FieldTable::default();
        if self.config.rabbit_quorum_queue {
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        let options = QueueDeclareOptions {
            durable: self.config.durable(),
            auto_delete: self.config.amqp_auto_delete,
            ..QueueDeclareOptions::default()
        };
        channel
            .queue_declare(name.into(), options, arguments)
            .await
            .map(drop)
            .map_err(driver_error)
    }

    /// A reply or fanout queue: not durable, not auto-delete, expiring after the transient TTL.
    async fn declare_transient_queue(
        &self,
        channel: &Channel,
        name: &str,
    ) -> Result<(), TransportError> {
        let mut arguments = FieldTable::default();
        let ttl_ms = self.config.rabbit_transient_queues_ttl.as_millis();
        if ttl_ms > 0 {
            // py-amqp sends it as a signed 32-bit integer; the type is part of equivalence.
            let ttl_ms = i32::try_from(ttl_ms).unwrap_or(i32::MAX);
            arguments.insert("x-expires".into(), AMQPValue::LongInt(ttl_ms));
        }
        channel
            .queue_declare(name.into(), QueueDeclareOptions::default(), arguments)
            .await
            .map(drop)
            .map_err(driver_error)
    }

    async fn bind(
        &self,
        channel: &Channel,
        queue: &str,
        exchange: &str,
        key: &str,
    ) -> Result<(), TransportError> {
        channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                key.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(driver_error)
    }

    async fn listen_channel(&self, prefetch: u16) -> Result<Channel, TransportError> {
        let channel = self
            .connection
            .create_channel()
            .await
            .map_err(driver_error)?;
        let prefetch = match self.config.rabbit_qos_prefetch_count {
            0 => prefetch,
            configured => configured,
        };
        if prefetch > 0 {
            channel
                .basic_qos(prefetch, BasicQosOptions { global: false })
                .await
                .map_err(driver_error)?;
        }
        Ok(channel)
    }

    /// Consumes `queue`; with `no_ack` the broker forgets each message as it sends it.
    async fn consume(
        &self,
        channel: &Channel,
        queue: &str,
        no_ack: bool,
    ) -> Result<Consumer, TransportError> {
        channel
            .basic_consume(
                queue.into(),
                ShortString::from(""),
                BasicConsumeOptions {
                    no_ack,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(driver_error)
    }
}

/// The properties Python gives every message (spec §1.1).
fn properties(options: &PublishOptions) -> BasicProperties {
    let properties = BasicProperties::default()
        .with_content_type("application/json".into())
        .with_content_encoding("utf-8".into())
        .with_delivery_mode(2)
        .with_priority(0)
        .with_headers(FieldTable::default());
    match options.expiration {
        Some(ttl) => properties.with_expiration(ttl.as_millis().to_string().into()),
        None => properties,
    }
}

#[async_trait]
impl Driver for RabbitDriver {
    async fn publish(
        &self,
        to: Destination<'_>,
        body: Bytes,
        options: PublishOptions,
    ) -> Result<(), TransportError> {
        let publisher = self.publish_channel().await?;
        let mut scratch = String::new();
        let (exchange, routing_key) = to.address_in(&self.config.control_exchange, &mut scratch);
        if !exchange.is_empty() && !lock(&publisher.declared).contains(exchange) {
            match to {
                Destination::Fanout { .. } => {
                    self.declare_fanout_exchange(&publisher.channel, exchange)
                        .await?;
                }
                _ => {
                    self.declare_control_exchange(&publisher.channel, exchange)
                        .await?
                }
            }
            lock(&publisher.declared).insert(exchange.to_owned());
        }
        let confirm = publisher
            .channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: options.mandatory,
                    immediate: false,
                },
                &body,
                properties(&options),
            )
            .await
            .map_err(driver_error)?
            .await
            .map_err(driver_error)?;
        match confirm {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(_)) | Confirmation::Nack(Some(_)) => {
                Err(TransportError::NoRoute {
                    exchange: exchange.to_owned(),
                    routing_key: routing_key.to_owned(),
                })
            }
            Confirmation::Nack(None) => Err(TransportError::Closed {
                reason: format!("the broker refused a message to exchange {exchange:?}"),
            }),
        }
    }

    async fn listen_rpc(
        &self,
        target: &Target,
        prefetch: u16,
    ) -> Result<Box<dyn Subscription>, TransportError> {
        let (Some(topic), Some(server)) = (target.topic(), target.server_name()) else {
            return Err(TransportError::Closed {
                reason: format!(
                    "cannot listen on {target}: a server target needs topic and server"
                ),
            });
        };
        let channel = self.listen_channel(prefetch).await?;
        let exchange = target.exchange().unwrap_or(&self.config.control_exchange);
        let server_queue = super::server_queue(topic, server);
        let fanout_exchange = super::fanout_exchange(topic);
        let fanout_queue = format!("{fanout_exchange}_{}", crate::wire::new_id());

        self.declare_control_exchange(&channel, exchange).await?;
        self.declare_topic_queue(&channel, topic).await?;
        self.bind(&channel, topic, exchange, topic).await?;
        self.declare_topic_queue(&channel, &server_queue).await?;
        self.bind(&channel, &server_queue, exchange, &server_queue)
            .await?;
        self.declare_fanout_exchange(&channel, &fanout_exchange)
            .await?;
        self.declare_transient_queue(&channel, &fanout_queue)
            .await?;
        self.bind(&channel, &fanout_queue, &fanout_exchange, topic)
            .await?;

        let mut consumers = Vec::new();
        for queue in [topic, server_queue.as_str(), fanout_queue.as_str()] {
            consumers.push(self.consume(&channel, queue, false).await?);
        }
        Ok(Box::new(RabbitSubscription {
            acks: Some(Arc::new(channel.clone())),
            channel: Some(channel),
            deliveries: select_all(consumers),
            owned_queue: Some(fanout_queue),
        }))
    }

    async fn close(&self) {
        if let Err(e) = self
            .connection
            .close(200, "closed by the application".into())
            .await
        {
            tracing::debug!(error = %e, "closing an already closed connection");
        }
    }

    async fn listen_replies(&self) -> Result<ReplyQueue, TransportError> {
        let channel = self.listen_channel(0).await?;
        let name = super::reply_queue_name();
        self.declare_transient_queue(&channel, &name).await?;
        // Replies are acknowledged on receipt (oslo acks them at once too): consuming without
        // acks spares an acknowledgement round on every call.
        let consumer = self.consume(&channel, &name, true).await?;
        Ok(ReplyQueue {
            subscription: Box::new(RabbitSubscription {
                acks: None,
                channel: Some(channel),
                deliveries: select_all([consumer]),
                // Reply queues are left to expire, as oslo does.
                owned_queue: None,
            }),
            name,
        })
    }
}

/// The consumers of one listener on its channel.
struct RabbitSubscription {
    /// `None` once closed.
    channel: Option<Channel>,
    deliveries: SelectAll<Consumer>,
    /// A queue deleted when the listener closes (its fanout queue).
    owned_queue: Option<String>,
    /// The channel that acknowledges deliveries; `None` when they are consumed without
    /// acknowledgements.
    acks: Option<Arc<Channel>>,
}

impl std::fmt::Debug for RabbitSubscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RabbitSubscription")
            .field("channel", &self.channel.as_ref().map(Channel::id))
            .field("owned_queue", &self.owned_queue)
            .finish_non_exhaustive()
    }
}

/// Deletes the listener's own queue, then closes its channel: the broker returns the
/// deliveries not acknowledged to their queues.
async fn close_listener(channel: Channel, owned_queue: Option<String>) {
    if let Some(queue) = owned_queue {
        if let Err(e) = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
        {
            tracing::debug!(queue, error = %e, "could not delete the listener's queue");
        }
    }
    if let Err(e) = channel.close(200, "listener closed".into()).await {
        tracing::debug!(error = %e, "could not close the listener's channel");
    }
}

#[async_trait]
impl Subscription for RabbitSubscription {
    async fn next(&mut self) -> Result<Delivery, TransportError> {
        match self.deliveries.next().await {
            Some(Ok(delivery)) => Ok(Delivery {
                acker: match &self.acks {
                    None => Box::new(Acknowledged),
                    Some(channel) => Box::new(RabbitAcker {
                        channel: Arc::clone(channel),
                        delivery_tag: delivery.delivery_tag,
                    }),
                },
                body: Bytes::from(delivery.data),
            }),
            Some(Err(e)) => Err(driver_error(e)),
            None => Err(TransportError::Closed {
                reason: "the broker ended the consumer (connection or channel closed)".to_owned(),
            }),
        }
    }

    async fn close(mut self: Box<Self>) {
        if let Some(channel) = self.channel.take() {
            close_listener(channel, self.owned_queue.take()).await;
        }
    }
}

impl Drop for RabbitSubscription {
    fn drop(&mut self) {
        let Some(channel) = self.channel.take() else {
            return;
        };
        let queue = self.owned_queue.take();
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn(close_listener(channel, queue))),
            Err(_) => tracing::debug!(
                "listener dropped outside a runtime; its channel closes with the connection"
            ),
        }
    }
}

/// The acker of a delivery consumed without acknowledgements.
#[derive(Debug)]
struct Acknowledged;

#[async_trait]
impl Acker for Acknowledged {
    async fn ack(self: Box<Self>) -> Result<(), TransportError> {
        Ok(())
    }

    async fn reject(self: Box<Self>, _requeue: bool) -> Result<(), TransportError> {
        Ok(())
    }
}

/// Settles one delivery on its channel.
///
/// It writes `basic.ack` on the channel itself rather than through the delivery's
/// `lapin::Acker`: the acker hands each acknowledgement to lapin's internal task, which spawns
/// a task for it, and that cost a task and two wake-ups per request. The frame is queued when
/// the future is first polled, as the acker's is.
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
