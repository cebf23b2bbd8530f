//! The test query on a [`State`]: which locks on the candidate's file
//! refuse it, and which leases and delegations must be broken first, by
//! the rules of [`crate::model::conflict`].
//!
//! Phase 1 reads the candidate's file from the by-file index and judges
//! each of that file's locks: O(1) to find the file, O(m) in the locks of
//! that file (not of the store). A per-file interval index (O(log m + k))
//! is phase 1's open item (docs/decisions/0045-conflict-rules.md).

use super::machine::State;
use crate::model::conflict::{Held, judge};
use crate::model::{Conflicts, PersistedLock, Verdict};

impl State {
    /// The locks on `candidate`'s file that conflict with it and the
    /// leases and delegations to break first, each sorted by id. Writes
    /// nothing; a lock with the candidate's id is skipped (the candidate
    /// would replace it).
    pub fn test_lock(&self, candidate: &PersistedLock) -> Conflicts {
        let mut out = Conflicts::default();
        let Some(posting) = self.by_file.get(&candidate.file_id) else {
            return out;
        };
        for slot in posting.slots.as_slice().iter().filter_map(|&i| self.slots.get(i)) {
            // Judged on the slot's own fields; only a hit becomes a lock.
            let kind = slot.kind.to_kind();
            let held = Held { id: &slot.id, owner_id: &slot.owner, client_id: &slot.client, kind: &kind };
            match judge(candidate, &held) {
                Verdict::Compatible => {}
                Verdict::Conflict => out.holders.push(slot.to_lock()),
                Verdict::Break => out.to_break.push(slot.to_lock()),
            }
        }
        out.sort();
        out
    }
}
