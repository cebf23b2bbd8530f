//! Running a workload on the simulator and recording when each step was
//! issued and acknowledged.

use super::{observe_wal, verify};
use crate::error::Error;
use crate::io::FileSystem;
use crate::io::sim::SimFs;
use crate::op::{Op, Outcome};
use crate::store::LockStore;
use crate::testing::model::error_kind;
use crate::testing::workload::{Expected, Step, expected_states_from};
use crate::wal::{WalLockStore, WalOptions};
use std::path::Path;
use std::sync::Arc;

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

/// The runtime the steps run on: a multi-thread one, as a server's, so that
/// each step's write commits on the calling thread the way a lone write of
/// a server does (`crash_concurrent` covers the writer thread's groups).
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().map_err(|e| e.to_string())
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
    let runtime = runtime()?;
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
                verdict(i, ops, got, answer.expect("a transaction has an answer"))?
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
    let runtime = runtime()?;
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
                let got = runtime.block_on(s.transaction(ops.clone()));
                verdict(i, ops, got, want.expect("a transaction has an answer"))?
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

/// A transaction's answer against the model's: `Ok(Ok)` when they agree,
/// `Ok(Err)` for an I/O failure (the step is in doubt), `Err` when the
/// store answered what the model did not.
fn verdict(
    i: usize,
    ops: &[Op],
    got: Result<Vec<Outcome>, Error>,
    want: Result<Vec<Outcome>, Error>,
) -> Result<Result<(), Error>, String> {
    match (got, want) {
        (Ok(got), Ok(want)) if got == want => Ok(Ok(())),
        (Err(got), Err(want)) if error_kind(&got) == error_kind(&want) => Ok(Ok(())),
        (Err(e @ (Error::Io { .. } | Error::Poisoned { .. })), _) => Ok(Err(e)),
        (got, want) => Err(format!("step {i} {ops:?}: store answered {got:?}, model {want:?}")),
    }
}
