//! The `_unique_id`s seen last, to drop the duplicates oslo peers send after a lost confirm or
//! a redelivery: the RPC server checks requests, the notification listener notifications.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use crate::wire;

/// The `_unique_id`s seen last, to drop duplicates (spec §3.7, §5.2): the RPC server's
/// requests, the notification listener's acknowledged notifications.
pub(crate) struct RecentIds {
    order: VecDeque<UniqueId>,
    seen: HashSet<UniqueId, BuildHasherDefault<IdHasher>>,
    capacity: usize,
}

/// A hash for [`UniqueId`]s, which are random (uuid4): a multiply and a rotation per word,
/// where SipHash cost a thousand instructions per request.
/// Ids a peer chose to collide only make lookups linear in the window (bounded), as oslo's
/// own list of 16 is.
#[derive(Default)]
struct IdHasher(u64);

impl IdHasher {
    fn mix(&mut self, word: u64) {
        self.0 = (self.0 ^ word)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15)
            .rotate_left(26);
    }
}

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.mix(u64::from_le_bytes(word));
        }
    }

    fn write_u128(&mut self, n: u128) {
        self.mix(n as u64);
        self.mix((n >> 64) as u64);
    }

    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.mix(n as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// A `_unique_id`: a number for the 32 hex digits every oslo peer sends (no allocation per
/// request), the text for anything else.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum UniqueId {
    Hex(wire::Id),
    Text(Arc<str>),
}

impl UniqueId {
    fn of(id: &str) -> UniqueId {
        match wire::Id::parse(id) {
            Some(hex) => UniqueId::Hex(hex),
            None => UniqueId::Text(id.into()),
        }
    }
}

impl RecentIds {
    pub(crate) fn new(capacity: usize) -> RecentIds {
        RecentIds {
            order: VecDeque::with_capacity(capacity + 1),
            seen: HashSet::with_capacity_and_hasher(capacity + 1, BuildHasherDefault::default()),
            capacity,
        }
    }

    /// How many ids are recorded.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.order.len()
    }

    /// Whether `id` is among those recorded.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.seen.contains(&UniqueId::of(id))
    }

    /// Records `id`; gives it back if it was recorded already.
    pub(crate) fn insert(&mut self, id: String) -> Result<(), String> {
        let key = UniqueId::of(&id);
        if !self.seen.insert(key.clone()) {
            return Err(id);
        }
        self.order.push_back(key);
        if self.order.len() > self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.seen.remove(&oldest);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_drop_repeats_of_hex_and_other_ids_within_the_window() {
        let mut recent = RecentIds::new(3);
        let hex = |n: u8| format!("{n:032x}");
        assert!(recent.insert(hex(1)).is_ok());
        assert!(recent.insert("not-hex".to_owned()).is_ok());
        assert_eq!(recent.insert(hex(1)), Err(hex(1)));
        assert!(recent.insert("not-hex".to_owned()).is_err());
        assert!(recent.contains(&hex(1)) && recent.contains("not-hex"));
        // Upper-case digits are another text: oslo compares strings.
        assert!(recent.insert(hex(10).to_uppercase()).is_ok());
        assert!(recent.insert(hex(2)).is_ok());
        // The window holds 3: the first id is forgotten, the later ones are not.
        assert!(!recent.contains(&hex(1)));
        assert!(recent.insert(hex(1)).is_ok());
        assert!(recent.insert(hex(2)).is_err());
        assert_eq!(recent.order.len(), 3);
        assert_eq!(recent.seen.len(), 3);
    }
}
