//! Failures while running: I/O errors that poison the store, and writes
//! racing close.

use super::*;
use lockwal::io::{FileBytes, FileSystem, LockGuard, OpenMode, RealFs, StoreFile};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

/// The real file system, except that once `armed`, the `fail_at`-th
/// write or sync (counted from arming) and every later one fail with
/// `errno` (or panic, when `errno` is [`PANIC`]).
pub struct FailingFs {
    armed: std::sync::atomic::AtomicBool,
    calls: Arc<AtomicU64>,
    fail_at: u64,
    errno: i32,
    syncs_only: bool,
}

/// The `errno` of a [`FailingFs`] whose failing call panics.
pub const PANIC: i32 = -1;

struct FailingFile {
    inner: Box<dyn StoreFile>,
    fs: Arc<FailingFs>,
}

impl FailingFs {
    pub fn new(fail_at: u64, errno: i32, syncs_only: bool) -> Arc<Self> {
        Arc::new(Self { armed: false.into(), calls: Arc::new(AtomicU64::new(0)), fail_at, errno, syncs_only })
    }

    pub fn arm(&self) {
        self.armed.store(true, SeqCst);
    }

    fn check(&self, is_sync: bool) -> io::Result<()> {
        if !self.armed.load(SeqCst) || (self.syncs_only && !is_sync) {
            return Ok(());
        }
        if self.calls.fetch_add(1, SeqCst) + 1 >= self.fail_at {
            if self.errno == PANIC {
                panic!("an injected panic in a write or sync");
            }
            return Err(io::Error::from_raw_os_error(self.errno));
        }
        Ok(())
    }
}

impl StoreFile for FailingFile {
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        self.fs.check(false)?;
        self.inner.write_at(offset, buf)
    }
    fn sync_data(&mut self) -> io::Result<()> {
        self.fs.check(true)?;
        self.inner.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.fs.check(false)?;
        self.inner.set_len(len)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
}

/// Wraps the real file system; `Arc<FailingFs>` is shared with the files.
pub struct Wrapper(pub Arc<FailingFs>);

impl FileSystem for Wrapper {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        RealFs.create_dir_all(dir)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StoreFile>> {
        Ok(Box::new(FailingFile { inner: RealFs.open(path, mode)?, fs: Arc::clone(&self.0) }))
    }
    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        RealFs.read(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.check(false)?;
        RealFs.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.0.check(false)?;
        RealFs.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.0.check(true)?;
        RealFs.sync_dir(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        RealFs.list(dir)
    }
    fn try_lock(&self, path: &Path) -> io::Result<LockGuard> {
        RealFs.try_lock(path)
    }
}

/// An EIO from fdatasync or an ENOSPC from write fails the operation, then
/// the store refuses every write with `Poisoned` (reads keep working) and
/// never retries the sync; reopening replays a consistent state holding every
/// acknowledged write.
#[tokio::test]
async fn a_failed_write_or_sync_poisons_until_reopened() {
    failed_write_or_sync_poisons_until_reopened(false).await;
}

/// The same with the writes committed on their callers' threads (a lone
/// write on a multi-thread runtime), not on the writer thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_write_or_sync_on_the_callers_thread_poisons_until_reopened() {
    failed_write_or_sync_poisons_until_reopened(true).await;
}

async fn failed_write_or_sync_poisons_until_reopened(on_caller_thread: bool) {
    for (errno, syncs_only, name) in [(5, true, "EIO on fdatasync"), (28, false, "ENOSPC on write")] {
        for fail_at in 1..=3 {
            let dir = tempfile::tempdir().unwrap();
            let failing = FailingFs::new(fail_at, errno, syncs_only);
            let fs: Arc<dyn lockwal::io::FileSystem> = Arc::new(Wrapper(Arc::clone(&failing)));
            let store = WalLockStore::open_with_fs(fs, dir.path(), options()).await.unwrap();
            store.put_lock(sample::byte_range("before", "s", "f", "o", "c")).await.unwrap();
            failing.arm();
            let mut acked = vec!["before".to_string()];
            let mut failed = None;
            for i in 0..5 {
                let id = format!("l{i}");
                match store.put_lock(sample::byte_range(&id, "s", "f", "o", "c")).await {
                    Ok(()) => {
                        assert!(failed.is_none(), "{name}: a write succeeded after a failure");
                        acked.push(id);
                    }
                    Err(e @ (Error::Io { .. } | Error::Poisoned { .. })) => {
                        if failed.is_none() {
                            assert!(matches!(e, Error::Io { .. }), "{name}: the first failure carries the I/O error");
                            failed = Some(id);
                        } else {
                            assert!(matches!(e, Error::Poisoned { .. }), "{name}: then Poisoned, got {e}");
                        }
                    }
                    Err(other) => panic!("{name}: unexpected {other}"),
                }
            }
            let failed = failed.expect("the armed fault fired");
            assert!(store.stats().poisoned);
            // The open's own record commits on its (blocking) thread.
            let here = store.stats().requests_on_caller_thread - 1;
            assert_eq!(here > 0, on_caller_thread, "{name}: {here} writes committed on the caller's thread");
            assert!(matches!(store.compact().await, Err(Error::Poisoned { .. })));
            // Reads keep working and show only acknowledged writes.
            assert_eq!(ids(&store).await, acked, "{name} at {fail_at}");
            drop(store);
            let store = WalLockStore::open(dir.path(), options()).await.unwrap();
            let recovered = ids(&store).await;
            // The failed write's fate is unknown (it may have reached the
            // disk before the error): every acknowledged one is there, and
            // at most the failed one besides.
            let mut with_failed = acked.clone();
            with_failed.push(failed.clone());
            with_failed.sort();
            assert!(recovered == acked || recovered == with_failed, "{name} at {fail_at}: {recovered:?}");
            store.put_lock(sample::byte_range("after", "s", "f", "o", "c")).await.unwrap();
        }
    }
}

/// A panic while a lone write commits on its caller's thread (a bug in the
/// file system layer, say) does not unwind into the caller: the store is
/// poisoned as after a failed sync, the caller and every later write get
/// `Poisoned`, and a reopen holds every acknowledged write.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_while_a_lone_write_commits_poisons_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let failing = FailingFs::new(1, PANIC, true);
    let fs: Arc<dyn lockwal::io::FileSystem> = Arc::new(Wrapper(Arc::clone(&failing)));
    let store = Arc::new(WalLockStore::open_with_fs(fs, dir.path(), options()).await.unwrap());
    store.put_lock(sample::byte_range("before", "s", "f", "o", "c")).await.unwrap();
    let here = store.stats().requests_on_caller_thread;
    failing.arm();
    let task = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.put_lock(sample::byte_range("during", "s", "f", "o", "c")).await }
    });
    let during = task.await.expect("the caller's task does not panic");
    assert!(matches!(&during, Err(Error::Poisoned { cause }) if cause.contains("panicked")), "got {during:?}");
    assert_eq!(store.stats().requests_on_caller_thread, here, "the panicked write is not counted");
    assert!(store.stats().poisoned);
    let after = store.put_lock(sample::byte_range("after", "s", "f", "o", "c")).await;
    assert!(matches!(after, Err(Error::Poisoned { .. })), "got {after:?}");
    assert_eq!(ids(&store).await, ["before"]);
    drop(store);
    let store = WalLockStore::open(dir.path(), options()).await.unwrap();
    let recovered = ids(&store).await;
    assert!(recovered == ["before"] || recovered == ["before", "during"], "{recovered:?}");
    store.close().await.unwrap();
}

/// Regression (issue 15, item 2): grants racing `close` are either refused
/// with `Closed` or logged before the clean-shutdown marker, never after it
/// (a grant in the frame after the marker made the next open report a clean
/// shutdown, and the server skip its grace period). Every acknowledged grant
/// survives the reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grants_racing_close_never_follow_the_clean_shutdown_marker() {
    use lockwal::state::Command;
    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let options = WalOptions { sync: SyncMode::Never, ..options() };
        let store = Arc::new(WalLockStore::open(dir.path(), options.clone()).await.unwrap());
        let writers: Vec<_> = (0..8)
            .map(|t| {
                let store = Arc::clone(&store);
                tokio::spawn(async move {
                    let mut acked = Vec::new();
                    for i in 0.. {
                        let id = format!("r{round}-t{t}-{i}");
                        match store.put_lock(sample::byte_range(&id, "s", "f", "o", "c")).await {
                            Ok(()) => acked.push(id),
                            Err(Error::Closed) => break,
                            Err(e) => panic!("{e}"),
                        }
                        tokio::task::yield_now().await;
                    }
                    acked
                })
            })
            .collect();
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        store.close().await.unwrap();
        let mut acked = Vec::new();
        for w in writers {
            acked.extend(w.await.unwrap());
        }
        drop(store);
        // The log as written: nothing after the last CleanShutdown.
        let mut commands = Vec::new();
        lockwal::wal::inspect::dump(&lockwal::io::RealFs, dir.path(), 0, |r| {
            commands.extend(r.commands.unwrap());
            Ok::<(), Error>(())
        })
        .unwrap();
        assert_eq!(commands.last(), Some(&Command::CleanShutdown), "round {round}: the marker is the last record");
        let store = WalLockStore::open(dir.path(), options).await.unwrap();
        assert!(store.previous_shutdown_was_clean().await.unwrap());
        let present: std::collections::BTreeSet<String> = ids(&store).await.into_iter().collect();
        assert!(acked.iter().all(|id| present.contains(id)), "round {round}: an acknowledged grant was lost");
        store.close().await.unwrap();
    }
}
