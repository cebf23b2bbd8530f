//! Checked grants ([`Op::Grant`](crate::Op::Grant)) in the database.
//!
//! Checked grants on one file serialize on a transaction-scoped advisory
//! lock keyed by the file ([`file_key`]), taken in its own statement before
//! the file's locks are read: under READ COMMITTED every statement reads a
//! snapshot taken when it starts, so a read after the lock sees every
//! checked grant on the file that committed before it, from any connection
//! or process. The read fetches the rows that may matter (a superset,
//! `sql::GRANT_CANDIDATES`), the rules of
//! [`conflict`](crate::model::conflict) judge them exactly, and the upsert
//! follows when nothing refuses. Files other than the candidate's never
//! wait.
//!
//! While the cluster is in grace (a nonzero recovery epoch in
//! `lockwal_meta`) every checked grant is refused with `InGrace`: each path
//! reads the recovery epoch under a share lock held to its commit, so a
//! grace period cannot start or lift between the check and the write, and
//! the one-flight upsert checks it in its own statement too.
//!
//! A grant alone is one round trip when no row may refuse it
//! ([`Core::grant_alone`]): the transaction, the fence, the advisory lock,
//! the read and an upsert written only when the read's filter finds nothing
//! are sent together. When a row may refuse it, the rows read decide a
//! conflict; rows that turn out compatible (or a plain put racing in
//! between the two statements) send it down the path of a transaction,
//! which reads and judges again.

use super::Core;
use super::codec::{LockParams, decode_lock};
use super::error::{pg_error, retryable};
use super::group::send_all;
use super::numeric::PgU64;
use super::sql;
use super::write::Txn;
use crate::error::{Error, Result};
use crate::metrics;
use crate::model::conflict::{self, covered};
use crate::model::{Conflicts, LockKind, LockType, PersistedLock};
use crate::op::Outcome;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

/// The advisory-lock key of a file: FNV-1a (64-bit) of a fixed prefix and
/// the file id. Part of the schema's contract: every node and every version
/// writing to one database must compute the same key for a file. Two files
/// with one key only wait for each other.
pub(crate) fn file_key(file_id: &str) -> i64 {
    const PREFIX: &[u8] = b"lockwal grant\0";
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &byte in PREFIX.iter().chain(file_id.as_bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// The parameters of `sql::grant_filter` for one candidate.
struct Filter<'a> {
    file: &'a [u8],
    id: &'a [u8],
    owner: &'a [u8],
    client: &'a [u8],
    range: bool,
    exclusive: bool,
    first: PgU64,
    last: PgU64,
}

impl<'a> Filter<'a> {
    fn new(lock: &'a PersistedLock) -> Self {
        let (range, exclusive, first, last) = match &lock.kind {
            LockKind::ByteRange(r) => {
                // A zero-byte lock at x can straddle bytes x - 1 and x.
                let (first, last) = covered(r).unwrap_or((r.offset.saturating_sub(1), r.offset));
                (true, r.lock_type == LockType::Exclusive, first, last)
            }
            _ => (false, false, 0, 0),
        };
        Self {
            file: lock.file_id.as_bytes(),
            id: lock.id.as_bytes(),
            owner: lock.owner_id.as_bytes(),
            client: lock.client_id.as_bytes(),
            range,
            exclusive,
            first: PgU64(first),
            last: PgU64(last),
        }
    }

    fn refs(&self) -> [&(dyn ToSql + Sync); sql::GRANT_FILTER_PARAMS] {
        [&self.file, &self.id, &self.owner, &self.client, &self.range, &self.exclusive, &self.first, &self.last]
    }
}

/// The verdict of the rules on the rows read for `lock`.
fn judge(lock: &PersistedLock, rows: &[Row]) -> Result<Conflicts> {
    let held = rows.iter().map(decode_lock).collect::<Result<Vec<_>>>()?;
    Ok(conflict::conflicts(lock, &held))
}

/// `InGrace` for `lock` when the recovery epoch is not 0.
fn in_grace(lock: &PersistedLock, recovery_epoch: i64) -> Result<()> {
    match recovery_epoch {
        0 => Ok(()),
        r => Err(Error::InGrace { id: lock.id.to_string(), recovery_epoch: r.max(0) as u64 }),
    }
}

fn refused(lock: &PersistedLock, conflicts: Conflicts) -> Error {
    Error::Conflict { id: lock.id.to_string(), conflicts: Box::new(conflicts) }
}

impl Core {
    /// Refuses checked grants while the cluster is in grace: reads the
    /// recovery epoch share-locked to the end of the transaction, so that
    /// no grace period starts or lifts before the grant commits.
    async fn check_grace(&self, txn: &Txn<'_, '_>, lock: &PersistedLock) -> Result<()> {
        let rows = txn.query(sql::GRACE, &[]).await?;
        let recovery_epoch: i64 = rows.first().map_or(0, |row| row.get(0));
        in_grace(lock, recovery_epoch)
    }

    /// A checked grant inside a fenced transaction.
    pub(super) async fn grant(&self, txn: &Txn<'_, '_>, lock: &PersistedLock) -> Result<Outcome> {
        self.check_grace(txn, lock).await?;
        txn.execute(sql::LOCK_FILE, &[&file_key(&lock.file_id)]).await?;
        let rows = txn.query(&sql::GRANT_CANDIDATES, &Filter::new(lock).refs()).await?;
        let conflicts = judge(lock, &rows)?;
        if !conflicts.is_clear() {
            return Err(refused(lock, conflicts));
        }
        txn.execute(&sql::PUT_LOCK, &LockParams::new(lock, self.epoch_sql).refs()).await?;
        Ok(Outcome::Done)
    }

    /// The checked grants of a group, each a request of its own, inside the
    /// group's fenced transaction: the advisory locks of all their files in
    /// key order (one statement), then each grant's read (sent together),
    /// then the rules judge them in order, each against the rows read and
    /// the grants of the group accepted before it, and the accepted ones are
    /// written in one upsert. Each grant's verdict, in order.
    pub(super) async fn grant_group(&self, txn: &Txn<'_, '_>, grants: &[&PersistedLock]) -> Result<Vec<Result<()>>> {
        if let Some(first) = grants.first() {
            match self.check_grace(txn, first).await {
                Ok(()) => {}
                Err(Error::InGrace { recovery_epoch, .. }) => {
                    let refuse =
                        |lock: &&PersistedLock| Err(Error::InGrace { id: lock.id.to_string(), recovery_epoch });
                    return Ok(grants.iter().map(refuse).collect());
                }
                Err(e) => return Err(e),
            }
        }
        let mut keys: Vec<i64> = grants.iter().map(|lock| file_key(&lock.file_id)).collect();
        keys.sort_unstable();
        keys.dedup();
        let filters: Vec<Filter<'_>> = grants.iter().map(|lock| Filter::new(lock)).collect();
        let params: Vec<[&(dyn ToSql + Sync); sql::GRANT_FILTER_PARAMS]> = filters.iter().map(Filter::refs).collect();
        // Prepared first, so that each statement is sent on its future's
        // first poll, in order: the reads after the locks.
        let (lock_files, read) = (txn.prepare(sql::LOCK_FILES).await?, txn.prepare(&sql::GRANT_CANDIDATES).await?);
        let keys_param: [&(dyn ToSql + Sync); 1] = [&keys];
        let locked = txn.tx.execute(&lock_files, &keys_param);
        let reads = send_all(params.iter().map(|p| txn.tx.query(&read, p)).collect());
        let (locked, reads) = tokio::join!(biased; locked, reads);
        locked.map_err(pg_error(txn.during))?;
        let reads: Vec<Result<Vec<Row>>> = reads.into_iter().map(|r| r.map_err(pg_error(txn.during))).collect();
        let mut accepted: Vec<&PersistedLock> = Vec::new();
        let mut verdicts = Vec::with_capacity(grants.len());
        for (&lock, rows) in grants.iter().zip(reads) {
            let mut held = rows?.iter().map(decode_lock).collect::<Result<Vec<_>>>()?;
            // The group's earlier grants replace rows of their ids and are
            // held in their place.
            held.retain(|row| !accepted.iter().any(|a| a.id == row.id));
            let conflicts = conflict::conflicts(lock, held.iter().chain(accepted.iter().copied()));
            verdicts.push(if conflicts.is_clear() {
                accepted.retain(|a| a.id != lock.id);
                accepted.push(lock);
                Ok(())
            } else {
                Err(refused(lock, conflicts))
            });
        }
        if !accepted.is_empty() {
            super::batch::put_locks(txn, &accepted, self.epoch_sql).await?;
        }
        Ok(verdicts)
    }

    /// A checked grant that is the whole request, in one round trip: `BEGIN`,
    /// the fence, the advisory lock, the read, the upsert if nothing may
    /// refuse it and `COMMIT`, sent together. `None` when that does not
    /// decide it (the rows read are compatible after all, or a retryable
    /// error): the caller then runs it as a transaction.
    pub(super) async fn grant_alone(&self, lock: &PersistedLock) -> Option<Result<Outcome>> {
        let during = "grant";
        let conn = match self.conn(during).await {
            Ok(conn) => conn,
            Err(e) => return Some(Err(e)),
        };
        let prepared = async {
            Ok::<_, tokio_postgres::Error>((
                conn.prepare_cached(sql::FENCE).await?,
                conn.prepare_cached(sql::GRACE).await?,
                conn.prepare_cached(sql::LOCK_FILE).await?,
                conn.prepare_cached(&sql::GRANT_CANDIDATES).await?,
                conn.prepare_cached(&sql::GRANT_IF_CLEAR_FENCED).await?,
            ))
        };
        let (fence, grace, lock_file, candidates, upsert) = match prepared.await.map_err(pg_error(during)) {
            Ok(statements) => statements,
            Err(e) => return Some(Err(e)),
        };
        let filter = Filter::new(lock);
        let lock_params = LockParams::new(lock, self.epoch_sql);
        let mut upsert_params: Vec<&(dyn ToSql + Sync)> = lock_params.refs().to_vec();
        upsert_params.extend(filter.refs());
        let key = file_key(&lock.file_id);
        let (key_param, filter_params): ([&(dyn ToSql + Sync); 1], _) = ([&key], filter.refs());
        let flight = {
            let _timer = metrics::pg_statement(metrics::Statement::Write);
            // `biased`: polled, so sent, in this order.
            let (begin, fence, grace, locked, rows, written, commit) = tokio::join!(
                biased;
                conn.batch_execute("BEGIN"),
                conn.query_one(&fence, &[]),
                conn.query_one(&grace, &[]),
                conn.execute(&lock_file, &key_param),
                conn.query(&candidates, &filter_params),
                conn.execute(&upsert, &upsert_params),
                conn.batch_execute("COMMIT"),
            );
            // An error aborts the transaction (the `COMMIT` then rolls it
            // back) and fails every later statement: the first is the cause.
            (|| {
                begin?;
                let (fence, grace) = (fence?, grace?);
                locked?;
                let (rows, written) = (rows?, written?);
                commit?;
                Ok((fence, grace, rows, written))
            })()
        };
        // The caller counts the round trip of a decided grant; one left
        // undecided is counted here, before its transaction.
        let undecided = || {
            metrics::pg_round_trips(1);
            None
        };
        let (fence, grace, rows, written) = match flight.map_err(pg_error(during)) {
            Ok(answers) => answers,
            Err(e) if retryable(&e) => return undecided(),
            Err(e) => return Some(Err(e)),
        };
        if let Err(e) = self.check_fence(&fence) {
            return Some(Err(e));
        }
        if written == 1 {
            return Some(Ok(Outcome::Done));
        }
        // The upsert checks the grace itself; the recovery epoch, locked by
        // the read, is the one it saw.
        if let Err(e) = in_grace(lock, grace.get(0)) {
            return Some(Err(e));
        }
        match judge(lock, &rows) {
            Ok(conflicts) if conflicts.is_clear() => undecided(),
            Ok(conflicts) => Some(Err(refused(lock, conflicts))),
            Err(e) => Some(Err(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The key is fixed by the schema's contract: a change would let two
    /// versions grant conflicting locks on one database. The expected value
    /// was computed apart from this code (FNV-1a 64 in Python).
    #[test]
    fn the_file_key_is_stable() {
        assert_ne!(file_key("a"), file_key("b"));
        assert_eq!(file_key("export/a.txt"), -6_286_991_327_593_786_708);
    }
}
