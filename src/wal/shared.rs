//! What the writer thread, the compactor thread and the store's handle
//! share: the messages to the writer and to the compactor, the answer to a
//! request, the state and statistics behind one lock, and what a
//! compaction hands over and reports. The writer and the compactor both
//! name this module; it names neither, so they do not depend on each
//! other.

use super::wait::PollGate;
use crate::error::Result;
use crate::metrics;
use crate::op::Outcome;
use crate::state::{Command, State, StateView};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Mutex, RwLock};
use std::time::Duration;

/// A reply channel for one request.
pub(crate) type Reply = tokio::sync::oneshot::Sender<Answer>;

/// The writer's answer to one request. It hands the command back so that
/// the caller's thread, which allocated it, also frees it: freed on the
/// writer thread, its strings went back to the caller's allocator arena
/// under that arena's lock, contended by the callers themselves (the
/// writer's profile at 64 concurrent callers showed the drops and the lock
/// waits; figures: docs/decisions/0007-caller-frees-its-command.md).
pub(crate) struct Answer {
    result: Result<Vec<Outcome>>,
    spent: Command,
}

impl Answer {
    /// The result, after freeing the command on this (the caller's) thread.
    pub(crate) fn into_result(self) -> Result<Vec<Outcome>> {
        drop(self.spent);
        self.result
    }
}

pub(crate) fn answer(reply: Reply, spent: Command, result: Result<Vec<Outcome>>) {
    let _ = reply.send(Answer { result, spent });
}

/// Messages to the writer thread.
pub(crate) enum Msg {
    /// Commit a command and answer.
    Write(Command, Reply),
    /// Rotate and hand over a point-in-time copy of the state (compaction).
    Snapshot(tokio::sync::oneshot::Sender<Result<SnapshotPoint>>),
    /// Finish what is queued before this and stop.
    Shutdown,
}

/// Counters shared with readers of `stats()`.
#[derive(Default)]
pub(crate) struct Counters {
    pub records: AtomicU64,
    pub bytes: AtomicU64,
    pub fsyncs: AtomicU64,
    pub requests: AtomicU64,
    pub requests_on_caller_thread: AtomicU64,
    pub last_lsn: AtomicU64,
}

/// Facts about snapshots and compactions, for `stats()`.
#[derive(Debug, Default, Clone)]
pub(crate) struct SnapshotStats {
    pub lsn: Option<u64>,
    pub bytes: u64,
    pub compactions: u64,
    pub last_duration: Duration,
    pub bytes_reclaimed: u64,
}

/// What the writer thread, the compactor and the store's handle share.
pub(crate) struct Shared {
    /// The acknowledged state.
    pub state: RwLock<State>,
    /// Why the store is poisoned, once it is.
    pub poison: Mutex<Option<String>>,
    /// Statistics.
    pub counters: Counters,
    /// Logical bytes (header and frames) of each live segment, by number.
    pub segment_bytes: Mutex<BTreeMap<u64, u64>>,
    /// Snapshot facts.
    pub snapshot: Mutex<SnapshotStats>,
    /// Log bytes written since the last snapshot, including those replayed
    /// at open (so that a store reopened often still compacts).
    pub log_since_snapshot: AtomicU64,
    /// An automatic compaction is queued or running.
    pub compaction_requested: AtomicBool,
    /// Writes submitted and not yet answered.
    pub in_flight: std::sync::atomic::AtomicUsize,
    /// Writes sent to the writer thread and not yet committed (counted
    /// before the send, uncounted under the writer's lock after the commit).
    pub queued: std::sync::atomic::AtomicUsize,
    /// Whether a lone caller polls for its answer.
    pub answer_gate: PollGate,
}

impl Shared {
    pub(crate) fn new(state: State, segment_bytes: BTreeMap<u64, u64>, snapshot: SnapshotStats) -> Self {
        Self {
            state: RwLock::new(state),
            poison: Mutex::new(None),
            counters: Counters::default(),
            segment_bytes: Mutex::new(segment_bytes),
            snapshot: Mutex::new(snapshot),
            log_since_snapshot: AtomicU64::new(0),
            compaction_requested: AtomicBool::new(false),
            in_flight: std::sync::atomic::AtomicUsize::new(0),
            queued: std::sync::atomic::AtomicUsize::new(0),
            answer_gate: PollGate::default(),
        }
    }

    pub(crate) fn add_segment_bytes(&self, number: u64, bytes: u64) {
        *self.segment_bytes.lock().unwrap_or_else(|e| e.into_inner()).entry(number).or_default() += bytes;
    }

    pub(crate) fn forget_segments_below(&self, first_kept: u64) {
        self.segment_bytes.lock().unwrap_or_else(|e| e.into_inner()).retain(|&n, _| n >= first_kept);
    }

    /// (logical log bytes, number of segments).
    pub(crate) fn log_size(&self) -> (u64, u64) {
        let map = self.segment_bytes.lock().unwrap_or_else(|e| e.into_inner());
        (map.values().sum(), map.len() as u64)
    }

    pub(crate) fn poisoned(&self) -> Option<String> {
        self.poison.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn poison(&self, cause: String) {
        tracing::error!(%cause, "store poisoned: refusing writes until reopened");
        let mut poison = self.poison.lock().unwrap_or_else(|e| e.into_inner());
        if poison.is_none() {
            metrics::poisoned();
        }
        poison.get_or_insert(cause);
    }

    /// Sets the metrics gauges (sizes, epoch, log and snapshot bytes); does
    /// nothing without the `metrics` feature.
    pub(crate) fn publish_gauges(&self) {
        if !metrics::ENABLED {
            return;
        }
        metrics::state_gauges(&self.state.read().unwrap_or_else(|e| e.into_inner()));
        metrics::log_bytes(|| self.log_size().0);
        metrics::snapshot_bytes(self.snapshot.lock().unwrap_or_else(|e| e.into_inner()).bytes);
    }
}

/// What one compaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompactionReport {
    /// LSN of the snapshot now in force.
    pub snapshot_lsn: u64,
    /// Size of the snapshot written (0 when nothing had changed).
    pub snapshot_bytes: u64,
    /// Bytes of log and snapshot files before and after.
    pub bytes_before: u64,
    /// Bytes of log and snapshot files after.
    pub bytes_after: u64,
    /// Segment and snapshot files removed.
    pub files_removed: u64,
    /// How long it took.
    pub duration: Duration,
}

/// What the writer hands over for a snapshot.
pub(crate) struct SnapshotPoint {
    pub lsn: u64,
    pub view: StateView,
    /// Segments numbered below this hold only records up to `lsn`.
    pub first_kept_segment: u64,
}

/// Requests to the compactor thread.
pub(crate) enum CompactMsg {
    /// Compact now and answer.
    Now(tokio::sync::oneshot::Sender<Result<CompactionReport>>),
    /// The log has grown past the threshold: compact when free.
    Auto,
}
