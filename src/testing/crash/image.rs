//! Crash images: capturing one before every I/O call of a run, and
//! reopening and checking each.

use super::{Observed, SelectLosses, Trace, observe_wal, prepare_dir, run_from, verify};
use crate::error::Error;
use crate::io::FileSystem;
use crate::io::sim::{Loss, Pending, SimFs};
use crate::testing::workload::{Expected, Step};
use crate::wal::{WalLockStore, WalOptions};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// One crash image to check.
pub struct CrashPoint {
    /// The call before which the power was cut.
    pub call: u64,
    /// The operations that were pending at the cut.
    pub pending: Vec<Pending>,
    /// What was lost.
    pub loss: Loss,
    /// The file system after the crash.
    pub image: SimFs,
}

/// Runs `steps` on a fresh simulator and takes, before every call, the
/// crash images `select` asks for. The store directory is prepared (made
/// durable) first, outside the enumeration.
pub fn run_and_capture(
    dir: &Path,
    options: &WalOptions,
    steps: &[Step],
    select: SelectLosses,
) -> Result<(Trace, Vec<CrashPoint>), String> {
    let fs = SimFs::new();
    prepare_dir(&fs, dir).map_err(|e| e.to_string())?;
    run_and_capture_from(fs, dir, options, Expected::initial(), steps, select)
}

/// [`run_and_capture`] on `fs`, whose store directory already holds a
/// store (durably) whose state is `initial`: what crashes during the first
/// open and compaction of a store written by an older version leave.
pub fn run_and_capture_from(
    fs: SimFs,
    dir: &Path,
    options: &WalOptions,
    initial: Expected,
    steps: &[Step],
    select: SelectLosses,
) -> Result<(Trace, Vec<CrashPoint>), String> {
    let points = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&points);
    fs.set_observer(move |point| {
        let pending = point.pending();
        let losses = select(point.index(), &pending);
        let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
        for loss in losses {
            sink.push(CrashPoint { call: point.index(), pending: pending.clone(), loss, image: point.image(loss) });
        }
    });
    let trace = run_from(&fs, dir, options, initial, steps)?;
    fs.clear_observer();
    let points = std::mem::take(&mut *points.lock().unwrap_or_else(|e| e.into_inner()));
    Ok((trace, points))
}

/// What [`check_image`] checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checked {
    /// Recovered states checked (the image's, and one per crash during its
    /// recovery).
    pub states: u64,
    /// Of those, states in which an operation in flight at the crash had
    /// become durable (a later prefix than the acknowledged one).
    pub in_flight_kept: u64,
    /// Crashes during recovery after which the interrupted recovery's epoch
    /// had become durable.
    pub recovery_epoch_kept: u64,
}

impl std::ops::AddAssign for Checked {
    fn add_assign(&mut self, other: Self) {
        self.states += other.states;
        self.in_flight_kept += other.in_flight_kept;
        self.recovery_epoch_kept += other.recovery_epoch_kept;
    }
}

/// Opens (a copy of) `image` and checks the recovered state against
/// `allowed`; `image` itself is left as it was. With `nested`, also takes
/// crash images during that recovery and checks each of them (allowing, in
/// addition, each state one epoch later: the interrupted recovery may have
/// made its epoch durable).
pub fn check_image(
    image: &SimFs,
    dir: &Path,
    options: &WalOptions,
    allowed: &[Expected],
    nested: Option<SelectLosses>,
) -> Result<Checked, String> {
    let image = &image.copy();
    let captured = Arc::new(Mutex::new(Vec::new()));
    if let Some(select) = nested {
        let sink = Arc::clone(&captured);
        image.set_observer(move |point| {
            let losses = select(point.index(), &point.pending());
            let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
            for loss in losses {
                sink.push((point.index(), loss, point.image(loss)));
            }
        });
    }
    let opened = open_and_observe(image, dir, options);
    image.clear_observer();
    let observed = opened.map_err(|e| format!("open failed: {e}"))?;
    let matched = verify(&observed, allowed)?;
    let mut checked = Checked { states: 1, in_flight_kept: u64::from(matched > 0), recovery_epoch_kept: 0 };
    let captured = std::mem::take(&mut *captured.lock().unwrap_or_else(|e| e.into_inner()));
    let mut widened = allowed.to_vec();
    widened.extend(allowed.iter().map(Expected::reopened));
    for (call, loss, nested_image) in &captured {
        let observed = open_and_observe(nested_image, dir, options)
            .map_err(|e| format!("crash at recovery call {call} with {loss:?}: open failed: {e}"))?;
        let matched =
            verify(&observed, &widened).map_err(|e| format!("crash at recovery call {call} with {loss:?}: {e}"))?;
        checked.states += 1;
        checked.in_flight_kept += u64::from(matched % allowed.len() > 0);
        checked.recovery_epoch_kept += u64::from(matched >= allowed.len());
    }
    Ok(checked)
}

/// Opens the store on `fs` and reads its state; the handle is dropped
/// (not closed) before returning.
pub fn open_and_observe(fs: &SimFs, dir: &Path, options: &WalOptions) -> Result<Observed, Error> {
    let store = WalLockStore::open_blocking(Arc::new(fs.clone()), dir.to_owned(), options.clone())?;
    let observed = observe_wal(&store);
    drop(store);
    observed
}

/// The names and bytes of the files in `dir` of an image, for messages and
/// for tests that tamper with images.
pub fn files(fs: &SimFs, dir: &Path) -> Vec<(String, Vec<u8>)> {
    let names = fs.list(dir).unwrap_or_default();
    names
        .into_iter()
        .filter_map(|n| {
            let bytes = fs.peek(&dir.join(&n)).ok()?;
            Some((n, bytes))
        })
        .collect()
}
