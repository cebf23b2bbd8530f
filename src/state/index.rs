//! Secondary indexes: for each key (a file id, owner, client or share), the
//! slots that hold it in one contiguous array (held inline when there is
//! one, the common case of a file or an owner with a single lock).
//!
//! The map holds one entry per distinct key: the key itself (the one
//! `Arc<str>` every lock with that key shares, so a string repeated across a
//! million locks costs one allocation) and the key's slots. Each slot
//! records its position in the array of each of its four keys, so removing
//! a lock is O(1) (swap-remove, then fix the position of the slot moved into
//! the hole), and listing one key's locks reads one array instead of chasing
//! a pointer per lock. A key disappears with its last lock.

use hashbrown::hash_table::{Entry, HashTable};
use std::collections::HashMap;
use std::hash::BuildHasher;
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
    pub(crate) slots: Slots,
}

/// A key's slots: one inline, or an array of two or more. Never empty in an
/// index (a key goes with its last slot).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Slots {
    One(SlotId),
    Many(Vec<SlotId>),
}

const _: () = assert!(std::mem::size_of::<Slots>() <= 24);

impl Slots {
    /// The slots as a slice.
    pub(crate) fn as_slice(&self) -> &[SlotId] {
        match self {
            Slots::One(slot) => std::slice::from_ref(slot),
            Slots::Many(slots) => slots,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.as_slice().len()
    }

    /// Appends `slot`; returns its position.
    pub(crate) fn push(&mut self, slot: SlotId) -> u32 {
        let position = u32::try_from(self.len()).expect("fewer than 2^32 locks per key");
        match self {
            Slots::One(first) => *self = Slots::Many(vec![*first, slot]),
            Slots::Many(slots) => slots.push(slot),
        }
        position
    }
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
            let position = posting.slots.push(slot);
            return (Arc::clone(&posting.key), position);
        }
        self.map.insert(Arc::clone(key), Posting { key: Arc::clone(key), slots: Slots::One(slot) });
        (Arc::clone(key), 0)
    }

    /// Removes `slot`, at `position` in `key`'s array; the last slot of the
    /// array moves into the hole and its position is updated through
    /// `positions`. Drops the key with its last slot, goes back to the
    /// inline form at one slot, and gives back memory when an array shrinks
    /// to a quarter of its capacity.
    pub(crate) fn detach(&mut self, key: &str, slot: SlotId, position: u32, positions: &mut impl Positions) {
        let posting = self.map.get_mut(key).expect("an indexed slot's key is indexed");
        let at = position as usize;
        debug_assert_eq!(posting.slots.as_slice().get(at), Some(&slot), "a slot's recorded position is its place");
        let Slots::Many(slots) = &mut posting.slots else {
            self.map.remove(key);
            return;
        };
        slots.swap_remove(at);
        if let Some(&moved) = slots.get(at) {
            *positions.position(moved, self.which) = position;
        }
        if let [last] = slots[..] {
            posting.slots = Slots::One(last);
        } else if slots.capacity() > 16 && slots.len() < slots.capacity() / 4 {
            slots.shrink_to(slots.len() * 2);
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

    /// Installs an array built elsewhere (snapshot restore). Refuses (and
    /// changes nothing) when the key is already there: two entries of one
    /// key would lose the first one's slots.
    pub(crate) fn install(&mut self, posting: Posting) -> Result<(), Posting> {
        debug_assert!(posting.slots.len() > 0);
        match self.map.entry(Arc::clone(&posting.key)) {
            std::collections::hash_map::Entry::Occupied(_) => Err(posting),
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(posting);
                Ok(())
            }
        }
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

/// The primary index, lock id to slot. It holds slot numbers only: an id is
/// read from its slot (through `id_of`) to compare, and hashed again when
/// the table grows. That is 4 bytes per entry where a map keyed by the id's
/// `Arc<str>` takes 24, so the table is smaller and building it at restore
/// misses the cache far less (figures:
/// docs/decisions/0001-id-table-of-slot-numbers.md).
#[derive(Debug, Clone, Default)]
pub(crate) struct ById {
    table: HashTable<SlotId>,
    hasher: Hasher,
}

impl ById {
    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    /// Number of ids.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    /// The slot of `id`.
    pub(crate) fn get<'a>(&self, id: &str, id_of: impl Fn(SlotId) -> &'a str) -> Option<SlotId> {
        self.table.find(self.hash(id), |&slot| id_of(slot) == id).copied()
    }

    /// Adds `id` at `slot` (which `id_of` need not resolve yet); when `id`
    /// is already there, changes nothing and returns its slot.
    pub(crate) fn insert<'a>(
        &mut self,
        id: &str,
        slot: SlotId,
        id_of: impl Fn(SlotId) -> &'a str,
    ) -> Result<(), SlotId> {
        let hasher = &self.hasher;
        match self.table.entry(hasher.hash_one(id), |&s| id_of(s) == id, |&s| hasher.hash_one(id_of(s))) {
            Entry::Occupied(existing) => Err(*existing.get()),
            Entry::Vacant(vacant) => {
                vacant.insert(slot);
                Ok(())
            }
        }
    }

    /// Removes `id`, held at `slot` (found by slot number: the slot itself
    /// may already be gone).
    pub(crate) fn remove(&mut self, id: &str, slot: SlotId) {
        if let Ok(entry) = self.table.find_entry(self.hash(id), |&s| s == slot) {
            entry.remove();
        }
    }

    /// Reserves room for `more` ids.
    pub(crate) fn reserve<'a>(&mut self, more: usize, id_of: impl Fn(SlotId) -> &'a str) {
        let hasher = &self.hasher;
        self.table.reserve(more, |&s| hasher.hash_one(id_of(s)));
    }
}
