//! The test query on a [`State`]: which locks on the candidate's file
//! refuse it, and which leases and delegations must be broken first, by
//! the rules of [`crate::model::conflict`].
//!
//! A file with a range index (`ranges`: files of many locks) is asked for
//! the ranges over the candidate's bytes and its other locks, O(log m + k)
//! in the m locks of the file (the file's first query builds its tree, in
//! O(m log m)); a file of a few locks has each judged.

use super::index::SlotId;
use super::machine::State;
use super::ranges::span;
use super::slab::Slot;
use crate::model::conflict::{Held, judge};
use crate::model::{Conflicts, LockKind, PersistedLock, Verdict};

impl State {
    /// The locks on `candidate`'s file that conflict with it and the
    /// leases and delegations to break first, each sorted by id. Writes
    /// nothing; a lock with the candidate's id is skipped (the candidate
    /// would replace it).
    pub fn test_lock(&self, candidate: &PersistedLock) -> Conflicts {
        debug_assert!(self.pending_keys.is_none(), "a test query while the keys are pending");
        let mut out = Conflicts::default();
        let mut judge_slot = |i: SlotId| {
            let Some(slot) = self.slots.get(i) else { return };
            // Judged on the slot's own fields; only a hit becomes a lock.
            let kind = slot.kind.to_kind();
            let held = Held { id: &slot.id, owner_id: &slot.owner, client_id: &slot.client, kind: &kind };
            match judge(candidate, &held) {
                Verdict::Compatible => {}
                Verdict::Conflict => out.holders.push(slot.to_lock()),
                Verdict::Break => out.to_break.push(slot.to_lock()),
            }
        };
        if let Some(ranges) = self.ranges.get(&candidate.file_id, || self.file_slots(&candidate.file_id)) {
            // Only overlapping ranges can refuse a range; no range refuses
            // anything else. The other kinds are judged for every candidate.
            if let LockKind::ByteRange(range) = &candidate.kind {
                let (first, last) = span(range);
                ranges.ranges_over(first, last, &mut judge_slot);
            }
            ranges.whole_file().for_each(&mut judge_slot);
        } else if let Some(posting) = self.by_file.get(&candidate.file_id) {
            posting.slots.as_slice().iter().copied().for_each(judge_slot);
        }
        out.sort();
        out
    }

    /// Every lock of `file`, with its slot.
    pub(super) fn file_slots(&self, file: &str) -> Vec<(SlotId, &Slot)> {
        let Some(posting) = self.by_file.get(file) else { return Vec::new() };
        posting.slots.as_slice().iter().map(|&s| (s, self.slots.get(s).expect("a listed slot is live"))).collect()
    }
}
