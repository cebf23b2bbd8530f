//! The embedded write-ahead-log backend.
//!
//! Every grant and release is appended to a log of checksummed frames
//! (`format`), committed in groups by one writer thread (`writer`), and
//! replayed at open into the state machine (`recovery`, `scan`), which also
//! increments the epoch. Snapshots (`snapshot`) written by a compactor thread
//! (`compact`) bound the log and the replay time. See DESIGN.md for the byte
//! layouts and the recovery rules.

mod compact;
pub mod format;
pub mod inspect;
mod legacy;
mod recovery;
pub mod scan;
mod shared;
pub mod snapshot;
mod writer;

pub use recovery::TornTail;
pub use shared::CompactionReport;

use crate::error::{Error, Result, io_error};
use crate::io::{FileSystem, LockGuard, OpenMode, RealFs};
use crate::model::{ClientKind, ClientQuery, ClientRecord, LockQuery, PersistedLock};
use crate::op::{Op, Outcome, validate_batch};
use crate::state::{Command, State};
use crate::store::LockStore;
use async_trait::async_trait;
use compact::Compactor;
use format::{LOCK_FILE, SEGMENT_HEADER_LEN};
use recovery::Recovered;
use shared::{CompactMsg, Msg, Shared, SnapshotStats};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLockReadGuard, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;
use writer::{Writer, create_segment};

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
///
/// Every field has a valid range, given on it; [`WalLockStore::open`]
/// checks them all ([`validate`](Self::validate)) before it touches the
/// directory, read-only or not, and refuses a value outside with
/// [`Error::InvalidInput`] naming the field.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// When writes are acknowledged. Any value.
    pub sync: SyncMode,
    /// A segment is rotated when the next frame would take it past this
    /// size (a frame larger than this gets a segment of its own). Default
    /// 64 MiB; valid [`MIN_SEGMENT_SIZE`]`..=`[`MAX_SEGMENT_SIZE`].
    pub segment_size: u64,
    /// Open without the writer lock and without changing any byte: no epoch
    /// bump, no truncation; writes fail with `ReadOnly`. A torn tail is
    /// ignored, corruption reported as usual. A directory that does not
    /// exist is [`Error::NoSuchDirectory`] (nothing is created). Any value.
    /// The other fields
    /// are validated even when this is set, so that a bad configuration is
    /// caught by a read-only check too.
    pub read_only: bool,
    /// Compact automatically once this many bytes were logged since the last
    /// snapshot (and `compact_size_multiple` is also passed). `None`: only
    /// on demand or on the timer. Default 64 MiB; valid `None` or `Some(n)`
    /// with `n >= 1` (`Some(0)` is refused: it does not mean off).
    pub compact_after_bytes: Option<u64>,
    /// ... and once the log since the last snapshot is more than this many
    /// times the snapshot's size. Default 2.0; valid `0.0..=`
    /// [`MAX_COMPACT_SIZE_MULTIPLE`] (0: the byte threshold alone decides).
    /// NaN, infinite and negative values are refused: NaN and infinity
    /// would silently never compact.
    pub compact_size_multiple: f64,
    /// Also compact on this period. Default `None` (off); valid `None` or
    /// at least [`MIN_COMPACT_INTERVAL`] (a zero period would compact in a
    /// busy loop).
    pub compact_interval: Option<Duration>,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            sync: SyncMode::Always,
            segment_size: 64 << 20,
            read_only: false,
            compact_after_bytes: Some(64 << 20),
            compact_size_multiple: 2.0,
            compact_interval: None,
        }
    }
}

impl WalOptions {
    /// Checks every field against the range documented on it: `Ok` when
    /// [`WalLockStore::open`] accepts these options, otherwise
    /// [`Error::InvalidInput`] naming the first field out of range.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field, reason: String| Err(Error::InvalidInput { field, reason });
        let Self { sync: _, segment_size, read_only: _, compact_after_bytes, compact_size_multiple, compact_interval } =
            self;
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(segment_size) {
            return invalid(
                "segment_size",
                format!("{segment_size} is outside {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE} bytes"),
            );
        }
        if *compact_after_bytes == Some(0) {
            return invalid(
                "compact_after_bytes",
                "Some(0) is not accepted; use None to compact only on demand or on the timer".into(),
            );
        }
        let multiple = *compact_size_multiple;
        if !(0.0..=MAX_COMPACT_SIZE_MULTIPLE).contains(&multiple) {
            // NaN fails `contains` too.
            return invalid(
                "compact_size_multiple",
                format!("{multiple} is outside 0..={MAX_COMPACT_SIZE_MULTIPLE} (it must be a finite number)"),
            );
        }
        if let Some(interval) = compact_interval
            && *interval < MIN_COMPACT_INTERVAL
        {
            return invalid(
                "compact_interval",
                format!("{interval:?} is below the minimum {MIN_COMPACT_INTERVAL:?}; use None to turn the timer off"),
            );
        }
        Ok(())
    }
}

/// Smallest segment size accepted.
pub const MIN_SEGMENT_SIZE: u64 = 4096;

/// Largest segment size accepted (4 GiB). Open reads each segment whole (a
/// read-only open copies it into memory), and compaction retires only whole
/// segments; a larger segment gains nothing and costs both.
pub const MAX_SEGMENT_SIZE: u64 = 4 << 30;

/// Largest [`WalOptions::compact_size_multiple`] accepted: a log a thousand
/// times its snapshot already replays a thousand times slower than the
/// snapshot loads; a larger multiple is a mistake (to turn automatic
/// compaction off, set `compact_after_bytes` to `None`).
pub const MAX_COMPACT_SIZE_MULTIPLE: f64 = 1000.0;

/// Shortest [`WalOptions::compact_interval`] accepted. A compaction rotates
/// a segment and writes a snapshot with several fsyncs; a shorter period
/// would keep the compactor (and the disk) busy compacting.
pub const MIN_COMPACT_INTERVAL: Duration = Duration::from_secs(1);

/// What [`WalLockStore::stats`] reports.
#[derive(Debug, Clone, PartialEq)]
pub struct WalStats {
    /// The current epoch.
    pub epoch: u64,
    /// Live locks.
    pub locks: u64,
    /// Client records.
    pub clients: u64,
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

#[derive(Debug, Clone)]
struct OpenReport {
    previous_clean: bool,
    replay_duration: Duration,
    records_replayed: u64,
    torn_tail: Option<TornTail>,
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
fn create_dir_durably(fs: &dyn FileSystem, dir: &Path) -> Result<()> {
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
        let _span = tracing::info_span!("open", dir = %dir.display()).entered();
        let Recovered { state, segments, last_lsn, records, torn, temporaries, stale, snapshot, duration } =
            recovery::recover(&*fs, &dir)?;
        let snapshot_file = snapshot.as_ref().map(|s| s.path.display().to_string());
        tracing::info!(records, last_lsn, snapshot = snapshot_file, ?duration, "replayed");

        // Repairs, each durable before the next step relies on it.
        let mut dir_dirty = remove_all(&*fs, &temporaries, "leftover temporary file, never trusted")?;
        if !stale.is_empty() {
            // The snapshot that covers these must be durable before they go:
            // its rename may not have been (the compaction that wrote it can
            // have failed at the directory fsync).
            fs.sync_dir(&dir).map_err(io_error("fsync directory", &dir))?;
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
                }
                let mut file = fs.open(&newest.path, OpenMode::Existing).map_err(io_error("open", &newest.path))?;
                file.set_len(newest.scan.valid_end).map_err(io_error("truncate", &newest.path))?;
                file.sync_data().map_err(io_error("fdatasync", &newest.path))?;
            }
        }
        if dir_dirty {
            fs.sync_dir(&dir).map_err(io_error("fsync directory", &dir))?;
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
        let highest = headers.chain([recovery::backup_epochs(&*fs, &dir)?, epoch_floor]).fold(state.epoch(), u64::max);
        let epoch = highest.saturating_add(1);
        let next_number =
            segments.last().map_or(1, |s| if kept.len() < segments.len() { s.number } else { s.number + 1 });
        let segment = create_segment(&*fs, &dir, next_number, last_lsn + 1, epoch)?;
        let mut segment_bytes: BTreeMap<u64, u64> = kept.iter().map(|s| (s.number, s.scan.valid_end)).collect();
        segment_bytes.insert(next_number, SEGMENT_HEADER_LEN as u64);
        let snapshot_stats = SnapshotStats {
            lsn: snapshot.as_ref().map(|s| s.header.lsn),
            bytes: snapshot.as_ref().map_or(0, |s| s.bytes),
            ..SnapshotStats::default()
        };
        let replayed_log: u64 = segment_bytes.values().sum();
        let shared = Arc::new(Shared::new(state, segment_bytes, snapshot_stats));
        shared.counters.last_lsn.store(last_lsn, Relaxed);
        shared.log_since_snapshot.store(replayed_log, Relaxed);

        let (writer_tx, writer_rx) = mpsc::channel();
        let (compactor_tx, compactor_rx) = mpsc::channel();
        let writer = Writer::new(
            Arc::clone(&fs),
            dir.clone(),
            options.clone(),
            segment,
            last_lsn + 1,
            Arc::clone(&shared),
            Some(compactor_tx.clone()),
        );
        let compactor = Compactor {
            fs: Arc::clone(&fs),
            dir: dir.clone(),
            shared: Arc::clone(&shared),
            writer: writer_tx.clone(),
            interval: options.compact_interval,
        };
        let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new().name(name.into()).spawn(f).map_err(|e| Error::Io {
                op: "spawn thread",
                path: dir.clone(),
                source: e,
            })
        };
        let threads = vec![
            spawn("lockwal-writer", Box::new(move || writer.run(writer_rx)))?,
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
        let store = Self {
            dir,
            shared,
            writer: Mutex::new(Some(writer_tx)),
            compactor: Mutex::new(Some(compactor_tx)),
            threads: Mutex::new(threads),
            lock: Mutex::new(Some(lock)),
            closed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            read_only: false,
            opened: OpenReport {
                previous_clean,
                replay_duration: duration,
                records_replayed: records,
                torn_tail: torn,
            },
        };
        store.submit_blocking(Command::Open { epoch })?;
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
        let segment_bytes = recovered.segments.iter().map(|s| (s.number, s.scan.valid_end)).collect();
        let snapshot_stats = SnapshotStats {
            lsn: recovered.snapshot.as_ref().map(|s| s.header.lsn),
            bytes: recovered.snapshot.as_ref().map_or(0, |s| s.bytes),
            ..SnapshotStats::default()
        };
        let previous_clean = recovered.state.clean();
        let shared = Arc::new(Shared::new(recovered.state, segment_bytes, snapshot_stats));
        shared.counters.last_lsn.store(recovered.last_lsn, Relaxed);
        Ok(Self {
            dir,
            shared,
            writer: Mutex::new(None),
            compactor: Mutex::new(None),
            threads: Mutex::new(Vec::new()),
            lock: Mutex::new(None),
            closed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            read_only: true,
            opened: OpenReport {
                previous_clean,
                replay_duration: recovered.duration,
                records_replayed: recovered.records,
                torn_tail: recovered.torn,
            },
        })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Counters and facts about the store.
    pub fn stats(&self) -> WalStats {
        let (epoch, locks, clients) = {
            let state = self.shared.state.read().unwrap_or_else(|e| e.into_inner());
            (state.epoch(), state.lock_count() as u64, state.client_count() as u64)
        };
        let c = &self.shared.counters;
        let records = c.records.load(Relaxed);
        let (log_bytes, segments) = self.shared.log_size();
        let snapshot = self.shared.snapshot.lock().unwrap_or_else(|e| e.into_inner()).clone();
        WalStats {
            epoch,
            locks,
            clients,
            log_bytes,
            segments,
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

    fn send(&self, command: Command) -> Result<tokio::sync::oneshot::Receiver<writer::Answer>> {
        self.check_writable()?;
        self.send_unchecked(command)
    }

    /// Queues `command` for the writer without the handle's checks (close
    /// sends its marker after it began refusing writes).
    fn send_unchecked(&self, command: Command) -> Result<tokio::sync::oneshot::Receiver<writer::Answer>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let writer = self.writer.lock().unwrap_or_else(|e| e.into_inner()).clone().ok_or(Error::Closed)?;
        writer.send(Msg::Write(command, reply)).map_err(|_| Error::Closed)?;
        Ok(answer)
    }

    async fn submit(&self, command: Command) -> Result<Vec<Outcome>> {
        let in_flight = InFlight::enter(&self.shared.in_flight);
        let mut answer = self.send(command)?;
        if in_flight.alone {
            // A lone caller polls for its answer, yielding between polls,
            // instead of parking its runtime thread at once: the answer
            // comes after one fdatasync, sooner than a parked worker thread
            // is woken and scheduled again (see DESIGN, "Writing").
            let started = std::time::Instant::now();
            while started.elapsed() < POLL_FOR_ANSWER {
                match answer.try_recv() {
                    Ok(answer) => return answer.into_result(),
                    Err(tokio::sync::oneshot::error::TryRecvError::Closed) => return Err(Error::Closed),
                    Err(tokio::sync::oneshot::error::TryRecvError::Empty) => tokio::task::yield_now().await,
                }
            }
        }
        answer.await.map_err(|_| Error::Closed)?.into_result()
    }

    fn submit_blocking(&self, command: Command) -> Result<Vec<Outcome>> {
        self.send(command)?.blocking_recv().map_err(|_| Error::Closed)?.into_result()
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
        for thread in self.threads.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
            let _ = thread.join();
        }
        drop(self.lock.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
}

/// How long a caller whose write is the only one in flight polls for its
/// answer before it awaits it the ordinary way (like RocksDB's adaptive
/// yield for writers waiting on a write group).
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
    async fn transaction(&self, ops: Vec<Op>) -> Result<Vec<Outcome>> {
        validate_batch(&ops)?;
        self.check_writable()?;
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

    async fn get_client(&self, kind: ClientKind, client_id: &str) -> Result<ClientRecord> {
        self.read_state()?.client(kind, client_id).ok_or_else(|| Error::client_not_found(kind, client_id))
    }

    async fn list_clients(&self, query: &ClientQuery) -> Result<Vec<ClientRecord>> {
        Ok(self.read_state()?.list_clients(query))
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
            let answer = self.send_unchecked(Command::CleanShutdown)?;
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
        // Poll a write once and drop it while it waits for its answer (a
        // preempted test thread may, rarely, find the answer already there:
        // then try again).
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let dropped_waiting = (100..110).any(|i| {
            let mut write = Box::pin(store.put_lock(lock(i)));
            let pending = std::future::Future::poll(write.as_mut(), &mut cx).is_pending();
            if pending {
                assert_eq!(count(), 1, "while a write waits for its answer");
            }
            pending
        });
        assert!(dropped_waiting, "no write was still waiting after its first poll");
        assert_eq!(count(), 0, "after a dropped write");
        store.close().await.unwrap();
    }
}
