//! Notifications, oslo.messaging's other half: a [`Notifier`] publishes events, a
//! [`NotificationListener`] hands them to [`NotificationEndpoint`]s, with oslo's wire format,
//! topology and acknowledgements (spec §1.6, §2, §2.5, §5), so that Rust and Python notifiers
//! and listeners mix freely.
//!
//! A payload type bound to its event type by [`Notification`] is checked at compile time on
//! both sides: [`Notifier::info`] and friends send it, a [`Typed`] endpoint receives it decoded.
//!
//! ```
//! use amqp_rpc::notify::{
//!     Incoming, Notification, NotificationListener, Notifier, NotificationResult, Priority, Typed,
//! };
//! use amqp_rpc::{Context, Transport};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Debug, Serialize, Deserialize)]
//! struct InstanceCreated {
//!     id: u64,
//! }
//!
//! impl Notification for InstanceCreated {
//!     const EVENT_TYPE: &'static str = "compute.instance.create.end";
//! }
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), amqp_rpc::RpcError> {
//! let transport = Transport::memory();
//! let (seen, mut received) = tokio::sync::mpsc::unbounded_channel();
//! let listener = NotificationListener::builder(&transport)
//!     .target("nova", "notifications")
//!     .endpoint(Typed::new(Priority::Info, move |n: Incoming<InstanceCreated>| {
//!         let seen = seen.clone();
//!         async move {
//!             let _ = seen.send((n.publisher_id, n.payload.id));
//!             NotificationResult::Handled
//!         }
//!     }))
//!     .build()?;
//! listener.start().await?;
//!
//! let notifier = Notifier::new(&transport, "compute.host1").with_exchange("nova");
//! notifier.info(&Context::new(), &InstanceCreated { id: 3 }).await?;
//! assert_eq!(received.recv().await, Some((Some("compute.host1".to_owned()), 3)));
//! listener.stop().await;
//! # Ok(()) }
//! ```

mod endpoint;
mod filter;
mod listener;
mod notifier;

use std::fmt;

pub use endpoint::{
    BatchNotificationEndpoint, HandlerError, Incoming, IntoOutcome, Metadata, NotificationEndpoint,
    NotificationResult, Typed,
};
pub use filter::{FilterError, NotificationFilter};
pub use listener::{ListenerBuilder, ListenerHandle, NotificationListener};
pub use notifier::{DEFAULT_TOPIC, Notifier, NotifierDriver};

/// A payload type bound to its event type: what [`Notifier::info`] and friends send, and what
/// a [`Typed`] endpoint receives decoded.
pub trait Notification {
    /// The event type, e.g. `compute.instance.create.end`.
    const EVENT_TYPE: &'static str;
}

/// A notification's priority: oslo's seven, in the order oslo lists them.
///
/// On the wire the body carries it upper case (`INFO`), the routing key lower case
/// (`notifications.info`). Python's `warning()` sends [`Priority::Warn`] too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Priority {
    /// `AUDIT`.
    Audit,
    /// `DEBUG`.
    Debug,
    /// `INFO`.
    Info,
    /// `WARN` (Python's `warn` and `warning`).
    Warn,
    /// `ERROR`.
    Error,
    /// `CRITICAL`.
    Critical,
    /// `SAMPLE`.
    Sample,
}

impl Priority {
    /// Every priority, in oslo's order.
    pub const ALL: [Priority; 7] = [
        Priority::Audit,
        Priority::Debug,
        Priority::Info,
        Priority::Warn,
        Priority::Error,
        Priority::Critical,
        Priority::Sample,
    ];

    /// The name in the message body: `AUDIT`, `DEBUG`, `INFO`, `WARN`, `ERROR`, `CRITICAL`,
    /// `SAMPLE`.
    pub fn as_upper(self) -> &'static str {
        match self {
            Priority::Audit => "AUDIT",
            Priority::Debug => "DEBUG",
            Priority::Info => "INFO",
            Priority::Warn => "WARN",
            Priority::Error => "ERROR",
            Priority::Critical => "CRITICAL",
            Priority::Sample => "SAMPLE",
        }
    }

    /// The name in routing keys and endpoint methods: `audit`, ..., `sample`.
    pub fn as_lower(self) -> &'static str {
        match self {
            Priority::Audit => "audit",
            Priority::Debug => "debug",
            Priority::Info => "info",
            Priority::Warn => "warn",
            Priority::Error => "error",
            Priority::Critical => "critical",
            Priority::Sample => "sample",
        }
    }

    /// The priority a received message names, as oslo's dispatcher reads it: the body's
    /// `priority` lower-cased (Python's `str.lower()`), one of the seven names; anything else
    /// (`warning` included) is unknown.
    pub fn from_wire(name: &str) -> Option<Priority> {
        let lower = name.to_lowercase();
        Priority::ALL.into_iter().find(|p| p.as_lower() == lower)
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_lower())
    }
}

/// A set of priorities: those an endpoint handles. Made from one priority, an array of them,
/// or [`Priorities::all`].
///
/// ```
/// use amqp_rpc::notify::{Priorities, Priority};
/// let set = Priorities::from([Priority::Info, Priority::Warn]);
/// assert!(set.contains(Priority::Warn) && !set.contains(Priority::Error));
/// assert_eq!(Priorities::from(Priority::Info).iter().collect::<Vec<_>>(), [Priority::Info]);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Priorities(u8);

impl Priorities {
    /// No priority.
    pub const fn none() -> Priorities {
        Priorities(0)
    }

    /// All seven.
    pub const fn all() -> Priorities {
        Priorities(0x7f)
    }

    /// Whether `priority` is in the set.
    pub fn contains(self, priority: Priority) -> bool {
        self.0 & priority.bit() != 0
    }

    /// The set with `priority` added.
    #[must_use]
    pub fn with(self, priority: Priority) -> Priorities {
        Priorities(self.0 | priority.bit())
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The priorities in the set, in oslo's order.
    pub fn iter(self) -> impl Iterator<Item = Priority> {
        Priority::ALL.into_iter().filter(move |p| self.contains(*p))
    }

    fn union(self, other: Priorities) -> Priorities {
        Priorities(self.0 | other.0)
    }
}

impl From<Priority> for Priorities {
    fn from(priority: Priority) -> Priorities {
        Priorities(priority.bit())
    }
}

impl<const N: usize> From<[Priority; N]> for Priorities {
    fn from(priorities: [Priority; N]) -> Priorities {
        priorities
            .into_iter()
            .fold(Priorities::none(), Priorities::with)
    }
}

impl FromIterator<Priority> for Priorities {
    fn from_iter<I: IntoIterator<Item = Priority>>(iter: I) -> Priorities {
        iter.into_iter().fold(Priorities::none(), Priorities::with)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_are_upper_in_the_body_and_lower_in_keys() {
        let upper: Vec<&str> = Priority::ALL.iter().map(|p| p.as_upper()).collect();
        assert_eq!(
            upper,
            [
                "AUDIT", "DEBUG", "INFO", "WARN", "ERROR", "CRITICAL", "SAMPLE"
            ]
        );
        for p in Priority::ALL {
            assert_eq!(p.as_lower(), p.as_upper().to_lowercase());
            assert_eq!(Priority::from_wire(p.as_upper()), Some(p));
            assert_eq!(Priority::from_wire(p.as_lower()), Some(p));
        }
        assert_eq!(Priority::from_wire("Info"), Some(Priority::Info));
        // Python's `warning()` sends WARN; `WARNING` itself is no priority of the dispatcher.
        for unknown in ["WARNING", "", "notice", "info "] {
            assert_eq!(Priority::from_wire(unknown), None, "{unknown}");
        }
    }

    #[test]
    fn priority_sets() {
        assert_eq!(Priorities::all().iter().count(), 7);
        assert!(Priorities::none().is_empty());
        let set: Priorities = [Priority::Sample, Priority::Audit].into();
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [Priority::Audit, Priority::Sample]
        );
        assert_eq!(
            set.union(Priority::Info.into()),
            Priorities::from([Priority::Audit, Priority::Info, Priority::Sample])
        );
    }
}
