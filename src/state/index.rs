//! Secondary indexes that double as string interners.
//!
//! Each index maps a key (a file id, owner, client or share) to the set of
//! slots holding a lock with that key. The key is stored once as an
//! `Arc<str>`, and every lock with that key shares it, so a string repeated
//! across a million locks costs one allocation. A key disappears with its last
//! lock.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Slot number of a lock in the state's slab.
pub(crate) type SlotId = u32;

#[derive(Debug, Default, Clone)]
pub(crate) struct Index {
    map: HashMap<Arc<str>, HashSet<SlotId>>,
}

impl Index {
    /// Adds `slot` under `key`; returns the interned key for the lock to keep.
    pub(crate) fn insert(&mut self, key: &str, slot: SlotId) -> Arc<str> {
        if let Some(slots) = self.map.get_mut(key) {
            let fresh = slots.insert(slot);
            debug_assert!(fresh, "slot {slot} already under key {key:?}");
            let (interned, _) = self.map.get_key_value(key).expect("key just found");
            return Arc::clone(interned);
        }
        let interned: Arc<str> = Arc::from(key);
        self.map.insert(Arc::clone(&interned), HashSet::from([slot]));
        interned
    }

    /// [`insert`](Self::insert) for a key that is already an `Arc`: a new
    /// key keeps that `Arc` instead of copying the string.
    pub(crate) fn insert_shared(&mut self, key: &Arc<str>, slot: SlotId) -> Arc<str> {
        if let Some((interned, _)) = self.map.get_key_value(&**key) {
            let interned = Arc::clone(interned);
            self.map.get_mut(&**key).expect("key just found").insert(slot);
            return interned;
        }
        self.map.insert(Arc::clone(key), HashSet::from([slot]));
        Arc::clone(key)
    }

    /// Removes `slot` from `key`; drops the key with its last slot.
    pub(crate) fn remove(&mut self, key: &str, slot: SlotId) {
        let Some(slots) = self.map.get_mut(key) else {
            debug_assert!(false, "index has no key {key:?}");
            return;
        };
        let removed = slots.remove(&slot);
        debug_assert!(removed, "index key {key:?} has no slot {slot}");
        if slots.is_empty() {
            self.map.remove(key);
        }
    }

    /// The slots under `key` (empty when none).
    pub(crate) fn get(&self, key: &str) -> Option<&HashSet<SlotId>> {
        self.map.get(key)
    }

    /// Number of (key, slot) entries, for invariant checks.
    pub(crate) fn entries(&self) -> usize {
        self.map.values().map(|s| s.len()).sum()
    }
}
