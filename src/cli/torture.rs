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

use super::{CliError, CliResult};
use clap::Args;
use lockwal::model::{
    ByteRange, ClientDetails, ClientKind, ClientRecord, LockKind, LockType, Nfs4Details, PersistedLock, RangeFlavor,
    ShareDeny, Timestamp, validate::MAX_TXN_OPS,
};
use lockwal::op::Op;
use lockwal::testing::{model::Model, sample};
use lockwal::wal::{WalLockStore, WalOptions};
use lockwal::{LockQuery, LockStore};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Lock ids per task.
const SLOTS: u32 = 8;

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

/// Arguments of the hidden child writer.
#[derive(Args, Debug)]
pub struct ChildArgs {
    dir: PathBuf,
    #[arg(long)]
    tasks: u32,
    #[arg(long)]
    seed: u64,
}

/// The store options of parent and child: small segments and a low
/// compaction threshold, so kills also land in rotations and compactions.
fn options() -> WalOptions {
    WalOptions { segment_size: 256 << 10, compact_after_bytes: Some(512 << 10), ..WalOptions::default() }
}

/// xorshift64*: enough randomness for a workload, no dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

fn lock_id(task: u32, slot: u32) -> String {
    format!("t{task}-{slot}")
}

fn client_id(task: u32) -> String {
    format!("torture-client-{task}")
}

/// The task a lock id or client id belongs to.
fn owner_task(id: &str) -> Option<u32> {
    if let Some(rest) = id.strip_prefix("torture-client-") {
        return rest.parse().ok();
    }
    let (task, slot) = id.strip_prefix('t')?.split_once('-')?;
    let slot: u32 = slot.parse().ok()?;
    (slot < SLOTS).then_some(())?;
    task.parse().ok()
}

// ---- the child --------------------------------------------------------------------

/// Writes one protocol line with one `write` (pipe writes up to 4 KiB are
/// atomic, and the lines are shorter), under the stdout lock.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    if out.write_all(buf.as_bytes()).and_then(|()| out.flush()).is_err() {
        // The parent is gone: nobody is left to report to.
        std::process::exit(4);
    }
}

fn fatal(message: String) -> ! {
    say(&format!("X {}", message.replace('\n', " ")));
    std::process::exit(3);
}

/// What a task knows about its own records.
struct TaskView {
    task: u32,
    /// Held slots and the epoch each was stamped with.
    held: BTreeMap<u32, u64>,
    has_client: bool,
    epoch: u64,
}

impl TaskView {
    fn lock(&self, rng: &mut Rng, slot: u32) -> PersistedLock {
        let kind = if rng.below(10) < 7 {
            LockKind::ByteRange(ByteRange {
                lock_type: if rng.below(2) == 0 { LockType::Shared } else { LockType::Exclusive },
                offset: rng.below(1 << 40),
                length: rng.below(1 << 20),
                zero_byte: false,
                flavor: if rng.below(2) == 0 {
                    RangeFlavor::Posix
                } else {
                    RangeFlavor::Smb { share_deny: ShareDeny::Write }
                },
            })
        } else {
            let templates = sample::every_kind();
            templates[rng.below(templates.len() as u64) as usize].kind.clone()
        };
        PersistedLock {
            id: lock_id(self.task, slot).into(),
            share: format!("share-{}", rng.below(3)).into(),
            file_id: format!("file-{}", rng.below(16)).into(),
            owner_id: format!("owner-{}-{}", self.task, rng.below(4)).into(),
            client_id: client_id(self.task).into(),
            kind,
            acquired_at: Timestamp::now(),
            server_epoch: 0,
        }
    }

    fn client(&self, seq: u64) -> ClientRecord {
        ClientRecord {
            client_id: client_id(self.task),
            name: format!("torture client {}", self.task),
            verifier: seq.to_le_bytes().to_vec(),
            principal: String::new(),
            callback: vec![self.task as u8; 4],
            registered_at: Timestamp::now(),
            epoch: self.epoch,
            reclaim_complete: seq.is_multiple_of(2),
            details: ClientDetails::Nfs4(Nfs4Details { short_id: seq }),
        }
    }

    /// One transaction, valid for the task's current records.
    fn choose(&self, rng: &mut Rng, seq: u64) -> Vec<Op> {
        let held: Vec<u32> = self.held.keys().copied().collect();
        let any_slot = |rng: &mut Rng| rng.below(u64::from(SLOTS)) as u32;
        let slot = any_slot(rng);
        match rng.below(100) {
            0..40 => vec![Op::PutLock(self.lock(rng, slot))],
            40..62 if !held.is_empty() => {
                vec![Op::DeleteLock { id: lock_id(self.task, held[rng.below(held.len() as u64) as usize]) }]
            }
            62..67 => {
                let stale: Vec<u32> = self.held.iter().filter(|(_, e)| **e < self.epoch).map(|(s, _)| *s).collect();
                match stale.get(rng.below(stale.len() as u64) as usize) {
                    Some(&slot) => vec![Op::Reclaim { id: lock_id(self.task, slot), client_id: client_id(self.task) }],
                    None => vec![Op::PutLock(self.lock(rng, slot))],
                }
            }
            67..70 => vec![Op::DeleteLocksByClient { client_id: client_id(self.task) }],
            70..78 if self.has_client && rng.below(3) == 0 => {
                vec![Op::DeleteClient { kind: ClientKind::Nfs4, client_id: client_id(self.task) }]
            }
            70..78 => vec![Op::PutClient(self.client(seq))],
            _ => {
                // A transaction over 2..=4 distinct slots, sometimes with the
                // client record.
                let n = 2 + rng.below(3) as usize;
                let mut slots = BTreeSet::new();
                while slots.len() < n {
                    slots.insert(any_slot(rng));
                }
                let mut ops: Vec<Op> = slots
                    .into_iter()
                    .map(|slot| {
                        if self.held.contains_key(&slot) && rng.below(2) == 0 {
                            Op::DeleteLock { id: lock_id(self.task, slot) }
                        } else {
                            Op::PutLock(self.lock(rng, slot))
                        }
                    })
                    .collect();
                if rng.below(3) == 0 {
                    ops.push(Op::PutClient(self.client(seq)));
                }
                debug_assert!(ops.len() <= MAX_TXN_OPS);
                ops
            }
        }
    }

    fn applied(&mut self, ops: &[Op]) {
        for op in ops {
            match op {
                Op::PutLock(l) => {
                    let slot = l.id.rsplit_once('-').and_then(|(_, s)| s.parse().ok()).expect("own id");
                    self.held.insert(slot, self.epoch);
                }
                Op::DeleteLock { id } => {
                    let slot = id.rsplit_once('-').and_then(|(_, s)| s.parse().ok()).expect("own id");
                    self.held.remove(&slot);
                }
                Op::Reclaim { id, .. } => {
                    let slot = id.rsplit_once('-').and_then(|(_, s)| s.parse().ok()).expect("own id");
                    self.held.insert(slot, self.epoch);
                }
                Op::DeleteLocksByClient { .. } => self.held.clear(),
                Op::PutClient(_) => self.has_client = true,
                Op::DeleteClient { .. } => self.has_client = false,
                Op::DeleteLocksByFile { .. }
                | Op::EndGrace { .. }
                | Op::UpdateLock(_)
                | Op::DeleteClients(_)
                | Op::MarkReclaimComplete { .. } => unreachable!("not in the workload"),
            }
        }
    }
}

async fn run_task(store: Arc<WalLockStore>, task: u32, seed: u64, epoch: u64) {
    let mut rng = Rng::new(seed ^ (u64::from(task) + 1).wrapping_mul(0xA076_1D64_78BD_642F));
    let mut view = TaskView { task, held: BTreeMap::new(), has_client: false, epoch };
    for slot in 0..SLOTS {
        if let Ok(lock) = store.get_lock(&lock_id(task, slot)).await {
            view.held.insert(slot, lock.server_epoch);
        }
    }
    view.has_client = store.get_client(ClientKind::Nfs4, &client_id(task)).await.is_ok();
    for seq in 1.. {
        let ops = view.choose(&mut rng, seq);
        let encoded = serde_json::to_string(&ops).unwrap_or_else(|e| fatal(format!("encoding: {e}")));
        say(&format!("I {task} {seq} {encoded}"));
        match store.transaction(ops.clone()).await {
            Ok(_) => {
                say(&format!("A {task} {seq}"));
                view.applied(&ops);
            }
            Err(e) => fatal(format!("task {task} transaction {seq}: {e}")),
        }
    }
}

/// Compacts every 10 to 60 ms, so kills also land in compactions (snapshot
/// writes, installs, retiring segments) and the log stays short.
async fn compact_now_and_then(store: Arc<WalLockStore>, seed: u64) {
    let mut rng = Rng::new(seed ^ 0xC0FF_EE00);
    loop {
        tokio::time::sleep(Duration::from_millis(10 + rng.below(50))).await;
        if let Err(e) = store.compact().await {
            fatal(format!("compaction: {e}"));
        }
    }
}

/// The child writer: open, report the epoch, write until killed.
pub(super) fn child(a: ChildArgs) -> CliResult {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fatal(format!("runtime: {e}")));
    runtime.block_on(async move {
        let store = WalLockStore::open(&a.dir, options()).await.unwrap_or_else(|e| fatal(format!("open: {e}")));
        let epoch = store.epoch().await.unwrap_or_else(|e| fatal(format!("epoch: {e}")));
        say(&format!("E {epoch}"));
        let store = Arc::new(store);
        let mut tasks: Vec<_> =
            (0..a.tasks).map(|task| tokio::spawn(run_task(Arc::clone(&store), task, a.seed, epoch))).collect();
        tasks.push(tokio::spawn(compact_now_and_then(Arc::clone(&store), a.seed)));
        for t in tasks {
            if let Err(e) = t.await {
                fatal(format!("task failed: {e}"));
            }
        }
    });
    Ok(ExitCode::SUCCESS)
}

// ---- the parent -------------------------------------------------------------------

/// One task's records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Records {
    locks: BTreeMap<String, PersistedLock>,
    clients: BTreeMap<(ClientKind, String), ClientRecord>,
}

impl From<&Model> for Records {
    fn from(m: &Model) -> Self {
        Self { locks: m.locks.clone(), clients: m.clients.clone() }
    }
}

/// What the parent knows about one task: the acknowledged state and the
/// transaction in flight, if any.
#[derive(Default)]
struct TaskModel {
    model: Model,
    in_flight: Option<(u64, Vec<Op>)>,
    acked_this_round: u64,
}

/// Running totals.
#[derive(Default, Debug)]
struct Totals {
    kills: u64,
    acked: u64,
    verified: u64,
    lost: u64,
    torn_transactions: u64,
    unexpected: u64,
    epoch_violations: u64,
    protocol_errors: u64,
    epochs_seen: u64,
    first_epoch: u64,
    last_epoch: u64,
    in_flight_applied: u64,
    in_flight_absent: u64,
    recoveries: Vec<Duration>,
    replays: Vec<Duration>,
}

impl Totals {
    fn ok(&self) -> bool {
        self.lost == 0
            && self.torn_transactions == 0
            && self.unexpected == 0
            && self.epoch_violations == 0
            && self.protocol_errors == 0
    }

    fn see_epoch(&mut self, epoch: u64, what: &str) {
        if self.epochs_seen > 0 && epoch <= self.last_epoch {
            self.epoch_violations += 1;
            report(format!("epoch did not increase: {what} has epoch {epoch} after {}", self.last_epoch));
        }
        if self.epochs_seen == 0 {
            self.first_epoch = epoch;
        }
        self.epochs_seen += 1;
        self.last_epoch = self.last_epoch.max(epoch);
    }
}

/// A failure detail, on stderr (at most a few dozen, then a count).
fn report(message: String) {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static SHOWN: AtomicU64 = AtomicU64::new(0);
    let n = SHOWN.fetch_add(1, Relaxed);
    if n < 40 {
        eprintln!("lockwal: torture: {message}");
    } else if n == 40 {
        eprintln!("lockwal: torture: (further details suppressed)");
    }
}

/// Feeds the child's complete lines into the task models.
fn absorb(lines: &[u8], epoch: &mut Option<u64>, tasks: &mut [TaskModel], totals: &mut Totals) -> Option<String> {
    let mut fatal = None;
    let text = String::from_utf8_lossy(lines);
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    for line in complete.lines() {
        let mut parts = line.splitn(4, ' ');
        let tag = parts.next().unwrap_or_default();
        let mut num = || parts.next().and_then(|p| p.parse::<u64>().ok());
        match tag {
            "E" => {
                let Some(e) = num() else {
                    totals.protocol_errors += 1;
                    continue;
                };
                *epoch = Some(e);
                for t in tasks.iter_mut() {
                    t.model.epoch = e;
                }
            }
            "I" | "A" => {
                let (Some(task), Some(seq)) = (num(), num()) else {
                    totals.protocol_errors += 1;
                    report(format!("unreadable line from the child: {line}"));
                    continue;
                };
                let Some(t) = tasks.get_mut(task as usize) else {
                    totals.protocol_errors += 1;
                    continue;
                };
                if tag == "I" {
                    match serde_json::from_str::<Vec<Op>>(parts.next().unwrap_or_default()) {
                        Ok(ops) if t.in_flight.is_none() => t.in_flight = Some((seq, ops)),
                        _ => {
                            totals.protocol_errors += 1;
                            report(format!("task {task}: unexpected intent {seq}"));
                        }
                    }
                } else {
                    match t.in_flight.take() {
                        Some((s, ops)) if s == seq => {
                            if let Err(e) = t.model.apply(&ops) {
                                totals.protocol_errors += 1;
                                report(format!("task {task}: the model refuses acknowledged transaction {seq}: {e}"));
                            }
                            t.acked_this_round += 1;
                            totals.acked += 1;
                        }
                        _ => {
                            totals.protocol_errors += 1;
                            report(format!("task {task}: acknowledgement {seq} without its intent"));
                        }
                    }
                }
            }
            "X" => fatal = Some(line[1..].trim().to_owned()),
            _ => {
                totals.protocol_errors += 1;
                report(format!("unreadable line from the child: {line}"));
            }
        }
    }
    fatal
}

/// Compares the reopened store with the models, task by task; resets each
/// model to what the store holds.
fn check(
    locks: Vec<PersistedLock>,
    clients: Vec<ClientRecord>,
    tasks: &mut [TaskModel],
    totals: &mut Totals,
    round: u64,
) {
    let mut actual: Vec<Records> = vec![Records::default(); tasks.len()];
    for lock in locks {
        match owner_task(&lock.id).and_then(|t| actual.get_mut(t as usize)) {
            Some(r) => {
                r.locks.insert(lock.id.to_string(), lock);
            }
            None => {
                totals.unexpected += 1;
                report(format!("round {round}: a lock nobody wrote: {:?}", lock.id));
            }
        }
    }
    for client in clients {
        match owner_task(&client.client_id).and_then(|t| actual.get_mut(t as usize)) {
            Some(r) => {
                r.clients.insert((client.kind(), client.client_id.clone()), client);
            }
            None => {
                totals.unexpected += 1;
                report(format!("round {round}: a client record nobody wrote: {:?}", client.client_id));
            }
        }
    }
    for (task, (t, got)) in tasks.iter_mut().zip(actual).enumerate() {
        let before = Records::from(&t.model);
        let after = t.in_flight.take().and_then(|(_, ops)| {
            let mut m = t.model.clone();
            m.apply(&ops).ok().map(|_| m)
        });
        let acked = std::mem::take(&mut t.acked_this_round);
        if got == before {
            totals.verified += acked;
            if after.is_some() {
                totals.in_flight_absent += 1;
            }
            continue;
        }
        if let Some(m) = after.as_ref().filter(|m| got == Records::from(*m)) {
            totals.verified += acked;
            totals.in_flight_applied += 1;
            t.model = m.clone();
            continue;
        }
        // Neither: name every record that differs from both.
        let after_records = after.as_ref().map(Records::from);
        let mut differing = 0;
        let lock_ids: BTreeSet<&String> = before.locks.keys().chain(got.locks.keys()).collect();
        for id in lock_ids {
            let g = got.locks.get(id);
            if g != before.locks.get(id) && after_records.as_ref().is_none_or(|a| g != a.locks.get(id)) {
                differing += 1;
                report(format!(
                    "round {round}: task {task}: lock {id:?}: store has {g:?}, acknowledged {:?}",
                    before.locks.get(id)
                ));
            }
        }
        let client_ids: BTreeSet<&(ClientKind, String)> = before.clients.keys().chain(got.clients.keys()).collect();
        for id in client_ids {
            let g = got.clients.get(id);
            if g != before.clients.get(id) && after_records.as_ref().is_none_or(|a| g != a.clients.get(id)) {
                differing += 1;
                report(format!("round {round}: task {task}: client {id:?} differs from what was acknowledged"));
            }
        }
        if differing > 0 {
            totals.lost += differing;
        } else {
            totals.torn_transactions += 1;
            report(format!("round {round}: task {task}: a transaction was applied in part"));
        }
        t.model.locks = got.locks;
        t.model.clients = got.clients;
    }
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
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
    let elapsed = started.elapsed();
    let mut sorted = totals.recoveries.clone();
    sorted.sort();
    let median = percentile_ms(&sorted, 0.5);
    let max = sorted.last().map_or(0.0, |d| d.as_secs_f64() * 1e3);
    let mut replays = totals.replays.clone();
    replays.sort();
    let replay_median = percentile_ms(&replays, 0.5);
    let replay_max = replays.last().map_or(0.0, |d| d.as_secs_f64() * 1e3);
    let ok = totals.ok() && failure.is_none();
    if a.json {
        super::out_json(&json!({
            "ok": ok,
            "kills": totals.kills,
            "acked": totals.acked,
            "verified": totals.verified,
            "lost": totals.lost,
            "torn_transactions": totals.torn_transactions,
            "unexpected": totals.unexpected,
            "epoch_violations": totals.epoch_violations,
            "protocol_errors": totals.protocol_errors,
            "in_flight_applied": totals.in_flight_applied,
            "in_flight_absent": totals.in_flight_absent,
            "recoveries": totals.recoveries.len(),
            "recovery_median_ms": median,
            "max_recovery_ms": max,
            "replay_median_ms": replay_median,
            "max_replay_ms": replay_max,
            "epochs_seen": totals.epochs_seen,
            "first_epoch": totals.first_epoch,
            "last_epoch": totals.last_epoch,
            "seconds": elapsed.as_secs_f64(),
            "tasks": a.tasks,
            "seed": seed,
            "failure": failure,
        }))?;
    } else {
        let lines = [
            format!(
                "torture: {} kills in {:.1} s ({} writer tasks, seed {seed})",
                totals.kills,
                elapsed.as_secs_f64(),
                a.tasks
            ),
            format!(
                "  acknowledged  {} transactions; verified {}; lost {}",
                totals.acked, totals.verified, totals.lost
            ),
            format!(
                "  in flight     {} applied, {} absent at the kill (either is correct); torn transactions {}; unexpected records {}",
                totals.in_flight_applied, totals.in_flight_absent, totals.torn_transactions, totals.unexpected
            ),
            format!(
                "  epochs        {} seen, {}..={}, {}",
                totals.epochs_seen,
                totals.first_epoch,
                totals.last_epoch,
                if totals.epoch_violations == 0 {
                    "strictly increasing".to_owned()
                } else {
                    format!("{} violation(s)", totals.epoch_violations)
                }
            ),
            format!(
                "  recovery      median {median:.1} ms, max {max:.1} ms over {} reopens (whole open: replay, repairs, new segment, epoch record)",
                totals.recoveries.len()
            ),
            format!(
                "  replay        median {replay_median:.1} ms, max {replay_max:.1} ms (snapshot load and log replay alone)"
            ),
            format!(
                "  verdict       {}",
                if ok {
                    "OK: every acknowledged write survived every kill".to_owned()
                } else {
                    format!("FAILED{}", failure.as_ref().map(|f| format!(": {f}")).unwrap_or_default())
                }
            ),
        ];
        for line in lines {
            super::out(line)?;
        }
    }
    if let Some(f) = &failure {
        report(f.clone());
    }
    if ok { Ok(ExitCode::SUCCESS) } else { Err(CliError { code: 1, message: None }) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task_models(n: usize) -> Vec<TaskModel> {
        (0..n).map(|_| TaskModel::default()).collect()
    }

    fn lines(text: &str) -> Vec<u8> {
        text.as_bytes().to_vec()
    }

    fn put(task: u32, slot: u32) -> Op {
        let mut l = sample::byte_range(&lock_id(task, slot), "s", "f", "o", &client_id(task));
        l.acquired_at = Timestamp::from_unix_micros(7);
        Op::PutLock(l)
    }

    fn intent(task: u32, seq: u64, ops: &[Op]) -> String {
        format!("I {task} {seq} {}\n", serde_json::to_string(ops).unwrap())
    }

    fn stamped(op: &Op, epoch: u64) -> PersistedLock {
        let Op::PutLock(l) = op else { panic!() };
        PersistedLock { server_epoch: epoch, ..l.clone() }
    }

    #[test]
    fn owner_task_parses_only_workload_ids() {
        assert_eq!(owner_task(&lock_id(3, 7)), Some(3));
        assert_eq!(owner_task(&client_id(12)), Some(12));
        assert_eq!(owner_task("t3-8"), None, "slot out of range");
        assert_eq!(owner_task("x3-1"), None);
        assert_eq!(owner_task("t-1"), None);
    }

    #[test]
    fn acknowledged_grants_must_survive_and_in_flight_ones_may_go_either_way() {
        let mut tasks = task_models(2);
        let mut totals = Totals::default();
        let mut epoch = None;
        let (a, b) = (put(0, 1), put(1, 2));
        let text =
            format!("E 5\n{}A 0 1\n{}", intent(0, 1, std::slice::from_ref(&a)), intent(1, 1, std::slice::from_ref(&b)));
        assert_eq!(absorb(&lines(&text), &mut epoch, &mut tasks, &mut totals), None);
        assert_eq!((epoch, totals.acked), (Some(5), 1));
        // The store has the acknowledged grant and the in-flight one: fine.
        check(vec![stamped(&a, 5), stamped(&b, 5)], vec![], &mut tasks, &mut totals, 1);
        assert!(totals.ok(), "{totals:?}");
        assert_eq!((totals.verified, totals.in_flight_applied), (1, 1));
        // Next round nothing happens, but the acknowledged grant vanished.
        check(vec![stamped(&b, 5)], vec![], &mut tasks, &mut totals, 2);
        assert_eq!(totals.lost, 1);
        assert!(!totals.ok());
    }

    #[test]
    fn a_transaction_applied_in_part_is_torn() {
        let mut tasks = task_models(1);
        let mut totals = Totals::default();
        let (a, b) = (put(0, 0), put(0, 1));
        let text = format!("E 2\n{}", intent(0, 1, &[a.clone(), b]));
        absorb(&lines(&text), &mut None, &mut tasks, &mut totals);
        check(vec![stamped(&a, 2)], vec![], &mut tasks, &mut totals, 1);
        assert_eq!((totals.torn_transactions, totals.lost), (1, 0));
    }

    #[test]
    fn records_nobody_wrote_and_content_changes_are_caught() {
        let mut tasks = task_models(1);
        let mut totals = Totals::default();
        let a = put(0, 0);
        let text = format!("E 2\n{}A 0 1\n", intent(0, 1, std::slice::from_ref(&a)));
        absorb(&lines(&text), &mut None, &mut tasks, &mut totals);
        let mut changed = stamped(&a, 2);
        changed.file_id = format!("{}!", changed.file_id).into();
        let stranger = sample::byte_range("zz", "s", "f", "o", "c");
        check(vec![changed, stranger], vec![], &mut tasks, &mut totals, 1);
        assert_eq!((totals.lost, totals.unexpected), (1, 1));
    }

    #[test]
    fn an_incomplete_last_line_is_ignored_and_an_ack_without_intent_is_a_protocol_error() {
        let mut tasks = task_models(1);
        let mut totals = Totals::default();
        absorb(&lines("E 1\nA 0 1\nI 0 2 [{\"Dele"), &mut None, &mut tasks, &mut totals);
        assert_eq!(totals.protocol_errors, 1);
        assert!(tasks[0].in_flight.is_none(), "the torn intent line was not taken");
    }

    #[test]
    fn epochs_must_increase_strictly() {
        let mut totals = Totals::default();
        totals.see_epoch(1, "a");
        totals.see_epoch(2, "b");
        assert_eq!(totals.epoch_violations, 0);
        totals.see_epoch(2, "c");
        assert_eq!(totals.epoch_violations, 1);
    }

    #[test]
    fn every_chosen_transaction_is_valid_for_the_task() {
        let mut rng = Rng::new(42);
        let mut model = Model::new(3);
        let mut view = TaskView { task: 4, held: BTreeMap::new(), has_client: false, epoch: 3 };
        view.held.insert(0, 2); // a lock from an earlier epoch, for reclaim
        model.epoch = 2;
        model.apply(&[put(4, 0)]).unwrap();
        model.epoch = 3;
        for seq in 1..5000 {
            let ops = view.choose(&mut rng, seq);
            model.apply(&ops).unwrap_or_else(|e| panic!("transaction {seq} {ops:?} refused: {e}"));
            view.applied(&ops);
            let held: BTreeSet<u32> = model.locks.keys().map(|id| id[3..].parse().unwrap()).collect();
            assert_eq!(held, view.held.keys().copied().collect(), "after {seq}");
            assert!(
                model.locks.keys().chain(model.clients.keys().map(|(_, id)| id)).all(|id| owner_task(id) == Some(4))
            );
        }
    }
}
