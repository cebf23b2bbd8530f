//! The state machine's input: [`Command`], what the WAL logs one per
//! record, and the outcome a command has whatever state it meets
//! ([`Command::fixed_outcome`]), which lets the writer skip a trial
//! application.

use crate::error::Result;
use crate::op::{Op, Outcome};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// Largest LSN, segment number and epoch a store ever holds. Values read
/// from disk above it are damage (`Corruption`), never arithmetic that can
/// overflow: half the `u64` range leaves room for every `+ 1` the engine
/// does on them, and a store appending a million records a second reaches
/// it after about 290,000 years.
pub const MAX_COUNTER: u64 = u64::MAX >> 1;

/// The input of the state machine: what the WAL logs, one per record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// User operations, applied all or nothing.
    Txn(Vec<Op>),
    /// A new incarnation opened the store: set the epoch, mark the shutdown
    /// unclean until [`Command::CleanShutdown`].
    Open {
        /// The new epoch; must be greater than the current one.
        epoch: u64,
    },
    /// The incarnation closed cleanly.
    CleanShutdown,
}

impl Command {
    /// The operations of a transaction (none for the other commands).
    pub fn ops(&self) -> &[Op] {
        match self {
            Command::Txn(ops) => ops,
            _ => &[],
        }
    }

    /// The command as the log records it: a checked grant that was
    /// accepted is logged as the put it became, so replay never judges a
    /// conflict again (the verdict was made on the state the writer held,
    /// and a later build's rules cannot undo an acknowledged grant).
    /// Borrowed unchanged when the command holds no grant.
    pub fn logged(&self) -> Cow<'_, Command> {
        let Command::Txn(ops) = self else { return Cow::Borrowed(self) };
        if !ops.iter().any(|op| matches!(op, Op::Grant(_))) {
            return Cow::Borrowed(self);
        }
        let as_put = |op: &Op| match op {
            Op::Grant(lock) => Op::PutLock(lock.clone()),
            other => other.clone(),
        };
        Cow::Owned(Command::Txn(ops.iter().map(as_put).collect()))
    }

    /// The outcome of this command on any state, when it does not depend on
    /// the state: a transaction that fails validation, or one of puts only
    /// (a put of a lock, client or record always succeeds). `None` when the state decides. The writer
    /// uses it to skip finding a group's outcomes by trial application.
    pub fn fixed_outcome(&self) -> Option<Result<Vec<Outcome>>> {
        let Command::Txn(ops) = self else { return None };
        if let Err(e) = crate::op::validate_ops(ops) {
            return Some(Err(e));
        }
        ops.iter()
            .all(|op| matches!(op, Op::PutLock(_) | Op::PutClient(_) | Op::PutRecord { .. }))
            .then(|| Ok(vec![Outcome::Done; ops.len()]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::State;

    /// `fixed_outcome` must agree with applying the command to whatever
    /// state it meets: random workloads (puts, deletes, bulk deletes,
    /// reclaims, multi-op transactions) and, in between, invalid and edge
    /// cases the generator does not make.
    #[test]
    fn a_fixed_outcome_is_what_applying_gives() {
        let bad = |id: &str| crate::testing::sample::byte_range(id, "s", "f", "o", "c");
        let mut empty_owner = bad("x");
        empty_owner.owner_id = "".into();
        let edge_cases = [
            Command::Txn(Vec::new()),
            Command::Txn(vec![Op::PutLock(bad(""))]),
            Command::Txn(vec![Op::PutLock(bad("y")), Op::PutLock(empty_owner)]),
            Command::Txn(vec![Op::PutLock(bad("z")); crate::model::validate::MAX_TXN_OPS + 1]),
            Command::Txn(vec![Op::PutLock(bad("z")), Op::DeleteLock { id: "z".into() }]),
            Command::Txn(vec![Op::DeleteLock { id: "absent".into() }]),
            Command::CleanShutdown,
        ];
        let (mut fixed, mut state_decides, mut invalid) = (0, 0, 0);
        for seed in 0..20 {
            let mut state = State::new();
            state.apply(&Command::Open { epoch: 1 }).unwrap();
            let steps = crate::testing::workload::generate(seed, 400, 0);
            let generated = steps.into_iter().filter_map(|step| match step {
                crate::testing::workload::Step::Txn(ops) => Some(Command::Txn(ops)),
                _ => None,
            });
            for (n, cmd) in generated.enumerate() {
                let edge = edge_cases[n % edge_cases.len()].clone();
                for cmd in [cmd, edge] {
                    let predicted = cmd.fixed_outcome();
                    let applied = state.apply(&cmd);
                    match predicted {
                        Some(predicted) => {
                            fixed += 1;
                            invalid += usize::from(predicted.is_err());
                            assert_eq!(format!("{predicted:?}"), format!("{applied:?}"), "seed {seed}: {cmd:?}");
                        }
                        None => state_decides += 1,
                    }
                }
            }
        }
        assert!(
            fixed > 0 && state_decides > 0 && invalid > 0,
            "{fixed} fixed ({invalid} invalid), {state_decides} not"
        );
    }
}
