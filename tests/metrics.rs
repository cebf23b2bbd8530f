//! Guards the metrics of feature `metrics`: with a recording backend
//! installed, every documented metric moves exactly as a workload says it
//! should (writes, refusals, reads, a compaction, a reopen over a torn tail,
//! a poisoning, and on PostgreSQL one- and several-operation writes and a
//! fenced handle). Values are checked against the workload and against
//! `stats()`, never against time: latencies are only checked to be counted
//! once per event and positive.
//!
//! One test function: the recorder is global to the process, and each
//! phase reads the figures recorded since the previous one (the debugging
//! recorder hands out deltas: counters and gauges read since, histograms
//! the values recorded since).
#![cfg(feature = "metrics")]

use lockwal::io::FileSystem;
use lockwal::io::sim::{Fault, SimFs};
use lockwal::metrics::names::*;
use lockwal::model::{DurableHandle, LockQuery};
use lockwal::testing::sample;
use lockwal::wal::{WalLockStore, WalOptions};
use lockwal::{Error, LockStore, Op};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use metrics_util::{CompositeKey, MetricKind};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

type Labels = Vec<(String, String)>;

/// The figures recorded since the last `take`.
#[derive(Default)]
struct Figures {
    counters: BTreeMap<(String, Labels), u64>,
    gauges: BTreeMap<(String, Labels), f64>,
    histograms: BTreeMap<(String, Labels), Vec<f64>>,
}

fn labels(key: &CompositeKey) -> Labels {
    key.key().labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect()
}

fn own(labels: &[(&str, &str)]) -> Labels {
    labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

impl Figures {
    fn take(snapshotter: &Snapshotter, seen: &mut BTreeSet<String>) -> Self {
        let mut f = Figures::default();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let id = (key.key().name().to_owned(), labels(&key));
            match value {
                DebugValue::Counter(n) if n > 0 => {
                    seen.insert(id.0.clone());
                    f.counters.insert(id, n);
                }
                DebugValue::Histogram(v) if !v.is_empty() => {
                    seen.insert(id.0.clone());
                    f.histograms.insert(id, v.into_iter().map(|x| x.into_inner()).collect());
                }
                DebugValue::Gauge(g) if key.kind() == MetricKind::Gauge => {
                    seen.insert(id.0.clone());
                    f.gauges.insert(id, g.into_inner());
                }
                _ => {}
            }
        }
        f
    }

    fn counter(&self, name: &str, l: &[(&str, &str)]) -> u64 {
        self.counters.get(&(name.to_owned(), own(l))).copied().unwrap_or(0)
    }

    fn gauge(&self, name: &str) -> f64 {
        *self.gauges.get(&(name.to_owned(), Vec::new())).unwrap_or_else(|| panic!("gauge {name} not set"))
    }

    fn histogram(&self, name: &str, l: &[(&str, &str)]) -> Vec<f64> {
        self.histograms.get(&(name.to_owned(), own(l))).cloned().unwrap_or_default()
    }

    /// A latency histogram holds exactly `n` values, all positive.
    fn timed(&self, name: &str, l: &[(&str, &str)], n: usize) {
        let values = self.histogram(name, l);
        assert_eq!(values.len(), n, "{name} {l:?}: {values:?}");
        assert!(values.iter().all(|&v| v > 0.0), "{name} {l:?}: a latency of zero or less: {values:?}");
    }
}

const WAL: (&str, &str) = ("backend", "wal");

fn refused(reason: &str) -> [(&'static str, String); 2] {
    [("backend", "wal".into()), ("reason", reason.into())]
}

fn reason(f: &Figures, reason: &str) -> u64 {
    let [(b, bv), (r, rv)] = refused(reason);
    f.counter(WRITES_REFUSED, &[(b, &bv), (r, &rv)])
}

fn lock(id: &str) -> lockwal::model::PersistedLock {
    sample::byte_range(id, "s", "f", "o", "c")
}

/// A handle like `sample::handle(n)` with another's file id.
fn conflicting(n: u32, with: &DurableHandle) -> DurableHandle {
    DurableHandle { file_id: with.file_id, ..sample::handle(n) }
}

/// The WAL store's gauges equal its `stats()`.
fn gauges_match(f: &Figures, store: &WalLockStore) {
    let s = store.stats();
    assert_eq!(f.gauge(LOCKS), s.locks as f64);
    assert_eq!(f.gauge(CLIENTS), s.clients as f64);
    assert_eq!(f.gauge(HANDLES), s.handles as f64);
    assert_eq!(f.gauge(RECORDS), s.keyspace_records as f64);
    assert_eq!(f.gauge(EPOCH), s.epoch as f64);
    assert_eq!(f.gauge(LOG_BYTES), s.log_bytes as f64);
    assert_eq!(f.gauge(SNAPSHOT_BYTES), s.snapshot_bytes as f64);
}

/// Every frame of a phase of sequential writes: one frame, one fdatasync
/// and a group of one per logged write, and the bytes `stats()` counted.
fn frames(f: &Figures, logged: u64, bytes: u64) {
    assert_eq!(f.counter(FRAMES_WRITTEN, &[]), logged);
    assert_eq!(f.counter(FDATASYNCS, &[]), logged);
    f.timed(FDATASYNC_LATENCY, &[], logged as usize);
    assert_eq!(f.counter(BYTES_APPENDED, &[]), bytes);
    assert_eq!(f.histogram(GROUP_SIZE, &[]), vec![1.0; logged as usize], "sequential writes: groups of one");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_moves_as_the_workload_says() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only recorder of this test binary");
    lockwal::metrics::describe();
    let mut seen = BTreeSet::new();
    let mut take = || Figures::take(&snapshotter, &mut seen);

    // Open: one replay, the epoch record (one frame, not a caller's write).
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions { compact_after_bytes: None, ..WalOptions::default() };
    let store = WalLockStore::open(dir.path(), options.clone()).await.unwrap();
    let f = take();
    f.timed(REPLAY_TIME, &[], 1);
    frames(&f, 1, store.stats().bytes_appended);
    assert_eq!(f.counter(REQUESTS_ACKNOWLEDGED, &[WAL]), 0);
    gauges_match(&f, &store);
    assert_eq!(f.gauge(EPOCH), 1.0);

    // Writes one at a time, refusals, reads.
    let bytes_before = store.stats().bytes_appended;
    for i in 0..20 {
        store.put_lock(lock(&format!("l{i}"))).await.unwrap();
    }
    store.put_client(sample::client("c")).await.unwrap();
    let handle = sample::handle(1);
    store.put_handle(handle.clone()).await.unwrap();
    store.put_record("dir", b"a", b"1").await.unwrap();
    let acked = 23;
    assert!(matches!(store.delete_lock("absent").await, Err(Error::NotFound { .. })));
    assert!(matches!(store.put_handle(conflicting(2, &handle)).await, Err(Error::HandleConflict { .. })));
    let swap = Op::SwapRecord { space: "dir".into(), key: b"a".to_vec(), expected: None, value: None };
    assert!(matches!(store.transaction(vec![swap]).await, Err(Error::ConditionFailed { .. })));
    assert!(matches!(store.put_lock(lock("")).await, Err(Error::InvalidInput { .. })));
    for i in 0..3 {
        store.get_lock(&format!("l{i}")).await.unwrap();
    }
    assert_eq!(store.list_locks(&LockQuery::by_file("f")).await.unwrap().len(), 20);
    assert_eq!(store.count().await.unwrap(), 20);
    assert_eq!(store.for_each_lock(&mut |_| {}).await.unwrap(), 20);
    assert!(
        store.test_lock(&lock("probe")).await.unwrap().holders.is_empty(),
        "the owner of every lock on f conflicts with none of them"
    );
    store.get_record("dir", b"a").await.unwrap();
    let f = take();
    assert_eq!(f.counter(REQUESTS_ACKNOWLEDGED, &[WAL]), acked);
    f.timed(COMMIT_LATENCY, &[WAL], acked as usize);
    assert_eq!(reason(&f, "not_found"), 1);
    assert_eq!(reason(&f, "conflict"), 2, "a handle conflict and a failed compare-and-set");
    assert_eq!(reason(&f, "invalid_input"), 1);
    frames(&f, acked, store.stats().bytes_appended - bytes_before);
    for (kind, n) in
        [("get_lock", 3), ("list_locks", 1), ("for_each_lock", 1), ("test_lock", 1), ("count", 1), ("get_record", 1)]
    {
        f.timed(QUERY_LATENCY, &[WAL, ("kind", kind)], n);
    }
    assert_eq!(f.histogram(QUERY_LATENCY, &[WAL, ("kind", "scan_records")]), Vec::<f64>::new());
    gauges_match(&f, &store);
    assert_eq!((f.gauge(LOCKS), f.gauge(CLIENTS), f.gauge(HANDLES), f.gauge(RECORDS)), (20.0, 1.0, 1.0, 1.0));
    assert_eq!(f.gauge(SNAPSHOT_BYTES), 0.0, "no snapshot yet");

    // A compaction: counted once, timed once, its pause timed once, and
    // the snapshot and log gauges follow.
    store.compact().await.unwrap();
    let f = take();
    assert_eq!(f.counter(COMPACTIONS, &[]), 1);
    f.timed(COMPACTION_DURATION, &[], 1);
    f.timed(COMPACTION_PAUSE, &[], 1);
    assert_eq!(f.counter(FRAMES_WRITTEN, &[]), 0);
    assert!(store.stats().snapshot_bytes > 0);
    gauges_match(&f, &store);

    // Three more writes, then a crash tearing the last one's frame.
    for i in 0..3 {
        store.put_lock(lock(&format!("after{i}"))).await.unwrap();
    }
    let before_last = store.stats();
    assert_eq!(before_last.segments, 1, "compaction left only the active segment");
    store.put_lock(lock("torn")).await.unwrap();
    let last_end = store.stats().log_bytes;
    drop(store);
    let f = take();
    assert_eq!(f.counter(REQUESTS_ACKNOWLEDGED, &[WAL]), 4);
    let segment = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "wal"))
        .unwrap();
    let mut bytes = std::fs::read(&segment).unwrap();
    for b in &mut bytes[before_last.log_bytes as usize + 16..last_end as usize] {
        *b = 0xA5;
    }
    std::fs::write(&segment, &bytes).unwrap();
    let store = WalLockStore::open(dir.path(), options.clone()).await.unwrap();
    assert!(store.stats().torn_tail.is_some());
    let f = take();
    assert_eq!(f.counter(TORN_TAILS, &[]), 1);
    f.timed(REPLAY_TIME, &[], 1);
    gauges_match(&f, &store);
    assert_eq!((f.gauge(LOCKS), f.gauge(EPOCH)), (23.0, 2.0), "the torn write is gone; a new epoch");

    // Closed and read-only stores refuse writes by those reasons.
    store.close().await.unwrap();
    assert!(matches!(store.put_lock(lock("late")).await, Err(Error::Closed)));
    let reader = WalLockStore::open(dir.path(), WalOptions { read_only: true, ..options.clone() }).await.unwrap();
    assert!(matches!(reader.put_lock(lock("ro")).await, Err(Error::ReadOnly { .. })));
    let f = take();
    assert_eq!(reason(&f, "closed"), 1);
    assert_eq!(reason(&f, "read_only"), 1);
    assert_eq!(f.counter(TORN_TAILS, &[]), 0, "a read-only open repairs nothing");
    assert_eq!(f.histogram(REPLAY_TIME, &[]), Vec::<f64>::new(), "replay time is of writable opens");

    // A failed write poisons the store once; the failing write and the
    // refused one after it are counted by reason.
    let sim = Arc::new(SimFs::lossless());
    let fs: Arc<dyn FileSystem> = sim.clone();
    let store = WalLockStore::open_with_fs(fs, "/sim", options.clone()).await.unwrap();
    take();
    sim.fail_from(sim.calls(), Fault::Eio);
    assert!(matches!(store.put_lock(lock("x")).await, Err(Error::Io { .. })));
    assert!(matches!(store.put_lock(lock("y")).await, Err(Error::Poisoned { .. })));
    let f = take();
    assert_eq!(f.counter(POISONINGS, &[]), 1);
    assert_eq!(reason(&f, "failed"), 1);
    assert_eq!(reason(&f, "poisoned"), 1);
    assert_eq!(f.counter(REQUESTS_ACKNOWLEDGED, &[WAL]), 0);
    drop(store);

    postgres(&mut take).await;

    // Every documented metric was seen (the PostgreSQL ones only when a
    // server was there).
    let expected: BTreeSet<String> = ALL
        .iter()
        .filter(|n| pg_url().is_some() || !n.starts_with("lockwal_postgres_"))
        .map(|n| n.to_string())
        .collect();
    assert_eq!(expected.difference(&seen).collect::<Vec<_>>(), Vec::<&String>::new(), "never emitted");
    assert_eq!(seen.difference(&expected).collect::<Vec<_>>(), Vec::<&String>::new(), "emitted, not documented");
}

fn pg_url() -> Option<String> {
    std::env::var("LOCKWAL_TEST_PG_URL").ok().filter(|u| !u.trim().is_empty())
}

#[cfg(not(feature = "postgres"))]
async fn postgres(_take: &mut impl FnMut() -> Figures) {}

/// PostgreSQL: a one-operation write is one round trip, a transaction of
/// three is BEGIN, the fence, three statements and COMMIT; reads and
/// writes time their statements and pool waits; a fenced handle's write is
/// counted by reason.
#[cfg(feature = "postgres")]
async fn postgres(take: &mut impl FnMut() -> Figures) {
    use lockwal::backend::postgres::{PostgresConfig, PostgresLockStore, tokio_postgres};
    let Some(url) = pg_url() else {
        if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
            panic!("the PostgreSQL part of the metrics test may not be skipped in CI");
        }
        eprintln!("SKIPPED: the PostgreSQL metrics (LOCKWAL_TEST_PG_URL is not set)");
        return;
    };
    let schema = format!("lockwal_metrics_{}", std::process::id());
    let config = PostgresConfig::new(&url).with_schema(&schema).with_pool_size(2).with_auto_migrate(true);
    let store = PostgresLockStore::open(config.clone()).await.unwrap();
    take();
    const PG: (&str, &str) = ("backend", "postgres");
    store.put_lock(lock("p1")).await.unwrap();
    let three = vec![Op::PutLock(lock("p2")), Op::PutLock(lock("p3")), Op::DeleteLock { id: "p1".into() }];
    store.transaction(three).await.unwrap();
    store.get_lock("p2").await.unwrap();
    assert_eq!(store.count().await.unwrap(), 2);
    let f = take();
    assert_eq!(f.counter(REQUESTS_ACKNOWLEDGED, &[PG]), 2);
    f.timed(COMMIT_LATENCY, &[PG], 2);
    assert_eq!(f.histogram(PG_ROUND_TRIPS, &[]), vec![1.0, 6.0]);
    f.timed(QUERY_LATENCY, &[PG, ("kind", "get_lock")], 1);
    f.timed(QUERY_LATENCY, &[PG, ("kind", "count")], 1);
    f.timed(PG_STATEMENT_LATENCY, &[("kind", "read")], 2);
    f.timed(PG_STATEMENT_LATENCY, &[("kind", "write")], 4);
    assert!(f.histogram(PG_POOL_WAIT, &[]).len() >= 4, "a connection for each write and read");

    // A second open fences the first: its next write is refused as fenced.
    let newer = PostgresLockStore::open(config).await.unwrap();
    assert!(matches!(store.put_lock(lock("p4")).await, Err(Error::Fenced { .. })));
    assert!(matches!(store.put_lock(lock("p5")).await, Err(Error::Fenced { .. })));
    let f = take();
    let fenced = f.counter(WRITES_REFUSED, &[PG, ("reason", "fenced")]);
    assert_eq!(fenced, 2, "found by the database, then by the latch");
    newer.close().await.unwrap();
    let _ = store.close().await;
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.unwrap();
}
