//! Snapshots and compaction: footprint, identical state across compaction
//! and reopen (durable handles and records too), a crash between each step
//! of the install sequence, corrupt snapshots, and writers that keep going
//! while compactions run.

use lockwal::model::*;
use lockwal::testing::model::Model;
use lockwal::testing::sample;
use lockwal::testing::workload::{self, SPACES};
use lockwal::wal::snapshot::{decode_header, snapshot_name};
use lockwal::wal::{WalLockStore, WalOptions};
use lockwal::{Error, LockQuery, LockStore, Op};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Compaction only when a test asks (or sets a threshold): these tests
/// count and crash the compactor's own steps, so opens do not compact
/// either (that path has its own tests: `tests/wal/`, `tests/crash_enumeration.rs`).
fn options() -> WalOptions {
    WalOptions {
        segment_size: 256 << 10,
        compact_after_bytes: None,
        compact_at_open_segments: None,
        ..WalOptions::default()
    }
}

/// A directory's files: (name, bytes), sorted by name.
type Image = Vec<(String, Vec<u8>)>;

fn files(dir: &Path) -> Image {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

fn named(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect();
    v.sort();
    v
}

fn footprint(dir: &Path) -> u64 {
    named(dir, ".wal").iter().chain(&named(dir, ".snap")).map(|p| std::fs::metadata(p).unwrap().len()).sum()
}

/// Every observable part of a store, to compare before and after.
#[derive(Debug, PartialEq)]
struct Observed {
    locks: Vec<PersistedLock>,
    clients: Vec<ClientRecord>,
    queries: Vec<Vec<String>>,
    handles: Vec<DurableHandle>,
    /// Handle ids found through each index: app instance, share, file
    /// handle, and every handle's file id and create GUID.
    handle_queries: Vec<Vec<String>>,
    records: Vec<(String, Vec<Record>)>,
}

async fn observe(store: &WalLockStore) -> Observed {
    let locks = store.list_locks(&LockQuery::all()).await.unwrap();
    let clients = store.list_clients(&ClientQuery::all()).await.unwrap();
    let mut queries = Vec::new();
    for q in
        [LockQuery::by_file("f3"), LockQuery::by_client("c7"), LockQuery::by_owner("o2"), LockQuery::by_share("s1")]
    {
        queries.push(store.list_locks(&q).await.unwrap().into_iter().map(|l| l.id.to_string()).collect());
    }
    let handles = store.list_handles(&HandleQuery::All).await.unwrap();
    let ids = |hs: Vec<DurableHandle>| hs.into_iter().map(|h| h.id).collect::<Vec<_>>();
    let mut handle_queries = Vec::new();
    for q in
        [HandleQuery::AppInstance([0xA1; 16]), HandleQuery::Share("s2".into()), HandleQuery::FileHandle(b"f5".to_vec())]
    {
        handle_queries.push(ids(store.list_handles(&q).await.unwrap()));
    }
    let mut by_keys = Vec::new();
    for h in &handles {
        by_keys.push(store.get_handle_by_file_id(&h.file_id).await.unwrap());
        if let Some(guid) = &h.create_guid {
            by_keys.push(store.get_handle_by_create_guid(guid).await.unwrap());
        }
    }
    handle_queries.push(ids(by_keys));
    let mut records = Vec::new();
    for space in SPACES {
        records.push((space.to_owned(), store.scan_records(space, &RecordScan::all(usize::MAX)).await.unwrap()));
        let prefixed = store.scan_records(space, &RecordScan::prefix(b"d1/".to_vec(), 7)).await.unwrap();
        records.push((format!("{space} d1/ 7"), prefixed));
    }
    Observed { locks, clients, queries, handles, handle_queries, records }
}

/// Durable handles and records: puts (v1 and v2, every optional part),
/// records in every keyspace (a few of the largest values), then consumes
/// by file id and by create GUID, an expiry, deletes and swaps; `model`
/// follows. `n` handles, `n` small records.
async fn churn_handles_and_records(store: &WalLockStore, model: &mut Model, n: u64, big_values: u64) {
    let mut apply = async |ops: Vec<Op>| {
        let want = model.apply(&ops);
        let got = store.transaction(ops).await;
        assert_eq!(got.is_ok(), want.is_ok(), "{got:?} {want:?}");
        if let (Ok(got), Ok(want)) = (got, want) {
            assert_eq!(got, want);
        }
    };
    let handles: Vec<DurableHandle> =
        (0..n).map(|i| workload::handle(i, i, (i % 4 != 0).then_some(i), i * 7)).collect();
    for chunk in handles.chunks(200) {
        apply(chunk.iter().cloned().map(Op::PutHandle).collect()).await;
    }
    let record = |i: u64| Op::PutRecord {
        space: SPACES[(i % 3) as usize].into(),
        key: format!("d{}/{i:05}", i % 4).into_bytes(),
        value: workload::record_value(i),
    };
    for chunk in (0..n).collect::<Vec<_>>().chunks(300) {
        apply(chunk.iter().map(|&i| record(i)).collect()).await;
    }
    for i in 0..big_values {
        let value = vec![i as u8; lockwal::model::validate::MAX_VALUE_LEN];
        apply(vec![Op::PutRecord { space: SPACES[2].into(), key: format!("big/{i}").into_bytes(), value }]).await;
    }
    for i in (0..n).step_by(9) {
        apply(vec![Op::ConsumeHandleByFileId { file_id: workload::file_id(i) }]).await;
        let guid = workload::create_guid(i + 1);
        apply(vec![Op::ConsumeHandleByCreateGuid { create_guid: guid }, record(i + 1)]).await;
        apply(vec![Op::DeleteRecord {
            space: SPACES[(i % 3) as usize].into(),
            key: format!("d{}/{i:05}", i % 4).into_bytes(),
        }])
        .await;
        let key = format!("d{}/{:05}", (i + 2) % 4, i + 2).into_bytes();
        let expected = Some(workload::record_value(i + 2));
        apply(vec![Op::SwapRecord { space: SPACES[((i + 2) % 3) as usize].into(), key, expected, value: None }]).await;
    }
    let now = lockwal::model::Timestamp::from_unix_micros(workload::DISCONNECTED_FROM + 2_000_000);
    apply(vec![Op::ExpireHandles { now }]).await;
}

async fn churn(store: &WalLockStore, grants: usize, releases: usize) {
    let lock = |i: usize| {
        sample::byte_range(
            &format!("lock-{i:06}"),
            &format!("s{}", i % 2),
            &format!("f{}", i % 10),
            &format!("o{}", i % 5),
            &format!("c{}", i % 9),
        )
    };
    for chunk in (0..grants).collect::<Vec<_>>().chunks(500) {
        store.transaction(chunk.iter().map(|&i| Op::PutLock(lock(i))).collect()).await.unwrap();
    }
    for chunk in (0..releases).collect::<Vec<_>>().chunks(500) {
        store
            .transaction(chunk.iter().map(|&i| Op::DeleteLock { id: format!("lock-{i:06}") }).collect())
            .await
            .unwrap();
    }
    store.put_client(sample::client("c7")).await.unwrap();
}

/// 150k grants and 100k releases compact to a log+snapshot footprint within
/// 2x of the live state's encoded size, with the state unchanged by the
/// compaction and by a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_bounds_the_footprint_and_keeps_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = WalLockStore::open(dir.path(), options()).await.unwrap();
    churn(&store, 150_000, 100_000).await;
    let before = observe(&store).await;
    assert_eq!(before.locks.len(), 50_000);
    let log_before = footprint(dir.path());
    let report = store.compact().await.unwrap();
    assert!(report.snapshot_bytes > 0);
    assert_eq!(report.bytes_before, log_before);
    assert_eq!(observe(&store).await, before);
    let stats = store.stats();
    assert_eq!(stats.snapshot_lsn, Some(report.snapshot_lsn));
    assert_eq!(stats.compactions, 1);
    let after = footprint(dir.path());
    assert_eq!(report.bytes_after, after);
    // The live state's encoded size is the snapshot; the rest is the (one,
    // pre-sized) active segment.
    assert!(after <= 2 * report.snapshot_bytes, "footprint {after} vs snapshot {}", report.snapshot_bytes);
    assert!(after < log_before, "compaction reclaimed nothing: {log_before} -> {after}");
    drop(store);
    let store = WalLockStore::open(dir.path(), options()).await.unwrap();
    assert_eq!(observe(&store).await, before);
    assert_eq!(store.stats().records_replayed, 0, "everything came from the snapshot");
    assert_eq!(store.stats().snapshot_lsn, Some(report.snapshot_lsn));
}

fn copy_dir(from: &Image, to: &Path) {
    for (name, bytes) in from {
        if name != "LOCK" {
            std::fs::write(to.join(name), bytes).unwrap();
        }
    }
}

/// A crash between each step of the install sequence (temporary written,
/// synced, renamed, directory synced, segments deleted one by one) reopens to
/// the same state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crash_between_each_install_step_reopens_to_the_same_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = WalLockStore::open(dir.path(), WalOptions { segment_size: 8192, ..options() }).await.unwrap();
    churn(&store, 3_000, 1_000).await;
    churn_handles_and_records(&store, &mut Model::new(1), 300, 0).await;
    let want = observe(&store).await;
    assert!(want.handles.len() > 100 && want.records.iter().map(|(_, r)| r.len()).sum::<usize>() > 200);
    drop(store);
    let store = WalLockStore::open(dir.path(), options()).await.unwrap();
    // Every acknowledged write is in the files (written, and synced), so
    // this copy is the disk as the compaction finds it.
    let image_before = files(dir.path());
    let report = store.compact().await.unwrap();
    drop(store);
    let image_after = files(dir.path());
    let snap_name = format!("snap-{:020}.snap", report.snapshot_lsn);
    let snap = image_after.iter().find(|(n, _)| *n == snap_name).expect("snapshot installed").1.clone();
    let old_segments: Vec<&(String, Vec<u8>)> = image_before.iter().filter(|(n, _)| n.ends_with(".wal")).collect();
    assert!(old_segments.len() > 3);

    let mut images: Vec<(String, Image)> = Vec::new();
    // Before the install: the old segments plus the one the compaction
    // rotated to (created, synced, before the snapshot is written).
    let mut base = image_before.clone();
    for (n, b) in &image_after {
        if n.ends_with(".wal") && !base.iter().any(|(m, _)| m == n) {
            base.push((n.clone(), b.clone()));
        }
    }
    base.sort();
    let mut with_tmp = base.clone();
    with_tmp.push((format!("{snap_name}.tmp"), snap[..snap.len() / 2].to_vec()));
    images.push(("temporary written, not synced".into(), with_tmp));
    let mut synced_tmp = base.clone();
    synced_tmp.push((format!("{snap_name}.tmp"), snap.clone()));
    images.push(("temporary synced, not renamed".into(), synced_tmp));
    let mut renamed = base.clone();
    renamed.push((snap_name.clone(), snap.clone()));
    images.push(("renamed, no segment deleted".into(), renamed.clone()));
    for k in 1..old_segments.len() {
        let mut partial = renamed.clone();
        let doomed: Vec<String> = old_segments.iter().take(k).map(|(n, _)| n.clone()).collect();
        partial.retain(|(n, _)| !doomed.contains(n) || image_after.iter().any(|(m, _)| m == n));
        images.push((format!("{k} covered segments deleted"), partial));
    }
    images.push(("all done".into(), image_after.clone()));
    for (step, image) in images {
        let d = tempfile::tempdir().unwrap();
        copy_dir(&image, d.path());
        let store = WalLockStore::open(d.path(), options()).await.unwrap_or_else(|e| panic!("{step}: {e}"));
        assert_eq!(observe(&store).await, want, "{step}");
        drop(store);
        assert!(named(d.path(), ".tmp").is_empty(), "{step}: temporary left behind");
        let store = WalLockStore::open(d.path(), options()).await.unwrap();
        assert_eq!(observe(&store).await, want, "{step}: second reopen");
    }
}

/// A corrupted snapshot byte is a clear error naming the file; the store is
/// not opened from an older state.
#[tokio::test]
async fn corrupt_snapshot_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let store = WalLockStore::open(dir.path(), options()).await.unwrap();
    churn(&store, 2_000, 500).await;
    store.compact().await.unwrap();
    drop(store);
    let snap = named(dir.path(), ".snap").pop().unwrap();
    let mut bytes = std::fs::read(&snap).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&snap, &bytes).unwrap();
    let before = files(dir.path());
    match WalLockStore::open(dir.path(), options()).await {
        Err(Error::Corruption { file, offset, .. }) => {
            assert_eq!(file, snap);
            assert!(offset <= at as u64);
        }
        Err(other) => panic!("expected Corruption, got {other}"),
        Ok(_) => panic!("opened with a corrupt snapshot"),
    }
    assert_eq!(files(dir.path()), before, "a failed open changed files");
}

/// Writers keep succeeding while compactions run, and nothing they wrote is
/// lost across the compactions and a reopen.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writers_keep_succeeding_while_compactions_run() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Arc::new(WalLockStore::open(dir.path(), WalOptions { segment_size: 16 << 10, ..options() }).await.unwrap());
    churn(&store, 5_000, 0).await;
    let writers: Vec<_> = (0..8)
        .map(|t| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..150 {
                    store
                        .put_lock(sample::byte_range(&format!("w{t}-{i}"), "s", "f", "o", &format!("c{t}")))
                        .await
                        .unwrap();
                    if i % 3 == 0 {
                        store.delete_lock(&format!("w{t}-{i}")).await.unwrap();
                    }
                }
            })
        })
        .collect();
    let compactor = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            for _ in 0..5 {
                store.compact().await.unwrap();
            }
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    compactor.await.unwrap();
    assert!(store.stats().compactions >= 5);
    let want = observe(&store).await;
    assert_eq!(want.locks.len(), 5_000 + 8 * 100);
    drop(store);
    let store = WalLockStore::open(dir.path(), options()).await.unwrap();
    assert_eq!(observe(&store).await, want);
}

/// A store whose every incarnation writes little still compacts
/// automatically: the threshold counts the log since the last snapshot,
/// replayed log included, not the bytes one incarnation wrote (found by the
/// torture run, where 291 segments piled up).
#[tokio::test]
async fn automatic_compaction_counts_the_log_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions { segment_size: 8192, compact_after_bytes: Some(16 << 10), ..WalOptions::default() };
    let mut compacted = false;
    for round in 0..40 {
        let store = WalLockStore::open(dir.path(), options.clone()).await.unwrap();
        // Less than the threshold per incarnation.
        for i in 0..4 {
            store.put_lock(sample::byte_range(&format!("r{round}-{i}"), "s", "f", "o", "c")).await.unwrap();
        }
        // Let the compactor finish what the writes may have triggered.
        store.close().await.unwrap();
        if !named(dir.path(), ".snap").is_empty() {
            compacted = true;
            break;
        }
    }
    assert!(compacted, "no snapshot after 40 short incarnations");
}

/// Durable handles and records go through a compaction and come back from
/// the snapshot with every field (locks, handles and records spanning
/// several blocks, the largest record values among them: on a machine with
/// two CPUs the load decodes the handles and records after the first block
/// on two threads, some in each half),
/// every index rebuilt (found by file id, create GUID, app instance, share,
/// file handle; a colliding put refused; an expiry by the expiry index) and
/// every keyspace's order, and the header counts them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_and_records_come_back_from_a_snapshot_with_every_field_and_index() {
    let dir = tempfile::tempdir().unwrap();
    let store = WalLockStore::open(dir.path(), options()).await.unwrap();
    // Enough locks that the handles land in blocks after the first one.
    churn(&store, 40_000, 10_000).await;
    let mut model = Model::new(1);
    churn_handles_and_records(&store, &mut model, 1_500, 40).await;
    let before = observe(&store).await;
    assert_eq!(before.handles, model.handles.values().cloned().collect::<Vec<_>>());
    let records: usize = before.records.iter().step_by(2).map(|(_, r)| r.len()).sum();
    assert_eq!(records, model.records.len());
    assert!(before.handle_queries.iter().all(|ids| !ids.is_empty()), "{:?}", before.handle_queries);
    let report = store.compact().await.unwrap();
    assert_eq!(observe(&store).await, before);
    drop(store);
    let snapshot = std::fs::read(dir.path().join(snapshot_name(report.snapshot_lsn))).unwrap();
    let header = decode_header(&snapshot).unwrap();
    assert_eq!((header.version, header.handles, header.records), (3, model.handles.len() as u64, records as u64));
    assert!(header.blocks >= 4, "{} blocks: the load splits them between two threads", header.blocks);

    let store = WalLockStore::open(dir.path(), options()).await.unwrap();
    assert_eq!(store.stats().records_replayed, 0, "everything came from the snapshot");
    assert_eq!(observe(&store).await, before);
    // The unique indexes hold after the load: a put that collides is refused.
    let now = Timestamp::from_unix_micros(workload::DISCONNECTED_FROM + 5_000_001);
    let lasting = |h: &&DurableHandle| h.create_guid.is_some() && !h.expired_at(now);
    let held = model.handles.values().find(lasting).unwrap().clone();
    let mut clash = workload::handle(1 << 30, 1 << 30, None, 1);
    clash.file_id = held.file_id;
    assert!(matches!(store.put_handle(clash.clone()).await, Err(Error::HandleConflict { field: "file_id", .. })));
    (clash.file_id, clash.create_guid) = (workload::file_id(1 << 30), held.create_guid);
    assert!(matches!(store.put_handle(clash).await, Err(Error::HandleConflict { field: "create_guid", .. })));
    // The expiry index: what expires next is what the model says.
    let want = model.apply(&[Op::ExpireHandles { now }]).unwrap();
    assert_eq!(store.transaction(vec![Op::ExpireHandles { now }]).await.unwrap(), want);
    assert!(matches!(&want[..], [lockwal::Outcome::Handles(gone)] if !gone.is_empty()));
    let consumed = store.consume_handle_by_create_guid(&held.create_guid.unwrap()).await.unwrap();
    assert_eq!(consumed, held);
}
