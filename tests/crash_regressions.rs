//! Named regression tests for the bugs the crash tests found, one per bug,
//! each reproducing it on the power-loss simulator. Both are fixed: the
//! store directory's parents are fsynced when it is created
//! (`create_dir_durably` in `src/wal/open.rs`), and a frame whose write or
//! fdatasync failed is cut out of the segment (`forget_unsynced_frame` in
//! `src/wal/writer.rs`).

use lockwal::io::FileSystem;
use lockwal::io::sim::{Fault, Loss, SimFs};
use lockwal::testing::crash::{crash_options, open_and_observe, prepare_dir, run, store_dir};
use lockwal::testing::workload::{Step, lock};
use lockwal::wal::WalLockStore;
use lockwal::{Error, LockStore, Op};
use std::sync::Arc;

/// Guards: the directory the first open creates must itself survive power
/// loss. Only the parent ("/srv") exists durably; the store creates
/// "/srv/locks", syncs its files and the directory itself, but a new
/// directory's entry lives in its parent, which must be synced too.
#[test]
fn a_grant_acknowledged_after_the_first_open_survives_power_loss() {
    let fs = SimFs::new();
    let dir = store_dir();
    prepare_dir(&fs, dir.parent().unwrap()).unwrap();
    let granted = lock(1, 1);
    let steps = [Step::Open, Step::Txn(vec![Op::PutLock(granted.clone())])];
    let trace = run(&fs, &dir, &crash_options(), &steps).unwrap();
    assert!(trace.acked_at.iter().all(Option::is_some), "both steps acknowledged");
    let image = fs.crash(Loss::DropUnsynced);
    assert!(image.list(&dir).is_ok(), "the store directory vanished in the crash");
    let observed = open_and_observe(&image, &dir, &crash_options()).unwrap();
    assert_eq!(observed.locks.iter().map(|l| &*l.id).collect::<Vec<_>>(), [&*granted.id]);
    assert_eq!(observed.epoch, 2);
}

/// Guards: after an fdatasync fails, the store must not build on bytes that
/// never reached the disk. Linux reports a writeback error once and marks
/// the pages clean ("fsyncgate"): the failed frame stays readable in the
/// page cache, so a reopen in the same boot replays it, shows it, and
/// appends after it, while the disk holds a hole where it should be. After
/// the next power loss the log has an LSN gap and the store refuses to
/// open (or, were the gap tolerated, loses what the reopened store showed
/// and acknowledged).
#[test]
fn a_reopen_after_a_failed_fsync_does_not_build_on_data_that_never_reached_the_disk() {
    let fs = SimFs::new();
    let dir = store_dir();
    let options = crash_options();
    prepare_dir(&fs, &dir).unwrap();
    let fs_dyn: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let open = || WalLockStore::open_blocking(Arc::clone(&fs_dyn), dir.clone(), options.clone()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let store = open();
    runtime.block_on(store.put_lock(lock(1, 1))).unwrap();
    // The next put is one write and one fdatasync; the fdatasync fails.
    fs.fail_once(fs.calls() + 1, Fault::Eio);
    let failed = runtime.block_on(store.put_lock(lock(2, 2)));
    assert!(matches!(failed, Err(Error::Io { op: "fdatasync", .. })), "{failed:?}");
    drop(store);
    // The operator reopens (same boot: the page cache still holds the
    // frame) and carries on.
    let store = open();
    let shown = runtime.block_on(store.get_lock("l2")).is_ok();
    runtime.block_on(store.put_lock(lock(3, 3))).unwrap();
    drop(store);
    // Power loss.
    let image = fs.crash(Loss::DropUnsynced);
    let observed = open_and_observe(&image, &dir, &options).expect("the store opens after the power loss");
    let ids: Vec<&str> = observed.locks.iter().map(|l| &*l.id).collect();
    let expected: &[&str] = if shown { &["l1", "l2", "l3"] } else { &["l1", "l3"] };
    assert_eq!(ids, expected, "the reopened store showed l2: {shown}");
}
