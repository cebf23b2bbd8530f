//! The read queries on a [`State`]: one lock by id, locks by query
//! (candidates from the narrowest index, sorted by id), reclaimable locks,
//! clients, counts, and the invariant check that tests and fuzzing run.

use super::index::{SlotId, Slots};
use super::machine::State;
use super::ranges::{BUILD_AT, DROP_BELOW, indexed_span};
use super::slab::{Slot, sort_by_id};
use crate::model::{
    ClientKind, ClientQuery, ClientRecord, DurableHandle, FileId, Guid, HandleQuery, LockQuery, PersistedLock, Record,
    RecordScan,
};
use std::sync::Arc;

impl State {
    /// The lock with this id.
    pub fn get(&self, id: &str) -> Option<PersistedLock> {
        let slot = self.by_id.get(id, |s| self.slots.id(s))?;
        self.slots.get(slot).map(Slot::to_lock)
    }

    /// Locks matching `query`, sorted by id. The candidates come from the
    /// smallest index that the query names, so the cost follows the answer.
    ///
    /// Each key the query names is looked up once in its index, which holds
    /// the one `Arc<str>` every lock with that key shares; a key no lock has
    /// answers at once, and a candidate is checked against the other keys by
    /// pointer, not by comparing strings.
    pub fn list(&self, query: &LockQuery) -> Vec<PersistedLock> {
        debug_assert!(self.pending_keys.is_none(), "a query while the keys are pending");
        let mut named = Vec::with_capacity(4);
        for (key, index) in [
            (query.file_id.as_deref(), &self.by_file),
            (query.owner_id.as_deref(), &self.by_owner),
            (query.client_id.as_deref(), &self.by_client),
            (query.share.as_deref(), &self.by_share),
        ] {
            if let Some(key) = key {
                match index.get(key) {
                    Some(posting) => named.push((index.which(), posting)),
                    None => return Vec::new(),
                }
            }
        }
        let matches = |slot: &Slot| {
            named.iter().all(|(which, posting)| Arc::ptr_eq(slot.key(*which), &posting.key))
                && query.matches_fields(slot.kind.filter(), slot.kind.lease_key(), slot.epoch)
        };
        let mut hits: Vec<&Slot> = match named.iter().min_by_key(|(_, posting)| posting.slots.len()) {
            Some((_, posting)) => {
                posting.slots.as_slice().iter().filter_map(|&i| self.slots.get(i)).filter(|s| matches(s)).collect()
            }
            None => self.live_slots().map(|(_, s)| s).filter(|s| matches(s)).collect(),
        };
        sort_by_id(&mut hits);
        hits.into_iter().map(Slot::to_lock).collect()
    }

    /// Locks of `client_id` from an earlier epoch, sorted by id.
    pub fn reclaimable(&self, client_id: &str) -> Vec<PersistedLock> {
        self.list(&LockQuery::by_client(client_id).granted_before(self.epoch))
    }

    /// Number of locks.
    pub fn lock_count(&self) -> usize {
        self.by_id.len()
    }

    /// The client record of `kind` with this id.
    pub fn client(&self, kind: ClientKind, client_id: &str) -> Option<ClientRecord> {
        self.clients.get(&(kind, client_id.to_owned())).cloned()
    }

    /// Every client record, sorted by kind, then client id.
    pub fn clients(&self) -> impl Iterator<Item = &ClientRecord> {
        self.clients.values()
    }

    /// The client records of one kind, sorted by client id.
    pub(super) fn clients_of(&self, kind: ClientKind) -> impl Iterator<Item = &ClientRecord> {
        self.clients.range((kind, String::new())..).take_while(move |((k, _), _)| *k == kind).map(|(_, r)| r)
    }

    /// The client records matching `query`, sorted by kind, then client id.
    pub fn list_clients(&self, query: &ClientQuery) -> Vec<ClientRecord> {
        let records: Box<dyn Iterator<Item = &ClientRecord>> = match query.kind {
            Some(kind) => Box::new(self.clients_of(kind)),
            None => Box::new(self.clients()),
        };
        records.filter(|r| query.matches(r)).cloned().collect()
    }

    /// The durable handle with this id.
    pub fn handle(&self, id: &str) -> Option<DurableHandle> {
        self.handles.get(id).cloned()
    }

    /// The durable handle with this file id.
    pub fn handle_by_file_id(&self, file_id: &FileId) -> Option<DurableHandle> {
        self.handles.id_by_file_id(file_id).and_then(|id| self.handle(id))
    }

    /// The durable handle with this create GUID.
    pub fn handle_by_create_guid(&self, guid: &Guid) -> Option<DurableHandle> {
        self.handles.id_by_guid(guid).and_then(|id| self.handle(id))
    }

    /// The durable handles `query` selects, sorted by id.
    pub fn list_handles(&self, query: &HandleQuery) -> Vec<DurableHandle> {
        self.handles.list(query)
    }

    /// Every durable handle, sorted by id.
    pub fn handles(&self) -> impl Iterator<Item = &DurableHandle> {
        self.handles.iter()
    }

    /// Number of durable handles.
    pub fn handle_count(&self) -> usize {
        self.handles.len()
    }

    /// The value of record `key` in `space`.
    pub fn record(&self, space: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.records.get(space, key).map(|v| v.to_vec())
    }

    /// The records of `space` that `scan` selects, in key order.
    pub fn scan_records(&self, space: &str, scan: &RecordScan) -> Vec<Record> {
        self.records.scan(space, scan)
    }

    /// Every keyspace with its number of records, in name order.
    pub fn record_spaces(&self) -> impl Iterator<Item = (&str, usize)> {
        self.records.spaces()
    }

    /// Every record as (space, key, value), by keyspace, then key.
    pub fn records(&self) -> impl Iterator<Item = (&str, &[u8], &[u8])> {
        self.records.iter()
    }

    /// Number of records in every keyspace.
    pub fn record_count(&self) -> usize {
        self.records.len()
    }

    /// Number of free slots (tests: a two-thread restore leaves some).
    #[cfg(test)]
    pub(crate) fn free_slot_count(&self) -> usize {
        self.free.len()
    }

    /// Number of client records.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether the last recorded shutdown was clean (no `Open` since).
    pub fn clean(&self) -> bool {
        self.clean
    }

    /// How many locks `file`'s range index holds, if it has one, its tree
    /// built first if it was not (as a test query would). For tests.
    #[cfg(test)]
    pub(crate) fn range_indexed(&self, file: &str) -> Option<usize> {
        self.ranges.get(file, || self.file_slots(file)).map(|r| r.len())
    }

    /// Whether `file` has a range index, and whether its tree is built
    /// (tests).
    #[cfg(test)]
    pub(crate) fn range_tree_built(&self, file: &str) -> Option<bool> {
        self.ranges.state(file)
    }

    /// Whether a restore left the key indexes pending (tests).
    #[cfg(test)]
    pub(crate) fn keys_pending(&self) -> bool {
        self.pending_keys.is_some()
    }

    /// Checks every index invariant; panics with a description when one is
    /// broken. For tests and fuzzing.
    pub fn check_invariants(&self) {
        self.handles.check_invariants();
        self.records.check_invariants();
        let live: Vec<(SlotId, &Slot)> = self.live_slots().collect();
        assert_eq!(live.len(), self.by_id.len(), "by_id size differs from live slots");
        assert_eq!(
            self.by_id.shard_lens().iter().sum::<usize>(),
            self.by_id.len(),
            "by_id count differs from its shards"
        );
        assert_eq!(live.len() + self.free.len(), self.slots.slots.len(), "free list out of step");
        assert!(self.slots.positions.iter().all(|p| p.len() == self.slots.slots.len()), "position arrays out of step");
        for (i, slot) in &live {
            assert_eq!(self.by_id.get(&slot.id, |s| self.slots.id(s)), Some(*i), "by_id entry of {:?}", slot.id);
        }
        for index in [&self.by_file, &self.by_owner, &self.by_client, &self.by_share] {
            let which = index.which();
            let mut seen = 0;
            for posting in index.postings() {
                assert!(posting.slots.len() > 0, "key {:?} is kept without a lock", posting.key);
                if let Slots::Many(slots) = &posting.slots {
                    assert!(slots.len() > 1, "key {:?}: one slot is held inline", posting.key);
                }
                for (position, &at) in posting.slots.as_slice().iter().enumerate() {
                    let slot = self.slots.get(at).expect("listed slot is live");
                    assert_eq!(**slot.key(which), *posting.key, "slot {at} on the wrong list");
                    assert!(Arc::ptr_eq(slot.key(which), &posting.key), "slot {at} holds its own copy of its key");
                    assert_eq!(
                        self.slots.positions[which][at as usize] as usize, position,
                        "slot {at} is not where its position says"
                    );
                }
                seen += posting.slots.len();
            }
            assert_eq!(seen, live.len(), "index {which} does not hold every lock exactly once");
            assert_eq!(index.entries(), live.len());
        }
        self.check_range_indexes();
    }

    /// Files of [`BUILD_AT`] locks or more have a range index and files of
    /// fewer than [`DROP_BELOW`] none; each built tree holds exactly its
    /// file's locks, ranges under their indexed span, and is a valid treap.
    fn check_range_indexes(&self) {
        for posting in self.by_file.postings() {
            let (locks, indexed) = (posting.slots.len(), self.ranges.state(&posting.key).is_some());
            assert!(locks < BUILD_AT || indexed, "file {:?} of {locks} locks has no range index", posting.key);
            assert!(locks >= DROP_BELOW || !indexed, "file {:?} of {locks} locks keeps a range index", posting.key);
        }
        for (file, ranges) in self.ranges.files() {
            let posting = self.by_file.get(file).expect("a file with a range index has locks");
            assert!(Arc::ptr_eq(file, &posting.key), "range index of {file:?} holds its own copy of the key");
            let Some(ranges) = ranges else { continue };
            let (mut want_ranges, mut want_whole) = (Vec::new(), Vec::new());
            for &at in posting.slots.as_slice() {
                match indexed_span(&self.slots.get(at).expect("listed slot is live").kind) {
                    Some((first, last)) => want_ranges.push((first, last, at)),
                    None => want_whole.push(at),
                }
            }
            want_ranges.sort_unstable_by_key(|&(first, _, at)| (first, at));
            want_whole.sort_unstable();
            assert_eq!(ranges.check(), (want_ranges, want_whole), "range index of {file:?}");
            assert_eq!(ranges.len(), posting.slots.len());
        }
    }
}
