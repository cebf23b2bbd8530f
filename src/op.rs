//! The mutating operations of a store, as data.
//!
//! Every write a [`LockStore`](crate::LockStore) accepts is one [`Op`] or a
//! transaction of several; the state machine applies them and the WAL logs
//! them, so one definition serves the API, replay and the tests.

use crate::error::Result;
use crate::model::{self, ClientKind, ClientRecord, ClientSelector, PersistedLock, validate};
use serde::{Deserialize, Serialize};

/// One mutation. A transaction is a `Vec<Op>` applied all or nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// Grant: insert or replace the lock with this id (the store stamps
    /// `server_epoch` with its current epoch).
    PutLock(PersistedLock),
    /// Update an existing lock (a lease's state changes, a delegation is
    /// recalled): replace every field but `server_epoch`, which keeps the
    /// epoch the lock was granted or reclaimed in, so an update during
    /// grace is not a reclaim. Fails with not-found when it does not exist.
    UpdateLock(PersistedLock),
    /// Remove one lock; fails with not-found when it does not exist.
    DeleteLock {
        /// The lock id.
        id: String,
    },
    /// Remove every lock of a client; yields the count (0 is not an error).
    DeleteLocksByClient {
        /// The client.
        client_id: String,
    },
    /// Remove every lock on a file; yields the count (0 is not an error).
    DeleteLocksByFile {
        /// The file.
        file_id: String,
    },
    /// Insert or replace a client record.
    PutClient(ClientRecord),
    /// Remove a client record; fails with not-found when it does not exist.
    DeleteClient {
        /// Its namespace.
        kind: ClientKind,
        /// The client.
        client_id: String,
    },
    /// Remove every client record the selector matches; yields the count
    /// (0 is not an error, so a delete by id is idempotent).
    DeleteClients(ClientSelector),
    /// Set a client record's `reclaim_complete` (NFSv4.1
    /// RECLAIM_COMPLETE) without a read-modify-write; fails with not-found
    /// when it does not exist.
    MarkReclaimComplete {
        /// Its namespace.
        kind: ClientKind,
        /// The client.
        client_id: String,
    },
    /// Re-stamp a lock from an earlier epoch with the current one, if it
    /// belongs to `client_id` (anti-steal).
    Reclaim {
        /// The lock id.
        id: String,
        /// The client reclaiming it.
        client_id: String,
    },
    /// End the grace period: remove every lock from an earlier epoch, on
    /// one share or (`None`) on every share.
    EndGrace {
        /// The share whose grace period ends; `None` for the whole store.
        share: Option<String>,
    },
}

/// What one [`Op`] produced.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// The operation was applied (puts, updates, single deletes, marks).
    Done,
    /// How many locks (or client records) a bulk delete removed.
    Count(u64),
    /// The lock a reclaim re-stamped, as now stored.
    Lock(PersistedLock),
    /// The locks `EndGrace` removed, sorted by id.
    Locks(Vec<PersistedLock>),
}

impl Op {
    /// Checks the operation's input against the model's limits. Pure.
    pub fn validate(&self) -> Result<()> {
        match self {
            Op::PutLock(lock) | Op::UpdateLock(lock) => validate::lock(lock),
            Op::DeleteLock { id } => validate::id("id", id),
            Op::DeleteLocksByClient { client_id }
            | Op::DeleteClient { client_id, .. }
            | Op::MarkReclaimComplete { client_id, .. } => validate::id("client_id", client_id),
            Op::DeleteClients(selector) => validate::selector(selector),
            Op::DeleteLocksByFile { file_id } => validate::id("file_id", file_id),
            Op::PutClient(record) => validate::client(record),
            Op::Reclaim { id, client_id } => {
                validate::id("id", id)?;
                validate::id("client_id", client_id)
            }
            Op::EndGrace { share } => share.as_deref().map_or(Ok(()), |s| validate::id("share", s)),
        }
    }
}

/// Validates a whole transaction: its size and every operation in it.
pub fn validate_batch(ops: &[Op]) -> Result<()> {
    if ops.len() > model::validate::MAX_TXN_OPS {
        return Err(crate::Error::InvalidInput {
            field: "ops",
            reason: format!(
                "a transaction holds {} operations, the maximum is {}",
                ops.len(),
                model::validate::MAX_TXN_OPS
            ),
        });
    }
    ops.iter().try_for_each(Op::validate)
}
