//! Recovery at open: read every segment through the file-system seam, scan
//! it (see [`super::scan`]), apply its records to the state machine, and say
//! what must be repaired. The repairs themselves (truncating a torn tail,
//! removing an interrupted segment or a temporary file) are made by the
//! caller, only in read-write mode, and only after every map is dropped.

use super::format::{SegmentHeader, TMP_SUFFIX, parse_segment_name, segment_name};
use super::scan::{SegmentEnd, SegmentScan, scan_segment};
use super::snapshot::{SnapshotHeader, Threads, decode_snapshot_with, parse_snapshot_name};
use crate::error::{Error, Result};
use crate::io::FileSystem;
use crate::state::{Command, Keys, State};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A torn tail found (and, in read-write mode, truncated) at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The segment.
    pub file: PathBuf,
    /// Where the valid log ends and the torn write began.
    pub offset: u64,
    /// Bytes after `offset` that were discarded.
    pub discarded: u64,
}

/// The snapshot recovery started from.
#[derive(Debug, Clone)]
pub struct LoadedSnapshot {
    /// Its path.
    pub path: PathBuf,
    /// Its header.
    pub header: SnapshotHeader,
    /// Its length in bytes.
    pub bytes: u64,
}

/// One segment as recovery found it.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    /// Its path.
    pub path: PathBuf,
    /// Its number.
    pub number: u64,
    /// What the scan found.
    pub scan: SegmentScan,
    /// The file's length on disk.
    pub file_len: u64,
}

/// The result of reading the whole log.
pub struct Recovered {
    /// The state after every valid record.
    pub state: State,
    /// The segments, oldest first.
    pub segments: Vec<SegmentInfo>,
    /// LSN of the last valid record (the snapshot's LSN when the log adds
    /// none).
    pub last_lsn: u64,
    /// Records applied.
    pub records: u64,
    /// The torn tail, if the newest segment has one.
    pub torn: Option<TornTail>,
    /// Temporary files left by an interrupted write; never trusted.
    pub temporaries: Vec<PathBuf>,
    /// Older snapshots and segments that the snapshot covers: left by a
    /// compaction interrupted before it retired them.
    pub stale: Vec<PathBuf>,
    /// The snapshot the state was loaded from, if any.
    pub snapshot: Option<LoadedSnapshot>,
    /// How long reading and applying took.
    pub duration: Duration,
}

/// The files of a store directory that recovery cares about.
pub(crate) struct Listing {
    /// Segment numbers and paths, sorted by number.
    pub segments: Vec<(u64, PathBuf)>,
    /// Temporary files.
    pub temporaries: Vec<PathBuf>,
    /// Snapshot LSNs and paths, sorted by LSN.
    pub snapshots: Vec<(u64, PathBuf)>,
    /// Segments that a repair moved aside whole (`seg-<n>.wal.corrupt-...`).
    pub backups: Vec<PathBuf>,
}

/// What [`read_log`] found.
pub(crate) struct LogRead {
    pub segments: Vec<SegmentInfo>,
    /// Segments entirely covered by the state the log was read after.
    pub covered: Vec<PathBuf>,
    pub last_lsn: u64,
    pub records: u64,
    pub temporaries: Vec<PathBuf>,
}

/// The names in `dir`. A directory that does not exist is
/// [`Error::NoSuchDirectory`], which an operator reads at a glance, rather
/// than an I/O error of `list`.
pub(crate) fn list_dir(fs: &dyn FileSystem, dir: &Path) -> Result<Vec<String>> {
    fs.list(dir).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => Error::NoSuchDirectory { dir: dir.to_owned() },
        _ => Error::Io { op: "list", path: dir.to_owned(), source },
    })
}

/// Segment files in `dir`, sorted by number, and the temporary files.
pub(crate) fn list_segments(fs: &dyn FileSystem, dir: &Path) -> Result<Listing> {
    let names = list_dir(fs, dir)?;
    let mut segments = Vec::new();
    let mut temporaries = Vec::new();
    let mut snapshots = Vec::new();
    let mut backups = Vec::new();
    for name in names {
        if let Some(number) = parse_segment_name(&name) {
            segments.push((number, dir.join(name)));
        } else if name.split_once(".corrupt-").is_some_and(|(file, _)| parse_segment_name(file).is_some()) {
            backups.push(dir.join(name));
        } else if let Some(lsn) = parse_snapshot_name(&name) {
            snapshots.push((lsn, dir.join(name)));
        } else if name.strip_suffix(TMP_SUFFIX).and_then(parse_snapshot_name).is_some() {
            // Only the store's own temporaries (a snapshot being written);
            // any other `*.tmp` is not ours to delete.
            temporaries.push(dir.join(name));
        } else if looks_like_store_file(&name) {
            return Err(Error::Corruption {
                file: dir.join(&name),
                offset: 0,
                reason: "named like a segment or snapshot of this store but not as the store names them                          (seg-<20 digits>.wal, snap-<20 digits>.snap): renamed by hand? Rename or move it                          before opening"
                    .into(),
            });
        }
    }
    segments.sort();
    snapshots.sort();
    Ok(Listing { segments, temporaries, snapshots, backups })
}

/// The highest epoch in the header of a segment that a repair moved aside
/// (0 when none names one). A new incarnation's epoch goes above it too: the
/// repair that moved it may have stopped before its own open recorded an
/// epoch above the dropped ones. An unreadable backup is skipped (warned):
/// it cannot keep the store from opening.
pub(crate) fn backup_epochs(fs: &dyn FileSystem, dir: &Path) -> Result<u64> {
    let mut highest = 0;
    for path in list_segments(fs, dir)?.backups {
        match fs.read(&path).map(|bytes| SegmentHeader::decode(&bytes)) {
            Ok(Ok(header)) => highest = highest.max(header.epoch.unwrap_or(0)),
            Ok(Err(e)) => {
                tracing::debug!(file = %path.display(), error = %e, "backup segment without a readable header")
            }
            Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot read a backup segment's epoch"),
        }
    }
    Ok(highest)
}

/// Whether `name` has the shape of a segment or snapshot file name without
/// being one: such a file may hold acknowledged records, so it is never
/// ignored silently. Repair backups (`<name>.corrupt-...`) do not match.
fn looks_like_store_file(name: &str) -> bool {
    (name.starts_with("seg-") && name.ends_with(".wal")) || (name.starts_with("snap-") && name.ends_with(".snap"))
}

/// Visits every valid record of the log after `after_lsn`, segment by
/// segment: `on_record(segment, offset, lsn, commands)`. Checks segment
/// numbering and LSN continuity, and classifies damage by the scan rules.
pub(crate) fn read_log(
    fs: &dyn FileSystem,
    dir: &Path,
    after_lsn: u64,
    mut on_record: impl FnMut(&Path, u64, u64, Vec<Command>) -> Result<()>,
) -> Result<LogRead> {
    let Listing { segments: all, temporaries, .. } = list_segments(fs, dir)?;
    // With a snapshot, segments before the last one that starts at or
    // before `after_lsn + 1` hold only records the snapshot covers (a
    // compaction interrupted before it retired them): skip them, in any
    // number and with any gaps.
    let mut start = 0;
    if after_lsn > 0 {
        for (i, (_, path)) in all.iter().enumerate() {
            let bytes = fs.read(path).map_err(|source| Error::Io { op: "read", path: path.clone(), source })?;
            if SegmentHeader::decode(&bytes).is_ok_and(|h| h.first_lsn <= after_lsn + 1) {
                start = i;
            }
        }
    }
    let covered = all[..start].iter().map(|(_, p)| p.clone()).collect();
    let segments = &all[start..];
    let mut infos = Vec::with_capacity(segments.len());
    let mut expected_lsn: Option<u64> = None;
    let mut last_lsn = after_lsn;
    let mut records = 0u64;
    for (i, (number, path)) in segments.iter().enumerate() {
        if i > 0 && *number != segments[i - 1].0 + 1 {
            return Err(Error::Corruption {
                file: dir.join(segment_name(segments[i - 1].0 + 1)),
                offset: 0,
                reason: format!("segment missing: the log jumps from segment {} to {number}", segments[i - 1].0),
            });
        }
        let newest = i + 1 == segments.len();
        let bytes = fs.read(path).map_err(|source| Error::Io { op: "read", path: path.clone(), source })?;
        let scan = scan_segment(&bytes, expected_lsn, newest, |offset, lsn, payload| {
            if lsn <= after_lsn {
                return Ok(());
            }
            let commands = payload.commands().map_err(|e| Error::Corruption {
                file: path.clone(),
                offset,
                reason: format!("record LSN {lsn}: {e}"),
            })?;
            records += 1;
            on_record(path, offset, lsn, commands)
        })?;
        let scan = scan.map_err(|damage| match damage.error {
            super::format::DecodeError::Version(found) if damage.offset == 0 => {
                Error::UnsupportedVersion { file: path.clone(), found, supported: super::format::FORMAT_VERSION }
            }
            _ => Error::Corruption { file: path.clone(), offset: damage.offset, reason: damage.to_string() },
        })?;
        if let Some(header) = scan.header {
            if header.number != *number {
                return Err(Error::Corruption {
                    file: path.clone(),
                    offset: 16,
                    reason: format!("header says segment {}, the file name says {number}", header.number),
                });
            }
            if expected_lsn.is_none() && header.first_lsn > after_lsn + 1 {
                return Err(Error::Corruption {
                    file: path.clone(),
                    offset: 32,
                    reason: format!(
                        "the log starts at LSN {} but the state before it ends at LSN {after_lsn}",
                        header.first_lsn
                    ),
                });
            }
            expected_lsn = Some(scan.last_lsn + 1);
            last_lsn = last_lsn.max(scan.last_lsn);
        }
        infos.push(SegmentInfo { path: path.clone(), number: *number, scan, file_len: bytes.len() as u64 });
    }
    Ok(LogRead { segments: infos, covered, last_lsn, records, temporaries })
}

/// Log payload after a snapshot from which recovery builds the key indexes
/// after replay instead of before it (see `state::PendingKeys`): replay
/// then keeps only the ids and the slab up to date, and the key arrays are
/// built once from the final slab, but no longer beside the indexing of the
/// ids. That cost about 170 ms at 1M locks and saved about 28 ms per MiB of
/// log (some 7,500 lock writes), so it paid from about 6 MiB (figures in
/// docs/decisions/0057-key-indexes-after-replay.md, measured while a
/// restore still built every range tree; since decision 0059 neither path
/// builds them).
pub(crate) const DEFER_KEYS_AT_LOG_BYTES: u64 = 8 << 20;

/// How recovery builds the key indexes: after replay without a snapshot
/// (no restore runs beside the build), or when the log after the snapshot
/// holds [`DEFER_KEYS_AT_LOG_BYTES`] of payload, counted by a scan that
/// checks each frame but decodes nothing (damage ends the count: replay
/// itself reports it).
fn keys_for(fs: &dyn FileSystem, listing: &Listing) -> Keys {
    let Some(&(after_lsn, _)) = listing.snapshots.last() else { return Keys::Defer };
    let mut bytes = 0u64;
    for (_, path) in &listing.segments {
        let Ok(file) = fs.read(path) else { break };
        let scan = scan_segment(&file, None, true, |_, lsn, payload| {
            if lsn > after_lsn {
                bytes += payload.bytes.len() as u64;
            }
            Ok::<(), ()>(())
        });
        if bytes >= DEFER_KEYS_AT_LOG_BYTES {
            return Keys::Defer;
        }
        if !matches!(scan, Ok(Ok(_))) {
            break;
        }
    }
    Keys::Index
}

/// Loads the newest snapshot (if any). A snapshot that does not verify is
/// corruption: it is never skipped in favour of an older one. With
/// [`Keys::Defer`] the state may hold its key indexes pending.
pub(crate) fn load_snapshot(
    fs: &dyn FileSystem,
    dir: &Path,
    keys: Keys,
) -> Result<(State, Option<LoadedSnapshot>, Vec<PathBuf>)> {
    let Listing { mut snapshots, .. } = list_segments(fs, dir)?;
    let Some((_, path)) = snapshots.pop() else {
        let state = match keys {
            Keys::Index => State::new(),
            Keys::Defer => State::new_with_keys_pending(),
        };
        return Ok((state, None, Vec::new()));
    };
    let older = snapshots.into_iter().map(|(_, p)| p).collect();
    let bytes = fs.read(&path).map_err(|source| Error::Io { op: "read", path: path.clone(), source })?;
    // Decoded blocks leave the resident set as the decoder moves on.
    let (header, state) =
        decode_snapshot_with(&bytes, Threads::available(), keys, |start, end| bytes.release(start, end)).map_err(
            |d| match d.version {
                Some(found) => Error::UnsupportedVersion {
                    file: path.clone(),
                    found,
                    supported: super::snapshot::SNAPSHOT_VERSION,
                },
                None => Error::Corruption { file: path.clone(), offset: d.offset, reason: d.reason },
            },
        )?;
    if path.file_name().and_then(|n| n.to_str()) != Some(super::snapshot::snapshot_name(header.lsn).as_str()) {
        return Err(Error::Corruption {
            file: path.clone(),
            offset: 16,
            reason: format!("header says LSN {}, the file name disagrees", header.lsn),
        });
    }
    let loaded = LoadedSnapshot { path, header, bytes: bytes.len() as u64 };
    Ok((state, Some(loaded), older))
}

/// Loads the newest snapshot and reads the log after it.
pub(crate) fn recover(fs: &dyn FileSystem, dir: &Path) -> Result<Recovered> {
    let started = Instant::now();
    let keys = keys_for(fs, &list_segments(fs, dir)?);
    let (mut state, snapshot, mut stale) = load_snapshot(fs, dir, keys)?;
    let after_lsn = snapshot.as_ref().map_or(0, |s| s.header.lsn);
    let LogRead { segments, covered, last_lsn, records, temporaries } =
        read_log(fs, dir, after_lsn, |path, offset, lsn, commands| {
            for command in &commands {
                state.apply(command).map_err(|e| Error::Corruption {
                    file: path.to_owned(),
                    offset,
                    reason: format!("record LSN {lsn} does not apply to the state before it: {e}"),
                })?;
            }
            Ok(())
        })?;
    state.index_pending_keys();
    let torn = segments.last().and_then(|s| match s.scan.end {
        SegmentEnd::Torn { offset } => {
            Some(TornTail { file: s.path.clone(), offset, discarded: s.file_len.saturating_sub(offset) })
        }
        _ => None,
    });
    stale.extend(covered);
    Ok(Recovered {
        state,
        segments,
        last_lsn,
        records,
        torn,
        temporaries,
        stale,
        snapshot,
        duration: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::RealFs;
    use crate::op::Op;
    use crate::testing::sample;
    use crate::wal::{WalLockStore, WalOptions};
    use crate::{LockQuery, LockStore};

    /// A store with more than [`DEFER_KEYS_AT_LOG_BYTES`] of log after its
    /// snapshot is recovered with its key indexes built after replay, and
    /// reopens holding what it was acknowledged: every lock, each file's and
    /// each owner's, and the same test-query answers on crowded files. A
    /// short log after the snapshot indexes the keys at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_long_log_after_a_snapshot_replays_before_the_keys_are_indexed() {
        let dir = tempfile::tempdir().unwrap();
        let options = WalOptions { compact_after_bytes: None, compact_at_open_segments: None, ..WalOptions::default() };
        let store = WalLockStore::open(dir.path(), options.clone()).await.unwrap();
        let lock = |i: usize, round: usize| {
            // Long owners: fewer writes make a long log.
            let owner = format!("owner-{}-{round}-{}", i % 7, "o".repeat(200));
            sample::byte_range(&format!("l{i}"), "s", &format!("f{}", i % 40), &owner, "c")
        };
        let puts = |round: usize, ids: std::ops::Range<usize>| ids.map(move |i| Op::PutLock(lock(i, round)));
        store.transaction(puts(0, 0..4000).collect()).await.unwrap();
        store.compact().await.unwrap();
        let keys = || keys_for(&RealFs, &list_segments(&RealFs, dir.path()).unwrap());
        assert_eq!(keys(), Keys::Index, "a short log after the snapshot");
        for round in 1..=8 {
            let ops: Vec<Op> = puts(round, 0..4000).collect();
            for chunk in ops.chunks(crate::model::validate::MAX_TXN_OPS) {
                store.transaction(chunk.to_vec()).await.unwrap();
            }
        }
        let deletes = (0..4000).step_by(3).map(|i| Op::DeleteLock { id: format!("l{i}") }).collect();
        store.transaction(deletes).await.unwrap();
        store.delete_locks_by_file("f7").await.unwrap();
        store.put_lock(lock(4000, 9)).await.unwrap();
        let all = store.list_locks(&LockQuery::all()).await.unwrap();
        let file = store.list_locks(&LockQuery::by_file("f1")).await.unwrap();
        let owner = LockQuery { owner_id: Some(format!("owner-3-8-{}", "o".repeat(200))), ..LockQuery::all() };
        let owned = store.list_locks(&owner).await.unwrap();
        let mut candidate = lock(1, 0);
        (candidate.id, candidate.owner_id) = ("contender".into(), "another".into());
        let conflicts = store.test_lock(&candidate).await.unwrap();
        store.close().await.unwrap();
        assert_eq!(keys(), Keys::Defer, "a log of {} bytes after the snapshot", DEFER_KEYS_AT_LOG_BYTES);
        let store = WalLockStore::open(dir.path(), options).await.unwrap();
        assert_eq!(store.list_locks(&LockQuery::all()).await.unwrap(), all);
        assert_eq!(store.list_locks(&LockQuery::by_file("f1")).await.unwrap(), file);
        assert!(file.len() > 64, "f1 is crowded enough for a range index");
        assert_eq!(store.list_locks(&owner).await.unwrap(), owned);
        assert!(!owned.is_empty());
        assert_eq!(store.test_lock(&candidate).await.unwrap(), conflicts);
        assert!(store.list_locks(&LockQuery::by_file("f7")).await.unwrap().is_empty());
        store.close().await.unwrap();
    }
}
