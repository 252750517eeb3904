//! The tasks that run a server's requests and a listener's notifications, kept from one job
//! to the next.
//!
//! Handing a request to an idle worker costs one wake-up. A task of its own per request cost
//! more: tokio's task cells are 128-byte aligned, which glibc's allocator serves from its
//! locked arenas rather than its thread caches, and the task was then freed on whichever core
//! ended it. (`bench/PROFILING.md` has the measurements.)
//!
//! A worker holds its request's semaphore permit until it is idle again, so there are never
//! more workers than permits: a new one is made only when every worker holds a permit and the
//! consumer holds another.

use std::sync::{Arc, Mutex};

use tokio::sync::{Notify, OwnedSemaphorePermit};

use crate::sync::lock;

/// A pool of workers running jobs of type `T`. Dropping it ends the idle workers; busy ones end
/// when their job does.
pub(crate) struct Workers<T> {
    idle: Arc<Mutex<Idle<T>>>,
}

struct Idle<T> {
    /// The most recently idle last, so the warmest worker is woken first.
    slots: Vec<Arc<Slot<T>>>,
    /// Set when the pool is dropped: workers that finish then end instead of idling.
    closed: bool,
}

/// Where an idle worker waits for its next job.
struct Slot<T> {
    handed: Mutex<Option<Handed<T>>>,
    notify: Notify,
}

enum Handed<T> {
    Job(T, OwnedSemaphorePermit),
    Stop,
}

impl<T: Send + 'static> Workers<T> {
    pub(crate) fn new() -> Workers<T> {
        Workers {
            idle: Arc::new(Mutex::new(Idle {
                slots: Vec::new(),
                closed: false,
            })),
        }
    }

    /// Runs `job` with `run` on an idle worker, or on a new one if none is idle. `permit` is
    /// released once the worker is idle again.
    pub(crate) fn submit<F, Fut>(&self, job: T, permit: OwnedSemaphorePermit, run: &F)
    where
        F: Fn(T) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let slot = lock(&self.idle).slots.pop();
        match slot {
            Some(slot) => slot.hand(Handed::Job(job, permit)),
            None => {
                tokio::spawn(work(Arc::clone(&self.idle), run.clone(), job, permit));
            }
        }
    }
}

impl<T> Drop for Workers<T> {
    fn drop(&mut self) {
        let mut idle = lock(&self.idle);
        idle.closed = true;
        for slot in idle.slots.drain(..) {
            slot.hand(Handed::Stop);
        }
    }
}

impl<T> Slot<T> {
    fn hand(&self, handed: Handed<T>) {
        *lock(&self.handed) = Some(handed);
        self.notify.notify_one();
    }

    /// The next thing handed over. (`notify_one` keeps a permit when nobody waits, so a hand-over
    /// between the check and the wait is not missed.)
    async fn next(&self) -> Handed<T> {
        loop {
            if let Some(handed) = lock(&self.handed).take() {
                return handed;
            }
            self.notify.notified().await;
        }
    }
}

/// One worker: runs its first job, then each job handed to it while idle, until stopped.
async fn work<T, F, Fut>(
    idle: Arc<Mutex<Idle<T>>>,
    run: F,
    mut job: T,
    mut permit: OwnedSemaphorePermit,
) where
    F: Fn(T) -> Fut,
    Fut: Future<Output = ()>,
{
    let slot = Arc::new(Slot {
        handed: Mutex::new(None),
        notify: Notify::new(),
    });
    loop {
        run(job).await;
        {
            let mut idle = lock(&idle);
            if idle.closed {
                return;
            }
            idle.slots.push(Arc::clone(&slot));
        }
        // Only now: the consumer, once it has this permit, finds this worker idle.
        drop(permit);
        match slot.next().await {
            Handed::Job(next, next_permit) => (job, permit) = (next, next_permit),
            Handed::Stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::{Barrier, Semaphore};

    use super::*;

    async fn within<T>(what: impl Future<Output = T>) -> T {
        let done = tokio::time::timeout(Duration::from_secs(5), what).await;
        done.unwrap_or_else(|_| panic!("timed out"))
    }

    /// `n` of `permits`, within the time limit.
    async fn take(permits: &Arc<Semaphore>, n: u32) -> OwnedSemaphorePermit {
        let permit = within(Arc::clone(permits).acquire_many_owned(n)).await;
        permit.unwrap_or_else(|e| panic!("{e}"))
    }

    #[tokio::test]
    async fn jobs_run_at_once_up_to_the_permits() {
        let permits = Arc::new(Semaphore::new(3));
        let barrier = Arc::new(Barrier::new(4));
        let workers = Workers::new();
        let run = |barrier: Arc<Barrier>| async move {
            barrier.wait().await;
        };
        for _ in 0..3 {
            let permit = take(&permits, 1).await;
            workers.submit(Arc::clone(&barrier), permit, &run);
        }
        // Passes only if all three jobs wait at the barrier together.
        within(barrier.wait()).await;
        let _all = take(&permits, 3).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_idle_worker_takes_the_next_job() {
        let permits = Arc::new(Semaphore::new(4));
        let workers = Workers::new();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let run = {
            let seen = Arc::clone(&seen);
            move |n: usize| {
                let seen = Arc::clone(&seen);
                async move {
                    lock(&seen).push(n);
                }
            }
        };
        for n in 0..2000 {
            // All four permits free means the last job's worker is idle again.
            drop(take(&permits, 4).await);
            workers.submit(n, take(&permits, 1).await, &run);
        }
        let _all = take(&permits, 4).await;
        assert_eq!(*lock(&seen), (0..2000).collect::<Vec<_>>());
        // One worker served them all.
        assert_eq!(lock(&workers.idle).slots.len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn there_are_never_more_workers_than_permits() {
        let permits = Arc::new(Semaphore::new(4));
        let workers = Workers::new();
        let run = |n: u64| async move {
            if n.is_multiple_of(3) {
                tokio::task::yield_now().await;
            }
        };
        for n in 0..2000 {
            let permit = take(&permits, 1).await;
            workers.submit(n, permit, &run);
        }
        let _all = take(&permits, 4).await;
        let idle = lock(&workers.idle).slots.len();
        assert!((1..=4).contains(&idle), "{idle} workers");
    }

    #[tokio::test]
    async fn dropping_the_pool_ends_idle_and_busy_workers() {
        let permits = Arc::new(Semaphore::new(2));
        let workers = Workers::new();
        // Each worker's runner holds a clone of `alive`.
        let alive = Arc::new(());
        let release = Arc::new(Notify::new());
        let run = {
            let alive = Arc::clone(&alive);
            let release = Arc::clone(&release);
            move |wait: bool| {
                let _alive = Arc::clone(&alive);
                let release = Arc::clone(&release);
                async move {
                    if wait {
                        release.notified().await;
                    }
                }
            }
        };
        let permit = take(&permits, 1).await;
        workers.submit(false, permit, &run); // soon idle
        let permit = take(&permits, 1).await;
        workers.submit(true, permit, &run); // busy until released
        within(async {
            while lock(&workers.idle).slots.is_empty() {
                tokio::task::yield_now().await;
            }
        })
        .await;
        drop(run);
        drop(workers);
        release.notify_one();
        within(async {
            while Arc::strong_count(&alive) > 1 {
                tokio::task::yield_now().await;
            }
        })
        .await;
        // Both permits came back with the workers' end.
        assert_eq!(permits.available_permits(), 2);
    }
}
