//! Each segment and snapshot file checked on its own, for `verify` and `dump`.

use super::read;
use crate::error::Result;
use crate::io::FileSystem;
use crate::wal::format::{SEGMENT_HEADER_LEN, SegmentHeader, parse_segment_name};
use crate::wal::recovery::{Listing, list_segments};
use crate::wal::scan::{SegmentEnd, scan_segment};
use crate::wal::snapshot::{SnapshotHeader, decode_snapshot, parse_snapshot_name};
use std::path::{Path, PathBuf};

// ---- per-file checks ------------------------------------------------------------

/// How a segment file ends, as an operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SegmentStatus {
    /// Every byte after the last valid frame is zero (or there are none).
    Clean,
    /// The newest segment ends in an incomplete write (never acknowledged);
    /// `open` truncates it.
    TornTail {
        /// Where the torn write starts.
        offset: u64,
    },
    /// The newest segment's header was never completed (creation
    /// interrupted); `open` removes it.
    Incomplete,
    /// Damage: a bad header or frame that is not a torn tail.
    Damaged {
        /// Byte offset of the first bad byte or frame.
        offset: u64,
        /// What is wrong.
        reason: String,
        /// Valid frames of this segment after the damage.
        valid_after: u64,
    },
}

/// One segment file, scanned on its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentCheck {
    /// Its path.
    pub path: PathBuf,
    /// Its number (from the file name).
    pub number: u64,
    /// File length on disk (pre-sized segments include their zero tail).
    pub file_len: u64,
    /// LSN of its first frame, when the header is readable.
    pub first_lsn: Option<u64>,
    /// Valid frames (records) before any damage.
    pub records: u64,
    /// LSN of the last valid frame (`first_lsn - 1` when none).
    pub last_lsn: u64,
    /// Byte offset just past the last valid frame.
    pub valid_end: u64,
    /// How it ends.
    pub status: SegmentStatus,
    /// Entirely covered by the snapshot in force (left by an interrupted
    /// compaction; `open` skips and removes it).
    pub covered: bool,
}

/// One snapshot file, fully decoded and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotCheck {
    /// Its path.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Its header, when it verifies.
    pub header: Option<SnapshotHeader>,
    /// The first damage, when the file does not verify: offset and reason.
    pub damage: Option<(u64, String)>,
    /// Whether this is the newest snapshot (the one `open` loads); older ones
    /// are removed at open.
    pub in_use: bool,
}

fn check_snapshot(fs: &dyn FileSystem, path: &Path, in_use: bool) -> Result<SnapshotCheck> {
    let bytes = read(fs, path)?;
    let (header, damage) = match decode_snapshot(&bytes) {
        Ok((header, _state)) => (Some(header), None),
        Err(d) => (None, Some((d.offset, d.reason))),
    };
    Ok(SnapshotCheck { path: path.to_owned(), bytes: bytes.len() as u64, header, damage, in_use })
}

fn check_segment(number: u64, path: &Path, bytes: &[u8], newest: bool) -> SegmentCheck {
    let scan = scan_segment::<()>(bytes, None, newest, |_, _, _| Ok(())).unwrap_or_else(|()| unreachable!());
    let first_lsn = SegmentHeader::decode(bytes).ok().map(|h| h.first_lsn);
    let (records, last_lsn, valid_end, status) = match scan {
        Ok(s) => {
            let status = match s.end {
                SegmentEnd::Clean => SegmentStatus::Clean,
                SegmentEnd::Torn { offset } => SegmentStatus::TornTail { offset },
                SegmentEnd::Incomplete => SegmentStatus::Incomplete,
            };
            (s.frames, s.last_lsn, s.valid_end, status)
        }
        Err(damage) => {
            // Count what is valid before the damage with a second, bounded scan.
            let prefix = &bytes[..(damage.offset as usize).min(bytes.len())];
            let before = scan_segment::<()>(prefix, None, false, |_, _, _| Ok(())).unwrap_or_else(|()| unreachable!());
            let (frames, last) =
                before.map_or((0, first_lsn.unwrap_or(1).saturating_sub(1)), |s| (s.frames, s.last_lsn));
            let status = SegmentStatus::Damaged {
                offset: damage.offset,
                reason: damage.error.to_string(),
                valid_after: damage.valid_after,
            };
            (frames, last, damage.offset, status)
        }
    };
    SegmentCheck {
        path: path.to_owned(),
        number,
        file_len: bytes.len() as u64,
        first_lsn,
        records,
        last_lsn,
        valid_end,
        status,
        covered: false,
    }
}

/// Valid frames of a segment that start at or after `from`.
pub(super) fn frames_from(bytes: &[u8], from: u64) -> u64 {
    let mut count = 0;
    let scan = scan_segment::<()>(bytes, None, false, |offset, _, _| {
        count += u64::from(offset >= from);
        Ok(())
    })
    .unwrap_or_else(|()| unreachable!());
    match scan {
        Err(d) if d.offset >= from && d.offset >= SEGMENT_HEADER_LEN as u64 => count + d.valid_after,
        _ => count,
    }
}

/// Every segment and snapshot file of `dir`, each checked on its own.
pub(super) struct Survey {
    pub segments: Vec<SegmentCheck>,
    pub snapshots: Vec<SnapshotCheck>,
    pub temporaries: Vec<PathBuf>,
}

pub(super) fn survey(fs: &dyn FileSystem, dir: &Path) -> Result<Survey> {
    let Listing { segments, temporaries, snapshots, .. } = list_segments(fs, dir)?;
    let snapshot_checks = snapshots
        .iter()
        .enumerate()
        .map(|(i, (_, path))| check_snapshot(fs, path, i + 1 == snapshots.len()))
        .collect::<Result<Vec<_>>>()?;
    let mut checks = Vec::with_capacity(segments.len());
    for (i, (number, path)) in segments.iter().enumerate() {
        let bytes = read(fs, path)?;
        checks.push(check_segment(*number, path, &bytes, i + 1 == segments.len()));
    }
    // The same rule as recovery: with a snapshot as of LSN s, segments before
    // the last one that starts at or before s + 1 hold only covered records.
    let snapshot_lsn = snapshot_checks.last().and_then(|s| s.header).map_or(0, |h| h.lsn);
    if snapshot_lsn > 0
        && let Some(start) = checks.iter().rposition(|c| c.first_lsn.is_some_and(|f| f <= snapshot_lsn + 1))
    {
        checks[..start].iter_mut().for_each(|c| c.covered = true);
    }
    Ok(Survey { segments: checks, snapshots: snapshot_checks, temporaries })
}

/// How many valid records cannot be replayed past a problem at
/// (`file`, `offset`).
pub(super) fn records_after(fs: &dyn FileSystem, survey: &Survey, file: &Path, offset: u64) -> Result<u64> {
    let live = survey.segments.iter().filter(|s| !s.covered);
    let total = |s: &SegmentCheck| match s.status {
        SegmentStatus::Damaged { valid_after, .. } => s.records + valid_after,
        _ => s.records,
    };
    let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if parse_snapshot_name(name).is_some() {
        return Ok(live.map(total).sum());
    }
    let Some(number) = parse_segment_name(name) else { return Ok(0) };
    let mut count = 0;
    for s in live.filter(|s| s.number >= number) {
        if s.number == number {
            count += frames_from(&read(fs, &s.path)?, offset.max(SEGMENT_HEADER_LEN as u64));
        } else {
            count += total(s);
        }
    }
    Ok(count)
}
