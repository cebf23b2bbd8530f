//! The pure state machine: the indexed in-memory lock state and the one
//! function, [`State::apply`], that changes it.
//!
//! No I/O happens here. The memory backend, WAL replay, the WAL writer and
//! the property-test model all apply [`Command`]s through this code, so they
//! cannot disagree about what an operation means.

mod index;
mod machine;

pub use machine::{Command, State, Undo};
pub(crate) use machine::{FinishError, LockEntry, Part, RestoreError, Restorer, StateView};
