//! Metrics through the [`metrics`](https://docs.rs/metrics) facade (cargo
//! feature `metrics`, off by default).
//!
//! The embedding server installs a recorder (a Prometheus, StatsD or
//! OpenTelemetry exporter) and lockwal emits into it; [`names`] lists every
//! metric, and README ("Metrics") gives each one's kind, unit and meaning.
//! With the feature on, call [`describe`] once after installing the
//! recorder so that exporters show the units and help texts.
//!
//! Every call site in the store is one line naming a function of this
//! module. Without the feature those functions are empty and inlined, the
//! timers are zero-sized and read no clock, and the `metrics` crate is not
//! a dependency: nothing is compiled in. With it, each metric's key is a
//! `static` (no allocation per call), so one emission is a lookup in the
//! installed recorder.
//!
//! The gauges describe one store: a process that opens several WAL stores
//! sees the figures of whichever wrote last.

/// The name of every metric lockwal emits (stable: a rename is a breaking
/// change). Units are in the names (`_seconds`, `_bytes`) or are counts.
pub mod names {
    /// Counter, label `backend`: write transactions acknowledged to their
    /// callers (durable on the WAL, committed on PostgreSQL).
    pub const REQUESTS_ACKNOWLEDGED: &str = "lockwal_requests_acknowledged_total";
    /// Counter, labels `backend`, `reason`: write transactions refused (see
    /// README for the reasons).
    pub const WRITES_REFUSED: &str = "lockwal_writes_refused_total";
    /// Histogram, seconds, label `backend`: from a write's submission to its
    /// acknowledgement.
    pub const COMMIT_LATENCY: &str = "lockwal_commit_latency_seconds";
    /// Histogram, seconds, labels `backend`, `kind`: one read call.
    pub const QUERY_LATENCY: &str = "lockwal_query_latency_seconds";
    /// Counter: WAL frames written.
    pub const FRAMES_WRITTEN: &str = "lockwal_frames_written_total";
    /// Counter: `fdatasync` calls on frames.
    pub const FDATASYNCS: &str = "lockwal_fdatasyncs_total";
    /// Counter, bytes: frame bytes appended to the log.
    pub const BYTES_APPENDED: &str = "lockwal_bytes_appended_total";
    /// Counter: compactions completed.
    pub const COMPACTIONS: &str = "lockwal_compactions_total";
    /// Counter: torn tails truncated at open.
    pub const TORN_TAILS: &str = "lockwal_torn_tails_truncated_total";
    /// Counter: times the store became poisoned.
    pub const POISONINGS: &str = "lockwal_poisonings_total";
    /// Histogram, seconds: one `fdatasync` of a frame.
    pub const FDATASYNC_LATENCY: &str = "lockwal_fdatasync_latency_seconds";
    /// Histogram, commands: commands logged by one group commit.
    pub const GROUP_SIZE: &str = "lockwal_group_size";
    /// Histogram, seconds: snapshot load and log replay of a writable open.
    pub const REPLAY_TIME: &str = "lockwal_replay_seconds";
    /// Histogram, seconds: one compaction, start to end.
    pub const COMPACTION_DURATION: &str = "lockwal_compaction_seconds";
    /// Histogram, seconds: the writer's pause for a compaction (rotation and
    /// the copy-on-write view).
    pub const COMPACTION_PAUSE: &str = "lockwal_compaction_pause_seconds";
    /// Gauge: live locks.
    pub const LOCKS: &str = "lockwal_locks";
    /// Gauge: client records.
    pub const CLIENTS: &str = "lockwal_clients";
    /// Gauge: durable handles.
    pub const HANDLES: &str = "lockwal_handles";
    /// Gauge: records in every keyspace.
    pub const RECORDS: &str = "lockwal_records";
    /// Gauge, bytes: logical bytes of the live segments.
    pub const LOG_BYTES: &str = "lockwal_log_bytes";
    /// Gauge, bytes: size of the snapshot in force (0: none).
    pub const SNAPSHOT_BYTES: &str = "lockwal_snapshot_bytes";
    /// Gauge: the store's epoch.
    pub const EPOCH: &str = "lockwal_epoch";
    /// Histogram, seconds, label `kind` (`read`, `write`): one PostgreSQL
    /// statement, sent to answered.
    pub const PG_STATEMENT_LATENCY: &str = "lockwal_postgres_statement_seconds";
    /// Histogram, seconds: waiting for a pooled PostgreSQL connection.
    pub const PG_POOL_WAIT: &str = "lockwal_postgres_pool_wait_seconds";
    /// Histogram, round trips: statements one PostgreSQL write transaction
    /// sent, `BEGIN` and `COMMIT` included.
    pub const PG_ROUND_TRIPS: &str = "lockwal_postgres_round_trips";

    /// Every name above, for exporters and tests.
    pub const ALL: [&str; 25] = [
        REQUESTS_ACKNOWLEDGED,
        WRITES_REFUSED,
        COMMIT_LATENCY,
        QUERY_LATENCY,
        FRAMES_WRITTEN,
        FDATASYNCS,
        BYTES_APPENDED,
        COMPACTIONS,
        TORN_TAILS,
        POISONINGS,
        FDATASYNC_LATENCY,
        GROUP_SIZE,
        REPLAY_TIME,
        COMPACTION_DURATION,
        COMPACTION_PAUSE,
        LOCKS,
        CLIENTS,
        HANDLES,
        RECORDS,
        LOG_BYTES,
        SNAPSHOT_BYTES,
        EPOCH,
        PG_STATEMENT_LATENCY,
        PG_POOL_WAIT,
        PG_ROUND_TRIPS,
    ];
}

/// Which backend a shared metric is about (its `backend` label).
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) enum Backend {
    Wal,
    #[cfg(feature = "postgres")]
    Postgres,
}

/// What a read call was (the `kind` label of the query latency).
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
pub(crate) enum Query {
    GetLock,
    ListLocks,
    ForEachLock,
    TestLock,
    Count,
    GetClient,
    ListClients,
    GetHandle,
    GetHandleByFileId,
    GetHandleByCreateGuid,
    ListHandles,
    GetRecord,
    ScanRecords,
}

/// A PostgreSQL statement's `kind` label.
#[derive(Clone, Copy, Debug)]
#[cfg_attr(not(all(feature = "metrics", feature = "postgres")), allow(dead_code))]
pub(crate) enum Statement {
    Read,
    Write,
}

#[cfg(feature = "metrics")]
mod on;
#[cfg(feature = "metrics")]
pub use on::describe;
#[cfg(feature = "metrics")]
pub(crate) use on::*;

#[cfg(not(feature = "metrics"))]
mod off;
#[cfg(not(feature = "metrics"))]
pub(crate) use off::*;
