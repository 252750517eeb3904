//! What a listener hands notifications to: [`NotificationEndpoint`]s (one notification at a
//! time) or [`BatchNotificationEndpoint`]s (lists grouped by priority), and [`Typed`], an
//! endpoint that decodes the payload into a type of yours.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{Notification, NotificationFilter, Priorities, Priority};
use crate::context::Context;

/// A received notification, as oslo's dispatcher hands it to an endpoint method
/// `(ctxt, publisher_id, event_type, payload, metadata)`; `P` is the payload's type, a JSON
/// value unless a [`Typed`] endpoint decoded it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Incoming<P = Value> {
    /// The context: the `_context_*` keys without their prefix, plus `client_timeout` (`null`),
    /// as Python listeners see it.
    pub context: Context,
    /// The publisher id; `None` when absent, `null`, or not a string.
    pub publisher_id: Option<String>,
    /// The event type; `None` when absent, `null`, or not a string.
    pub event_type: Option<String>,
    /// The priority.
    pub priority: Priority,
    /// The payload.
    pub payload: P,
    /// The message id and timestamp.
    pub metadata: Metadata,
}

impl<P> Incoming<P> {
    /// The same notification with the payload `f` makes of this one's.
    pub fn map_payload<Q>(self, f: impl FnOnce(P) -> Q) -> Incoming<Q> {
        Incoming {
            context: self.context,
            publisher_id: self.publisher_id,
            event_type: self.event_type,
            priority: self.priority,
            payload: f(self.payload),
            metadata: self.metadata,
        }
    }
}

/// A notification's `metadata`: its `message_id` and `timestamp`, as sent (`None` when absent
/// or not a string).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metadata {
    /// `message_id`: a uuid4 with dashes, from oslo or amqp-rpc notifiers.
    pub message_id: Option<String>,
    /// `timestamp`: `YYYY-MM-DD HH:MM:SS[.ffffff]`, UTC.
    pub timestamp: Option<String>,
}

impl Metadata {
    /// The metadata as the JSON object Python endpoints get.
    pub fn to_map(&self) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("message_id".into(), self.message_id.clone().into());
        map.insert("timestamp".into(), self.timestamp.clone().into());
        map
    }
}

/// What an endpoint did with a notification (oslo's `NotificationResult`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NotificationResult {
    /// Done: the next endpoint gets it too, then it is acknowledged.
    #[default]
    Handled,
    /// Not now: no further endpoint gets it, and it goes back to its queue if the listener
    /// allows requeueing ([`ListenerBuilder::allow_requeue`]); otherwise it is acknowledged all
    /// the same, as oslo does.
    ///
    /// [`ListenerBuilder::allow_requeue`]: super::ListenerBuilder::allow_requeue
    Requeue,
}

/// An endpoint's own failure: counts as [`NotificationResult::Requeue`], as an exception does
/// in oslo, and is logged at ERROR.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What a [`Typed`] handler may return: `()`, a [`NotificationResult`], or a `Result` of
/// either with an error (which requeues, as an exception does in oslo).
pub trait IntoOutcome {
    /// The result, or the handler's error.
    fn into_outcome(self) -> Result<NotificationResult, HandlerError>;
}

impl IntoOutcome for () {
    fn into_outcome(self) -> Result<NotificationResult, HandlerError> {
        Ok(NotificationResult::Handled)
    }
}

impl IntoOutcome for NotificationResult {
    fn into_outcome(self) -> Result<NotificationResult, HandlerError> {
        Ok(self)
    }
}

impl<T: IntoOutcome, E: Into<HandlerError>> IntoOutcome for Result<T, E> {
    fn into_outcome(self) -> Result<NotificationResult, HandlerError> {
        self.map_err(Into::into)?.into_outcome()
    }
}

/// Handles notifications one at a time: oslo's endpoint object with methods named after
/// priorities, and an optional `filter_rule`.
///
/// For each notification the listener calls, in the order they were added, every endpoint
/// that handles its priority and whose filter lets it through, until one returns
/// [`NotificationResult::Requeue`] or an error, or panics (the three count alike).
#[async_trait]
pub trait NotificationEndpoint: Send + Sync + 'static {
    /// The priorities handled (oslo: the priority methods the endpoint has). The listener
    /// consumes only priorities some endpoint handles.
    fn priorities(&self) -> Priorities;

    /// Which notifications of those priorities it sees (oslo's `filter_rule`); default: all.
    fn filter(&self) -> Option<&NotificationFilter> {
        None
    }

    /// Handles one notification.
    async fn handle(&self, notification: &Incoming) -> Result<NotificationResult, HandlerError>;
}

#[async_trait]
impl<E: NotificationEndpoint + ?Sized> NotificationEndpoint for Arc<E> {
    fn priorities(&self) -> Priorities {
        (**self).priorities()
    }

    fn filter(&self) -> Option<&NotificationFilter> {
        (**self).filter()
    }

    async fn handle(&self, notification: &Incoming) -> Result<NotificationResult, HandlerError> {
        (**self).handle(notification).await
    }
}

/// Handles notifications in batches (oslo's batch listener endpoints): each call gets the
/// notifications of one priority from one batch, those its filter lets through.
///
/// [`NotificationResult::Requeue`] or an error requeues (if allowed) *every* notification of
/// that priority in the batch, those the filter skipped included, as oslo does.
#[async_trait]
pub trait BatchNotificationEndpoint: Send + Sync + 'static {
    /// The priorities handled.
    fn priorities(&self) -> Priorities;

    /// Which notifications it sees; default: all.
    fn filter(&self) -> Option<&NotificationFilter> {
        None
    }

    /// Handles the notifications of `priority` of one batch (never empty).
    async fn handle_batch(
        &self,
        priority: Priority,
        notifications: &[Incoming],
    ) -> Result<NotificationResult, HandlerError>;
}

/// An endpoint whose handler receives the payload decoded into `N`.
///
/// Made with [`Typed::new`] for a [`Notification`] type it sees only notifications of
/// `N::EVENT_TYPE` (others pass it by, as a filter mismatch does); [`Typed::any_event`] takes
/// any event type whose payload decodes. A payload that does not decode into `N` is logged at
/// WARN (message id, event type, publisher, the error and the payload), and counts as handled:
/// decoding it again would fail again, so requeueing it would only loop. The handler is
/// `Fn(Incoming<N>) -> impl Future<Output = R>` with `R` any [`IntoOutcome`].
///
/// ```
/// use amqp_rpc::notify::{Incoming, Notification, Priority, Typed};
/// #[derive(serde::Deserialize)]
/// struct VolumeAttached { volume_id: String }
/// impl Notification for VolumeAttached {
///     const EVENT_TYPE: &'static str = "volume.attach.end";
/// }
/// let endpoint = Typed::<VolumeAttached, _>::new([Priority::Info, Priority::Warn], |n: Incoming<VolumeAttached>| async move {
///     println!("{} attached", n.payload.volume_id);
/// });
/// ```
pub struct Typed<N, F> {
    priorities: Priorities,
    event_type: Option<&'static str>,
    filter: Option<NotificationFilter>,
    handler: F,
    payload: PhantomData<fn() -> N>,
}

impl<N, F> Typed<N, F> {
    /// Adds a filter (see [`NotificationFilter`]), on top of the event type.
    #[must_use]
    pub fn with_filter(mut self, filter: NotificationFilter) -> Self {
        self.filter = Some(filter);
        self
    }
}

impl<N: Notification, F> Typed<N, F> {
    /// An endpoint of `priorities` for notifications of `N::EVENT_TYPE`.
    pub fn new(priorities: impl Into<Priorities>, handler: F) -> Self {
        Typed {
            priorities: priorities.into(),
            event_type: Some(N::EVENT_TYPE),
            filter: None,
            handler,
            payload: PhantomData,
        }
    }
}

impl<N, F> Typed<N, F> {
    /// An endpoint of `priorities` for notifications of any event type whose payload decodes
    /// into `N` (the others are logged, as any payload that does not decode).
    pub fn any_event(priorities: impl Into<Priorities>, handler: F) -> Self {
        Typed {
            priorities: priorities.into(),
            event_type: None,
            filter: None,
            handler,
            payload: PhantomData,
        }
    }
}

impl<N, F> std::fmt::Debug for Typed<N, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Typed")
            .field("payload", &std::any::type_name::<N>())
            .field("priorities", &self.priorities)
            .field("event_type", &self.event_type)
            .field("filter", &self.filter)
            .finish_non_exhaustive()
    }
}

/// How long a payload quoted in a log line may be.
const LOGGED_PAYLOAD: usize = 1024;

/// `payload`'s JSON text, cut to [`LOGGED_PAYLOAD`] bytes.
pub(super) fn payload_excerpt(payload: &Value) -> String {
    let mut text = payload.to_string();
    if text.len() > LOGGED_PAYLOAD {
        let mut end = LOGGED_PAYLOAD;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push_str("...");
    }
    text
}

#[async_trait]
impl<N, F, Fut, R> NotificationEndpoint for Typed<N, F>
where
    N: DeserializeOwned + Send + 'static,
    F: Fn(Incoming<N>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send,
    R: IntoOutcome,
{
    fn priorities(&self) -> Priorities {
        self.priorities
    }

    fn filter(&self) -> Option<&NotificationFilter> {
        self.filter.as_ref()
    }

    async fn handle(&self, notification: &Incoming) -> Result<NotificationResult, HandlerError> {
        if let Some(wanted) = self.event_type
            && notification.event_type.as_deref() != Some(wanted)
        {
            return Ok(NotificationResult::Handled);
        }
        let payload = match crate::wire::from_value::<N>(notification.payload.clone()) {
            Ok(payload) => payload,
            Err(error) => {
                tracing::warn!(
                    message_id = notification.metadata.message_id.as_deref(),
                    event_type = notification.event_type.as_deref(),
                    publisher_id = notification.publisher_id.as_deref(),
                    payload_type = std::any::type_name::<N>(),
                    %error,
                    payload = payload_excerpt(&notification.payload),
                    "notification payload does not decode; skipped"
                );
                return Ok(NotificationResult::Handled);
            }
        };
        // Field by field: cloning the whole notification would copy its payload once more.
        let incoming = Incoming {
            context: notification.context.clone(),
            publisher_id: notification.publisher_id.clone(),
            event_type: notification.event_type.clone(),
            priority: notification.priority,
            payload,
            metadata: notification.metadata.clone(),
        };
        (self.handler)(incoming).await.into_outcome()
    }
}
