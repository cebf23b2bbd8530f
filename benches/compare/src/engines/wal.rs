//! lockwal's WAL backend in its default configuration (`SyncMode::Always`:
//! a write is acknowledged after the fdatasync of the group-commit frame
//! holding it). Its indexes are in memory, rebuilt at open from the
//! snapshot and the log, so a write is one log record.
//!
//! Three variants differ only in how the 1M-lock store of W3/W4 was built:
//! `Snapshot` compacts after the bulk load (what a long-running store looks
//! like: a snapshot plus a short log), `Tail` then releases and grants again
//! 50,000 of the locks one by one, so open replays 100,000 log records after
//! the snapshot (issue 4's restore target), and `LogOnly` writes the locks
//! as individual puts with compaction off, so open must replay a million
//! log records.

use crate::engine::{Caps, Peer, Restored, Store};
use crate::{Dataset, Result};
use async_trait::async_trait;
use lockwal::model::PersistedLock;
use lockwal::wal::{SyncMode, WalLockStore, WalOptions};
use lockwal::{LockQuery, LockStore};
use std::path::Path;
use std::sync::Arc;

/// The WAL-backend peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wal {
    /// Default options; the bulk load is followed by a compaction.
    Snapshot,
    /// Automatic compaction off; the bulk load is a million single puts.
    LogOnly,
    /// Default options; the bulk load is followed by a compaction, then
    /// 100,000 single releases and grants (the same locks again).
    Tail,
}

/// Locks released and granted again after the snapshot by [`Wal::Tail`]:
/// two log records each.
pub const TAIL_LOCKS: usize = 50_000;

/// An open WAL store (public for W5, which drives compactions itself).
pub struct WalStore {
    /// The store.
    pub store: Arc<WalLockStore>,
    variant: Wal,
    /// [`Wal::Tail`]: the first locks loaded, released and granted again
    /// after the snapshot.
    tail: std::sync::Mutex<Vec<PersistedLock>>,
}

impl Wal {
    /// The options this variant opens with.
    pub fn options(self) -> WalOptions {
        match self {
            Wal::Snapshot | Wal::Tail => WalOptions::default(),
            Wal::LogOnly => {
                WalOptions { compact_after_bytes: None, compact_at_open_segments: None, ..WalOptions::default() }
            }
        }
    }

    /// Opens the concrete store (W5 needs `compact` and `stats`).
    pub async fn open_wal(self, dir: &Path) -> Result<WalStore> {
        self.open_with(dir, self.options()).await
    }

    /// Opens the concrete store with other options.
    pub async fn open_with(self, dir: &Path, options: WalOptions) -> Result<WalStore> {
        let store = Arc::new(WalLockStore::open(dir, options).await?);
        Ok(WalStore { store, variant: self, tail: Default::default() })
    }
}

#[async_trait]
impl Peer for Wal {
    fn name(&self) -> &'static str {
        match self {
            Wal::Snapshot => "lockwal-wal",
            Wal::LogOnly => "lockwal-wal-log",
            Wal::Tail => "lockwal-wal-tail",
        }
    }

    fn config(&self) -> String {
        let o = self.options();
        assert_eq!(o.sync, SyncMode::Always);
        let common = format!(
            "lockwal WalLockStore, SyncMode::Always (group commit, fdatasync before acknowledging), {} MiB segments",
            o.segment_size >> 20
        );
        match self {
            Wal::Snapshot => format!(
                "{common}, automatic compaction after {} MiB of log; the 1M-lock store is compacted after loading \
                 (restore = snapshot + short log)",
                o.compact_after_bytes.unwrap_or(0) >> 20
            ),
            Wal::LogOnly => format!(
                "{common}, compaction off; the 1M-lock store is a million single puts \
                 (restore = replay of the whole log)"
            ),
            Wal::Tail => format!(
                "{common}; the 1M-lock store is compacted after loading, then {TAIL_LOCKS} of its locks are \
                 released and granted again one by one (restore = snapshot + {} log records)",
                2 * TAIL_LOCKS
            ),
        }
    }

    fn caps(&self) -> Caps {
        match self {
            Wal::Snapshot => Caps::ALL,
            Wal::LogOnly | Wal::Tail => Caps { serial: false, concurrent: false, restore: true, queries: false },
        }
    }

    async fn open(&self, dir: &Path) -> Result<Arc<dyn Store>> {
        Ok(Arc::new(self.open_wal(dir).await?))
    }
}

impl WalStore {
    /// Puts (or deletes) `locks` one per call, all in flight at once: group
    /// commit packs them into frames, each stays its own log record.
    async fn one_by_one(&self, locks: Vec<PersistedLock>, delete: bool) -> Result<()> {
        let tasks: Vec<_> = locks
            .into_iter()
            .map(|lock| {
                let store = Arc::clone(&self.store);
                tokio::spawn(async move {
                    if delete { store.delete_lock(&lock.id).await } else { store.put_lock(lock).await }
                })
            })
            .collect();
        for task in tasks {
            task.await??;
        }
        Ok(())
    }
}

#[async_trait]
impl Store for WalStore {
    fn lockwal(&self) -> Option<&dyn LockStore> {
        Some(&*self.store)
    }

    async fn put(&self, lock: PersistedLock) -> Result<()> {
        Ok(self.store.put_lock(lock).await?)
    }

    async fn delete(&self, lock: &PersistedLock) -> Result<()> {
        Ok(self.store.delete_lock(&lock.id).await?)
    }

    async fn load(&self, locks: Vec<PersistedLock>) -> Result<()> {
        match self.variant {
            Wal::Snapshot => super::memory::load_in_transactions(&*self.store, locks).await,
            Wal::LogOnly => self.one_by_one(locks, false).await,
            Wal::Tail => {
                {
                    let mut tail = self.tail.lock().expect("not poisoned");
                    let room = TAIL_LOCKS - tail.len();
                    tail.extend(locks.iter().take(room).cloned());
                }
                super::memory::load_in_transactions(&*self.store, locks).await
            }
        }
    }

    async fn settle(&self) -> Result<()> {
        match self.variant {
            Wal::Snapshot => {
                self.store.compact().await?;
            }
            Wal::LogOnly => {}
            Wal::Tail => {
                self.store.compact().await?;
                let again = std::mem::take(&mut *self.tail.lock().expect("not poisoned"));
                self.one_by_one(again.clone(), true).await?;
                self.one_by_one(again, false).await?;
            }
        }
        Ok(())
    }

    async fn by_client(&self, client: &str) -> Result<Vec<PersistedLock>> {
        Ok(self.store.list_locks(&LockQuery::by_client(client)).await?)
    }

    async fn by_file(&self, file: &str) -> Result<Vec<PersistedLock>> {
        Ok(self.store.list_locks(&LockQuery::by_file(file)).await?)
    }

    /// Every lock handed to the caller as an owned record, the way a
    /// server's lock manager fills its own tables at boot: through
    /// `for_each_lock` (unsorted) into a `Vec` the caller keeps, like the
    /// peers' `read_all`.
    async fn read_all(&self, _data: &Dataset) -> Result<Restored> {
        let mut locks = Vec::with_capacity(self.store.count().await? as usize);
        let count = self.store.for_each_lock(&mut |lock| locks.push(lock)).await?;
        Ok(Restored { locks: count, resident: Box::new(locks) })
    }

    async fn close(&self) -> Result<()> {
        Ok(self.store.close().await?)
    }

    fn stats(&self) -> Option<serde_json::Value> {
        let s = self.store.stats();
        Some(serde_json::json!({
            "fsyncs": s.fsyncs,
            "records_appended": s.records_appended,
            "bytes_appended": s.bytes_appended,
            "mean_batch_size": s.mean_batch_size,
            "compactions": s.compactions,
            "replay_ms": s.replay_duration.as_secs_f64() * 1e3,
            "records_replayed": s.records_replayed,
            "snapshot_bytes": s.snapshot_bytes,
            "log_bytes": s.log_bytes,
        }))
    }
}
