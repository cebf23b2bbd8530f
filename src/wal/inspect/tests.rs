use super::*;
use crate::LockStore;
use crate::error::Error;
use crate::io::RealFs;
use crate::testing::fs::{HookedFs, ReadKind};
use crate::testing::sample;
use crate::wal::{WalLockStore, WalOptions};
use std::path::PathBuf;
use std::sync::Arc;

/// A closed store whose lock `lNNN` was put at LSN NNN + 2, in 4 KiB
/// segments (about 46 records each).
fn store(puts: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions { segment_size: 4096, compact_after_bytes: None, ..WalOptions::default() };
    let store = WalLockStore::open_blocking(Arc::new(RealFs), dir.path().to_owned(), options).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for i in 0..puts {
        rt.block_on(store.put_lock(sample::byte_range(&format!("l{i:03}"), "s", "f", "o", "c"))).unwrap();
    }
    drop(store);
    dir
}

fn segment_paths(dir: &Path) -> Vec<PathBuf> {
    list_segments(&RealFs, dir).unwrap().segments.into_iter().map(|(_, p)| p).collect()
}

fn fs() -> Arc<dyn FileSystem> {
    Arc::new(RealFs)
}

fn locks_after_open(dir: &Path) -> Vec<String> {
    let store = WalLockStore::open_blocking(fs(), dir.to_owned(), WalOptions::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(store.list_locks(&crate::LockQuery::all())).unwrap().into_iter().map(|l| l.id.to_string()).collect()
}

fn prefix(n: u64) -> Vec<String> {
    (0..n).map(|i| format!("l{i:03}")).collect()
}

#[test]
fn an_intact_store_verifies_and_has_nothing_to_repair() {
    let dir = store(100);
    let report = verify(&RealFs, dir.path()).unwrap();
    assert!(report.is_intact());
    assert_eq!(report.replayed.as_ref().unwrap().locks, 100);
    assert!(report.segments.iter().all(|s| s.status == SegmentStatus::Clean && !s.covered));
    assert_eq!(report.segments.iter().map(|s| s.records).sum::<u64>(), 101);
    let plan = repair(fs(), dir.path(), RepairMode::Apply).unwrap();
    assert!(plan.actions.is_empty() && !plan.applied);
}

#[test]
fn a_missing_segment_cuts_the_log_at_the_gap() {
    let dir = store(150);
    let segs = segment_paths(dir.path());
    assert!(segs.len() >= 4);
    let first_records = verify(&RealFs, dir.path()).unwrap().segments[0].records;
    std::fs::remove_file(&segs[1]).unwrap();
    let report = verify(&RealFs, dir.path()).unwrap();
    let problem = report.problem.unwrap();
    assert_eq!((problem.kind, &problem.file, problem.offset), (ProblemKind::Corruption, &segs[1], 0));
    let later: u64 = report.segments[1..].iter().map(|s| s.records).sum();
    assert_eq!(problem.valid_records_after, later);
    let plan = repair(fs(), dir.path(), RepairMode::ApplyAcceptingLoss).unwrap();
    assert!(plan.applied);
    assert_eq!(plan.actions.len(), segs.len() - 2, "every segment after the gap is moved aside");
    assert!(plan.actions.iter().all(|a| matches!(a, RepairAction::MoveAside { .. })));
    assert_eq!(plan.records_dropped(), later);
    assert_eq!(locks_after_open(dir.path()), prefix(first_records - 1));
}

#[test]
fn a_damaged_header_moves_the_whole_segment() {
    let dir = store(150);
    let segs = segment_paths(dir.path());
    let records: Vec<u64> = verify(&RealFs, dir.path()).unwrap().segments.iter().map(|s| s.records).collect();
    let mut bytes = std::fs::read(&segs[2]).unwrap();
    bytes[20] ^= 0xFF; // the salt
    std::fs::write(&segs[2], &bytes).unwrap();
    let report = verify(&RealFs, dir.path()).unwrap();
    let problem = report.problem.unwrap();
    assert_eq!((&problem.file, problem.offset), (&segs[2], 0));
    assert!(matches!(report.segments[2].status, SegmentStatus::Damaged { offset: 0, .. }));
    let plan = repair(fs(), dir.path(), RepairMode::Plan).unwrap();
    let moved: Vec<&Path> = plan.actions.iter().map(RepairAction::file).collect();
    assert!(moved.contains(&segs[2].as_path()) && !moved.contains(&segs[1].as_path()), "{moved:?}");
    assert_eq!(std::fs::read(&segs[2]).unwrap(), bytes, "planning changes nothing");
    repair(fs(), dir.path(), RepairMode::ApplyAcceptingLoss).unwrap();
    assert_eq!(locks_after_open(dir.path()), prefix(records[0] + records[1] - 1));
}

#[test]
fn an_interrupted_repair_can_be_run_again_and_ends_in_the_same_state() {
    // One-shot repair of a damaged frame ...
    let damage = |dir: &Path| {
        let seg = &segment_paths(dir)[1];
        let mut bytes = std::fs::read(seg).unwrap();
        bytes[2000] ^= 1;
        std::fs::write(seg, bytes).unwrap();
    };
    let once = store(200);
    damage(once.path());
    repair(fs(), once.path(), RepairMode::ApplyAcceptingLoss).unwrap();
    // ... and one "crashed" after moving the later segments aside (the
    // first durable step), then run again.
    let twice = store(200);
    damage(twice.path());
    let plan = repair(fs(), twice.path(), RepairMode::Plan).unwrap();
    for action in &plan.actions {
        if let RepairAction::MoveAside { file, backup, .. } = action {
            std::fs::rename(file, backup).unwrap();
        }
    }
    assert!(!verify(&RealFs, twice.path()).unwrap().is_intact(), "the damage itself is still there");
    let rerun = repair(fs(), twice.path(), RepairMode::ApplyAcceptingLoss).unwrap();
    assert!(rerun.actions.iter().all(|a| matches!(a, RepairAction::Truncate { .. })), "{:?}", rerun.actions);
    let (a, b) = (locks_after_open(once.path()), locks_after_open(twice.path()));
    assert_eq!(a, b);
    assert!(!a.is_empty() && a.len() < 200);
}

#[test]
fn segments_left_by_an_interrupted_compaction_are_covered_not_corrupt() {
    let dir = store(120);
    let saved: Vec<(PathBuf, Vec<u8>)> =
        segment_paths(dir.path()).into_iter().map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect();
    let store = WalLockStore::open_blocking(fs(), dir.path().to_owned(), WalOptions::default()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(store.compact()).unwrap();
    drop(store);
    // Put the retired segments back, as if the compaction had crashed
    // before removing them.
    for (path, bytes) in &saved {
        if !path.exists() {
            std::fs::write(path, bytes).unwrap();
        }
    }
    let report = verify(&RealFs, dir.path()).unwrap();
    assert!(report.is_intact(), "{:?}", report.problem);
    assert!(report.segments.iter().filter(|s| s.covered).count() >= saved.len() - 1);
    assert_eq!(report.replayed.unwrap().locks, 120);
    assert!(repair(fs(), dir.path(), RepairMode::Plan).unwrap().actions.is_empty());
}

/// Regression (issue 15, item 5): `repair` applied inside a
/// tokio runtime panicked ("Cannot block the current thread") after its
/// cuts and before its epoch record; it now completes from async code.
#[test]
fn repair_applied_from_async_code_completes() {
    let dir = store(150);
    let seg = &segment_paths(dir.path())[1];
    let mut bytes = std::fs::read(seg).unwrap();
    bytes[2000] ^= 1;
    std::fs::write(seg, bytes).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let plan = rt.block_on(async { repair(fs(), dir.path(), RepairMode::ApplyAcceptingLoss) }).unwrap();
    assert!(plan.applied && !plan.actions.is_empty());
    assert!(plan.after.as_ref().unwrap().epoch > plan.epoch_floor, "the epoch record was written");
    assert!(verify(&RealFs, dir.path()).unwrap().is_intact());
}

/// The real file system, except that mapping a file fails the test unless
/// `maps` (the lock holder may map).
fn no_maps(maps: bool) -> HookedFs {
    HookedFs::new(move |path, kind, bytes| {
        assert!(
            maps || kind == ReadKind::Copied,
            "{} mapped: a writer truncating it would kill this reader",
            path.display()
        );
        Ok(bytes)
    })
}

/// Issue 15 (suspected): `verify`, `dump` and repair planning mapped the
/// files of a store they do not hold the lock of when given `RealFs`
/// (SIGBUS if a starting writer truncates one). They read by copying
/// whatever file system they are given.
#[test]
fn inspection_never_maps_a_file() {
    let dir = store(150);
    let fs = no_maps(false);
    assert!(verify(&fs, dir.path()).unwrap().is_intact());
    dump(&fs, dir.path(), 0, |_| Ok::<(), Error>(())).unwrap();
    let seg = &segment_paths(dir.path())[1];
    let mut bytes = std::fs::read(seg).unwrap();
    bytes[2000] ^= 1;
    std::fs::write(seg, bytes).unwrap();
    let report = verify(&fs, dir.path()).unwrap();
    assert!(report.repair.is_some_and(|plan| !plan.actions.is_empty()));
    assert!(!repair(Arc::new(no_maps(false)), dir.path(), RepairMode::Plan).unwrap().applied);
}

/// Issue 15 (suspected): an applied repair released the writer lock after
/// its cuts and took it again to open the store and record the epoch, so
/// a server starting in between could open the cut store first. It takes
/// the lock once and holds it to the end.
#[test]
fn an_applied_repair_takes_the_writer_lock_once_and_holds_it_to_its_epoch_record() {
    let dir = store(150);
    let seg = &segment_paths(dir.path())[1];
    let mut bytes = std::fs::read(seg).unwrap();
    bytes[2000] ^= 1;
    std::fs::write(seg, bytes).unwrap();
    let fs = Arc::new(no_maps(true));
    let plan = repair(Arc::clone(&fs) as Arc<dyn FileSystem>, dir.path(), RepairMode::ApplyAcceptingLoss).unwrap();
    assert!(plan.applied);
    assert_eq!(fs.locks_taken(), 1, "one lock, from the plan to the epoch record");
}

/// Regression (issue 15, item 1): a failure was returned as soon as the
/// directory's names were unchanged, so a copy that caught a frame half
/// written was reported as corruption. A failure is returned only when a
/// quiet re-read fails the same way.
#[test]
fn a_failure_is_returned_only_when_a_quiet_reread_confirms_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut calls = 0;
    let result: Result<()> = retry_while_changing(&RealFs, dir.path(), || {
        calls += 1;
        Err(Error::Internal("stable failure".into()))
    });
    assert!(result.is_err());
    assert_eq!(calls, 2, "the same failure twice on a quiet directory is real");

    let mut calls = 0;
    let result = retry_while_changing(&RealFs, dir.path(), || {
        calls += 1;
        if calls < 3 { Err(Error::Internal(format!("a frame read half written, attempt {calls}"))) } else { Ok(calls) }
    });
    assert_eq!(result.unwrap(), 3, "differing failures are read again");

    let mut calls = 0;
    let result = retry_while_changing(&RealFs, dir.path(), || {
        calls += 1;
        if calls < 4 {
            std::fs::write(dir.path().join(format!("seg-{calls}")), b"x").unwrap();
            return Err(Error::Internal("a file vanished".into()));
        }
        Ok(calls)
    });
    assert_eq!(result.unwrap(), 4, "the same failure while names change is read again");

    let mut calls = 0;
    let result: Result<()> = retry_while_changing(&RealFs, dir.path(), || {
        calls += 1;
        Err(Error::Internal(format!("never the same twice {calls}")))
    });
    assert!(result.is_err());
    assert_eq!(calls, LIVE_RETRIES, "bounded");
}

#[test]
fn dump_visits_records_from_an_lsn_and_stops_on_a_visitor_error() {
    let dir = store(60);
    let mut lsns = Vec::new();
    let summary = dump(&RealFs, dir.path(), 10, |r| {
        assert!(r.commands.is_ok());
        lsns.push(r.lsn);
        Ok::<(), Error>(())
    })
    .unwrap();
    assert_eq!(lsns, (10..=61).collect::<Vec<_>>());
    assert_eq!(summary.records, 52);
    let mut seen = 0;
    let stopped = dump(&RealFs, dir.path(), 0, |_| {
        seen += 1;
        if seen == 5 { Err(Error::Internal("reader went away".into())) } else { Ok(()) }
    });
    assert!(stopped.is_err());
    assert_eq!(seen, 5);
}
