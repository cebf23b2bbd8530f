//! The open path below the store handle: what a writer's open does on disk
//! after it took the lock (replay, the repairs that make the directory
//! consistent, the new segment and its epoch, the writer and compactor
//! threads), the parts of a read-only handle, and the directory helpers
//! (the writer lock, creating the directory durably). Returns the parts
//! ([`Opened`]) for [`WalLockStore`](super::WalLockStore) to take over;
//! names only the layers below it.

use super::compact::{Compactor, install, retire};
use super::format::{LOCK_FILE, SEGMENT_HEADER_LEN};
use super::options::WalOptions;
use super::recovery::{self, Recovered, TornTail};
use super::shared::{CompactMsg, Msg, Shared, SnapshotStats};
use super::writer::{Core, Writer, create_segment};
use crate::error::{Error, Result, io_error};
use crate::io::{FileSystem, LockGuard, OpenMode};
use crate::metrics;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;
use tracing::field::Empty;

/// What an open found: the previous incarnation's shutdown and the replay.
#[derive(Debug, Clone)]
pub(super) struct OpenReport {
    pub(super) previous_clean: bool,
    pub(super) replay_duration: Duration,
    pub(super) records_replayed: u64,
    pub(super) torn_tail: Option<TornTail>,
}

/// An opened store's parts, which the handle takes over. A read-only open
/// has no channels, no threads and no lock.
pub(super) struct Opened {
    pub(super) shared: Arc<Shared>,
    pub(super) writer: Option<mpsc::Sender<Msg>>,
    /// The writer, which its thread and lone callers lock to commit.
    pub(super) core: Option<Core>,
    pub(super) compactor: Option<mpsc::Sender<CompactMsg>>,
    pub(super) threads: Vec<JoinHandle<()>>,
    pub(super) lock: Option<LockGuard>,
    pub(super) report: OpenReport,
}

fn remove_all(fs: &dyn FileSystem, paths: &[PathBuf], why: &str) -> Result<bool> {
    for path in paths {
        tracing::warn!(file = %path.display(), why, "removing");
        fs.remove(path).map_err(io_error("remove", path))?;
    }
    Ok(!paths.is_empty())
}

/// Takes the store's exclusive writer lock.
pub(crate) fn take_lock(fs: &dyn FileSystem, dir: &Path) -> Result<LockGuard> {
    let lock_path = dir.join(LOCK_FILE);
    fs.try_lock(&lock_path).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => Error::Locked { dir: dir.to_owned() },
        _ => Error::Io { op: "lock", path: lock_path.clone(), source: e },
    })
}

/// Creates `dir` (and missing parents) so that it survives power loss: a
/// new directory's entry lives in its parent, so each parent of a created
/// directory is fsynced (regression: `a_grant_acknowledged_after_the_first_open_survives_power_loss`).
pub(super) fn create_dir_durably(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
    let missing: Vec<&Path> =
        dir.ancestors().take_while(|d| !d.as_os_str().is_empty() && fs.list(d).is_err()).collect();
    fs.create_dir_all(dir).map_err(io_error("create directory", dir))?;
    for created in missing.iter().rev() {
        if let Some(parent) = created.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs.sync_dir(parent).map_err(io_error("fsync directory", parent))?;
        }
    }
    Ok(())
}

/// A writer's open of `dir`, whose writer `lock` the caller holds: replays
/// the snapshot and the log, makes each repair durable before the next step
/// relies on it, creates the new segment and starts the writer and compactor
/// threads. Returns the parts and the new incarnation's epoch, above
/// `epoch_floor` and every epoch the directory names, which the caller still
/// has to record durably.
pub(super) fn writable(
    fs: Arc<dyn FileSystem>,
    dir: &Path,
    options: &WalOptions,
    lock: LockGuard,
    epoch_floor: u64,
) -> Result<(Opened, u64)> {
    let replay = tracing::info_span!(
        "replay",
        records = Empty,
        last_lsn = Empty,
        segments = Empty,
        snapshot_lsn = Empty,
        duration_us = Empty
    );
    let Recovered { state, segments, last_lsn, records, torn, temporaries, stale, snapshot, duration } =
        replay.in_scope(|| recovery::recover(&*fs, dir))?;
    let snapshot_lsn = snapshot.as_ref().map(|s| s.header.lsn);
    replay
        .record("records", records)
        .record("last_lsn", last_lsn)
        .record("segments", segments.len())
        .record("duration_us", duration.as_micros() as u64);
    replay.record("snapshot_lsn", snapshot_lsn);
    let snapshot_file = snapshot.as_ref().map(|s| s.path.display().to_string());
    tracing::info!(records, last_lsn, snapshot = snapshot_file, ?duration, "replayed");
    metrics::replayed(duration);

    // Repairs, each durable before the next step relies on it.
    let _repair = tracing::info_span!(
        "open_repair",
        temporaries = temporaries.len(),
        stale = stale.len(),
        torn_tail = torn.is_some()
    )
    .entered();
    let mut dir_dirty = remove_all(&*fs, &temporaries, "leftover temporary file, never trusted")?;
    if !stale.is_empty() {
        // The snapshot that covers these must be durable before they go:
        // its rename may not have been (the compaction that wrote it can
        // have failed at the directory fsync).
        fs.sync_dir(dir).map_err(io_error("fsync directory", dir))?;
    }
    dir_dirty |= remove_all(&*fs, &stale, "covered by the snapshot (compaction interrupted)")?;
    let mut kept = &segments[..];
    if let Some((newest, older)) = segments.split_last() {
        if newest.scan.frames == 0 {
            // Creation interrupted, or created and never written: holds
            // no record, so removing it loses nothing.
            dir_dirty |= remove_all(&*fs, std::slice::from_ref(&newest.path), "segment holds no record")?;
            kept = older;
        } else if newest.file_len > newest.scan.valid_end {
            if let Some(t) = &torn {
                tracing::warn!(file = %t.file.display(), offset = t.offset, discarded = t.discarded,
                    "truncating a torn tail (a write in flight at a crash, never acknowledged)");
                metrics::torn_tail_truncated();
            }
            let mut file = fs.open(&newest.path, OpenMode::Existing).map_err(io_error("open", &newest.path))?;
            file.set_len(newest.scan.valid_end).map_err(io_error("truncate", &newest.path))?;
            file.sync_data().map_err(io_error("fdatasync", &newest.path))?;
        }
    }
    if dir_dirty {
        fs.sync_dir(dir).map_err(io_error("fsync directory", dir))?;
    }
    let previous_clean = state.clean();
    // Above every epoch handed out: the replayed one, the one in the
    // header of every segment that holds a record (a segment's first
    // record is its creator's `Open` record or comes after it), and the
    // one in the header of every segment a repair moved aside. A segment
    // holding no record is an open that crashed before its epoch was
    // durable: that epoch was never handed out (a repair never leaves
    // such a segment behind: it moves a segment cut at its first frame
    // aside whole).
    let headers = segments.iter().filter(|s| s.scan.frames > 0).filter_map(|s| s.scan.header.and_then(|h| h.epoch));
    let highest = headers.chain([recovery::backup_epochs(&*fs, dir)?, epoch_floor]).fold(state.epoch(), u64::max);
    let epoch = highest.saturating_add(1);
    let next_number = segments.last().map_or(1, |s| if kept.len() < segments.len() { s.number } else { s.number + 1 });
    let segment = create_segment(&*fs, dir, next_number, last_lsn + 1, epoch)?;
    let mut snapshot_stats = SnapshotStats {
        lsn: snapshot.as_ref().map(|s| s.header.lsn),
        bytes: snapshot.as_ref().map_or(0, |s| s.bytes),
        ..SnapshotStats::default()
    };
    // Every open starts a segment, so repeated opens would leave one file
    // each: past the bound, compact what was replayed. In the compactor's
    // order (the new segment exists, so every record up to `last_lsn` lies
    // in older ones; snapshot durable; only then the older segments go), so
    // a crash at any step reopens to the same state: a `.tmp` is removed, a
    // covered segment is skipped and removed, the empty new segment is
    // removed (DESIGN, "Snapshots and compaction").
    if options.compact_at_open_segments.is_some_and(|n| kept.len() as u64 >= n) {
        if snapshot_stats.lsn != Some(last_lsn) {
            snapshot_stats.bytes = install(&*fs, dir, &state.view(), last_lsn)?;
            snapshot_stats.lsn = Some(last_lsn);
        }
        let removed = retire(&*fs, dir, last_lsn, next_number)?;
        tracing::info!(segments = kept.len(), removed, lsn = last_lsn, "compacted at open");
        kept = &[];
    }
    let mut segment_bytes: BTreeMap<u64, u64> = kept.iter().map(|s| (s.number, s.scan.valid_end)).collect();
    segment_bytes.insert(next_number, SEGMENT_HEADER_LEN as u64);
    let replayed_log: u64 = segment_bytes.values().sum();
    let shared = Arc::new(Shared::new(state, segment_bytes, snapshot_stats));
    shared.counters.last_lsn.store(last_lsn, Relaxed);
    shared.log_since_snapshot.store(replayed_log, Relaxed);

    let (writer_tx, writer_rx) = mpsc::channel();
    let (compactor_tx, compactor_rx) = mpsc::channel();
    let writer = Writer::new(
        Arc::clone(&fs),
        dir.to_owned(),
        options.clone(),
        segment,
        last_lsn + 1,
        Arc::clone(&shared),
        Some(compactor_tx.clone()),
    );
    let core: Core = Arc::new(Mutex::new(Some(writer)));
    let thread_core = Arc::clone(&core);
    let compactor = Compactor {
        fs: Arc::clone(&fs),
        dir: dir.to_owned(),
        shared: Arc::clone(&shared),
        writer: writer_tx.clone(),
        interval: options.compact_interval,
    };
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new().name(name.into()).spawn(f).map_err(|e| Error::Io {
            op: "spawn thread",
            path: dir.to_owned(),
            source: e,
        })
    };
    // The writer's thread first: `WalLockStore::stop` joins it, then drops
    // the writer, before it joins the compactor.
    let threads = vec![
        spawn("lockwal-writer", Box::new(move || Writer::run(thread_core, writer_rx)))?,
        spawn(
            "lockwal-compactor",
            Box::new(move || {
                // Like RocksDB's low-priority background pool: a
                // compaction runs on CPU time the writer does not need.
                if !crate::io::lower_this_thread_priority() {
                    tracing::debug!("could not lower the compactor thread's priority");
                }
                compactor.run(compactor_rx)
            }),
        )?,
    ];
    let opened = Opened {
        shared,
        writer: Some(writer_tx),
        core: Some(core),
        compactor: Some(compactor_tx),
        threads,
        lock: Some(lock),
        report: OpenReport { previous_clean, replay_duration: duration, records_replayed: records, torn_tail: torn },
    };
    Ok((opened, epoch))
}

/// The parts of a read-only handle over what a read-only replay
/// `recovered`: the state and the sizes, no threads, no lock.
pub(super) fn read_only(recovered: Recovered) -> Opened {
    let segment_bytes = recovered.segments.iter().map(|s| (s.number, s.scan.valid_end)).collect();
    let snapshot_stats = SnapshotStats {
        lsn: recovered.snapshot.as_ref().map(|s| s.header.lsn),
        bytes: recovered.snapshot.as_ref().map_or(0, |s| s.bytes),
        ..SnapshotStats::default()
    };
    let previous_clean = recovered.state.clean();
    let shared = Arc::new(Shared::new(recovered.state, segment_bytes, snapshot_stats));
    shared.counters.last_lsn.store(recovered.last_lsn, Relaxed);
    Opened {
        shared,
        writer: None,
        core: None,
        compactor: None,
        threads: Vec::new(),
        lock: None,
        report: OpenReport {
            previous_clean,
            replay_duration: recovered.duration,
            records_replayed: recovered.records,
            torn_tail: recovered.torn,
        },
    }
}
