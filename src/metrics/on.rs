//! The emitting half of `crate::metrics` (feature `metrics`): each key a
//! `static`, each emission one registration lookup in the installed
//! recorder.

use super::names::*;
use super::{Backend, Query, Statement};
use crate::error::Error;
use crate::state::State;
use ::metrics::{Key, Label, Level, Metadata, Unit};
use std::time::{Duration, Instant};

/// Whether metrics are compiled in (a constant, so code that only gathers
/// figures for them is removed without the feature).
pub(crate) const ENABLED: bool = true;

static META: Metadata<'static> = Metadata::new(module_path!(), Level::INFO, Some(module_path!()));

/// A `&'static Key` for a name and literal labels, built at compile time.
macro_rules! key {
    ($name:expr) => {{
        static KEY: Key = Key::from_static_name($name);
        &KEY
    }};
    ($name:expr, $($k:literal => $v:literal),+) => {{
        static LABELS: [Label; [$($k),+].len()] = [$(Label::from_static_parts($k, $v)),+];
        static KEY: Key = Key::from_static_parts($name, &LABELS);
        &KEY
    }};
}

fn counter(key: &'static Key, n: u64) {
    ::metrics::with_recorder(|r| r.register_counter(key, &META).increment(n));
}

fn gauge(key: &'static Key, value: f64) {
    ::metrics::with_recorder(|r| r.register_gauge(key, &META).set(value));
}

fn histogram(key: &'static Key, value: f64) {
    ::metrics::with_recorder(|r| r.register_histogram(key, &META).record(value));
}

/// Describes every metric (unit and help text) to the installed recorder.
/// Call it once, after installing the recorder; emitting works without it.
pub fn describe() {
    use ::metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_counter!(REQUESTS_ACKNOWLEDGED, Unit::Count, "write transactions acknowledged to their callers");
    describe_counter!(WRITES_REFUSED, Unit::Count, "write transactions refused, by reason");
    describe_histogram!(COMMIT_LATENCY, Unit::Seconds, "a write from submission to acknowledgement");
    describe_histogram!(QUERY_LATENCY, Unit::Seconds, "one read call, by kind");
    describe_counter!(FRAMES_WRITTEN, Unit::Count, "WAL frames written");
    describe_counter!(FDATASYNCS, Unit::Count, "fdatasync calls on WAL frames");
    describe_counter!(BYTES_APPENDED, Unit::Bytes, "frame bytes appended to the WAL");
    describe_counter!(COMPACTIONS, Unit::Count, "compactions completed");
    describe_counter!(TORN_TAILS, Unit::Count, "torn tails truncated at open");
    describe_counter!(POISONINGS, Unit::Count, "times the store was poisoned by a failed write or fdatasync");
    describe_histogram!(FDATASYNC_LATENCY, Unit::Seconds, "one fdatasync of a WAL frame");
    describe_histogram!(GROUP_SIZE, Unit::Count, "commands logged by one group commit");
    describe_histogram!(REPLAY_TIME, Unit::Seconds, "snapshot load and log replay of a writable open");
    describe_histogram!(COMPACTION_DURATION, Unit::Seconds, "one compaction, start to end");
    describe_histogram!(COMPACTION_PAUSE, Unit::Seconds, "the writer's pause for a compaction");
    describe_gauge!(LOCKS, Unit::Count, "live locks");
    describe_gauge!(CLIENTS, Unit::Count, "client records");
    describe_gauge!(HANDLES, Unit::Count, "durable handles");
    describe_gauge!(RECORDS, Unit::Count, "records in every keyspace");
    describe_gauge!(LOG_BYTES, Unit::Bytes, "logical bytes of the live WAL segments");
    describe_gauge!(SNAPSHOT_BYTES, Unit::Bytes, "size of the snapshot in force");
    describe_gauge!(EPOCH, Unit::Count, "the store's epoch");
    describe_histogram!(PG_STATEMENT_LATENCY, Unit::Seconds, "one PostgreSQL statement, by kind");
    describe_histogram!(PG_POOL_WAIT, Unit::Seconds, "waiting for a pooled PostgreSQL connection");
    describe_histogram!(PG_ROUND_TRIPS, Unit::Count, "statements of one PostgreSQL write transaction");
}

/// A start instant (the off half reads no clock).
#[derive(Clone, Copy)]
pub(crate) struct Timer(Instant);

impl Timer {
    #[inline]
    pub(crate) fn start() -> Self {
        Self(Instant::now())
    }

    fn seconds(self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }
}

/// A write transaction ended with `result`, `started` at its submission.
pub(crate) fn write_finished<T>(backend: Backend, started: Timer, result: &crate::Result<T>) {
    match (backend, result) {
        (Backend::Wal, Ok(_)) => {
            counter(key!(REQUESTS_ACKNOWLEDGED, "backend" => "wal"), 1);
            histogram(key!(COMMIT_LATENCY, "backend" => "wal"), started.seconds());
        }
        #[cfg(feature = "postgres")]
        (Backend::Postgres, Ok(_)) => {
            counter(key!(REQUESTS_ACKNOWLEDGED, "backend" => "postgres"), 1);
            histogram(key!(COMMIT_LATENCY, "backend" => "postgres"), started.seconds());
        }
        (backend, Err(e)) => counter(refused_key(backend, e), 1),
    }
}

/// The `reason` label of a refused write (every error a write can return
/// has one; a new variant must be given one here).
pub(crate) fn refusal_reason(e: &Error) -> &'static str {
    match e {
        Error::Closed => "closed",
        Error::Poisoned { .. } => "poisoned",
        Error::Fenced { .. } => "fenced",
        Error::ReadOnly { .. } => "read_only",
        Error::HandleConflict { .. } | Error::ConditionFailed { .. } | Error::Conflict { .. } => "conflict",
        Error::NotFound { .. } => "not_found",
        Error::InvalidInput { .. } => "invalid_input",
        Error::ReclaimRefused { .. } => "reclaim_refused",
        Error::InGrace { .. } => "in_grace",
        Error::Io { .. }
        | Error::Locked { .. }
        | Error::NoSuchDirectory { .. }
        | Error::Corruption { .. }
        | Error::UnsupportedVersion { .. }
        | Error::RepairRefused { .. }
        | Error::Database(_)
        | Error::SchemaVersion { .. }
        | Error::NodeLive { .. }
        | Error::Postgres { .. }
        | Error::Internal(_) => "failed",
    }
}

fn refused_key(backend: Backend, e: &Error) -> &'static Key {
    macro_rules! by_reason {
        ($backend:literal) => {
            match refusal_reason(e) {
                "closed" => key!(WRITES_REFUSED, "backend" => $backend, "reason" => "closed"),
                "poisoned" => key!(WRITES_REFUSED, "backend" => $backend, "reason" => "poisoned"),
                "fenced" => key!(WRITES_REFUSED, "backend" => $backend, "reason" => "fenced"),
                "read_only" => key!(WRITES_REFUSED, "backend" => $backend, "reason" => "read_only"),
                "conflict" => key!(WRITES_REFUSED, "backend" => $backend, "reason" => "conflict"),
                "not_found" => key!(WRITES_REFUSED, "backend" => $backend, "reason" => "not_found"),
                "invalid_input" => key!(WRITES_REFUSED, "backend" => $backend, "reason" => "invalid_input"),
                "reclaim_refused" => key!(WRITES_REFUSED, "backend" => $backend, "reason" => "reclaim_refused"),
                "in_grace" => key!(WRITES_REFUSED, "backend" => $backend, "reason" => "in_grace"),
                _ => key!(WRITES_REFUSED, "backend" => $backend, "reason" => "failed"),
            }
        };
    }
    match backend {
        Backend::Wal => by_reason!("wal"),
        #[cfg(feature = "postgres")]
        Backend::Postgres => by_reason!("postgres"),
    }
}

/// Records a read's latency when dropped.
pub(crate) struct QueryTimer(&'static Key, Instant);

impl Drop for QueryTimer {
    fn drop(&mut self) {
        histogram(self.0, self.1.elapsed().as_secs_f64());
    }
}

/// Times one read call of `kind` on `backend` (until the guard drops).
pub(crate) fn query(backend: Backend, kind: Query) -> QueryTimer {
    macro_rules! by_kind {
        ($backend:literal) => {
            match kind {
                Query::GetLock => key!(QUERY_LATENCY, "backend" => $backend, "kind" => "get_lock"),
                Query::ListLocks => key!(QUERY_LATENCY, "backend" => $backend, "kind" => "list_locks"),
                Query::ForEachLock => key!(QUERY_LATENCY, "backend" => $backend, "kind" => "for_each_lock"),
                Query::TestLock => key!(QUERY_LATENCY, "backend" => $backend, "kind" => "test_lock"),
                Query::Count => key!(QUERY_LATENCY, "backend" => $backend, "kind" => "count"),
                Query::GetClient => key!(QUERY_LATENCY, "backend" => $backend, "kind" => "get_client"),
                Query::ListClients => key!(QUERY_LATENCY, "backend" => $backend, "kind" => "list_clients"),
                Query::GetHandle => key!(QUERY_LATENCY, "backend" => $backend, "kind" => "get_handle"),
                Query::GetHandleByFileId => {
                    key!(QUERY_LATENCY, "backend" => $backend, "kind" => "get_handle_by_file_id")
                }
                Query::GetHandleByCreateGuid => {
                    key!(QUERY_LATENCY, "backend" => $backend, "kind" => "get_handle_by_create_guid")
                }
                Query::ListHandles => key!(QUERY_LATENCY, "backend" => $backend, "kind" => "list_handles"),
                Query::GetRecord => key!(QUERY_LATENCY, "backend" => $backend, "kind" => "get_record"),
                Query::ScanRecords => key!(QUERY_LATENCY, "backend" => $backend, "kind" => "scan_records"),
            }
        };
    }
    let key = match backend {
        Backend::Wal => by_kind!("wal"),
        #[cfg(feature = "postgres")]
        Backend::Postgres => by_kind!("postgres"),
    };
    QueryTimer(key, Instant::now())
}

/// Counts one fdatasync of a frame and records its latency when dropped.
pub(crate) struct FdatasyncTimer(Instant);

impl Drop for FdatasyncTimer {
    fn drop(&mut self) {
        counter(key!(FDATASYNCS), 1);
        histogram(key!(FDATASYNC_LATENCY), self.0.elapsed().as_secs_f64());
    }
}

/// Times one fdatasync of a frame (until the guard drops).
pub(crate) fn fdatasync() -> FdatasyncTimer {
    FdatasyncTimer(Instant::now())
}

/// One frame of `bytes` was written (and synced, under `SyncMode::Always`).
pub(crate) fn frame_written(bytes: u64) {
    counter(key!(FRAMES_WRITTEN), 1);
    counter(key!(BYTES_APPENDED), bytes);
}

/// A group commit logged `commands` commands.
pub(crate) fn group_committed(commands: usize) {
    if commands > 0 {
        histogram(key!(GROUP_SIZE), commands as f64);
    }
}

/// The state's sizes and epoch, as gauges.
pub(crate) fn state_gauges(state: &State) {
    gauge(key!(LOCKS), state.lock_count() as f64);
    gauge(key!(CLIENTS), state.client_count() as f64);
    gauge(key!(HANDLES), state.handle_count() as f64);
    gauge(key!(RECORDS), state.record_count() as f64);
    gauge(key!(EPOCH), state.epoch() as f64);
}

/// The live segments' logical size (`bytes` runs only with the feature).
pub(crate) fn log_bytes(bytes: impl FnOnce() -> u64) {
    gauge(key!(LOG_BYTES), bytes() as f64);
}

/// The size of the snapshot in force.
pub(crate) fn snapshot_bytes(bytes: u64) {
    gauge(key!(SNAPSHOT_BYTES), bytes as f64);
}

/// A compaction completed in `duration`.
pub(crate) fn compacted(duration: Duration) {
    counter(key!(COMPACTIONS), 1);
    histogram(key!(COMPACTION_DURATION), duration.as_secs_f64());
}

/// Records the writer's compaction pause when dropped.
pub(crate) struct PauseTimer(Instant);

impl Drop for PauseTimer {
    fn drop(&mut self) {
        histogram(key!(COMPACTION_PAUSE), self.0.elapsed().as_secs_f64());
    }
}

/// Times the writer's pause for a compaction (until the guard drops).
pub(crate) fn compaction_pause() -> PauseTimer {
    PauseTimer(Instant::now())
}

/// Open truncated a torn tail.
pub(crate) fn torn_tail_truncated() {
    counter(key!(TORN_TAILS), 1);
}

/// The store became poisoned.
pub(crate) fn poisoned() {
    counter(key!(POISONINGS), 1);
}

/// A writable open replayed the store in `duration`.
pub(crate) fn replayed(duration: Duration) {
    histogram(key!(REPLAY_TIME), duration.as_secs_f64());
}

/// Records a PostgreSQL statement's latency when dropped.
pub(crate) struct StatementTimer(&'static Key, Instant);

impl Drop for StatementTimer {
    fn drop(&mut self) {
        histogram(self.0, self.1.elapsed().as_secs_f64());
    }
}

/// Times one PostgreSQL statement (until the guard drops).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn pg_statement(kind: Statement) -> StatementTimer {
    let key = match kind {
        Statement::Read => key!(PG_STATEMENT_LATENCY, "kind" => "read"),
        Statement::Write => key!(PG_STATEMENT_LATENCY, "kind" => "write"),
    };
    StatementTimer(key, Instant::now())
}

/// Records the wait for a pooled connection when dropped.
pub(crate) struct PoolWaitTimer(Instant);

impl Drop for PoolWaitTimer {
    fn drop(&mut self) {
        histogram(key!(PG_POOL_WAIT), self.0.elapsed().as_secs_f64());
    }
}

/// Times the wait for a pooled PostgreSQL connection (until the guard drops).
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn pg_pool_wait() -> PoolWaitTimer {
    PoolWaitTimer(Instant::now())
}

/// Counts the round trips of one PostgreSQL transaction.
#[derive(Default)]
pub(crate) struct RoundTrips(std::sync::atomic::AtomicU64);

impl RoundTrips {
    /// One more statement sent: counted, and timed until the guard drops.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn statement(&self) -> StatementTimer {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        pg_statement(Statement::Write)
    }

    /// The transaction ended after its statements and `more` others.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn record(&self, more: u64) {
        pg_round_trips(self.0.load(std::sync::atomic::Ordering::Relaxed) + more);
    }
}

/// One PostgreSQL write transaction took `n` round trips.
#[cfg_attr(not(feature = "postgres"), allow(dead_code))]
pub(crate) fn pg_round_trips(n: u64) {
    histogram(key!(PG_ROUND_TRIPS), n as f64);
}
