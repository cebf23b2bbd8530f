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
///
/// The table is split in [`SHARDS`] tables by 8 bits of the id's hash
/// (bits 32-39, which the tables themselves do not use to place or tag an
/// entry). A restore builds it shard by shard ([`ById::fill`]), each
/// shard small enough to stay in the cache while it is filled, and a table
/// that grows rehashes one shard, not every id
/// (docs/decisions/0060-id-table-in-shards.md).
#[derive(Debug, Clone)]
pub(crate) struct ById {
    shards: Box<[HashTable<SlotId>]>,
    /// Number of ids, over every shard.
    len: usize,
    hasher: Hasher,
}

/// Number of shards of [`ById`] (a power of two).
pub(crate) const SHARDS: usize = 256;

/// The shard of an id of hash `hash`: bits 32-39, which a shard's table
/// uses neither to place an entry (the low bits, below 2^32 buckets) nor
/// to tag it (the top 7).
fn shard_of(hash: u64) -> usize {
    (hash >> 32) as usize & (SHARDS - 1)
}

impl Default for ById {
    fn default() -> Self {
        Self { shards: (0..SHARDS).map(|_| HashTable::new()).collect(), len: 0, hasher: Hasher::default() }
    }
}

impl ById {
    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    /// Number of ids.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The slot of `id`.
    pub(crate) fn get<'a>(&self, id: &str, id_of: impl Fn(SlotId) -> &'a str) -> Option<SlotId> {
        let hash = self.hash(id);
        self.shards[shard_of(hash)].find(hash, |&slot| id_of(slot) == id).copied()
    }

    /// Adds `id` at `slot` (which `id_of` need not resolve yet); when `id`
    /// is already there, changes nothing and returns its slot.
    pub(crate) fn insert<'a>(
        &mut self,
        id: &str,
        slot: SlotId,
        id_of: impl Fn(SlotId) -> &'a str,
    ) -> Result<(), SlotId> {
        let hash = self.hash(id);
        let Self { shards, len, hasher } = self;
        let rehash = |&s: &SlotId| hasher.hash_one(id_of(s));
        match shards[shard_of(hash)].entry(hash, |&s| id_of(s) == id, rehash) {
            Entry::Occupied(existing) => Err(*existing.get()),
            Entry::Vacant(vacant) => {
                vacant.insert(slot);
                *len += 1;
                Ok(())
            }
        }
    }

    /// An empty [`ShardedIds`] for about `expected` ids, hashing as this
    /// table does.
    pub(crate) fn sorter(&self, expected: usize) -> ShardedIds {
        let per_shard = expected / SHARDS + expected / SHARDS / 8 + 16;
        ShardedIds { hasher: self.hasher.clone(), lists: (0..SHARDS).map(|_| Vec::with_capacity(per_shard)).collect() }
    }

    /// Adds the ids of `sorted` (each [`ShardedIds`] from this table's
    /// [`ById::sorter`], its slots moved up by the offset beside it; `id_of`
    /// resolves the moved slots), one shard at a time, so that a shard's
    /// table is in the cache while it is filled (one table of every id would
    /// miss the cache at each insert once it outgrows it). Within a shard
    /// the lists are taken in the order given. Stops at an id already there
    /// and returns the slot that has it, leaving the ids before it added.
    pub(crate) fn fill<'a>(
        &mut self,
        sorted: Vec<(ShardedIds, SlotId)>,
        id_of: impl Fn(SlotId) -> &'a str,
    ) -> Result<(), SlotId> {
        let mut sorted: Vec<_> = sorted.into_iter().map(|(ids, offset)| (ids.lists.into_iter(), offset)).collect();
        let Self { shards, len, hasher } = self;
        let rehash = |&s: &SlotId| hasher.hash_one(id_of(s));
        for shard in shards.iter_mut() {
            let lists: Vec<_> =
                sorted.iter_mut().map(|(lists, offset)| (lists.next().unwrap_or_default(), *offset)).collect();
            shard.reserve(lists.iter().map(|(list, _)| list.len()).sum(), rehash);
            for (list, offset) in lists {
                for (hash, slot) in list {
                    let slot = slot + offset;
                    // The new id is read only when a tag matches, which is rare.
                    match shard.entry(hash, |&s| id_of(s) == id_of(slot), rehash) {
                        Entry::Occupied(existing) => return Err(*existing.get()),
                        Entry::Vacant(vacant) => {
                            vacant.insert(slot);
                            *len += 1;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes `id`, held at `slot` (found by slot number: the slot itself
    /// may already be gone).
    pub(crate) fn remove(&mut self, id: &str, slot: SlotId) {
        let hash = self.hash(id);
        if let Ok(entry) = self.shards[shard_of(hash)].find_entry(hash, |&s| s == slot) {
            entry.remove();
            self.len -= 1;
        }
    }

    /// How many ids each shard holds (their sum is [`ById::len`]), for
    /// invariant checks.
    pub(crate) fn shard_lens(&self) -> Vec<usize> {
        self.shards.iter().map(HashTable::len).collect()
    }

    /// Reserves room for about `more` ids more, spread over the shards.
    pub(crate) fn reserve<'a>(&mut self, more: usize, id_of: impl Fn(SlotId) -> &'a str) {
        let Self { shards, hasher, .. } = self;
        for shard in shards.iter_mut() {
            shard.reserve(more.div_ceil(SHARDS), |&s| hasher.hash_one(id_of(s)));
        }
    }
}

/// Ids hashed and sorted by the [`ById`] shard they go to, with their
/// slots, for [`ById::fill`]: a restore's decode threads make them while
/// each id's bytes are in the cache.
#[derive(Debug)]
pub(crate) struct ShardedIds {
    hasher: Hasher,
    lists: Vec<Vec<(u64, SlotId)>>,
}

impl ShardedIds {
    /// Adds `id`, held at `slot`.
    pub(crate) fn push(&mut self, id: &str, slot: SlotId) {
        let hash = self.hasher.hash_one(id);
        self.lists[shard_of(hash)].push((hash, slot));
    }

    /// Number of ids.
    pub(crate) fn len(&self) -> usize {
        self.lists.iter().map(Vec::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("lock-{i:08}")).collect()
    }

    /// `ids` (slot `i` holding `ids[i]`) sorted for `by_id` in `parts`
    /// consecutive parts, each numbering its slots from 0, as the parts of
    /// a forked restore do.
    fn sorted(by_id: &ById, ids: &[String], parts: usize) -> Vec<(ShardedIds, SlotId)> {
        let per_part = ids.len().div_ceil(parts);
        let chunks = ids.chunks(per_part).enumerate().map(|(n, chunk)| {
            let mut sorted = by_id.sorter(chunk.len());
            for (slot, id) in chunk.iter().enumerate() {
                sorted.push(id, slot as SlotId);
            }
            (sorted, (n * per_part) as SlotId)
        });
        chunks.collect()
    }

    #[test]
    fn ids_added_in_bulk_are_found_as_ids_added_one_by_one_are() {
        let ids = ids(20_000);
        let id_of = |s: SlotId| ids[s as usize].as_str();
        let mut one_by_one = ById::default();
        for (slot, id) in ids.iter().enumerate() {
            assert_eq!(one_by_one.insert(id, slot as SlotId, id_of), Ok(()));
        }
        let mut bulk = ById::default();
        assert_eq!(bulk.fill(sorted(&bulk, &ids, 2), id_of), Ok(()));
        assert_eq!((bulk.len(), one_by_one.len()), (ids.len(), ids.len()));
        for (slot, id) in ids.iter().enumerate() {
            assert_eq!(bulk.get(id, id_of), Some(slot as SlotId), "{id}");
            assert_eq!(one_by_one.get(id, id_of), Some(slot as SlotId), "{id}");
        }
        assert_eq!(bulk.get("lock-absent", id_of), None);
        for (slot, id) in ids.iter().enumerate().step_by(2) {
            bulk.remove(id, slot as SlotId);
        }
        assert_eq!(bulk.len(), ids.len() / 2);
        for (slot, id) in ids.iter().enumerate() {
            let expected = (slot % 2 == 1).then_some(slot as SlotId);
            assert_eq!(bulk.get(id, id_of), expected, "{id}");
        }
        // Removing an id that is not there changes nothing.
        bulk.remove(&ids[0], 0);
        assert_eq!(bulk.len(), ids.len() / 2);
    }

    #[test]
    fn a_repeated_id_in_a_bulk_add_names_the_slot_that_has_it() {
        let mut ids = ids(1_000);
        ids[700] = ids[300].clone();
        let id_of = |s: SlotId| ids[s as usize].as_str();
        let mut by_id = ById::default();
        assert_eq!(by_id.fill(sorted(&by_id, &ids, 2), id_of), Err(300));
        // And one by one, the same.
        let mut by_id = ById::default();
        let first_error = ids.iter().enumerate().find_map(|(slot, id)| by_id.insert(id, slot as SlotId, id_of).err());
        assert_eq!(first_error, Some(300));
    }

    #[test]
    fn ids_spread_over_every_shard() {
        let ids = ids(SHARDS * 256);
        let id_of = |s: SlotId| ids[s as usize].as_str();
        let mut by_id = ById::default();
        by_id.fill(sorted(&by_id, &ids, 1), id_of).expect("distinct ids");
        let lens = by_id.shard_lens();
        let (least, most) = (lens.iter().min().copied(), lens.iter().max().copied());
        // 256 ids a shard on average: a binomial spread stays well inside
        // these bounds; a shard chosen by bits that do not vary would not.
        assert!(least >= Some(150) && most <= Some(400), "shard sizes from {least:?} to {most:?}");
    }
}
