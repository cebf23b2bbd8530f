//! lockwal's memory backend: nothing durable, the upper bound of what the
//! state machine and its indexes cost.

use crate::engine::{Caps, Peer, Restored, Store, unsupported};
use crate::{Dataset, Result};
use async_trait::async_trait;
use lockwal::model::{PersistedLock, validate::MAX_TXN_OPS};
use lockwal::{LockQuery, LockStore, MemoryLockStore, Op};
use std::path::Path;
use std::sync::Arc;

/// The memory-backend peer.
pub struct Memory;

struct MemoryStore(MemoryLockStore);

#[async_trait]
impl Peer for Memory {
    fn name(&self) -> &'static str {
        "lockwal-memory"
    }

    fn config(&self) -> String {
        "lockwal MemoryLockStore: volatile, no I/O (the upper bound, not a durable store)".into()
    }

    fn caps(&self) -> Caps {
        Caps { restore: false, ..Caps::ALL }
    }

    async fn open(&self, _dir: &Path) -> Result<Arc<dyn Store>> {
        Ok(Arc::new(MemoryStore(MemoryLockStore::new())))
    }
}

/// Puts `locks` as transactions of at most [`MAX_TXN_OPS`] puts.
pub(crate) async fn load_in_transactions(store: &dyn LockStore, locks: Vec<PersistedLock>) -> Result<()> {
    let mut ops: Vec<Op> = locks.into_iter().map(Op::PutLock).collect();
    while !ops.is_empty() {
        let rest = ops.split_off(ops.len().min(MAX_TXN_OPS));
        store.transaction(ops).await?;
        ops = rest;
    }
    Ok(())
}

#[async_trait]
impl Store for MemoryStore {
    fn lockwal(&self) -> Option<&dyn LockStore> {
        Some(&self.0)
    }

    async fn put(&self, lock: PersistedLock) -> Result<()> {
        Ok(self.0.put_lock(lock).await?)
    }

    async fn delete(&self, lock: &PersistedLock) -> Result<()> {
        Ok(self.0.delete_lock(&lock.id).await?)
    }

    async fn load(&self, locks: Vec<PersistedLock>) -> Result<()> {
        load_in_transactions(&self.0, locks).await
    }

    async fn by_client(&self, client: &str) -> Result<Vec<PersistedLock>> {
        Ok(self.0.list_locks(&LockQuery::by_client(client)).await?)
    }

    async fn by_file(&self, file: &str) -> Result<Vec<PersistedLock>> {
        Ok(self.0.list_locks(&LockQuery::by_file(file)).await?)
    }

    async fn read_all(&self, _data: &Dataset) -> Result<Restored> {
        Err(unsupported("lockwal-memory", "restore (it is volatile)"))
    }

    async fn close(&self) -> Result<()> {
        Ok(self.0.close().await?)
    }
}
