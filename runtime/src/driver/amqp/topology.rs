//! What a listener declares and consumes, as data, so that it can be declared again, under the
//! same names and with the same arguments, on every new connection (spec §2; addenda §1.4).

use lapin::options::{
    ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use crate::config::TransportConfig;

/// One thing to declare.
#[derive(Debug, Clone)]
pub(super) enum Entity {
    Exchange {
        name: String,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
    },
    Queue {
        name: String,
        durable: bool,
        auto_delete: bool,
        arguments: FieldTable,
    },
    Binding {
        queue: String,
        exchange: String,
        key: String,
    },
}

impl Entity {
    /// The control exchange: topic, durable and auto-delete as the options say.
    pub(super) fn control_exchange(config: &TransportConfig, name: &str) -> Entity {
        Entity::Exchange {
            name: name.to_owned(),
            kind: ExchangeKind::Topic,
            durable: config.durable(),
            auto_delete: config.amqp_auto_delete,
        }
    }

    /// A topic's fanout exchange: fanout, auto-delete, durable with transient quorum queues.
    pub(super) fn fanout_exchange(config: &TransportConfig, name: &str) -> Entity {
        Entity::Exchange {
            name: name.to_owned(),
            kind: ExchangeKind::Fanout,
            durable: config.rabbit_transient_quorum_queue,
            auto_delete: true,
        }
    }

    /// A topic or server queue: durable and auto-delete as the options say, quorum if asked.
    pub(super) fn topic_queue(config: &TransportConfig, name: &str) -> Entity {
        let mut arguments = FieldTable::default();
        if config.rabbit_quorum_queue {
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        Entity::Queue {
            name: name.to_owned(),
            durable: config.durable(),
            auto_delete: config.amqp_auto_delete,
            arguments,
        }
    }

    /// A reply or fanout queue: not auto-delete, expiring after the transient TTL; classic and
    /// not durable, or quorum (durable) with `rabbit_transient_quorum_queue`.
    pub(super) fn transient_queue(config: &TransportConfig, name: &str) -> Entity {
        let mut arguments = FieldTable::default();
        let quorum = config.rabbit_transient_quorum_queue;
        if quorum {
            arguments.insert(
                "x-queue-type".into(),
                AMQPValue::LongString("quorum".into()),
            );
        }
        let ttl_ms = config.rabbit_transient_queues_ttl.as_millis();
        if ttl_ms > 0 {
            // py-amqp sends it as a signed 32-bit integer; the type is part of equivalence.
            let ttl_ms = i32::try_from(ttl_ms).unwrap_or(i32::MAX);
            arguments.insert("x-expires".into(), AMQPValue::LongInt(ttl_ms));
        }
        Entity::Queue {
            name: name.to_owned(),
            durable: quorum,
            auto_delete: false,
            arguments,
        }
    }

    pub(super) fn binding(queue: &str, exchange: &str, key: &str) -> Entity {
        Entity::Binding {
            queue: queue.to_owned(),
            exchange: exchange.to_owned(),
            key: key.to_owned(),
        }
    }

    /// Declares it on `channel`.
    pub(super) async fn declare(&self, channel: &Channel) -> lapin::Result<()> {
        match self {
            Entity::Exchange {
                name,
                kind,
                durable,
                auto_delete,
            } => {
                let options = ExchangeDeclareOptions {
                    durable: *durable,
                    auto_delete: *auto_delete,
                    ..ExchangeDeclareOptions::default()
                };
                channel
                    .exchange_declare(
                        name.as_str().into(),
                        kind.clone(),
                        options,
                        FieldTable::default(),
                    )
                    .await
            }
            Entity::Queue {
                name,
                durable,
                auto_delete,
                arguments,
            } => {
                let options = QueueDeclareOptions {
                    durable: *durable,
                    auto_delete: *auto_delete,
                    ..QueueDeclareOptions::default()
                };
                channel
                    .queue_declare(name.as_str().into(), options, arguments.clone())
                    .await
                    .map(drop)
            }
            Entity::Binding {
                queue,
                exchange,
                key,
            } => {
                channel
                    .queue_bind(
                        queue.as_str().into(),
                        exchange.as_str().into(),
                        key.as_str().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
            }
        }
    }
}

/// A listener's topology: what it declares, then the queues it consumes.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    pub(super) entities: Vec<Entity>,
    pub(super) queues: Vec<String>,
    /// Unacknowledged deliveries per consumer; 0 for no limit.
    pub(super) prefetch: u16,
    /// A queue of the listener's own, deleted when it closes (an RPC server's fanout queue).
    pub(super) owned_queue: Option<String>,
}

/// Deletes queue `name` (its messages too): for a queue stuck on a dead node, or a listener's
/// own queue when it closes.
pub(super) async fn delete_queue(channel: &Channel, name: &str) -> lapin::Result<()> {
    channel
        .queue_delete(name.into(), QueueDeleteOptions::default())
        .await
        .map(drop)
}
