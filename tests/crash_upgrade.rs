//! Crash-point enumeration over the upgrade of a format-1 store and of a
//! format-3 store (promise 7 with promises 1 and 2): a checked-in fixture
//! (tests/fixtures/README.md) is put on the power-loss simulator, and a
//! workload runs on it that makes the upgrade happen: the first open
//! under this code (which starts a format-4 segment next to the old
//! ones), new records of every shape (for the format-3 store: durable
//! handles and records, alone and in transactions with locks and
//! consumes), the first compaction (a version-3 snapshot replacing the
//! old snapshot and segments), a crash and a clean restart. Before every
//! I/O call the crash image is taken with every loss pattern; each must
//! reopen, under this code, to the state after some prefix of the
//! workload between the last acknowledged and the last issued step: a
//! store that opens as the old format, or as old and new segments mixed,
//! or as the new snapshot and segments, never neither.
//!
//! The fixture's state before the workload is what this code reads from
//! it; that it is what the old code wrote is `tests/upgrade.rs`.

use lockwal::io::FileSystem;
use lockwal::io::sim::SimFs;
use lockwal::model::{ClientQuery, HandleQuery, LockQuery, Timestamp};
use lockwal::testing::crash::{
    Checked, check_image, crash_options, default_losses, prepare_dir, run_and_capture_from, store_dir,
};
use lockwal::testing::model::Model;
use lockwal::testing::sample;
use lockwal::testing::workload::{Expected, NEVER_HELD, SPACES, Step};
use lockwal::wal::WalLockStore;
use lockwal::{LockStore, Op};
use std::path::Path;
use std::sync::Arc;

/// A simulator holding the files of fixture `name`, durably, in the store
/// directory.
fn fixture_fs(name: &str) -> SimFs {
    let fs = SimFs::new();
    let dir = store_dir();
    prepare_dir(&fs, &dir).unwrap();
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
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

/// What fixture `name` holds, read by this code (on a copy): the locks and
/// clients (no handle, no record: neither old format has them), the epoch
/// of its last incarnation, and that it crashed; `(epoch, clean, locks)`
/// as tests/fixtures/README.md describes it.
fn fixture_state(name: &str, described: (u64, bool, usize)) -> Expected {
    let copy = fixture_fs(name);
    let store = WalLockStore::open_blocking(Arc::new(copy), store_dir(), crash_options()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let (locks, clients, epoch, clean) = runtime.block_on(async {
        assert_eq!(store.list_handles(&HandleQuery::All).await.unwrap(), []);
        (
            store.list_locks(&LockQuery::all()).await.unwrap(),
            store.list_clients(&ClientQuery::all()).await.unwrap(),
            store.epoch().await.unwrap(),
            store.previous_shutdown_was_clean().await.unwrap(),
        )
    });
    assert_eq!((epoch, clean, locks.len()), described, "the fixture as tests/fixtures/README.md describes it");
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
    let initial = fixture_state("format-1-store", (4, false, 95));
    let steps = steps();
    let end = check_every_crash_point("format-1-store", initial, &steps);
    assert!(end.model.locks.keys().all(|id| id.starts_with("new-")), "grace ended: only new locks are left");
}

/// Runs `steps` on fixture `name`, taking the crash image before every
/// I/O call with every loss pattern, and checks each (one in eight also
/// crashed during its recovery); returns the state at the end.
fn check_every_crash_point(name: &str, initial: Expected, steps: &[Step]) -> Expected {
    let (trace, points) =
        run_and_capture_from(fixture_fs(name), &store_dir(), &crash_options(), initial, steps, default_losses())
            .unwrap();
    assert!(trace.acked_at.iter().all(Option::is_some), "the workload ran to the end");
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
    trace.expected.last().unwrap().clone()
}

/// The upgrade workload of the format-3 store: open, durable handles of
/// every field and records in every keyspace, a file created with its
/// entry and lock while an old lock goes, a reconnect consuming a handle
/// with its lock and a record, a transaction that fails half way, the
/// first compaction, an expiry at a handle's expiry instant (kept) and the
/// microsecond after (gone), a swap, a crash, a reconnect by file id with
/// the reclaim of an old lock, the end of grace, a second compaction, a
/// clean close.
fn format_3_steps() -> Vec<Step> {
    let handles: Vec<_> = (1..=5).map(sample::handle).collect();
    let record = |space: usize, key: &str, value: u8| Op::PutRecord {
        space: SPACES[space].into(),
        key: key.as_bytes().to_vec(),
        value: vec![value; 40],
    };
    let h2_expiry = handles[1].expires_at().unwrap().unix_micros;
    vec![
        Step::Open,
        Step::Txn(handles.iter().cloned().map(Op::PutHandle).collect()),
        Step::Txn((0..12).map(|i| record(i % 3, &format!("d{}/f{i}", i % 2), i as u8)).collect()),
        Step::Txn(vec![
            record(0, "d0/created", 1),
            Op::PutLock(sample::byte_range("created", "share-b", "created", "owner-n", "c9")),
            Op::DeleteLock { id: "log-01".into() },
        ]),
        Step::Txn(vec![
            Op::ConsumeHandleByCreateGuid { create_guid: handles[0].create_guid.unwrap() },
            Op::PutLock(sample::byte_range("reconnected", "projects", "fh-1", "owner-r", "c9")),
            record(2, "open-1", 7),
        ]),
        Step::Txn(vec![
            record(1, "d1/never", 2),
            Op::DeleteLock { id: "snap-09".into() },
            Op::ConsumeHandleByFileId { file_id: handles[1].file_id },
            Op::SwapRecord {
                space: SPACES[0].into(),
                key: b"d0/f0".to_vec(),
                expected: Some(NEVER_HELD.to_vec()),
                value: None,
            },
        ]),
        Step::Compact,
        Step::Txn(vec![Op::ExpireHandles { now: Timestamp::from_unix_micros(h2_expiry) }]),
        Step::Txn(vec![Op::ExpireHandles { now: Timestamp::from_unix_micros(h2_expiry + 1) }]),
        Step::Txn(vec![Op::SwapRecord {
            space: SPACES[0].into(),
            key: b"d0/f0".to_vec(),
            expected: Some(vec![0; 40]),
            value: Some(vec![9; 10]),
        }]),
        Step::Drop,
        Step::Open,
        Step::Txn(vec![
            Op::ConsumeHandleByFileId { file_id: handles[2].file_id },
            Op::Reclaim { id: "log-02".into(), client_id: "c9".into() },
        ]),
        Step::Txn(vec![Op::EndGrace { share: None }]),
        Step::Compact,
        Step::Close,
    ]
}

#[test]
fn a_crash_at_any_point_of_the_format_3_upgrade_leaves_a_store_that_opens() {
    let initial = fixture_state("format-3-store", (4, false, 96));
    let steps = format_3_steps();
    let (_, answers) = lockwal::testing::workload::expected_states_from(initial.clone(), &steps);
    let failed: Vec<usize> =
        answers.iter().enumerate().filter(|(_, a)| matches!(a, Some(Err(_)))).map(|(i, _)| i).collect();
    assert_eq!(failed, [5], "only the transaction meant to fail fails");
    let end = check_every_crash_point("format-3-store", initial, &steps);
    assert_eq!(end.model.handles.keys().collect::<Vec<_>>(), ["open-4", "open-5"]);
    assert_eq!(end.model.records.len(), 14);
    let locks: Vec<&String> = end.model.locks.keys().collect();
    assert_eq!(locks, ["log-02"], "grace ended: only the reclaimed lock is left");
}
