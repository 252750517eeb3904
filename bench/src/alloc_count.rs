//! A global allocator that counts heap allocations only while a [`Region`] is open.
//!
//! The bench measures two things with it: the client heap held per in-flight call, and the
//! allocations one call makes. It used to install `stats_alloc`, which counts every
//! allocation of the whole run: its counters are atomics shared by every thread, so in the
//! in-process (`memory://`) phases, where the client and the server allocate on two cores at
//! once, their cache line bounced between the cores on each allocation and cost about a
//! quarter of the throughput, distorting the very figures the bench reports. Here a disabled
//! allocator costs one relaxed load of a flag that is only written when a region opens or
//! closes (so the line stays shared, never bounced), then forwards to [`Inner`]: the system
//! allocator, or jemalloc when the bench is built with `--features jemalloc`.

use std::alloc::{GlobalAlloc, Layout};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// The allocator that allocates: the system's (glibc's `malloc` on Linux).
#[cfg(not(feature = "jemalloc"))]
use std::alloc::System as Inner;
/// The allocator that allocates: jemalloc.
#[cfg(feature = "jemalloc")]
use tikv_jemallocator::Jemalloc as Inner;

/// The name of the allocator in use, for the report.
pub(crate) const ALLOCATOR: &str = if cfg!(feature = "jemalloc") {
    "jemalloc"
} else {
    "the system allocator"
};

/// [`Inner`], counting while [`ENABLED`].
pub(crate) struct CountingAlloc;

/// Whether allocations are counted: set while a [`Region`] is open.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Allocations (a `realloc` counts as one) since counting was first enabled.
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
/// Bytes allocated (a `realloc`: its new size) since counting was first enabled.
static BYTES_ALLOCATED: AtomicU64 = AtomicU64::new(0);
/// Bytes deallocated (a `realloc`: its old size) since counting was first enabled.
static BYTES_DEALLOCATED: AtomicU64 = AtomicU64::new(0);

impl CountingAlloc {
    #[inline]
    fn count_alloc(size: usize) {
        if ENABLED.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            BYTES_ALLOCATED.fetch_add(size as u64, Ordering::Relaxed);
        }
    }

    #[inline]
    fn count_dealloc(size: usize) {
        if ENABLED.load(Ordering::Relaxed) {
            BYTES_DEALLOCATED.fetch_add(size as u64, Ordering::Relaxed);
        }
    }

    #[inline]
    fn count_realloc(old_size: usize, new_size: usize) {
        if ENABLED.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            BYTES_ALLOCATED.fetch_add(new_size as u64, Ordering::Relaxed);
            BYTES_DEALLOCATED.fetch_add(old_size as u64, Ordering::Relaxed);
        }
    }
}

// Every method forwards to `Inner` with the caller's arguments unchanged, so `Inner`'s
// guarantees are the caller's; the counting touches only atomics and never allocates.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for CountingAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract (non-zero size), which
        // is `Inner.alloc`'s.
        let ptr = unsafe { Inner.alloc(layout) };
        if !ptr.is_null() {
            Self::count_alloc(layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`: the caller's contract is `Inner.alloc_zeroed`'s.
        let ptr = unsafe { Inner.alloc_zeroed(layout) };
        if !ptr.is_null() {
            Self::count_alloc(layout.size());
        }
        ptr
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by this allocator with `layout` (the caller's
        // contract), and this allocator allocates only through `Inner`.
        unsafe { Inner.dealloc(ptr, layout) };
        Self::count_dealloc(layout.size());
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by this allocator (so by `Inner`) with `layout`, and
        // `new_size` is valid for it (the caller's contract, which is `Inner.realloc`'s).
        let new_ptr = unsafe { Inner.realloc(ptr, layout, new_size) };
        if !new_ptr.is_null() {
            Self::count_realloc(layout.size(), new_size);
        }
        new_ptr
    }
}

/// Heap activity counted in a [`Region`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Change {
    /// Allocations, a `realloc` counting as one.
    pub(crate) allocations: u64,
    /// Bytes allocated (a `realloc`: its new size).
    pub(crate) bytes_allocated: u64,
    /// Bytes deallocated (a `realloc`: its old size), including blocks allocated before the
    /// region.
    pub(crate) bytes_deallocated: u64,
}

impl Change {
    /// Growth of the live heap: bytes allocated less bytes deallocated.
    pub(crate) fn live_bytes(&self) -> f64 {
        self.bytes_allocated as f64 - self.bytes_deallocated as f64
    }
}

/// Counting, on until dropped. One region at a time: counting is process-wide.
pub(crate) struct Region {
    start: Change,
}

/// Opens a region: counts every allocation in the process (every thread) until it is dropped.
pub(crate) fn start() -> Region {
    let start = totals();
    let was_enabled = ENABLED.swap(true, Ordering::Relaxed);
    debug_assert!(!was_enabled, "alloc_count regions must not overlap");
    Region { start }
}

fn totals() -> Change {
    Change {
        allocations: ALLOCATIONS.load(Ordering::Relaxed),
        bytes_allocated: BYTES_ALLOCATED.load(Ordering::Relaxed),
        bytes_deallocated: BYTES_DEALLOCATED.load(Ordering::Relaxed),
    }
}

impl Region {
    /// What was counted since [`start`]; counting goes on.
    pub(crate) fn change(&self) -> Change {
        let now = totals();
        Change {
            allocations: now.allocations - self.start.allocations,
            bytes_allocated: now.bytes_allocated - self.start.bytes_allocated,
            bytes_deallocated: now.bytes_deallocated - self.start.bytes_deallocated,
        }
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        ENABLED.store(false, Ordering::Relaxed);
    }
}
