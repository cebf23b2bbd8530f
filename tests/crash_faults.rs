//! Injected I/O errors at every call of a workload (issue 5: "inject errors
//! at each write, fsync and rename"), then power loss. Guards two promises:
//! after a failed write or sync the store acknowledges nothing more (it is
//! poisoned) and a reopen holds every acknowledged step; and an operator who
//! reopens after a transient failure and carries on loses nothing that was
//! acknowledged, even when the failed fsync's data never reached the disk.

use lockwal::io::sim::{Call, Fault, Loss, SimFs};
use lockwal::testing::crash::{
    Checked, check_image, check_targeted, crash_options, losses, open_and_observe, prepare_dir, run, run_with_reopen,
    store_dir,
};
use lockwal::testing::workload::{Step, generate};
use std::sync::{Arc, Mutex};

fn workload() -> Vec<Step> {
    generate(0xFA17, 250, 60)
}

/// The calls the workload makes (after the directory is prepared): the
/// number of the first, the number after the last, and each call's method
/// by number.
fn calls_of(steps: &[Step]) -> (u64, u64, Vec<Call>) {
    let fs = SimFs::new();
    prepare_dir(&fs, &store_dir()).unwrap();
    let first = fs.calls();
    let kinds = Arc::new(Mutex::new(vec![Call::SyncDir; first as usize]));
    let sink = Arc::clone(&kinds);
    fs.set_observer(move |point| sink.lock().unwrap().push(point.call()));
    let trace = run(&fs, &store_dir(), &crash_options(), steps).unwrap();
    fs.clear_observer();
    let kinds = kinds.lock().unwrap().clone();
    assert_eq!(kinds.len() as u64, trace.calls);
    (first, trace.calls, kinds)
}

/// The fault injected at call `k`: EIO, ENOSPC, or ENOSPC after a short
/// write (when the call is a write).
fn fault_for(fs: &SimFs, k: u64) {
    match k % 3 {
        0 => fs.fail_from(k, Fault::Eio),
        1 => fs.fail_from(k, Fault::NoSpace),
        _ => fs.fail_from_with_short_write(k, Fault::NoSpace, (k % 97) as usize),
    }
}

/// Fails, naming how many checks failed and the first few, unless none did.
#[track_caller]
fn assert_no_failures(failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{} failures; the first:\n{}",
        failures.len(),
        failures[..failures.len().min(8)].join("\n")
    );
}

#[test]
fn after_a_permanent_fault_at_any_call_nothing_more_is_acknowledged_and_nothing_acknowledged_is_lost() {
    let steps = workload();
    let (first, end, _) = calls_of(&steps);
    let mut checked = Checked::default();
    let mut failed_steps = 0;
    let mut failures = Vec::new();
    for k in first..end {
        let fs = SimFs::new();
        prepare_dir(&fs, &store_dir()).unwrap();
        fault_for(&fs, k);
        let trace = match run(&fs, &store_dir(), &crash_options(), &steps) {
            Ok(trace) => trace,
            Err(e) => {
                failures.push(format!("fault at call {k}: {e}"));
                continue;
            }
        };
        failed_steps += usize::from(trace.acked_at.last() == Some(&None));
        let window = trace.window_at_end();
        for loss in losses(&fs.pending(), k, 4, 2) {
            let image = fs.crash(loss);
            match check_image(&image, &store_dir(), &crash_options(), trace.allowed(window), None) {
                Ok(c) => checked += c,
                Err(e) => failures.push(format!("fault at call {k}, then {loss:?} ({window:?}): {e}")),
            }
        }
    }
    assert_no_failures(&failures);
    println!("{} fault points, {} crash images checked", end - first, checked.states);
    assert_eq!(failed_steps as u64, end - first, "every injected fault failed a step");
    assert!(checked.states >= 2 * (end - first));
    assert!(checked.in_flight_kept > 10, "some failed steps were durable anyway (in doubt, allowed)");
}

/// Injects a transient fault at each call `calls` selects, runs the workload
/// reopening after each failure, then cuts the power: the store must open
/// with every acknowledged step.
fn transient_faults(select: impl Fn(u64, &[Call]) -> bool, crash_window: u64) {
    let steps = workload();
    let (first, end, kinds) = calls_of(&steps);
    let mut failures = Vec::new();
    let mut points = 0;
    let mut checked = 0;
    for k in (first..end).filter(|&k| select(k, &kinds)) {
        points += 1;
        let fs = SimFs::new();
        prepare_dir(&fs, &store_dir()).unwrap();
        fs.fail_once(k, if k % 2 == 0 { Fault::Eio } else { Fault::NoSpace });
        // Power cuts at each of the `crash_window` calls from the fault on:
        // while the store reacts, reopens and carries on.
        let images = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&images);
        fs.set_observer(move |point| {
            if (k..k + crash_window).contains(&point.index()) {
                for loss in [Loss::DropUnsynced, Loss::KeepPrefix(usize::MAX)] {
                    sink.lock().unwrap().push((point.index(), loss, point.image(loss)));
                }
            }
        });
        let trace = match run_with_reopen(&fs, &store_dir(), &crash_options(), &steps) {
            Ok(trace) => trace,
            Err(e) => {
                failures.push(format!("transient fault at call {k} ({:?}): {e}", kinds[k as usize]));
                continue;
            }
        };
        fs.clear_observer();
        let mut images = std::mem::take(&mut *images.lock().unwrap());
        for loss in [Loss::DropUnsynced, Loss::KeepPrefix(usize::MAX)] {
            images.push((trace.calls, loss, fs.crash(loss)));
        }
        for (at, loss, image) in images {
            let window = trace.window_at(at);
            match check_image(&image, &store_dir(), &crash_options(), trace.allowed(window), None) {
                Ok(c) => checked += c.states,
                Err(e) => failures.push(format!(
                    "transient fault at call {k} ({:?}), power cut at call {at} with {loss:?} ({window:?}): {e}",
                    kinds[k as usize]
                )),
            }
        }
    }
    assert_no_failures(&failures);
    println!("{points} transient fault points, {checked} crash images checked");
    assert!(points >= 80 && checked >= 2 * points * crash_window.min(10));
}

/// A failed fdatasync right after a write (a frame or a snapshot): the
/// "fsyncgate" case, where the written pages are marked clean but never
/// reach the disk.
fn fsync_after_write(k: u64, kinds: &[Call]) -> bool {
    kinds[k as usize] == Call::SyncData && k > 0 && kinds[k as usize - 1] == Call::WriteAt
}

#[test]
fn reopening_after_a_transient_fault_at_any_call_loses_nothing_acknowledged() {
    transient_faults(|k, kinds| !fsync_after_write(k, kinds), 12);
}

/// See `crash_regressions::a_reopen_after_a_failed_fsync_does_not_build_on_data_that_never_reached_the_disk`.
#[test]
fn reopening_after_a_failed_fsync_of_a_write_loses_nothing_acknowledged() {
    transient_faults(fsync_after_write, 40);
}

/// Guards, for the workload of transactions mixing durable handles,
/// records and locks (`workload::targeted`), a permanent fault at any call
/// then power loss: nothing more is acknowledged, and the store reopens
/// with every acknowledged step and nothing torn: each transaction's
/// records, locks and handles together, no acknowledged consume or expiry
/// undone (checked against the model and directly).
#[test]
fn after_a_permanent_fault_at_any_call_of_mixed_transactions_no_acknowledged_consume_record_or_lock_is_lost() {
    let targeted = lockwal::testing::workload::targeted();
    let steps = &targeted.steps;
    let (first, end, _) = calls_of(steps);
    let mut failures = Vec::new();
    let mut checked = Checked::default();
    for k in first..end {
        let fs = SimFs::new();
        prepare_dir(&fs, &store_dir()).unwrap();
        fault_for(&fs, k);
        let trace = match run(&fs, &store_dir(), &crash_options(), steps) {
            Ok(trace) => trace,
            Err(e) => {
                failures.push(format!("fault at call {k}: {e}"));
                continue;
            }
        };
        let window = trace.window_at_end();
        for loss in losses(&fs.pending(), k, 4, 2) {
            let image = fs.crash(loss);
            match check_image(&image, &store_dir(), &crash_options(), trace.allowed(window), None) {
                Ok(c) => checked += c,
                Err(e) => failures.push(format!("fault at call {k}, then {loss:?} ({window:?}): {e}")),
            }
            let observed = open_and_observe(&image, &store_dir(), &crash_options()).unwrap();
            if let Err(e) = check_targeted(&observed, &targeted, window.acked) {
                failures.push(format!("fault at call {k}, then {loss:?} ({window:?}), directly: {e}"));
            }
        }
    }
    assert_no_failures(&failures);
    println!("{} fault points, {checked:?}", end - first);
    assert!(end - first > 50 && checked.states >= 2 * (end - first));
    assert!(checked.in_flight_kept > 5, "some failed steps were durable anyway: {checked:?}");
}

/// The same workload with a transient fault at any call, the operator
/// reopening after each failure and carrying on, then a power cut: every
/// acknowledged consume, swap and mixed transaction is there; a failed one
/// is whole or absent.
#[test]
fn reopening_after_a_transient_fault_at_any_call_of_mixed_transactions_loses_nothing_acknowledged() {
    let steps = lockwal::testing::workload::targeted().steps;
    let (first, end, kinds) = calls_of(&steps);
    let mut failures = Vec::new();
    let mut checked = 0;
    for k in first..end {
        let fs = SimFs::new();
        prepare_dir(&fs, &store_dir()).unwrap();
        fs.fail_once(k, if k % 2 == 0 { Fault::Eio } else { Fault::NoSpace });
        let trace = match run_with_reopen(&fs, &store_dir(), &crash_options(), &steps) {
            Ok(trace) => trace,
            Err(e) => {
                failures.push(format!("transient fault at call {k} ({:?}): {e}", kinds[k as usize]));
                continue;
            }
        };
        for loss in [Loss::DropUnsynced, Loss::KeepPrefix(usize::MAX)] {
            let window = trace.window_at(trace.calls);
            match check_image(&fs.crash(loss), &store_dir(), &crash_options(), trace.allowed(window), None) {
                Ok(c) => checked += c.states,
                Err(e) => failures.push(format!("transient fault at call {k}, then {loss:?} ({window:?}): {e}")),
            }
        }
    }
    assert_no_failures(&failures);
    println!("{} transient fault points, {checked} crash images checked", end - first);
    assert!(checked >= 2 * (end - first));
}
