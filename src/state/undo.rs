//! The undo log: the steps that take applied commands back, recorded by
//! [`State::apply_undoable`](super::State::apply_undoable) and replayed,
//! newest first, by [`State::rollback`](super::State::rollback).

use super::slab::Slot;
use crate::model::{ClientKind, ClientRecord, DurableHandle};
use std::sync::Arc;

pub(super) enum UndoStep {
    /// Restore the lock `id` to `prev` (absent when `None`).
    Lock { id: Arc<str>, prev: Option<Slot> },
    /// Restore the client `id` to `prev`.
    Client { id: (ClientKind, String), prev: Option<ClientRecord> },
    /// Restore the durable handle `id` to `prev`.
    Handle { id: String, prev: Option<DurableHandle> },
    /// Restore the record `key` of `space` to `prev`.
    Record { space: String, key: Vec<u8>, prev: Option<super::records::Bytes> },
    /// Restore epoch and clean flag.
    Meta { epoch: u64, clean: bool },
}

/// The steps that undo applied commands, newest last.
///
/// When a batch's outcomes depend on the state, the WAL writer applies it
/// with recording on to learn each command's outcome, rolls it back, makes
/// the log durable, then applies it for real; see `wal::writer`.
pub struct Undo {
    recording: bool,
    pub(super) steps: Vec<UndoStep>,
}

impl Undo {
    /// An undo log that records every step.
    pub fn recording() -> Self {
        Self { recording: true, steps: Vec::new() }
    }

    pub(super) fn disabled() -> Self {
        Self { recording: false, steps: Vec::new() }
    }

    pub(super) fn push(&mut self, step: UndoStep) {
        if self.recording {
            self.steps.push(step);
        }
    }
}
