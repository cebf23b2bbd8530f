//! The mutating operations of a store, as data.
//!
//! Every write a [`LockStore`](crate::LockStore) accepts is one [`Op`] or a
//! transaction of several; the state machine applies them and the WAL logs
//! them, so one definition serves the API, replay and the tests.

use crate::error::Result;
use crate::model::{
    self, ClientKind, ClientRecord, ClientSelector, DurableHandle, FileId, Guid, PersistedLock, Timestamp, validate,
};
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
    /// Insert or replace the durable handle with this id. Refused with
    /// [`Error::HandleConflict`](crate::Error::HandleConflict) when another
    /// handle holds its file id or create GUID.
    PutHandle(DurableHandle),
    /// Remove one durable handle; fails with not-found when it does not
    /// exist.
    DeleteHandle {
        /// The handle id.
        id: String,
    },
    /// Get and remove, in one step, the handle with this file id (a v1
    /// reconnect); yields it, or fails with not-found. Of two racing
    /// consumers exactly one gets it.
    ConsumeHandleByFileId {
        /// The `FileId` the client reconnects with.
        #[serde(with = "serde_bytes")]
        file_id: FileId,
    },
    /// Get and remove, in one step, the handle with this create GUID (a v2
    /// reconnect); yields it, or fails with not-found.
    ConsumeHandleByCreateGuid {
        /// The create GUID.
        #[serde(with = "serde_bytes")]
        create_guid: Guid,
    },
    /// Remove every handle expired at `now` (its `disconnected_at +
    /// timeout_ms` is before `now`) and yield them sorted by id, so the
    /// caller can delete the files of delete-pending ones.
    ExpireHandles {
        /// The scavenger's current time.
        now: Timestamp,
    },
    /// Insert or replace a record of a keyspace. (Byte fields of the
    /// operations from here on serialize as MessagePack `bin`.)
    PutRecord {
        /// The keyspace.
        space: String,
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value.
        #[serde(with = "serde_bytes")]
        value: Vec<u8>,
    },
    /// Remove a record; fails with not-found when it does not exist.
    DeleteRecord {
        /// The keyspace.
        space: String,
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
    },
    /// Compare and set: only if the record's current value is `expected`
    /// (`None`: the record is absent), set it to `value` (`None`: remove
    /// it). Otherwise fails with
    /// [`Error::ConditionFailed`](crate::Error::ConditionFailed) and, in a
    /// transaction, nothing of it is applied.
    SwapRecord {
        /// The keyspace.
        space: String,
        /// The key.
        #[serde(with = "serde_bytes")]
        key: Vec<u8>,
        /// The value the record must hold now (`None`: absent).
        #[serde(with = "serde_bytes")]
        expected: Option<Vec<u8>>,
        /// The value it gets (`None`: removed).
        #[serde(with = "serde_bytes")]
        value: Option<Vec<u8>>,
    },
    /// Checked grant: [`Op::PutLock`] only if no lock of another owner on
    /// the file refuses it and no lease or delegation of another client must
    /// be broken first, judged on the state as this point of the
    /// transaction leaves it (the owner's own locks deleted or split by
    /// earlier operations are gone). Otherwise fails with
    /// [`Error::Conflict`](crate::Error::Conflict) and, in a transaction,
    /// nothing of it is applied. Logged as the `PutLock` it becomes
    /// (DESIGN, "Checked grants").
    Grant(PersistedLock),
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
    /// The durable handle a consume removed.
    Handle(Box<DurableHandle>),
    /// The durable handles `ExpireHandles` removed, sorted by id.
    Handles(Vec<DurableHandle>),
}

impl Op {
    /// Checks the operation's input against the model's limits. Pure.
    pub fn validate(&self) -> Result<()> {
        match self {
            Op::PutLock(lock) | Op::UpdateLock(lock) | Op::Grant(lock) => validate::lock(lock),
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
            Op::PutHandle(handle) => validate::handle(handle),
            Op::DeleteHandle { id } => validate::id("id", id),
            Op::ConsumeHandleByFileId { .. } | Op::ConsumeHandleByCreateGuid { .. } | Op::ExpireHandles { .. } => {
                Ok(())
            }
            Op::PutRecord { space, key, value } => {
                validate::space(space)?;
                validate::record_key(key)?;
                validate::record_value(value)
            }
            Op::DeleteRecord { space, key } => {
                validate::space(space)?;
                validate::record_key(key)
            }
            Op::SwapRecord { space, key, expected, value } => {
                validate::space(space)?;
                validate::record_key(key)?;
                expected.as_deref().map_or(Ok(()), validate::record_value)?;
                value.as_deref().map_or(Ok(()), validate::record_value)
            }
        }
    }

    /// The variant's name, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Op::PutLock(_) => "PutLock",
            Op::UpdateLock(_) => "UpdateLock",
            Op::DeleteLock { .. } => "DeleteLock",
            Op::DeleteLocksByClient { .. } => "DeleteLocksByClient",
            Op::DeleteLocksByFile { .. } => "DeleteLocksByFile",
            Op::PutClient(_) => "PutClient",
            Op::DeleteClient { .. } => "DeleteClient",
            Op::DeleteClients(_) => "DeleteClients",
            Op::MarkReclaimComplete { .. } => "MarkReclaimComplete",
            Op::Reclaim { .. } => "Reclaim",
            Op::EndGrace { .. } => "EndGrace",
            Op::PutHandle(_) => "PutHandle",
            Op::DeleteHandle { .. } => "DeleteHandle",
            Op::ConsumeHandleByFileId { .. } => "ConsumeHandleByFileId",
            Op::ConsumeHandleByCreateGuid { .. } => "ConsumeHandleByCreateGuid",
            Op::ExpireHandles { .. } => "ExpireHandles",
            Op::PutRecord { .. } => "PutRecord",
            Op::DeleteRecord { .. } => "DeleteRecord",
            Op::SwapRecord { .. } => "SwapRecord",
            Op::Grant(_) => "Grant",
        }
    }

    /// Whether segment format 3 (and snapshot format 2) could hold the
    /// operation: the lock and client operations, not the durable-handle
    /// and record ones that format 4 added.
    pub fn in_format_3(&self) -> bool {
        !matches!(
            self,
            Op::PutHandle(_)
                | Op::DeleteHandle { .. }
                | Op::ConsumeHandleByFileId { .. }
                | Op::ConsumeHandleByCreateGuid { .. }
                | Op::ExpireHandles { .. }
                | Op::PutRecord { .. }
                | Op::DeleteRecord { .. }
                | Op::SwapRecord { .. }
        )
    }

    /// Bytes of record and durable-handle fields the operation carries,
    /// counted against [`MAX_TXN_BYTES`](model::validate::MAX_TXN_BYTES).
    fn weight(&self) -> usize {
        match self {
            Op::PutHandle(handle) => validate::handle_bytes(handle),
            Op::PutRecord { space, key, value } => space.len() + key.len() + value.len(),
            Op::DeleteRecord { space, key } => space.len() + key.len(),
            Op::SwapRecord { space, key, expected, value } => {
                space.len() + key.len() + expected.as_ref().map_or(0, Vec::len) + value.as_ref().map_or(0, Vec::len)
            }
            _ => 0,
        }
    }
}

/// Validates a whole transaction as a caller hands it to a store: what
/// [`validate_ops`] checks, and that its encoding fits one log frame (at
/// most [`MAX_TXN_ENCODED`](model::validate::MAX_TXN_ENCODED) bytes), which
/// the field limits alone do not ensure for the largest transactions.
pub fn validate_batch(ops: &[Op]) -> Result<()> {
    validate_ops(ops)?;
    // A transaction this short cannot reach the bound (each op encodes to
    // at most MAX_OP_ENCODED bytes, test
    // `the_largest_operation_of_each_kind_is_bounded`), so only long ones
    // are measured, by encoding them into a counter.
    if ops.len() > SHORT_TXN_OPS {
        let len = encoded_len(ops);
        if len > model::validate::MAX_TXN_ENCODED {
            return Err(crate::Error::InvalidInput {
                field: "ops",
                reason: format!(
                    "the transaction encodes to {len} bytes, more than one log frame holds ({})",
                    model::validate::MAX_TXN_ENCODED
                ),
            });
        }
    }
    Ok(())
}

/// Most bytes one operation of any kind encodes to, fields at their limits.
const MAX_OP_ENCODED: usize = 256 << 10;
/// Transactions of at most this many operations fit a frame whatever they
/// hold.
const SHORT_TXN_OPS: usize = 64;
const _: () = assert!(SHORT_TXN_OPS * MAX_OP_ENCODED < model::validate::MAX_TXN_ENCODED);

/// The exact length of `Command::Txn(ops)` as the log encodes it.
pub fn encoded_len(ops: &[Op]) -> usize {
    /// The shape of `Command::Txn` (variant 0, "Txn"), borrowing the ops.
    #[derive(Serialize)]
    enum Txn<'a> {
        Txn(&'a [Op]),
    }
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    rmp_serde::encode::write(&mut counter, &Txn::Txn(ops)).expect("counting cannot fail");
    counter.0
}

/// Validates a transaction's operations: how many, every field, the bytes
/// of records and handles. Pure and cheap: the state machine checks it on
/// every command it applies (logged transactions passed
/// [`validate_batch`] when they were written).
pub fn validate_ops(ops: &[Op]) -> Result<()> {
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
    ops.iter().try_for_each(Op::validate)?;
    // Counted after each op is valid, so every field is within its own
    // bound and the sum cannot overflow.
    let bytes: usize = ops.iter().map(Op::weight).sum();
    if bytes > model::validate::MAX_TXN_BYTES {
        return Err(crate::Error::InvalidInput {
            field: "ops",
            reason: format!(
                "a transaction carries {bytes} bytes of records and handles, the maximum is {}",
                model::validate::MAX_TXN_BYTES
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each operation, at its largest, encodes to at most `MAX_OP_ENCODED`
    /// bytes: what lets `validate_batch` skip measuring short transactions.
    #[test]
    fn the_largest_operation_of_each_kind_is_bounded() {
        for op in crate::testing::sample::largest_ops() {
            op.validate().expect("valid");
            let len = encoded_len(std::slice::from_ref(&op));
            assert!(len <= MAX_OP_ENCODED, "{}: {len} bytes", op.name());
        }
    }
}
