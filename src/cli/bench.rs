//! `lockwal bench`: measure durable grant/release throughput and latency, or
//! restore time, on the operator's own disk.

use super::{CliResult, out, out_json};
use clap::{Args, ValueEnum};
use lockwal::model::{ByteRange, LockKind, LockType, PersistedLock, RangeFlavor, Timestamp};
use lockwal::wal::{SyncMode, WalLockStore, WalOptions};
use lockwal::{LockQuery, LockStore, Op};
use serde_json::json;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Copy, Clone, Debug, ValueEnum)]
pub(crate) enum Workload {
    /// Each task grants a lock and releases it, durably, again and again.
    GrantRelease,
    /// Fill the store (once), snapshot it, then time open + reading every lock.
    Restore,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
pub(crate) enum Sync {
    /// Acknowledge after fdatasync (the default; crash-safe).
    Always,
    /// Acknowledge after write (not crash-safe).
    Never,
}

#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// The store directory (created if missing; the grant-release workload
    /// leaves no locks behind)
    dir: PathBuf,
    /// Operations in all (grant-release: grants plus releases; restore: locks)
    #[arg(long, default_value_t = 20_000)]
    ops: u64,
    /// Concurrent tasks (grant-release)
    #[arg(long, default_value_t = 64)]
    tasks: u64,
    /// When writes are acknowledged
    #[arg(long, value_enum, default_value_t = Sync::Always)]
    sync: Sync,
    /// What to measure
    #[arg(long, value_enum, default_value_t = Workload::GrantRelease)]
    workload: Workload,
    /// Print one JSON object
    #[arg(long)]
    json: bool,
}

/// A lock of the benchmark's shape: 36-char id, one of 4 shares, a 32-hex
/// file id of 10,000, a ~40-char owner of 5,000, a 16-char client of 1,000.
fn lock(n: u64) -> PersistedLock {
    let h = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    PersistedLock {
        id: format!("{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}", n as u32, (h >> 48) as u16, n % 4096, h % 4096, h >> 16)
            .into(),
        share: format!("export{}", n % 4).into(),
        file_id: format!("{:032x}", h % 10_000).into(),
        owner_id: format!("nlm:client{:04}.example.com:{:05}:{:08x}", n % 5000, n % 5000, (n % 5000) * 7919).into(),
        client_id: format!("client{:04}.local", n % 1000).into(),
        kind: LockKind::ByteRange(ByteRange {
            lock_type: LockType::Exclusive,
            offset: (n % 64) * 4096,
            length: 4096,
            zero_byte: false,
            flavor: RangeFlavor::Posix,
        }),
        acquired_at: Timestamp::now(),
        server_epoch: 0,
    }
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)].as_secs_f64() * 1e6
}

fn progress(len: u64) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} ops {per_sec}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    Some(bar)
}

fn options(sync: Sync) -> WalOptions {
    let sync = match sync {
        Sync::Always => SyncMode::Always,
        Sync::Never => SyncMode::Never,
    };
    WalOptions { sync, ..WalOptions::default() }
}

pub(crate) fn bench(a: BenchArgs) -> CliResult {
    if a.ops == 0 || a.tasks == 0 {
        return Err(super::CliError::unusable("--ops and --tasks must be at least 1"));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| super::CliError::unusable(format!("starting the runtime: {e}")))?;
    match a.workload {
        Workload::GrantRelease => runtime.block_on(grant_release(a)),
        Workload::Restore => runtime.block_on(restore(a)),
    }
}

async fn grant_release(a: BenchArgs) -> CliResult {
    let store = Arc::new(WalLockStore::open(&a.dir, options(a.sync)).await?);
    let before = store.stats();
    let pairs = (a.ops / 2).max(1);
    let tasks = a.tasks.min(pairs);
    let bar = progress(pairs * 2);
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let store = Arc::clone(&store);
            let bar = bar.clone();
            let mine = pairs / tasks + u64::from(t < pairs % tasks);
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(mine as usize * 2);
                for i in 0..mine {
                    let lock = lock(t + i * tasks);
                    let id = lock.id.clone();
                    let op = Instant::now();
                    store.put_lock(lock).await?;
                    latencies.push(op.elapsed());
                    let op = Instant::now();
                    store.delete_lock(&id).await?;
                    latencies.push(op.elapsed());
                    if let Some(bar) = &bar {
                        bar.inc(2);
                    }
                }
                Ok::<_, lockwal::Error>(latencies)
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(pairs as usize * 2);
    for handle in handles {
        let mine = handle.await.map_err(|e| super::CliError::unusable(format!("benchmark task failed: {e}")))??;
        latencies.extend(mine);
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let after = store.stats();
    latencies.sort_unstable();
    let ops = latencies.len() as u64;
    let report = json!({
        "workload": "grant-release",
        "ops": ops,
        "tasks": tasks,
        "sync": format!("{:?}", a.sync).to_lowercase(),
        "seconds": seconds,
        "ops_per_sec": ops as f64 / seconds,
        "p50_us": percentile(&latencies, 50.0),
        "p99_us": percentile(&latencies, 99.0),
        "max_us": latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1e6),
        "fsyncs": after.fsyncs - before.fsyncs,
        "mean_batch": (ops as f64) / ((after.records_appended - before.records_appended).max(1) as f64),
    });
    store.close().await?;
    print(&report, a.json)
}

async fn restore(a: BenchArgs) -> CliResult {
    {
        let store = WalLockStore::open(&a.dir, WalOptions { compact_after_bytes: None, ..options(a.sync) }).await?;
        let have = store.count().await?;
        if have != 0 && have != a.ops {
            return Err(super::CliError::refused(format!(
                "{} holds {have} locks; the restore benchmark needs an empty store or one it filled with --ops {have}",
                a.dir.display()
            )));
        }
        if have == 0 {
            let bar = progress(a.ops);
            let mut n = 0;
            while n < a.ops {
                let end = (n + 4096).min(a.ops);
                store.transaction((n..end).map(|i| Op::PutLock(lock(i))).collect()).await?;
                if let Some(bar) = &bar {
                    bar.set_position(end);
                }
                n = end;
            }
            if let Some(bar) = bar {
                bar.finish_and_clear();
            }
        }
        store.compact().await?;
        store.close().await?;
    }
    let started = Instant::now();
    let store = WalLockStore::open(&a.dir, options(a.sync)).await?;
    let opened = started.elapsed();
    let locks = store.list_locks(&LockQuery::all()).await?;
    let seconds = started.elapsed().as_secs_f64();
    let report = json!({
        "workload": "restore",
        "ops": locks.len(),
        "tasks": 1,
        "sync": format!("{:?}", a.sync).to_lowercase(),
        "seconds": seconds,
        "open_seconds": opened.as_secs_f64(),
        "ops_per_sec": locks.len() as f64 / seconds,
        "p50_us": serde_json::Value::Null,
        "p99_us": serde_json::Value::Null,
        "fsyncs": store.stats().fsyncs,
    });
    drop(locks);
    store.close().await?;
    print(&report, a.json)
}

fn print(report: &serde_json::Value, json: bool) -> CliResult {
    if json {
        out_json(report)?;
    } else {
        for (key, value) in report.as_object().into_iter().flatten() {
            out(format!("{key:>12}: {value}"))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
