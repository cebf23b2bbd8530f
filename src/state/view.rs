//! The snapshot's side of the state: a [`StateView`], the point-in-time
//! copy a compaction encodes, which shares the slot chunks with the live
//! state (copy on write) instead of copying them.

use super::machine::State;
use super::slab::{Chunks, Slot};
use crate::model::{ClientRecord, DurableHandle};

/// A point-in-time copy of the state for a snapshot. It shares the slot
/// chunks with the live state (copy on write, see [`Chunks`]), so taking it
/// costs one `Arc` per [`CHUNK`] slots; the strings, durable handles and
/// keyspaces are shared too. The client records are copied.
///
/// [`CHUNK`]: super::slab::CHUNK
pub(crate) struct StateView {
    slots: Chunks,
    /// How many slots are live.
    pub(crate) locks: usize,
    pub(crate) clients: Vec<ClientRecord>,
    /// The durable handles, sorted by id (shared with the state).
    pub(crate) handles: Vec<std::sync::Arc<DurableHandle>>,
    /// Every keyspace, shared with the state (copy on write).
    pub(crate) records: Vec<(String, super::records::Space)>,
    pub(crate) epoch: u64,
    pub(crate) clean: bool,
}

impl StateView {
    /// How many records the view holds.
    pub(crate) fn record_count(&self) -> usize {
        self.records.iter().map(|(_, space)| space.len()).sum()
    }

    /// Every record as (space, key, value), by space, then key.
    pub(crate) fn records(&self) -> impl Iterator<Item = (&str, &[u8], &[u8])> {
        self.records.iter().flat_map(|(name, space)| space.iter().map(move |(k, v)| (name.as_str(), &k[..], &v[..])))
    }

    /// The live slots, in slab order.
    pub(crate) fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.slots.iter().flatten()
    }
}

impl State {
    /// A point-in-time copy for a snapshot (see [`StateView`]).
    pub(crate) fn view(&self) -> StateView {
        StateView {
            slots: self.slots.slots.clone(),
            locks: self.by_id.len(),
            clients: self.clients.values().cloned().collect(),
            handles: self.handles.shared().cloned().collect(),
            records: self.records.shared(),
            epoch: self.epoch,
            clean: self.clean,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{LockQuery, PersistedLock};
    use crate::state::Command;
    use crate::state::slab::CHUNK;

    /// A view is a point in time: writes after it (puts into new and freed
    /// slots, upserts, reclaims, deletes, bulk deletes, across several
    /// chunks) never show through, and the live state still checks out.
    #[test]
    fn a_view_does_not_change_when_the_state_does() {
        use crate::op::Op;
        use crate::testing::sample::byte_range;
        let lock = |i: usize| byte_range(&format!("l{i:05}"), "s", &format!("f{}", i % 7), "o", &format!("c{}", i % 3));
        let mut state = State::new();
        let count = CHUNK * 3 + 17;
        state.apply(&Command::Open { epoch: 1 }).unwrap();
        state.apply(&Command::Txn((0..count).map(|i| Op::PutLock(lock(i))).collect())).unwrap();
        let before = state.list(&LockQuery::all());
        let view = state.view();
        state.apply(&Command::Open { epoch: 2 }).unwrap();
        for i in (0..count).step_by(5) {
            state.apply(&Command::Txn(vec![Op::DeleteLock { id: lock(i).id.to_string() }])).unwrap();
        }
        for i in (1..count).step_by(7) {
            let moved = byte_range(&lock(i).id, "s2", "elsewhere", "o2", "c9");
            state.apply(&Command::Txn(vec![Op::PutLock(moved)])).unwrap();
        }
        state.apply(&Command::Txn(vec![Op::Reclaim { id: lock(3).id.to_string(), client_id: "c0".into() }])).unwrap();
        state.apply(&Command::Txn(vec![Op::DeleteLocksByClient { client_id: "c1".into() }])).unwrap();
        state.apply(&Command::Txn((0..CHUNK).map(|i| Op::PutLock(lock(count + i))).collect())).unwrap();
        state.check_invariants();
        let mut seen: Vec<PersistedLock> = view.slots().map(Slot::to_lock).collect();
        seen.sort_by(|a, b| a.id.cmp(&b.id));
        assert_eq!(view.locks, before.len());
        assert_eq!(seen, before, "the view changed with the state");
        assert_ne!(state.list(&LockQuery::all()), before, "the state did change");
    }
}
