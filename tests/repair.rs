//! `inspect::repair` through the public API: the epoch after a repair is
//! above every epoch the store handed out, and a plan that drops more than
//! the damage is refused unless the loss is accepted.

use lockwal::io::{FileSystem, RealFs};
use lockwal::testing::sample;
use lockwal::wal::inspect::{self, RepairAction, RepairMode};
use lockwal::wal::{WalLockStore, WalOptions};
use lockwal::{Error, LockStore};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn fs() -> Arc<dyn FileSystem> {
    Arc::new(RealFs)
}

fn files_named(dir: &Path, prefix: &str, suffix: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_str().unwrap();
            name.starts_with(prefix) && name.ends_with(suffix)
        })
        .collect();
    found.sort();
    found
}

fn contents(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    files_named(dir, "", "").into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect()
}

/// Opens and closes the store `n` times (epochs 1..=n), granting one lock
/// in each incarnation; returns the last epoch.
async fn incarnations(dir: &Path, n: usize) -> u64 {
    let mut epoch = 0;
    for i in 0..n {
        let store = WalLockStore::open(dir, WalOptions::default()).await.unwrap();
        store.put_lock(sample::byte_range(&format!("i{i}"), "s", "f", "o", "c")).await.unwrap();
        epoch = store.epoch().await.unwrap();
        store.close().await.unwrap();
    }
    epoch
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

async fn epoch_at_open(dir: &Path) -> u64 {
    let store = WalLockStore::open(dir, WalOptions::default()).await.unwrap();
    let epoch = store.epoch().await.unwrap();
    store.close().await.unwrap();
    epoch
}

/// Regression (issue 15, item 3a): with the snapshot's header damaged, the
/// epoch lived nowhere else (the `Open` records went with the compacted
/// log), so the repaired store restarted at epoch 1 after having been at 6.
/// Format-2 segment headers carry the epoch of the incarnation that made
/// them.
#[tokio::test]
async fn a_repair_that_loses_the_snapshot_header_does_not_reuse_epochs() {
    let dir = tempfile::tempdir().unwrap();
    incarnations(dir.path(), 5).await;
    let store = WalLockStore::open(dir.path(), WalOptions::default()).await.unwrap();
    let used = store.epoch().await.unwrap();
    store.compact().await.unwrap();
    store.put_lock(sample::byte_range("after", "s", "f", "o", "c")).await.unwrap();
    drop(store); // a crash: no Open record follows the compaction
    let snapshot = files_named(dir.path(), "snap-", ".snap").pop().unwrap();
    flip(&snapshot, 20); // inside the 64-byte header
    let plan = inspect::repair(fs(), dir.path(), RepairMode::ApplyAcceptingLoss).unwrap();
    assert!(plan.actions.iter().any(|a| a.file() == snapshot), "{:?}", plan.actions);
    assert!(plan.epoch_floor >= used, "floor {} below the epoch {used} in use", plan.epoch_floor);
    let after = plan.after.unwrap().epoch;
    assert!(after > used, "repaired store runs epoch {after}, {used} was already handed out");
    assert!(epoch_at_open(dir.path()).await > after);
}

/// Regression (issue 15, item 3b): with the `Open` record in the first frame
/// of the newest segment damaged, the repaired store ran the dropped
/// incarnation's epoch again. The segment's header names that epoch.
#[tokio::test]
async fn a_repair_that_drops_an_open_record_does_not_reuse_its_epoch() {
    let dir = tempfile::tempdir().unwrap();
    incarnations(dir.path(), 2).await;
    let store = WalLockStore::open(dir.path(), WalOptions::default()).await.unwrap();
    let used = store.epoch().await.unwrap();
    for i in 0..5 {
        store.put_lock(sample::byte_range(&format!("late{i}"), "s", "f", "o", "c")).await.unwrap();
    }
    drop(store);
    let newest = files_named(dir.path(), "seg-", ".wal").pop().unwrap();
    flip(&newest, 48 + 20); // the first frame: this incarnation's Open record
    let plan = inspect::repair(fs(), dir.path(), RepairMode::ApplyAcceptingLoss).unwrap();
    let after = plan.after.unwrap().epoch;
    assert!(after > used, "repaired store runs epoch {after}, {used} was already handed out");
}

/// A repair interrupted after its cuts and before it opened the store (where
/// it records the new epoch) leaves a store whose next plain open still goes
/// above the dropped incarnation's epoch: the truncated segment keeps its
/// header, and moved-aside segments keep theirs in the backups.
#[tokio::test]
async fn an_open_after_a_repair_interrupted_before_its_epoch_record_does_not_reuse_epochs() {
    for damage_in_newest in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        incarnations(dir.path(), 3).await;
        let store = WalLockStore::open(dir.path(), WalOptions::default()).await.unwrap();
        let used = store.epoch().await.unwrap();
        store.put_lock(sample::byte_range("late", "s", "f", "o", "c")).await.unwrap();
        drop(store);
        let segments = files_named(dir.path(), "seg-", ".wal");
        // The newest segment's Open record, or a record of an older segment
        // (the newest is then moved aside whole).
        let (victim, at) = if damage_in_newest { (segments.len() - 1, 48 + 20) } else { (1, 48 + 20) };
        flip(&segments[victim], at);
        let plan = inspect::repair(fs(), dir.path(), RepairMode::Plan).unwrap();
        assert!(!plan.actions.is_empty());
        // Make the cuts by hand, as the repair does, and stop there.
        for action in &plan.actions {
            match action {
                RepairAction::MoveAside { file, backup, .. } => std::fs::rename(file, backup).unwrap(),
                RepairAction::Truncate { file, offset, backup, bytes, .. } => {
                    let content = std::fs::read(file).unwrap();
                    std::fs::write(backup, &content[*offset as usize..(*offset + *bytes) as usize]).unwrap();
                    std::fs::OpenOptions::new().write(true).open(file).unwrap().set_len(*offset).unwrap();
                }
            }
        }
        let epoch = epoch_at_open(dir.path()).await;
        assert!(epoch > used, "damage in newest: {damage_in_newest}: epoch {epoch} reused ({used} was in use)");
    }
}

/// Regression (issue 15, item 6): one flipped byte in the snapshot made an
/// applied repair empty the store (the log after the lost snapshot cannot be
/// replayed either). The plan says what it drops, `verify` reports what is
/// recoverable, and [`RepairMode::Apply`] refuses it without changing a
/// byte; only [`RepairMode::ApplyAcceptingLoss`] makes the cuts.
#[tokio::test]
async fn a_repair_that_drops_a_snapshot_or_valid_records_is_refused_unless_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let store = WalLockStore::open(dir.path(), WalOptions::default()).await.unwrap();
    for i in 0..150 {
        store.put_lock(sample::byte_range(&format!("l{i:03}"), "s", &format!("f{i}"), "o", "c")).await.unwrap();
    }
    store.compact().await.unwrap();
    store.close().await.unwrap();
    let snapshot = files_named(dir.path(), "snap-", ".snap").pop().unwrap();
    let len = std::fs::metadata(&snapshot).unwrap().len() as usize;
    flip(&snapshot, len / 2);

    let report = inspect::verify(&RealFs, dir.path()).unwrap();
    assert!(!report.is_intact());
    let recoverable = report.repair.expect("verify reports what a repair keeps");
    assert_eq!(recoverable.after.as_ref().unwrap().locks, 0);
    assert_eq!(recoverable.snapshots_dropped(), [snapshot.as_path()]);
    let loss = recoverable.loss().unwrap();
    assert!(loss.contains("snapshot") && loss.contains("0 lock(s)"), "{loss}");

    let before = contents(dir.path());
    match inspect::repair(fs(), dir.path(), RepairMode::Apply) {
        Err(Error::RepairRefused { dir: refused, reason }) => {
            assert_eq!(refused, dir.path());
            assert!(reason.contains("snapshot"), "{reason}");
        }
        other => panic!("expected RepairRefused, got {other:?}"),
    }
    assert_eq!(contents(dir.path()), before, "a refused repair changes nothing");
    let done = inspect::repair(fs(), dir.path(), RepairMode::ApplyAcceptingLoss).unwrap();
    assert!(done.applied);
    assert!(inspect::verify(&RealFs, dir.path()).unwrap().is_intact());

    // Valid records after damage in a log segment: refused the same way.
    let dir = tempfile::tempdir().unwrap();
    let store =
        WalLockStore::open(dir.path(), WalOptions { segment_size: 4096, ..WalOptions::default() }).await.unwrap();
    for i in 0..150 {
        store.put_lock(sample::byte_range(&format!("l{i:03}"), "s", &format!("f{i}"), "o", "c")).await.unwrap();
    }
    store.close().await.unwrap();
    flip(&files_named(dir.path(), "seg-", ".wal")[1], 48 + 20);
    let before = contents(dir.path());
    let plan = inspect::repair(fs(), dir.path(), RepairMode::Plan).unwrap();
    assert!(plan.records_dropped() > 0 && plan.loss().unwrap().contains("valid log record"));
    assert!(matches!(inspect::repair(fs(), dir.path(), RepairMode::Apply), Err(Error::RepairRefused { .. })));
    assert_eq!(contents(dir.path()), before, "a refused repair changes nothing");
}
