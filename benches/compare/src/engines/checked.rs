//! A lockwal peer whose grants are checked grants
//! ([`LockStore::grant`](lockwal::LockStore::grant), `Op::Grant`): the same
//! store, the same data, every W2 grant judged against the locks on its
//! file before it is written. A refused grant (another owner's exclusive
//! lock on the same 4 KiB page: rare in this data set) is an answer the
//! store gave, so it completes the operation and is counted in
//! [`Store::stats`].

use crate::engine::{Caps, Peer, Restored, Store, unsupported};
use crate::{Dataset, Result};
use async_trait::async_trait;
use lockwal::model::PersistedLock;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// `inner`'s store with checked grants; `name` is what the tables show.
pub struct Checked {
    /// The lockwal peer it wraps.
    pub inner: Arc<dyn Peer>,
    /// Its name: the inner name and "-checked".
    pub name: &'static str,
}

impl Checked {
    /// Wraps `inner` (a lockwal peer).
    pub fn new(inner: Arc<dyn Peer>) -> Self {
        let name = match inner.name() {
            "lockwal-wal" => "lockwal-wal-checked",
            "lockwal-memory" => "lockwal-memory-checked",
            "lockwal-postgres" => "lockwal-postgres-checked",
            other => panic!("{other} has no checked grants"),
        };
        Self { inner, name }
    }
}

struct CheckedStore {
    inner: Arc<dyn Store>,
    refused: AtomicU64,
}

#[async_trait]
impl Peer for Checked {
    fn name(&self) -> &'static str {
        self.name
    }

    fn config(&self) -> String {
        format!("{}; every grant a checked grant (`LockStore::grant`)", self.inner.config())
    }

    fn caps(&self) -> Caps {
        Caps { serial: false, concurrent: true, restore: false, queries: false }
    }

    async fn open(&self, dir: &Path) -> Result<Arc<dyn Store>> {
        let inner = self.inner.open(dir).await?;
        if inner.lockwal().is_none() {
            return Err(unsupported(self.inner.name(), "checked grants"));
        }
        Ok(Arc::new(CheckedStore { inner, refused: AtomicU64::new(0) }))
    }
}

impl CheckedStore {
    fn lockwal(&self) -> &dyn lockwal::LockStore {
        self.inner.lockwal().expect("checked at open")
    }
}

/// A checked grant of `lock`; a refusal is the store's answer, counted in
/// `refused`, not an error.
pub async fn grant_counting_refusals(
    store: &dyn lockwal::LockStore,
    lock: PersistedLock,
    refused: &AtomicU64,
) -> Result<()> {
    match store.grant(lock).await {
        Ok(()) => Ok(()),
        Err(lockwal::Error::Conflict { .. }) => {
            refused.fetch_add(1, Ordering::Relaxed);
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

#[async_trait]
impl Store for CheckedStore {
    async fn put(&self, lock: PersistedLock) -> Result<()> {
        grant_counting_refusals(self.lockwal(), lock, &self.refused).await
    }

    async fn delete(&self, lock: &PersistedLock) -> Result<()> {
        self.inner.delete(lock).await
    }

    async fn load(&self, locks: Vec<PersistedLock>) -> Result<()> {
        self.inner.load(locks).await
    }

    async fn by_client(&self, client: &str) -> Result<Vec<PersistedLock>> {
        self.inner.by_client(client).await
    }

    async fn by_file(&self, file: &str) -> Result<Vec<PersistedLock>> {
        self.inner.by_file(file).await
    }

    async fn read_all(&self, data: &Dataset) -> Result<Restored> {
        self.inner.read_all(data).await
    }

    async fn close(&self) -> Result<()> {
        self.inner.close().await
    }

    /// The inner store's counters and the grants refused.
    fn stats(&self) -> Option<serde_json::Value> {
        let refused = serde_json::Value::from(self.refused.load(Ordering::Relaxed));
        let mut stats = match self.inner.stats() {
            Some(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        };
        stats.insert("refused_grants".into(), refused);
        Some(serde_json::Value::Object(stats))
    }

    fn lockwal(&self) -> Option<&dyn lockwal::LockStore> {
        self.inner.lockwal()
    }
}
