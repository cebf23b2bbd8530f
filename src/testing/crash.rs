//! Crash testing of the WAL store on the power-loss simulator: run a
//! workload while taking the crash image of every I/O call, reopen each
//! image (crashing again during that recovery when asked), and check the
//! recovered store against what the workload acknowledged and issued.
//!
//! The check, for a crash while step `i` was in flight: the recovered locks,
//! clients, durable handles, records (every field of each) and
//! clean-shutdown flag equal those expected after the first `j`
//! steps for some `j` between the number acknowledged and the number issued
//! (every acknowledged grant and release is there, nothing never issued is,
//! an acknowledged consume of a handle stays consumed, a transaction is all
//! or nothing: its records and its locks both there or both absent), and
//! the epoch is the epoch of that
//! prefix plus one: strictly greater than any acknowledged before the crash.

use crate::error::Error;
use crate::io::FileSystem;
use crate::io::sim::{Fill, Loss, Pending, SimFs};
use crate::model::{ClientKind, ClientRecord, DurableHandle, HandleQuery, LockQuery, PersistedLock, RecordScan};
use crate::store::LockStore;
use crate::testing::model::error_kind;
use crate::testing::workload::{Expected, Rng, SPACES, Step, Targeted, expected_states_from};
use crate::wal::{WalLockStore, WalOptions};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Chooses the loss patterns tried at a crash point: given the call's
/// number and the operations pending there.
pub type SelectLosses = Arc<dyn Fn(u64, &[Pending]) -> Vec<Loss> + Send + Sync>;

/// The store directory used by the crash tests.
pub fn store_dir() -> PathBuf {
    PathBuf::from("/srv/locks")
}

/// Options for crash tests: the smallest segments (so that rotations are
/// frequent) and no automatic compaction (compactions are workload steps,
/// so the I/O sequence is deterministic).
pub fn crash_options() -> WalOptions {
    WalOptions {
        segment_size: crate::wal::MIN_SEGMENT_SIZE,
        compact_after_bytes: None,
        compact_interval: None,
        ..WalOptions::default()
    }
}

/// Creates `dir` and makes its entry durable (syncing every new ancestor's
/// parent), as an installer would. The store itself does not sync the
/// parent of its directory (see `tests/crash_regressions.rs`).
pub fn prepare_dir(fs: &SimFs, dir: &Path) -> std::io::Result<()> {
    fs.create_dir_all(dir)?;
    for ancestor in dir.ancestors().skip(1) {
        fs.sync_dir(ancestor)?;
    }
    Ok(())
}

/// The loss patterns worth trying with these pending operations: drop all,
/// every prefix (at most `max_prefixes`, spread evenly, always including
/// all), and for each pending write (at most `max_torn`) one tear filled
/// with zeros and one with garbage, at cut points drawn from `seed`.
pub fn losses(pending: &[Pending], seed: u64, max_prefixes: usize, max_torn: usize) -> Vec<Loss> {
    let mut out = vec![Loss::DropUnsynced];
    let n = pending.len();
    let prefixes = n.min(max_prefixes);
    for i in 1..=prefixes {
        out.push(Loss::KeepPrefix(i * n / prefixes));
    }
    let mut rng = Rng::new(seed);
    let writes: Vec<(usize, usize)> = pending
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Pending::Write { len, .. } if *len > 1 => Some((i, *len)),
            _ => None,
        })
        .collect();
    let step = writes.len().div_ceil(max_torn.max(1)).max(1);
    for &(keep, len) in writes.iter().step_by(step) {
        let at = 1 + rng.below(len as u64 - 1) as usize;
        out.push(Loss::Torn { keep, at, fill: Fill::Zeros });
        let at = rng.below(len as u64) as usize;
        out.push(Loss::Torn { keep, at, fill: Fill::Garbage(rng.next_u64()) });
    }
    out
}

/// The default selection: [`losses`] with up to 4 prefixes and 2 tears.
pub fn default_losses() -> SelectLosses {
    Arc::new(|k, pending| losses(pending, k, 4, 2))
}

/// Polls a future that is ready at once (the store's reads take no await).
fn now<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("a read of the store was expected to complete at once"),
    }
}

/// Everything observable about a store's durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Every lock, sorted by id.
    pub locks: Vec<PersistedLock>,
    /// Every client, sorted by kind, then id.
    pub clients: Vec<ClientRecord>,
    /// Every durable handle, sorted by id.
    pub handles: Vec<DurableHandle>,
    /// Every record of the keyspaces workloads use ([`SPACES`]), as
    /// (space, key, value), sorted by space, then key.
    pub records: Vec<(String, Vec<u8>, Vec<u8>)>,
    /// The epoch of this incarnation.
    pub epoch: u64,
    /// Whether the previous incarnation closed cleanly.
    pub clean: bool,
}

/// Reads everything observable from an open store: records of the
/// keyspaces in [`SPACES`], which the workloads keep to (a [`LockStore`]
/// has no call that lists keyspaces: [`observe_wal`] sees every one).
pub fn observe(store: &dyn LockStore) -> Result<Observed, Error> {
    let mut spaces = SPACES.map(str::to_owned);
    spaces.sort_unstable();
    observe_spaces(store, &spaces)
}

/// [`observe`] of a WAL store, with the records of every keyspace it holds
/// (so that a record anywhere else is seen too), each keyspace's scan
/// checked against the count the store gives for it.
pub fn observe_wal(store: &WalLockStore) -> Result<Observed, Error> {
    let spaces = store.record_spaces();
    let names: Vec<String> = spaces.iter().map(|(name, _)| name.clone()).collect();
    let observed = observe_spaces(store, &names)?;
    for (space, count) in spaces {
        let scanned = observed.records.iter().filter(|(s, _, _)| *s == space).count() as u64;
        if scanned != count {
            return Err(Error::Internal(format!("keyspace {space:?} counts {count} records, a scan finds {scanned}")));
        }
    }
    Ok(observed)
}

/// [`observe`] with the records of `spaces` (in name order).
fn observe_spaces(store: &dyn LockStore, spaces: &[String]) -> Result<Observed, Error> {
    let mut records = Vec::new();
    for space in spaces {
        for record in now(store.scan_records(space, &RecordScan::all(usize::MAX)))? {
            records.push((space.clone(), record.key, record.value));
        }
    }
    Ok(Observed {
        locks: now(store.list_locks(&LockQuery::all()))?,
        clients: now(store.list_clients(&crate::model::ClientQuery::all()))?,
        handles: now(store.list_handles(&HandleQuery::All))?,
        records,
        epoch: now(store.epoch())?,
        clean: now(store.previous_shutdown_was_clean())?,
    })
}

/// [`Targeted::check`] of an observed state, `acked` steps acknowledged.
pub fn check_targeted(observed: &Observed, targeted: &Targeted, acked: usize) -> Result<(), String> {
    targeted.check(
        &|id| observed.locks.iter().any(|l| &*l.id == id),
        &|space, key| observed.records.iter().any(|(s, k, _)| s == space && k == key),
        &|id| observed.handles.iter().any(|h| h.id == id),
        acked,
    )
}

fn matches(observed: &Observed, expected: &Expected) -> bool {
    observed.epoch == expected.model.epoch + 1
        && observed.clean == expected.clean
        && observed.locks.len() == expected.model.locks.len()
        && observed.locks.iter().eq(expected.model.locks.values())
        && observed.clients.iter().eq(expected.model.clients.values())
        && observed.handles.iter().eq(expected.model.handles.values())
        && observed.records.len() == expected.model.records.len()
        && observed
            .records
            .iter()
            .zip(&expected.model.records)
            .all(|((s, k, v), ((ms, mk), mv))| (s, k, v) == (ms, mk, mv))
}

/// The hex of a key, for messages.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Which entries of `want` are missing from `got`, which of `got` are not
/// in `want`, and which differ: each as its key's name.
fn diff<K: Ord + Clone, V: PartialEq>(
    want: &std::collections::BTreeMap<K, V>,
    got: &std::collections::BTreeMap<K, V>,
    name: impl Fn(&K) -> String,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let lost = want.keys().filter(|k| !got.contains_key(*k)).map(&name).collect();
    let extra = got.keys().filter(|k| !want.contains_key(*k)).map(&name).collect();
    let changed = want.iter().filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v)).map(|(k, _)| name(k)).collect();
    (lost, extra, changed)
}

/// What differs between an observed state and an expected one, for
/// failure messages.
pub fn describe_difference(observed: &Observed, expected: &Expected) -> String {
    let mut out = Vec::new();
    let got: std::collections::BTreeMap<&str, &PersistedLock> = observed.locks.iter().map(|l| (&*l.id, l)).collect();
    let lost: Vec<&str> =
        expected.model.locks.keys().filter(|id| !got.contains_key(id.as_str())).map(|s| s.as_str()).collect();
    let extra: Vec<&str> = got.keys().filter(|id| !expected.model.locks.contains_key(**id)).copied().collect();
    let changed: Vec<&str> = expected
        .model
        .locks
        .iter()
        .filter(|(id, l)| got.get(id.as_str()).is_some_and(|g| g != l))
        .map(|(id, _)| id.as_str())
        .collect();
    if !lost.is_empty() {
        out.push(format!("locks missing: {lost:?}"));
    }
    if !extra.is_empty() {
        out.push(format!("locks that should not be there: {extra:?}"));
    }
    if !changed.is_empty() {
        out.push(format!("locks with other contents: {changed:?}"));
    }
    let want_clients: Vec<(ClientKind, &str)> =
        expected.model.clients.keys().map(|(k, id)| (*k, id.as_str())).collect();
    let got_clients: Vec<(ClientKind, &str)> =
        observed.clients.iter().map(|c| (c.kind(), c.client_id.as_str())).collect();
    if want_clients != got_clients || !observed.clients.iter().eq(expected.model.clients.values()) {
        out.push(format!("clients {got_clients:?}, expected {want_clients:?}"));
    }
    let got_handles = observed.handles.iter().map(|h| (h.id.clone(), h.clone())).collect();
    let (lost, extra, changed) = diff(&expected.model.handles, &got_handles, String::clone);
    for (what, ids) in [("missing", lost), ("that should not be there", extra), ("with other contents", changed)] {
        if !ids.is_empty() {
            out.push(format!("durable handles {what}: {ids:?}"));
        }
    }
    let got_records = observed.records.iter().map(|(s, k, v)| ((s.clone(), k.clone()), v.clone())).collect();
    let (lost, extra, changed) = diff(&expected.model.records, &got_records, |(s, k)| format!("{s}/{}", hex(k)));
    for (what, keys) in [("missing", lost), ("that should not be there", extra), ("with other values", changed)] {
        if !keys.is_empty() {
            out.push(format!("records {what}: {keys:?}"));
        }
    }
    if observed.epoch != expected.model.epoch + 1 {
        out.push(format!("epoch {}, expected {}", observed.epoch, expected.model.epoch + 1));
    }
    if observed.clean != expected.clean {
        out.push(format!("previous shutdown clean {}, expected {}", observed.clean, expected.clean));
    }
    if out.is_empty() { "no difference".into() } else { out.join("; ") }
}

/// Checks an observed state against the allowed ones (`allowed[0]` is the
/// acknowledged state); returns the index of the one it equals.
pub fn verify(observed: &Observed, allowed: &[Expected]) -> Result<usize, String> {
    let acked = &allowed[0];
    if observed.epoch <= acked.model.epoch {
        return Err(format!("epoch {} is not above the acknowledged epoch {}", observed.epoch, acked.model.epoch));
    }
    allowed.iter().position(|e| matches(observed, e)).ok_or_else(|| {
        let mut msg = format!(
            "recovered state matches none of the {} allowed; against the acknowledged state: {}",
            allowed.len(),
            describe_difference(observed, acked)
        );
        if allowed.len() > 1 {
            let last = allowed.last().expect("not empty");
            msg += &format!("; against the last issued: {}", describe_difference(observed, last));
        }
        msg
    })
}

/// A record of a run: what was expected after each prefix, and when (in
/// file-system calls) each step was issued and acknowledged.
#[derive(Debug, Clone)]
pub struct Trace {
    /// `expected[j]`: what must be durable after the first `j` steps.
    pub expected: Vec<Expected>,
    /// `calls()` when each step was issued.
    pub issued_at: Vec<u64>,
    /// `calls()` when each step was acknowledged; `None` when it failed
    /// with an I/O error (and the run stopped, or the store was reopened).
    pub acked_at: Vec<Option<u64>>,
    /// `calls()` when the run ended.
    pub calls: u64,
}

/// The steps that may be durable at a crash: the first `acked` must be,
/// the first `issued` may be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Steps acknowledged before the crash.
    pub acked: usize,
    /// Steps issued before the crash (acknowledged or in flight).
    pub issued: usize,
}

impl Trace {
    /// The window for a crash at call `k` (the image before call `k`).
    pub fn window_at(&self, k: u64) -> Window {
        // Steps run one after another, so everything before the last step
        // acknowledged by then is settled (a failed step before it was
        // resolved by the reopen that followed it).
        let acked = self.acked_at.iter().rposition(|a| a.is_some_and(|at| at <= k)).map_or(0, |i| i + 1);
        let issued = self.issued_at.iter().filter(|&&at| at < k).count().max(acked);
        Window { acked, issued }
    }

    /// The window after the run ended (a fault stopped it or it finished).
    pub fn window_at_end(&self) -> Window {
        let acked = self.acked_at.iter().rposition(Option::is_some).map_or(0, |i| i + 1);
        Window { acked, issued: self.issued_at.len() }
    }

    /// The states allowed by a window.
    pub fn allowed(&self, window: Window) -> &[Expected] {
        &self.expected[window.acked..=window.issued]
    }
}

/// Runs `steps` on `fs` (whose `dir` must exist), checking every answer
/// against the model. Stops at the first step that fails with an I/O
/// error (an injected fault); `Err` when the store answers differently from
/// the model, which is a bug.
pub fn run(fs: &SimFs, dir: &Path, options: &WalOptions, steps: &[Step]) -> Result<Trace, String> {
    run_from(fs, dir, options, Expected::initial(), steps)
}

/// [`run`] on a store that already holds `initial` (a store written
/// earlier, by this or an older version, already in `fs`).
pub fn run_from(
    fs: &SimFs,
    dir: &Path,
    options: &WalOptions,
    initial: Expected,
    steps: &[Step],
) -> Result<Trace, String> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().map_err(|e| e.to_string())?;
    let (expected, answers) = expected_states_from(initial, steps);
    let mut trace = Trace { expected, issued_at: Vec::new(), acked_at: Vec::new(), calls: 0 };
    let mut store: Option<WalLockStore> = None;
    let fs_dyn: Arc<dyn FileSystem> = Arc::new(fs.clone());
    for (i, (step, answer)) in steps.iter().zip(answers).enumerate() {
        trace.issued_at.push(fs.calls());
        let outcome: Result<(), Error> = match step {
            Step::Open => {
                if store.is_some() {
                    return Err(format!("step {i}: Open while open"));
                }
                WalLockStore::open_blocking(Arc::clone(&fs_dyn), dir.to_owned(), options.clone()).map(|s| {
                    store = Some(s);
                })
            }
            Step::Txn(ops) => {
                let s = store.as_ref().ok_or_else(|| format!("step {i}: transaction while closed"))?;
                let got = runtime.block_on(s.transaction(ops.clone()));
                let want = answer.expect("a transaction has an answer");
                match (got, want) {
                    (Ok(got), Ok(want)) if got == want => Ok(()),
                    (Err(got), Err(want)) if error_kind(&got) == error_kind(&want) => Ok(()),
                    (Err(e @ (Error::Io { .. } | Error::Poisoned { .. })), _) => Err(e),
                    (got, want) => return Err(format!("step {i} {ops:?}: store answered {got:?}, model {want:?}")),
                }
            }
            Step::Compact => {
                let s = store.as_ref().ok_or_else(|| format!("step {i}: compaction while closed"))?;
                runtime.block_on(s.compact()).map(drop)
            }
            Step::Close => {
                let s = store.take().ok_or_else(|| format!("step {i}: close while closed"))?;
                let closed = runtime.block_on(s.close());
                drop(s);
                closed
            }
            Step::Drop => {
                store.take().ok_or_else(|| format!("step {i}: drop while closed"))?;
                Ok(())
            }
        };
        match outcome {
            Ok(()) => trace.acked_at.push(Some(fs.calls())),
            Err(Error::Io { .. } | Error::Poisoned { .. } | Error::Closed) => {
                trace.acked_at.push(None);
                refuses_after_failure(&runtime, store.as_ref(), &steps[i + 1..])?;
                break;
            }
            Err(e) => return Err(format!("step {i} {step:?} failed: {e}")),
        }
    }
    drop(store);
    trace.calls = fs.calls();
    Ok(trace)
}

/// After a failed write or sync (a permanent fault: every later call fails
/// too), the store must refuse the next writes and compactions: an
/// acknowledgement now could not be durable.
fn refuses_after_failure(
    runtime: &tokio::runtime::Runtime,
    store: Option<&WalLockStore>,
    next: &[Step],
) -> Result<(), String> {
    let Some(store) = store else { return Ok(()) };
    for step in next.iter().take(3) {
        let answer = match step {
            Step::Txn(ops) => runtime.block_on(store.transaction(ops.clone())).map(drop),
            Step::Compact => runtime.block_on(store.compact()).map(drop),
            _ => break,
        };
        if answer.is_ok() {
            return Err(format!("{step:?} was acknowledged after a failed write or sync"));
        }
    }
    Ok(())
}

/// Runs `steps` on `fs` like an operator who reopens the store after every
/// I/O failure (a transient fault, [`SimFs::fail_once`]): the step that
/// failed is in doubt, and the reopened store must show it whole or not at
/// all; the run goes on from whichever it shows. The trace holds, after the
/// failed step (`acked_at` `None`, expected state with it applied), the
/// reopen as a step of its own, whose expected state follows what the
/// reopened store showed.
pub fn run_with_reopen(fs: &SimFs, dir: &Path, options: &WalOptions, steps: &[Step]) -> Result<Trace, String> {
    let runtime = tokio::runtime::Builder::new_current_thread().build().map_err(|e| e.to_string())?;
    let fs_dyn: Arc<dyn FileSystem> = Arc::new(fs.clone());
    let open = || WalLockStore::open_blocking(Arc::clone(&fs_dyn), dir.to_owned(), options.clone());
    let mut now = Expected::initial();
    let mut trace = Trace { expected: vec![now.clone()], issued_at: Vec::new(), acked_at: Vec::new(), calls: 0 };
    let mut store: Option<WalLockStore> = None;
    let mut failures = 0;
    for (i, step) in steps.iter().enumerate() {
        let mut next = now.clone();
        let want = next.apply(step);
        trace.issued_at.push(fs.calls());
        let outcome: Result<(), Error> = match step {
            Step::Open => open().map(|s| store = Some(s)),
            Step::Txn(ops) => {
                let s = store.as_ref().ok_or_else(|| format!("step {i}: transaction while closed"))?;
                match (runtime.block_on(s.transaction(ops.clone())), want.expect("a transaction has an answer")) {
                    (Ok(got), Ok(want)) if got == want => Ok(()),
                    (Err(got), Err(want)) if error_kind(&got) == error_kind(&want) => Ok(()),
                    (Err(e @ (Error::Io { .. } | Error::Poisoned { .. })), _) => Err(e),
                    (got, want) => return Err(format!("step {i} {ops:?}: store answered {got:?}, model {want:?}")),
                }
            }
            Step::Compact => {
                let s = store.as_ref().ok_or_else(|| format!("step {i}: compaction while closed"))?;
                runtime.block_on(s.compact()).map(drop)
            }
            Step::Close => {
                let s = store.take().ok_or_else(|| format!("step {i}: close while closed"))?;
                runtime.block_on(s.close())
            }
            Step::Drop => {
                store.take().ok_or_else(|| format!("step {i}: drop while closed"))?;
                Ok(())
            }
        };
        trace.expected.push(next.clone());
        match outcome {
            Ok(()) => {
                trace.acked_at.push(Some(fs.calls()));
                now = next;
            }
            Err(Error::Io { .. } | Error::Poisoned { .. }) => {
                trace.acked_at.push(None);
                failures += 1;
                if failures > 4 {
                    return Err(format!("step {i} {step:?}: still failing after {failures} reopens"));
                }
                drop(store.take());
                // In doubt: the reopened store decides, and must show one.
                trace.issued_at.push(fs.calls());
                let reopened = open().or_else(|_| open()).map_err(|e| format!("reopen after step {i}: {e}"))?;
                let observed = observe_wal(&reopened).map_err(|e| e.to_string())?;
                let candidates = [now.clone(), next.clone()];
                let matched = verify(&observed, &candidates)
                    .map_err(|e| format!("after step {i} {step:?} failed and the store was reopened: {e}"))?;
                now = candidates[matched].clone();
                now.apply(&Step::Open);
                if matches!(step, Step::Close | Step::Drop) {
                    drop(reopened);
                    now.open = false;
                } else {
                    store = Some(reopened);
                }
                trace.acked_at.push(Some(fs.calls()));
                trace.expected.push(now.clone());
            }
            Err(e) => return Err(format!("step {i} {step:?} failed: {e}")),
        }
    }
    drop(store);
    trace.calls = fs.calls();
    Ok(trace)
}

/// One crash image to check.
pub struct CrashPoint {
    /// The call before which the power was cut.
    pub call: u64,
    /// The operations that were pending at the cut.
    pub pending: Vec<Pending>,
    /// What was lost.
    pub loss: Loss,
    /// The file system after the crash.
    pub image: SimFs,
}

/// Runs `steps` on a fresh simulator and takes, before every call, the
/// crash images `select` asks for. The store directory is prepared (made
/// durable) first, outside the enumeration.
pub fn run_and_capture(
    dir: &Path,
    options: &WalOptions,
    steps: &[Step],
    select: SelectLosses,
) -> Result<(Trace, Vec<CrashPoint>), String> {
    let fs = SimFs::new();
    prepare_dir(&fs, dir).map_err(|e| e.to_string())?;
    run_and_capture_from(fs, dir, options, Expected::initial(), steps, select)
}

/// [`run_and_capture`] on `fs`, whose store directory already holds a
/// store (durably) whose state is `initial`: what crashes during the first
/// open and compaction of a store written by an older version leave.
pub fn run_and_capture_from(
    fs: SimFs,
    dir: &Path,
    options: &WalOptions,
    initial: Expected,
    steps: &[Step],
    select: SelectLosses,
) -> Result<(Trace, Vec<CrashPoint>), String> {
    let points = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&points);
    fs.set_observer(move |point| {
        let pending = point.pending();
        let losses = select(point.index(), &pending);
        let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
        for loss in losses {
            sink.push(CrashPoint { call: point.index(), pending: pending.clone(), loss, image: point.image(loss) });
        }
    });
    let trace = run_from(&fs, dir, options, initial, steps)?;
    fs.clear_observer();
    let points = std::mem::take(&mut *points.lock().unwrap_or_else(|e| e.into_inner()));
    Ok((trace, points))
}

/// What [`check_image`] checked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checked {
    /// Recovered states checked (the image's, and one per crash during its
    /// recovery).
    pub states: u64,
    /// Of those, states in which an operation in flight at the crash had
    /// become durable (a later prefix than the acknowledged one).
    pub in_flight_kept: u64,
    /// Crashes during recovery after which the interrupted recovery's epoch
    /// had become durable.
    pub recovery_epoch_kept: u64,
}

impl std::ops::AddAssign for Checked {
    fn add_assign(&mut self, other: Self) {
        self.states += other.states;
        self.in_flight_kept += other.in_flight_kept;
        self.recovery_epoch_kept += other.recovery_epoch_kept;
    }
}

/// Opens (a copy of) `image` and checks the recovered state against
/// `allowed`; `image` itself is left as it was. With `nested`, also takes
/// crash images during that recovery and checks each of them (allowing, in
/// addition, each state one epoch later: the interrupted recovery may have
/// made its epoch durable).
pub fn check_image(
    image: &SimFs,
    dir: &Path,
    options: &WalOptions,
    allowed: &[Expected],
    nested: Option<SelectLosses>,
) -> Result<Checked, String> {
    let image = &image.copy();
    let captured = Arc::new(Mutex::new(Vec::new()));
    if let Some(select) = nested {
        let sink = Arc::clone(&captured);
        image.set_observer(move |point| {
            let losses = select(point.index(), &point.pending());
            let mut sink = sink.lock().unwrap_or_else(|e| e.into_inner());
            for loss in losses {
                sink.push((point.index(), loss, point.image(loss)));
            }
        });
    }
    let opened = open_and_observe(image, dir, options);
    image.clear_observer();
    let observed = opened.map_err(|e| format!("open failed: {e}"))?;
    let matched = verify(&observed, allowed)?;
    let mut checked = Checked { states: 1, in_flight_kept: u64::from(matched > 0), recovery_epoch_kept: 0 };
    let captured = std::mem::take(&mut *captured.lock().unwrap_or_else(|e| e.into_inner()));
    let mut widened = allowed.to_vec();
    widened.extend(allowed.iter().map(Expected::reopened));
    for (call, loss, nested_image) in &captured {
        let observed = open_and_observe(nested_image, dir, options)
            .map_err(|e| format!("crash at recovery call {call} with {loss:?}: open failed: {e}"))?;
        let matched =
            verify(&observed, &widened).map_err(|e| format!("crash at recovery call {call} with {loss:?}: {e}"))?;
        checked.states += 1;
        checked.in_flight_kept += u64::from(matched % allowed.len() > 0);
        checked.recovery_epoch_kept += u64::from(matched >= allowed.len());
    }
    Ok(checked)
}

/// Opens the store on `fs` and reads its state; the handle is dropped
/// (not closed) before returning.
pub fn open_and_observe(fs: &SimFs, dir: &Path, options: &WalOptions) -> Result<Observed, Error> {
    let store = WalLockStore::open_blocking(Arc::new(fs.clone()), dir.to_owned(), options.clone())?;
    let observed = observe_wal(&store);
    drop(store);
    observed
}

/// The names and bytes of the files in `dir` of an image, for messages and
/// for tests that tamper with images.
pub fn files(fs: &SimFs, dir: &Path) -> Vec<(String, Vec<u8>)> {
    let names = fs.list(dir).unwrap_or_default();
    names
        .into_iter()
        .filter_map(|n| {
            let bytes = fs.peek(&dir.join(&n)).ok()?;
            Some((n, bytes))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::workload::{handle, record_value};

    /// An expected state with two handles and two records, and what a
    /// store holding exactly it shows.
    fn state() -> (Expected, Observed) {
        let mut expected = Expected::initial();
        expected.apply(&Step::Open);
        let ops = vec![
            crate::op::Op::PutHandle(handle(1, 1, Some(1), 7)),
            crate::op::Op::PutHandle(handle(2, 2, None, 8)),
            crate::op::Op::PutRecord { space: SPACES[0].into(), key: b"a".to_vec(), value: record_value(3) },
            crate::op::Op::PutRecord { space: SPACES[2].into(), key: b"ab".to_vec(), value: record_value(0) },
        ];
        expected.apply(&Step::Txn(ops)).expect("a transaction").expect("applies");
        let observed = Observed {
            locks: Vec::new(),
            clients: Vec::new(),
            handles: expected.model.handles.values().cloned().collect(),
            records: expected.model.records.iter().map(|((s, k), v)| (s.clone(), k.clone(), v.clone())).collect(),
            epoch: expected.model.epoch + 1,
            clean: false,
        };
        (expected, observed)
    }

    /// The crash check sees a handle or record lost, resurrected, or with
    /// one field changed, and says which.
    #[test]
    fn verify_catches_a_lost_resurrected_or_changed_handle_or_record() {
        let (expected, observed) = state();
        assert_eq!(verify(&observed, std::slice::from_ref(&expected)), Ok(0));
        let refused = |o: &Observed| verify(o, std::slice::from_ref(&expected)).expect_err("a difference");
        let mut lost = observed.clone();
        lost.handles.pop();
        assert!(refused(&lost).contains(r#"durable handles missing: ["h2"]"#), "{}", refused(&lost));
        let mut resurrected = observed.clone();
        resurrected.handles.push(handle(3, 3, Some(3), 9));
        assert!(refused(&resurrected).contains("durable handles that should not be there"));
        let mut changed = observed.clone();
        changed.handles[0].position += 1;
        assert!(refused(&changed).contains(r#"durable handles with other contents: ["h1"]"#));
        let mut record_lost = observed.clone();
        record_lost.records.remove(0);
        assert!(refused(&record_lost).contains(r#"records missing: ["dirents/61"]"#), "{}", refused(&record_lost));
        let mut record_back = observed.clone();
        record_back.records.push((SPACES[2].into(), b"b".to_vec(), Vec::new()));
        assert!(refused(&record_back).contains("records that should not be there"));
        let mut value = observed.clone();
        value.records[1].2.push(0);
        assert!(refused(&value).contains("records with other values"));
    }

    /// A WAL store's observation holds the records of every keyspace, not
    /// only those of the workloads.
    #[test]
    fn observe_wal_sees_records_of_every_keyspace() {
        let fs = SimFs::lossless();
        prepare_dir(&fs, &store_dir()).unwrap();
        let put = |space: &str| crate::op::Op::PutRecord { space: space.into(), key: b"k".to_vec(), value: vec![1] };
        let steps = [Step::Open, Step::Txn(vec![put("elsewhere"), put(SPACES[1])]), Step::Close];
        run(&fs, &store_dir(), &crash_options(), &steps).unwrap();
        let observed = open_and_observe(&fs, &store_dir(), &crash_options()).unwrap();
        let spaces: Vec<&str> = observed.records.iter().map(|(s, _, _)| s.as_str()).collect();
        assert_eq!(spaces, [SPACES[1], "elsewhere"]);
        let (expected, _) = crate::testing::workload::expected_states(&steps);
        assert_eq!(verify(&observed, &expected[3..]), Ok(0));
    }
}
