//! Small synchronisation helpers shared by every layer.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks a std mutex, ignoring poisoning: every critical section in this crate leaves its
/// state consistent at each step, so a panic elsewhere does not invalidate it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
