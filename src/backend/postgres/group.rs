//! Group commit: concurrent writers' requests share one SQL transaction
//! (one `COMMIT`, one WAL flush on the server), each with its own outcome.
//!
//! A request that finds no write of this handle in flight runs alone, on
//! the path of one request (`write.rs`), without waiting for company. Any
//! other request queues, and a driver task (at most [`MAX_DRIVERS`] at
//! once) takes every queued request (up to [`MAX_GROUP`]) and commits them
//! in one transaction:
//!
//! 1. `BEGIN`; then, sent together without waiting for answers, the fence
//!    (`FOR SHARE` on the epoch row), the upserts of locks as one statement
//!    and the deletes of locks as one (`batch.rs`), and the statement of
//!    every other request that is one operation failing without effect (a
//!    put, a delete: one statement whose refusal, such as not found or a
//!    handle conflict, writes nothing), ordered by key so that groups lock
//!    rows in one order;
//! 2. if the fence holds, the requests that are one checked grant
//!    together (`grant.rs`: the advisory locks of their files in key order,
//!    their reads sent together, the rules judging each against the rows
//!    read and the group's grants accepted before it, the accepted ones
//!    written as one upsert), then every other request (several
//!    operations, or an operation of several statements) in turn under
//!    `SAVEPOINT`, rolled back to it when the request is refused;
//! 3. `COMMIT`, then each request gets its outcome.
//!
//! A refused request fails alone with its own error and leaves no effect.
//! A fence that does not hold fails every request with the refusal, and
//! nothing commits. A database error before the commit (deadlock,
//! serialization failure, a constraint, a lost connection) rolls the group
//! back and splits it: each request then runs alone, with the retries and
//! the exact errors of that path. A failed `COMMIT` may or may not have
//! committed, so it is never run again: every request of the group gets the
//! error. The driver is a task of its own, so a caller that stops waiting
//! cancels nobody else's write (its own may still commit, as when alone).

use super::Core;
use super::batch;
use super::error::pg_error;
use super::sql;
use super::write::Txn;
use crate::error::{Error, Result};
use crate::model::PersistedLock;
use crate::op::{Op, Outcome};
use std::collections::{HashSet, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::Poll;
use tokio::sync::oneshot;

/// Most requests one group transaction commits.
pub(super) const MAX_GROUP: usize = 256;

/// Most group transactions in flight at once.
pub(super) const MAX_DRIVERS: usize = 1;

/// The queue of requests waiting for a group, and who is writing.
#[derive(Default)]
pub(super) struct Group {
    queue: Mutex<Queue>,
    /// Group transactions committed, and the requests they answered.
    groups: AtomicU64,
    grouped: AtomicU64,
    /// Requests handed to a driver and not yet answered.
    waiting: AtomicUsize,
}

/// What group commit has done on one handle ([`PostgresLockStore::group_stats`]).
///
/// [`PostgresLockStore::group_stats`]: super::PostgresLockStore::group_stats
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// SQL transactions that committed a group of two requests or more.
    pub groups: u64,
    /// Requests those transactions answered (the refused ones included).
    pub grouped: u64,
    /// Requests waiting now for a group (queued, or in one not yet
    /// committed).
    pub waiting: usize,
}

#[derive(Default)]
struct Queue {
    pending: VecDeque<Request>,
    /// A request runs alone, outside any group.
    alone: bool,
    /// Driver tasks running; at least one whenever `pending` is not empty.
    drivers: usize,
}

struct Request {
    ops: Vec<Op>,
    reply: oneshot::Sender<Result<Vec<Outcome>>>,
}

/// The outcome of every request of a group, or why the group did not run.
enum GroupError {
    /// Rolled back before its commit: run each request alone.
    Split(Error),
    /// The same answer for every request (a refusal of the fence, a failed
    /// commit).
    All(Error),
}

impl Group {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(super) fn stats(&self) -> GroupStats {
        GroupStats {
            groups: self.groups.load(Ordering::Relaxed),
            grouped: self.grouped.load(Ordering::Relaxed),
            waiting: self.waiting.load(Ordering::Relaxed),
        }
    }
}

/// Runs one write request (at least one operation, validated), alone or in
/// a group.
pub(super) async fn submit(core: &Arc<Core>, ops: Vec<Op>) -> Result<Vec<Outcome>> {
    let alone = {
        let mut queue = core.group.lock();
        let alone = !queue.alone && queue.drivers == 0;
        queue.alone |= alone;
        alone
    };
    if alone {
        let _alone = Alone(core);
        return core.alone(&ops).await;
    }
    let (reply, receiver) = oneshot::channel();
    core.group.waiting.fetch_add(1, Ordering::Relaxed);
    {
        let mut queue = core.group.lock();
        queue.pending.push_back(Request { ops, reply });
        if queue.drivers < MAX_DRIVERS {
            queue.drivers += 1;
            tokio::spawn(drive(Arc::clone(core)));
        }
    }
    receiver.await.unwrap_or_else(|_| Err(lost()))
}

/// The answer to a request whose driver ended without one (it panicked, or
/// the runtime shut down).
fn lost() -> Error {
    Error::Postgres {
        during: "group commit",
        sqlstate: None,
        message: "the group-commit task ended before answering; the write may or may not have committed".into(),
    }
}

/// Clears the `alone` flag when the lone request ends (or is cancelled).
struct Alone<'a>(&'a Core);

impl Drop for Alone<'_> {
    fn drop(&mut self) {
        self.0.group.lock().alone = false;
    }
}

/// Counts a driver out when it ends; one that ends without emptying the
/// queue (a panic) starts another, so no queued request is stranded.
struct Driver {
    core: Arc<Core>,
    done: bool,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut queue = self.core.group.lock();
        if queue.pending.is_empty() {
            queue.drivers -= 1;
        } else {
            tokio::spawn(drive(Arc::clone(&self.core)));
        }
    }
}

/// A driver: commits the queued requests group after group until none is
/// left.
async fn drive(core: Arc<Core>) {
    let mut driver = Driver { core, done: false };
    loop {
        let mut batch: Vec<Request> = {
            let mut queue = driver.core.group.lock();
            if queue.pending.is_empty() {
                queue.drivers -= 1;
                driver.done = true;
                return;
            }
            let n = queue.pending.len().min(MAX_GROUP);
            queue.pending.drain(..n).collect()
        };
        let core = &*driver.core;
        if let [request] = batch.as_mut_slice() {
            let outcome = core.alone(&request.ops).await;
            core.group.waiting.fetch_sub(1, Ordering::Relaxed);
            let _ = batch.pop().map(|r| r.reply.send(outcome));
            continue;
        }
        let outcomes = core.commit_group(&batch).await;
        core.group.waiting.fetch_sub(batch.len(), Ordering::Relaxed);
        for (request, outcome) in batch.into_iter().zip(outcomes) {
            // A caller that stopped waiting drops its receiver: nothing to do.
            let _ = request.reply.send(outcome);
        }
    }
}

/// An operation that is one statement and writes nothing when refused (not
/// found, handle conflict): it runs in a group without a savepoint, its
/// statement sent along with the others'.
fn one_statement(op: &Op) -> bool {
    matches!(
        op,
        Op::PutLock(_)
            | Op::UpdateLock(_)
            | Op::DeleteLock { .. }
            | Op::DeleteLocksByClient { .. }
            | Op::DeleteLocksByFile { .. }
            | Op::PutClient(_)
            | Op::DeleteClient { .. }
            | Op::DeleteClients(_)
            | Op::MarkReclaimComplete { .. }
            | Op::PutHandle(_)
            | Op::DeleteHandle { .. }
            | Op::PutRecord { .. }
            | Op::DeleteRecord { .. }
    )
}

/// The table and key of the row a one-statement operation writes, so that
/// a group writes rows in key order (two groups then never wait for each
/// other in a cycle on these rows); `None` sorts last.
fn row_key(op: &Op) -> Option<(u8, &[u8], &[u8])> {
    match op {
        Op::PutLock(lock) | Op::UpdateLock(lock) => Some((0, lock.id.as_bytes(), b"")),
        Op::DeleteLock { id } => Some((0, id.as_bytes(), b"")),
        Op::PutHandle(handle) => Some((1, handle.id.as_bytes(), b"")),
        Op::DeleteHandle { id } => Some((1, id.as_bytes(), b"")),
        Op::PutRecord { space, key, .. } | Op::DeleteRecord { space, key } => Some((2, space.as_bytes(), key)),
        _ => None,
    }
}

impl Core {
    /// Commits `batch` (two requests or more) in one transaction: each
    /// request's outcome, in `batch` order.
    async fn commit_group(&self, batch: &[Request]) -> Vec<Result<Vec<Outcome>>> {
        let mut outcomes: Vec<Option<Result<Vec<Outcome>>>> =
            batch.iter().map(|_| self.check_writable().err().map(Err)).collect();
        let todo: Vec<usize> = (0..batch.len()).filter(|&i| outcomes[i].is_none()).collect();
        match self.try_group(batch, &todo).await {
            Ok(done) => {
                for (i, outcome) in todo.into_iter().zip(done) {
                    outcomes[i] = Some(outcome);
                }
            }
            Err(GroupError::All(e)) => {
                for &i in &todo {
                    outcomes[i] = Some(Err(copy(&e)));
                }
            }
            Err(GroupError::Split(e)) => {
                tracing::debug!(error = %e, requests = todo.len(), "lockwal: group rolled back, running each alone");
                let alone = join_all(todo.iter().map(|&i| self.alone(&batch[i].ops)).collect()).await;
                for (i, outcome) in todo.into_iter().zip(alone) {
                    outcomes[i] = Some(outcome);
                }
            }
        }
        outcomes.into_iter().map(|o| o.expect("every request answered")).collect()
    }

    /// The group transaction of the requests `todo` of `batch`: their
    /// outcomes in `todo` order once committed.
    async fn try_group(&self, batch: &[Request], todo: &[usize]) -> Result<Vec<Result<Vec<Outcome>>>, GroupError> {
        let during = "group commit";
        let split = GroupError::Split;
        let mut conn = self.conn(during).await.map_err(split)?;
        let tx = conn.transaction().await.map_err(pg_error(during)).map_err(split)?;
        let txn = Txn::pooled(&tx, during);
        let fence = txn.prepare(sql::FENCE).await.map_err(split)?;
        let (mut single, several): (Vec<usize>, Vec<usize>) =
            todo.iter().partition(|&&i| matches!(batch[i].ops.as_slice(), [op] if one_statement(op)));
        single.sort_by(|&a, &b| match (row_key(&batch[a].ops[0]), row_key(&batch[b].ops[0])) {
            (Some(a), Some(b)) => a.cmp(&b),
            (a, b) => a.is_none().cmp(&b.is_none()),
        });
        // Step 1: the fence first, then the upserts of locks (distinct ids)
        // as one statement, the deletes of locks as one, and every other
        // one-statement request, sent together and answered in order.
        let mut seen = HashSet::new();
        let (mut puts, mut deletes, mut rest) = (Vec::new(), Vec::new(), Vec::new());
        for i in single {
            match &batch[i].ops[0] {
                Op::PutLock(lock) if seen.insert(&*lock.id) => puts.push((i, lock)),
                Op::DeleteLock { id } => deletes.push((i, id.as_str())),
                _ => rest.push(i),
            }
        }
        let fence_row = txn.tx.query_one(&fence, &[]);
        let locks: Vec<&PersistedLock> = puts.iter().map(|&(_, lock)| lock).collect();
        let ids: Vec<&str> = deletes.iter().map(|&(_, id)| id).collect();
        let put_all =
            async { if locks.is_empty() { Ok(0) } else { batch::put_locks(&txn, &locks, self.epoch_sql).await } };
        let delete_all = async { if ids.is_empty() { Ok(Vec::new()) } else { batch::delete_locks(&txn, &ids).await } };
        let statements = send_all(rest.iter().map(|&i| self.apply(&txn, &batch[i].ops[0])).collect());
        let (fence_row, put_all, delete_all, statements) = tokio::join!(fence_row, put_all, delete_all, statements);
        let row = fence_row.map_err(pg_error(during)).map_err(split)?;
        if let Err(e) = self.check_fence(&row) {
            drop(txn);
            let _ = tx.rollback().await;
            return Err(GroupError::All(e));
        }
        let mut outcomes: Vec<Option<Result<Vec<Outcome>>>> = (0..batch.len()).map(|_| None).collect();
        put_all.map_err(split)?;
        for &(i, _) in &puts {
            outcomes[i] = Some(Ok(vec![Outcome::Done]));
        }
        // Each removed row answers the first delete of its id; the later
        // ones (the row already gone) find nothing.
        let mut removed: HashSet<Vec<u8>> = delete_all.map_err(split)?.into_iter().collect();
        for &(i, id) in &deletes {
            outcomes[i] = Some(if removed.remove(id.as_bytes()) {
                Ok(vec![Outcome::Done])
            } else {
                Err(Error::lock_not_found(id))
            });
        }
        for (&i, outcome) in rest.iter().zip(statements) {
            match outcome {
                Err(e @ Error::Postgres { .. }) => return Err(split(e)),
                outcome => outcomes[i] = Some(outcome.map(|o| vec![o])),
            }
        }
        // Step 2: the checked grants alone in their requests, judged
        // together, then every other request under a savepoint of its own.
        let (grants, several): (Vec<usize>, Vec<usize>) =
            several.into_iter().partition(|&i| matches!(batch[i].ops.as_slice(), [Op::Grant(_)]));
        if !grants.is_empty() {
            let locks: Vec<&PersistedLock> = grants
                .iter()
                .map(|&i| match &batch[i].ops[0] {
                    Op::Grant(lock) => lock,
                    _ => unreachable!("partitioned as a grant"),
                })
                .collect();
            let verdicts = self.grant_group(&txn, &locks).await.map_err(split)?;
            for (&i, verdict) in grants.iter().zip(verdicts) {
                outcomes[i] = Some(verdict.map(|()| vec![Outcome::Done]));
            }
        }
        for &i in &several {
            txn.savepoint("SAVEPOINT lockwal_request").await.map_err(split)?;
            match self.apply_all(&txn, &batch[i].ops).await {
                Ok(done) => {
                    txn.savepoint("RELEASE SAVEPOINT lockwal_request").await.map_err(split)?;
                    outcomes[i] = Some(Ok(done));
                }
                Err(e @ Error::Postgres { .. }) => return Err(split(e)),
                Err(e) => {
                    txn.savepoint("ROLLBACK TO SAVEPOINT lockwal_request").await.map_err(split)?;
                    outcomes[i] = Some(Err(e));
                }
            }
        }
        drop(txn);
        // Step 3: one commit for all; its failure is every request's.
        tx.commit().await.map_err(pg_error("commit")).map_err(GroupError::All)?;
        self.group.groups.fetch_add(1, Ordering::Relaxed);
        self.group.grouped.fetch_add(todo.len() as u64, Ordering::Relaxed);
        Ok(todo.iter().map(|&i| outcomes[i].take().expect("every request of the group answered")).collect())
    }
}

/// A copy of a group's common error for each of its requests.
fn copy(e: &Error) -> Error {
    match e {
        Error::Postgres { during, sqlstate, message } => {
            Error::Postgres { during, sqlstate: sqlstate.clone(), message: message.clone() }
        }
        Error::Fenced { ours, current } => Error::Fenced { ours: *ours, current: *current },
        Error::Closed => Error::Closed,
        other => Error::Postgres { during: "group commit", sqlstate: None, message: other.to_string() },
    }
}

/// Polls every future once (a statement's future sends it on its first
/// poll when prepared), then awaits each in order: the statements travel
/// together and are answered in order.
pub(super) async fn send_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut ready: Vec<Option<F::Output>> = (0..futures.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (future, out) in futures.iter_mut().zip(ready.iter_mut()) {
            if let Poll::Ready(v) = future.as_mut().poll(cx) {
                *out = Some(v);
            }
        }
        Poll::Ready(())
    })
    .await;
    let mut outputs = Vec::with_capacity(futures.len());
    for (future, out) in futures.into_iter().zip(ready) {
        outputs.push(match out {
            Some(v) => v,
            None => future.await,
        });
    }
    outputs
}

/// Runs every future to completion at once (the requests of a split group,
/// each alone on a connection of its own).
async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut ready: Vec<Option<F::Output>> = (0..futures.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (future, out) in futures.iter_mut().zip(ready.iter_mut()) {
            if out.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(v) => *out = Some(v),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    ready.into_iter().map(|o| o.expect("polled to completion")).collect()
}
