//! [`repair`]: planning the cuts on an in-memory view, and making them.

use super::check::{frames_from, records_after, survey};
use super::verify::{Problem, ProblemKind, Replayed, replayed};
use super::view::Overlay;
use super::{list_names, read};
use crate::error::{Error, Result, io_error};
use crate::io::{FileSystem, OpenMode};
use crate::state::Command;
use crate::wal::format::{Payload, SEGMENT_HEADER_LEN, SegmentHeader, parse_segment_name};
use crate::wal::recovery::{self, Listing, list_segments};
use crate::wal::scan::{SegmentEnd, scan_segment, visit_frames_after};
use crate::wal::snapshot::parse_snapshot_name;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

    /// Snapshots the repair moves aside: each drops the state as of its LSN
    /// (what the log before it held, which compaction removed).
    pub fn snapshots_dropped(&self) -> Vec<&Path> {
        self.actions
            .iter()
            .map(RepairAction::file)
            .filter(|f| f.file_name().and_then(|n| n.to_str()).and_then(parse_snapshot_name).is_some())
            .collect()
    }

    /// What the repair drops beyond the damage itself, in words: valid
    /// records, and snapshots. `None` when it drops only damaged bytes.
    /// [`RepairMode::Apply`] refuses a plan for which this is `Some`.
    pub fn loss(&self) -> Option<String> {
        let records = self.records_dropped();
        let snapshots = self.snapshots_dropped();
        if records == 0 && snapshots.is_empty() {
            return None;
        }
        let mut parts = Vec::new();
        if records > 0 {
            parts.push(format!("{records} valid log record(s) after the damage"));
        }
        for s in &snapshots {
            parts
                .push(format!("the snapshot {} (every lock, client, durable handle and record it holds)", s.display()));
        }
        let after = self.after.as_ref().map_or(String::new(), |a| {
            format!(
                "; the repaired store would hold {} lock(s), {} client(s), {} durable handle(s) and {} record(s)",
                a.locks, a.clients, a.handles, a.keyspace_records
            )
        });
        Some(format!("it would drop {}{after}", parts.join(" and ")))
    }
}

/// What [`repair`] does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RepairMode {
    /// Plan only: nothing is changed and no lock is taken.
    Plan,
    /// Make the cuts, unless the plan drops more than the damage itself
    /// ([`RepairPlan::loss`]): then [`Error::RepairRefused`], and nothing is
    /// changed.
    Apply,
    /// Make the cuts even when they drop valid records or a snapshot: for an
    /// operator who read the plan and accepts serving without that state
    /// (the backups keep it).
    ApplyAcceptingLoss,
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

/// The highest epoch the store can have handed out, from everything in the
/// directory that names one: snapshot headers, segment headers (format 2:
/// the epoch of the incarnation that created the segment, so it survives the
/// loss of that incarnation's `Open` record), the headers of earlier repairs'
/// backups, and the `Open` records of every valid frame of every segment,
/// those after damage included. A segment whose header cannot be read may
/// hide the epoch of the incarnation that created it; each adds one, since
/// an incarnation's epoch is one above the last recorded one.
fn highest_epoch(fs: &dyn FileSystem, dir: &Path) -> Result<u64> {
    let Listing { segments, snapshots, .. } = list_segments(fs, dir)?;
    let mut highest = recovery::backup_epochs(fs, dir)?;
    for (_, path) in &snapshots {
        if let Ok(h) = crate::wal::snapshot::decode_header(&read(fs, path)?) {
            highest = highest.max(h.epoch);
        }
    }
    let (mut hidden, mut in_headers) = (0u64, 0u64);
    let mut note_opens = |payload: Payload<'_>| {
        for command in payload.commands().unwrap_or_default() {
            // An epoch above the largest is damage: no open ever ran it.
            if let Command::Open { epoch } = command
                && epoch <= crate::wal::format::MAX_COUNTER
            {
                highest = highest.max(epoch);
            }
        }
    };
    for (i, (_, path)) in segments.iter().enumerate() {
        let bytes = read(fs, path)?;
        let header = match SegmentHeader::decode(&bytes) {
            Ok(header) => header,
            Err(_) => {
                let newest = i + 1 == segments.len();
                let incomplete = matches!(
                    scan_segment::<()>(&bytes, None, newest, |_, _, _| Ok(())),
                    Ok(Ok(s)) if s.end == SegmentEnd::Incomplete
                );
                hidden += u64::from(!incomplete);
                continue;
            }
        };
        in_headers = in_headers.max(header.epoch.unwrap_or(0));
        let mut last_lsn = header.first_lsn - 1;
        let scan = scan_segment::<()>(&bytes, None, false, |_, lsn, payload| {
            last_lsn = lsn;
            note_opens(payload);
            Ok(())
        })
        .unwrap_or_else(|()| unreachable!());
        if let Err(damage) = scan {
            let from = (damage.offset as usize + crate::wal::format::FRAME_ALIGN).max(SEGMENT_HEADER_LEN);
            let version = header.version;
            visit_frames_after(&bytes, from, header.salt, last_lsn, version, |_, _, payload| note_opens(payload));
        }
    }
    Ok(highest.max(in_headers).saturating_add(hidden).min(crate::wal::format::MAX_COUNTER))
}

/// Plans the cuts on an overlay until recovery succeeds on it.
pub(super) fn plan(fs: &dyn FileSystem, dir: &Path) -> Result<RepairPlan> {
    let now = unix_now();
    let mut view = Overlay::of(fs);
    let epoch_floor = highest_epoch(&view, dir)?;
    let existing: BTreeSet<String> = list_names(&view, dir)?.into_iter().collect();
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
            |path: &PathBuf, why: String, view: &mut Overlay<'_>, actions: &mut Vec<RepairAction>| -> Result<()> {
                let bytes = view.inner.read_copy(path).map_err(io_error("read", path))?;
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
        } else if offset > SEGMENT_HEADER_LEN as u64 {
            (number + 1, Some(offset))
        } else {
            // The header itself is bad, or the first frame is: the whole
            // segment goes. (Cut at its first frame it would hold no record,
            // and its header, with the epoch of the incarnation that made
            // it, would be removed by the next open; the backup keeps it.)
            (number, None)
        };
        let later: Vec<PathBuf> =
            segments.iter().filter(|(n, _)| *n >= cut_from).map(|(_, p)| p.clone()).rev().collect();
        for path in &later {
            let why = if *path == file && offset < SEGMENT_HEADER_LEN as u64 {
                format!("its header is unusable: {reason}")
            } else if *path == file {
                format!("its first record is damaged, so it would hold none: {reason}")
            } else {
                format!("follows the damage in {name}: its records cannot be replayed past a gap")
            };
            move_aside(path, why, &mut view, &mut actions)?;
        }
        if let Some(at) = truncate_at {
            if view.truncated.get(&file).is_some_and(|&len| len <= at) {
                return Err(Error::Internal(format!("repair planned a cut of {} at {at} twice", file.display())));
            }
            let bytes = view.inner.read_copy(&file).map_err(io_error("read", &file))?;
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

/// Plans (and unless `mode` is [`RepairMode::Plan`], makes) the repair of a
/// store that [`verify`](super::verify)
/// calls corrupt. The plan cuts the log at the first problem: the damaged
/// part of a segment is moved to a backup file and the segment truncated
/// there; later segments, whose records cannot be replayed past the gap, are
/// renamed to backups whole; a snapshot that does not verify is renamed to a
/// backup (recovery then starts from an older snapshot or from the start of
/// the log, and the cuts continue from there). Backups are named
/// `<file>.corrupt-<unix time>[.from-<offset>]`, stay in `dir`, and are never
/// deleted; no backup name matches a segment, snapshot or temporary file.
///
/// With [`RepairMode::Plan`] nothing is changed and no lock is taken.
/// Otherwise the writer lock is taken ([`Error::Locked`] when a server holds
/// it) and the plan is made again under it. A plan that drops more than the
/// damage itself (valid records after it, or a snapshot: [`RepairPlan::loss`])
/// is refused with [`Error::RepairRefused`] under [`RepairMode::Apply`]: one
/// flipped byte in a snapshot would otherwise empty the store. Then the cuts
/// are made in a crash-safe order:
/// whole files are renamed newest first and the directory fsynced, then a
/// truncated tail is written to its backup, fsynced, the directory fsynced,
/// and only then the segment truncated and fsynced. A crash at any point
/// leaves either the original damage (run repair again) or the repaired
/// store; no byte is dropped before its backup is durable. Finally the store
/// is opened under the same lock like a restarted server would (replay, new
/// segment, epoch record), with an epoch above [`RepairPlan::epoch_floor`],
/// so no epoch is ever reused. A crash before that open leaves a store whose
/// next open still goes above every epoch in a segment header, the backups'
/// included (DESIGN.md, "Opening and recovery rules"); only epochs named solely by `Open`
/// records in format-1 segments that the repair dropped can then repeat.
/// The store is left without a clean-shutdown record: the next server start
/// runs a grace period.
///
/// A plan with no actions means there is nothing to repair (the store opens
/// as it is: a torn tail is repaired by `open` itself). Problems that are
/// not corruption (an unsupported format version, I/O errors) are returned
/// as errors: repair refuses them.
///
/// Callable from async code: a repair that changes files runs on a thread of its
/// own (its last step opens the store, which blocks on the writer thread, and
/// blocking inside a tokio runtime panics), so it never stops half way
/// because of where it was called from. The calling thread blocks until the
/// repair is done; from async code, call it through `spawn_blocking`.
pub fn repair(fs: Arc<dyn FileSystem>, dir: &Path, mode: RepairMode) -> Result<RepairPlan> {
    if mode == RepairMode::Plan {
        return plan(&*fs, dir);
    }
    let accept_loss = mode == RepairMode::ApplyAcceptingLoss;
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("lockwal-repair".into())
            .spawn_scoped(scope, || apply_repair(fs, dir, accept_loss))
            .map_err(|e| Error::Io { op: "spawn thread", path: dir.to_owned(), source: e })?
            .join()
            .map_err(|_| Error::Internal(format!("the repair of {} panicked", dir.display())))?
    })
}

/// [`repair`] that makes the cuts, on a thread outside any async runtime.
fn apply_repair(fs: Arc<dyn FileSystem>, dir: &Path, accept_loss: bool) -> Result<RepairPlan> {
    let span = tracing::info_span!("repair", dir = %dir.display(), accept_loss, actions = tracing::field::Empty, records_dropped = tracing::field::Empty, epoch = tracing::field::Empty).entered();
    let lock = crate::wal::open::take_lock(&*fs, dir)?;
    let mut plan = plan(&*fs, dir)?;
    span.record("actions", plan.actions.len()).record("records_dropped", plan.records_dropped());
    if plan.actions.is_empty() {
        return Ok(plan);
    }
    if let Some(loss) = plan.loss().filter(|_| !accept_loss) {
        return Err(Error::RepairRefused {
            dir: dir.to_owned(),
            reason: format!("{loss}; nothing was changed (accept the loss explicitly to make these cuts)"),
        });
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
    // The cut store opens, still under the lock, as a new incarnation (as
    // after any crash) whose epoch is above every epoch the dropped records
    // named: one `Open` record, so no epoch is ever reused.
    let store = crate::wal::WalLockStore::open_locked(
        Arc::clone(&fs),
        dir.to_owned(),
        crate::wal::WalOptions::default(),
        lock,
        plan.epoch_floor,
    )?;
    let s = store.stats();
    span.record("epoch", s.epoch);
    // Dropped without a clean-shutdown record: the next server start runs a
    // grace period, as it must after losing records.
    drop(store);
    plan.after = Some(Replayed {
        last_lsn: s.last_lsn,
        records: s.records_replayed,
        epoch: s.epoch,
        locks: s.locks,
        clients: s.clients,
        handles: s.handles,
        keyspace_records: s.keyspace_records,
        clean_shutdown: false,
    });
    plan.applied = true;
    Ok(plan)
}
