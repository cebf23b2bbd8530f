//! [`dump`]: every valid record of every segment, for forensics.

use super::check::{SegmentCheck, SnapshotCheck, Survey, survey};
use super::retry_while_changing;
use super::view::Overlay;
use crate::error::Error;
use crate::io::FileSystem;
use crate::state::Command;
use crate::wal::scan::scan_segment;
use std::io;
use std::path::Path;

// ---- dump -------------------------------------------------------------------------

/// One log record, as [`dump`] visits it.
#[derive(Debug)]
pub struct DumpRecord<'a> {
    /// The segment file holding it.
    pub segment: &'a Path,
    /// Byte offset of its frame in the segment.
    pub offset: u64,
    /// Its LSN.
    pub lsn: u64,
    /// Its commands, or why the verified payload does not decode.
    pub commands: std::result::Result<Vec<Command>, String>,
}

/// What [`dump`] went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpSummary {
    /// Records visited (at or after the requested LSN).
    pub records: u64,
    /// Every segment file, in number order, as scanned.
    pub segments: Vec<SegmentCheck>,
    /// Every snapshot file, oldest first.
    pub snapshots: Vec<SnapshotCheck>,
}

/// Visits every valid record of every segment file in `dir` with an LSN of
/// at least `from_lsn`, in segment order and, within a segment, in log
/// order: for forensics, so segments that a snapshot covers are included,
/// and a damaged segment is visited up to its damage and the next segment
/// is visited all the same (the summary says where each one ended). Changes
/// nothing. On a live store, a segment that a compaction retires while the
/// dump runs is skipped (its records are in the new snapshot). An error from
/// `visit` stops the dump and is returned.
pub fn dump<E: From<Error>>(
    fs: &dyn FileSystem,
    dir: &Path,
    from_lsn: u64,
    mut visit: impl FnMut(DumpRecord<'_>) -> std::result::Result<(), E>,
) -> std::result::Result<DumpSummary, E> {
    let view = Overlay::of(fs);
    let fs = &view;
    let Survey { segments, snapshots, .. } = retry_while_changing(fs, dir, || survey(fs, dir))?;
    let mut records = 0;
    for (i, check) in segments.iter().enumerate() {
        let bytes = match fs.read(&check.path) {
            Ok(bytes) => bytes,
            // Retired by a live writer's compaction since the survey: its
            // records are in the snapshot now.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::Io { op: "read", path: check.path.clone(), source: e }.into()),
        };
        let newest = i + 1 == segments.len();
        let _ = scan_segment(&bytes, None, newest, |offset, lsn, payload| {
            if lsn < from_lsn {
                return Ok(());
            }
            records += 1;
            let commands = payload.commands().map_err(|e| e.to_string());
            visit(DumpRecord { segment: &check.path, offset, lsn, commands })
        })?;
    }
    Ok(DumpSummary { records, segments, snapshots })
}
