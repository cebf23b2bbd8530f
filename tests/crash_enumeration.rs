//! Crash-point enumeration (issue 5, item 2). Guards the promise that an
//! acknowledged grant or release survives a power cut at any moment, and
//! that recovery itself survives one.
//!
//! A workload of more than 1,000 operations (transactions, failing
//! transactions, bulk deletes, client records, durable handles put,
//! colliding, consumed and expired, records put, deleted and swapped,
//! transactions mixing them with locks, some failing half way, a clean and
//! an unclean restart each followed by reclaims (some with a handle's
//! reconnect) and `end_grace`, compactions, and segment rotations every few
//! records with the smallest segment size) runs once on the power-loss
//! simulator, which takes the crash image before every I/O call with every
//! loss pattern: nothing unsynced kept, prefixes of the unsynced
//! operations, and each unsynced write torn at a random byte with zeros or
//! garbage behind. Every image is reopened and must hold exactly the state
//! (locks, clients, handles and records, every field) after some prefix of
//! the workload between the last acknowledged and the last issued step,
//! with an epoch above every acknowledged one. For a sample of the images,
//! the recovery is crashed in turn at each of its own I/O calls, and those
//! images are checked again. A second, short workload aims at transactions
//! that mix handles, records and locks, checked also without the model.
//!
//! Taking the images from one run is the same as crashing a run at call `k`
//! for each `k` (the simulator's unit tests prove it), without re-running
//! the workload for each `k`.

use lockwal::io::sim::{Fill, Loss, Pending};
use lockwal::testing::crash::{
    Checked, CrashPoint, SelectLosses, check_image, check_targeted, crash_options, default_losses, open_and_observe,
    run_and_capture, store_dir,
};
use lockwal::testing::workload::{Step, expected_states, generate, op_count};
use std::sync::Arc;

/// Seed of the workload.
const SEED: u64 = 0x010C_43A1;
/// Operations in the workload.
const OPS: usize = 1000;
/// A compaction every this many operations.
const COMPACT_EVERY: usize = 150;
/// One image in this many also gets its recovery crashed at every call.
const NESTED_EVERY: usize = 8;

/// Checks `points` on two threads; returns the totals and the failures.
fn check_all(
    points: &[CrashPoint],
    trace: &lockwal::testing::crash::Trace,
    options: &lockwal::wal::WalOptions,
    nested: &SelectLosses,
) -> (Checked, Vec<String>) {
    let workers = 2;
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                scope.spawn(move || {
                    let mut total = Checked::default();
                    let mut failures = Vec::new();
                    for (i, p) in points.iter().enumerate().skip(w).step_by(workers) {
                        let window = trace.window_at(p.call);
                        let nested = (i % NESTED_EVERY == 0).then(|| Arc::clone(nested));
                        match check_image(&p.image, &store_dir(), options, trace.allowed(window), nested) {
                            Ok(checked) => total += checked,
                            Err(e) => {
                                failures.push(format!("crash at call {} with {:?} ({window:?}): {e}", p.call, p.loss))
                            }
                        }
                    }
                    (total, failures)
                })
            })
            .collect();
        let mut total = Checked::default();
        let mut failures = Vec::new();
        for handle in handles {
            let (t, f) = handle.join().expect("checker thread");
            total += t;
            failures.extend(f);
        }
        (total, failures)
    })
}

#[test]
fn every_crash_point_of_a_1000_operation_workload_recovers_an_acknowledged_state() {
    let steps = generate(SEED, OPS, COMPACT_EVERY);
    assert!(op_count(&steps) >= OPS);
    let (trace, points) = run_and_capture(&store_dir(), &crash_options(), &steps, default_losses()).unwrap();
    assert_eq!(trace.acked_at.len(), steps.len(), "the workload ran to the end");
    assert!(trace.acked_at.iter().all(Option::is_some));

    // Every call was a crash point, and the points cover every kind of
    // moment the store goes through.
    let calls: std::collections::BTreeSet<u64> = points.iter().map(|p| p.call).collect();
    assert_eq!(calls.len() as u64, trace.calls - trace.issued_at[0], "a crash point at every call of the workload");
    let with = |f: &dyn Fn(&Pending) -> bool| points.iter().filter(|p| p.pending.iter().any(f)).count();
    assert!(with(&|p| matches!(p, Pending::Create { path } if path.extension().is_some_and(|e| e == "wal"))) > 20);
    assert!(with(&|p| matches!(p, Pending::Rename { .. })) >= 4, "inside snapshot installs");
    assert!(with(&|p| matches!(p, Pending::Remove { .. })) >= 4, "inside log retirement");
    // Segments grow by zero-filled chunks written ahead of the frames (one
    // write of a mebibyte, or up to the segment size): crashes land while
    // such a write is pending.
    assert!(with(&|p| matches!(p, Pending::Write { len, .. } if *len >= 1024)) > 20, "inside zero-fill-ahead writes");
    let torn = |fill: fn(&Fill) -> bool| {
        points.iter().filter(|p| matches!(p.loss, Loss::Torn { fill: ref f, .. } if fill(f))).count()
    };
    let (zeros, garbage) = (torn(|f| *f == Fill::Zeros), torn(|f| matches!(f, Fill::Garbage(_))));
    println!("points {} torn zeros {zeros} garbage {garbage}", points.len());
    assert!(zeros > 300 && garbage > 300, "{zeros} {garbage}");
    let steps_of = |f: fn(&Step) -> bool| steps.iter().filter(|s| f(s)).count();
    assert!(steps_of(|s| *s == Step::Compact) >= 6 && steps_of(|s| *s == Step::Open) == 3);
    // Durable handles and records, alone and with locks in one transaction.
    let ops_named = |name: &str| {
        steps
            .iter()
            .filter_map(|s| if let Step::Txn(ops) = s { Some(ops) } else { None })
            .flatten()
            .filter(|o| o.name() == name)
            .count()
    };
    for (name, at_least) in [
        ("PutHandle", 40),
        ("ConsumeHandleByFileId", 10),
        ("ConsumeHandleByCreateGuid", 10),
        ("ExpireHandles", 4),
        ("DeleteHandle", 4),
        ("PutRecord", 40),
        ("DeleteRecord", 10),
        ("SwapRecord", 20),
    ] {
        assert!(ops_named(name) >= at_least, "{name}: {}", ops_named(name));
    }
    let mixed = steps_of(|s| {
        matches!(s, Step::Txn(ops) if ops.iter().any(|o| matches!(o, lockwal::Op::PutLock(_)))
            && ops.iter().any(|o| !o.in_format_3()))
    });
    assert!(mixed >= 20, "{mixed} transactions mix locks with handles or records");

    let (checked, failures) = check_all(&points, &trace, &crash_options(), &default_losses());
    assert!(
        failures.is_empty(),
        "{} of the crash points failed; the first:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
    println!(
        "crash points checked: {} ({} images of the workload, {} crashes during their recovery); \
         {} recovered an operation that was in flight, {} a recovery's own epoch",
        checked.states,
        points.len(),
        checked.states - points.len() as u64,
        checked.in_flight_kept,
        checked.recovery_epoch_kept,
    );
    assert!(checked.states >= 10_000, "only {} crash points", checked.states);
    // Both outcomes of an in-flight operation occur, so the check is not
    // vacuous in either direction.
    assert!(checked.in_flight_kept > 100);
    assert!(checked.states - checked.in_flight_kept > 100);
    assert!(checked.recovery_epoch_kept > 10);
}

/// Guards, at a crash before any I/O call of a workload that mixes durable
/// handles, records and locks in transactions (`workload::targeted`: across
/// compactions and an unclean restart), and at a crash during the recovery
/// of each such image: a transaction's records, locks and handles are all
/// there or all absent, nothing of a transaction that failed half way is,
/// and a handle whose consume (or expiry) was acknowledged never comes
/// back. Checked twice: against the model (every field, as above) and
/// directly on the recovered store, independently of the model.
#[test]
fn after_a_crash_at_any_call_a_transactions_records_and_locks_are_together_and_a_consumed_handle_stays_consumed() {
    let targeted = lockwal::testing::workload::targeted();
    let steps = &targeted.steps;
    let (trace, points) = run_and_capture(&store_dir(), &crash_options(), steps, default_losses()).unwrap();
    assert!(trace.acked_at.iter().all(Option::is_some), "the workload ran to the end");
    let mut failures = Vec::new();
    let mut total = Checked::default();
    let mut windows = std::collections::BTreeSet::new();
    for (i, p) in points.iter().enumerate() {
        let window = trace.window_at(p.call);
        windows.insert((window.acked, window.issued));
        let nested = (i % 4 == 0).then(default_losses);
        match check_image(&p.image, &store_dir(), &crash_options(), trace.allowed(window), nested) {
            Ok(checked) => total += checked,
            Err(e) => failures.push(format!("crash at call {} with {:?} ({window:?}): {e}", p.call, p.loss)),
        }
        let observed = open_and_observe(&p.image, &store_dir(), &crash_options()).unwrap();
        if let Err(e) = check_targeted(&observed, &targeted, window.acked) {
            failures.push(format!("crash at call {} with {:?} ({window:?}), directly: {e}", p.call, p.loss));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} images fail; the first:\n{}",
        failures.len(),
        points.len(),
        failures[..failures.len().min(8)].join("\n")
    );
    println!("{} crash images of the targeted workload, {total:?}", points.len());
    // Crashes land while each transaction that writes is in flight.
    let (_, answers) = expected_states(steps);
    for (i, answer) in answers.iter().enumerate() {
        if matches!(answer, Some(Ok(_))) {
            assert!(windows.contains(&(i, i + 1)), "no crash while step {i} was in flight: {windows:?}");
        }
    }
    assert!(total.in_flight_kept > 20 && total.states - total.in_flight_kept > 20, "{total:?}");
    assert!(total.states > 2 * points.len() as u64, "recoveries were crashed too: {total:?}");
}

/// Guards the opens that compact (`compact_at_open_segments`): a power cut
/// at any I/O call of a run of twelve opens, each granting a lock (and
/// releasing an older one) and then closing cleanly or dropping, with the
/// bound at 3 so that every third open compacts: while its snapshot is
/// written, renamed, and the segments it covers are removed, and while its
/// recovery is crashed in turn. Every image reopens to an acknowledged
/// prefix with an epoch above every acknowledged one.
#[test]
fn every_crash_point_of_opens_that_compact_recovers_an_acknowledged_state() {
    use lockwal::Op;
    use lockwal::testing::workload::lock;
    let options = lockwal::wal::WalOptions { compact_at_open_segments: Some(3), ..crash_options() };
    let mut steps = Vec::new();
    for i in 0..12u64 {
        steps.push(Step::Open);
        steps.push(Step::Txn(vec![Op::PutLock(lock(i, 0))]));
        if i % 3 == 1 {
            let id = lock(i - 1, 0).id.to_string();
            steps.push(Step::Txn(vec![Op::DeleteLock { id }]));
        }
        steps.push(if i % 2 == 0 { Step::Close } else { Step::Drop });
    }
    let (trace, points) = run_and_capture(&store_dir(), &options, &steps, default_losses()).unwrap();
    assert!(trace.acked_at.iter().all(Option::is_some), "the run went to the end");
    // Crash points inside the opens' compactions: a snapshot being renamed
    // into place, covered segments being removed.
    let opens: Vec<(u64, u64)> = steps
        .iter()
        .enumerate()
        .filter(|(_, s)| **s == Step::Open)
        .map(|(i, _)| (trace.issued_at[i], trace.acked_at[i].unwrap()))
        .collect();
    let in_open = |p: &&CrashPoint| opens.iter().any(|&(from, to)| (from..to).contains(&p.call));
    let during =
        |f: &dyn Fn(&Pending) -> bool| points.iter().filter(in_open).filter(|p| p.pending.iter().any(f)).count();
    assert!(during(&|p| matches!(p, Pending::Rename { .. })) >= 3, "inside the opens' snapshot installs");
    assert!(during(&|p| matches!(p, Pending::Remove { .. })) >= 3, "inside the opens' log retirement");
    let (checked, failures) = check_all(&points, &trace, &options, &default_losses());
    assert!(
        failures.is_empty(),
        "{} failed; the first:\n{}",
        failures.len(),
        failures[..failures.len().min(10)].join("\n")
    );
    assert!(checked.states > points.len() as u64, "recoveries were crashed too");
    assert!(checked.recovery_epoch_kept > 0 && checked.in_flight_kept > 0);
}
