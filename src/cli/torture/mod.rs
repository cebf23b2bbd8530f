//! `lockwal torture DIR --seconds N`: kill -9 a real writer process at random
//! moments and check that every acknowledged write survived.
//!
//! Each round the parent spawns this binary as a child writer
//! (`torture-child`, hidden) and kills it with SIGKILL after a random delay.
//! The child opens the store (a kill can land in its recovery too) and runs
//! `--tasks` concurrent tasks. Each task owns its lock ids (`t<task>-<slot>`)
//! and its client record (`torture-client-<task>`), and works sequentially:
//! grants, releases, upserts, reclaims, bulk deletes of its own locks, client
//! records, and transactions of several of these. Over its stdout (a pipe)
//! the child reports, one line per event, each written with one `write`
//! before the next step:
//!
//! ```text
//! E <epoch>                     the store is open at this epoch
//! I <task> <seq> <ops as JSON>  about to submit this transaction
//! A <task> <seq>                it was acknowledged (durable)
//! X <message>                   a fatal error; the child exits
//! ```
//!
//! The parent replays the acknowledged transactions of each task into a
//! naive model (`lockwal::testing::model`, which shares no code with the
//! store). After the kill it reopens the store (timing the recovery) and
//! compares, task by task: the store must hold exactly the model's state, or,
//! if the task had a transaction in flight (an `I` with no `A`), exactly the
//! state after it. Anything else is a lost acknowledged write or a torn
//! transaction. Epochs must increase strictly across every open.
//!
//! The parts, each naming only those listed before it: `workload` (ids,
//! random numbers, the transactions a task writes), `child` (the writer
//! process), `verify` (protocol reader, models, checks, totals), `summary`
//! (the closing report), and this module, which drives the rounds.

mod child;
mod summary;
#[cfg(test)]
mod tests;
mod verify;
mod workload;

pub(super) use child::{ChildArgs, child};
// The cluster torture's children speak the same line protocol.
#[cfg(feature = "postgres")]
pub(super) use child::{fatal, say};
pub(super) use workload::{Rng, random_seed};

use super::{CliError, CliResult};
use clap::Args;
use lockwal::wal::WalLockStore;
use lockwal::{LockQuery, LockStore};
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};
use verify::{TaskModel, Totals, absorb, check, report};
use workload::options;

/// Arguments of `lockwal torture`.
#[derive(Args, Debug)]
pub struct TortureArgs {
    /// A new or empty directory for the store (the whole state is verified)
    dir: PathBuf,
    /// How long to run (at least one kill happens however short)
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Concurrent writer tasks in the child
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    tasks: u32,
    /// Each child is killed after a uniformly random delay of 0 to this many milliseconds
    #[arg(long, default_value_t = 200)]
    max_delay_ms: u64,
    /// Seed of the workload and the delays (random when not given)
    #[arg(long)]
    seed: Option<u64>,
    /// Print one JSON object at the end
    #[arg(long)]
    json: bool,
}

fn spawn_child(dir: &Path, tasks: u32, seed: u64) -> Result<Child, CliError> {
    let exe = std::env::current_exe().map_err(|e| CliError::unusable(format!("finding this executable: {e}")))?;
    Command::new(exe)
        .arg("torture-child")
        .arg(dir)
        .args(["--tasks", &tasks.to_string(), "--seed", &seed.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CliError::unusable(format!("spawning the child writer: {e}")))
}

fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

/// `lockwal torture`.
pub(super) fn run(a: TortureArgs) -> CliResult {
    let dir = a.dir.clone();
    if let Ok(true) = lockwal::wal::inspect::is_store(&lockwal::io::RealFs, &dir) {
        return Err(CliError::unusable(format!(
            "{} already holds a store; torture needs a new or empty directory (it verifies the whole state)",
            dir.display()
        )));
    }
    let seed = a.seed.unwrap_or_else(random_seed);
    let mut rng = Rng::new(seed);
    let runtime = super::runtime()?;
    let mut totals = Totals::default();
    let mut tasks: Vec<TaskModel> = (0..a.tasks).map(|_| TaskModel::default()).collect();
    {
        let store = runtime.block_on(WalLockStore::open(&dir, options()))?;
        totals.see_epoch(runtime.block_on(store.epoch())?, "the new store");
    }
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(a.seconds.max(1));
        bar.set_style(
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} s  {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        bar
    });
    let started = Instant::now();
    let deadline = started + Duration::from_secs(a.seconds);
    let mut failure: Option<String> = None;
    let mut round = 0u64;
    while round == 0 || Instant::now() < deadline {
        round += 1;
        let child_seed = rng.next();
        let mut child = spawn_child(&dir, a.tasks, child_seed)?;
        let stdout = drain(child.stdout.take().expect("piped"));
        let stderr = drain(child.stderr.take().expect("piped"));
        let kill_at = Instant::now() + Duration::from_millis(rng.below(a.max_delay_ms + 1));
        let mut exited = None;
        while Instant::now() < kill_at {
            if let Some(status) = child.try_wait().map_err(|e| CliError::unusable(format!("waiting: {e}")))? {
                exited = Some(status);
                break;
            }
            std::thread::sleep((kill_at - Instant::now()).min(Duration::from_millis(5)));
        }
        if exited.is_none() {
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
            totals.kills += 1;
        }
        let out = stdout.join().unwrap_or_default();
        let err = stderr.join().unwrap_or_default();
        let mut child_epoch = None;
        let fatal = absorb(&out, &mut child_epoch, &mut tasks, &mut totals);
        if let Some(e) = child_epoch {
            totals.see_epoch(e, "the child");
        }
        if let Some(status) = exited {
            failure = Some(format!(
                "round {round}: the child writer exited by itself ({status}): {}",
                fatal.unwrap_or_else(|| String::from_utf8_lossy(&err).trim().to_owned())
            ));
            break;
        }
        // Recovery, timed: the parent opens the store as a restarted server would.
        let opened = Instant::now();
        let store = match runtime.block_on(WalLockStore::open(&dir, options())) {
            Ok(store) => store,
            Err(e) => {
                failure = Some(format!("round {round}: the store does not reopen after a kill: {e}"));
                break;
            }
        };
        totals.recoveries.push(opened.elapsed());
        totals.replays.push(store.stats().replay_duration);
        let state = runtime.block_on(async {
            Ok::<_, lockwal::Error>((
                store.epoch().await?,
                store.list_locks(&LockQuery::all()).await?,
                store.list_clients(&lockwal::model::ClientQuery::all()).await?,
            ))
        });
        drop(store);
        let (epoch, locks, clients) = state?;
        totals.see_epoch(epoch, "the reopened store");
        check(locks, clients, &mut tasks, &mut totals, round);
        for t in &mut tasks {
            t.model.epoch = epoch;
        }
        if let Some(bar) = &bar {
            bar.set_position(started.elapsed().as_secs().min(a.seconds));
            bar.set_message(format!("kills {} acked {} lost {}", totals.kills, totals.acked, totals.lost));
        }
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let ok = summary::print(&totals, failure.as_deref(), started.elapsed(), a.tasks, seed, a.json)?;
    if let Some(f) = &failure {
        report(f.clone());
    }
    if ok { Ok(ExitCode::SUCCESS) } else { Err(CliError { code: 1, message: None }) }
}
