//! [`WalStats`], the counters and facts that
//! [`WalLockStore::stats`](super::WalLockStore::stats) reports: sizes, the
//! writer's appends and syncs, what the open replayed and found, and the
//! compactor's work. Plain data.

use super::recovery::TornTail;
use std::time::Duration;

/// What [`WalLockStore::stats`](super::WalLockStore::stats) reports.
///
/// Non-exhaustive: a later version may add counters, so code outside the
/// crate reads the fields and never builds one.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct WalStats {
    /// The current epoch.
    pub epoch: u64,
    /// Live locks.
    pub locks: u64,
    /// Client records.
    pub clients: u64,
    /// Durable handles.
    pub handles: u64,
    /// Records, in every keyspace.
    pub keyspace_records: u64,
    /// Logical bytes (headers and frames) of the live segments.
    pub log_bytes: u64,
    /// Live segment files.
    pub segments: u64,
    /// LSN of the last record.
    pub last_lsn: u64,
    /// Frames appended since open.
    pub records_appended: u64,
    /// Bytes appended since open.
    pub bytes_appended: u64,
    /// fdatasync calls on frames since open.
    pub fsyncs: u64,
    /// Commands committed or refused by the writer since open, the store's own included
    /// (this open's epoch record, a clean-shutdown record): each write
    /// acknowledged, or refused by the state it met (a delete of an absent
    /// lock). Writes refused before they were queued (bad input, a closed
    /// or read-only store) are not counted.
    pub requests: u64,
    /// Of those, committed by their caller on its own thread: a write alone
    /// in flight that found the writer idle (DESIGN, "Writing").
    pub requests_on_caller_thread: u64,
    /// Requests acknowledged per frame written, since open.
    pub mean_batch_size: f64,
    /// How long replay (snapshot load and log) took at open.
    pub replay_duration: Duration,
    /// Log records replayed at open (after the snapshot).
    pub records_replayed: u64,
    /// Whether the previous incarnation closed cleanly.
    pub previous_shutdown_clean: bool,
    /// The torn tail found at open, if any.
    pub torn_tail: Option<TornTail>,
    /// Whether the store refuses writes after a failed write or sync.
    pub poisoned: bool,
    /// LSN of the snapshot in force, if any.
    pub snapshot_lsn: Option<u64>,
    /// Size of that snapshot.
    pub snapshot_bytes: u64,
    /// Compactions run since open.
    pub compactions: u64,
    /// Duration of the last compaction.
    pub last_compaction_duration: Duration,
    /// Bytes of files removed by compactions since open, net of snapshots
    /// written.
    pub bytes_reclaimed: u64,
}
