//! Notifications, oslo.messaging's other half: a compute service publishes instance events,
//! a metering listener (ceilometer's role) consumes them from two services' exchanges in a
//! pool, and an audit listener takes only the errors of one host.
//!
//! Runs on the in-process `memory://` transport, or on `$TRANSPORT_URL` when it is set.
//!
//! ```text
//! cargo run --example notifications
//! TRANSPORT_URL=rabbit://guest:guest@127.0.0.1:5672/ cargo run --example notifications
//! ```
//!
//! On RabbitMQ a Python oslo.messaging service can take either side: its `Notifier` on
//! exchange `nova` reaches the listeners here, and its listeners get what this notifier sends.
//! As with oslo, the queues stay on the broker (`notifications.info`, `notifications.error`,
//! `metering`), so that no notification is lost while nobody listens; `notifications.info`,
//! which no listener here consumes, keeps a copy of each creation.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use amqp_rpc::notify::{
    Incoming, Notification, NotificationFilter, NotificationListener, NotificationResult, Notifier,
    Priority, Typed,
};
use amqp_rpc::{Context, Transport};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

/// Nova's `compute.instance.create.end`, reduced to what the example reads.
#[derive(Debug, Serialize, Deserialize)]
struct InstanceCreated {
    instance_id: String,
    flavor: String,
    memory_mb: u64,
}

impl Notification for InstanceCreated {
    const EVENT_TYPE: &'static str = "compute.instance.create.end";
}

/// A failure to report, of any event type.
#[derive(Debug, Serialize, Deserialize)]
struct Failure {
    instance_id: String,
    reason: String,
}

impl Notification for Failure {
    const EVENT_TYPE: &'static str = "compute.instance.create.error";
}

/// The notifications the example sends; the listeners stop once they have seen theirs.
const CREATED: usize = 3;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("TRANSPORT_URL").unwrap_or_else(|_| "memory://".to_owned());
    let transport = Transport::from_url(&url).await?;
    if let Some(url) = transport.url() {
        println!("transport: {url}");
    }
    // Metering: every instance created, on the exchanges of two services, in a pool (several
    // metering processes would share the stream).
    let metered = Arc::new(AtomicUsize::new(0));
    let all_metered = Arc::new(Notify::new());
    let metering = NotificationListener::builder(&transport)
        .target("nova", "notifications")
        .target("glance", "notifications")
        .pool("metering")
        .endpoint(Typed::new(Priority::Info, {
            let (metered, all_metered) = (Arc::clone(&metered), Arc::clone(&all_metered));
            move |n: Incoming<InstanceCreated>| {
                let (metered, all_metered) = (Arc::clone(&metered), Arc::clone(&all_metered));
                async move {
                    println!(
                        "metering: {} from {} at {}: {} ({} MB)",
                        n.event_type.as_deref().unwrap_or("-"),
                        n.publisher_id.as_deref().unwrap_or("-"),
                        n.metadata.timestamp.as_deref().unwrap_or("-"),
                        n.payload.instance_id,
                        n.payload.memory_mb,
                    );
                    if metered.fetch_add(1, Ordering::SeqCst) + 1 == CREATED {
                        all_metered.notify_one();
                    }
                    NotificationResult::Handled
                }
            }
        }))
        .build()?;

    // Audit: errors only, and only those of compute.host1 (a filter, as oslo's
    // NotificationFilter: regular expressions matched at the start).
    let audited = Arc::new(Notify::new());
    let audit = NotificationListener::builder(&transport)
        .target("nova", "notifications")
        .endpoint(
            Typed::new(Priority::Error, {
                let audited = Arc::clone(&audited);
                move |n: Incoming<Failure>| {
                    let audited = Arc::clone(&audited);
                    async move {
                        println!(
                            "audit: {} failed on {}: {} (request {})",
                            n.payload.instance_id,
                            n.publisher_id.as_deref().unwrap_or("-"),
                            n.payload.reason,
                            n.context.request_id().unwrap_or("-"),
                        );
                        audited.notify_one();
                    }
                }
            })
            .with_filter(NotificationFilter::new().publisher_id(r"compute\.host1$")?),
        )
        .build()?;
    metering.start().await?;
    audit.start().await?;

    // The compute service: typed notifications, each method its priority.
    let ctx = Context::new().with_request_id("req-0f5d053f");
    for (host, n) in [
        ("compute.host1", 1),
        ("compute.host2", 2),
        ("compute.host1", 3),
    ] {
        // Topic `notifications`, oslo's default.
        let notifier = Notifier::new(&transport, host).with_exchange("nova");
        let created = InstanceCreated {
            instance_id: format!("vm-{n}"),
            flavor: "m1.small".to_owned(),
            memory_mb: 2048,
        };
        notifier.info(&ctx, &created).await?;
    }
    for host in ["compute.host2", "compute.host1"] {
        let failure = Failure {
            instance_id: "vm-4".to_owned(),
            reason: "no valid host".to_owned(),
        };
        Notifier::new(&transport, host)
            .with_exchange("nova")
            .error(&ctx, &failure)
            .await?;
    }

    let seen = async {
        all_metered.notified().await;
        audited.notified().await;
    };
    tokio::time::timeout(Duration::from_secs(30), seen)
        .await
        .map_err(|_| "the listeners did not receive every notification within 30 s")?;
    metering.stop().await;
    audit.stop().await;
    println!("metered {} creations; done", metered.load(Ordering::SeqCst));
    Ok(())
}
