//! The user's [`Transport`] handle: a driver chosen by URL, the settings, the reply queue
//! shared by every client, and the delivery rules that sit above the driver (oslo's `retry`,
//! deadlines, waiting for a reconnecting connection).

pub(crate) mod replies;

use std::fmt;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::TransportConfig;
use crate::driver::{self, ConnectionState, Destination, Driver, PublishOptions};
use crate::error::{RpcError, TransportError};
use crate::sync::lock;
use crate::url::{Scheme, TransportUrl};
use replies::ReplyWaiter;

/// A connection to a messaging system, shared by every client and server made from it.
///
/// Cloning is cheap: clones share the driver and the reply queue.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), amqp_rpc::RpcError> {
/// let transport = amqp_rpc::Transport::from_url("memory://").await?;
/// assert_eq!(transport.url().map(|u| u.scheme()), Some(amqp_rpc::Scheme::Memory));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Transport {
    inner: Arc<Inner>,
}

struct Inner {
    driver: Arc<dyn Driver>,
    url: Option<TransportUrl>,
    config: TransportConfig,
    /// Lazily created on the first call, replaced if its subscription ends.
    replies: Mutex<Option<Arc<ReplyWaiter>>>,
    /// Held while a reply waiter starts, so that only one does.
    starting_replies: tokio::sync::Mutex<()>,
}

impl Transport {
    /// Opens the transport a URL names, with the default [`TransportConfig`] overridden by the
    /// URL's query options: `memory://[/vhost]` (in-process; one broker per vhost in the
    /// process) or `rabbit://[user:pass@]host[:port][,...]/[vhost][?option=value&...]`.
    pub async fn from_url(url: &str) -> Result<Transport, RpcError> {
        Transport::from_url_with_config(url, TransportConfig::default()).await
    }

    /// Opens the transport a URL names with `config`, which the URL's query options override.
    pub async fn from_url_with_config(
        url: &str,
        config: TransportConfig,
    ) -> Result<Transport, RpcError> {
        let url = TransportUrl::parse(url)?;
        let config = config.with_url_options(&url)?;
        let driver: Arc<dyn Driver> = match url.scheme() {
            Scheme::Memory => Arc::new(
                driver::memory::MemoryDriver::shared(url.virtual_host())
                    .with_control_exchange(&config.control_exchange),
            ),
            #[cfg(feature = "rabbit")]
            Scheme::Rabbit => {
                Arc::new(driver::amqp::RabbitDriver::connect(&url, config.clone()).await?)
            }
            #[cfg(not(feature = "rabbit"))]
            Scheme::Rabbit => {
                return Err(RpcError::InvalidConfig {
                    reason: "rabbit:// needs amqp-rpc's `rabbit` feature (on by default)",
                });
            }
        };
        Ok(Transport::with_driver(driver, Some(url), config))
    }

    /// A transport on a new, private in-process broker that nothing else can reach.
    pub fn memory() -> Transport {
        let driver = Arc::new(driver::memory::MemoryDriver::private());
        Transport::with_driver(driver, None, TransportConfig::default())
    }

    /// A transport on a driver of your own, with the default [`TransportConfig`].
    pub fn from_driver(driver: Arc<dyn Driver>) -> Transport {
        Transport::with_driver(driver, None, TransportConfig::default())
    }

    fn with_driver(
        driver: Arc<dyn Driver>,
        url: Option<TransportUrl>,
        config: TransportConfig,
    ) -> Transport {
        Transport {
            inner: Arc::new(Inner {
                driver,
                url,
                config,
                replies: Mutex::new(None),
                starting_replies: tokio::sync::Mutex::new(()),
            }),
        }
    }

    /// The settings: defaults for clients (`rpc_response_timeout`) and servers
    /// (`executor_thread_pool_size`), and the driver's options.
    pub fn config(&self) -> &TransportConfig {
        &self.inner.config
    }

    /// The URL the transport was opened with, if any.
    pub fn url(&self) -> Option<&TransportUrl> {
        self.inner.url.as_ref()
    }

    /// The driver, for publishing or consuming raw messages.
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.inner.driver
    }

    /// The connection's state now: connected, reconnecting after a loss, or closed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let transport = amqp_rpc::Transport::memory();
    /// assert!(transport.connection_state().is_connected());
    /// transport.close().await;
    /// assert_eq!(transport.connection_state(), amqp_rpc::ConnectionState::Closed);
    /// # }
    /// ```
    pub fn connection_state(&self) -> ConnectionState {
        self.inner.driver.connection_state().borrow().clone()
    }

    /// The connection's state as it changes, for readiness and liveness probes: `changed()`
    /// wakes on every change (`Connected` -> `Reconnecting` -> `Connected`, ... `Closed`).
    pub fn watch_connection(&self) -> watch::Receiver<ConnectionState> {
        self.inner.driver.connection_state()
    }

    /// Closes the connection. Calls waiting for replies fail at once with
    /// [`TransportError::Closed`], as does every later operation; servers on it stop
    /// receiving requests (their [`RpcServer::serve_until`](crate::RpcServer::serve_until)
    /// returns that error).
    pub async fn close(&self) {
        let waiter = lock(&self.inner.replies).clone();
        if let Some(waiter) = waiter {
            waiter.close(TransportError::closed());
        }
        self.inner.driver.close().await;
    }

    /// The reply waiter shared by all clients of this transport, if it runs.
    pub(crate) fn current_reply_waiter(&self) -> Option<Arc<ReplyWaiter>> {
        lock(&self.inner.replies).clone().filter(|w| !w.is_closed())
    }

    /// The reply waiter shared by all clients of this transport, started on first use.
    pub(crate) async fn reply_waiter(&self) -> Result<Arc<ReplyWaiter>, RpcError> {
        if let Some(waiter) = self.current_reply_waiter() {
            return Ok(waiter);
        }
        let _starting = self.inner.starting_replies.lock().await;
        if let Some(waiter) = self.current_reply_waiter() {
            return Ok(waiter);
        }
        let limit = self.config().max_message_size;
        let waiter = Arc::new(ReplyWaiter::start(self.inner.driver.as_ref(), limit).await?);
        *lock(&self.inner.replies) = Some(Arc::clone(&waiter));
        Ok(waiter)
    }
}

/// The instant `timeout` from now, or one far enough ahead to mean "never" when that is beyond
/// what an `Instant` can hold (`Duration::MAX`).
pub(crate) fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout)
        .or_else(|| now.checked_add(Duration::from_secs(100 * 365 * 24 * 3600)))
        .unwrap_or(now)
}

/// How hard [`Transport::publish`] tries.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Delivery {
    /// oslo's `retry`: `None` keeps trying (until the deadline), `Some(0)` tries once,
    /// `Some(n)` retries `n` times.
    pub(crate) retry: Option<u32>,
    /// No attempt starts or goes on after this instant.
    pub(crate) deadline: Instant,
}

/// The pause before trying again after a failure that left the connection up (a broker nack),
/// growing with each attempt up to a second: such failures may repeat at once.
fn pause_after(attempt: u32) -> Duration {
    Duration::from_millis(100 * u64::from(attempt.min(10)))
}

impl Transport {
    /// Publishes by oslo's `retry` rules, within `within` from now: an attempt that fails
    /// because the connection is down or was lost before the broker confirmed the message is
    /// made again (the same bytes, hence the same `_unique_id`, which receivers use to drop
    /// duplicates) once the driver has reconnected. `Ok` means the broker confirmed the
    /// message. A first attempt done at its first poll (`memory://`) reads no clock and sets
    /// no timer.
    pub(crate) async fn publish(
        &self,
        to: Destination<'_>,
        body: &Bytes,
        options: PublishOptions,
        retry: Option<u32>,
        within: Duration,
    ) -> Result<(), TransportError> {
        let mut first = self.inner.driver.publish(to, body.clone(), options);
        let (error, deadline) = match first.as_mut().now_or_never() {
            Some(Ok(())) => return Ok(()),
            Some(Err(error)) => (error, deadline_after(within)),
            None => {
                let deadline = deadline_after(within);
                match tokio::time::timeout_at(deadline, first).await {
                    Ok(Ok(())) => return Ok(()),
                    Ok(Err(error)) => (error, deadline),
                    Err(_elapsed) => return Err(unconfirmed(1, within)),
                }
            }
        };
        self.retry_publish(to, body, options, Delivery { retry, deadline }, error)
            .await
    }

    /// The rest of a publish whose first attempt failed with `error`, bounded by the
    /// delivery's deadline. Boxed: only a failed publish pays for it, so that the futures of
    /// calls, which make their first attempt inline, stay small.
    pub(crate) fn retry_publish<'a>(
        &'a self,
        to: Destination<'a>,
        body: &'a Bytes,
        options: PublishOptions,
        delivery: Delivery,
        error: TransportError,
    ) -> Pin<Box<dyn Future<Output = Result<(), TransportError>> + Send + 'a>> {
        Box::pin(self.republish(to, body, options, delivery, error))
    }

    /// oslo's retries after a first attempt failed with `error`; every wait is bounded by the
    /// delivery's deadline.
    async fn republish(
        &self,
        to: Destination<'_>,
        body: &Bytes,
        options: PublishOptions,
        delivery: Delivery,
        mut error: TransportError,
    ) -> Result<(), TransportError> {
        let started = Instant::now();
        let driver = &self.inner.driver;
        let mut attempts = 1u32;
        loop {
            if !error.is_retryable() || matches!(error, TransportError::NoRoute { .. }) {
                return Err(error);
            }
            if delivery.retry.is_some_and(|retries| attempts > retries) {
                return Err(TransportError::delivery_failed(
                    attempts,
                    started.elapsed(),
                    error.to_string(),
                ));
            }
            tracing::debug!(attempts, error = %error, "publish failed; trying again");
            let lost = matches!(error, TransportError::ConnectionLost { .. });
            let ready = async {
                if !lost {
                    tokio::time::sleep(pause_after(attempts)).await;
                }
                wait_connected(driver.connection_state()).await
            };
            match tokio::time::timeout_at(delivery.deadline, ready).await {
                Ok(Ok(())) => {}
                Ok(Err(closed)) => return Err(closed),
                Err(_elapsed) => {
                    return Err(TransportError::delivery_failed(
                        attempts,
                        started.elapsed(),
                        format!("the deadline passed while reconnecting after: {error}"),
                    ));
                }
            }
            attempts += 1;
            let attempt = driver.publish(to, body.clone(), options);
            error = match tokio::time::timeout_at(delivery.deadline, attempt).await {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => e,
                Err(_elapsed) => return Err(unconfirmed(attempts, started.elapsed())),
            };
        }
    }
}

/// A publish whose deadline passed, after `elapsed`, before the broker confirmed it.
fn unconfirmed(attempts: u32, elapsed: Duration) -> TransportError {
    TransportError::delivery_failed(
        attempts,
        elapsed,
        "the deadline passed before the broker confirmed the message",
    )
}

/// Waits until the driver is connected; fails if it is closed.
async fn wait_connected(mut state: watch::Receiver<ConnectionState>) -> Result<(), TransportError> {
    let state = state
        .wait_for(|s| {
            matches!(
                s,
                ConnectionState::Connected { .. } | ConnectionState::Closed
            )
        })
        .await;
    match state.as_deref() {
        Ok(ConnectionState::Connected { .. }) => Ok(()),
        // The wait ends only on `Connected` or `Closed` (a lost connection is `Reconnecting`,
        // which is waited out), or when the driver is gone with its state: both mean closed.
        _ => Err(TransportError::closed()),
    }
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transport")
            .field("url", &self.inner.url)
            .field("driver", &self.inner.driver)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    #[cfg(not(feature = "rabbit"))]
    #[tokio::test]
    async fn without_the_rabbit_feature_a_rabbit_url_is_a_configuration_error() {
        let err = Transport::from_url("rabbit://guest:guest@127.0.0.1:5672/").await;
        match err {
            Err(RpcError::InvalidConfig { reason }) => assert!(reason.contains("`rabbit` feature")),
            other => panic!("expected InvalidConfig: {other:?}"),
        }
        // memory:// works as ever.
        assert!(Transport::from_url("memory://").await.is_ok());
    }

    use async_trait::async_trait;

    use super::*;
    use crate::driver::memory::MemoryDriver;
    use crate::driver::{ReplyQueue, Subscription};
    use crate::target::Target;

    /// A driver whose publishes fail with `ConnectionLost` while it is down, or when told to
    /// (which takes it down, as a real driver reports a loss), or with the errors it is given
    /// (the connection staying up), counting the attempts.
    #[derive(Debug)]
    struct Flaky {
        inner: MemoryDriver,
        state: watch::Sender<ConnectionState>,
        attempts: AtomicU32,
        failures: AtomicU32,
        /// Errors the next attempts fail with, first first.
        scripted: Mutex<Vec<TransportError>>,
    }

    impl Flaky {
        fn new() -> Arc<Flaky> {
            Arc::new(Flaky {
                inner: MemoryDriver::private(),
                state: watch::Sender::new(ConnectionState::Connected {
                    host: "flaky".to_owned(),
                }),
                attempts: AtomicU32::new(0),
                failures: AtomicU32::new(0),
                scripted: Mutex::new(Vec::new()),
            })
        }

        fn go_down(&self) {
            self.state.send_replace(ConnectionState::Reconnecting {
                attempts: 0,
                reason: "test".to_owned(),
            });
        }

        fn come_back(&self) {
            self.state.send_replace(ConnectionState::Connected {
                host: "flaky".to_owned(),
            });
        }

        fn attempts(&self) -> u32 {
            self.attempts.load(Ordering::SeqCst)
        }
    }

    #[async_trait]
    impl Driver for Flaky {
        async fn publish(
            &self,
            to: Destination<'_>,
            body: Bytes,
            options: PublishOptions,
        ) -> Result<(), TransportError> {
            self.attempts.fetch_add(1, Ordering::SeqCst);
            let scripted = {
                let mut scripted = lock(&self.scripted);
                (!scripted.is_empty()).then(|| scripted.remove(0))
            };
            if let Some(error) = scripted {
                return Err(error);
            }
            let fail = self
                .failures
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            if fail {
                self.go_down();
            }
            let connected = self.state.borrow().is_connected();
            match connected {
                true => self.inner.publish(to, body, options).await,
                false => Err(TransportError::ConnectionLost {
                    reason: "down".to_owned(),
                }),
            }
        }

        async fn listen_rpc(
            &self,
            target: &Target,
            prefetch: u16,
        ) -> Result<Box<dyn Subscription>, TransportError> {
            self.inner.listen_rpc(target, prefetch).await
        }

        async fn listen_replies(&self) -> Result<ReplyQueue, TransportError> {
            self.inner.listen_replies().await
        }

        async fn listen_notifications(
            &self,
            bindings: &[crate::driver::NotificationBinding<'_>],
            pool: Option<&str>,
            prefetch: u16,
        ) -> Result<Box<dyn Subscription>, TransportError> {
            self.inner
                .listen_notifications(bindings, pool, prefetch)
                .await
        }

        fn connection_state(&self) -> watch::Receiver<ConnectionState> {
            self.state.subscribe()
        }

        async fn close(&self) {
            self.state.send_replace(ConnectionState::Closed);
        }
    }

    const TO: Destination<'static> = Destination::Fanout { topic: "t" };

    fn failure(published: Result<(), TransportError>) -> TransportError {
        match published {
            Ok(()) => panic!("the message was published"),
            Err(e) => e,
        }
    }

    async fn publish(
        transport: &Transport,
        retry: Option<u32>,
        within: Duration,
    ) -> Result<(), TransportError> {
        let body = Bytes::from_static(b"{}");
        let options = PublishOptions::default();
        transport.publish(TO, &body, options, retry, within).await
    }

    #[tokio::test(start_paused = true)]
    async fn retry_zero_tries_once_and_fails_at_once() {
        let driver = Flaky::new();
        let transport = Transport::from_driver(driver.clone());
        driver.go_down();
        let started = Instant::now();
        let err = failure(publish(&transport, Some(0), Duration::from_secs(60)).await);
        assert!(
            matches!(err, TransportError::DeliveryFailed { attempts: 1, .. }),
            "{err:?}"
        );
        assert!(err.is_retryable());
        assert_eq!(driver.attempts(), 1);
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[tokio::test(start_paused = true)]
    async fn retry_n_makes_n_more_attempts_each_after_a_reconnection() {
        let driver = Flaky::new();
        let transport = Transport::from_driver(driver.clone());
        driver.failures.store(100, Ordering::SeqCst);
        // Each attempt loses the connection, which comes back a second later: each
        // reconnection allows one more attempt.
        let reconnecting = tokio::spawn({
            let driver = Arc::clone(&driver);
            async move {
                let mut state = driver.state.subscribe();
                loop {
                    let _ = state.wait_for(|s| !s.is_connected()).await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    driver.come_back();
                }
            }
        });
        let started = Instant::now();
        let err = failure(publish(&transport, Some(3), Duration::from_secs(60)).await);
        reconnecting.abort();
        assert!(
            matches!(err, TransportError::DeliveryFailed { attempts: 4, .. }),
            "{err:?}"
        );
        assert_eq!(driver.attempts(), 4);
        assert_eq!(started.elapsed(), Duration::from_secs(3));
    }

    #[tokio::test(start_paused = true)]
    async fn no_retry_limit_waits_for_the_connection_until_the_deadline() {
        let driver = Flaky::new();
        let transport = Transport::from_driver(driver.clone());
        driver.go_down();
        let started = Instant::now();
        let err = failure(publish(&transport, None, Duration::from_secs(5)).await);
        assert!(
            matches!(err, TransportError::DeliveryFailed { .. }),
            "{err:?}"
        );
        assert_eq!(started.elapsed(), Duration::from_secs(5));
        // One attempt, then a wait for a connection that never came.
        assert_eq!(driver.attempts(), 1);

        // Back within the deadline: the message is published.
        let comes_back = tokio::spawn({
            let driver = Arc::clone(&driver);
            async move {
                tokio::time::sleep(Duration::from_secs(2)).await;
                driver.come_back();
            }
        });
        publish(&transport, None, Duration::from_secs(5))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        comes_back.await.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(driver.attempts(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_transport_ends_the_wait_with_closed() {
        let driver = Flaky::new();
        let transport = Transport::from_driver(driver.clone());
        driver.go_down();
        let closing = tokio::spawn({
            let transport = transport.clone();
            async move {
                tokio::time::sleep(Duration::from_secs(1)).await;
                transport.close().await;
            }
        });
        let err = failure(publish(&transport, None, Duration::from_secs(60)).await);
        closing.await.unwrap_or_else(|e| panic!("{e}"));
        assert!(matches!(err, TransportError::Closed { .. }), "{err:?}");
        assert!(!err.is_retryable());
    }

    /// Publishes through a driver whose first attempts fail with `errors`: what it returns,
    /// and the attempts made.
    async fn publish_failing_with(
        errors: Vec<TransportError>,
    ) -> (Result<(), TransportError>, u32) {
        let driver = Flaky::new();
        *lock(&driver.scripted) = errors;
        let transport = Transport::from_driver(driver.clone());
        let published = publish(&transport, None, Duration::from_secs(60)).await;
        (published, driver.attempts())
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_channel_is_tried_again() {
        let closed = TransportError::ChannelClosed {
            reason: "invalid channel state: Closed".to_owned(),
        };
        let (published, attempts) = publish_failing_with(vec![closed]).await;
        assert!(published.is_ok(), "{published:?}");
        assert_eq!(attempts, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_by_the_brokers_rules_is_not_tried_again() {
        let refused = TransportError::Broker {
            code: 403,
            text: "ACCESS_REFUSED - write access to exchange denied".to_owned(),
        };
        let (published, attempts) = publish_failing_with(vec![refused]).await;
        let err = failure(published);
        assert!(
            matches!(err, TransportError::Broker { code: 403, .. }),
            "{err:?}"
        );
        assert_eq!(attempts, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_driver_error_is_tried_again_only_if_its_driver_says_it_may_pass() {
        let error = |retryable| TransportError::driver(std::io::Error::other("odd"), retryable);
        let (published, attempts) = publish_failing_with(vec![error(true)]).await;
        assert!(published.is_ok(), "{published:?}");
        assert_eq!(attempts, 2);

        let (published, attempts) = publish_failing_with(vec![error(false)]).await;
        let err = failure(published);
        assert!(
            matches!(
                err,
                TransportError::Driver {
                    retryable: false,
                    ..
                }
            ),
            "{err:?}"
        );
        assert_eq!(attempts, 1);
    }

    #[test]
    fn a_deadline_beyond_what_an_instant_holds_is_far_ahead_not_a_panic() {
        let far = deadline_after(Duration::MAX);
        assert!(far > Instant::now() + Duration::from_secs(50 * 365 * 24 * 3600));
    }
}
