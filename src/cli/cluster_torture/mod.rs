//! `lockwal cluster-torture --url URL --nodes N --seconds S`: several node
//! processes on one PostgreSQL store, SIGKILLed, restarted, taken over and
//! cut off from the database at random, checked continuously and at the end.
//!
//! The parent makes a fresh schema and spawns each node as this binary
//! (`cluster-torture-child`, hidden) with a short lease. A node runs tasks
//! of checked grants on ranges of a few shared files and releases of its
//! own, and a recovery task: while it needs grace it reclaims most of what
//! it owns (by each lock's client) and ends the grace; it takes over nodes
//! whose lease expired. It reports on stdout, one line per step, each
//! written whole before the next step:
//!
//! ```text
//! O <epoch> <node>     opened                 g <id> <client> / G <id> <client>   grant tried / acknowledged
//! N <id> / W <id>      grant refused: conflict / in grace
//! r <id> / R <id>      release tried / acknowledged;  F <id>  release found nothing
//! c <id> [intruder] / C <id> <client>  reclaim tried / acknowledged;  V <id>  refused: wrong client
//! e / P <ids...>       end of grace tried / acknowledged, with what it removed
//! t <node> / T <node> <locks> <fenced with>  takeover tried / acknowledged
//! X <message>          the node stops (fenced: it was taken over while running)
//! ```
//!
//! The parent, every 0.2 to 1 s: SIGKILLs a node and restarts it after 0
//! to 3 leases (so that others sometimes take it over first), or kills its
//! connections from the server side (`pg_terminate_backend`), or nothing.
//! A checker polls the database: no two held locks conflict; the cluster's
//! epoch and every node's only grow. A trigger the parent installs in the
//! schema records every lock row inserted while the recovery epoch is not
//! 0: a checked grant accepted during grace (the torture writes new locks
//! only through checked grants). At the end, with every node killed, the
//! state must match the model (`check.rs`): no acknowledged grant lost, no
//! acknowledged release back, nothing nobody granted, every reclaim by the
//! holder's client (a node also tries, now and then, a reclaim by a client
//! that does not hold the lock, which must be refused), every lock an end
//! of grace removed the purger's own to remove (older than it, owned by its
//! node or taken over, not reclaimed), no release of a node's own lock
//! finding it gone; and continuously, that the cluster is in grace exactly
//! when some node needs it. Ends of grace are judged at the end, when every
//! takeover is known, in the database's order of takeovers (the epochs they
//! fenced with), not the order the parent read the nodes' lines in. The
//! schema is dropped when everything held, kept and named when not, with
//! every line read in a file beside it (`$TMPDIR/<schema>.log`). It also
//! reports how long the cluster took to be in grace after each kill of a
//! node that held locks while none was in force.

mod check;
mod child;

use super::torture::{Rng, random_seed};
use super::{CliError, CliResult, out, out_json, runtime};
use check::{Model, Stream, conflicting_pairs};
use clap::Args;
use lockwal::LockStore;
use lockwal::backend::postgres::{PostgresConfig, PostgresLockStore, tokio_postgres};
use std::io::BufRead;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Arguments of `lockwal cluster-torture`.
#[derive(Args, Debug)]
pub struct ClusterTortureArgs {
    /// The PostgreSQL server (a database the run may create a schema in)
    #[arg(long, value_name = "URL")]
    url: String,
    /// Node processes
    #[arg(long, default_value_t = 3)]
    nodes: u32,
    /// How long to run
    #[arg(long, default_value_t = 30)]
    seconds: u64,
    /// Grant tasks per node
    #[arg(long, default_value_t = 4)]
    tasks: u32,
    /// Each node's lease, in milliseconds
    #[arg(long, default_value_t = 400)]
    lease_ms: u64,
    /// The seed of every random choice (default: random, printed)
    #[arg(long)]
    seed: Option<u64>,
    /// Print the summary as JSON
    #[arg(long)]
    json: bool,
}

/// Arguments of the hidden node process.
#[derive(Args, Debug)]
pub struct ClusterChildArgs {
    #[arg(long)]
    url: String,
    #[arg(long)]
    schema: String,
    #[arg(long)]
    node: String,
    #[arg(long)]
    tasks: u32,
    #[arg(long)]
    seed: u64,
    #[arg(long)]
    lease_ms: u64,
}

pub(super) fn child(a: ClusterChildArgs) -> CliResult {
    child::run(&a.url, &a.schema, &a.node, a.tasks, a.seed, a.lease_ms)
}

/// One node slot: its process when running, when to restart it otherwise.
struct Slot {
    name: String,
    process: Option<Child>,
    restart_at: Option<Instant>,
}

/// Lines from the node processes: (slot, incarnation, line), or the end of
/// an incarnation's stream (`None`).
type Event = (usize, u64, Option<String>);

fn spawn(
    args: &ClusterTortureArgs,
    schema: &str,
    slot: usize,
    name: &str,
    incarnation: u64,
    seed: u64,
    events: &mpsc::Sender<Event>,
) -> Result<Child, CliError> {
    let exe = std::env::current_exe().map_err(|e| CliError::unusable(format!("finding this binary: {e}")))?;
    let mut process = Command::new(exe)
        .args(["cluster-torture-child", "--url", &args.url, "--schema", schema, "--node", name])
        .args(["--tasks", &args.tasks.to_string(), "--seed", &seed.to_string()])
        .args(["--lease-ms", &args.lease_ms.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| CliError::unusable(format!("spawning a node: {e}")))?;
    let stdout = process.stdout.take().expect("piped");
    let events = events.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            match line {
                Ok(line) => {
                    if events.send((slot, incarnation, Some(line))).is_err() {
                        return;
                    }
                }
                Err(_) => break,
            }
        }
        let _ = events.send((slot, incarnation, None));
    });
    Ok(process)
}

#[derive(Default, serde::Serialize)]
struct Totals {
    kills: u64,
    disconnects: u64,
    checks: u64,
    max_epoch: u64,
    /// For each kill of a node that owned locks while no grace was in
    /// force: milliseconds until the cluster was in grace (the node's
    /// restart or a survivor's takeover, whichever came first), measured by
    /// polling the recovery epoch every loop (about 5 ms).
    grace_after_kill_ms: Vec<f64>,
}

pub(super) fn run(args: ClusterTortureArgs) -> CliResult {
    if args.nodes < 2 || args.tasks == 0 || args.lease_ms == 0 {
        return Err(CliError::unusable("--nodes must be at least 2, --tasks and --lease-ms at least 1"));
    }
    let seed = args.seed.unwrap_or_else(random_seed);
    let mut rng = Rng::new(seed);
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let schema = format!("lockwal_torture_{stamp}_{}", std::process::id());
    let rt = runtime()?;
    let config = PostgresConfig::new(&args.url).with_schema(&schema).with_pool_size(2);
    let sql = rt.block_on(setup(&args.url, &schema, &config))?;
    // One read-only handle for every check: it fences no one.
    let reader = rt.block_on(PostgresLockStore::open_read_only(config.clone()))?;
    let (events, received) = mpsc::channel::<Event>();
    let mut slots: Vec<Slot> = (0..args.nodes)
        .map(|i| Slot { name: format!("n{i}"), process: None, restart_at: Some(Instant::now()) })
        .collect();
    let mut streams: Vec<(u64, Stream)> = (0..slots.len()).map(|_| (0, Stream::default())).collect();
    let mut incarnation = 0u64;
    let mut model = Model::default();
    let mut totals = Totals::default();
    let mut epochs: Vec<i64> = Vec::new();
    let lease = Duration::from_millis(args.lease_ms);
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let mut next_chaos = Instant::now() + Duration::from_millis(200);
    let mut next_check = Instant::now();
    let mut killed_at: Vec<Instant> = Vec::new();
    // Every line in the order read, kept on failure for the diagnosis.
    let mut log: Vec<String> = Vec::new();
    while Instant::now() < deadline {
        for (i, slot) in slots.iter_mut().enumerate() {
            if let Some(process) = &mut slot.process
                && matches!(process.try_wait(), Ok(Some(_)))
            {
                // It stopped by itself (fenced after a takeover): back later.
                slot.process = None;
                slot.restart_at = Some(Instant::now() + lease * rng.below(3) as u32);
            }
            if slot.process.is_none() && slot.restart_at.is_some_and(|at| at <= Instant::now()) {
                incarnation += 1;
                slot.process = Some(spawn(&args, &schema, i, &slot.name, incarnation, rng.next(), &events)?);
                slot.restart_at = None;
            }
        }
        while let Ok((slot, inc, line)) = received.try_recv() {
            absorb(&mut model, &mut log, &mut streams[slot], (slot, inc), line);
        }
        if Instant::now() >= next_chaos {
            next_chaos = Instant::now() + Duration::from_millis(200 + rng.below(800));
            let victim = rng.below(slots.len() as u64) as usize;
            match rng.below(4) {
                0 | 1 => {
                    if let Some(mut process) = slots[victim].process.take() {
                        let q = "SELECT (SELECT recovery_epoch FROM lockwal_meta), \
                                 (SELECT count(*) FROM lockwal_locks WHERE node_id = $1)";
                        let before = rt.block_on(sql.query_one(q, &[&slots[victim].name]));
                        let _ = process.kill(); // SIGKILL
                        if let Ok(row) = before
                            && row.get::<_, i64>(0) == 0
                            && row.get::<_, i64>(1) > 0
                        {
                            killed_at.push(Instant::now());
                        }
                        let _ = process.wait();
                        totals.kills += 1;
                        slots[victim].restart_at = Some(Instant::now() + lease * rng.below(4) as u32);
                    }
                }
                2 => {
                    let app = format!("lockwal-{}", slots[victim].name);
                    let cut = "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1";
                    if rt.block_on(sql.execute(cut, &[&app])).is_ok() {
                        totals.disconnects += 1;
                    }
                }
                _ => {}
            }
        }
        if !killed_at.is_empty()
            && let Ok(row) = rt.block_on(sql.query_one("SELECT recovery_epoch FROM lockwal_meta", &[]))
            && row.get::<_, i64>(0) != 0
        {
            let now = Instant::now();
            totals.grace_after_kill_ms.extend(killed_at.drain(..).map(|at| (now - at).as_secs_f64() * 1e3));
        }
        if Instant::now() >= next_check {
            next_check = Instant::now() + Duration::from_millis(200);
            rt.block_on(check_now(&sql, &reader, &mut model, &mut totals, &mut epochs));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    for slot in &mut slots {
        if let Some(mut process) = slot.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }
    drop(events);
    for (slot, inc, line) in received {
        absorb(&mut model, &mut log, &mut streams[slot], (slot, inc), line);
    }
    for (_, stream) in streams {
        model.ended(stream);
    }
    rt.block_on(check_now(&sql, &reader, &mut model, &mut totals, &mut epochs));
    let held = rt.block_on(reader.list_locks(&lockwal::LockQuery::all()))?;
    rt.block_on(reader.close())?;
    model.check_final(&held);
    let passed = model.violations.is_empty();
    let mut kept_log = None;
    if passed {
        rt.block_on(sql.batch_execute(&format!("DROP SCHEMA {schema} CASCADE")))
            .map_err(|e| CliError::unusable(format!("dropping {schema}: {e}")))?;
    } else {
        let path = std::env::temp_dir().join(format!("{schema}.log"));
        log.push(String::new());
        std::fs::write(&path, log.join("\n"))
            .map_err(|e| CliError::unusable(format!("writing {}: {e}", path.display())))?;
        kept_log = Some(path);
    }
    report(&args, seed, &schema, &model, &totals, held.len(), kept_log.as_deref())?;
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

/// Feeds a line to the model through its incarnation's stream (a new
/// incarnation on the slot settles the old one), and to the log kept on
/// failure as `n<slot> <incarnation> <line>` (`end` for the end of an
/// incarnation's stream).
fn absorb(
    model: &mut Model,
    log: &mut Vec<String>,
    stream: &mut (u64, Stream),
    (slot, incarnation): (usize, u64),
    line: Option<String>,
) {
    log.push(format!("n{slot} {incarnation} {}", line.as_deref().unwrap_or("end")));
    if stream.0 != incarnation {
        model.ended(std::mem::take(&mut stream.1));
        stream.0 = incarnation;
    }
    match line {
        Some(line) => model.line(&mut stream.1, &line),
        None => model.ended(std::mem::take(&mut stream.1)),
    }
}

/// The schema, migrated, with the audit trigger; the parent's connection.
async fn setup(url: &str, schema: &str, config: &PostgresConfig) -> Result<tokio_postgres::Client, CliError> {
    let (sql, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .map_err(|e| CliError::unusable(format!("connecting to {url}: {e}")))?;
    tokio::spawn(connection);
    sql.batch_execute(&format!("CREATE SCHEMA {schema}")).await.map_err(|e| CliError::unusable(e.to_string()))?;
    PostgresLockStore::migrate(config).await?;
    let audit = format!(
        "SET search_path TO {schema};
         CREATE TABLE torture_granted_in_grace (id bytea, recovery_epoch bigint);
         CREATE FUNCTION torture_audit() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO torture_granted_in_grace
                 SELECT NEW.id, recovery_epoch FROM lockwal_meta WHERE recovery_epoch <> 0;
             RETURN NEW;
         END $$;
         CREATE TRIGGER torture_audit BEFORE INSERT ON lockwal_locks FOR EACH ROW EXECUTE FUNCTION torture_audit();"
    );
    sql.batch_execute(&audit).await.map_err(|e| CliError::unusable(format!("installing the audit: {e}")))?;
    Ok(sql)
}

/// One pass of the continuous checks.
async fn check_now(
    sql: &tokio_postgres::Client,
    reader: &PostgresLockStore,
    model: &mut Model,
    totals: &mut Totals,
    epochs: &mut Vec<i64>,
) {
    totals.checks += 1;
    match reader.list_locks(&lockwal::LockQuery::all()).await {
        Ok(held) => model.violations.extend(conflicting_pairs(&held)),
        Err(e) => model.violations.push(format!("reading the locks: {e}")),
    }
    let text = "SELECT (SELECT epoch FROM lockwal_meta), node_id, epoch FROM lockwal_nodes ORDER BY node_id";
    if let Ok(rows) = sql.query(text, &[]).await {
        let now: Vec<i64> =
            rows.first().map(|r| r.get::<_, i64>(0)).into_iter().chain(rows.iter().map(|r| r.get(2))).collect();
        if now.len() >= epochs.len() {
            for (i, (old, new)) in epochs.iter().zip(&now).enumerate() {
                if new < old {
                    model.violations.push(format!("epoch {i} went from {old} to {new}"));
                }
            }
            *epochs = now;
        }
        totals.max_epoch = epochs.first().map_or(0, |e| *e as u64);
    }
    // One statement, one snapshot: R is nonzero exactly when a node needs grace.
    let grace = "SELECT (SELECT recovery_epoch FROM lockwal_meta), EXISTS (SELECT FROM lockwal_nodes WHERE need_grace)";
    if let Ok(row) = sql.query_one(grace, &[]).await {
        let (r, needed): (i64, bool) = (row.get(0), row.get(1));
        if (r != 0) != needed {
            let v = format!("recovery epoch {r} while a node needs grace: {needed}");
            if !model.violations.contains(&v) {
                model.violations.push(v);
            }
        }
    }
    if let Ok(rows) = sql.query("SELECT encode(id, 'escape'), recovery_epoch FROM torture_granted_in_grace", &[]).await
    {
        for row in rows {
            let (id, r): (String, i64) = (row.get(0), row.get(1));
            let v = format!("lock {id} was granted during the grace of recovery epoch {r}");
            if !model.violations.contains(&v) {
                model.violations.push(v);
            }
        }
    }
}

fn report(
    args: &ClusterTortureArgs,
    seed: u64,
    schema: &str,
    m: &Model,
    t: &Totals,
    held: usize,
    kept_log: Option<&std::path::Path>,
) -> Result<(), CliError> {
    let passed = kept_log.is_none();
    let mut times = t.grace_after_kill_ms.clone();
    times.sort_by(f64::total_cmp);
    let p50 = times.get(times.len() / 2).copied().unwrap_or(0.0);
    let max = times.last().copied().unwrap_or(0.0);
    if args.json {
        out_json(&serde_json::json!({
            "passed": passed,
            "seed": seed,
            "schema": schema,
            "nodes": args.nodes,
            "seconds": args.seconds,
            "opens": m.opens,
            "kills": t.kills,
            "disconnects": t.disconnects,
            "takeovers": m.takeovers,
            "fenced_alive": m.fenced_alive,
            "grants_acknowledged": m.granted.len(),
            "grants_refused_conflict": m.refused_conflict,
            "grants_refused_in_grace": m.refused_in_grace,
            "releases_acknowledged": m.released.len(),
            "reclaims_acknowledged": m.reclaims,
            "reclaims_refused_wrong_client": m.reclaims_refused_wrong_client,
            "purged": m.purged.len(),
            "held_at_end": held,
            "checks": t.checks,
            "newest_epoch": t.max_epoch,
            "grace_after_kill_ms": { "count": t.grace_after_kill_ms.len(), "p50": p50, "max": max },
            "violations": m.violations,
            "log": kept_log.map(|p| p.display().to_string()),
        }))?;
    } else {
        out(format_args!("seed {seed}, schema {schema}, {} nodes for {} s", args.nodes, args.seconds))?;
        out(format_args!(
            "opens {}, kills {}, disconnects {}, takeovers {} (of a node still running: {}), newest epoch {}",
            m.opens, t.kills, t.disconnects, m.takeovers, m.fenced_alive, t.max_epoch
        ))?;
        out(format_args!(
            "grants acknowledged {}, refused: conflict {} in grace {}; releases {}; reclaims {} (by a wrong client: \
             {} refused); purged {}; held at end {}",
            m.granted.len(),
            m.refused_conflict,
            m.refused_in_grace,
            m.released.len(),
            m.reclaims,
            m.reclaims_refused_wrong_client,
            m.purged.len(),
            held
        ))?;
        out(format_args!(
            "kill of a node holding locks -> cluster in grace: {} times, p50 {p50:.0} ms, max {max:.0} ms",
            t.grace_after_kill_ms.len()
        ))?;
        out(format_args!("checks {}, violations {}", t.checks, m.violations.len()))?;
        for v in m.violations.iter().take(20) {
            out(format_args!("  VIOLATION {v}"))?;
        }
        match kept_log {
            None => out(format_args!("PASSED (schema dropped)"))?,
            Some(path) => out(format_args!("FAILED (schema kept; every node's lines in {})", path.display()))?,
        }
    }
    Ok(())
}
