//! The WAL backend: the conformance suite in both sync modes (and with tiny
//! segments so that rotation happens constantly), then the recovery rules.

#[macro_use]
mod conformance;

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

// ---- recovery rules ---------------------------------------------------------

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

/// The epoch rises strictly on every open, clean or not.
#[tokio::test]
async fn epoch_strictly_increases_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut last = 0;
    for i in 0..5 {
        let store = WalLockStore::open(dir.path(), options()).await.unwrap();
        let epoch = store.epoch().await.unwrap();
        assert!(epoch > last, "epoch {epoch} after {last}");
        assert_eq!(store.stats().epoch, epoch);
        last = epoch;
        if i % 2 == 0 {
            store.close().await.unwrap();
        }
    }
}

/// A second opener, in this process, gets `Locked` naming the directory,
/// and can open once the first is gone.
#[tokio::test]
async fn second_opener_gets_locked() {
    let dir = tempfile::tempdir().unwrap();
    let first = WalLockStore::open(dir.path(), options()).await.unwrap();
    match WalLockStore::open(dir.path(), options()).await {
        Err(Error::Locked { dir: d }) => assert_eq!(d, dir.path()),
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("expected Locked, got a second writer"),
    }
    drop(first);
    WalLockStore::open(dir.path(), options()).await.unwrap();
}

/// Writes a store with `n` locks (one per frame, the last written alone)
/// and returns the newest segment and the start and end of its last frame.
async fn store_with_frames(dir: &Path, n: usize) -> (PathBuf, u64, u64) {
    let store = WalLockStore::open(dir, options()).await.unwrap();
    for i in 0..n {
        store.put_lock(sample::byte_range(&format!("l{i}"), "s", "f", "o", "c")).await.unwrap();
    }
    let before_last = store.stats().bytes_appended;
    store.put_lock(sample::byte_range("last", "s", "f", "o", "c")).await.unwrap();
    let after_last = store.stats().bytes_appended;
    drop(store);
    let seg = segments(dir).pop().unwrap();
    (seg, 48 + before_last, 48 + after_last)
}

/// A torn last record, cut at every byte offset, is truncated at open and
/// reported; the store holds exactly the acknowledged records before it.
#[tokio::test]
async fn torn_tail_at_every_byte_of_the_last_record() {
    let template = tempfile::tempdir().unwrap();
    let (seg, last_offset, frame_end) = store_with_frames(template.path(), 3).await;
    let full = std::fs::read(&seg).unwrap();
    assert!(frame_end > last_offset + 16);
    for cut in last_offset + 1..frame_end {
        let dir = tempfile::tempdir().unwrap();
        for (path, bytes) in snapshot_dir(template.path()) {
            std::fs::write(dir.path().join(path.file_name().unwrap()), bytes).unwrap();
        }
        let seg = dir.path().join(seg.file_name().unwrap());
        let mut bytes = full.clone();
        // Torn at `cut`: the rest of the frame is zeros or garbage; a
        // zero-filled cut inside the zero padding changes nothing, skip it.
        let fill = if cut % 2 == 0 { 0 } else { 0xA5 };
        if bytes[cut as usize..frame_end as usize].iter().all(|&b| b == fill) {
            continue;
        }
        for b in &mut bytes[cut as usize..frame_end as usize] {
            *b = fill;
        }
        std::fs::write(&seg, &bytes).unwrap();
        let store = WalLockStore::open(dir.path(), options()).await.unwrap();
        assert_eq!(ids(&store).await, ["l0", "l1", "l2"], "cut at {cut}");
        let torn = store.stats().torn_tail.expect("torn tail reported");
        assert_eq!((torn.file, torn.offset), (seg.clone(), last_offset), "cut at {cut}");
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), last_offset, "truncated at the end of the valid log");
        drop(store);
        // The repair is durable and final: the next open finds nothing torn.
        let store = WalLockStore::open(dir.path(), options()).await.unwrap();
        assert_eq!(store.stats().torn_tail, None);
        assert_eq!(ids(&store).await, ["l0", "l1", "l2"]);
    }
}

/// A flipped bit in a record that valid records follow is corruption: open
/// fails naming the file and offset, and no file changes.
#[tokio::test]
async fn flipped_bit_in_an_older_record_is_corruption_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = WalLockStore::open(dir.path(), options()).await.unwrap();
        for i in 0..10 {
            store.put_lock(sample::byte_range(&format!("l{i}"), "s", "f", "o", "c")).await.unwrap();
        }
        store.close().await.unwrap();
    }
    // Reopen once so the damaged segment is an older one, too.
    drop(WalLockStore::open(dir.path(), options()).await.unwrap());
    let seg = segments(dir.path()).into_iter().next().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let offset = 48 + 200;
    bytes[offset] ^= 0x04;
    std::fs::write(&seg, &bytes).unwrap();
    let before = snapshot_dir(dir.path());
    for read_only in [false, true] {
        let opts = WalOptions { read_only, ..options() };
        match WalLockStore::open(dir.path(), opts).await {
            Err(Error::Corruption { file, offset: at, reason }) => {
                assert_eq!(file, seg);
                assert!(at <= offset as u64 && at >= 48, "offset {at} should be the damaged frame's start");
                assert!(reason.contains("valid record"), "{reason}");
            }
            Err(other) => panic!("expected Corruption, got {other}"),
            Ok(_) => panic!("opened a corrupt store"),
        }
        assert_eq!(snapshot_dir(dir.path()), before, "files changed (read_only = {read_only})");
    }
}

/// Dropping without close is not a clean shutdown; close is; both keep data.
#[tokio::test]
async fn clean_flag_after_close_and_after_drop() {
    let dir = tempfile::tempdir().unwrap();
    let store = WalLockStore::open(dir.path(), options()).await.unwrap();
    store.put_lock(sample::byte_range("a", "s", "f", "o", "c")).await.unwrap();
    drop(store);
    let store = WalLockStore::open(dir.path(), options()).await.unwrap();
    assert!(!store.previous_shutdown_was_clean().await.unwrap());
    assert!(!store.stats().previous_shutdown_clean);
    store.close().await.unwrap();
    let store = WalLockStore::open(dir.path(), options()).await.unwrap();
    assert!(store.previous_shutdown_was_clean().await.unwrap());
    assert_eq!(ids(&store).await, ["a"]);
}

/// Read-only open replays without the lock, changes no byte, refuses writes.
#[tokio::test]
async fn read_only_open_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let writer = WalLockStore::open(dir.path(), options()).await.unwrap();
    writer.put_lock(sample::byte_range("a", "s", "f", "o", "c")).await.unwrap();
    let epoch = writer.epoch().await.unwrap();
    let before = snapshot_dir(dir.path());
    // Works while the writer holds the lock: it reads the acknowledged prefix.
    let reader = WalLockStore::open(dir.path(), WalOptions { read_only: true, ..options() }).await.unwrap();
    assert_eq!(ids(&reader).await, ["a"]);
    assert_eq!(reader.epoch().await.unwrap(), epoch);
    assert!(matches!(reader.put_lock(sample::byte_range("b", "s", "f", "o", "c")).await, Err(Error::ReadOnly { .. })));
    reader.close().await.unwrap();
    drop(reader);
    assert_eq!(snapshot_dir(dir.path()), before);
}

/// Every `WalOptions` field out of its documented range is refused at open
/// with `InvalidInput` naming the field, read-only or not, before anything
/// on disk is touched: a missing directory is not created, an existing
/// store keeps every byte (no epoch bump). Regression: only `segment_size`
/// was checked; a NaN or infinite `compact_size_multiple` never compacted,
/// a zero `compact_interval` compacted in a busy loop.
#[tokio::test]
async fn every_out_of_range_option_is_refused_at_open_naming_the_field_and_touching_nothing() {
    use lockwal::wal::{MAX_COMPACT_SIZE_MULTIPLE, MAX_SEGMENT_SIZE, MIN_COMPACT_INTERVAL, MIN_SEGMENT_SIZE};
    use std::time::Duration;
    let base = options();
    let bad: Vec<(&str, WalOptions)> = vec![
        ("segment_size", WalOptions { segment_size: 0, ..base.clone() }),
        ("segment_size", WalOptions { segment_size: MIN_SEGMENT_SIZE - 1, ..base.clone() }),
        ("segment_size", WalOptions { segment_size: MAX_SEGMENT_SIZE + 1, ..base.clone() }),
        ("segment_size", WalOptions { segment_size: u64::MAX, ..base.clone() }),
        ("compact_after_bytes", WalOptions { compact_after_bytes: Some(0), ..base.clone() }),
        ("compact_size_multiple", WalOptions { compact_size_multiple: f64::NAN, ..base.clone() }),
        ("compact_size_multiple", WalOptions { compact_size_multiple: f64::INFINITY, ..base.clone() }),
        ("compact_size_multiple", WalOptions { compact_size_multiple: f64::NEG_INFINITY, ..base.clone() }),
        ("compact_size_multiple", WalOptions { compact_size_multiple: -1.0, ..base.clone() }),
        (
            "compact_size_multiple",
            WalOptions { compact_size_multiple: MAX_COMPACT_SIZE_MULTIPLE * 1.5, ..base.clone() },
        ),
        ("compact_size_multiple", WalOptions { compact_size_multiple: f64::MAX, ..base.clone() }),
        ("compact_interval", WalOptions { compact_interval: Some(Duration::ZERO), ..base.clone() }),
        (
            "compact_interval",
            WalOptions { compact_interval: Some(MIN_COMPACT_INTERVAL - Duration::from_nanos(1)), ..base.clone() },
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let store = WalLockStore::open(&store_dir, base.clone()).await.unwrap();
    store.put_lock(sample::byte_range("a", "s", "f", "o", "c")).await.unwrap();
    store.close().await.unwrap();
    drop(store);
    let before = snapshot_dir(&store_dir);
    let missing = dir.path().join("missing");
    for (field, bad) in &bad {
        assert!(matches!(bad.validate(), Err(Error::InvalidInput { field: f, .. }) if f == *field), "{bad:?}");
        for read_only in [false, true] {
            let bad = WalOptions { read_only, ..bad.clone() };
            for target in [&store_dir, &missing] {
                match WalLockStore::open(target, bad.clone()).await {
                    Err(e @ Error::InvalidInput { field: f, .. }) => {
                        assert_eq!(f, *field, "{bad:?}");
                        assert!(e.to_string().contains(field), "the message names the field: {e}");
                    }
                    Err(e) => panic!("{bad:?} on {}: expected InvalidInput for {field}, got {e}", target.display()),
                    Ok(_) => panic!("{bad:?} on {}: opened", target.display()),
                }
            }
            assert!(!missing.exists(), "{bad:?}: the missing directory was created");
            assert_eq!(snapshot_dir(&store_dir), before, "{bad:?}: the store changed");
        }
    }
    // The ends of every range are accepted.
    let edges = [
        WalOptions { segment_size: MIN_SEGMENT_SIZE, ..base.clone() },
        WalOptions { segment_size: MAX_SEGMENT_SIZE, ..base.clone() },
        WalOptions { compact_after_bytes: None, ..base.clone() },
        WalOptions { compact_after_bytes: Some(1), ..base.clone() },
        WalOptions { compact_size_multiple: 0.0, ..base.clone() },
        WalOptions { compact_size_multiple: MAX_COMPACT_SIZE_MULTIPLE, ..base.clone() },
        WalOptions { compact_interval: Some(MIN_COMPACT_INTERVAL), ..base.clone() },
        WalOptions::default(),
    ];
    for edge in &edges {
        edge.validate().unwrap_or_else(|e| panic!("{edge:?}: {e}"));
    }
    let edge = WalOptions {
        segment_size: MAX_SEGMENT_SIZE,
        compact_after_bytes: Some(1),
        compact_size_multiple: MAX_COMPACT_SIZE_MULTIPLE,
        compact_interval: Some(MIN_COMPACT_INTERVAL),
        ..base.clone()
    };
    let store = WalLockStore::open(&store_dir, edge).await.unwrap();
    assert_eq!(ids(&store).await, ["a"]);
    store.close().await.unwrap();
}

/// A read-only open, `is_store`, `verify` and `dump` on a directory that
/// does not exist say so (`NoSuchDirectory`, "no such directory DIR")
/// instead of "I/O error during list on DIR", and create nothing; a
/// writable open still creates the directory.
#[tokio::test]
async fn a_missing_directory_is_no_such_directory_for_readers_and_created_by_a_writer() {
    use lockwal::io::{CopyingReads, RealFs};
    use lockwal::wal::inspect;
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("no-store-here");
    let is_missing = |e: &Error| matches!(e, Error::NoSuchDirectory { dir } if *dir == missing);
    let e = WalLockStore::open(&missing, WalOptions { read_only: true, ..options() }).await.err().unwrap();
    assert!(is_missing(&e), "{e:?}");
    assert_eq!(e.to_string(), format!("no such directory {}", missing.display()));
    let fs = CopyingReads(Arc::new(RealFs));
    let e = inspect::is_store(&fs, &missing).unwrap_err();
    assert!(is_missing(&e), "{e:?}");
    let e = inspect::verify(&fs, &missing).unwrap_err();
    assert!(is_missing(&e), "{e:?}");
    let e = inspect::dump(&fs, &missing, 0, |_| Ok::<(), Error>(())).unwrap_err();
    assert!(is_missing(&e), "{e:?}");
    let e = inspect::retry_while_changing(&fs, &missing, || Ok(())).unwrap_err();
    assert!(is_missing(&e), "{e:?}");
    assert!(!missing.exists(), "a reader created the directory");
    // Under a missing parent too.
    let deeper = missing.join("deeper");
    let e = WalLockStore::open(&deeper, WalOptions { read_only: true, ..options() }).await.err().unwrap();
    assert!(matches!(&e, Error::NoSuchDirectory { dir } if *dir == deeper), "{e:?}");
    assert!(!missing.exists());
    // A writable open creates it, as before.
    let store = WalLockStore::open(&deeper, options()).await.unwrap();
    store.close().await.unwrap();
    assert!(inspect::is_store(&fs, &deeper).unwrap());
}

/// Many concurrent writers are all acknowledged and accounted for: every
/// frame written was synced, and the requests per frame add up to the
/// writes. (How much grouping happens depends on timing: the benchmarks
/// measure it, no test relies on it.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_are_all_acknowledged_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(WalLockStore::open(dir.path(), options()).await.unwrap());
    let before = store.stats();
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..20 {
                    store.put_lock(sample::byte_range(&format!("t{t}-{i}"), "s", "f", "o", "c")).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let stats = store.stats();
    assert_eq!(stats.locks, 64 * 20);
    let fsyncs = stats.fsyncs - before.fsyncs;
    assert!((1..=64 * 20).contains(&fsyncs), "{fsyncs} fsyncs");
    assert_eq!(stats.records_appended - before.records_appended, fsyncs);
    let requests = (stats.mean_batch_size * stats.records_appended as f64).round() as u64;
    assert_eq!(requests, 64 * 20 + 1, "every put plus the open record");
}

/// Files are owner-only.
#[tokio::test]
async fn files_are_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("store");
    drop(WalLockStore::open(&dir, options()).await.unwrap());
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    for (path, _) in snapshot_dir(&dir) {
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "{}", path.display());
    }
}

// ---- failures while running --------------------------------------------------

mod faults {
    use super::*;
    use lockwal::io::{FileBytes, FileSystem, LockGuard, OpenMode, RealFs, StoreFile};
    use std::io;
    use std::sync::atomic::{AtomicU64, Ordering::SeqCst};

    /// The real file system, except that once `armed`, the `fail_at`-th
    /// write or sync (counted from arming) and every later one fail with
    /// `errno`.
    pub struct FailingFs {
        armed: std::sync::atomic::AtomicBool,
        calls: Arc<AtomicU64>,
        fail_at: u64,
        errno: i32,
        syncs_only: bool,
    }

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
}

/// An EIO from fdatasync or an ENOSPC from write fails the operation, then
/// the store refuses every write with `Poisoned` (reads keep working) and
/// never retries the sync; reopening replays a consistent state holding every
/// acknowledged write.
#[tokio::test]
async fn a_failed_write_or_sync_poisons_until_reopened() {
    for (errno, syncs_only, name) in [(5, true, "EIO on fdatasync"), (28, false, "ENOSPC on write")] {
        for fail_at in 1..=3 {
            let dir = tempfile::tempdir().unwrap();
            let failing = faults::FailingFs::new(fail_at, errno, syncs_only);
            let fs: Arc<dyn lockwal::io::FileSystem> = Arc::new(faults::Wrapper(Arc::clone(&failing)));
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

/// Regression (issue 15, item 7): open deleted every `*.tmp` file in the
/// directory (an operator's notes too) and ignored a misnamed segment that
/// held acknowledged records. Only the store's own temporaries are removed;
/// a file named like a segment or snapshot but not as the store names them
/// is a `Corruption` error naming it, and nothing is changed.
#[tokio::test]
async fn open_removes_only_its_own_temporaries_and_refuses_misnamed_store_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = WalLockStore::open(dir.path(), options()).await.unwrap();
    store.put_lock(sample::byte_range("L", "s", "f", "o", "c")).await.unwrap();
    drop(store);
    std::fs::write(dir.path().join("notes.tmp"), b"an operator's notes").unwrap();
    std::fs::write(dir.path().join("snap-00000000000000000001.snap.tmp"), b"half a snapshot").unwrap();
    let store = WalLockStore::open(dir.path(), options()).await.unwrap();
    assert!(dir.path().join("notes.tmp").exists(), "not the store's file");
    assert!(!dir.path().join("snap-00000000000000000001.snap.tmp").exists(), "the store's own temporary");
    drop(store);
    let misnamed = dir.path().join("seg-2.wal");
    std::fs::copy(&segments(dir.path())[0], &misnamed).unwrap();
    let before = snapshot_dir(dir.path());
    match WalLockStore::open(dir.path(), options()).await {
        Err(Error::Corruption { file, .. }) => assert_eq!(file, misnamed),
        other => panic!("expected Corruption naming seg-2.wal, got {:?}", other.map(|_| ())),
    }
    assert_eq!(snapshot_dir(dir.path()), before, "a refused open changes nothing");
}

/// Regression (issue 15, item 4): a correctly checksummed `Open { epoch:
/// u64::MAX }` record panicked open at `epoch + 1` (and wrapped in release
/// builds); it is `Corruption` naming the segment, and nothing changes.
#[tokio::test]
async fn an_open_record_with_the_largest_epoch_is_corruption_not_a_panic() {
    use lockwal::state::Command;
    use lockwal::wal::format::{SegmentHeader, append_frame, encode_commands, segment_name};
    let dir = tempfile::tempdir().unwrap();
    let salt = 0x5A17;
    let mut bytes = SegmentHeader::new(1, salt, 1, 1).encode().to_vec();
    append_frame(&mut bytes, salt, 1, |out| encode_commands(out, &[&Command::Open { epoch: u64::MAX }]));
    let path = dir.path().join(segment_name(1));
    std::fs::write(&path, &bytes).unwrap();
    match WalLockStore::open(dir.path(), options()).await {
        Err(Error::Corruption { file, .. }) => assert_eq!(file, path),
        other => panic!("expected Corruption, got {:?}", other.map(|_| ())),
    }
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing changed");
    let report = lockwal::wal::inspect::verify(&lockwal::io::RealFs, dir.path()).unwrap();
    assert!(!report.is_intact());
}
