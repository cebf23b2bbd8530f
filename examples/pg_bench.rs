//! Throughput of the PostgreSQL backend next to pgbench running the
//! backend's single-write statements against the same server: durable
//! single-operation writes, each acknowledged only once committed. pgbench
//! commits one statement per transaction; the backend commits a lone write
//! the same way and concurrent writes in groups (one SQL transaction for the
//! writes queued, their lock upserts as one statement), which is what is
//! compared.
//!
//! ```sh
//! scripts/pg-throwaway run cargo run --release --features postgres --example pg_bench -- --tasks 1,64
//! ```
//!
//! Workloads (each operation is one durable write, waited for by its task):
//! - `put`: upsert of a byte-range lock, id drawn from 1..=100000;
//! - `putdel`: upsert of a lock with a fresh id, then its delete.
//!
//! For each workload and task count it runs `--rounds` rounds of: the
//! backend through `Arc<dyn LockStore>` (`--tasks` tasks sharing a pool of
//! as many connections), then pgbench (`-M prepared`, as many clients, two
//! threads) with a script made from the backend's own statement texts
//! (`lockwal::backend::postgres::sql`), then, for information, pgbench with
//! the same statements without the epoch fence. Short runs that alternate
//! many times, and the median of the per-round ratios, keep a changing load
//! on a shared machine from favouring either side. Before every run the
//! table is emptied and a CHECKPOINT taken. It prints ops/s, ratios, and
//! the group transactions the backend committed in the run with their mean
//! size, and asserts nothing.
//!
//! Options: `--url URL` (default `$LOCKWAL_TEST_PG_URL`), `--tasks 1,64`,
//! `--seconds 4`, `--rounds 5`, `--workloads put,putdel`, `--pgbench PATH`.

use lockwal::backend::postgres::sql::{Delete, PUT_LOCK, PUT_LOCK_FENCED};
use lockwal::backend::postgres::{GroupStats, PostgresConfig, PostgresLockStore, tokio_postgres};
use lockwal::model::*;
use lockwal::{LockStore, Op};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Workload {
    Put,
    PutDel,
}

impl Workload {
    fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::PutDel => "putdel",
        }
    }

    /// Operations per pgbench script execution.
    fn ops_per_script(self) -> f64 {
        match self {
            Workload::Put => 1.0,
            Workload::PutDel => 2.0,
        }
    }
}

struct Args {
    url: String,
    tasks: Vec<usize>,
    seconds: u64,
    rounds: usize,
    workloads: Vec<Workload>,
    pgbench: PathBuf,
}

fn usage(problem: &str) -> ! {
    eprintln!("pg_bench: {problem}");
    eprintln!(
        "usage: pg_bench [--url URL] [--tasks 1,64] [--seconds 4] [--rounds 5] [--workloads put,putdel] \
         [--pgbench PATH]"
    );
    std::process::exit(2)
}

fn find_pgbench() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("pgbench")).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut debian: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/pgbench"))
        .collect();
    debian.sort();
    debian.reverse();
    on_path.into_iter().chain(debian).find(|p| p.is_file())
}

fn parse_args() -> Args {
    let mut args = Args {
        url: std::env::var("LOCKWAL_TEST_PG_URL").unwrap_or_default(),
        tasks: vec![1, 64],
        seconds: 4,
        rounds: 5,
        workloads: vec![Workload::Put, Workload::PutDel],
        pgbench: PathBuf::new(),
    };
    let mut pgbench = None;
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().unwrap_or_else(|| usage(&format!("{flag} needs a value")));
        match flag.as_str() {
            "--url" => args.url = value(),
            "--tasks" => {
                args.tasks = value().split(',').map(|t| t.parse().unwrap_or_else(|_| usage("bad --tasks"))).collect()
            }
            "--seconds" => args.seconds = value().parse().unwrap_or_else(|_| usage("bad --seconds")),
            "--rounds" => args.rounds = value().parse().unwrap_or_else(|_| usage("bad --rounds")),
            "--workloads" => {
                args.workloads = value()
                    .split(',')
                    .map(|w| match w {
                        "put" => Workload::Put,
                        "putdel" => Workload::PutDel,
                        _ => usage("workloads are put and putdel"),
                    })
                    .collect()
            }
            "--pgbench" => pgbench = Some(PathBuf::from(value())),
            other => usage(&format!("unknown option {other}")),
        }
    }
    if args.url.is_empty() {
        usage("no --url and LOCKWAL_TEST_PG_URL is not set (try scripts/pg-throwaway run ...)");
    }
    args.pgbench = pgbench.or_else(find_pgbench).unwrap_or_else(|| usage("pgbench not found; pass --pgbench"));
    args
}

/// The lock both sides write: every string a decimal number, so pgbench can
/// pass the same bytes through its integer variables.
fn lock(id: u64, file: u64, owner: u64) -> PersistedLock {
    PersistedLock {
        id: id.to_string().into(),
        share: "s".into(),
        file_id: file.to_string().into(),
        owner_id: owner.to_string().into(),
        client_id: owner.to_string().into(),
        kind: LockKind::ByteRange(ByteRange {
            lock_type: LockType::Exclusive,
            offset: 4096,
            length: 512,
            zero_byte: false,
            flavor: RangeFlavor::Posix,
        }),
        acquired_at: Timestamp::from_unix_micros(1_764_000_000_123_456),
        server_epoch: 0,
    }
}

/// A small xorshift generator: no dependency, different per task.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

async fn run_backend(store: &Arc<dyn LockStore>, workload: Workload, tasks: usize, seconds: u64) -> f64 {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(seconds);
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let store = Arc::clone(store);
            tokio::spawn(async move {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t as u64 + 1).wrapping_mul(0x1234_5678_9ABC_DEF1));
                let mut ops = 0u64;
                while Instant::now() < deadline {
                    match workload {
                        Workload::Put => {
                            let l = lock(1 + rng.below(100_000), 1 + rng.below(1000), 1 + rng.below(100));
                            store.put_lock(l).await.expect("put_lock");
                            ops += 1;
                        }
                        Workload::PutDel => {
                            let id = 1 + rng.below(1_000_000_000_000);
                            store.put_lock(lock(id, 1 + rng.below(1000), 1 + rng.below(100))).await.expect("put");
                            store.transaction(vec![Op::DeleteLock { id: id.to_string() }]).await.expect("delete");
                            ops += 2;
                        }
                    }
                }
                ops
            })
        })
        .collect();
    let mut ops = 0;
    for h in handles {
        ops += h.await.expect("task");
    }
    ops as f64 / start.elapsed().as_secs_f64()
}

/// A statement's text with `$n` replaced by `params[n-1]` (a pgbench
/// variable like `:id`) or `NULL`.
fn pgbench_statement(text: &str, params: &[Option<&str>]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let mut n = 0usize;
        while let Some(&(_, d)) = chars.peek().filter(|(_, d)| d.is_ascii_digit()) {
            n = n * 10 + d.to_digit(10).unwrap() as usize;
            chars.next();
        }
        out.push_str(params[n - 1].unwrap_or("NULL"));
    }
    out.push_str(";\n");
    out
}

/// The lock parameters as pgbench variables, in the statements' order.
const LOCK_VARS: [Option<&str>; 33] = {
    let mut v = [None; 33];
    v[0] = Some(":id");
    v[1] = Some(":share");
    v[2] = Some(":f");
    v[3] = Some(":o");
    v[4] = Some(":o");
    v[5] = Some(":kind");
    v[6] = Some(":at");
    v[7] = Some(":epoch");
    v[8] = Some(":rtype");
    v[9] = Some(":off");
    v[10] = Some(":len");
    v[11] = Some(":zb");
    v[12] = Some(":flavor");
    v
};

fn pgbench_script(workload: Workload, fenced: bool) -> String {
    let put = if fenced { &*PUT_LOCK_FENCED } else { &*PUT_LOCK };
    let mut script = String::new();
    match workload {
        Workload::Put => script.push_str("\\set id random(1, 100000)\n"),
        Workload::PutDel => script.push_str("\\set id random(1, 1000000000000)\n"),
    }
    script.push_str("\\set f random(1, 1000)\n\\set o random(1, 100)\n");
    script.push_str(&pgbench_statement(put, &LOCK_VARS));
    if workload == Workload::PutDel {
        if fenced {
            script.push_str(&pgbench_statement(Delete::Lock.fenced(), &[Some(":epoch"), Some(":id")]));
        } else {
            script.push_str(&pgbench_statement(Delete::Lock.plain(), &[Some(":id")]));
        }
    }
    script
}

/// Where the generated pgbench scripts go (removed at the end).
fn script_dir() -> PathBuf {
    std::env::temp_dir().join(format!("lockwal-pgbench-{}", std::process::id()))
}

fn run_pgbench(args: &Args, schema: &str, epoch: u64, workload: Workload, fenced: bool, clients: usize) -> f64 {
    let dir = script_dir();
    std::fs::create_dir_all(&dir).expect("temp dir");
    let script = dir.join(format!("{}-{fenced}.sql", workload.name()));
    std::fs::write(&script, pgbench_script(workload, fenced)).expect("write script");
    let output = Command::new(&args.pgbench)
        .env("PGOPTIONS", format!("-c search_path={schema}"))
        .args(["-n", "-M", "prepared", "-j"])
        .arg(clients.min(2).to_string())
        .arg("-c")
        .arg(clients.to_string())
        .arg("-T")
        .arg(args.seconds.to_string())
        .args(["-D", "share=s", "-D", "kind=byte_range", "-D", "rtype=exclusive", "-D", "off=4096"])
        .args(["-D", "len=512", "-D", "zb=false", "-D", "flavor=posix", "-D", "at=1764000000123456"])
        .arg("-D")
        .arg(format!("epoch={epoch}"))
        .arg("-f")
        .arg(&script)
        .arg(&args.url)
        .output()
        .expect("run pgbench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        panic!("pgbench failed: {}\n{stdout}", String::from_utf8_lossy(&output.stderr));
    }
    let tps: f64 = stdout
        .lines()
        .find_map(|l| l.strip_prefix("tps = "))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no tps in pgbench output:\n{stdout}"));
    let failed = stdout.lines().find(|l| l.contains("number of failed transactions")).unwrap_or("");
    if !failed.is_empty() && !failed.contains(": 0 ") {
        panic!("pgbench had failures: {failed}");
    }
    tps * workload.ops_per_script()
}

/// The backend's group-commit counters (groups: SQL transactions shared by
/// two requests or more).
fn group_stats(store: &Arc<dyn LockStore>) -> GroupStats {
    store.as_any().downcast_ref::<PostgresLockStore>().expect("a PostgreSQL store").group_stats()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

async fn reset(sql: &tokio_postgres::Client) {
    sql.batch_execute("TRUNCATE lockwal_locks; CHECKPOINT").await.expect("reset");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = parse_args();
    let schema = format!("lockwal_bench_{}", std::process::id());
    let (sql, connection) = tokio_postgres::connect(&args.url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    let max_tasks = args.tasks.iter().copied().max().unwrap_or(1);
    let config = PostgresConfig::new(&args.url).with_schema(&schema).with_auto_migrate(true);
    let store: Arc<dyn LockStore> =
        Arc::new(PostgresLockStore::open(config.with_pool_size(max_tasks)).await.expect("open store"));
    let epoch = store.epoch().await.expect("epoch");
    sql.batch_execute(&format!("SET search_path TO {schema}")).await.expect("search_path");
    let settings: Vec<String> = sql
        .query("SELECT name || '=' || setting FROM pg_settings WHERE name IN ('fsync', 'synchronous_commit', 'wal_sync_method', 'max_connections', 'server_version') ORDER BY name", &[])
        .await
        .expect("settings")
        .iter()
        .map(|r| r.get(0))
        .collect();
    println!(
        "server: {}; {} s per run, {} rounds; pgbench {}",
        settings.join(" "),
        args.seconds,
        args.rounds,
        args.pgbench.display()
    );
    println!(
        "{:<8} {:>5} {:>5} {:>14} {:>14} {:>7} {:>18} {:>9} {:>10}",
        "workload",
        "tasks",
        "round",
        "backend op/s",
        "pgbench op/s",
        "ratio",
        "pgbench no fence",
        "groups",
        "per group"
    );
    let mut summary = Vec::new();
    for &workload in &args.workloads {
        for &tasks in &args.tasks {
            let (mut ours, mut theirs, mut ratios, mut unfenced) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for round in 1..=args.rounds {
                reset(&sql).await;
                let before = group_stats(&store);
                let o = run_backend(&store, workload, tasks, args.seconds).await;
                let after = group_stats(&store);
                let (groups, grouped) = (after.groups - before.groups, after.grouped - before.grouped);
                reset(&sql).await;
                let t = run_pgbench(&args, &schema, epoch, workload, true, tasks);
                reset(&sql).await;
                let u = run_pgbench(&args, &schema, epoch, workload, false, tasks);
                println!(
                    "{:<8} {:>5} {:>5} {:>14.0} {:>14.0} {:>7.2} {:>18.0} {:>9} {:>10.1}",
                    workload.name(),
                    tasks,
                    round,
                    o,
                    t,
                    o / t,
                    u,
                    groups,
                    grouped as f64 / groups.max(1) as f64
                );
                ours.push(o);
                theirs.push(t);
                ratios.push(o / t);
                unfenced.push(u);
            }
            summary.push((workload, tasks, median(ours), median(theirs), median(ratios), median(unfenced)));
        }
    }
    println!("\nmedians over {} rounds (ratio: median of the per-round ratios)", args.rounds);
    println!(
        "{:<8} {:>5} {:>14} {:>14} {:>7} {:>18}",
        "workload", "tasks", "backend op/s", "pgbench op/s", "ratio", "pgbench no fence"
    );
    for (workload, tasks, o, t, r, u) in summary {
        println!("{:<8} {:>5} {:>14.0} {:>14.0} {:>7.2} {:>18.0}", workload.name(), tasks, o, t, r, u);
    }
    store.close().await.expect("close");
    drop(store);
    sql.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")).await.expect("drop bench schema");
    let _ = std::fs::remove_dir_all(script_dir());
}
