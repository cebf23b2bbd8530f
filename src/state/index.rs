//! Secondary indexes: for each key (a file id, owner, client or share), the
//! slots that hold it in one contiguous array.
//!
//! The map holds one entry per distinct key: the key itself (the one
//! `Arc<str>` every lock with that key shares, so a string repeated across a
//! million locks costs one allocation) and the key's slots. Each slot
//! records its position in the array of each of its four keys, so removing
//! a lock is O(1) (swap-remove, then fix the position of the slot moved into
//! the hole), and listing one key's locks reads one array instead of chasing
//! a pointer per lock. A key disappears with its last lock.

use std::collections::HashMap;
use std::sync::Arc;

/// Slot number of a lock in the state's slab.
pub(crate) type SlotId = u32;
/// "No slot" / "on no list": the position of a free slot.
pub(crate) const NIL: SlotId = SlotId::MAX;

/// The hasher of every map in the state: fast, randomly seeded per map.
pub(crate) type Hasher = foldhash::fast::RandomState;

/// One key's slots, in no particular order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Posting {
    /// The key (the same allocation as the map's key): found with the slots
    /// in one lookup.
    pub(crate) key: Arc<str>,
    pub(crate) slots: Vec<SlotId>,
}

/// Access to the slots' positions in the index arrays, implemented by the
/// state's slab.
pub(crate) trait Positions {
    /// Where `slot` sits in the array of its key in index `which`.
    fn position(&mut self, slot: SlotId, which: usize) -> &mut u32;
}

#[derive(Debug, Clone)]
pub(crate) struct Index {
    /// Which of a slot's positions this index uses.
    which: usize,
    map: HashMap<Arc<str>, Posting, Hasher>,
}

impl Index {
    pub(crate) fn new(which: usize) -> Self {
        Self { which, map: HashMap::default() }
    }

    /// Appends `slot` to `key`'s array; a new key is interned as `key`
    /// itself (no copy). Returns the interned key (an existing key's
    /// allocation when there is one, so equal strings share one) and the
    /// slot's position in the array.
    pub(crate) fn attach(&mut self, key: &Arc<str>, slot: SlotId) -> (Arc<str>, u32) {
        if let Some(posting) = self.map.get_mut(&**key) {
            let position = u32::try_from(posting.slots.len()).expect("fewer than 2^32 locks per key");
            posting.slots.push(slot);
            return (Arc::clone(&posting.key), position);
        }
        self.map.insert(Arc::clone(key), Posting { key: Arc::clone(key), slots: vec![slot] });
        (Arc::clone(key), 0)
    }

    /// Removes `slot`, at `position` in `key`'s array; the last slot of the
    /// array moves into the hole and its position is updated through
    /// `positions`. Drops the key with its last slot, and gives back memory
    /// when an array shrinks to a quarter of its capacity.
    pub(crate) fn detach(&mut self, key: &str, slot: SlotId, position: u32, positions: &mut impl Positions) {
        let posting = self.map.get_mut(key).expect("an indexed slot's key is indexed");
        let at = position as usize;
        debug_assert_eq!(posting.slots.get(at), Some(&slot), "a slot's recorded position is its place");
        posting.slots.swap_remove(at);
        if let Some(&moved) = posting.slots.get(at) {
            *positions.position(moved, self.which) = position;
        }
        if posting.slots.is_empty() {
            self.map.remove(key);
        } else if posting.slots.capacity() > 16 && posting.slots.len() < posting.slots.capacity() / 4 {
            posting.slots.shrink_to(posting.slots.len() * 2);
        }
    }

    /// The slots of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&Posting> {
        self.map.get(key)
    }

    /// Every key with its slots.
    pub(crate) fn postings(&self) -> impl Iterator<Item = &Posting> {
        self.map.values()
    }

    /// Installs an array built elsewhere (snapshot restore).
    pub(crate) fn install(&mut self, posting: Posting) {
        debug_assert!(!posting.slots.is_empty());
        let previous = self.map.insert(Arc::clone(&posting.key), posting);
        debug_assert!(previous.is_none(), "a key is installed once");
    }

    /// Reserves room for `keys` more keys.
    pub(crate) fn reserve(&mut self, keys: usize) {
        self.map.reserve(keys);
    }

    /// Number of (key, slot) entries, for invariant checks.
    pub(crate) fn entries(&self) -> usize {
        self.map.values().map(|p| p.slots.len()).sum()
    }

    /// Which of a slot's positions this index uses.
    pub(crate) fn which(&self) -> usize {
        self.which
    }
}
