//! The embedded write-ahead-log backend.
//!
//! Every grant and release is appended to a log of checksummed frames
//! (`format`), committed in groups by one writer thread (`writer`), and
//! replayed at open into the state machine (`recovery`, `scan`), which also
//! increments the epoch. See DESIGN.md for the byte layout and the recovery
//! rules.

pub mod format;
mod recovery;
pub mod scan;
mod writer;

pub use recovery::TornTail;

use crate::error::{Error, Result, io_error};
use crate::io::{FileSystem, RealFs};
use crate::model::{ClientRecord, LockQuery, PersistedLock};
use crate::op::{Op, Outcome, validate_batch};
use crate::state::{Command, State};
use crate::store::LockStore;
use async_trait::async_trait;
use format::{LOCK_FILE, SEGMENT_HEADER_LEN};
use recovery::Recovered;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, RwLock, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;
use writer::{Msg, Shared, Writer, create_segment};

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// After `fdatasync` of the frame holding it: survives power loss.
    #[default]
    Always,
    /// After `write` only: survives a crash of the process, not of the
    /// machine. For tests and caches; not crash-safe.
    Never,
}

/// How to open a [`WalLockStore`].
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// When writes are acknowledged.
    pub sync: SyncMode,
    /// Size segments are pre-sized to; a segment is rotated when the next
    /// frame would not fit. Default 64 MiB.
    pub segment_size: u64,
    /// Open without the writer lock and without changing any byte: no epoch
    /// bump, no truncation; writes fail with `ReadOnly`. A torn tail is
    /// ignored, corruption reported as usual.
    pub read_only: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self { sync: SyncMode::Always, segment_size: 64 << 20, read_only: false }
    }
}

/// Smallest segment size accepted.
pub const MIN_SEGMENT_SIZE: u64 = 4096;

/// What [`WalLockStore::stats`] reports.
#[derive(Debug, Clone, PartialEq)]
pub struct WalStats {
    /// The current epoch.
    pub epoch: u64,
    /// Live locks.
    pub locks: u64,
    /// Client records.
    pub clients: u64,
    /// Bytes of segment files on disk at open plus bytes appended since.
    pub log_bytes: u64,
    /// Segment files.
    pub segments: u64,
    /// LSN of the last record.
    pub last_lsn: u64,
    /// Frames appended since open.
    pub records_appended: u64,
    /// Bytes appended since open.
    pub bytes_appended: u64,
    /// fdatasync calls on frames since open.
    pub fsyncs: u64,
    /// Requests acknowledged per frame written, since open.
    pub mean_batch_size: f64,
    /// How long replay took at open.
    pub replay_duration: Duration,
    /// Records replayed at open.
    pub records_replayed: u64,
    /// Whether the previous incarnation closed cleanly.
    pub previous_shutdown_clean: bool,
    /// The torn tail found at open, if any.
    pub torn_tail: Option<TornTail>,
    /// Whether the store refuses writes after a failed write or sync.
    pub poisoned: bool,
}

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
    tx: Mutex<Option<mpsc::Sender<Msg>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    closed: std::sync::atomic::AtomicBool,
    read_only: bool,
    opened: OpenReport,
}

#[derive(Debug, Clone)]
struct OpenReport {
    previous_clean: bool,
    replay_duration: Duration,
    records_replayed: u64,
    torn_tail: Option<TornTail>,
    log_bytes_at_open: u64,
    segments_at_open: u64,
}

impl WalLockStore {
    /// Opens (creating if needed) the store in `dir` on the real file system.
    pub async fn open(dir: impl AsRef<Path>, options: WalOptions) -> Result<Self> {
        Self::open_with_fs(Arc::new(RealFs), dir, options).await
    }

    /// Opens the store in `dir` through `fs` (tests pass a simulated file
    /// system). Replays the log, truncates a torn tail, and durably records
    /// the new epoch before returning.
    pub async fn open_with_fs(fs: Arc<dyn FileSystem>, dir: impl AsRef<Path>, options: WalOptions) -> Result<Self> {
        let dir = dir.as_ref().to_owned();
        tokio::task::spawn_blocking(move || Self::open_blocking(fs, dir, options))
            .await
            .map_err(|e| Error::Internal(format!("open task failed: {e}")))?
    }

    /// [`open_with_fs`](Self::open_with_fs) for callers outside a runtime.
    pub fn open_blocking(fs: Arc<dyn FileSystem>, dir: PathBuf, options: WalOptions) -> Result<Self> {
        if options.segment_size < MIN_SEGMENT_SIZE {
            return Err(Error::InvalidInput {
                field: "segment_size",
                reason: format!("{} is below the minimum {MIN_SEGMENT_SIZE}", options.segment_size),
            });
        }
        if options.read_only {
            return Self::open_read_only(&*fs, dir, options);
        }
        fs.create_dir_all(&dir).map_err(io_error("create directory", &dir))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = fs.try_lock(&lock_path).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => Error::Locked { dir: dir.clone() },
            _ => Error::Io { op: "lock", path: lock_path.clone(), source: e },
        })?;
        let _span = tracing::info_span!("open", dir = %dir.display()).entered();
        let recovered = recovery::recover(&*fs, &dir, State::new(), 0)?;
        let Recovered { state, segments, last_lsn, records, torn, temporaries, duration } = recovered;
        tracing::info!(records, last_lsn, ?duration, "replayed the log");

        // Repairs, each durable before the next step relies on it.
        for tmp in &temporaries {
            tracing::warn!(file = %tmp.display(), "removing a leftover temporary file");
            fs.remove(tmp).map_err(io_error("remove", tmp))?;
        }
        let mut dir_dirty = !temporaries.is_empty();
        let mut next_number = segments.last().map_or(1, |s| s.number + 1);
        if let Some(newest) = segments.last() {
            if newest.scan.frames == 0 {
                // Creation interrupted, or created and never written: holds
                // no record, so removing it loses nothing.
                tracing::warn!(file = %newest.path.display(), "removing a segment that holds no record");
                fs.remove(&newest.path).map_err(io_error("remove", &newest.path))?;
                dir_dirty = true;
                next_number = newest.number;
            } else if newest.file_len > newest.scan.valid_end {
                if let Some(t) = &torn {
                    tracing::warn!(file = %t.file.display(), offset = t.offset, discarded = t.discarded,
                        "truncating a torn tail (a write in flight at a crash, never acknowledged)");
                }
                let mut file =
                    fs.open(&newest.path, crate::io::OpenMode::Existing).map_err(io_error("open", &newest.path))?;
                file.set_len(newest.scan.valid_end).map_err(io_error("truncate", &newest.path))?;
                file.sync_data().map_err(io_error("fdatasync", &newest.path))?;
            }
        }
        if dir_dirty {
            fs.sync_dir(&dir).map_err(io_error("fsync directory", &dir))?;
        }
        let previous_clean = state.clean();
        let epoch = state.epoch() + 1;
        let segment = create_segment(&*fs, &dir, next_number, last_lsn + 1, options.segment_size)?;
        let log_bytes: u64 = segments.iter().filter(|s| s.scan.frames > 0).map(|s| s.scan.valid_end).sum::<u64>()
            + SEGMENT_HEADER_LEN as u64;
        let segments_at_open = segments.iter().filter(|s| s.scan.frames > 0).count() as u64 + 1;
        let shared =
            Arc::new(Shared { state: RwLock::new(state), poison: Mutex::new(None), counters: Default::default() });
        shared.counters.last_lsn.store(last_lsn, Relaxed);
        let writer =
            Writer::new(Arc::clone(&fs), dir.clone(), options, segment, last_lsn + 1, Arc::clone(&shared), lock);
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("lockwal-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::Io { op: "spawn writer thread", path: dir.clone(), source: e })?;
        let store = Self {
            dir,
            shared,
            tx: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            closed: false.into(),
            read_only: false,
            opened: OpenReport {
                previous_clean,
                replay_duration: duration,
                records_replayed: records,
                torn_tail: torn,
                log_bytes_at_open: log_bytes,
                segments_at_open,
            },
        };
        store.submit_blocking(Command::Open { epoch })?;
        tracing::info!(epoch, previous_clean, "store open");
        Ok(store)
    }

    fn open_read_only(fs: &dyn FileSystem, dir: PathBuf, _options: WalOptions) -> Result<Self> {
        let recovered = recovery::recover(fs, &dir, State::new(), 0)?;
        let log_bytes = recovered.segments.iter().map(|s| s.scan.valid_end).sum();
        let shared = Arc::new(Shared {
            state: RwLock::new(recovered.state),
            poison: Mutex::new(None),
            counters: Default::default(),
        });
        shared.counters.last_lsn.store(recovered.last_lsn, Relaxed);
        let previous_clean = shared.state.read().unwrap_or_else(|e| e.into_inner()).clean();
        Ok(Self {
            dir,
            shared,
            tx: Mutex::new(None),
            thread: Mutex::new(None),
            closed: false.into(),
            read_only: true,
            opened: OpenReport {
                previous_clean,
                replay_duration: recovered.duration,
                records_replayed: recovered.records,
                torn_tail: recovered.torn,
                log_bytes_at_open: log_bytes,
                segments_at_open: recovered.segments.len() as u64,
            },
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Counters and facts about the store.
    pub fn stats(&self) -> WalStats {
        let state = self.shared.state.read().unwrap_or_else(|e| e.into_inner());
        let c = &self.shared.counters;
        let records = c.records.load(Relaxed);
        WalStats {
            epoch: state.epoch(),
            locks: state.lock_count() as u64,
            clients: state.client_count() as u64,
            log_bytes: self.opened.log_bytes_at_open + c.bytes.load(Relaxed),
            segments: self.opened.segments_at_open + c.segments_created.load(Relaxed),
            last_lsn: c.last_lsn.load(Relaxed),
            records_appended: records,
            bytes_appended: c.bytes.load(Relaxed),
            fsyncs: c.fsyncs.load(Relaxed),
            mean_batch_size: if records == 0 { 0.0 } else { c.requests.load(Relaxed) as f64 / records as f64 },
            replay_duration: self.opened.replay_duration,
            records_replayed: self.opened.records_replayed,
            previous_shutdown_clean: self.opened.previous_clean,
            torn_tail: self.opened.torn_tail.clone(),
            poisoned: self.shared.poisoned().is_some(),
        }
    }

    fn sender(&self) -> Result<mpsc::Sender<Msg>> {
        if self.read_only {
            return Err(Error::ReadOnly { dir: self.dir.clone() });
        }
        if self.closed.load(Relaxed) {
            return Err(Error::Closed);
        }
        self.tx.lock().unwrap_or_else(|e| e.into_inner()).clone().ok_or(Error::Closed)
    }

    async fn submit(&self, command: Command) -> Result<Vec<Outcome>> {
        if let Some(cause) = self.shared.poisoned() {
            return Err(Error::Poisoned { cause });
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.sender()?.send(Msg::Write(command, reply)).map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)?
    }

    fn submit_blocking(&self, command: Command) -> Result<Vec<Outcome>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.sender()?.send(Msg::Write(command, reply)).map_err(|_| Error::Closed)?;
        answer.blocking_recv().map_err(|_| Error::Closed)?
    }

    fn read_state(&self) -> Result<std::sync::RwLockReadGuard<'_, State>> {
        if self.closed.load(Relaxed) {
            return Err(Error::Closed);
        }
        Ok(self.shared.state.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Stops the writer thread (after it has answered every queued request)
    /// and releases the directory lock.
    fn stop_writer(&self) {
        drop(self.tx.lock().unwrap_or_else(|e| e.into_inner()).take());
        if let Some(thread) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WalLockStore {
    /// Dropping without [`close`](LockStore::close) stops the writer and
    /// releases the lock but does not record a clean shutdown: a drop is
    /// indistinguishable from a crash (it may be an unwinding panic), and
    /// claiming a clean shutdown would skip the grace period clients need.
    fn drop(&mut self) {
        self.stop_writer();
    }
}

#[async_trait]
impl LockStore for WalLockStore {
    async fn transaction(&self, ops: Vec<Op>) -> Result<Vec<Outcome>> {
        validate_batch(&ops)?;
        self.sender()?;
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        self.submit(Command::Txn(ops)).await
    }

    async fn get_lock(&self, id: &str) -> Result<PersistedLock> {
        self.read_state()?.get(id).ok_or_else(|| Error::lock_not_found(id))
    }

    async fn list_locks(&self, query: &LockQuery) -> Result<Vec<PersistedLock>> {
        Ok(self.read_state()?.list(query))
    }

    async fn count(&self) -> Result<u64> {
        Ok(self.read_state()?.lock_count() as u64)
    }

    async fn get_client(&self, client_id: &str) -> Result<ClientRecord> {
        self.read_state()?.client(client_id).ok_or_else(|| Error::client_not_found(client_id))
    }

    async fn list_clients(&self) -> Result<Vec<ClientRecord>> {
        Ok(self.read_state()?.clients().cloned().collect())
    }

    async fn epoch(&self) -> Result<u64> {
        Ok(self.read_state()?.epoch())
    }

    async fn previous_shutdown_was_clean(&self) -> Result<bool> {
        drop(self.read_state()?);
        Ok(self.opened.previous_clean)
    }

    async fn reclaimable(&self, client_id: &str) -> Result<Vec<PersistedLock>> {
        Ok(self.read_state()?.reclaimable(client_id))
    }

    async fn close(&self) -> Result<()> {
        if self.closed.load(Relaxed) {
            return Ok(());
        }
        if !self.read_only {
            self.submit(Command::CleanShutdown).await?;
        }
        self.closed.store(true, Relaxed);
        self.stop_writer();
        tracing::info!(dir = %self.dir.display(), "store closed cleanly");
        Ok(())
    }
}
