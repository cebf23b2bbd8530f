//! The embedded write-ahead-log backend.
//!
//! Every grant and release is appended to a log of checksummed frames
//! (`format`), committed in groups by one writer thread (`writer`), and
//! replayed at open into the state machine (`recovery`, `scan`), which also
//! increments the epoch. Snapshots (`snapshot`) written by a compactor thread
//! (`compact`) bound the log and the replay time. See DESIGN.md for the byte
//! layouts and the recovery rules.
//!
//! This module is the public face: the [`WalLockStore`] handle and its
//! [`LockStore`] implementation, with everything public re-exported here.
//! The open path (replay, repairs, new segment, threads) is in `open`, the
//! options and their valid ranges in `options`, the counters of
//! [`WalLockStore::stats`] in `stats`.

mod compact;
pub mod format;
pub mod inspect;
mod legacy;
mod open;
mod options;
mod recovery;
pub mod scan;
mod shared;
pub mod snapshot;
mod stats;
mod wait;
mod writer;

pub use options::{
    MAX_COMPACT_SIZE_MULTIPLE, MAX_SEGMENT_SIZE, MIN_COMPACT_INTERVAL, MIN_SEGMENT_SIZE, SyncMode, WalOptions,
};
pub use recovery::TornTail;
pub use shared::CompactionReport;
pub use stats::WalStats;

use crate::error::{Error, Result};
use crate::io::{FileSystem, LockGuard, RealFs};
use crate::metrics::{self, Backend, Query};
use crate::model::{
    ClientKind, ClientQuery, ClientRecord, Conflicts, DurableHandle, FileId, Guid, HandleQuery, LockQuery,
    PersistedLock, Record, RecordScan, validate,
};
use crate::op::{Op, Outcome, validate_batch};
use crate::state::{Command, Locks, State};
use crate::store::LockStore;
use async_trait::async_trait;
use open::{OpenReport, Opened, create_dir_durably, take_lock};
use shared::{CompactMsg, Msg, Shared};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLockReadGuard, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;
use wait::{PollClock, Polled};

/// The durable, single-node [`LockStore`]: a write-ahead log in a directory.
///
/// ```no_run
/// use lockwal::wal::{WalLockStore, WalOptions};
/// use lockwal::LockStore;
/// # #[tokio::main] async fn main() -> lockwal::Result<()> {
/// let store = WalLockStore::open("/var/lib/myserver/locks", WalOptions::default()).await?;
/// if !store.previous_shutdown_was_clean().await? {
///     // run a grace period: clients reclaim, then store.end_grace()
/// }
/// store.close().await?;
/// # Ok(()) }
/// ```
pub struct WalLockStore {
    dir: PathBuf,
    shared: Arc<Shared>,
    writer: Mutex<Option<mpsc::Sender<Msg>>>,
    /// The writer itself, for a lone caller to commit on its own thread.
    core: Option<writer::Core>,
    compactor: Mutex<Option<mpsc::Sender<CompactMsg>>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The store's exclusive lock, released after both threads stopped.
    lock: Mutex<Option<LockGuard>>,
    closed: AtomicBool,
    /// `close` has begun: writes are refused from then on, even when that
    /// `close` is cancelled after its marker became durable.
    closing: AtomicBool,
    read_only: bool,
    opened: OpenReport,
}

impl WalLockStore {
    /// Opens (creating if needed) the store in `dir` on the real file system.
    /// A read-only open creates nothing: on a missing `dir` it fails with
    /// [`Error::NoSuchDirectory`].
    pub async fn open(dir: impl AsRef<Path>, options: WalOptions) -> Result<Self> {
        Self::open_with_fs(Arc::new(RealFs), dir, options).await
    }

    /// Opens the store in `dir` through `fs` (tests pass a simulated file
    /// system). Replays the snapshot and the log, repairs a torn tail, and
    /// durably records the new epoch before returning.
    pub async fn open_with_fs(fs: Arc<dyn FileSystem>, dir: impl AsRef<Path>, options: WalOptions) -> Result<Self> {
        let dir = dir.as_ref().to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(fs, dir, options))
            .await
            .map_err(|e| Error::Internal(format!("open task failed: {e}")))?
    }

    /// [`open`](Self::open) for callers outside an async runtime: blocks
    /// the calling thread until the store is open. (Its reads and writes are
    /// still async; a synchronous caller drives them with a runtime of its
    /// own, e.g. `tokio::runtime::Runtime::block_on`.)
    pub fn open_sync(dir: impl AsRef<Path>, options: WalOptions) -> Result<Self> {
        Self::open_blocking(Arc::new(RealFs), dir.as_ref().to_owned(), options)
    }

    /// [`open_with_fs`](Self::open_with_fs) for callers outside a runtime.
    pub fn open_blocking(fs: Arc<dyn FileSystem>, dir: PathBuf, options: WalOptions) -> Result<Self> {
        // Before anything on disk is touched, read-only or not.
        options.validate()?;
        if options.read_only {
            return Self::open_read_only(fs, dir);
        }
        create_dir_durably(&*fs, &dir)?;
        let lock = take_lock(&*fs, &dir)?;
        Self::open_locked(fs, dir, options, lock, 0)
    }

    /// Opens the store whose writer `lock` the caller took, as a new
    /// incarnation whose epoch is above `epoch_floor` as well as above every
    /// epoch the directory names (repair passes the epochs that the records
    /// it dropped named).
    pub(crate) fn open_locked(
        fs: Arc<dyn FileSystem>,
        dir: PathBuf,
        options: WalOptions,
        lock: LockGuard,
        epoch_floor: u64,
    ) -> Result<Self> {
        let span = tracing::info_span!("open", dir = %dir.display(), epoch = tracing::field::Empty).entered();
        let (opened, epoch) = open::writable(fs, &dir, &options, lock, epoch_floor)?;
        span.record("epoch", epoch);
        let previous_clean = opened.report.previous_clean;
        let store = Self::from_parts(dir, opened, false);
        store.submit_blocking(Command::Open { epoch })?;
        store.shared.publish_gauges();
        tracing::info!(epoch, previous_clean, "store open");
        Ok(store)
    }

    /// Replays without the lock and without changing anything. Files are
    /// copied, not mapped (a writer may truncate them), and a replay that
    /// fails while the directory's file names changed (a live writer
    /// rotated or compacted) is run again.
    fn open_read_only(fs: Arc<dyn FileSystem>, dir: PathBuf) -> Result<Self> {
        let fs = crate::io::CopyingReads(fs);
        let recovered = inspect::retry_while_changing(&fs, &dir, || recovery::recover(&fs, &dir))?;
        Ok(Self::from_parts(dir, open::read_only(recovered), true))
    }

    /// The handle over an open's parts.
    fn from_parts(dir: PathBuf, opened: Opened, read_only: bool) -> Self {
        let Opened { shared, writer, core, compactor, threads, lock, report } = opened;
        Self {
            dir,
            shared,
            writer: Mutex::new(writer),
            core,
            compactor: Mutex::new(compactor),
            threads: Mutex::new(threads),
            lock: Mutex::new(lock),
            closed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            read_only,
            opened: report,
        }
    }

    /// Every lock, as owned records, unsorted (see
    /// [`LockStore::for_each_lock`]), for a caller without a runtime: an
    /// iterator over the locks as they are now, which holds no lock on the
    /// store while it is read.
    pub fn read_locks(&self) -> Result<Locks> {
        Ok(self.read_state()?.locks())
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Every keyspace that holds records, with its number of records, in
    /// name order.
    pub fn record_spaces(&self) -> Vec<(String, u64)> {
        let state = self.shared.state.read().unwrap_or_else(|e| e.into_inner());
        state.record_spaces().map(|(name, n)| (name.to_owned(), n as u64)).collect()
    }

    /// Counters and facts about the store.
    pub fn stats(&self) -> WalStats {
        let (epoch, locks, clients, handles, keyspace_records) = {
            let state = self.shared.state.read().unwrap_or_else(|e| e.into_inner());
            let count = |n: usize| n as u64;
            (
                state.epoch(),
                count(state.lock_count()),
                count(state.client_count()),
                count(state.handle_count()),
                count(state.record_count()),
            )
        };
        let c = &self.shared.counters;
        let records = c.records.load(Relaxed);
        let (log_bytes, segments) = self.shared.log_size();
        let snapshot = self.shared.snapshot.lock().unwrap_or_else(|e| e.into_inner()).clone();
        WalStats {
            epoch,
            locks,
            clients,
            handles,
            keyspace_records,
            log_bytes,
            segments,
            last_lsn: c.last_lsn.load(Relaxed),
            records_appended: records,
            bytes_appended: c.bytes.load(Relaxed),
            fsyncs: c.fsyncs.load(Relaxed),
            requests: c.requests.load(Relaxed),
            requests_on_caller_thread: c.requests_on_caller_thread.load(Relaxed),
            mean_batch_size: if records == 0 { 0.0 } else { c.requests.load(Relaxed) as f64 / records as f64 },
            replay_duration: self.opened.replay_duration,
            records_replayed: self.opened.records_replayed,
            previous_shutdown_clean: self.opened.previous_clean,
            torn_tail: self.opened.torn_tail.clone(),
            poisoned: self.shared.poisoned().is_some(),
            snapshot_lsn: snapshot.lsn,
            snapshot_bytes: snapshot.bytes,
            compactions: snapshot.compactions,
            last_compaction_duration: snapshot.last_duration,
            bytes_reclaimed: snapshot.bytes_reclaimed,
        }
    }

    /// Writes a snapshot of the current state and retires the log it
    /// covers. Writers keep going meanwhile (they pause only while the
    /// state's slots are copied). One compaction runs at a time; a call
    /// while one runs waits for it and then runs its own.
    pub async fn compact(&self) -> Result<CompactionReport> {
        self.check_writable()?;
        let (reply, answer) = tokio::sync::oneshot::channel();
        let compactor = self.compactor.lock().unwrap_or_else(|e| e.into_inner()).clone().ok_or(Error::Closed)?;
        compactor.send(CompactMsg::Now(reply)).map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    /// [`LockStore::transaction`] without its metrics.
    async fn transaction_unmetered(&self, ops: Vec<Op>) -> Result<Vec<Outcome>> {
        validate_batch(&ops)?;
        self.check_writable()?;
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        self.submit(Command::Txn(ops)).await
    }

    fn check_writable(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly { store: self.dir.display().to_string() });
        }
        if self.closed.load(Relaxed) || self.closing.load(Relaxed) {
            return Err(Error::Closed);
        }
        if let Some(cause) = self.shared.poisoned() {
            return Err(Error::Poisoned { cause });
        }
        Ok(())
    }

    /// Queues `command` for the writer, after the handle's checks (or
    /// without them: close sends its marker after it began refusing writes).
    fn queue(&self, command: Command) -> Result<tokio::sync::oneshot::Receiver<writer::Answer>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).clone().ok_or(Error::Closed)?;
        self.shared.queued.fetch_add(1, Relaxed);
        if writer.send(Msg::Write(command, reply)).is_err() {
            self.shared.queued.fetch_sub(1, Relaxed);
            return Err(Error::Closed);
        }
        Ok(answer)
    }

    /// Commits `command` on this thread, as one group of one, when it is
    /// `alone` (the only write in flight, on a thread that may block for an
    /// `fdatasync`), the writer is idle and nothing is queued
    /// for it (so it cannot overtake a write sent before it, even one whose
    /// caller gave up); gives the command back otherwise. A lone write thus
    /// pays no hand-off to the writer thread and back (figures:
    /// docs/decisions/0054-lone-write-commits-on-its-caller.md).
    fn commit_alone(&self, alone: bool, command: Command) -> std::result::Result<Result<Vec<Outcome>>, Command> {
        let Some(core) = self.core.as_ref().filter(|_| alone) else { return Err(command) };
        let Ok(mut guard) = core.try_lock() else { return Err(command) };
        let Some(writer) =
            guard.as_mut().filter(|w| w.options.lone_writes_on_caller_thread && self.shared.queued.load(Relaxed) == 0)
        else {
            return Err(command);
        };
        let (reply, mut answer) = tokio::sync::oneshot::channel();
        // A panic here would otherwise unwind into the caller with the
        // segment half-written: the store is poisoned instead, as after a
        // failed write, and the caller gets the error.
        let committed =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| writer.commit_group(vec![(command, reply)])));
        match committed {
            Ok(counted) => {
                writer.maybe_request_compaction();
                self.shared.counters.requests_on_caller_thread.fetch_add(counted, Relaxed);
            }
            Err(panic) => {
                let what = panic.downcast_ref::<&str>().copied().or(panic.downcast_ref::<String>().map(String::as_str));
                let cause = format!("a write panicked while committing: {}", what.unwrap_or("(no message)"));
                self.shared.poison(cause.clone());
                return Ok(Err(Error::Poisoned { cause }));
            }
        }
        drop(guard);
        Ok(answer.try_recv().map_err(|_| Error::Closed).and_then(writer::Answer::into_result))
    }

    async fn submit(&self, command: Command) -> Result<Vec<Outcome>> {
        let in_flight = InFlight::enter(&self.shared.in_flight);
        self.check_writable()?;
        let command = match self.commit_alone(in_flight.alone && may_block_this_thread(), command) {
            Ok(result) => return result,
            Err(command) => command,
        };
        let mut answer = self.queue(command)?;
        let gate = &self.shared.answer_gate;
        if in_flight.alone && gate.should_poll() {
            // A lone caller polls for its answer, yielding between polls,
            // instead of parking its runtime thread at once: the answer
            // comes after one fdatasync, sooner than a parked worker thread
            // is woken and scheduled again. It stops, and later lone callers
            // park at once for a while, when polling does not pay (see
            // `wait` and DESIGN, "Writing").
            let mut clock = PollClock::start(POLL_FOR_ANSWER);
            let polled = loop {
                match answer.try_recv() {
                    Ok(answer) => {
                        gate.record(Polled::Found);
                        return answer.into_result();
                    }
                    Err(tokio::sync::oneshot::error::TryRecvError::Closed) => return Err(Error::Closed),
                    Err(tokio::sync::oneshot::error::TryRecvError::Empty) => tokio::task::yield_now().await,
                }
                if let Some(polled) = clock.tick() {
                    break polled;
                }
            };
            gate.record(polled);
        }
        answer.await.map_err(|_| Error::Closed)?.into_result()
    }

    fn submit_blocking(&self, command: Command) -> Result<Vec<Outcome>> {
        let in_flight = InFlight::enter(&self.shared.in_flight);
        self.check_writable()?;
        let command = match self.commit_alone(in_flight.alone, command) {
            Ok(result) => return result,
            Err(command) => command,
        };
        self.queue(command)?.blocking_recv().map_err(|_| Error::Closed)?.into_result()
    }

    fn read_state(&self) -> Result<RwLockReadGuard<'_, State>> {
        if self.closed.load(Relaxed) {
            return Err(Error::Closed);
        }
        Ok(self.shared.state.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Stops the compactor and the writer (after it answered everything
    /// queued), then releases the directory lock.
    fn stop(&self) {
        drop(self.compactor.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(writer) = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = writer.send(Msg::Shutdown);
        }
        let mut threads = self.threads.lock().unwrap_or_else(|e| e.into_inner());
        let mut threads = threads.drain(..);
        // The writer's thread is the first (`open::writable`).
        if let Some(writer) = threads.next() {
            let _ = writer.join();
        }
        // The writer's thread drops the writer (its segment file, its sender
        // to the compactor, which stops once every sender is gone) when it
        // stops; after a panic it could not.
        if let Some(core) = &self.core {
            drop(core.lock().unwrap_or_else(|e| e.into_inner()).take());
        }
        for thread in threads {
            let _ = thread.join();
        }
        drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
}

/// Whether a lone write may commit on this thread, blocking it for an
/// `fdatasync`: not on a current-thread runtime, which has no other thread
/// to run its tasks meanwhile (its lone writes go to the writer thread).
fn may_block_this_thread() -> bool {
    tokio::runtime::Handle::try_current()
        .map_or(true, |runtime| runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread)
}

/// How long a caller whose write is the only one in flight polls for its
/// answer before it awaits it the ordinary way (like RocksDB's adaptive
/// yield for writers waiting on a write group), when its gate lets it poll.
const POLL_FOR_ANSWER: Duration = Duration::from_micros(200);

/// Counts a write from its submission until its caller has the answer (or
/// gave up on it: the count drops with the future).
struct InFlight<'a> {
    count: &'a std::sync::atomic::AtomicUsize,
    /// No other write was in flight when this one entered.
    alone: bool,
}

impl<'a> InFlight<'a> {
    fn enter(count: &'a std::sync::atomic::AtomicUsize) -> Self {
        let alone = count.fetch_add(1, Relaxed) == 0;
        Self { count, alone }
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Relaxed);
    }
}

impl Drop for WalLockStore {
    /// Dropping without [`close`](LockStore::close) stops the threads and
    /// releases the lock but does not record a clean shutdown: a drop is
    /// indistinguishable from a crash (it may be an unwinding panic), and
    /// claiming a clean shutdown would skip the grace period clients need.
    fn drop(&mut self) {
        self.stop();
    }
}

#[async_trait]
impl LockStore for WalLockStore {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    async fn transaction(&self, ops: Vec<Op>) -> Result<Vec<Outcome>> {
        let started = metrics::Timer::start();
        let result = self.transaction_unmetered(ops).await;
        metrics::write_finished(Backend::Wal, started, &result);
        result
    }

    async fn get_lock(&self, id: &str) -> Result<PersistedLock> {
        let _timer = metrics::query(Backend::Wal, Query::GetLock);
        self.read_state()?.get(id).ok_or_else(|| Error::lock_not_found(id))
    }

    async fn test_lock(&self, candidate: &PersistedLock) -> Result<Conflicts> {
        let _timer = metrics::query(Backend::Wal, Query::TestLock);
        validate::lock(candidate)?;
        Ok(self.read_state()?.test_lock(candidate))
    }

    async fn list_locks(&self, query: &LockQuery) -> Result<Vec<PersistedLock>> {
        let _timer = metrics::query(Backend::Wal, Query::ListLocks);
        Ok(self.read_state()?.list(query))
    }

    async fn for_each_lock(&self, visit: &mut (dyn FnMut(PersistedLock) + Send)) -> Result<u64> {
        let _timer = metrics::query(Backend::Wal, Query::ForEachLock);
        let locks = self.read_locks()?;
        let count = locks.len() as u64;
        locks.for_each(visit);
        Ok(count)
    }

    async fn count(&self) -> Result<u64> {
        let _timer = metrics::query(Backend::Wal, Query::Count);
        Ok(self.read_state()?.lock_count() as u64)
    }

    async fn get_client(&self, kind: ClientKind, client_id: &str) -> Result<ClientRecord> {
        let _timer = metrics::query(Backend::Wal, Query::GetClient);
        self.read_state()?.client(kind, client_id).ok_or_else(|| Error::client_not_found(kind, client_id))
    }

    async fn list_clients(&self, query: &ClientQuery) -> Result<Vec<ClientRecord>> {
        let _timer = metrics::query(Backend::Wal, Query::ListClients);
        Ok(self.read_state()?.list_clients(query))
    }

    async fn get_handle(&self, id: &str) -> Result<DurableHandle> {
        let _timer = metrics::query(Backend::Wal, Query::GetHandle);
        validate::id("id", id)?;
        self.read_state()?.handle(id).ok_or_else(|| Error::handle_not_found(id))
    }

    async fn get_handle_by_file_id(&self, file_id: &FileId) -> Result<DurableHandle> {
        let _timer = metrics::query(Backend::Wal, Query::GetHandleByFileId);
        self.read_state()?.handle_by_file_id(file_id).ok_or_else(|| Error::handle_not_found_by_file_id(file_id))
    }

    async fn get_handle_by_create_guid(&self, create_guid: &Guid) -> Result<DurableHandle> {
        let _timer = metrics::query(Backend::Wal, Query::GetHandleByCreateGuid);
        let state = self.read_state()?;
        state.handle_by_create_guid(create_guid).ok_or_else(|| Error::handle_not_found_by_create_guid(create_guid))
    }

    async fn list_handles(&self, query: &HandleQuery) -> Result<Vec<DurableHandle>> {
        let _timer = metrics::query(Backend::Wal, Query::ListHandles);
        Ok(self.read_state()?.list_handles(query))
    }

    async fn get_record(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let _timer = metrics::query(Backend::Wal, Query::GetRecord);
        validate::space(space)?;
        validate::record_key(key)?;
        Ok(self.read_state()?.record(space, key))
    }

    async fn scan_records(&self, space: &str, scan: &RecordScan) -> Result<Vec<Record>> {
        let _timer = metrics::query(Backend::Wal, Query::ScanRecords);
        validate::scan(space, scan)?;
        Ok(self.read_state()?.scan_records(space, scan))
    }

    async fn epoch(&self) -> Result<u64> {
        Ok(self.read_state()?.epoch())
    }

    async fn previous_shutdown_was_clean(&self) -> Result<bool> {
        drop(self.read_state()?);
        Ok(self.opened.previous_clean)
    }

    async fn close(&self) -> Result<()> {
        if self.closed.load(Relaxed) {
            return Ok(());
        }
        if !self.read_only {
            // The marker is sent past `check_writable`, which refuses once
            // `closing` is set; a second close after a cancelled one sends
            // it again, and the writer logs nothing after the first.
            self.closing.store(true, Relaxed);
            let answer = self.queue(Command::CleanShutdown)?;
            match answer.await.map_err(|_| Error::Closed)?.into_result() {
                Ok(_) | Err(Error::Closed) => {}
                Err(e) => return Err(e),
            }
        }
        self.closed.store(true, Relaxed);
        self.stop();
        tracing::info!(dir = %self.dir.display(), "store closed cleanly");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample;

    /// A write leaves the in-flight count once its caller has the answer,
    /// got an error, or dropped the future; otherwise later lone callers
    /// would never poll (or every caller would).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_in_flight_count_returns_to_zero() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(WalLockStore::open(dir.path(), WalOptions::default()).await.unwrap());
        let count = || store.shared.in_flight.load(Relaxed);
        let lock = |i: u32| sample::byte_range(&format!("l{i}"), "s", "f", "o", "c");
        store.put_lock(lock(0)).await.unwrap();
        assert_eq!(count(), 0, "after a lone write");
        let tasks: Vec<_> = (1..=16)
            .map(|i| {
                let store = Arc::clone(&store);
                tokio::spawn(async move { store.put_lock(lock(i)).await })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(count(), 0, "after concurrent writes");
        assert!(store.delete_lock("absent").await.is_err());
        assert_eq!(count(), 0, "after a refused write");
        // Poll a write once and drop it while it waits for its answer: with
        // the writer held here, it cannot commit on this thread and is queued.
        let held = store.core.as_ref().unwrap().lock().unwrap();
        let mut write = Box::pin(store.put_lock(lock(100)));
        assert!(poll_once(write.as_mut()).is_pending(), "a queued write waits for its answer");
        assert_eq!(count(), 1, "while a write waits for its answer");
        drop(write);
        drop(held);
        assert_eq!(count(), 0, "after a dropped write");
        store.close().await.unwrap();
    }

    fn poll_once<F: std::future::Future>(future: std::pin::Pin<&mut F>) -> std::task::Poll<F::Output> {
        future.poll(&mut std::task::Context::from_waker(std::task::Waker::noop()))
    }

    /// A write alone in flight commits on its caller's thread when the
    /// writer is idle; one that finds the writer busy or a write queued goes
    /// to the writer thread.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_write_commits_on_its_callers_thread_unless_the_writer_is_busy() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(WalLockStore::open(dir.path(), WalOptions::default()).await.unwrap());
        let here = || store.stats().requests_on_caller_thread;
        let lock = |i: u32| sample::byte_range(&format!("l{i}"), "s", "f", "o", "c");
        let before = here();
        for i in 0..10 {
            store.put_lock(lock(i)).await.unwrap();
        }
        assert_eq!(here() - before, 10, "serial writes on an idle writer");
        // With a write counted as queued, a lone write must not go first.
        store.shared.queued.fetch_add(1, Relaxed);
        let queued = tokio::spawn({
            let store = Arc::clone(&store);
            async move { store.put_lock(lock(10)).await }
        });
        queued.await.unwrap().unwrap();
        store.shared.queued.fetch_sub(1, Relaxed);
        assert_eq!(here() - before, 10, "a write behind a queued one went to the writer thread");
        // With the writer held, a lone write waits for it.
        let held = store.core.as_ref().unwrap().lock().unwrap();
        let mut write = Box::pin(store.put_lock(lock(11)));
        assert!(poll_once(write.as_mut()).is_pending(), "a write that finds the writer busy is queued");
        drop(held);
        write.await.unwrap();
        assert_eq!(here() - before, 10);
        assert_eq!(store.stats().locks, 12);
        store.close().await.unwrap();
        // Turned off, every write goes to the writer thread.
        let options = WalOptions { lone_writes_on_caller_thread: false, ..WalOptions::default() };
        let store = WalLockStore::open(dir.path(), options).await.unwrap();
        let before = store.stats().requests_on_caller_thread;
        for i in 20..25 {
            store.put_lock(lock(i)).await.unwrap();
        }
        assert_eq!(store.stats().requests_on_caller_thread, before);
        assert_eq!(store.stats().locks, 17);
        store.close().await.unwrap();
    }

    /// Regression: a lone write must not overtake a write queued before it
    /// whose caller gave up. Here the caller drops its put after queueing
    /// it, then deletes the lock: committed on this thread ahead of the put,
    /// the delete would find no lock and the put would then bring the lock
    /// back after an acknowledged release. Without the queued count, this
    /// fails in most rounds (the delete takes the writer's lock before the
    /// writer thread wakes).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_lone_write_does_not_overtake_a_queued_write_whose_caller_gave_up() {
        let dir = tempfile::tempdir().unwrap();
        let store = WalLockStore::open(dir.path(), WalOptions::default()).await.unwrap();
        for round in 0..50 {
            let lock = sample::byte_range(&format!("l{round}"), "s", "f", "o", "c");
            let held = store.core.as_ref().unwrap().lock().unwrap();
            let mut put = Box::pin(store.put_lock(lock.clone()));
            assert!(poll_once(put.as_mut()).is_pending(), "the put is queued behind the held writer");
            drop(put);
            drop(held);
            store.delete_lock(&lock.id).await.unwrap_or_else(|e| panic!("round {round}: delete before the put: {e}"));
            store.put_lock(sample::byte_range("barrier", "s", "f", "o", "c")).await.unwrap();
            assert!(store.get_lock(&lock.id).await.is_err(), "round {round}: the released lock came back");
        }
        store.close().await.unwrap();
    }
}
