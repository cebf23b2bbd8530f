//! The writer: it owns the active segment and commits requests in groups —
//! one `write` and one `fdatasync` for everything queued, then every request
//! of the group is acknowledged. Its thread commits what is queued; a write
//! alone in flight may lock it and commit itself as a group of one on its
//! caller's thread (`WalLockStore::commit_alone`). Either way one group at
//! a time, under the writer's lock.
//!
//! A group is committed in three steps:
//! 1. learn each request's outcome without publishing it: a group whose
//!    every request has an outcome no state can change (puts only, or
//!    invalid input: `Command::fixed_outcome`) takes that; a group of puts
//!    and checked grants is judged under the read lock (`State::predict`);
//!    otherwise, under the state's write lock, apply each request with an
//!    undo log and roll everything back (readers must not see a write before
//!    it is durable). A
//!    request that fails is answered with its error and never logged;
//! 2. encode the successful commands as one frame, write it, fdatasync;
//! 3. apply them for real (the state machine is deterministic and only the
//!    holder of the writer's lock mutates, so the outcomes are the ones
//!    found in step 1) and
//!    acknowledge.
//!
//! A failed write or sync poisons the store: the group's callers get the I/O
//! error, later writers get `Poisoned`, the state keeps only what was
//! acknowledged, and nothing is written again until the store is reopened.

use super::format::{
    SEGMENT_HEADER_LEN, SegmentHeader, append_frame, array_header_len, encode_command, frame_len, segment_name,
    write_array_header,
};
// `Answer` is re-exported for `wal::mod`, which names it `writer::Answer`.
use super::options::{SyncMode, WalOptions};
pub(crate) use super::shared::Answer;
use super::shared::{CompactMsg, Msg, Reply, Shared, SnapshotPoint, answer};
use super::wait::{PollClock, PollGate, Polled};
use crate::error::{Error, Result, io_error};
use crate::io::{FileSystem, OpenMode, StoreFile};
use crate::metrics;
use crate::op::Outcome;
use crate::state::{Command, Undo};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;
use tracing::field::Empty;

/// Most requests in one group.
const MAX_GROUP_REQUESTS: usize = 4096;
/// A group stops growing once its frame passes this many bytes.
const MAX_GROUP_BYTES: usize = 4 << 20;

/// A random salt for a new segment (the standard library's randomly keyed
/// hasher is the source of randomness).
fn random_salt() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// How long the writer polls for the next request before it parks.
const POLL_BEFORE_PARKING: Duration = Duration::from_micros(50);

/// Waits for the next message. A serial caller sends its next request a few
/// microseconds after its acknowledgement; polling (and yielding the CPU)
/// for a short while first saves the futex wake-up of a parked thread on
/// that path (figures: docs/decisions/0008-writer-polls-before-parking.md),
/// unless `gate` says polling has not been paying (`wait`;
/// docs/decisions/0042-adaptive-writer-wait.md).
fn next_message(rx: &mpsc::Receiver<Msg>, gate: &PollGate) -> Option<Msg> {
    if gate.should_poll() {
        let mut clock = PollClock::start(POLL_BEFORE_PARKING);
        let polled = loop {
            match rx.try_recv() {
                Ok(msg) => {
                    gate.record(Polled::Found);
                    return Some(msg);
                }
                Err(mpsc::TryRecvError::Disconnected) => return None,
                Err(mpsc::TryRecvError::Empty) => std::thread::yield_now(),
            }
            if let Some(polled) = clock.tick() {
                break polled;
            }
        };
        gate.record(polled);
    }
    rx.recv().ok()
}

/// The active segment.
pub(crate) struct Segment {
    pub file: Box<dyn StoreFile>,
    pub path: PathBuf,
    pub header: SegmentHeader,
    /// Where the next frame goes.
    pub offset: u64,
    /// The file holds written zeros (or frames) up to here.
    pub zeroed_until: u64,
}

/// How far ahead of the frames a segment is zero-filled at a time.
///
/// An fdatasync that must also persist a newly allocated block or a new file
/// size costs a journal commit; overwriting blocks already written does not.
/// Writing zeros a mebibyte at a time pays that commit once per mebibyte
/// instead of once per 4 KiB block. A sparse file pre-sized with `set_len`
/// does not help: its blocks are allocated on first write (figures:
/// docs/decisions/0004-zero-filled-segment-tail.md).
const ZERO_AHEAD: u64 = 1 << 20;

/// Creates segment `number` starting at `first_lsn`, created by the
/// incarnation of `epoch`: header written and synced, and its directory
/// entry synced.
pub(crate) fn create_segment(
    fs: &dyn FileSystem,
    dir: &Path,
    number: u64,
    first_lsn: u64,
    epoch: u64,
) -> Result<Segment> {
    let path = dir.join(segment_name(number));
    let header = SegmentHeader::new(number, random_salt(), first_lsn, epoch);
    let mut file = fs.open(&path, OpenMode::CreateNew).map_err(io_error("create", &path))?;
    file.write_at(0, &header.encode()).map_err(io_error("write", &path))?;
    file.sync_data().map_err(io_error("fdatasync", &path))?;
    fs.sync_dir(dir).map_err(io_error("fsync directory", dir))?;
    tracing::debug!(segment = number, first_lsn, "segment created");
    let start = SEGMENT_HEADER_LEN as u64;
    Ok(Segment { file, path, header, offset: start, zeroed_until: start })
}

/// The writer's state (behind [`Core`]'s lock).
pub(crate) struct Writer {
    pub fs: Arc<dyn FileSystem>,
    pub dir: PathBuf,
    pub options: WalOptions,
    pub segment: Segment,
    pub next_lsn: u64,
    pub shared: Arc<Shared>,
    /// Where to ask for an automatic compaction.
    pub compactor: Option<mpsc::Sender<CompactMsg>>,
    buf: Vec<u8>,
    /// A `CleanShutdown` was committed: every later write is refused.
    shut_down_cleanly: bool,
}

/// The writer, locked by whoever commits a group: its thread, or a lone
/// caller (`WalLockStore::commit_alone`). `None` once its thread stopped.
pub(crate) type Core = Arc<Mutex<Option<Writer>>>;

impl Writer {
    pub(crate) fn new(
        fs: Arc<dyn FileSystem>,
        dir: PathBuf,
        options: WalOptions,
        segment: Segment,
        next_lsn: u64,
        shared: Arc<Shared>,
        compactor: Option<mpsc::Sender<CompactMsg>>,
    ) -> Self {
        Self {
            fs,
            dir,
            options,
            segment,
            next_lsn,
            shared,
            compactor,
            buf: Vec::with_capacity(64 << 10),
            shut_down_cleanly: false,
        }
    }

    /// Serves requests until told to stop or every sender is gone, locking
    /// the writer for each group (a lone caller may lock it between two
    /// groups to commit its own write), then drops the writer: its segment
    /// file and its sender to the compactor go with this thread.
    pub(crate) fn run(core: Core, rx: mpsc::Receiver<Msg>) {
        let gate = PollGate::default();
        let mut next = next_message(&rx, &gate);
        while let Some(first) = next.take() {
            let mut guard = core.lock().unwrap_or_else(|e| e.into_inner());
            let Some(this) = guard.as_mut() else { break };
            let mut group = Vec::new();
            let mut control = None;
            match first {
                Msg::Write(c, r) => group.push((c, r)),
                other => control = Some(other),
            }
            // Gather every write queued behind the first; a control message
            // ends the group and is handled after it.
            while control.is_none() && group.len() < MAX_GROUP_REQUESTS {
                match rx.try_recv() {
                    Ok(Msg::Write(c, r)) => group.push((c, r)),
                    Ok(other) => control = Some(other),
                    Err(_) => break,
                }
            }
            if !group.is_empty() {
                let requests = group.len();
                this.commit_group(group);
                this.shared.queued.fetch_sub(requests, Relaxed);
                this.maybe_request_compaction();
            }
            match control {
                Some(Msg::Snapshot(reply)) => {
                    let _ = reply.send(this.snapshot_point());
                }
                Some(Msg::Shutdown) => break,
                Some(Msg::Write(..)) => unreachable!("writes never become control messages"),
                None => {}
            }
            drop(guard);
            next = next_message(&rx, &gate);
        }
        if let Some(this) = core.lock().unwrap_or_else(|e| e.into_inner()).take() {
            tracing::debug!(dir = %this.dir.display(), "writer stopped");
        }
    }

    /// Rotates (so that every record up to the returned LSN lies in older
    /// segments) and copies the state: the one pause compaction causes.
    fn snapshot_point(&mut self) -> Result<SnapshotPoint> {
        let _pause = metrics::compaction_pause();
        if let Some(cause) = self.shared.poisoned() {
            return Err(Error::Poisoned { cause });
        }
        let lsn = self.next_lsn - 1;
        if self.segment.offset > SEGMENT_HEADER_LEN as u64
            && let Err(e) = self.rotate(self.next_lsn)
        {
            self.shared.poison(e.to_string());
            return Err(e);
        }
        let view = self.shared.state.read().unwrap_or_else(|e| e.into_inner()).view();
        self.shared.log_since_snapshot.store(0, Relaxed);
        Ok(SnapshotPoint { lsn, view, first_kept_segment: self.segment.header.number })
    }

    /// Asks for an automatic compaction once the log written since the last
    /// snapshot passes both thresholds.
    pub(crate) fn maybe_request_compaction(&self) {
        let (Some(compactor), Some(threshold)) = (&self.compactor, self.options.compact_after_bytes) else {
            return;
        };
        let since = self.shared.log_since_snapshot.load(Relaxed);
        let snapshot_bytes = self.shared.snapshot.lock().unwrap_or_else(|e| e.into_inner()).bytes;
        let by_size = since as f64 > self.options.compact_size_multiple * snapshot_bytes as f64;
        if since > threshold && by_size && !self.shared.compaction_requested.swap(true, Relaxed) {
            let _ = compactor.send(CompactMsg::Auto);
        }
    }

    /// Commits `requests` as one group and answers each; returns how many
    /// were committed or refused by the state they met (what
    /// `stats().requests` counts).
    pub(crate) fn commit_group(&mut self, mut requests: Vec<(Command, Reply)>) -> u64 {
        let span = tracing::debug_span!(
            "group_commit",
            requests = requests.len(),
            first_lsn = self.next_lsn,
            logged = Empty,
            last_lsn = Empty,
            segment = Empty
        )
        .entered();
        if let Some(cause) = self.shared.poisoned() {
            for (cmd, reply) in requests {
                answer(reply, cmd, Err(Error::Poisoned { cause: cause.clone() }));
            }
            return 0;
        }
        // Nothing is logged after the clean-shutdown marker: a write queued
        // behind it (racing `close`, or sent after a cancelled `close`) is
        // refused, so the marker stays the incarnation's last record.
        if self.shut_down_cleanly || requests.iter().any(|(cmd, _)| matches!(cmd, Command::CleanShutdown)) {
            let mut kept = Vec::with_capacity(requests.len());
            for (cmd, reply) in requests {
                if self.shut_down_cleanly {
                    answer(reply, cmd, Err(Error::Closed));
                    continue;
                }
                self.shut_down_cleanly = matches!(cmd, Command::CleanShutdown);
                kept.push((cmd, reply));
            }
            requests = kept;
            if requests.is_empty() {
                return 0;
            }
        }
        // Step 1: find each request's outcome without publishing it. A group
        // of puts (the common grant) needs no state for it; a group of puts
        // and checked grants needs only reads of it; otherwise apply the
        // group to the state and roll it back.
        let fixed: Option<Vec<Result<Vec<Outcome>>>> = requests.iter().map(|(cmd, _)| cmd.fixed_outcome()).collect();
        let fixed = fixed.or_else(|| {
            let state = self.shared.state.read().unwrap_or_else(|e| e.into_inner());
            state.predict(requests.iter().map(|(cmd, _)| cmd))
        });
        let verdicts: Vec<Result<Vec<Outcome>>> = fixed.unwrap_or_else(|| {
            let mut state = self.shared.state.write().unwrap_or_else(|e| e.into_inner());
            let mut undo = Undo::recording();
            let verdicts = requests.iter().map(|(cmd, _)| state.apply_undoable(cmd, &mut undo)).collect();
            state.rollback(undo);
            verdicts
        });
        let accepted: Vec<&Command> =
            requests.iter().zip(&verdicts).filter(|(_, v)| v.is_ok()).map(|((cmd, _), _)| cmd).collect();
        // Step 2: make them durable.
        if !accepted.is_empty()
            && let Err(e) = self.append(&accepted)
        {
            self.shared.poison(e.to_string());
            let cause = e.to_string();
            let mut first_error = Some(e);
            for ((cmd, reply), verdict) in requests.into_iter().zip(verdicts) {
                let result = match verdict {
                    Err(own) => Err(own),
                    Ok(_) => Err(first_error.take().unwrap_or_else(|| Error::Poisoned { cause: cause.clone() })),
                };
                answer(reply, cmd, result);
            }
            return 0;
        }
        span.record("logged", accepted.len())
            .record("last_lsn", self.next_lsn - 1)
            .record("segment", self.segment.header.number);
        metrics::group_committed(accepted.len());
        // Step 3: publish and acknowledge.
        let mut answers = Vec::with_capacity(requests.len());
        {
            let mut state = self.shared.state.write().unwrap_or_else(|e| e.into_inner());
            for ((cmd, reply), verdict) in requests.into_iter().zip(verdicts) {
                let result = match verdict {
                    Ok(expected) => {
                        let applied = state.apply(&cmd);
                        debug_assert_eq!(applied.as_ref().ok(), Some(&expected), "replay of a verdict diverged");
                        applied
                    }
                    Err(e) => Err(e),
                };
                answers.push((reply, cmd, result));
            }
        }
        let counted = answers.len() as u64;
        self.shared.counters.requests.fetch_add(counted, Relaxed);
        self.shared.publish_gauges();
        for (reply, cmd, result) in answers {
            answer(reply, cmd, result);
        }
        counted
    }

    /// Makes `commands` durable: encoded one after another, cut into frames
    /// of at most [`MAX_GROUP_BYTES`] (one command may be larger), each frame
    /// written and synced before the next is written, so that at most one
    /// write is ever in flight (the torn-tail rule relies on it).
    fn append(&mut self, commands: &[&Command]) -> Result<()> {
        let mut encoded = Vec::new();
        let mut ends = Vec::with_capacity(commands.len());
        for command in commands {
            encode_command(&mut encoded, &command.logged());
            ends.push(encoded.len());
        }
        let (mut from, mut start) = (0usize, 0usize);
        while from < ends.len() {
            let mut to = from + 1;
            while to < ends.len() && ends[to] - start <= MAX_GROUP_BYTES {
                to += 1;
            }
            self.write_frame(to - from, &encoded[start..ends[to - 1]])?;
            start = ends[to - 1];
            from = to;
        }
        Ok(())
    }

    /// Writes one frame whose payload is an array of `count` encoded
    /// commands, rotating first when it does not fit the active segment.
    fn write_frame(&mut self, count: usize, commands: &[u8]) -> Result<()> {
        let lsn = self.next_lsn;
        let payload_len = array_header_len(count) + commands.len();
        let needed = frame_len(payload_len) as u64;
        let empty = self.segment.offset == SEGMENT_HEADER_LEN as u64;
        if !empty && self.segment.offset + needed > self.options.segment_size {
            self.rotate(lsn)?;
        }
        self.buf.clear();
        append_frame(&mut self.buf, self.segment.header.salt, lsn, |out| {
            write_array_header(out, count);
            out.extend_from_slice(commands);
        });
        debug_assert_eq!(self.buf.len() as u64, needed);
        let zeroed = self.zero_ahead(self.segment.offset + needed);
        let path = &self.segment.path;
        let written = zeroed
            .and_then(|()| self.segment.file.write_at(self.segment.offset, &self.buf).map_err(io_error("write", path)));
        let synced = written.and_then(|()| {
            if self.options.sync == SyncMode::Always {
                self.shared.counters.fsyncs.fetch_add(1, Relaxed);
                let _timer = metrics::fdatasync();
                self.segment.file.sync_data().map_err(io_error("fdatasync", path))?;
            }
            Ok(())
        });
        if let Err(e) = synced {
            self.forget_unsynced_frame();
            return Err(e);
        }
        self.segment.offset += needed;
        self.next_lsn += 1;
        let counters = &self.shared.counters;
        counters.records.fetch_add(1, Relaxed);
        counters.bytes.fetch_add(needed, Relaxed);
        counters.last_lsn.store(lsn, Relaxed);
        metrics::frame_written(needed);
        self.shared.log_since_snapshot.fetch_add(needed, Relaxed);
        self.shared.add_segment_bytes(self.segment.header.number, needed);
        Ok(())
    }

    /// Makes sure the file holds written zeros up to at least `end`, writing
    /// the next [`ZERO_AHEAD`] bytes (not past the segment size) when it
    /// does not. The zeros become durable with the frame's fdatasync.
    fn zero_ahead(&mut self, end: u64) -> Result<()> {
        let segment = &mut self.segment;
        if end <= segment.zeroed_until {
            return Ok(());
        }
        let target = end.max((segment.zeroed_until + ZERO_AHEAD).min(self.options.segment_size));
        let zeros = vec![0u8; (target - segment.zeroed_until).min(ZERO_AHEAD) as usize];
        let mut at = segment.zeroed_until;
        while at < target {
            let n = (target - at).min(zeros.len() as u64) as usize;
            segment.file.write_at(at, &zeros[..n]).map_err(io_error("write", &segment.path))?;
            at += n as u64;
        }
        segment.zeroed_until = target;
        Ok(())
    }

    /// After a failed write or sync, cuts the frame that may not be on disk
    /// out of the file. Linux marks the pages of a failed fdatasync clean
    /// ("fsyncgate"): left alone, the frame would stay readable in the page
    /// cache, and a reopen in the same boot would replay it and append after
    /// it, over a hole on the disk (regression:
    /// `a_reopen_after_a_failed_fsync_does_not_build_on_data_that_never_reached_the_disk`).
    /// Truncating drops those cached bytes. Best effort: the store is
    /// poisoned either way, and if the disk refuses even this, the frame can
    /// at worst come back as a torn tail.
    fn forget_unsynced_frame(&mut self) {
        let (offset, path) = (self.segment.offset, &self.segment.path);
        self.segment.zeroed_until = offset;
        let cut = self.segment.file.set_len(offset);
        match cut {
            Ok(()) => tracing::warn!(file = %path.display(), offset, "cut the unsynced frame out of the segment"),
            Err(e) => tracing::error!(file = %path.display(), offset, error = %e, "could not cut the unsynced frame"),
        }
    }

    /// Starts the next segment at `first_lsn`. The current one needs no
    /// sync: every frame in it was synced when it was written.
    pub(crate) fn rotate(&mut self, first_lsn: u64) -> Result<()> {
        let number = self.segment.header.number + 1;
        let epoch = self.segment.header.epoch.expect("the writer creates format-2 segments only");
        let next = create_segment(&*self.fs, &self.dir, number, first_lsn, epoch)?;
        tracing::info!(segment = number, first_lsn, "rotated to a new segment");
        self.segment = next;
        self.shared.add_segment_bytes(number, SEGMENT_HEADER_LEN as u64);
        Ok(())
    }
}
