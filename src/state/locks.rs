//! [`Locks`]: every lock of a state, as owned records, in slot order.
//!
//! The iterator holds its own reference to the slot chunks (the copy on
//! write a snapshot view uses, see `slab::Chunks`), so it needs no lock on
//! the state while it runs and sees the locks exactly as they were when it
//! was made: writes that land meanwhile copy the chunks they change.

use super::machine::State;
use super::slab::{CHUNK, Chunks};
use crate::model::PersistedLock;

/// Every lock of a state at one instant, in no particular order (the slab's:
/// the fastest to read), each handed out as an owned [`PersistedLock`].
///
/// Made by [`State::locks`]; what a server's lock manager reads at boot to
/// fill its own tables.
#[derive(Debug, Clone)]
pub struct Locks {
    chunks: Chunks,
    /// The next slot to look at.
    next: usize,
    /// Live locks not handed out yet.
    left: usize,
}

impl Iterator for Locks {
    type Item = PersistedLock;

    fn next(&mut self) -> Option<PersistedLock> {
        while self.left > 0 {
            let (chunk, at) = (self.next / CHUNK, self.next % CHUNK);
            self.next += 1;
            if let Some(slot) = &self.chunks.chunks[chunk][at] {
                self.left -= 1;
                return Some(slot.to_lock());
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Locks {}

impl std::iter::FusedIterator for Locks {}

impl State {
    /// Every lock, as owned records, in slot order (not sorted): see
    /// [`Locks`]. Making it costs one reference count per 256 locks.
    pub fn locks(&self) -> Locks {
        Locks { chunks: self.slots.slots.clone(), next: 0, left: self.lock_count() }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{LockQuery, PersistedLock};
    use crate::op::Op;
    use crate::state::slab::CHUNK;
    use crate::state::{Command, State};
    use crate::testing::sample::byte_range;

    fn apply(state: &mut State, op: Op) {
        state.apply(&Command::Txn(vec![op])).expect("applied");
    }

    fn put(state: &mut State, id: &str, client: &str) {
        apply(state, Op::PutLock(byte_range(id, "export", &format!("file-{id}"), "owner", client)));
    }

    fn sorted(locks: impl Iterator<Item = PersistedLock>) -> Vec<PersistedLock> {
        let mut locks: Vec<PersistedLock> = locks.collect();
        locks.sort_by(|a, b| a.id.cmp(&b.id));
        locks
    }

    /// The iterator yields exactly the live locks (holes left by deletes
    /// skipped), says how many are left, and agrees with the sorted list.
    #[test]
    fn locks_yields_every_live_lock_once_across_holes_and_chunks() {
        let mut state = State::new();
        let n = 3 * CHUNK + 17;
        for i in 0..n {
            put(&mut state, &format!("l{i:05}"), &format!("c{}", i % 7));
        }
        for i in (0..n).step_by(3) {
            apply(&mut state, Op::DeleteLock { id: format!("l{i:05}") });
        }
        let iter = state.locks();
        assert_eq!(iter.len(), n - n.div_ceil(3));
        assert_eq!(iter.len(), state.lock_count());
        assert_eq!(sorted(iter), state.list(&LockQuery::all()));
    }

    /// Writes after the iterator was made do not change what it yields.
    #[test]
    fn locks_sees_the_state_as_it_was_when_made() {
        let mut state = State::new();
        for i in 0..10 {
            put(&mut state, &format!("l{i}"), "c");
        }
        let before = state.list(&LockQuery::all());
        let iter = state.locks();
        apply(&mut state, Op::DeleteLock { id: "l3".into() });
        put(&mut state, "l99", "c");
        assert_eq!(sorted(iter), before);
        assert_eq!(state.lock_count(), 10);
        state.check_invariants();
    }
}
