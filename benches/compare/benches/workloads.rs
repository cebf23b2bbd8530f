//! Criterion benches of W1 to W5 over every peer.
//!
//! Criterion measures time per iteration; the percentiles, the peak RSS and
//! the cross-store table come from the `compare` runner (`scripts/compare`).
//!
//! `cargo bench -p lockwal-compare -- --test` (or `LOCKWAL_BENCH_QUICK=1`)
//! runs every bench once on tiny stores, for CI. `LOCKWAL_BENCH_LOCKS=N`
//! sets the size of the W3/W4/W5 stores (default 1,000,000).

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lockwal_compare::data::{Rng, Shape};
use lockwal_compare::workload::{self, FRESH_IDS};
use lockwal_compare::{Dataset, Peer, Store, engines};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};
use tokio::runtime::Runtime;

fn quick() -> bool {
    std::env::var_os("LOCKWAL_BENCH_QUICK").is_some() || std::env::args().any(|a| a == "--test")
}

fn locks() -> u64 {
    let default = if quick() { 2048 } else { 1_000_000 };
    std::env::var("LOCKWAL_BENCH_LOCKS").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn tasks() -> &'static [usize] {
    if quick() { &[1, 16] } else { &[1, 4, 16, 64, 256] }
}

struct Env {
    rt: Runtime,
    data: Arc<Dataset>,
    root: PathBuf,
    next: AtomicU64,
}

impl Env {
    fn new() -> Self {
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("lockwal-compare-criterion");
        let _ = std::fs::remove_dir_all(&root);
        Self {
            rt: tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime"),
            data: Arc::new(Dataset::new(Shape::default())),
            root,
            next: AtomicU64::new(FRESH_IDS),
        }
    }

    fn dir(&self, parts: &[&str]) -> PathBuf {
        let dir = parts.iter().fold(self.root.clone(), |d, p| d.join(p));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("bench dir");
        dir
    }

    fn open(&self, peer: &dyn Peer, dir: &Path) -> Arc<dyn Store> {
        self.rt.block_on(peer.open(dir)).expect("open")
    }

    fn fresh(&self, n: u64) -> u64 {
        self.next.fetch_add(n, Relaxed)
    }

    fn peers(&self, wanted: impl Fn(lockwal_compare::Caps) -> bool) -> Vec<Arc<dyn Peer>> {
        engines::all().into_iter().filter(|p| wanted(p.caps())).collect()
    }
}

fn configure<'a>(c: &'a mut Criterion, name: &str) -> criterion::BenchmarkGroup<'a, criterion::measurement::WallTime> {
    let mut group = c.benchmark_group(name);
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(5));
    group
}

/// W1: one durable grant and its durable release per iteration.
fn w1_serial(c: &mut Criterion) {
    let env = Env::new();
    let mut group = configure(c, "w1_serial_grant_release");
    group.throughput(Throughput::Elements(2));
    for peer in env.peers(|c| c.serial) {
        let store = env.open(&*peer, &env.dir(&["w1", peer.name()]));
        group.bench_function(peer.name(), |b| {
            b.iter_custom(|iters| {
                let first = env.fresh(iters);
                env.rt.block_on(async {
                    let start = Instant::now();
                    for n in first..first + iters {
                        let lock = env.data.lock(n);
                        store.put(lock.clone()).await.expect("put");
                        store.delete(&lock).await.expect("delete");
                    }
                    start.elapsed()
                })
            })
        });
        env.rt.block_on(store.close()).expect("close");
    }
    group.finish();
}

/// `tasks` tasks share `iters * tasks` durable grants; one iteration is
/// `tasks` grants, so criterion's throughput is grants per second.
fn concurrent_puts(env: &Env, store: &Arc<dyn Store>, tasks: usize, iters: u64) -> Duration {
    let first = env.fresh(iters * tasks as u64);
    env.rt.block_on(async {
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks as u64)
            .map(|t| {
                let (store, data) = (store.clone(), env.data.clone());
                tokio::spawn(async move {
                    for i in 0..iters {
                        store.put(data.lock(first + t * iters + i)).await.expect("put");
                    }
                })
            })
            .collect();
        for handle in handles {
            handle.await.expect("task");
        }
        start.elapsed()
    })
}

/// W2: concurrent durable grants at 1..256 tasks.
fn w2_concurrent(c: &mut Criterion) {
    let env = Env::new();
    let mut group = configure(c, "w2_concurrent_grants");
    for peer in env.peers(|c| c.concurrent) {
        for &tasks in tasks() {
            let store = env.open(&*peer, &env.dir(&["w2", peer.name()]));
            group.throughput(Throughput::Elements(tasks as u64));
            group.bench_with_input(BenchmarkId::new(peer.name(), tasks), &tasks, |b, &tasks| {
                b.iter_custom(|iters| concurrent_puts(&env, &store, tasks, iters))
            });
            env.rt.block_on(store.close()).expect("close");
        }
    }
    group.finish();
}

/// Builds the `locks()`-lock store of `peer` once per bench binary run.
fn built(env: &Env, peer: &dyn Peer) -> PathBuf {
    let dir = env.dir(&["built", peer.name()]);
    let took = env.rt.block_on(workload::build(peer, &dir, &env.data, locks())).expect("build");
    eprintln!("built {} with {} locks in {took:.1?}", peer.name(), locks());
    dir
}

/// W3: open a store and read every lock back (peak RSS: see `compare`).
fn w3_restore(c: &mut Criterion) {
    let env = Env::new();
    let mut group = configure(c, "w3_restore");
    group.throughput(Throughput::Elements(locks()));
    for peer in env.peers(|c| c.restore) {
        let dir = built(&env, &*peer);
        group.bench_function(peer.name(), |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    env.rt.block_on(async {
                        let start = Instant::now();
                        let store = peer.open(&dir).await.expect("open");
                        let restored = store.read_all(&env.data).await.expect("read");
                        total += start.elapsed();
                        assert_eq!(restored.locks, locks());
                        drop(restored);
                        store.close().await.expect("close");
                    });
                }
                total
            })
        });
        let _ = std::fs::remove_dir_all(&dir);
    }
    group.finish();
}

/// W4: one query by client (about 1,000 locks) or by file (about 100).
fn w4_queries(c: &mut Criterion) {
    let env = Env::new();
    let mut group = configure(c, "w4_query");
    for peer in env.peers(|c| c.queries) {
        let store = if peer.caps().restore {
            let dir = built(&env, &*peer);
            env.open(&*peer, &dir)
        } else {
            let store = env.open(&*peer, &env.dir(&["built", peer.name()]));
            for at in (0..locks()).step_by(workload::LOAD_CHUNK as usize) {
                let chunk = env.data.locks(at..(at + workload::LOAD_CHUNK).min(locks()));
                env.rt.block_on(store.load(chunk)).expect("load");
            }
            store
        };
        let shape = env.data.shape();
        let mut rng = Rng::new(7);
        group.bench_function(BenchmarkId::new("by_client", peer.name()), |b| {
            b.iter(|| {
                let client = &env.data.clients()[rng.below(shape.clients) as usize];
                env.rt.block_on(store.by_client(client)).expect("query")
            })
        });
        group.bench_function(BenchmarkId::new("by_file", peer.name()), |b| {
            b.iter(|| {
                let file = &env.data.files()[rng.below(shape.files) as usize];
                env.rt.block_on(store.by_file(file)).expect("query")
            })
        });
        env.rt.block_on(store.close()).expect("close");
    }
    group.finish();
}

/// W5: 64 tasks of durable grants on lockwal's 1M-lock store, without and
/// with compactions running back to back.
fn w5_compaction(c: &mut Criterion) {
    use engines::wal::Wal;
    let env = Env::new();
    let tasks = if quick() { 16 } else { 64 };
    let dir = built(&env, &Wal::Snapshot);
    let options = lockwal::wal::WalOptions { compact_after_bytes: None, ..Wal::Snapshot.options() };
    let wal = Arc::new(env.rt.block_on(Wal::Snapshot.open_with(&dir, options)).expect("open"));
    let store: Arc<dyn Store> = wal.clone();
    let mut group = configure(c, "w5_puts_during_compaction");
    group.throughput(Throughput::Elements(tasks as u64));
    group.bench_function(BenchmarkId::new("lockwal-wal", "no-compaction"), |b| {
        b.iter_custom(|iters| concurrent_puts(&env, &store, tasks, iters))
    });
    let stop = Arc::new(AtomicBool::new(false));
    let compactor = {
        let (wal, stop) = (wal.clone(), stop.clone());
        env.rt.spawn(async move {
            while !stop.load(Relaxed) {
                wal.store.compact().await.expect("compact");
            }
        })
    };
    group.bench_function(BenchmarkId::new("lockwal-wal", "compacting"), |b| {
        b.iter_custom(|iters| concurrent_puts(&env, &store, tasks, iters))
    });
    stop.store(true, Relaxed);
    env.rt.block_on(compactor).expect("compactor");
    env.rt.block_on(store.close()).expect("close");
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, w1_serial, w2_concurrent, w3_restore, w4_queries, w5_compaction);
criterion_main!(benches);
