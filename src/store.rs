//! The [`LockStore`] trait: the contract every backend keeps.

use crate::error::{Error, Result};
use crate::model::{
    ClientKind, ClientQuery, ClientRecord, ClientSelector, Conflicts, DurableHandle, FileId, Guid, HandleQuery,
    LockQuery, PersistedLock, Record, RecordScan, Timestamp, conflict, validate,
};
use crate::op::{Op, Outcome};
use async_trait::async_trait;

/// A durable (or, for the memory backend, volatile) store of lock state.
///
/// The trait is object safe: a server picks its backend at run time and keeps
/// it as `Arc<dyn LockStore>`. Every method may be called concurrently.
///
/// # Writes
///
/// Every mutation is an [`Op`]; [`transaction`](LockStore::transaction)
/// applies several all or nothing, and the single-operation methods are
/// one-operation transactions. On a durable backend a write is acknowledged
/// (its future resolves `Ok`) only once it is durable. Input is validated
/// before anything is applied: bad input returns
/// [`Error::InvalidInput`] and changes nothing.
///
/// # Limits
///
/// Checked before anything is applied ([`crate::model::validate`]; beyond
/// them, [`Error::InvalidInput`] naming the field):
///
/// | what | limit |
/// |---|---|
/// | operations in one transaction | [`MAX_TXN_OPS`](crate::model::validate::MAX_TXN_OPS) = 4,096 |
/// | ids, shares, file ids, owners, client ids, names, paths (bytes) | 1 to [`MAX_ID_LEN`](crate::model::validate::MAX_ID_LEN) = 1,024 (names and paths may be empty) |
/// | opaque fields: verifier, callback, delegation id, file handle | at most [`MAX_OPAQUE_LEN`](crate::model::validate::MAX_OPAQUE_LEN) = 1,024 bytes |
/// | keyspace name | 1 to [`MAX_SPACE_LEN`](crate::model::validate::MAX_SPACE_LEN) = 64 bytes of `[A-Za-z0-9_.-]`, starting with a letter or digit |
/// | record key / value | 1 to [`MAX_KEY_LEN`](crate::model::validate::MAX_KEY_LEN) = 1,024 bytes / at most [`MAX_VALUE_LEN`](crate::model::validate::MAX_VALUE_LEN) = 64 KiB |
/// | record and durable-handle bytes in one transaction | [`MAX_TXN_BYTES`](crate::model::validate::MAX_TXN_BYTES) = 2 MiB |
/// | one transaction, encoded | [`MAX_TXN_ENCODED`](crate::model::validate::MAX_TXN_ENCODED) = 32 MiB - 1 (one log frame) |
///
/// # Cancellation
///
/// Dropping a write future before it resolves never leaves a partial write:
/// the operation (or transaction) is either applied whole or not at all. It
/// may still be applied after the drop if it had already been handed to the
/// backend; a caller that needs to know must read the state back.
///
/// # Reads
///
/// Reads return owned copies and see only acknowledged writes: a write
/// acknowledged to one task is visible to every read that starts after it.
/// Lists are sorted by lock id (clients by client id);
/// [`for_each_lock`](LockStore::for_each_lock) hands over every lock
/// unsorted, the fastest way to read them all.
///
/// # Epochs and grace
///
/// Opening a durable store increments its epoch. A grant
/// ([`put_lock`](LockStore::put_lock)) and a [`reclaim`](LockStore::reclaim)
/// stamp the lock's `server_epoch` with the current epoch; an
/// [`update_lock`](LockStore::update_lock) keeps it. So after a restart
/// [`reclaimable`](LockStore::reclaimable) lists what clients held before,
/// [`reclaim`](LockStore::reclaim) moves a lock into the new epoch (only for
/// the client that holds it), and [`end_grace`](LockStore::end_grace) drops
/// what nobody reclaimed. A server that runs a grace period per share uses
/// the `_on_share` forms; the unscoped ones cover every share.
///
/// # Client records
///
/// NSM registrations, NFSv4 records and SMB clients live in separate
/// namespaces ([`ClientKind`]): a client id is unique within its kind.
///
/// # Durable handles
///
/// SMB2/3 opens that outlive their connection ([`DurableHandle`]), found by
/// id, file id or create GUID and listed by app instance, file handle or
/// share. A reconnect *consumes* its handle (get and delete in one step: of
/// two racing reconnects exactly one gets it), in the same transaction that
/// restores the open's locks; a scavenger *expires* those whose timeout
/// passed.
///
/// # Records
///
/// The server's own small records: named keyspaces of opaque key to value
/// bytes, read by key or scanned in key order, written in the same
/// transactions as locks (a file removed with its locks, a directory entry
/// created with its share reservation). Not a general database: they are
/// held in memory like the locks, and bounded (see
/// [`validate`](crate::model::validate)).
#[async_trait]
pub trait LockStore: Send + Sync {
    /// Applies `ops` atomically, in order, and returns one [`Outcome`] per
    /// op. If any op fails (validation, not found, refused reclaim) nothing
    /// is applied and that op's error is returned.
    async fn transaction(&self, ops: Vec<Op>) -> Result<Vec<Outcome>>;

    /// The lock with this id, or [`Error::NotFound`].
    async fn get_lock(&self, id: &str) -> Result<PersistedLock>;

    /// Every lock matching `query`, sorted by id.
    async fn list_locks(&self, query: &LockQuery) -> Result<Vec<PersistedLock>>;

    /// Hands every lock the store holds to `visit`, one owned record at a
    /// time, in no particular order (the order the backend reads fastest),
    /// and returns how many it handed over: how a server's lock manager
    /// fills its own tables at boot, without the sort and the intermediate
    /// `Vec` of [`list_locks`](LockStore::list_locks).
    ///
    /// The embedded WAL and memory backends visit the locks as they were
    /// when the call began (writes meanwhile are not seen) and hold no lock
    /// on the store while `visit` runs; the PostgreSQL backend reads one
    /// consistent listing.
    async fn for_each_lock(&self, visit: &mut (dyn FnMut(PersistedLock) + Send)) -> Result<u64> {
        let locks = self.list_locks(&LockQuery::all()).await?;
        let count = locks.len() as u64;
        locks.into_iter().for_each(visit);
        Ok(count)
    }

    /// The test query (NLM TEST, NFSv4 LOCKT, SMB lock probing): the locks
    /// on `candidate`'s file that refuse it and the leases and delegations
    /// of other clients to break or recall first, each sorted by id, by the
    /// rules of [`conflict`](crate::model::conflict) (DESIGN, "Conflict
    /// rules"). Writes nothing; a held lock with the candidate's id is
    /// skipped. The candidate is validated like a put.
    ///
    /// The default reads the file's locks with
    /// [`list_locks`](LockStore::list_locks) (one indexed query) and judges
    /// them; the memory and WAL backends answer from their state.
    async fn test_lock(&self, candidate: &PersistedLock) -> Result<Conflicts> {
        validate::lock(candidate)?;
        let locks = self.list_locks(&LockQuery::by_file(&*candidate.file_id)).await?;
        Ok(conflict::conflicts(candidate, &locks))
    }

    /// How many locks the store holds.
    async fn count(&self) -> Result<u64>;

    /// The client record of `kind` with this id, or [`Error::NotFound`].
    async fn get_client(&self, kind: ClientKind, client_id: &str) -> Result<ClientRecord>;

    /// The client records matching `query`, sorted by kind, then client id.
    async fn list_clients(&self, query: &ClientQuery) -> Result<Vec<ClientRecord>>;

    /// The durable handle with this id, or [`Error::NotFound`].
    async fn get_handle(&self, id: &str) -> Result<DurableHandle>;

    /// The durable handle with this file id, or [`Error::NotFound`].
    async fn get_handle_by_file_id(&self, file_id: &FileId) -> Result<DurableHandle>;

    /// The durable handle with this create GUID, or [`Error::NotFound`].
    async fn get_handle_by_create_guid(&self, create_guid: &Guid) -> Result<DurableHandle>;

    /// The durable handles `query` selects, sorted by id.
    async fn list_handles(&self, query: &HandleQuery) -> Result<Vec<DurableHandle>>;

    /// The value of record `key` in keyspace `space`; `None` when absent.
    async fn get_record(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// The records of `space` that `scan` selects, in key order.
    async fn scan_records(&self, space: &str, scan: &RecordScan) -> Result<Vec<Record>>;

    /// The store's current epoch (incremented each time it is opened).
    async fn epoch(&self) -> Result<u64>;

    /// Whether the incarnation before this one called
    /// [`close`](LockStore::close). A new store answers `false`, the safe
    /// default (run a grace period).
    async fn previous_shutdown_was_clean(&self) -> Result<bool>;

    /// Locks of `client_id` granted in an earlier epoch, sorted by id: what
    /// the client may reclaim during grace.
    async fn reclaimable(&self, client_id: &str) -> Result<Vec<PersistedLock>> {
        let epoch = self.epoch().await?;
        self.list_locks(&LockQuery::by_client(client_id).granted_before(epoch)).await
    }

    /// Locks of `client_id` on `share` granted in an earlier epoch, sorted
    /// by id.
    async fn reclaimable_on_share(&self, share: &str, client_id: &str) -> Result<Vec<PersistedLock>> {
        let epoch = self.epoch().await?;
        let query = LockQuery { share: Some(share.to_owned()), ..LockQuery::by_client(client_id) };
        self.list_locks(&query.granted_before(epoch)).await
    }

    /// The clients that still hold locks from an earlier epoch, on `share`
    /// or (`None`) anywhere, sorted: who has not reclaimed yet, so a server
    /// can lift grace early when the list is empty.
    async fn clients_with_unreclaimed_locks(&self, share: Option<&str>) -> Result<Vec<String>> {
        let epoch = self.epoch().await?;
        let query = LockQuery { share: share.map(str::to_owned), ..LockQuery::all() }.granted_before(epoch);
        let mut clients: Vec<String> =
            self.list_locks(&query).await?.into_iter().map(|l| String::from(&*l.client_id)).collect();
        clients.sort_unstable();
        clients.dedup();
        Ok(clients)
    }

    /// Records a clean shutdown and closes the store; later calls fail with
    /// [`Error::Closed`]. Closing twice is not an error.
    async fn close(&self) -> Result<()>;

    /// The backend itself, for what only one backend has (a WAL store's
    /// `stats()` and `compact()`, say) when the caller holds
    /// `Arc<dyn LockStore>`: `store.as_any().downcast_ref::<WalLockStore>()`.
    fn as_any(&self) -> &dyn std::any::Any;

    /// Grants: inserts or replaces a lock by id, stamped with the current
    /// epoch. Every index follows a lock whose file, owner, client or share
    /// changed.
    async fn put_lock(&self, lock: PersistedLock) -> Result<()> {
        self.transaction(vec![Op::PutLock(lock)]).await.map(drop)
    }

    /// Checked grant (see [`Op::Grant`]): puts the lock only if nothing
    /// on its file refuses it; otherwise [`Error::Conflict`] naming the
    /// holders and the leases and delegations to break first.
    async fn grant(&self, lock: PersistedLock) -> Result<()> {
        self.transaction(vec![Op::Grant(lock)]).await.map(drop)
    }

    /// Replaces an existing lock keeping its `server_epoch` (see
    /// [`Op::UpdateLock`]); [`Error::NotFound`] when it does not exist.
    async fn update_lock(&self, lock: PersistedLock) -> Result<()> {
        self.transaction(vec![Op::UpdateLock(lock)]).await.map(drop)
    }

    /// Removes a lock; [`Error::NotFound`] when it does not exist.
    async fn delete_lock(&self, id: &str) -> Result<()> {
        self.transaction(vec![Op::DeleteLock { id: id.to_owned() }]).await.map(drop)
    }

    /// Removes every lock of a client atomically; returns how many.
    async fn delete_locks_by_client(&self, client_id: &str) -> Result<u64> {
        let op = Op::DeleteLocksByClient { client_id: client_id.to_owned() };
        single(self.transaction(vec![op]).await?).and_then(count)
    }

    /// Removes every lock on a file atomically; returns how many.
    async fn delete_locks_by_file(&self, file_id: &str) -> Result<u64> {
        let op = Op::DeleteLocksByFile { file_id: file_id.to_owned() };
        single(self.transaction(vec![op]).await?).and_then(count)
    }

    /// Inserts or replaces a client record.
    async fn put_client(&self, record: ClientRecord) -> Result<()> {
        self.transaction(vec![Op::PutClient(record)]).await.map(drop)
    }

    /// Removes a client record; [`Error::NotFound`] when it does not exist.
    async fn delete_client(&self, kind: ClientKind, client_id: &str) -> Result<()> {
        let op = Op::DeleteClient { kind, client_id: client_id.to_owned() };
        self.transaction(vec![op]).await.map(drop)
    }

    /// Removes every client record `selector` matches atomically; returns
    /// how many (0 is not an error).
    async fn delete_clients(&self, selector: ClientSelector) -> Result<u64> {
        single(self.transaction(vec![Op::DeleteClients(selector)]).await?).and_then(count)
    }

    /// Sets a client record's `reclaim_complete` in one step;
    /// [`Error::NotFound`] when it does not exist.
    async fn mark_reclaim_complete(&self, kind: ClientKind, client_id: &str) -> Result<()> {
        let op = Op::MarkReclaimComplete { kind, client_id: client_id.to_owned() };
        self.transaction(vec![op]).await.map(drop)
    }

    /// Moves a lock from an earlier epoch into the current one. Refused with
    /// [`Error::ReclaimRefused`] when the lock belongs to another client or
    /// is already current; [`Error::NotFound`] when it does not exist.
    async fn reclaim(&self, id: &str, client_id: &str) -> Result<PersistedLock> {
        let op = Op::Reclaim { id: id.to_owned(), client_id: client_id.to_owned() };
        match single(self.transaction(vec![op]).await?)? {
            Outcome::Lock(lock) => Ok(lock),
            other => Err(unexpected(other)),
        }
    }

    /// Ends the grace period: atomically removes every lock granted in an
    /// earlier epoch and not reclaimed, and returns them sorted by id.
    async fn end_grace(&self) -> Result<Vec<PersistedLock>> {
        end_grace(self, None).await
    }

    /// Ends the grace period of one share: atomically removes every lock on
    /// `share` granted in an earlier epoch and not reclaimed, and returns
    /// them sorted by id.
    async fn end_grace_on_share(&self, share: &str) -> Result<Vec<PersistedLock>> {
        end_grace(self, Some(share.to_owned())).await
    }

    /// Inserts or replaces a durable handle; [`Error::HandleConflict`] when
    /// another handle holds its file id or create GUID.
    async fn put_handle(&self, handle: DurableHandle) -> Result<()> {
        self.transaction(vec![Op::PutHandle(handle)]).await.map(drop)
    }

    /// Removes a durable handle; [`Error::NotFound`] when it does not exist.
    async fn delete_handle(&self, id: &str) -> Result<()> {
        self.transaction(vec![Op::DeleteHandle { id: id.to_owned() }]).await.map(drop)
    }

    /// Gets and removes, in one step, the handle with this file id;
    /// [`Error::NotFound`] when none has it (or a racing consumer got it).
    async fn consume_handle_by_file_id(&self, file_id: &FileId) -> Result<DurableHandle> {
        handle(single(self.transaction(vec![Op::ConsumeHandleByFileId { file_id: *file_id }]).await?)?)
    }

    /// Gets and removes, in one step, the handle with this create GUID;
    /// [`Error::NotFound`] when none has it.
    async fn consume_handle_by_create_guid(&self, create_guid: &Guid) -> Result<DurableHandle> {
        let op = Op::ConsumeHandleByCreateGuid { create_guid: *create_guid };
        handle(single(self.transaction(vec![op]).await?)?)
    }

    /// Removes every handle expired at `now` and returns them sorted by id.
    async fn expire_handles(&self, now: Timestamp) -> Result<Vec<DurableHandle>> {
        match single(self.transaction(vec![Op::ExpireHandles { now }]).await?)? {
            Outcome::Handles(handles) => Ok(handles),
            other => Err(unexpected(other)),
        }
    }

    /// Inserts or replaces a record.
    async fn put_record(&self, space: &str, key: &[u8], value: &[u8]) -> Result<()> {
        let op = Op::PutRecord { space: space.to_owned(), key: key.to_vec(), value: value.to_vec() };
        self.transaction(vec![op]).await.map(drop)
    }

    /// Removes a record; [`Error::NotFound`] when it does not exist.
    async fn delete_record(&self, space: &str, key: &[u8]) -> Result<()> {
        self.transaction(vec![Op::DeleteRecord { space: space.to_owned(), key: key.to_vec() }]).await.map(drop)
    }

    /// Sets a record to `value` (`None`: removes it) only if it now holds
    /// `expected` (`None`: absent); [`Error::ConditionFailed`] otherwise.
    async fn swap_record(&self, space: &str, key: &[u8], expected: Option<&[u8]>, value: Option<&[u8]>) -> Result<()> {
        let op = Op::SwapRecord {
            space: space.to_owned(),
            key: key.to_vec(),
            expected: expected.map(<[u8]>::to_vec),
            value: value.map(<[u8]>::to_vec),
        };
        self.transaction(vec![op]).await.map(drop)
    }
}

fn handle(outcome: Outcome) -> Result<DurableHandle> {
    match outcome {
        Outcome::Handle(handle) => Ok(*handle),
        other => Err(unexpected(other)),
    }
}

async fn end_grace<S: LockStore + ?Sized>(store: &S, share: Option<String>) -> Result<Vec<PersistedLock>> {
    match single(store.transaction(vec![Op::EndGrace { share }]).await?)? {
        Outcome::Locks(locks) => Ok(locks),
        other => Err(unexpected(other)),
    }
}

fn single(mut outcomes: Vec<Outcome>) -> Result<Outcome> {
    match (outcomes.pop(), outcomes.is_empty()) {
        (Some(outcome), true) => Ok(outcome),
        _ => Err(Error::Internal("backend returned the wrong number of outcomes".into())),
    }
}

fn count(outcome: Outcome) -> Result<u64> {
    match outcome {
        Outcome::Count(n) => Ok(n),
        other => Err(unexpected(other)),
    }
}

fn unexpected(outcome: Outcome) -> Error {
    Error::Internal(format!("backend returned an unexpected outcome {outcome:?}"))
}
