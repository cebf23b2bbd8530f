//! Operator tooling over a store directory: [`verify`], [`dump`] and
//! [`repair`], plus [`retry_while_changing`] for reading a store that a live
//! writer holds. The `lockwal` command line is a thin layer over these.
//!
//! Everything here reads through the [`FileSystem`] seam and reuses the
//! scanning and recovery code that `open` uses, so a verdict of this module
//! and the behaviour of [`WalLockStore::open`](super::WalLockStore::open)
//! cannot disagree:
//! - [`verify`] runs recovery exactly as `open` does (without changing a
//!   byte) for the verdict, and scans every file on its own for the details;
//! - [`repair`] plans its cuts by running recovery on a view of the directory
//!   with the planned cuts applied in memory, until that view opens; with
//!   `apply` it then makes the same cuts on disk, each durable before the
//!   next (DESIGN.md, "Operator tooling").

use super::format::{LOCK_FILE, SEGMENT_HEADER_LEN, SegmentHeader, decode_commands, parse_segment_name};
use super::recovery::{self, Listing, TornTail, list_segments};
use super::scan::{SegmentEnd, scan_segment};
use super::snapshot::{SnapshotHeader, decode_snapshot, parse_snapshot_name};
use crate::error::{Error, Result, io_error};
use crate::io::{FileBytes, FileSystem, LockGuard, OpenMode, StoreFile};
use crate::state::Command;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How many times [`retry_while_changing`] tries.
pub const LIVE_RETRIES: u32 = 16;

fn read(fs: &dyn FileSystem, path: &Path) -> Result<FileBytes> {
    fs.read(path).map_err(io_error("read", path))
}

fn list_names(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<String>> {
    recovery::list_dir(fs, dir)
}

/// Whether `dir` holds a store: at least one segment or snapshot file.
/// [`Error::NoSuchDirectory`] when `dir` does not exist, another `Err` when
/// it cannot be listed.
pub fn is_store(fs: &dyn FileSystem, dir: &Path) -> Result<bool> {
    let Listing { segments, snapshots, .. } = list_segments(fs, dir)?;
    Ok(!segments.is_empty() || !snapshots.is_empty())
}

/// Runs a read-only `attempt` on `dir` and runs it again (up to
/// [`LIVE_RETRIES`] times) when it failed while the directory's file names
/// changed under it: a live writer rotated a segment or a compaction retired
/// files between listing and reading. A failure with an unchanged directory
/// is returned as it is (it is real).
pub fn retry_while_changing<T>(fs: &dyn FileSystem, dir: &Path, mut attempt: impl FnMut() -> Result<T>) -> Result<T> {
    let mut tries = 0;
    loop {
        let before = list_names(fs, dir)?;
        match attempt() {
            Ok(value) => return Ok(value),
            Err(e) => {
                tries += 1;
                if tries >= LIVE_RETRIES || list_names(fs, dir)? == before {
                    return Err(e);
                }
                tracing::debug!(error = %e, "the directory changed while reading it; reading again");
            }
        }
    }
}

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
fn frames_from(bytes: &[u8], from: u64) -> u64 {
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
struct Survey {
    segments: Vec<SegmentCheck>,
    snapshots: Vec<SnapshotCheck>,
    temporaries: Vec<PathBuf>,
}

fn survey(fs: &dyn FileSystem, dir: &Path) -> Result<Survey> {
    let Listing { segments, temporaries, snapshots } = list_segments(fs, dir)?;
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
    /// Temporary files (`*.tmp`) that `open` removes.
    pub temporaries: Vec<PathBuf>,
}

impl VerifyReport {
    /// No problem: the store opens (after at most the routine repairs of a
    /// torn tail, an interrupted segment creation or leftover files).
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

fn replayed(r: &recovery::Recovered) -> Replayed {
    Replayed {
        last_lsn: r.last_lsn,
        records: r.records,
        epoch: r.state.epoch(),
        locks: r.state.lock_count() as u64,
        clients: r.state.client_count() as u64,
        clean_shutdown: r.state.clean(),
    }
}

/// How many valid records cannot be replayed past a problem at
/// (`file`, `offset`).
fn records_after(fs: &dyn FileSystem, survey: &Survey, file: &Path, offset: u64) -> Result<u64> {
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

/// Checks every segment and snapshot of the store in `dir` without changing
/// a byte and without taking the writer lock. The verdict is recovery's (the
/// code `open` runs); the per-file details come from scanning every file on
/// its own. On a store that a live writer holds this checks the acknowledged
/// prefix (a write in flight looks like a torn tail): when a check fails (a
/// problem or an error) while the directory's file names changed under it —
/// a rotation, or a compaction that installed a snapshot and retired
/// segments between the reads, which can look like a record that does not
/// apply — it checks again, up to [`LIVE_RETRIES`] times.
pub fn verify(fs: &dyn FileSystem, dir: &Path) -> Result<VerifyReport> {
    let mut tries = 0;
    loop {
        let before = list_names(fs, dir)?;
        let result = verify_once(fs, dir);
        tries += 1;
        let failed = !matches!(&result, Ok(report) if report.is_intact());
        if !failed || tries >= LIVE_RETRIES || list_names(fs, dir)? == before {
            return result;
        }
        tracing::debug!("the directory changed while verifying it; verifying again");
    }
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
    Ok(VerifyReport {
        dir: dir.to_owned(),
        problem,
        replayed,
        torn_tail,
        snapshots: survey.snapshots,
        segments: survey.segments,
        temporaries: survey.temporaries,
    })
}

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
            let commands = decode_commands(payload).map_err(|e| e.to_string());
            visit(DumpRecord { segment: &check.path, offset, lsn, commands })
        })?;
    }
    Ok(DumpSummary { records, segments, snapshots })
}

// ---- repair -----------------------------------------------------------------------

/// One cut that [`repair`] makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepairAction {
    /// Move the bytes of `file` from `offset` on into `backup`, then
    /// truncate `file` at `offset`.
    Truncate {
        /// The segment.
        file: PathBuf,
        /// Where the damage starts.
        offset: u64,
        /// Bytes moved (trailing zeros of the pre-sized tail are not copied).
        bytes: u64,
        /// Valid records among them (they cannot be replayed past the damage).
        records: u64,
        /// The backup file (`<segment>.corrupt-<unix time>.from-<offset>`).
        backup: PathBuf,
        /// Why.
        reason: String,
    },
    /// Rename the whole `file` to `backup` (a later segment that cannot be
    /// replayed past a gap, a damaged segment header, a damaged snapshot).
    MoveAside {
        /// The segment or snapshot.
        file: PathBuf,
        /// Its size.
        bytes: u64,
        /// Valid records in it (0 for a snapshot).
        records: u64,
        /// The backup file (`<file>.corrupt-<unix time>`).
        backup: PathBuf,
        /// Why.
        reason: String,
    },
}

impl RepairAction {
    /// The file the action cuts.
    pub fn file(&self) -> &Path {
        match self {
            RepairAction::Truncate { file, .. } | RepairAction::MoveAside { file, .. } => file,
        }
    }

    /// The backup file it creates.
    pub fn backup(&self) -> &Path {
        match self {
            RepairAction::Truncate { backup, .. } | RepairAction::MoveAside { backup, .. } => backup,
        }
    }

    /// Valid log records it drops.
    pub fn records(&self) -> u64 {
        match self {
            RepairAction::Truncate { records, .. } | RepairAction::MoveAside { records, .. } => *records,
        }
    }
}

/// What [`repair`] would do (or did).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairPlan {
    /// The store directory.
    pub dir: PathBuf,
    /// The first problem, as `verify` and `open` see it; `None` when there is
    /// nothing to repair.
    pub problem: Option<Problem>,
    /// The cuts, in the order they are (or would be) made. Empty when there
    /// is nothing to repair.
    pub actions: Vec<RepairAction>,
    /// Whether the actions were carried out.
    pub applied: bool,
    /// The state the store opens with after the repair (planned: the epoch
    /// it will have once the repair has opened it; applied: as it is).
    pub after: Option<Replayed>,
    /// The highest epoch any segment record or snapshot header in the
    /// directory names, dropped parts included. The repaired store's epoch
    /// continues above it, so epochs never repeat.
    pub epoch_floor: u64,
}

impl RepairPlan {
    /// Valid log records the repair drops, in total.
    pub fn records_dropped(&self) -> u64 {
        self.actions.iter().map(RepairAction::records).sum()
    }
}

/// A read-only view of a directory with some files hidden and some
/// truncated, in memory: recovery runs on it to find what a repair must cut
/// before anything is cut.
struct Overlay {
    inner: Arc<dyn FileSystem>,
    hidden: BTreeSet<PathBuf>,
    truncated: BTreeMap<PathBuf, u64>,
}

fn read_only_view() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, "the repair planner's view is read-only")
}

impl FileSystem for Overlay {
    fn create_dir_all(&self, _: &Path) -> io::Result<()> {
        Err(read_only_view())
    }

    fn open(&self, _: &Path, _: OpenMode) -> io::Result<Box<dyn StoreFile>> {
        Err(read_only_view())
    }

    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        if self.hidden.contains(path) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let bytes = self.inner.read(path)?;
        Ok(match self.truncated.get(path) {
            Some(&len) => FileBytes::Owned(bytes[..(len as usize).min(bytes.len())].to_vec()),
            None => bytes,
        })
    }

    fn rename(&self, _: &Path, _: &Path) -> io::Result<()> {
        Err(read_only_view())
    }

    fn remove(&self, _: &Path) -> io::Result<()> {
        Err(read_only_view())
    }

    fn sync_dir(&self, _: &Path) -> io::Result<()> {
        Err(read_only_view())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = self.inner.list(dir)?;
        names.retain(|name| !self.hidden.contains(&dir.join(name)));
        Ok(names)
    }

    fn try_lock(&self, _: &Path) -> io::Result<LockGuard> {
        Err(read_only_view())
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A backup name in `dir` that exists neither on disk nor in the plan.
fn backup_name(existing: &BTreeSet<String>, planned: &[RepairAction], base: String) -> String {
    let taken = |name: &str| {
        existing.contains(name) || planned.iter().any(|a| a.backup().file_name().and_then(|n| n.to_str()) == Some(name))
    };
    let mut name = base.clone();
    let mut n = 1;
    while taken(&name) {
        n += 1;
        name = format!("{base}.{n}");
    }
    name
}

fn count_records(bytes: &[u8]) -> u64 {
    frames_from(bytes, 0)
}

/// The highest epoch named anywhere in the directory: `Open` records of
/// every valid frame of every segment, and every snapshot header.
fn highest_epoch(fs: &dyn FileSystem, dir: &Path) -> Result<u64> {
    let Listing { segments, snapshots, .. } = list_segments(fs, dir)?;
    let mut highest = 0;
    for (_, path) in &snapshots {
        if let Ok(h) = super::snapshot::decode_header(&read(fs, path)?) {
            highest = highest.max(h.epoch);
        }
    }
    for (_, path) in &segments {
        let bytes = read(fs, path)?;
        let _ = scan_segment::<()>(&bytes, None, false, |_, _, payload| {
            for command in decode_commands(payload).unwrap_or_default() {
                // An epoch above the largest is damage: no open ever ran it.
                if let Command::Open { epoch } = command
                    && epoch <= super::format::MAX_COUNTER
                {
                    highest = highest.max(epoch);
                }
            }
            Ok(())
        });
    }
    Ok(highest)
}

/// Plans the cuts on an overlay until recovery succeeds on it.
fn plan(fs: &Arc<dyn FileSystem>, dir: &Path) -> Result<RepairPlan> {
    let now = unix_now();
    let epoch_floor = highest_epoch(&**fs, dir)?;
    let existing: BTreeSet<String> = list_names(&**fs, dir)?.into_iter().collect();
    let mut view = Overlay { inner: Arc::clone(fs), hidden: BTreeSet::new(), truncated: BTreeMap::new() };
    let mut actions: Vec<RepairAction> = Vec::new();
    let mut problem = None;
    let limit = existing.len() + 2;
    for _ in 0..=limit {
        let (file, offset, reason) = match recovery::recover(&view, dir) {
            Ok(r) => {
                let mut after = replayed(&r);
                if !actions.is_empty() {
                    // The repair ends by opening the store: a new incarnation
                    // above every epoch ever recorded.
                    after.epoch = after.epoch.max(epoch_floor).saturating_add(1);
                    after.clean_shutdown = false;
                }
                return Ok(RepairPlan {
                    dir: dir.to_owned(),
                    problem,
                    actions,
                    applied: false,
                    after: Some(after),
                    epoch_floor,
                });
            }
            Err(Error::Corruption { file, offset, reason }) => (file, offset, reason),
            Err(e) => return Err(e),
        };
        if problem.is_none() {
            let survey = survey(&view, dir)?;
            let valid_records_after = records_after(&view, &survey, &file, offset)?;
            problem = Some(Problem {
                kind: ProblemKind::Corruption,
                file: file.clone(),
                offset,
                reason: reason.clone(),
                valid_records_after,
            });
        }
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let segments = list_segments(&view, dir)?.segments;
        let move_aside =
            |path: &PathBuf, why: String, view: &mut Overlay, actions: &mut Vec<RepairAction>| -> Result<()> {
                let bytes = view.inner.read(path).map_err(io_error("read", path))?;
                let records =
                    if parse_segment_name(path.file_name().and_then(|n| n.to_str()).unwrap_or_default()).is_some() {
                        count_records(&bytes)
                    } else {
                        0
                    };
                // A planned truncation of this file becomes part of moving it whole.
                actions.retain(|a| a.file() != path);
                view.truncated.remove(path);
                let base = format!("{}.corrupt-{now}", path.file_name().and_then(|n| n.to_str()).unwrap_or_default());
                let backup = dir.join(backup_name(&existing, actions, base));
                actions.push(RepairAction::MoveAside {
                    file: path.clone(),
                    bytes: bytes.len() as u64,
                    records,
                    backup,
                    reason: why,
                });
                view.hidden.insert(path.clone());
                Ok(())
            };
        if parse_snapshot_name(&name).is_some() {
            if view.hidden.contains(&file) {
                return Err(Error::Internal(format!("repair planned {} twice", file.display())));
            }
            move_aside(&file, format!("the snapshot does not verify: {reason}"), &mut view, &mut actions)?;
            continue;
        }
        let Some(number) = parse_segment_name(&name) else {
            return Err(Error::Internal(format!("repair does not know how to cut {}: {reason}", file.display())));
        };
        let present = segments.iter().any(|(n, _)| *n == number);
        let (cut_from, truncate_at) = if !present {
            (number, None) // a missing segment: nothing after the gap can be replayed
        } else if offset >= SEGMENT_HEADER_LEN as u64 {
            (number + 1, Some(offset))
        } else {
            (number, None) // the header itself is bad: the whole segment goes
        };
        let later: Vec<PathBuf> =
            segments.iter().filter(|(n, _)| *n >= cut_from).map(|(_, p)| p.clone()).rev().collect();
        for path in &later {
            let why = if *path == file {
                format!("its header is unusable: {reason}")
            } else {
                format!("follows the damage in {name}: its records cannot be replayed past a gap")
            };
            move_aside(path, why, &mut view, &mut actions)?;
        }
        if let Some(at) = truncate_at {
            if view.truncated.get(&file).is_some_and(|&len| len <= at) {
                return Err(Error::Internal(format!("repair planned a cut of {} at {at} twice", file.display())));
            }
            let bytes = view.inner.read(&file).map_err(io_error("read", &file))?;
            let end = bytes.iter().rposition(|&b| b != 0).map_or(at, |last| (last as u64 + 1).max(at));
            let records = frames_from(&bytes, at);
            actions.retain(|a| a.file() != file);
            let base = format!("{name}.corrupt-{now}.from-{at}");
            let backup = dir.join(backup_name(&existing, &actions, base));
            actions.push(RepairAction::Truncate {
                file: file.clone(),
                offset: at,
                bytes: end - at,
                records,
                backup,
                reason,
            });
            view.truncated.insert(file.clone(), at);
        } else if later.is_empty() {
            return Err(Error::Internal(format!("repair found nothing to cut for {}", file.display())));
        }
    }
    Err(Error::Internal(format!("repair did not converge after {limit} cuts")))
}

/// Plans (and with `apply`, makes) the repair of a store that [`verify`]
/// calls corrupt. The plan cuts the log at the first problem: the damaged
/// part of a segment is moved to a backup file and the segment truncated
/// there; later segments, whose records cannot be replayed past the gap, are
/// renamed to backups whole; a snapshot that does not verify is renamed to a
/// backup (recovery then starts from an older snapshot or from the start of
/// the log, and the cuts continue from there). Backups are named
/// `<file>.corrupt-<unix time>[.from-<offset>]`, stay in `dir`, and are never
/// deleted; no backup name matches a segment, snapshot or temporary file.
///
/// Without `apply` nothing is changed and no lock is taken. With `apply` the
/// writer lock is taken ([`Error::Locked`] when a server holds it), the plan
/// is made again under it, and the cuts are made in a crash-safe order:
/// whole files are renamed newest first and the directory fsynced, then a
/// truncated tail is written to its backup, fsynced, the directory fsynced,
/// and only then the segment truncated and fsynced. A crash at any point
/// leaves either the original damage (run repair again) or the repaired
/// store; no byte is dropped before its backup is durable. Finally the store
/// is opened like a restarted server would (replay, new segment, epoch
/// record), and when the dropped records named a higher epoch than the one
/// it opened with, a second epoch record carries it above
/// [`RepairPlan::epoch_floor`], so no epoch is ever reused. (A crash between
/// the last cut and that record leaves a store that opens, but whose next
/// epochs may repeat ones the dropped records named; the backups keep them.)
/// The store is left without a clean-shutdown record: the next server start
/// runs a grace period.
///
/// A plan with no actions means there is nothing to repair (the store opens
/// as it is: a torn tail is repaired by `open` itself). Problems that are
/// not corruption (an unsupported format version, I/O errors) are returned
/// as errors: repair refuses them.
///
/// Callable from async code: with `apply` the repair runs on a thread of its
/// own (its last step opens the store, which blocks on the writer thread, and
/// blocking inside a tokio runtime panics), so it never stops half way
/// because of where it was called from. The calling thread blocks until the
/// repair is done; from async code, call it through `spawn_blocking`.
pub fn repair(fs: Arc<dyn FileSystem>, dir: &Path, apply: bool) -> Result<RepairPlan> {
    if !apply {
        return plan(&fs, dir);
    }
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("lockwal-repair".into())
            .spawn_scoped(scope, || apply_repair(fs, dir))
            .map_err(|e| Error::Io { op: "spawn thread", path: dir.to_owned(), source: e })?
            .join()
            .map_err(|_| Error::Internal(format!("the repair of {} panicked", dir.display())))?
    })
}

/// [`repair`] with `apply`, on a thread outside any async runtime.
fn apply_repair(fs: Arc<dyn FileSystem>, dir: &Path) -> Result<RepairPlan> {
    let lock_path = dir.join(LOCK_FILE);
    let _lock = fs.try_lock(&lock_path).map_err(|e| match e.kind() {
        io::ErrorKind::WouldBlock => Error::Locked { dir: dir.to_owned() },
        _ => Error::Io { op: "lock", path: lock_path.clone(), source: e },
    })?;
    let mut plan = plan(&fs, dir)?;
    if plan.actions.is_empty() {
        return Ok(plan);
    }
    // Whole files first, newest segment first, so that what remains is always
    // a contiguous prefix of the log; then the truncation.
    let mut moves: Vec<&RepairAction> =
        plan.actions.iter().filter(|a| matches!(a, RepairAction::MoveAside { .. })).collect();
    moves.sort_by(|a, b| b.file().cmp(a.file()));
    for action in &moves {
        let (from, to) = (action.file(), action.backup());
        tracing::warn!(file = %from.display(), backup = %to.display(), "repair: moving aside");
        fs.rename(from, to).map_err(io_error("rename", from))?;
    }
    if !moves.is_empty() {
        fs.sync_dir(dir).map_err(io_error("fsync directory", dir))?;
    }
    for action in &plan.actions {
        let RepairAction::Truncate { file, offset, bytes, backup, .. } = action else { continue };
        tracing::warn!(file = %file.display(), offset, backup = %backup.display(), "repair: truncating");
        {
            let content = read(&*fs, file)?;
            let tail = content
                .get(*offset as usize..(*offset + *bytes) as usize)
                .ok_or_else(|| Error::Internal(format!("{} changed while it was being repaired", file.display())))?;
            let mut out = fs.open(backup, OpenMode::CreateNew).map_err(io_error("create", backup))?;
            out.write_at(0, tail).map_err(io_error("write", backup))?;
            out.sync_data().map_err(io_error("fdatasync", backup))?;
        } // the map of the segment is dropped before it is truncated
        fs.sync_dir(dir).map_err(io_error("fsync directory", dir))?;
        let mut segment = fs.open(file, OpenMode::Existing).map_err(io_error("open", file))?;
        segment.set_len(*offset).map_err(io_error("truncate", file))?;
        segment.sync_data().map_err(io_error("fdatasync", file))?;
    }
    // The cut store opens; opening it (a new incarnation, as after any
    // crash) also carries the epoch past every epoch the dropped records
    // named, so no epoch is ever reused.
    drop(_lock);
    let store = super::WalLockStore::open_blocking(Arc::clone(&fs), dir.to_owned(), super::WalOptions::default())?;
    let opened = store.stats().epoch;
    if opened <= plan.epoch_floor {
        store.submit_blocking(Command::Open { epoch: plan.epoch_floor + 1 })?;
    }
    let s = store.stats();
    // Dropped without a clean-shutdown record: the next server start runs a
    // grace period, as it must after losing records.
    drop(store);
    plan.after = Some(Replayed {
        last_lsn: s.last_lsn,
        records: s.records_replayed,
        epoch: s.epoch,
        locks: s.locks,
        clients: s.clients,
        clean_shutdown: false,
    });
    plan.applied = true;
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LockStore;
    use crate::io::RealFs;
    use crate::testing::sample;
    use crate::wal::{WalLockStore, WalOptions};

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
        let plan = repair(fs(), dir.path(), true).unwrap();
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
        let plan = repair(fs(), dir.path(), true).unwrap();
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
        let plan = repair(fs(), dir.path(), false).unwrap();
        let moved: Vec<&Path> = plan.actions.iter().map(RepairAction::file).collect();
        assert!(moved.contains(&segs[2].as_path()) && !moved.contains(&segs[1].as_path()), "{moved:?}");
        assert_eq!(std::fs::read(&segs[2]).unwrap(), bytes, "planning changes nothing");
        repair(fs(), dir.path(), true).unwrap();
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
        repair(fs(), once.path(), true).unwrap();
        // ... and one "crashed" after moving the later segments aside (the
        // first durable step), then run again.
        let twice = store(200);
        damage(twice.path());
        let plan = repair(fs(), twice.path(), false).unwrap();
        for action in &plan.actions {
            if let RepairAction::MoveAside { file, backup, .. } = action {
                std::fs::rename(file, backup).unwrap();
            }
        }
        assert!(!verify(&RealFs, twice.path()).unwrap().is_intact(), "the damage itself is still there");
        let rerun = repair(fs(), twice.path(), true).unwrap();
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
        assert!(repair(fs(), dir.path(), false).unwrap().actions.is_empty());
    }

    /// Regression (issue 15, item 5): `repair(.., true)` called inside a
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
        let plan = rt.block_on(async { repair(fs(), dir.path(), true) }).unwrap();
        assert!(plan.applied && !plan.actions.is_empty());
        assert!(plan.after.as_ref().unwrap().epoch > plan.epoch_floor, "the epoch record was written");
        assert!(verify(&RealFs, dir.path()).unwrap().is_intact());
    }

    #[test]
    fn retry_while_changing_retries_only_when_the_directory_changed() {
        let dir = tempfile::tempdir().unwrap();
        let mut calls = 0;
        let result: Result<()> = retry_while_changing(&RealFs, dir.path(), || {
            calls += 1;
            Err(Error::Internal("stable failure".into()))
        });
        assert!(result.is_err());
        assert_eq!(calls, 1, "an unchanged directory: the failure is real");
        let mut calls = 0;
        let result = retry_while_changing(&RealFs, dir.path(), || {
            calls += 1;
            if calls < 3 {
                std::fs::write(dir.path().join(format!("seg-{calls}")), b"x").unwrap();
                return Err(Error::Internal("a file vanished".into()));
            }
            Ok(calls)
        });
        assert_eq!(result.unwrap(), 3);
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
}
