//! The pure state machine: the indexed in-memory lock state and the one
//! function, [`State::apply`], that changes it.
//!
//! No I/O happens here. The memory backend, WAL replay, the WAL writer and
//! the property-test model all apply [`Command`]s through this code, so they
//! cannot disagree about what an operation means.
//!
//! From the bottom up: `index` (the key indexes), `slab` (slot storage),
//! `handles` and `records` (the durable handles and the server's records),
//! `ranges` (the per-file range index), `command` (the input), `undo` (the
//! undo log), `machine` (the state and `apply`), `predict` (a group's outcomes without
//! applying it), `query` (the reads), `locks` (every lock, unsorted), `view` and `restore` (the two sides of a
//! snapshot).

mod command;
mod conflict;
mod handles;
mod index;
mod locks;
mod machine;
mod predict;
mod query;
mod ranges;
mod records;
mod restore;
mod slab;
mod undo;
mod view;

#[cfg(test)]
mod range_tree_tests;

pub use command::{Command, MAX_COUNTER};
pub use locks::Locks;
pub use machine::State;
pub(crate) use restore::{FinishError, Keys, LockEntry, Part, RestoreError, Restorer};
pub use undo::Undo;
pub(crate) use view::StateView;
