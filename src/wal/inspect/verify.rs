//! [`verify`]: the verdict of recovery, and the details of every file.

use super::check::{SegmentCheck, SnapshotCheck, records_after, survey};
use super::read_until_confirmed;
use super::repair::{RepairPlan, plan};
use super::view::Overlay;
use crate::error::{Error, Result};
use crate::io::FileSystem;
use crate::wal::recovery::{self, TornTail};
use std::path::{Path, PathBuf};

// ---- verify -----------------------------------------------------------------------

/// What kind of problem [`verify`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// Damaged bytes, a missing segment, a broken LSN sequence, or a record
    /// that does not decode or apply: `open` refuses with
    /// [`Error::Corruption`].
    Corruption,
    /// A file written by a format version this build does not read.
    UnsupportedVersion,
}

/// The first problem that stops the store from opening.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What kind.
    pub kind: ProblemKind,
    /// The file (for a missing segment: the name it should have).
    pub file: PathBuf,
    /// Byte offset of the first bad byte or record.
    pub offset: u64,
    /// What is wrong (one line).
    pub reason: String,
    /// Valid records (frames whose checksum verifies) that follow the damage,
    /// in that file and in later segments: what cannot be replayed past it.
    pub valid_records_after: u64,
}

/// The state the log replays to, when it does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    /// LSN of the last record (or of the snapshot when the log adds none).
    pub last_lsn: u64,
    /// Log records replayed after the snapshot.
    pub records: u64,
    /// Epoch of the replayed state.
    pub epoch: u64,
    /// Locks.
    pub locks: u64,
    /// Client records.
    pub clients: u64,
    /// Durable handles.
    pub handles: u64,
    /// Records, in every keyspace.
    pub keyspace_records: u64,
    /// Whether the last incarnation closed cleanly.
    pub clean_shutdown: bool,
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The store directory.
    pub dir: PathBuf,
    /// The first problem that stops the store from opening, if any. `None`
    /// means intact (a torn tail is not a problem).
    pub problem: Option<Problem>,
    /// The replayed state, when there is no problem.
    pub replayed: Option<Replayed>,
    /// The torn tail of the newest segment, if any (not corruption: the
    /// write in flight at a crash; `open` truncates it).
    pub torn_tail: Option<TornTail>,
    /// Every snapshot file, oldest first.
    pub snapshots: Vec<SnapshotCheck>,
    /// Every segment file, in number order.
    pub segments: Vec<SegmentCheck>,
    /// The store's own temporary files (`snap-*.snap.tmp`) that `open`
    /// removes.
    pub temporaries: Vec<PathBuf>,
    /// When there is corruption: what a [`repair`](super::repair) would keep and drop (its
    /// plan, nothing applied). `None` when intact, or when no plan could be
    /// made.
    pub repair: Option<RepairPlan>,
}

impl VerifyReport {
    /// No problem: the store opens (after at most the routine repairs of a
    /// torn tail, an interrupted segment creation or leftover files).
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

pub(super) fn replayed(r: &recovery::Recovered) -> Replayed {
    Replayed {
        last_lsn: r.last_lsn,
        records: r.records,
        epoch: r.state.epoch(),
        locks: r.state.lock_count() as u64,
        clients: r.state.client_count() as u64,
        handles: r.state.handle_count() as u64,
        keyspace_records: r.state.record_count() as u64,
        clean_shutdown: r.state.clean(),
    }
}

/// Checks every segment and snapshot of the store in `dir` without changing
/// a byte and without taking the writer lock. The verdict is recovery's (the
/// code `open` runs); the per-file details come from scanning every file on
/// its own. On a store that a live writer holds this checks the acknowledged
/// prefix (a write in flight looks like a torn tail), and reports a problem
/// or an error only once a quiet re-read confirms it (the rule of
/// [`retry_while_changing`](super::retry_while_changing)): a rotation, a compaction that retired segments
/// between the reads, or a frame copied half-written can each make one read
/// look damaged.
pub fn verify(fs: &dyn FileSystem, dir: &Path) -> Result<VerifyReport> {
    let view = Overlay::of(fs);
    read_until_confirmed(
        &view,
        dir,
        || verify_once(&view, dir),
        |result| match result {
            Ok(report) => report.problem.as_ref().map(|p| format!("{p:?}")),
            Err(e) => Some(e.to_string()),
        },
    )
}

fn verify_once(fs: &dyn FileSystem, dir: &Path) -> Result<VerifyReport> {
    let survey = survey(fs, dir)?;
    let (problem, replayed, torn_tail) = match recovery::recover(fs, dir) {
        Ok(r) => (None, Some(replayed(&r)), r.torn),
        Err(Error::Corruption { file, offset, reason }) => {
            let valid_records_after = records_after(fs, &survey, &file, offset)?;
            (Some(Problem { kind: ProblemKind::Corruption, file, offset, reason, valid_records_after }), None, None)
        }
        Err(Error::UnsupportedVersion { file, found, supported }) => {
            let reason = format!("format version {found}, this build reads version {supported}");
            (
                Some(Problem {
                    kind: ProblemKind::UnsupportedVersion,
                    file,
                    offset: 8,
                    reason,
                    valid_records_after: 0,
                }),
                None,
                None,
            )
        }
        Err(e) => return Err(e),
    };
    let repair = match &problem {
        Some(Problem { kind: ProblemKind::Corruption, .. }) => plan(fs, dir).ok(),
        _ => None,
    };
    Ok(VerifyReport {
        dir: dir.to_owned(),
        repair,
        problem,
        replayed,
        torn_tail,
        snapshots: survey.snapshots,
        segments: survey.segments,
        temporaries: survey.temporaries,
    })
}
