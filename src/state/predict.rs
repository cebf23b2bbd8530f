//! The outcomes of a group of commands of puts and checked grants, found
//! without changing the state: what the WAL writer needs before it logs a
//! group, at the cost of a test query per grant instead of applying the
//! group and rolling it back under the write lock.
//!
//! Each grant is judged against the state's answer for it, corrected by
//! the locks the group wrote before it: a held lock whose id an earlier
//! write of the group took over is gone (the write replaced it, wherever it
//! put it), and every lock the group wrote earlier on the grant's file is
//! judged too. A transaction whose grant is refused fails whole, so its
//! writes never count for the requests after it. `State::apply` is the
//! definition; `predictions_are_what_applying_gives` compares the two.

use super::command::Command;
use super::machine::State;
use crate::error::{Error, Result};
use crate::model::conflict::verdict;
use crate::model::{Conflicts, PersistedLock, Verdict};
use crate::op::{Op, Outcome};
use std::collections::HashMap;

/// The locks a group wrote so far, by id and by file, with the journal of
/// the current transaction's writes (undone when it fails).
#[derive(Default)]
struct Written<'a> {
    by_id: HashMap<&'a str, &'a PersistedLock>,
    by_file: HashMap<&'a str, Vec<&'a PersistedLock>>,
    /// Each write of the current transaction and the lock it replaced.
    journal: Vec<(&'a PersistedLock, Option<&'a PersistedLock>)>,
}

impl<'a> Written<'a> {
    fn add(&mut self, lock: &'a PersistedLock) {
        let old = self.by_id.insert(&lock.id, lock);
        if let Some(old) = old {
            let on_file = self.by_file.get_mut(&*old.file_id).expect("a written lock is on its file's list");
            on_file.retain(|l| l.id != old.id);
        }
        self.by_file.entry(&lock.file_id).or_default().push(lock);
        self.journal.push((lock, old));
    }

    /// Keeps the current transaction's writes.
    fn commit(&mut self) {
        self.journal.clear();
    }

    /// Undoes the current transaction's writes, newest first.
    fn revert(&mut self) {
        while let Some((lock, old)) = self.journal.pop() {
            let on_file = self.by_file.get_mut(&*lock.file_id).expect("a written lock is on its file's list");
            on_file.retain(|l| l.id != lock.id);
            match old {
                Some(old) => {
                    self.by_id.insert(&old.id, old);
                    self.by_file.entry(&old.file_id).or_default().push(old);
                }
                None => {
                    self.by_id.remove(&*lock.id);
                }
            }
        }
    }
}

impl State {
    /// The outcome of each of `commands`, applied in order, when every one
    /// is a transaction of lock puts, checked grants, client puts and
    /// record puts (the common shape of a busy writer's group); `None`
    /// otherwise (the caller then applies them and rolls back). Changes
    /// nothing.
    pub fn predict<'a>(&self, commands: impl IntoIterator<Item = &'a Command>) -> Option<Vec<Result<Vec<Outcome>>>> {
        let commands: Vec<&Command> = commands.into_iter().collect();
        let predictable =
            |op: &Op| matches!(op, Op::PutLock(_) | Op::Grant(_) | Op::PutClient(_) | Op::PutRecord { .. });
        if !commands.iter().all(|c| matches!(c, Command::Txn(ops) if ops.iter().all(predictable))) {
            return None;
        }
        let mut written = Written::default();
        let outcomes = commands
            .into_iter()
            .map(|command| {
                let ops = command.ops();
                crate::op::validate_ops(ops)?;
                for op in ops {
                    match op {
                        Op::PutLock(lock) => written.add(lock),
                        Op::Grant(lock) => {
                            let conflicts = self.judge_in_group(lock, &written);
                            if !conflicts.is_clear() {
                                written.revert();
                                return Err(Error::Conflict {
                                    id: lock.id.to_string(),
                                    conflicts: Box::new(conflicts),
                                });
                            }
                            written.add(lock);
                        }
                        _ => {}
                    }
                }
                written.commit();
                Ok(vec![Outcome::Done; ops.len()])
            })
            .collect();
        Some(outcomes)
    }

    /// The test query for `candidate` after the group's earlier writes.
    fn judge_in_group(&self, candidate: &PersistedLock, written: &Written<'_>) -> Conflicts {
        let mut out = self.test_lock(candidate);
        out.holders.retain(|held| !written.by_id.contains_key(&*held.id));
        out.to_break.retain(|held| !written.by_id.contains_key(&*held.id));
        // The epoch a put stamps is the state's, as `apply` stamps it.
        let stamped = |lock: &PersistedLock| PersistedLock { server_epoch: self.epoch(), ..lock.clone() };
        for lock in written.by_file.get(&*candidate.file_id).into_iter().flatten() {
            match verdict(candidate, lock) {
                Verdict::Compatible => {}
                Verdict::Conflict => out.holders.push(stamped(lock)),
                Verdict::Break => out.to_break.push(stamped(lock)),
            }
        }
        out.sort();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ByteRange, LockKind, LockType, RangeFlavor};
    use crate::state::Undo;
    use proptest::prelude::*;

    fn lock(id: u8, file: u8, owner: u8, page: u8, exclusive: bool) -> PersistedLock {
        let mut lock = crate::testing::sample::byte_range(
            &format!("l{id}"),
            "s",
            &format!("f{file}"),
            &format!("o{owner}"),
            &format!("c{owner}"),
        );
        let lock_type = if exclusive { LockType::Exclusive } else { LockType::Shared };
        lock.kind = LockKind::ByteRange(ByteRange {
            lock_type,
            offset: u64::from(page) * 10,
            length: 15,
            zero_byte: false,
            flavor: RangeFlavor::Posix,
        });
        lock
    }

    fn op() -> impl Strategy<Value = Op> {
        let lock = (0..24u8, 0..3u8, 0..4u8, 0..6u8, any::<bool>())
            .prop_map(|(id, file, owner, page, exclusive)| lock(id, file, owner, page, exclusive));
        prop_oneof![
            3 => lock.clone().prop_map(Op::Grant),
            2 => lock.prop_map(Op::PutLock),
            1 => (0..3u8).prop_map(|c| Op::PutClient(crate::testing::sample::client(&format!("c{c}")))),
        ]
    }

    proptest! {
        /// On a state of random locks, a random group of puts and grants
        /// (several per transaction, ids and files reused so that writes
        /// replace and move each other's locks): the predicted outcomes are
        /// those of applying the group, error for error.
        #[test]
        fn predictions_are_what_applying_gives(
            held in prop::collection::vec(op(), 0..30),
            group in prop::collection::vec(prop::collection::vec(op(), 1..4), 1..12),
        ) {
            let mut state = State::new();
            state.apply(&Command::Open { epoch: 2 }).unwrap();
            for op in held {
                let put = match op { Op::Grant(lock) => Op::PutLock(lock), other => other };
                state.apply(&Command::Txn(vec![put])).unwrap();
            }
            let commands: Vec<Command> = group.into_iter().map(Command::Txn).collect();
            let predicted = state.predict(&commands).expect("puts and grants are predictable");
            let mut undo = Undo::recording();
            let applied: Vec<_> = commands.iter().map(|c| state.apply_undoable(c, &mut undo)).collect();
            state.rollback(undo);
            prop_assert_eq!(format!("{predicted:?}"), format!("{applied:?}"));
        }
    }

    #[test]
    fn other_operations_are_not_predicted() {
        let state = State::new();
        let delete = Command::Txn(vec![Op::DeleteLock { id: "x".into() }]);
        assert!(state.predict([&delete]).is_none());
        assert!(state.predict([&Command::CleanShutdown]).is_none());
        let refused = Command::Txn(vec![Op::Grant(lock(1, 0, 1, 0, true)), Op::Grant(lock(2, 0, 2, 0, true))]);
        let predicted = state.predict([&refused]).unwrap();
        assert!(matches!(&predicted[0], Err(Error::Conflict { id, .. }) if id == "l2"), "{predicted:?}");
    }
}
