//! Workloads for the crash tests and fuzz targets: what a store goes
//! through (opens, transactions, compactions, closes), generated from a seed
//! or decoded from arbitrary bytes, and what must be durable after every
//! prefix of it.
//!
//! The operations cover every record kind: locks and client records,
//! durable handles (puts with fresh and with colliding file ids and create
//! GUIDs, deletes, consumes by file id and by create GUID of present and
//! absent handles, expiries at the exact boundary `disconnected_at +
//! timeout`) and the server's records (puts, deletes, swaps that succeed
//! and that fail, in [`SPACES`], with keys that share prefixes), alone and
//! mixed in one transaction, some of which fail half way.

use crate::error::Error;
use crate::op::{Op, Outcome};
use crate::testing::model::Model;

mod decode;
mod generate;
mod records;
mod targeted;
#[cfg(test)]
mod tests;

pub use decode::decode_steps;
pub use generate::generate;
pub use records::{
    DISCONNECTED_FROM, NEVER_HELD, SPACES, client, create_guid, expires_at, file_id, handle, key16, lock, record_key,
    record_value, update,
};
pub use targeted::{Group, Targeted, targeted};

/// One step of a workload, applied in order, each finished before the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Open the store: the first step, and the one after every `Close` or
    /// `Drop`.
    Open,
    /// One transaction (a single operation is a one-operation transaction).
    Txn(Vec<Op>),
    /// A compaction, awaited.
    Compact,
    /// `close()`, then drop the handle: a clean shutdown.
    Close,
    /// Drop the handle without `close()`: an unclean stop.
    Drop,
}

/// What must be durable after a prefix of a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Locks, clients, durable handles, records, and the epoch of the last
    /// open.
    pub model: Model,
    /// Whether the last incarnation closed cleanly.
    pub clean: bool,
    /// Whether the store is open after the prefix (bookkeeping of the
    /// runner; not part of the durable state).
    pub open: bool,
}

impl Expected {
    /// Before the first open: nothing, epoch 0.
    pub fn initial() -> Self {
        Self { model: Model::new(0), clean: false, open: false }
    }

    /// Applies one step; returns what a transaction answers.
    pub fn apply(&mut self, step: &Step) -> Option<Result<Vec<Outcome>, Error>> {
        match step {
            Step::Open => {
                self.model.restart();
                self.clean = false;
                self.open = true;
                None
            }
            Step::Txn(ops) => Some(self.model.apply(ops)),
            Step::Compact => None,
            Step::Close => {
                self.clean = true;
                self.open = false;
                None
            }
            Step::Drop => {
                self.open = false;
                None
            }
        }
    }

    /// The same durable state after a recovery that was itself interrupted
    /// once its epoch record was durable: one epoch later, not clean.
    pub fn reopened(&self) -> Self {
        let mut next = self.clone();
        next.model.restart();
        next.clean = false;
        next
    }
}

/// What a step answers: a transaction's outcomes or error; `None` for the
/// other steps.
pub type Answer = Option<Result<Vec<Outcome>, Error>>;

/// The expected state after every prefix: `result[j]` after the first `j`
/// steps (so `result.len() == steps.len() + 1`), and each step's answer.
pub fn expected_states(steps: &[Step]) -> (Vec<Expected>, Vec<Answer>) {
    expected_states_from(Expected::initial(), steps)
}

/// [`expected_states`] of a workload run on a store that held `initial`
/// (a store written earlier, by this or an older version).
pub fn expected_states_from(initial: Expected, steps: &[Step]) -> (Vec<Expected>, Vec<Answer>) {
    let mut now = initial;
    let mut states = vec![now.clone()];
    let mut answers = Vec::with_capacity(steps.len());
    for step in steps {
        answers.push(now.apply(step));
        states.push(now.clone());
    }
    (states, answers)
}

/// Number of operations in a workload (each op of a transaction counts).
pub fn op_count(steps: &[Step]) -> usize {
    steps.iter().map(|s| if let Step::Txn(ops) = s { ops.len() } else { 1 }).sum()
}

/// SplitMix64: a tiny deterministic generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0xA076_1D64_78BD_642F)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}
