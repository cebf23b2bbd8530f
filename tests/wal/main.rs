//! The WAL backend: the conformance suite in both sync modes (and with tiny
//! segments so that rotation happens constantly), then the backend's own
//! rules: `recovery.rs` (epochs, the writer lock, torn tails, damage, store
//! files), `lifecycle.rs` (clean shutdown, read-only opens, options, the
//! directory and its files, concurrent writers), `faults.rs` (I/O errors
//! and poisoning, writes racing close).

#[macro_use]
#[path = "../conformance/mod.rs"]
mod conformance;

mod faults;
mod lifecycle;
mod recovery;

use async_trait::async_trait;
use conformance::Harness;
use lockwal::testing::sample;
use lockwal::wal::{SyncMode, WalLockStore, WalOptions};
use lockwal::{Error, LockQuery, LockStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

struct Wal {
    dir: tempfile::TempDir,
    options: WalOptions,
}

impl Wal {
    fn new(sync: SyncMode, segment_size: u64) -> Self {
        Self { dir: tempfile::tempdir().unwrap(), options: WalOptions { sync, segment_size, ..WalOptions::default() } }
    }
}

#[async_trait]
impl Harness for Wal {
    async fn open(&mut self) -> Arc<dyn LockStore> {
        Arc::new(WalLockStore::open(self.dir.path(), self.options.clone()).await.unwrap())
    }

    async fn reopen(&mut self, store: Arc<dyn LockStore>) -> Arc<dyn LockStore> {
        assert_eq!(Arc::strong_count(&store), 1, "the harness must hold the last handle");
        drop(store);
        self.open().await
    }

    async fn reopen_from_snapshot(&mut self, store: Arc<dyn LockStore>) -> Arc<dyn LockStore> {
        assert_eq!(Arc::strong_count(&store), 1, "the harness must hold the last handle");
        drop(store);
        let middle = WalLockStore::open(self.dir.path(), self.options.clone()).await.unwrap();
        middle.compact().await.unwrap();
        drop(middle);
        let store = self.open().await;
        assert!(
            std::fs::read_dir(self.dir.path()).unwrap().any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".snap")),
            "the reopened store has a snapshot to load"
        );
        store
    }
}

mod always {
    use super::*;
    conformance_suite!(Wal::new(SyncMode::Always, 64 << 20));
}

mod never {
    use super::*;
    conformance_suite!(Wal::new(SyncMode::Never, 64 << 20));
}

mod tiny_segments {
    use super::*;
    conformance_suite!(Wal::new(SyncMode::Always, 4096));
}

/// Automatic compaction after (nearly) every write, racing the suite.
mod aggressive_compaction {
    use super::*;
    conformance_suite!(Wal {
        dir: tempfile::tempdir().unwrap(),
        options: WalOptions {
            segment_size: 4096,
            compact_after_bytes: Some(1),
            compact_size_multiple: 0.0,
            ..WalOptions::default()
        },
    });
}

// ---- helpers of the backend's own tests ----------------------------------------

fn options() -> WalOptions {
    WalOptions { segment_size: 1 << 20, ..WalOptions::default() }
}

fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

/// Every file of the store with its bytes, for byte-identical comparisons.
fn snapshot_dir(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<(PathBuf, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

async fn ids(store: &WalLockStore) -> Vec<String> {
    store.list_locks(&LockQuery::all()).await.unwrap().into_iter().map(|l| l.id.to_string()).collect()
}
