//! Runs the comparison and writes one JSON document with every number.
//!
//! ```text
//! compare [--quick] [--dir DIR] [--out FILE] [--peers a,b] [--workloads w1,w2,w3,w4,w5,w6,w7]
//!         [--locks N] [--handles N] [--tasks 1,4,16,64,256] [--warmup S] [--seconds S] [--rounds N]
//!         [--queries N] [--restores N] [--no-cold] [--lockwal PATH] [--failover-seconds S]
//! ```
//!
//! W6 (lockwal WAL only): `consume_handle_by_create_guid` latency with
//! `--handles` stored handles, and the restore of a compacted store of
//! `--locks` locks plus `--handles` handles (in a child process, like W3).
//! Only W6: `--workloads w6` (`--peers` without `lockwal-wal` skips it).
//!
//! W7 (lockwal alone): checked grants. `test_lock` on one file holding
//! 10,000 locks (memory and WAL backends, in process), and W2's grants as
//! checked grants against W2's plain puts, interleaved round by round, at 1
//! and 64 tasks (WAL, and PostgreSQL when it takes part).
//!
//! W8 (lockwal PostgreSQL alone): failover. `lockwal cluster-torture
//! --nodes 3` (the binary named by `--lockwal PATH`, a build with the
//! `postgres` feature; `scripts/compare` builds it) for 60 s (4 s with
//! `--quick`) against the same server, for the time from a SIGKILL of a
//! node holding locks to the cluster enforcing grace; its JSON goes into
//! the report as it is. Skipped with a message without `--lockwal` or a
//! server.
//!
//! `lockwal-postgres` (W1, W2 and W7 only) takes part when `LOCKWAL_TEST_PG_URL`
//! names a PostgreSQL server; `scripts/compare` starts a throwaway one.
//!
//! W3/W4 run in a fresh child process per restore (this binary, with
//! `child-restore`), so that its peak RSS is the restore's alone.
//!
//! For profiling one store's restore by hand:
//!
//! ```text
//! compare build --peer lockwal-wal --dir /tmp/s --locks 1000000
//! perf record -g compare child-restore --peer lockwal-wal --dir /tmp/s --locks 1000000 --queries 0
//! ```

use lockwal_compare::data::Shape;
use lockwal_compare::engines;
use lockwal_compare::machine::{self, Machine};
use lockwal_compare::workload::{self, Queries, Restore, Round, Run, Timing};
use lockwal_compare::{Caps, Dataset, Peer, Result};
use serde::Serialize;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Serialize)]
struct Settings {
    quick: bool,
    locks: u64,
    tasks: Vec<usize>,
    timing: Timing,
    rounds: usize,
    queries: usize,
    restores: usize,
    cold: bool,
    w5_tasks: usize,
    handles: u64,
    failover_seconds: u64,
    #[serde(skip)]
    lockwal: Option<PathBuf>,
    #[serde(skip)]
    dir: PathBuf,
    #[serde(skip)]
    out: Option<PathBuf>,
    #[serde(skip)]
    peers: Option<Vec<String>>,
    #[serde(skip)]
    workloads: Vec<String>,
}

impl Settings {
    fn parse(args: &[String]) -> Result<Self> {
        let quick = args.iter().any(|a| a == "--quick");
        let mut s = if quick {
            Settings {
                quick,
                locks: 4096,
                tasks: vec![1, 4, 16],
                timing: Timing { warmup: Duration::from_millis(50), measure: Duration::from_millis(200) },
                rounds: 1,
                queries: 20,
                restores: 1,
                cold: true,
                w5_tasks: 16,
                handles: 512,
                failover_seconds: 4,
                lockwal: None,
                dir: std::env::temp_dir().join(format!("lockwal-compare-{}", std::process::id())),
                out: None,
                peers: None,
                workloads: vec![],
            }
        } else {
            Settings {
                quick,
                locks: 1_000_000,
                tasks: vec![1, 4, 16, 64, 256],
                // W1/W2: 3 rounds of 3 s after 0.5 s of warm-up each. A round
                // long enough that lockwal's log passes its compaction
                // threshold at 64 tasks and more, as it would under sustained
                // load (shorter rounds measured small stores that never
                // compacted).
                timing: Timing { warmup: Duration::from_millis(500), measure: Duration::from_secs(9) },
                rounds: 3,
                queries: 2000,
                restores: 5,
                cold: true,
                w5_tasks: 64,
                handles: 100_000,
                failover_seconds: 60,
                lockwal: None,
                dir: PathBuf::from("target/compare-data"),
                out: None,
                peers: None,
                workloads: vec![],
            }
        };
        let mut it = args.iter();
        let secs = |v: &str| -> Result<Duration> { Ok(Duration::from_secs_f64(v.parse()?)) };
        while let Some(arg) = it.next() {
            let mut value = || it.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--quick" => {}
                "--no-cold" => s.cold = false,
                "--dir" => s.dir = value()?.into(),
                "--out" => s.out = Some(value()?.into()),
                "--peers" => s.peers = Some(value()?.split(',').map(str::to_owned).collect()),
                "--workloads" => s.workloads = value()?.split(',').map(str::to_owned).collect(),
                "--locks" => s.locks = value()?.parse()?,
                "--tasks" => s.tasks = value()?.split(',').map(str::parse).collect::<std::result::Result<_, _>>()?,
                "--warmup" => s.timing.warmup = secs(value()?)?,
                "--seconds" => s.timing.measure = secs(value()?)?,
                "--rounds" => s.rounds = value()?.parse::<usize>()?.max(1),
                "--queries" => s.queries = value()?.parse()?,
                "--restores" => s.restores = value()?.parse()?,
                "--w5-tasks" => s.w5_tasks = value()?.parse()?,
                "--handles" => s.handles = value()?.parse()?,
                "--lockwal" => s.lockwal = Some(value()?.into()),
                "--failover-seconds" => s.failover_seconds = value()?.parse()?,
                other => return Err(format!("unknown argument {other} (see the module docs)").into()),
            }
        }
        if s.workloads.is_empty() {
            s.workloads = ["w1", "w2", "w3", "w4", "w5", "w6", "w7", "w8"].map(String::from).to_vec();
        }
        Ok(s)
    }

    /// W1/W2: each round warms up for the full warm-up and measures its
    /// share of the measured time.
    fn round_timing(&self) -> Timing {
        Timing { warmup: self.timing.warmup, measure: self.timing.measure / self.rounds as u32 }
    }

    fn runs(&self, workload: &str) -> bool {
        self.workloads.iter().any(|w| w == workload)
    }

    fn peers(&self, wanted: impl Fn(Caps) -> bool) -> Vec<Arc<dyn Peer>> {
        engines::all()
            .into_iter()
            .filter(|p| wanted(p.caps()))
            .filter(|p| self.peers.as_ref().is_none_or(|names| names.iter().any(|n| n == p.name())))
            .collect()
    }
}

/// Collects results and failures (a failing peer is reported, not fatal).
#[derive(Default)]
struct Report {
    w1: Vec<Value>,
    w2: Vec<Value>,
    w3: Vec<Value>,
    w4: Vec<Value>,
    w5: Option<Value>,
    w6: Option<Value>,
    w7: Option<Value>,
    w8: Option<Value>,
    errors: Vec<Value>,
}

impl Report {
    fn failed(&mut self, workload: &str, peer: &str, error: &dyn std::fmt::Display) {
        eprintln!("  FAILED {workload} {peer}: {error}");
        self.errors.push(json!({ "workload": workload, "peer": peer, "error": error.to_string() }));
    }
}

fn fresh_dir(path: &Path) -> Result<PathBuf> {
    if path.exists() {
        std::fs::remove_dir_all(path)?;
    }
    std::fs::create_dir_all(path)?;
    Ok(path.to_owned())
}

fn disk_bytes(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(m) if m.is_dir() => stack.push(entry.path()),
                Ok(m) => total += m.blocks() * 512,
                Err(_) => {}
            }
        }
    }
    total
}

fn summary(run: &Run) -> String {
    format!(
        "{:>9.0} ops/s  p50 {:>8.0} us  p99 {:>8.0} us  ({} ops)",
        run.ops_per_sec, run.latency.p50_us, run.latency.p99_us, run.ops
    )
}

/// One round of W1 or W2 for `peer` (`tasks: None` is W1) on a fresh store.
async fn round(s: &Settings, data: &Arc<Dataset>, peer: &dyn Peer, tasks: Option<usize>) -> Result<Round> {
    let dir = fresh_dir(&s.dir.join(if tasks.is_some() { "w2" } else { "w1" }).join(peer.name()))?;
    let store = peer.open(&dir).await?;
    let timing = s.round_timing();
    let round = match tasks {
        None => workload::serial(store.clone(), data.clone(), timing).await?,
        Some(tasks) => workload::concurrent(store.clone(), data.clone(), tasks, timing).await?,
    };
    store.close().await?;
    std::fs::remove_dir_all(&dir)?;
    Ok(round)
}

/// Runs every (peer, level) point in `s.rounds` rounds, each round visiting
/// every point once, so that every store is measured across the whole
/// stretch of time rather than in one slice of it: the disk's speed drifts
/// within a run, and a store measured only while it was slow would be
/// compared unfairly. A point that fails is reported and skipped after.
async fn interleaved(
    s: &Settings,
    data: &Arc<Dataset>,
    workload: &str,
    points: &[(Arc<dyn Peer>, Option<usize>)],
    report: &mut Report,
) -> Vec<Option<Run>> {
    let mut rounds: Vec<Vec<Round>> = vec![Vec::new(); points.len()];
    let mut failed = vec![false; points.len()];
    for number in 1..=s.rounds {
        for (i, (peer, tasks)) in points.iter().enumerate() {
            if failed[i] {
                continue;
            }
            match round(s, data, &**peer, *tasks).await {
                Ok(r) => {
                    let level = tasks.map(|t| format!("{t:>3} tasks ")).unwrap_or_default();
                    let summary = summary(Run::of_rounds(vec![r.clone()]).as_ref().expect("one round"));
                    eprintln!("  round {number}/{}  {:<16} {level}{summary}", s.rounds, peer.name());
                    rounds[i].push(r);
                }
                Err(e) => {
                    failed[i] = true;
                    report.failed(workload, peer.name(), &e);
                }
            }
        }
    }
    rounds.into_iter().zip(failed).map(|(r, failed)| if failed { None } else { Run::of_rounds(r) }).collect()
}

async fn w1(s: &Settings, data: &Arc<Dataset>, report: &mut Report) {
    eprintln!("W1 serial durable grant+release ({:?} per store in {} rounds)", s.timing.measure, s.rounds);
    let points: Vec<_> = s.peers(|c| c.serial).into_iter().map(|p| (p, None)).collect();
    for ((peer, _), run) in points.iter().zip(interleaved(s, data, "w1", &points, report).await) {
        if let Some(run) = run {
            eprintln!("  {:<16} {}", peer.name(), summary(&run));
            report.w1.push(json!({ "peer": peer.name(), "run": run }));
        }
    }
}

async fn w2(s: &Settings, data: &Arc<Dataset>, report: &mut Report) {
    eprintln!("W2 concurrent durable grants ({:?} per level in {} rounds)", s.timing.measure, s.rounds);
    let peers = s.peers(|c| c.concurrent);
    // Level by level, so that the stores compared at one level (lockwal and
    // its raw floor above all) are measured seconds apart, not minutes.
    let points: Vec<_> = s.tasks.iter().flat_map(|&t| peers.iter().map(move |p| (Arc::clone(p), Some(t)))).collect();
    let runs = interleaved(s, data, "w2", &points, report).await;
    for (i, peer) in peers.iter().enumerate() {
        let mut ok = Vec::new();
        for (level, &tasks) in s.tasks.iter().enumerate() {
            if let Some(run) = runs[level * peers.len() + i].clone() {
                eprintln!("  {:<16} {tasks:>3} tasks {}", peer.name(), summary(&run));
                ok.push(run);
            }
        }
        report.w2.push(json!({ "peer": peer.name(), "runs": ok }));
    }
}

#[derive(Debug, serde::Deserialize, Serialize)]
struct ChildOutput {
    restore: Restore,
    queries: Option<Queries>,
}

/// Restores `dir` in a fresh process (and runs W4 there when `queries > 0`).
fn child_restore(s: &Settings, peer: &str, dir: &Path, queries: usize) -> Result<ChildOutput> {
    let (locks, queries) = (s.locks.to_string(), queries.to_string());
    run_child("child-restore", &["--peer", peer, "--locks", &locks, "--queries", &queries], dir)
}

/// Runs this binary as `mode` with `args` and `--dir dir` in a fresh
/// process and decodes the JSON it prints.
fn run_child<T: serde::de::DeserializeOwned>(mode: &str, args: &[&str], dir: &Path) -> Result<T> {
    let out = Command::new(std::env::current_exe()?).arg(mode).args(args).arg("--dir").arg(dir).output()?;
    if !out.status.success() {
        return Err(format!("child failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr)).into());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

async fn w3_w4(s: &Settings, data: &Arc<Dataset>, report: &mut Report) {
    let (restore, queries) = (s.runs("w3"), s.runs("w4"));
    eprintln!("W3/W4 restore and queries on {} locks", s.locks);
    let peers = s.peers(|c| (restore && c.restore) || (queries && c.queries));
    for peer in peers {
        let caps = peer.caps();
        let dir = s.dir.join("w3").join(peer.name());
        let mut build_s = 0.0;
        let mut disk = 0;
        if caps.restore {
            let build = async {
                fresh_dir(&dir)?;
                workload::build(&*peer, &dir, data, s.locks).await
            }
            .await;
            build_s = match build {
                Ok(t) => t.as_secs_f64(),
                Err(e) => {
                    report.failed("w3", peer.name(), &e);
                    continue;
                }
            };
            // The build's files go to the disk before any restore is timed,
            // so that no store's restores run during its own writeback.
            if let Err(e) = machine::write_back(&dir) {
                report.failed("w3", peer.name(), &e);
                continue;
            }
            disk = disk_bytes(&dir);
            eprintln!(
                "  {:<16} built in {build_s:.1} s, {:.0} MiB on disk",
                peer.name(),
                disk as f64 / (1 << 20) as f64
            );
        }
        let mut warm = Vec::new();
        let mut w4 = None;
        // The memory backend cannot be reopened: its W4 runs in this process.
        if !caps.restore {
            if queries && caps.queries {
                let result = async {
                    let store = peer.open(&dir).await?;
                    let mut at = 0;
                    while at < s.locks {
                        let end = (at + workload::LOAD_CHUNK).min(s.locks);
                        store.load(data.locks(at..end)).await?;
                        at = end;
                    }
                    workload::queries(&*store, data, s.queries, 7).await
                }
                .await;
                match result {
                    Ok(q) => w4 = Some(q),
                    Err(e) => report.failed("w4", peer.name(), &e),
                }
            }
        } else {
            let reps = if restore { s.restores } else { 1 };
            for rep in 0..reps {
                let q = if queries && caps.queries && rep + 1 == reps { s.queries } else { 0 };
                match child_restore(s, peer.name(), &dir, q) {
                    Ok(out) => {
                        eprintln!(
                            "  {:<16} restore (warm) {:.3} s (open {:.3} s), peak RSS {:.0} MiB, {} locks",
                            peer.name(),
                            out.restore.total_s,
                            out.restore.open_s,
                            out.restore.peak_rss_bytes as f64 / (1 << 20) as f64,
                            out.restore.locks
                        );
                        warm.push(out.restore);
                        if out.queries.is_some() {
                            w4 = out.queries;
                        }
                    }
                    Err(e) => report.failed("w3", peer.name(), &e),
                }
            }
        }
        let mut cold = None;
        if restore && caps.restore && s.cold {
            let evicted = machine::evict(&dir).map_err(Into::into);
            match evicted.and_then(|_| child_restore(s, peer.name(), &dir, 0)) {
                Ok(out) => {
                    eprintln!("  {:<16} restore (cold) {:.3} s", peer.name(), out.restore.total_s);
                    cold = Some(out.restore);
                }
                Err(e) => report.failed("w3-cold", peer.name(), &e),
            }
        }
        if let Some(q) = &w4 {
            eprintln!(
                "  {:<16} by client p50 {:.0} us p99 {:.0} us ({:.0} rows); by file p50 {:.0} us p99 {:.0} us ({:.0} rows)",
                peer.name(),
                q.by_client.p50_us,
                q.by_client.p99_us,
                q.by_client_rows,
                q.by_file.p50_us,
                q.by_file.p99_us,
                q.by_file_rows
            );
            report.w4.push(json!({ "peer": peer.name(), "queries": q }));
        }
        if restore && caps.restore {
            report.w3.push(json!({
                "peer": peer.name(), "build_s": build_s, "disk_bytes": disk, "warm": warm, "cold": cold,
            }));
        }
        // W5 reuses lockwal's 1M-lock store; the others are done.
        if peer.name() != "lockwal-wal" || !s.runs("w5") {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

async fn w5(s: &Settings, data: &Arc<Dataset>, report: &mut Report) {
    let wanted = s.peers.as_ref().is_none_or(|p| p.iter().any(|n| n == "lockwal-wal"));
    if !wanted {
        return;
    }
    eprintln!("W5 durable puts while compactions run ({} tasks)", s.w5_tasks);
    let dir = s.dir.join("w3").join("lockwal-wal");
    let result = async {
        if !dir.exists() {
            fresh_dir(&dir)?;
            workload::build(&engines::wal::Wal::Snapshot, &dir, data, s.locks).await?;
        }
        workload::during_compaction(&dir, data.clone(), s.w5_tasks, s.timing).await
    }
    .await;
    match result {
        Ok(r) => {
            eprintln!("  without compaction {}", summary(&r.without));
            eprintln!("  with compactions   {} ({} compactions)", summary(&r.with), r.compactions);
            report.w5 = Some(serde_json::to_value(r).expect("serializable"));
        }
        Err(e) => report.failed("w5", "lockwal-wal", &e),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Runs the W6 restore child once on `dir`.
fn child_handles_restore(s: &Settings, dir: &Path) -> Result<workload::HandleRestore> {
    let (locks, handles) = (s.locks.to_string(), s.handles.to_string());
    run_child("child-handles-restore", &["--locks", &locks, "--handles", &handles], dir)
}

fn restore_line(r: &workload::HandleRestore) -> String {
    format!(
        "open {:.3} s (replay {:.3} s, {}, {} log records after it), list_handles {:.3} s, peak RSS {:.0} MiB",
        r.open_s,
        r.replay_s,
        if r.from_snapshot { "from the snapshot" } else { "from the log alone" },
        r.records_replayed,
        r.list_handles_s,
        r.peak_rss_bytes as f64 / (1 << 20) as f64
    )
}

async fn w6(s: &Settings, data: &Arc<Dataset>, report: &mut Report) {
    let wanted = s.peers.as_ref().is_none_or(|p| p.iter().any(|n| n == "lockwal-wal"));
    if !wanted {
        return;
    }
    eprintln!(
        "W6 durable handles: consume by create GUID with {} stored; restore of {} locks + {} handles",
        s.handles, s.locks, s.handles
    );
    let mut w6 = serde_json::Map::new();
    let dir = s.dir.join("w6").join("consume");
    let consume = async {
        fresh_dir(&dir)?;
        workload::consume_by_create_guid(&dir, s.handles, s.timing, 11).await
    }
    .await;
    let _ = std::fs::remove_dir_all(&dir);
    match consume {
        Ok(c) => {
            eprintln!(
                "  consume_handle_by_create_guid p50 {:.0} us p99 {:.0} us ({} samples); put back p50 {:.0} us p99 {:.0} us",
                c.consume.p50_us, c.consume.p99_us, c.consume.samples, c.put_back.p50_us, c.put_back.p99_us
            );
            w6.insert("consume".into(), serde_json::to_value(c).expect("serializable"));
        }
        Err(e) => report.failed("w6-consume", "lockwal-wal", &e),
    }

    let dir = s.dir.join("w6").join("restore");
    let build = async {
        fresh_dir(&dir)?;
        workload::build_handle_store(&dir, data, s.locks, s.handles).await
    }
    .await;
    match build {
        Ok(took) => {
            if let Err(e) = machine::write_back(&dir) {
                report.failed("w6-restore", "lockwal-wal", &e);
            }
            let disk = disk_bytes(&dir);
            eprintln!("  built in {:.1} s, {:.0} MiB on disk", took.as_secs_f64(), disk as f64 / (1 << 20) as f64);
            let mut warm = Vec::new();
            for _ in 0..s.restores {
                match child_handles_restore(s, &dir) {
                    Ok(r) => {
                        eprintln!("  restore (warm) {}", restore_line(&r));
                        warm.push(r);
                    }
                    Err(e) => report.failed("w6-restore", "lockwal-wal", &e),
                }
            }
            let mut cold = None;
            if s.cold {
                let evicted = machine::evict(&dir).map_err(Into::into);
                match evicted.and_then(|_| child_handles_restore(s, &dir)) {
                    Ok(r) => {
                        eprintln!("  restore (cold) {}", restore_line(&r));
                        cold = Some(r);
                    }
                    Err(e) => report.failed("w6-restore-cold", "lockwal-wal", &e),
                }
            }
            w6.insert(
                "restore".into(),
                json!({ "build_s": took.as_secs_f64(), "disk_bytes": disk, "warm": warm, "cold": cold }),
            );
        }
        Err(e) => report.failed("w6-restore", "lockwal-wal", &e),
    }
    let _ = std::fs::remove_dir_all(&dir);
    report.w6 = Some(Value::Object(w6));
}

/// Locks on W7's crowded file: issue 21's "a test on a file holding
/// 10,000 locks".
const W7_FILE_LOCKS: u64 = 10_000;

/// W7's task levels: one task, and 64 (16 with `--quick`).
/// Whether W7's peers include the PostgreSQL backend (its cluster runs
/// beside it then).
fn plain_has_postgres(peers: &[Arc<dyn Peer>]) -> bool {
    peers.iter().any(|p| p.name() == "lockwal-postgres")
}

fn w7_levels(s: &Settings) -> [usize; 2] {
    [1, if s.quick { 16 } else { 64 }]
}

async fn w7(s: &Settings, data: &Arc<Dataset>, report: &mut Report) {
    let queries = s.queries * 10;
    eprintln!("W7 checked grants: {queries} test_lock calls on a file of {W7_FILE_LOCKS} locks; W2 checked vs plain");
    let mut w7 = serde_json::Map::new();
    let mut tests = Vec::new();
    for peer in s.peers(|_| true).into_iter().filter(|p| ["lockwal-memory", "lockwal-wal"].contains(&p.name())) {
        let test = async {
            let dir = fresh_dir(&s.dir.join("w7").join(peer.name()))?;
            let store = peer.open(&dir).await?;
            let lockwal = store.lockwal().ok_or("not a lockwal store")?;
            let result = workload::crowded_test(lockwal, data, W7_FILE_LOCKS, queries).await?;
            store.close().await?;
            std::fs::remove_dir_all(&dir)?;
            Ok::<_, lockwal_compare::Error>(result)
        };
        match test.await {
            Ok(t) => {
                let l = &t.latency;
                eprintln!(
                    "  {:<16} test_lock p50 {:.1} us  p99 {:.1} us  max {:.0} us",
                    peer.name(),
                    l.p50_us,
                    l.p99_us,
                    l.max_us
                );
                tests.push(json!({ "peer": peer.name(), "test": t }));
            }
            Err(e) => report.failed("w7-test", peer.name(), &e),
        }
    }
    w7.insert("test".into(), Value::Array(tests));
    let plain: Vec<Arc<dyn Peer>> = s
        .peers(|c| c.concurrent)
        .into_iter()
        .filter(|p| ["lockwal-wal", "lockwal-postgres"].contains(&p.name()))
        .collect();
    let peers: Vec<Arc<dyn Peer>> = plain
        .into_iter()
        .flat_map(|p| [Arc::clone(&p), Arc::new(engines::checked::Checked::new(p)) as Arc<dyn Peer>])
        .collect();
    let levels = w7_levels(s);
    let mut points: Vec<_> = levels.iter().flat_map(|&t| peers.iter().map(move |p| (Arc::clone(p), Some(t)))).collect();
    // Several active nodes (issue 22): three nodes at the top level's
    // tasks in all, and at that many per node, beside one node's checked
    // grants at the top level.
    let cluster = engines::postgres::Postgres::from_env()
        .filter(|_| plain_has_postgres(&peers))
        .map(|pg| Arc::new(engines::postgres::PostgresNodes { pg }) as Arc<dyn Peer>);
    let top = levels[levels.len() - 1];
    let cluster_levels = [top, top * engines::postgres::NODES];
    if let Some(cluster) = &cluster {
        points.extend(cluster_levels.iter().map(|&t| (Arc::clone(cluster), Some(t))));
    }
    let runs = interleaved(s, data, "w7", &points, report).await;
    let mut grants = Vec::new();
    for (i, peer) in peers.iter().enumerate() {
        let mut ok = Vec::new();
        for (level, &tasks) in levels.iter().enumerate() {
            if let Some(run) = runs[level * peers.len() + i].clone() {
                eprintln!("  {:<24} {tasks:>3} tasks {}", peer.name(), summary(&run));
                ok.push(run);
            }
        }
        grants.push(json!({ "peer": peer.name(), "runs": ok }));
    }
    if let Some(cluster) = &cluster {
        let mut ok = Vec::new();
        for (k, &tasks) in cluster_levels.iter().enumerate() {
            if let Some(run) = runs[levels.len() * peers.len() + k].clone() {
                eprintln!("  {:<24} {tasks:>3} tasks {}", cluster.name(), summary(&run));
                ok.push(run);
            }
        }
        grants.push(json!({ "peer": cluster.name(), "runs": ok }));
    }
    w7.insert("grants".into(), Value::Array(grants));
    report.w7 = Some(Value::Object(w7));
}

/// Nodes of W8's cluster.
const W8_NODES: usize = 3;

/// W8: `lockwal cluster-torture` on the comparison's PostgreSQL server; its
/// JSON (kills, takeovers, time from each kill to grace, violations) goes
/// into the report unchanged, with the command that produced it.
fn w8(s: &Settings, report: &mut Report) {
    let wanted = s.peers.as_ref().is_none_or(|p| p.iter().any(|n| n == "lockwal-postgres"));
    let (Some(bin), Some(url)) = (s.lockwal.as_ref(), std::env::var(engines::postgres::URL_VAR).ok()) else {
        if wanted {
            eprintln!("W8 failover skipped: it needs --lockwal PATH and {}", engines::postgres::URL_VAR);
        }
        return;
    };
    if !wanted {
        return;
    }
    let seconds = s.failover_seconds.to_string();
    let nodes = W8_NODES.to_string();
    let args = ["cluster-torture", "--url", &url, "--nodes", &nodes, "--seconds", &seconds, "--seed", "42", "--json"];
    eprintln!("W8 failover: lockwal cluster-torture, {W8_NODES} nodes, {seconds} s");
    let run = || -> Result<Value> {
        let out = Command::new(bin).args(args).output()?;
        let json: Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{}: {e}; stderr: {}", bin.display(), String::from_utf8_lossy(&out.stderr)))?;
        if !out.status.success() || json["passed"] != Value::Bool(true) {
            return Err(format!("cluster-torture failed ({}): violations {}", out.status, json["violations"]).into());
        }
        Ok(json)
    };
    match run() {
        Ok(json) => {
            let g = &json["grace_after_kill_ms"];
            eprintln!(
                "  kills {}, takeovers {}, kill -> grace {} times, p50 {} ms, max {} ms",
                json["kills"], json["takeovers"], g["count"], g["p50"], g["max"]
            );
            let shown: Vec<&str> = args.iter().map(|a| if *a == url { "URL" } else { a }).collect();
            report.w8 = Some(json!({ "command": format!("lockwal {}", shown.join(" ")), "torture": json }));
        }
        Err(e) => report.failed("w8", "lockwal-postgres", &e),
    }
}

async fn run(s: Settings) -> Result<Value> {
    std::fs::create_dir_all(&s.dir)?;
    let machine = Machine::describe(&s.dir);
    eprintln!(
        "{} x {}, {}, kernel {}, load {:?}",
        machine.nproc, machine.cpu, machine.fs, machine.kernel, machine.loadavg
    );
    let available: Vec<&str> = engines::all().iter().map(|p| p.name()).collect();
    let postgres = engines::postgres::Postgres::from_env().is_none().then_some("lockwal-postgres");
    let wanted = |name: &str| s.peers.as_ref().is_none_or(|names| names.iter().any(|n| n == name));
    if let Some(name) = postgres.filter(|&n| wanted(n) && (s.runs("w1") || s.runs("w2"))) {
        eprintln!("{name} skipped: {} is not set (scripts/pg-throwaway run ... sets it)", engines::postgres::URL_VAR);
    }
    for name in s.peers.iter().flatten().filter(|n| !available.contains(&n.as_str()) && Some(n.as_str()) != postgres) {
        eprintln!("unknown peer {name}, ignored");
    }
    let data = Arc::new(Dataset::new(Shape::default()));
    let started = Instant::now();
    let cpu_before = machine::CpuTimes::now();
    let device = machine::device_of(&s.dir).unwrap_or_default();
    let disk_before = machine::DiskTimes::now(&device);
    let mut report = Report::default();
    if s.runs("w1") {
        w1(&s, &data, &mut report).await;
    }
    if s.runs("w2") {
        w2(&s, &data, &mut report).await;
    }
    if s.runs("w3") || s.runs("w4") {
        w3_w4(&s, &data, &mut report).await;
    }
    if s.runs("w5") {
        w5(&s, &data, &mut report).await;
    }
    if s.runs("w6") {
        w6(&s, &data, &mut report).await;
    }
    if s.runs("w7") {
        w7(&s, &data, &mut report).await;
    }
    if s.runs("w8") {
        w8(&s, &mut report);
    }
    let (others, steal) = cpu_before.others_since(&machine::CpuTimes::now());
    let (others_written, flushes) = disk_before.since(&machine::DiskTimes::now(&device));
    eprintln!("other processes used {:.0}% of the CPUs during the run ({:.0}% stolen)", others * 100.0, steal * 100.0);
    eprintln!(
        "other processes wrote {} MiB to {device}; the device completed {flushes} flushes in all",
        others_written >> 20
    );
    let peers: Vec<Value> = engines::all()
        .iter()
        .map(|p| {
            let c = p.caps();
            json!({ "name": p.name(), "config": p.config(),
                    "caps": { "w1": c.serial, "w2": c.concurrent, "w3": c.restore, "w4": c.queries } })
        })
        .collect();
    Ok(json!({
        "format": 1,
        "machine": machine,
        "load_after": machine::loadavg(),
        "cpu_others": others,
        "cpu_steal": steal,
        "disk_device": device,
        "disk_others_written_bytes": others_written,
        "disk_flushes": flushes,
        "seconds": started.elapsed().as_secs_f64(),
        "unix_time": std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs(),
        "settings": s,
        "peers": peers,
        "w1": report.w1,
        "w2": report.w2,
        "w3": report.w3,
        "w4": report.w4,
        "w5": report.w5,
        "w6": report.w6,
        "w7": report.w7,
        "w8": report.w8,
        "errors": report.errors,
    }))
}

/// Parses `--peer`, `--dir`, `--locks`, `--queries` of the subcommands.
fn sub_args(args: &[String]) -> Result<(Arc<dyn Peer>, PathBuf, u64, usize)> {
    let (mut peer, mut dir, mut locks, mut queries) = (None, None, 0u64, 0usize);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--peer" => peer = engines::by_name(value),
            "--dir" => dir = Some(PathBuf::from(value)),
            "--locks" => locks = value.parse()?,
            "--queries" => queries = value.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    Ok((peer.ok_or("unknown or missing --peer")?, dir.ok_or("missing --dir")?, locks, queries))
}

async fn build(args: &[String]) -> Result<()> {
    let (peer, dir, locks, _) = sub_args(args)?;
    fresh_dir(&dir)?;
    let took = workload::build(&*peer, &dir, &Dataset::new(Shape::default()), locks).await?;
    eprintln!("built {} with {locks} locks in {took:.1?}", peer.name());
    Ok(())
}

/// `child-handles-restore --dir DIR --locks N --handles N`: W6's restore in
/// this fresh process; prints its JSON.
async fn child_handles(args: &[String]) -> Result<()> {
    let (mut dir, mut locks, mut handles) = (None, 0u64, 0u64);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let value = it.next().ok_or_else(|| format!("{arg} needs a value"))?;
        match arg.as_str() {
            "--dir" => dir = Some(PathBuf::from(value)),
            "--locks" => locks = value.parse()?,
            "--handles" => handles = value.parse()?,
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let restored = workload::restore_handles(&dir.ok_or("missing --dir")?, locks, handles).await?;
    println!("{}", serde_json::to_string(&restored)?);
    Ok(())
}

async fn child(args: &[String]) -> Result<()> {
    let (peer, dir, locks, queries) = sub_args(args)?;
    let data = Dataset::new(Shape::default());
    let (restore, store, resident) = workload::restore(&*peer, &dir, &data).await?;
    if restore.locks != locks {
        return Err(format!("{}: read back {} locks, expected {locks}", peer.name(), restore.locks).into());
    }
    drop(resident);
    let queries = if queries > 0 { Some(workload::queries(&*store, &data, queries, 7).await?) } else { None };
    store.close().await?;
    println!("{}", serde_json::to_string(&ChildOutput { restore, queries })?);
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    #[cfg(feature = "metrics")]
    metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    match args.first().map(String::as_str) {
        Some("child-restore") => return runtime.block_on(child(&args[1..])),
        Some("child-handles-restore") => return runtime.block_on(child_handles(&args[1..])),
        Some("build") => return runtime.block_on(build(&args[1..])),
        _ => {}
    }
    let settings = Settings::parse(&args)?;
    let out = settings.out.clone();
    let quick_dir = settings.quick.then(|| settings.dir.clone());
    let report = runtime.block_on(run(settings));
    if let Some(dir) = quick_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    let text = serde_json::to_string_pretty(&report?)?;
    match out {
        Some(path) => std::fs::write(path, text + "\n")?,
        None => println!("{text}"),
    }
    Ok(())
}
