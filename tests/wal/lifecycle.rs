//! Clean shutdown, read-only opens, options, the directory and its files,
//! concurrent writers.

use super::*;
use lockwal::Op;
use lockwal::model::ClientQuery;

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
        ("compact_at_open_segments", WalOptions { compact_at_open_segments: Some(0), ..base.clone() }),
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
        WalOptions { compact_at_open_segments: None, ..base.clone() },
        WalOptions { compact_at_open_segments: Some(1), ..base.clone() },
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

/// Regression (review of issue 18): a transaction whose every field is
/// within its limit but whose encoding is larger than a log frame (4,096
/// NSM client records at their largest, 33.8 MB) reached the writer thread,
/// which panicked, and every later write failed with `Closed`. It is now
/// `InvalidInput` before anything is queued, and the store writes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_larger_than_a_frame_is_refused_and_the_writer_lives_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = WalLockStore::open(dir.path(), WalOptions::default()).await.unwrap();
    let client = lockwal::testing::sample::largest_ops().swap_remove(1);
    let Op::PutClient(client) = client else { panic!("the second of largest_ops is a client") };
    let ops: Vec<Op> = (0..lockwal::model::validate::MAX_TXN_OPS)
        .map(|n| {
            let mut c = client.clone();
            c.client_id = format!("{n:08}{}", &c.client_id[8..]);
            Op::PutClient(c)
        })
        .collect();
    match store.transaction(ops).await {
        Err(Error::InvalidInput { field: "ops", reason }) => assert!(reason.contains("log frame"), "{reason}"),
        other => panic!("expected InvalidInput, got {:?}", other.map(drop)),
    }
    store.put_lock(lockwal::testing::sample::byte_range("after", "s", "f", "o", "c")).await.unwrap();
    assert_eq!(store.count().await.unwrap(), 1);
    assert_eq!(store.list_clients(&ClientQuery::all()).await.unwrap(), Vec::new());
}

/// `open_sync` opens outside any async runtime (issue 20: the blocking
/// open wanted an `Arc<dyn FileSystem>`), and `stats().requests` counts the
/// commands the writer answered: this open's epoch record, acknowledged
/// writes and one the state refused, the clean-shutdown record; not a write
/// refused as bad input before it was queued.
#[test]
fn open_sync_works_outside_a_runtime_and_stats_count_requests() {
    let dir = tempfile::tempdir().unwrap();
    let store = WalLockStore::open_sync(dir.path(), WalOptions::default()).unwrap();
    assert_eq!(store.stats().requests, 1, "the epoch record of this open");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let lock = |id: &str| lockwal::testing::sample::byte_range(id, "s", "f", "o", "c");
        store.put_lock(lock("a")).await.unwrap();
        store.put_lock(lock("b")).await.unwrap();
        assert!(matches!(store.delete_lock("absent").await, Err(Error::NotFound { .. })));
        assert!(matches!(store.put_lock(lock("")).await, Err(Error::InvalidInput { .. })));
        assert_eq!(store.stats().requests, 4, "two grants and the refused delete");
        store.close().await.unwrap();
    });
    let counted = store.stats().requests;
    drop(store);
    let store = WalLockStore::open_sync(dir.path(), WalOptions::default()).unwrap();
    assert!(rt.block_on(store.previous_shutdown_was_clean()).unwrap());
    assert_eq!(rt.block_on(store.count()).unwrap(), 2);
    assert_eq!(counted, 5, "and the clean-shutdown record");
}

/// Code that holds only `Arc<dyn LockStore>` reaches the WAL store's own
/// operator surface (issue 20): `as_any` downcasts to `WalLockStore` for
/// `stats()` and `compact()`, and to nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_trait_object_reaches_stats_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn LockStore> = Arc::new(WalLockStore::open(dir.path(), WalOptions::default()).await.unwrap());
    store.put_lock(lockwal::testing::sample::byte_range("a", "s", "f", "o", "c")).await.unwrap();
    let wal = store.as_any().downcast_ref::<WalLockStore>().expect("a WAL store");
    assert_eq!(wal.stats().locks, 1);
    wal.compact().await.unwrap();
    assert!(wal.stats().snapshot_lsn.is_some());
    assert!(store.as_any().downcast_ref::<lockwal::MemoryLockStore>().is_none());
    let memory: Arc<dyn LockStore> = Arc::new(lockwal::MemoryLockStore::new());
    assert!(memory.as_any().downcast_ref::<WalLockStore>().is_none());
}

/// Guards the bound on files that repeated opens leave (every open starts a
/// segment for its epoch, so 50 opens used to leave 51 segments): with the
/// default options, after each of 50 opens (closed cleanly or dropped, each
/// writing a grant and releasing an older one) the store holds at most
/// `compact_at_open_segments` segments and one snapshot, and every
/// acknowledged write is there, with one epoch per open.
#[tokio::test]
async fn fifty_opens_leave_at_most_the_bound_of_segments_and_lose_nothing() {
    let bound = WalOptions::default().compact_at_open_segments.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut live = std::collections::BTreeSet::new();
    let mut most = 0;
    let mut compacted_at_open = 0;
    for i in 0..50u64 {
        let store = WalLockStore::open(dir.path(), WalOptions::default()).await.unwrap();
        assert_eq!(store.epoch().await.unwrap(), i + 1);
        let on_disk = segments(dir.path()).len();
        let snapshots = std::fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "snap"))
            .count();
        assert!(on_disk as u64 <= bound, "open {i}: {on_disk} segments");
        assert!(snapshots <= 1, "open {i}: {snapshots} snapshots");
        assert_eq!(store.stats().segments, on_disk as u64, "open {i}: the stats count the files");
        compacted_at_open += u64::from(on_disk == 1 && i > 0);
        most = most.max(on_disk);
        assert_eq!(ids(&store).await, live.iter().cloned().collect::<Vec<String>>(), "open {i}");
        let id = format!("l{i:02}");
        store.put_lock(sample::byte_range(&id, "s", "f", "o", "c")).await.unwrap();
        live.insert(id);
        if i % 3 == 2 {
            let oldest = live.pop_first().unwrap();
            store.delete_lock(&oldest).await.unwrap();
        }
        if i % 2 == 0 {
            store.close().await.unwrap();
        }
        drop(store);
    }
    assert_eq!(most as u64, bound, "the bound is reached, not just respected");
    assert!(compacted_at_open >= 5, "{compacted_at_open} opens compacted");
    let store = WalLockStore::open(dir.path(), WalOptions::default()).await.unwrap();
    assert_eq!(ids(&store).await, live.iter().cloned().collect::<Vec<String>>());
    assert_eq!(store.epoch().await.unwrap(), 51);
    store.close().await.unwrap();
}

/// With `compact_at_open_segments: None` opens never compact: each one
/// leaves its segment (what a store that must keep its log, or a test that
/// counts segments, asks for).
#[tokio::test]
async fn opens_that_never_compact_keep_one_segment_each() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions { compact_at_open_segments: None, ..WalOptions::default() };
    for i in 0..12 {
        let store = WalLockStore::open(dir.path(), options.clone()).await.unwrap();
        store.put_lock(sample::byte_range(&format!("l{i}"), "s", "f", "o", "c")).await.unwrap();
        store.close().await.unwrap();
    }
    assert_eq!(segments(dir.path()).len(), 12);
    assert_eq!(WalLockStore::open(dir.path(), options).await.unwrap().count().await.unwrap(), 12);
}
