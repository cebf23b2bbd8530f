//! Operator tooling over a store directory: [`verify`], [`dump`] and
//! [`repair`], plus [`retry_while_changing`] for reading a store that a live
//! writer holds. The `lockwal` command line is a thin layer over these.
//!
//! Everything here reads through the [`FileSystem`] seam, by copying files
//! and never mapping them, so it is safe on a store that a live writer holds
//! with any file system, [`RealFs`](crate::io::RealFs) included (a writer
//! starting meanwhile truncates the newest segment, and a mapped reader
//! would die of SIGBUS). It reuses the
//! scanning and recovery code that `open` uses, so a verdict of this module
//! and the behaviour of [`WalLockStore::open`](super::WalLockStore::open)
//! cannot disagree:
//! - [`verify`] runs recovery exactly as `open` does (without changing a
//!   byte) for the verdict, and scans every file on its own for the details;
//! - [`repair`] plans its cuts by running recovery on a view of the directory
//!   with the planned cuts applied in memory, until that view opens; when
//!   applied it then makes the same cuts on disk, each durable before the
//!   next (docs/operator-tooling.md, "Repair").

mod check;
mod dump;
mod repair;
#[cfg(test)]
mod tests;
mod verify;
mod view;

pub use check::{SegmentCheck, SegmentStatus, SnapshotCheck};
pub use dump::{DumpRecord, DumpSummary, dump};
pub use repair::{RepairAction, RepairMode, RepairPlan, repair};
pub use verify::{Problem, ProblemKind, Replayed, VerifyReport, verify};

use super::recovery::{Listing, list_segments};
use crate::error::{Result, io_error};
use crate::io::{FileBytes, FileSystem};
use std::path::Path;

/// How many times [`retry_while_changing`] tries.
pub const LIVE_RETRIES: u32 = 16;

fn read(fs: &dyn FileSystem, path: &Path) -> Result<FileBytes> {
    fs.read(path).map_err(io_error("read", path))
}

fn list_names(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<String>> {
    super::recovery::list_dir(fs, dir)
}

/// Whether `dir` holds a store: at least one segment or snapshot file.
/// [`Error::NoSuchDirectory`](crate::Error::NoSuchDirectory) when `dir` does
/// not exist, another `Err` when it cannot be listed.
pub fn is_store(fs: &dyn FileSystem, dir: &Path) -> Result<bool> {
    let Listing { segments, snapshots, .. } = list_segments(fs, dir)?;
    Ok(!segments.is_empty() || !snapshots.is_empty())
}

/// Runs a read-only `attempt` on `dir` under the rule for reading a store
/// that a live writer may hold (docs/operator-tooling.md, "Reading a live store"): a
/// failure is returned only once a quiet re-read confirms it, i.e. two
/// consecutive attempts failed with the same error and the directory's file
/// names did not change during either. Anything else is read again, up to
/// [`LIVE_RETRIES`] attempts (then the last failure is returned).
///
/// Copying a file that is being appended to is not a point-in-time copy: a
/// frame being written can read as zeros while a later one already reads as
/// written, which looks like damage with valid frames after it. A writer
/// rotating, compacting, or recreating a file under the same name changes
/// what a second attempt reads, so the two failures differ or the second
/// attempt succeeds. Damage that is really on disk fails the same way twice.
pub fn retry_while_changing<T>(fs: &dyn FileSystem, dir: &Path, attempt: impl FnMut() -> Result<T>) -> Result<T> {
    read_until_confirmed(fs, dir, attempt, |result| result.as_ref().err().map(ToString::to_string))
}

/// The loop behind [`retry_while_changing`] and [`verify`]: `failure` says
/// whether a result is a failure, and how to tell two failures apart.
fn read_until_confirmed<T>(
    fs: &dyn FileSystem,
    dir: &Path,
    mut attempt: impl FnMut() -> Result<T>,
    failure: impl Fn(&Result<T>) -> Option<String>,
) -> Result<T> {
    // The previous attempt's failure, when the directory was quiet during it.
    let mut previous: Option<(Vec<String>, String)> = None;
    let mut tries = 0;
    loop {
        let before = list_names(fs, dir)?;
        let result = attempt();
        tries += 1;
        let Some(seen) = failure(&result) else { return result };
        let after = list_names(fs, dir)?;
        let quiet = after == before;
        let confirmed = quiet && previous.as_ref().is_some_and(|(names, what)| *names == after && *what == seen);
        if confirmed || tries >= LIVE_RETRIES {
            return result;
        }
        tracing::debug!(failure = %seen, quiet, "reading the store again to confirm a failure");
        previous = quiet.then_some((after, seen));
    }
}
