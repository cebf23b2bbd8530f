//! Crash-point enumeration over the upgrade of a format-1 store (promise 7
//! with promises 1 and 2): the checked-in format-1 fixture
//! (tests/fixtures/README.md) is put on the power-loss simulator, and a
//! workload runs on it that makes the upgrade happen: the first open
//! under this code (which starts a format-3 segment next to the format-1
//! ones), new records of every shape, the first compaction (a format-2
//! snapshot replacing the format-1 snapshot and segments), a crash and a
//! clean restart. Before every I/O call the crash image is taken with
//! every loss pattern; each must reopen, under this code, to the state
//! after some prefix of the workload between the last acknowledged and the
//! last issued step: a store that opens as format 1, or as format 1 and 3
//! mixed, or as format 2 and 3, never neither.
//!
//! The fixture's state before the workload is what this code reads from
//! it; that it is what the old code wrote is `tests/upgrade.rs`.

use lockwal::io::FileSystem;
use lockwal::io::sim::SimFs;
use lockwal::model::{ClientQuery, LockQuery};
use lockwal::testing::crash::{
    Checked, check_image, crash_options, default_losses, prepare_dir, run_and_capture_from, store_dir,
};
use lockwal::testing::model::Model;
use lockwal::testing::sample;
use lockwal::testing::workload::{Expected, Step};
use lockwal::wal::WalLockStore;
use lockwal::{LockStore, Op};
use std::path::Path;
use std::sync::Arc;

/// A simulator holding the fixture's files, durably, in the store
/// directory.
fn fixture_fs() -> SimFs {
    let fs = SimFs::new();
    let dir = store_dir();
    prepare_dir(&fs, &dir).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/format-1-store");
    let mut names: Vec<_> = std::fs::read_dir(&fixture).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    for name in names {
        let bytes = std::fs::read(fixture.join(&name)).unwrap();
        let mut file = fs.open(&dir.join(&name), lockwal::io::OpenMode::CreateNew).unwrap();
        file.write_at(0, &bytes).unwrap();
        file.sync_data().unwrap();
    }
    fs.sync_dir(&dir).unwrap();
    fs
}

/// What the fixture holds, read by this code (on a copy): the locks and
/// clients, the epoch of its last incarnation, and that it crashed.
fn fixture_state() -> Expected {
    let copy = fixture_fs();
    let store = WalLockStore::open_blocking(Arc::new(copy), store_dir(), crash_options()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let (locks, clients, epoch, clean) = runtime.block_on(async {
        (
            store.list_locks(&LockQuery::all()).await.unwrap(),
            store.list_clients(&ClientQuery::all()).await.unwrap(),
            store.epoch().await.unwrap(),
            store.previous_shutdown_was_clean().await.unwrap(),
        )
    });
    assert_eq!((epoch, clean, locks.len()), (4, false, 95), "the fixture as tests/fixtures/README.md describes it");
    let mut model = Model::new(epoch - 1);
    model.locks = locks.into_iter().map(|l| (l.id.to_string(), l)).collect();
    model.clients = clients.into_iter().map(|c| ((c.kind(), c.client_id.clone()), c)).collect();
    Expected { model, clean, open: false }
}

/// The upgrade workload: open, new records of every shape, deletes of old
/// ones, the first compaction, more writes, a crash, a clean restart with
/// a reclaim and the end of grace, a second compaction.
fn steps() -> Vec<Step> {
    let mut new_locks: Vec<Op> = sample::every_kind()
        .into_iter()
        .map(|mut l| {
            l.id = format!("new-{}", l.id).into();
            Op::PutLock(l)
        })
        .collect();
    let mut clients: Vec<Op> = sample::every_client("upgraded").into_iter().map(Op::PutClient).collect();
    let second_half = new_locks.split_off(9);
    vec![
        Step::Open,
        Step::Txn(new_locks),
        Step::Txn(vec![Op::DeleteLock { id: "log-01".into() }, Op::DeleteLock { id: "snap-20".into() }]),
        Step::Txn(vec![clients.pop().unwrap()]),
        Step::Compact,
        Step::Txn(second_half),
        Step::Txn(clients),
        Step::Txn(vec![Op::DeleteLocksByClient { client_id: "c9".into() }]),
        Step::Drop,
        Step::Open,
        Step::Txn(vec![Op::Reclaim { id: "new-kind-oplock".into(), client_id: "client:1".into() }]),
        Step::Txn(vec![Op::EndGrace { share: None }]),
        Step::Compact,
        Step::Close,
    ]
}

#[test]
fn a_crash_at_any_point_of_the_upgrade_leaves_a_store_that_opens() {
    let initial = fixture_state();
    let steps = steps();
    let (trace, points) =
        run_and_capture_from(fixture_fs(), &store_dir(), &crash_options(), initial, &steps, default_losses()).unwrap();
    let end = trace.expected.last().unwrap();
    assert!(end.model.locks.keys().all(|id| id.starts_with("new-")), "grace ended: only new locks are left");
    assert!(points.len() > 100, "{} crash images", points.len());
    let mut total = Checked::default();
    let mut failures = Vec::new();
    for (i, p) in points.iter().enumerate() {
        let window = trace.window_at(p.call);
        let nested = (i % 8 == 0).then(default_losses);
        match check_image(&p.image, &store_dir(), &crash_options(), trace.allowed(window), nested) {
            Ok(checked) => total += checked,
            Err(e) => failures.push(format!("crash at call {} with {:?} ({window:?}): {e}", p.call, p.loss)),
        }
    }
    eprintln!("{} crash images, {total:?}", points.len());
    assert!(failures.is_empty(), "{} of {} images fail; first: {}", failures.len(), points.len(), failures[0]);
    assert!(total.states > points.len() as u64, "nested recoveries were checked: {total:?}");
    assert!(total.in_flight_kept > 0, "some image kept a write in flight: {total:?}");
}
