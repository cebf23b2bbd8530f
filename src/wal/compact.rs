//! Compaction: write the live state as a snapshot and retire the log it
//! covers, without stalling writers for longer than a copy of the slots.
//!
//! 1. The writer thread, between two groups, rotates to a new segment (so
//!    every record up to the snapshot's LSN lies in older segments) and
//!    copies the state's slots — `Arc` clones, no string bytes — under the
//!    read lock. That copy is the only pause writers see.
//! 2. This thread streams the copy to `snap-<lsn>.snap.tmp` in checksummed
//!    blocks, fdatasyncs it, renames it into place and fsyncs the directory.
//! 3. Only then it removes the segments and older snapshots the new one
//!    covers, oldest first, and fsyncs the directory again.
//!
//! A crash at any point leaves a store that opens with exactly the
//! acknowledged state: before the rename the temporary file is ignored (and
//! removed at open) and the log is complete; after it the snapshot is durable
//! and covered segments that are still there are skipped (and removed at
//! open).

use super::format::TMP_SUFFIX;
use super::recovery::list_segments;
use super::shared::{CompactMsg, CompactionReport, Msg, Shared};
use super::snapshot::{encode_snapshot, snapshot_name};
use crate::error::{Error, Result, io_error};
use crate::io::{FileSystem, OpenMode};
use crate::metrics;
use crate::state::StateView;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use tracing::field::Empty;

pub(crate) struct Compactor {
    pub fs: Arc<dyn FileSystem>,
    pub dir: PathBuf,
    pub shared: Arc<Shared>,
    pub writer: mpsc::Sender<Msg>,
    pub interval: Option<Duration>,
}

impl Compactor {
    /// Serves requests (and the periodic timer) until every sender is gone.
    pub(crate) fn run(self, rx: mpsc::Receiver<CompactMsg>) {
        let wait = self.interval.unwrap_or(Duration::from_secs(24 * 3600));
        loop {
            let reply = match rx.recv_timeout(wait) {
                Ok(CompactMsg::Now(reply)) => Some(reply),
                Ok(CompactMsg::Auto) => None,
                Err(mpsc::RecvTimeoutError::Timeout) if self.interval.is_some() => None,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let result = self.compact();
            self.shared.compaction_requested.store(false, Relaxed);
            match (&result, reply) {
                (_, Some(reply)) => {
                    let _ = reply.send(result);
                }
                (Err(e), None) => tracing::error!(error = %e, "automatic compaction failed; the log is intact"),
                (Ok(r), None) => tracing::info!(
                    lsn = r.snapshot_lsn,
                    reclaimed = r.bytes_before.saturating_sub(r.bytes_after),
                    "automatic compaction"
                ),
            }
        }
    }

    fn files_bytes(&self) -> Result<u64> {
        let listing = list_segments(&*self.fs, &self.dir)?;
        let mut total = 0;
        for (_, path) in listing.segments.iter().chain(&listing.snapshots) {
            match self.fs.open(path, OpenMode::Existing) {
                Ok(file) => total += file.len().map_err(io_error("stat", path))?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::Io { op: "open", path: path.clone(), source: e }),
            }
        }
        Ok(total)
    }

    fn compact(&self) -> Result<CompactionReport> {
        let started = Instant::now();
        let bytes_before = self.files_bytes()?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writer.send(Msg::Snapshot(reply)).map_err(|_| Error::Closed)?;
        let point = answer.blocking_recv().map_err(|_| Error::Closed)??;
        let span = tracing::info_span!(
            "compact",
            lsn = point.lsn,
            first_kept_segment = point.first_kept_segment,
            bytes_before,
            snapshot_bytes = Empty,
            files_removed = Empty,
            bytes_after = Empty,
            duration_us = Empty
        )
        .entered();
        let current = self.shared.snapshot.lock().unwrap_or_else(|e| e.into_inner()).lsn;
        let snapshot_bytes =
            if current == Some(point.lsn) { 0 } else { install(&*self.fs, &self.dir, &point.view, point.lsn)? };
        drop(point.view);
        let files_removed = retire(&*self.fs, &self.dir, point.lsn, point.first_kept_segment)?;
        self.shared.forget_segments_below(point.first_kept_segment);
        let bytes_after = self.files_bytes()?;
        let report = CompactionReport {
            snapshot_lsn: point.lsn,
            snapshot_bytes,
            bytes_before,
            bytes_after,
            files_removed,
            duration: started.elapsed(),
        };
        let mut stats = self.shared.snapshot.lock().unwrap_or_else(|e| e.into_inner());
        stats.lsn = Some(point.lsn);
        if snapshot_bytes > 0 {
            stats.bytes = snapshot_bytes;
        }
        stats.compactions += 1;
        stats.last_duration = report.duration;
        stats.bytes_reclaimed += bytes_before.saturating_sub(bytes_after);
        drop(stats);
        span.record("snapshot_bytes", snapshot_bytes)
            .record("files_removed", files_removed)
            .record("bytes_after", bytes_after)
            .record("duration_us", report.duration.as_micros() as u64);
        metrics::compacted(report.duration);
        self.shared.publish_gauges();
        Ok(report)
    }
}

/// Writes a snapshot of `view` as of `lsn` durably under its final name in
/// `dir` (temporary file, fdatasync, rename, directory fsync); returns its
/// size. Also what an open that compacts runs (`open::writable`).
pub(super) fn install(fs: &dyn FileSystem, dir: &Path, view: &StateView, lsn: u64) -> Result<u64> {
    let name = snapshot_name(lsn);
    let path = dir.join(&name);
    let tmp = dir.join(format!("{name}{TMP_SUFFIX}"));
    match fs.remove(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::Io { op: "remove", path: tmp, source: e }),
    }
    let mut file = fs.open(&tmp, OpenMode::CreateNew).map_err(io_error("create", &tmp))?;
    let (_, len) = encode_snapshot(view, lsn, |at, bytes| file.write_at(at, bytes)).map_err(io_error("write", &tmp))?;
    file.sync_data().map_err(io_error("fdatasync", &tmp))?;
    drop(file);
    fs.rename(&tmp, &path).map_err(io_error("rename", &tmp))?;
    fs.sync_dir(dir).map_err(io_error("fsync directory", dir))?;
    tracing::info!(file = %path.display(), bytes = len, locks = view.locks, "snapshot installed");
    Ok(len)
}

/// Removes the segments of `dir` numbered below `first_kept` and the
/// snapshots older than `lsn`, oldest first; then fsyncs the directory.
/// Returns how many files it removed. Run only once the snapshot of `lsn`
/// is durable.
pub(super) fn retire(fs: &dyn FileSystem, dir: &Path, lsn: u64, first_kept: u64) -> Result<u64> {
    let listing = list_segments(fs, dir)?;
    let doomed: Vec<PathBuf> = listing
        .segments
        .iter()
        .filter(|(n, _)| *n < first_kept)
        .chain(listing.snapshots.iter().filter(|(l, _)| *l < lsn))
        .map(|(_, p)| p.clone())
        .collect();
    for path in &doomed {
        fs.remove(path).map_err(io_error("remove", path))?;
    }
    if !doomed.is_empty() {
        fs.sync_dir(dir).map_err(io_error("fsync directory", dir))?;
    }
    Ok(doomed.len() as u64)
}
