//! The volatile backend: the state machine behind a reader-writer lock.
//!
//! For tests and for deployments that accept losing lock state on restart.

use crate::error::{Error, Result};
use crate::model::{
    ClientKind, ClientQuery, ClientRecord, Conflicts, DurableHandle, FileId, Guid, HandleQuery, LockQuery,
    PersistedLock, Record, RecordScan, validate,
};
use crate::op::{Op, Outcome, validate_batch};
use crate::state::{Command, State};
use crate::store::LockStore;
use async_trait::async_trait;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// A [`LockStore`] that keeps everything in memory.
///
/// A new store has epoch 1 and reports an unclean previous shutdown.
/// [`restart`](MemoryLockStore::restart) simulates a server restart that
/// kept the memory (the next epoch, grace-period state intact).
pub struct MemoryLockStore {
    inner: RwLock<Inner>,
}

struct Inner {
    state: State,
    previous_clean: bool,
    closed: bool,
}

impl Default for MemoryLockStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryLockStore {
    /// An empty store at epoch 1.
    pub fn new() -> Self {
        Self::opened(State::new())
    }

    fn opened(mut state: State) -> Self {
        let previous_clean = state.clean();
        let epoch = state.epoch() + 1;
        state.apply(&Command::Open { epoch }).expect("a greater epoch is always accepted");
        Self { inner: RwLock::new(Inner { state, previous_clean, closed: false }) }
    }

    /// A new incarnation over a copy of this store's state: the epoch is
    /// incremented and `previous_shutdown_was_clean` tells whether this
    /// store was closed first.
    pub fn restart(&self) -> Self {
        Self::opened(self.read().state.clone())
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the state half
        // applied (apply is atomic), so a poisoned lock is still usable.
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    fn open_read(&self) -> Result<RwLockReadGuard<'_, Inner>> {
        let inner = self.read();
        if inner.closed {
            return Err(Error::Closed);
        }
        Ok(inner)
    }
}

#[async_trait]
impl LockStore for MemoryLockStore {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    async fn transaction(&self, ops: Vec<Op>) -> Result<Vec<Outcome>> {
        validate_batch(&ops)?;
        let mut inner = self.write();
        if inner.closed {
            return Err(Error::Closed);
        }
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        inner.state.apply(&Command::Txn(ops))
    }

    async fn get_lock(&self, id: &str) -> Result<PersistedLock> {
        self.open_read()?.state.get(id).ok_or_else(|| Error::lock_not_found(id))
    }

    async fn test_lock(&self, candidate: &PersistedLock) -> Result<Conflicts> {
        validate::lock(candidate)?;
        Ok(self.open_read()?.state.test_lock(candidate))
    }

    async fn list_locks(&self, query: &LockQuery) -> Result<Vec<PersistedLock>> {
        Ok(self.open_read()?.state.list(query))
    }

    async fn for_each_lock(&self, visit: &mut (dyn FnMut(PersistedLock) + Send)) -> Result<u64> {
        let locks = self.open_read()?.state.locks();
        let count = locks.len() as u64;
        locks.for_each(visit);
        Ok(count)
    }

    async fn count(&self) -> Result<u64> {
        Ok(self.open_read()?.state.lock_count() as u64)
    }

    async fn get_client(&self, kind: ClientKind, client_id: &str) -> Result<ClientRecord> {
        self.open_read()?.state.client(kind, client_id).ok_or_else(|| Error::client_not_found(kind, client_id))
    }

    async fn list_clients(&self, query: &ClientQuery) -> Result<Vec<ClientRecord>> {
        Ok(self.open_read()?.state.list_clients(query))
    }

    async fn get_handle(&self, id: &str) -> Result<DurableHandle> {
        validate::id("id", id)?;
        self.open_read()?.state.handle(id).ok_or_else(|| Error::handle_not_found(id))
    }

    async fn get_handle_by_file_id(&self, file_id: &FileId) -> Result<DurableHandle> {
        self.open_read()?.state.handle_by_file_id(file_id).ok_or_else(|| Error::handle_not_found_by_file_id(file_id))
    }

    async fn get_handle_by_create_guid(&self, create_guid: &Guid) -> Result<DurableHandle> {
        let state = &self.open_read()?.state;
        state.handle_by_create_guid(create_guid).ok_or_else(|| Error::handle_not_found_by_create_guid(create_guid))
    }

    async fn list_handles(&self, query: &HandleQuery) -> Result<Vec<DurableHandle>> {
        Ok(self.open_read()?.state.list_handles(query))
    }

    async fn get_record(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        validate::space(space)?;
        validate::record_key(key)?;
        Ok(self.open_read()?.state.record(space, key))
    }

    async fn scan_records(&self, space: &str, scan: &RecordScan) -> Result<Vec<Record>> {
        validate::scan(space, scan)?;
        Ok(self.open_read()?.state.scan_records(space, scan))
    }

    async fn epoch(&self) -> Result<u64> {
        Ok(self.open_read()?.state.epoch())
    }

    async fn previous_shutdown_was_clean(&self) -> Result<bool> {
        Ok(self.open_read()?.previous_clean)
    }

    async fn close(&self) -> Result<()> {
        let mut inner = self.write();
        if !inner.closed {
            inner.state.apply(&Command::CleanShutdown)?;
            inner.closed = true;
        }
        Ok(())
    }
}
