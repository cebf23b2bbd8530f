//! Where the time of lockwal's read path goes, one phase at a time, on a
//! WAL store built by `compare build --peer lockwal-wal` (DESIGN, "The read
//! path", quotes its output).
//!
//! ```text
//! compare build --peer lockwal-wal --dir /tmp/s --locks 1000000
//! read_path --dir /tmp/s [--locks 1000000] [--queries 20000]
//! ```
//!
//! Phases, in one process, each timed alone:
//! - `open`: `WalLockStore::open_sync` (snapshot load and replay);
//! - `visit, dropped`: `for_each_lock`, each lock dropped at once (making
//!   the owned records: the reference counts);
//! - `visit into a Vec`: the same into a `Vec` sized by `count`, kept (what a
//!   lock manager does; adds the caller's fresh memory);
//! - `read_locks().collect()`: the iterator form;
//! - `list_locks(all)`: the sorted listing;
//! - `test_lock` once on every file, then again: the first builds each
//!   crowded file's range tree, which a restore leaves unbuilt;
//! - queries by client and by file on random keys (`list_locks`), and the
//!   same query run again at once ("hot": its memory in the cache), whose
//!   difference from the first is the cost of cache misses.
//!
//! It prints one line per phase and asserts only that every phase saw every
//! lock.

use lockwal::wal::{WalLockStore, WalOptions};
use lockwal::{LockQuery, LockStore};
use lockwal_compare::data::{Rng, Shape};
use lockwal_compare::stats::Latency;
use lockwal_compare::{Dataset, Result};
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn main() -> Result<()> {
    let (mut dir, mut locks, mut queries) = (None, 1_000_000u64, 20_000usize);
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).ok_or("every option takes a value")?;
        match pair[0].as_str() {
            "--dir" => dir = Some(PathBuf::from(value)),
            "--locks" => locks = value.parse()?,
            "--queries" => queries = value.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let dir = dir.ok_or("--dir DIR (a store built by `compare build --peer lockwal-wal`)")?;
    let data = Dataset::new(Shape::default());
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;

    let t = Instant::now();
    let store = WalLockStore::open_sync(&dir, WalOptions::default())?;
    phase("open", t.elapsed(), store.stats().locks, locks);

    let t = Instant::now();
    let n = runtime.block_on(store.for_each_lock(&mut drop))?;
    phase("visit, dropped", t.elapsed(), n, locks);

    let t = Instant::now();
    let mut kept = Vec::with_capacity(runtime.block_on(store.count())? as usize);
    runtime.block_on(store.for_each_lock(&mut |lock| kept.push(lock)))?;
    phase("visit into a Vec", t.elapsed(), kept.len() as u64, locks);
    drop(kept);

    let t = Instant::now();
    let collected: Vec<_> = store.read_locks()?.collect();
    phase("read_locks().collect()", t.elapsed(), collected.len() as u64, locks);
    drop(collected);

    let t = Instant::now();
    let sorted = runtime.block_on(store.list_locks(&LockQuery::all()))?;
    phase("list_locks(all), sorted", t.elapsed(), sorted.len() as u64, locks);
    drop(sorted);

    // One test query on every file, twice: the first on a file of many
    // locks builds its range tree (a restore leaves them unbuilt), the
    // second finds it built. Each file's candidate is the first stored lock
    // on it, made exclusive under a fresh id and owner, so that it conflicts
    // with that lock at least.
    let mut candidates = Vec::with_capacity(data.files().len());
    let mut tested = std::collections::HashSet::new();
    for n in 0..locks {
        if tested.len() == data.files().len() {
            break;
        }
        let mut candidate = data.lock(n);
        if tested.insert(candidate.file_id.clone()) {
            candidate.id = "read-path-candidate".into();
            candidate.owner_id = "read-path-owner".into();
            if let lockwal::model::LockKind::ByteRange(range) = &mut candidate.kind {
                range.lock_type = lockwal::model::LockType::Exclusive;
            }
            candidates.push(candidate);
        }
    }
    for pass in ["test_lock per file, first", "test_lock per file, again"] {
        let t = Instant::now();
        let mut refused = 0;
        for candidate in &candidates {
            refused += usize::from(!runtime.block_on(store.test_lock(candidate))?.holders.is_empty());
        }
        let took = t.elapsed();
        assert_eq!(refused, candidates.len(), "every candidate conflicts with the lock it copies");
        println!(
            "{pass:>24}: {:>8.1} ms  {:>6.1} µs per file ({} files)",
            took.as_secs_f64() * 1e3,
            took.as_secs_f64() * 1e6 / candidates.len() as f64,
            candidates.len()
        );
    }

    let shape = data.shape();
    for (name, keys, by_client) in [("by client", data.clients(), true), ("by file", data.files(), false)] {
        let mut rng = Rng::new(7);
        let (mut cold, mut hot, mut rows) = (Vec::new(), Vec::new(), 0);
        for _ in 0..queries {
            let key = &keys[rng.below(if by_client { shape.clients } else { shape.files }) as usize];
            let query = if by_client { LockQuery::by_client(key.as_str()) } else { LockQuery::by_file(key.as_str()) };
            for samples in [&mut cold, &mut hot] {
                let t = Instant::now();
                let found = runtime.block_on(store.list_locks(&query))?;
                samples.push(t.elapsed());
                rows += found.len();
            }
        }
        let (cold, hot) = (Latency::of(&mut cold), Latency::of(&mut hot));
        println!(
            "{name:>24}: p50 {:>8.1} µs  p99 {:>8.1} µs | again at once (hot): p50 {:>8.1} µs  p99 {:>8.1} µs | {:.0} locks each",
            cold.p50_us,
            cold.p99_us,
            hot.p50_us,
            hot.p99_us,
            rows as f64 / (2 * queries.max(1)) as f64
        );
    }
    Ok(())
}

fn phase(name: &str, took: Duration, saw: u64, locks: u64) {
    assert_eq!(saw, locks, "{name} saw {saw} locks, the store holds {locks}");
    println!(
        "{name:>24}: {:>8.1} ms  {:>6.0} ns per lock",
        took.as_secs_f64() * 1e3,
        took.as_nanos() as f64 / locks as f64
    );
}
