//! The workloads of issue 7, as plain async functions over [`Store`], used
//! by both the `compare` runner (which records every latency) and the
//! criterion benches; and W6 (issue 18), lockwal's SMB durable handles,
//! over the WAL backend's public API.

use crate::engine::{Peer, Store};
use crate::stats::Latency;
use crate::{Dataset, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

/// Lock numbers from here on are fresh: never part of a loaded data set.
pub const FRESH_IDS: u64 = 1 << 40;

/// How many locks a bulk-load chunk holds (lockwal's transaction limit).
pub const LOAD_CHUNK: u64 = 4096;

/// How long a timed phase warms up and then measures.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Timing {
    /// Untimed warm-up.
    pub warmup: Duration,
    /// Measured window.
    pub measure: Duration,
}

/// Throughput and latency of a timed phase (one or more rounds).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Run {
    /// Concurrent tasks.
    pub tasks: usize,
    /// Measured rounds joined into this run (see [`Run::of_rounds`]).
    pub rounds: usize,
    /// Durable ops completed in the measured windows.
    pub ops: u64,
    /// Length of the measured windows, added up.
    pub seconds: f64,
    /// `ops / seconds`.
    pub ops_per_sec: f64,
    /// Latency of single ops.
    pub latency: Latency,
    /// The engine's counters after the last round, if it has any.
    pub engine: Option<serde_json::Value>,
}

/// One measured window of a timed workload on a fresh store, with every
/// latency, so that rounds run at different times can be joined.
#[derive(Debug, Clone)]
pub struct Round {
    /// Concurrent tasks.
    pub tasks: usize,
    /// Length of the measured window.
    pub seconds: f64,
    /// Latency of every op counted.
    pub samples: Vec<Duration>,
    /// The engine's counters after the round, if it has any.
    pub engine: Option<serde_json::Value>,
}

impl Run {
    /// Joins the rounds of one store at one level: ops and windows add
    /// up, latencies are pooled. `None` without rounds.
    pub fn of_rounds(rounds: Vec<Round>) -> Option<Run> {
        let (tasks, engine) = {
            let last = rounds.last()?;
            (last.tasks, last.engine.clone())
        };
        let count = rounds.len();
        let seconds: f64 = rounds.iter().map(|r| r.seconds).sum();
        let mut samples: Vec<Duration> = rounds.into_iter().flat_map(|r| r.samples).collect();
        let ops = samples.len() as u64;
        Some(Run {
            tasks,
            rounds: count,
            ops,
            seconds,
            ops_per_sec: ops as f64 / seconds,
            latency: Latency::of(&mut samples),
            engine,
        })
    }
}

/// Runs `tasks` tasks, each looping `body(store, n)` (which returns the
/// latencies of the durable ops it did) over fresh lock numbers, for the
/// warm-up and then the measured window. An op counts when it starts and
/// ends inside the window. Deadlines are read from the clock rather than
/// from timers, and each task yields after each op, so a store that never
/// waits (the memory backend) cannot starve the runtime.
async fn timed<F, Fut>(store: Arc<dyn Store>, tasks: usize, timing: Timing, body: F) -> Result<Round>
where
    F: Fn(Arc<dyn Store>, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<[Option<Duration>; 2]>> + Send,
{
    let next = Arc::new(AtomicU64::new(FRESH_IDS));
    let body = Arc::new(body);
    let begin = Instant::now() + timing.warmup;
    let end = begin + timing.measure;
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let (next, body, store) = (next.clone(), body.clone(), store.clone());
            tokio::spawn(async move {
                let mut samples = Vec::new();
                loop {
                    let started = Instant::now();
                    if started >= end {
                        return Ok::<_, crate::Error>(samples);
                    }
                    let lats = body(store.clone(), next.fetch_add(1, Relaxed)).await?;
                    if started >= begin && Instant::now() <= end {
                        samples.extend(lats.into_iter().flatten());
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut samples = Vec::new();
    for handle in handles {
        samples.extend(handle.await??);
    }
    Ok(Round { tasks, seconds: timing.measure.as_secs_f64(), samples, engine: store.stats() })
}

/// W1: one task grants a lock and releases it, each durable before the
/// next; every grant and every release is one op.
pub async fn serial(store: Arc<dyn Store>, data: Arc<Dataset>, timing: Timing) -> Result<Round> {
    timed(store, 1, timing, move |store, n| {
        let lock = data.lock(n);
        async move {
            let t = Instant::now();
            store.put(lock.clone()).await?;
            let grant = t.elapsed();
            let t = Instant::now();
            store.delete(&lock).await?;
            Ok([Some(grant), Some(t.elapsed())])
        }
    })
    .await
}

/// W2: `tasks` tasks each granting fresh locks, each grant durable before
/// the task's next one.
pub async fn concurrent(store: Arc<dyn Store>, data: Arc<Dataset>, tasks: usize, timing: Timing) -> Result<Round> {
    timed(store, tasks, timing, move |store, n| {
        let lock = data.lock(n);
        async move {
            let t = Instant::now();
            store.put(lock).await?;
            Ok([Some(t.elapsed()), None])
        }
    })
    .await
}

/// Fills a fresh store in `dir` with locks `0..locks` of `data` (chunks of
/// [`LOAD_CHUNK`], each durable), settles it and closes it.
pub async fn build(peer: &dyn Peer, dir: &Path, data: &Dataset, locks: u64) -> Result<Duration> {
    let start = Instant::now();
    let store = peer.open(dir).await?;
    let mut at = 0;
    while at < locks {
        let end = (at + LOAD_CHUNK).min(locks);
        store.load(data.locks(at..end)).await?;
        at = end;
    }
    store.settle().await?;
    store.close().await?;
    Ok(start.elapsed())
}

/// W3: open the store in `dir` and read every lock back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Restore {
    /// Locks read back.
    pub locks: u64,
    /// Time to open (lockwal: replay).
    pub open_s: f64,
    /// Time to read every lock back after opening.
    pub read_s: f64,
    /// Open plus read.
    pub total_s: f64,
    /// Peak resident set of the process right after the open (VmHWM): the
    /// store alone, before the caller holds any copy.
    #[serde(default)]
    pub open_peak_rss_bytes: u64,
    /// Peak resident set of the process so far (VmHWM).
    pub peak_rss_bytes: u64,
    /// Anonymous resident memory after the read (RssAnon).
    pub rss_anon_bytes: u64,
    /// The engine's counters after open, if it has any.
    pub engine: Option<serde_json::Value>,
}

/// Opens `dir` and reads every lock back; returns the open store too (W4
/// runs on it) and what the read left resident.
pub async fn restore(
    peer: &dyn Peer,
    dir: &Path,
    data: &Dataset,
) -> Result<(Restore, Arc<dyn Store>, Box<dyn std::any::Any + Send>)> {
    let start = Instant::now();
    let store = peer.open(dir).await?;
    let opened = start.elapsed();
    let open_peak_rss_bytes = crate::machine::status_bytes("VmHWM");
    let restored = store.read_all(data).await?;
    let total = start.elapsed();
    let result = Restore {
        locks: restored.locks,
        open_s: opened.as_secs_f64(),
        read_s: (total - opened).as_secs_f64(),
        total_s: total.as_secs_f64(),
        open_peak_rss_bytes,
        peak_rss_bytes: crate::machine::status_bytes("VmHWM"),
        rss_anon_bytes: crate::machine::status_bytes("RssAnon"),
        engine: store.stats(),
    };
    Ok((result, store, restored.resident))
}

/// W4: latencies of queries by client and by file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Queries {
    /// By client (about 1,000 locks each on the 1M store).
    pub by_client: Latency,
    /// Mean locks returned by a client query.
    pub by_client_rows: f64,
    /// By file (about 100 locks each).
    pub by_file: Latency,
    /// Mean locks returned by a file query.
    pub by_file_rows: f64,
}

/// Runs `n` queries of each kind on random keys (after `n / 10` untimed).
pub async fn queries(store: &dyn Store, data: &Dataset, n: usize, seed: u64) -> Result<Queries> {
    let mut rng = crate::data::Rng::new(seed);
    let shape = data.shape();
    let mut one = async |by_client: bool, timed: bool, rows: &mut u64, lats: &mut Vec<Duration>| -> Result<()> {
        let t = Instant::now();
        let found = if by_client {
            store.by_client(&data.clients()[rng.below(shape.clients) as usize]).await?
        } else {
            store.by_file(&data.files()[rng.below(shape.files) as usize]).await?
        };
        if timed {
            lats.push(t.elapsed());
            *rows += found.len() as u64;
        }
        Ok(())
    };
    let (mut client_lats, mut file_lats) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let (mut client_rows, mut file_rows) = (0, 0);
    for i in 0..n + n / 10 {
        let timed = i >= n / 10;
        one(true, timed, &mut client_rows, &mut client_lats).await?;
        one(false, timed, &mut file_rows, &mut file_lats).await?;
    }
    Ok(Queries {
        by_client: Latency::of(&mut client_lats),
        by_client_rows: client_rows as f64 / n.max(1) as f64,
        by_file: Latency::of(&mut file_lats),
        by_file_rows: file_rows as f64 / n.max(1) as f64,
    })
}

/// W5: durable puts from `tasks` tasks on the store in `dir`, first alone,
/// then while compactions run back to back (lockwal only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DuringCompaction {
    /// Locks in the store when the phases started.
    pub live_locks: u64,
    /// Puts with no compaction running (automatic compaction off).
    pub without: Run,
    /// Puts while `compact()` runs in a loop.
    pub with: Run,
    /// Compactions that finished while the second phase ran (the first
    /// starts with its warm-up).
    pub compactions: u64,
    /// Mean duration of those compactions.
    pub mean_compaction_s: f64,
    /// `with.p99 / without.p99`.
    pub p99_ratio: f64,
}

/// Runs W5 on the lockwal WAL store in `dir` (usually the 1M-lock store).
pub async fn during_compaction(
    dir: &Path,
    data: Arc<Dataset>,
    tasks: usize,
    timing: Timing,
) -> Result<DuringCompaction> {
    use crate::engines::wal::Wal;
    use std::sync::atomic::AtomicBool;
    let options = lockwal::wal::WalOptions { compact_after_bytes: None, ..Wal::Snapshot.options() };
    let wal = Arc::new(Wal::Snapshot.open_with(dir, options).await?);
    let live_locks = wal.store.stats().locks;
    let without = Run::of_rounds(vec![concurrent(wal.clone(), data.clone(), tasks, timing).await?]).expect("one round");

    let stop = Arc::new(AtomicBool::new(false));
    let compactor = {
        let (wal, stop) = (wal.clone(), stop.clone());
        tokio::spawn(async move {
            let mut spent = Vec::new();
            while !stop.load(Relaxed) {
                let t = Instant::now();
                wal.store.compact().await?;
                spent.push(t.elapsed());
            }
            Ok::<_, crate::Error>(spent)
        })
    };
    let with = Run::of_rounds(vec![concurrent(wal.clone(), data, tasks, timing).await?]).expect("one round");
    stop.store(true, Relaxed);
    let spent = compactor.await??;
    wal.close().await?;
    let compactions = spent.len() as u64;
    Ok(DuringCompaction {
        live_locks,
        p99_ratio: with.latency.p99_us / without.latency.p99_us,
        without,
        with,
        compactions,
        mean_compaction_s: spent.iter().sum::<Duration>().as_secs_f64() / compactions.max(1) as f64,
    })
}

// ---- W6: durable handles (lockwal only) --------------------------------------------

/// Handles per transaction when W6 loads a store (well inside
/// `MAX_TXN_OPS` and `MAX_TXN_BYTES`).
pub const HANDLE_CHUNK: u64 = 1024;

/// Puts durable handles `range` (see [`crate::data::handle`]) in
/// transactions of [`HANDLE_CHUNK`].
pub async fn load_handles(store: &lockwal::wal::WalLockStore, range: std::ops::Range<u64>) -> Result<()> {
    use lockwal::{LockStore, Op};
    let mut at = range.start;
    while at < range.end {
        let end = (at + HANDLE_CHUNK).min(range.end);
        store.transaction((at..end).map(|n| Op::PutHandle(crate::data::handle(n))).collect()).await?;
        at = end;
    }
    Ok(())
}

/// W6, consume: latency of `consume_handle_by_create_guid` on a store
/// holding a fixed number of handles.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandleConsume {
    /// Handles stored before every consume (the store holds nothing else).
    pub stored: u64,
    /// Seconds to load them and compact (untimed set-up).
    pub build_s: f64,
    /// Length of the measured window.
    pub seconds: f64,
    /// The `consume_handle_by_create_guid` call alone, one task, a random
    /// stored handle each time: durable (the log record is fdatasync'ed
    /// before it returns) and returning the handle, owned.
    pub consume: Latency,
    /// The `put_handle` of a fresh handle after each consume, which keeps
    /// the count at `stored` (not part of `consume`).
    pub put_back: Latency,
    /// Consume + put-back pairs per second in the window.
    pub pairs_per_sec: f64,
    /// Compactions the store started by itself in the warm-up and window
    /// (default options: after 64 MiB of log).
    pub compactions: u64,
}

/// Runs W6's consume on a fresh WAL store in `dir` (default options): puts
/// handles `0..stored`, compacts, then for the warm-up and the window
/// consumes a random stored handle by its create GUID (timed) and puts a
/// fresh one back (timed apart), so that `stored` handles are there at
/// every consume.
pub async fn consume_by_create_guid(dir: &Path, stored: u64, timing: Timing, seed: u64) -> Result<HandleConsume> {
    use crate::data::{create_guid, handle};
    use crate::engines::wal::Wal;
    use lockwal::LockStore;
    if stored == 0 {
        return Err("W6 needs at least one stored handle".into());
    }
    let build = Instant::now();
    let wal = Wal::Snapshot.open_wal(dir).await?;
    let store = &wal.store;
    load_handles(store, 0..stored).await?;
    store.compact().await?;
    let build_s = build.elapsed().as_secs_f64();
    let compactions_before = store.stats().compactions;
    // The handle number in each slot: a consume empties a slot, its put-back fills it.
    let mut live: Vec<u64> = (0..stored).collect();
    let mut rng = crate::data::Rng::new(seed);
    let mut next = FRESH_IDS;
    let (mut consume, mut put_back) = (Vec::new(), Vec::new());
    let begin = Instant::now() + timing.warmup;
    let end = begin + timing.measure;
    loop {
        let started = Instant::now();
        if started >= end {
            break;
        }
        let slot = (rng.next_u64() % stored) as usize;
        let guid = create_guid(live[slot]);
        let fresh = handle(next);
        let t = Instant::now();
        let got = store.consume_handle_by_create_guid(&guid).await?;
        let consumed = t.elapsed();
        if got.create_guid != Some(guid) {
            return Err(format!("consumed {} for create GUID {guid:02x?}", got.id).into());
        }
        let t = Instant::now();
        store.put_handle(fresh).await?;
        let put = t.elapsed();
        live[slot] = next;
        next += 1;
        if started >= begin && Instant::now() <= end {
            consume.push(consumed);
            put_back.push(put);
        }
    }
    let compactions = store.stats().compactions - compactions_before;
    let after = store.list_handles(&lockwal::model::HandleQuery::All).await?.len() as u64;
    wal.close().await?;
    if after != stored {
        return Err(format!("W6 consume: {after} handles at the end, expected {stored}").into());
    }
    let pairs = consume.len();
    Ok(HandleConsume {
        stored,
        build_s,
        seconds: timing.measure.as_secs_f64(),
        consume: Latency::of(&mut consume),
        put_back: Latency::of(&mut put_back),
        pairs_per_sec: pairs as f64 / timing.measure.as_secs_f64(),
        compactions,
    })
}

/// Fills a fresh WAL store in `dir` (default options) with locks
/// `0..locks` of `data` and durable handles `0..handles`, compacts it (the
/// shape a long-running store has: a snapshot and a short log) and closes
/// it cleanly.
pub async fn build_handle_store(dir: &Path, data: &Dataset, locks: u64, handles: u64) -> Result<Duration> {
    let start = Instant::now();
    let wal = crate::engines::wal::Wal::Snapshot.open_wal(dir).await?;
    let mut at = 0;
    while at < locks {
        let end = (at + LOAD_CHUNK).min(locks);
        wal.load(data.locks(at..end)).await?;
        at = end;
    }
    load_handles(&wal.store, 0..handles).await?;
    wal.store.compact().await?;
    Store::close(&wal).await?;
    Ok(start.elapsed())
}

/// W6, restore: a fresh process opening a store built by
/// [`build_handle_store`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HandleRestore {
    /// Locks the opened store holds.
    pub locks: u64,
    /// Durable handles it holds (`list_handles` of them all).
    pub handles: u64,
    /// `WalLockStore::open`: directory lock, snapshot load, log replay,
    /// the new incarnation's open record (durable).
    pub open_s: f64,
    /// The snapshot load and log replay alone (`WalStats::replay_duration`).
    pub replay_s: f64,
    /// Whether open started from a snapshot (else from the start of the log).
    pub from_snapshot: bool,
    /// Log records replayed after the snapshot.
    pub records_replayed: u64,
    /// Size of the snapshot loaded.
    pub snapshot_bytes: u64,
    /// `list_handles(HandleQuery::All)` after the open: every handle,
    /// owned, sorted by id.
    pub list_handles_s: f64,
    /// Peak resident set of the process (VmHWM).
    pub peak_rss_bytes: u64,
}

/// Opens the store in `dir` (default options), then lists every handle;
/// checks that it holds `locks` locks and `handles` handles.
pub async fn restore_handles(dir: &Path, locks: u64, handles: u64) -> Result<HandleRestore> {
    use lockwal::LockStore;
    let start = Instant::now();
    let store = lockwal::wal::WalLockStore::open(dir, crate::engines::wal::Wal::Snapshot.options()).await?;
    let open_s = start.elapsed().as_secs_f64();
    let stats = store.stats();
    let start = Instant::now();
    let listed = store.list_handles(&lockwal::model::HandleQuery::All).await?;
    let list_handles_s = start.elapsed().as_secs_f64();
    let result = HandleRestore {
        locks: stats.locks,
        handles: listed.len() as u64,
        open_s,
        replay_s: stats.replay_duration.as_secs_f64(),
        from_snapshot: stats.snapshot_lsn.is_some(),
        records_replayed: stats.records_replayed,
        snapshot_bytes: stats.snapshot_bytes,
        list_handles_s,
        peak_rss_bytes: crate::machine::status_bytes("VmHWM"),
    };
    drop(listed);
    store.close().await?;
    if (result.locks, result.handles) != (locks, handles) {
        return Err(format!(
            "W6 restore: {} locks and {} handles, expected {locks} and {handles}",
            result.locks, result.handles
        )
        .into());
    }
    Ok(result)
}

/// W7, the test query on a crowded file: how long [`LockStore::test_lock`]
/// takes on one file holding `locks` locks.
///
/// [`LockStore::test_lock`]: lockwal::LockStore::test_lock
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrowdedTest {
    /// Locks on the file.
    pub locks: u64,
    /// Latency of one `test_lock` call, answered and checked.
    pub latency: Latency,
}

/// The lock number `i` of W7's crowded file: a shared POSIX lock of its own
/// owner on its own 4 KiB page.
fn crowded_lock(data: &Dataset, i: u64) -> lockwal::model::PersistedLock {
    use lockwal::model::{ByteRange, LockKind, LockType, RangeFlavor};
    let mut lock = data.lock(FRESH_IDS * 2 + i);
    lock.file_id = "w7-crowded-file".into();
    lock.owner_id = format!("w7-owner-{i:06}").into();
    lock.kind = LockKind::ByteRange(ByteRange {
        lock_type: LockType::Shared,
        offset: i * 4096,
        length: 4096,
        zero_byte: false,
        flavor: RangeFlavor::Posix,
    });
    lock
}

/// Loads `locks` locks on one file into `store` (shared POSIX ranges of
/// distinct owners on distinct pages), then times `queries` test queries of
/// another owner, one at a time on this thread, each answer checked: an
/// exclusive candidate over one page (exactly that page's holder refuses
/// it) or a shared one (nothing refuses it), alternating, pages drawn at
/// random. Every store returns the same owned records.
pub async fn crowded_test(
    store: &dyn lockwal::LockStore,
    data: &Dataset,
    locks: u64,
    queries: usize,
) -> Result<CrowdedTest> {
    use lockwal::model::{LockKind, LockType};
    let all: Vec<_> = (0..locks).map(|i| crowded_lock(data, i)).collect();
    crate::engines::memory::load_in_transactions(store, all).await?;
    let mut rng = crate::data::Rng::new(7);
    let mut samples = Vec::with_capacity(queries);
    for q in 0..queries {
        let page = u64::from(rng.below(locks as u32));
        let mut candidate = crowded_lock(data, page);
        candidate.id = "w7-candidate".into();
        candidate.owner_id = "w7-tester".into();
        let exclusive = q % 2 == 0;
        if let LockKind::ByteRange(range) = &mut candidate.kind {
            range.lock_type = if exclusive { LockType::Exclusive } else { LockType::Shared };
        }
        let started = Instant::now();
        let answer = store.test_lock(&candidate).await?;
        samples.push(started.elapsed());
        let holders: Vec<&str> = answer.holders.iter().map(|l| &*l.owner_id).collect();
        let want = if exclusive { vec![format!("w7-owner-{page:06}")] } else { Vec::new() };
        if holders != want || !answer.to_break.is_empty() {
            return Err(format!("W7 test of page {page}: holders {holders:?}, expected {want:?}").into());
        }
    }
    Ok(CrowdedTest { locks, latency: Latency::of(&mut samples) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round(seconds: f64, micros: impl Iterator<Item = u64>) -> Round {
        Round { tasks: 4, seconds, samples: micros.map(Duration::from_micros).collect(), engine: None }
    }

    #[test]
    fn rounds_add_up_their_ops_and_windows_and_pool_their_latencies() {
        // A slow round and a fast one: the pooled p50 lies between them,
        // which neither round's own p50 does.
        let run = Run::of_rounds(vec![round(1.0, 1..=100), round(2.0, 1001..=1300)]).unwrap();
        assert_eq!((run.tasks, run.rounds, run.ops, run.seconds), (4, 2, 400, 3.0));
        assert_eq!(run.ops_per_sec, 400.0 / 3.0);
        assert_eq!((run.latency.p50_us, run.latency.max_us), (1100.0, 1300.0));
        assert!(Run::of_rounds(Vec::new()).is_none());
    }
}
