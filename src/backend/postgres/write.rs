//! The write path: a single operation as one fenced autocommit statement,
//! several as one fenced transaction (run again whole after a deadlock),
//! and each operation's statements inside it.

use super::PostgresLockStore;
use super::codec::{ClientParams, LockParams, client_kind_text, decode_lock};
use super::error::{pg_error, retryable};
use super::sql::{self, Delete};
use crate::error::{Error, Result};
use crate::op::{Op, Outcome};
use deadpool_postgres::Transaction;
use tokio_postgres::types::ToSql;

/// Attempts of a transaction that deadlocks or fails to serialize.
const TXN_ATTEMPTS: usize = 5;

impl PostgresLockStore {
    /// A write that is one operation: one autocommit statement behind the
    /// fence, one round trip. `None` for the operations that need several
    /// statements (reclaim, end of grace) or are rare (updates and the
    /// client-record operations), which run as a fenced transaction.
    pub(super) async fn single(&self, op: &Op) -> Option<Result<Outcome>> {
        Some(match op {
            Op::PutLock(lock) => {
                self.put_fenced("put_lock", &sql::PUT_LOCK_FENCED, &LockParams::new(lock, self.epoch_sql).refs()).await
            }
            Op::PutClient(record) => {
                let params = ClientParams::new(record);
                let mut refs: Vec<&(dyn ToSql + Sync)> = params.refs().to_vec();
                refs.push(&self.epoch_sql);
                self.put_fenced("put_client", &sql::PUT_CLIENT_FENCED, &refs).await
            }
            Op::DeleteLock { id } => match self.delete_fenced("delete_lock", Delete::Lock, id).await {
                Ok(0) => Err(Error::lock_not_found(id)),
                other => other.map(|_| Outcome::Done),
            },
            Op::DeleteLocksByClient { client_id } => {
                self.delete_fenced("delete_locks_by_client", Delete::LocksByClient, client_id).await.map(Outcome::Count)
            }
            Op::DeleteLocksByFile { file_id } => {
                self.delete_fenced("delete_locks_by_file", Delete::LocksByFile, file_id).await.map(Outcome::Count)
            }
            Op::UpdateLock(_)
            | Op::DeleteClient { .. }
            | Op::DeleteClients(_)
            | Op::MarkReclaimComplete { .. }
            | Op::Reclaim { .. }
            | Op::EndGrace { .. } => return None,
        })
    }

    async fn put_fenced(&self, during: &'static str, text: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Outcome> {
        let conn = self.conn(during).await?;
        let stmt = conn.prepare_cached(text).await.map_err(pg_error(during))?;
        match conn.execute(&stmt, params).await.map_err(pg_error(during))? {
            0 => Err(self.fenced(&conn).await),
            _ => Ok(Outcome::Done),
        }
    }

    /// Runs a fenced delete; the number of rows it removed.
    async fn delete_fenced(&self, during: &'static str, delete: Delete, key: &str) -> Result<u64> {
        let conn = self.conn(during).await?;
        let stmt = conn.prepare_cached(delete.fenced()).await.map_err(pg_error(during))?;
        let row = conn.query_one(&stmt, &[&self.epoch_sql, &key.as_bytes()]).await.map_err(pg_error(during))?;
        let (unfenced, removed): (bool, i64) = (row.get(0), row.get(1));
        if !unfenced {
            return Err(self.fenced(&conn).await);
        }
        Ok(removed as u64)
    }

    /// A write of several operations: one SQL transaction that share-locks
    /// the epoch row first, run again (whole) after a deadlock.
    pub(super) async fn multi(&self, ops: &[Op]) -> Result<Vec<Outcome>> {
        let mut attempt = 1;
        loop {
            match self.try_multi(ops).await {
                Err(e) if retryable(&e) && attempt < TXN_ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "lockwal: PostgreSQL transaction rolled back, retrying");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn try_multi(&self, ops: &[Op]) -> Result<Vec<Outcome>> {
        let during = "transaction";
        let mut conn = self.conn(during).await?;
        let tx = conn.transaction().await.map_err(pg_error(during))?;
        let fence = tx.prepare_cached(sql::FENCE).await.map_err(pg_error(during))?;
        let row = tx.query_one(&fence, &[]).await.map_err(pg_error(during))?;
        let (current, clean): (i64, bool) = (row.get(0), row.get(1));
        if current != self.epoch_sql || clean {
            // Dropping the transaction rolls it back; it wrote nothing.
            return Err(self.refusal(current, clean));
        }
        let mut outcomes = Vec::with_capacity(ops.len());
        for op in ops {
            match self.apply(&tx, op).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => {
                    // Roll back before the connection goes back to the pool.
                    let _ = tx.rollback().await;
                    return Err(e);
                }
            }
        }
        tx.commit().await.map_err(pg_error("commit"))?;
        Ok(outcomes)
    }

    /// One operation inside a fenced transaction.
    async fn apply(&self, tx: &Transaction<'_>, op: &Op) -> Result<Outcome> {
        let during = "transaction";
        let prepare = |text: &'static str| async move { tx.prepare_cached(text).await.map_err(pg_error(during)) };
        match op {
            Op::PutLock(lock) => {
                let stmt = prepare(&sql::PUT_LOCK).await?;
                tx.execute(&stmt, &LockParams::new(lock, self.epoch_sql).refs()).await.map_err(pg_error(during))?;
                Ok(Outcome::Done)
            }
            Op::PutClient(record) => {
                let stmt = prepare(&sql::PUT_CLIENT).await?;
                tx.execute(&stmt, &ClientParams::new(record).refs()).await.map_err(pg_error(during))?;
                Ok(Outcome::Done)
            }
            Op::DeleteLock { id } => match self.delete_in(tx, Delete::Lock, id).await? {
                0 => Err(Error::lock_not_found(id)),
                _ => Ok(Outcome::Done),
            },
            Op::UpdateLock(lock) => {
                let stmt = prepare(&sql::UPDATE_LOCK).await?;
                match tx.execute(&stmt, &LockParams::new(lock, 0).refs()).await.map_err(pg_error(during))? {
                    0 => Err(Error::lock_not_found(&*lock.id)),
                    _ => Ok(Outcome::Done),
                }
            }
            Op::DeleteClient { kind, client_id } => {
                let stmt = prepare(sql::DELETE_CLIENT).await?;
                let params: [&(dyn ToSql + Sync); 2] = [&client_kind_text(*kind), &client_id.as_bytes()];
                match tx.execute(&stmt, &params).await.map_err(pg_error(during))? {
                    0 => Err(Error::client_not_found(*kind, client_id)),
                    _ => Ok(Outcome::Done),
                }
            }
            Op::DeleteClients(selector) => {
                let stmt = prepare(sql::DELETE_CLIENTS).await?;
                let kind = selector.kind.map(client_kind_text);
                let id = selector.client_id.as_deref().map(str::as_bytes);
                let name = selector.name.as_deref().map(str::as_bytes);
                let params: [&(dyn ToSql + Sync); 3] = [&kind, &id, &name];
                tx.execute(&stmt, &params).await.map_err(pg_error(during)).map(Outcome::Count)
            }
            Op::MarkReclaimComplete { kind, client_id } => {
                let stmt = prepare(sql::MARK_RECLAIM_COMPLETE).await?;
                let params: [&(dyn ToSql + Sync); 2] = [&client_kind_text(*kind), &client_id.as_bytes()];
                match tx.execute(&stmt, &params).await.map_err(pg_error(during))? {
                    0 => Err(Error::client_not_found(*kind, client_id)),
                    _ => Ok(Outcome::Done),
                }
            }
            Op::DeleteLocksByClient { client_id } => {
                self.delete_in(tx, Delete::LocksByClient, client_id).await.map(Outcome::Count)
            }
            Op::DeleteLocksByFile { file_id } => {
                self.delete_in(tx, Delete::LocksByFile, file_id).await.map(Outcome::Count)
            }
            Op::Reclaim { id, client_id } => {
                let stmt = prepare(sql::RECLAIM_CHECK).await?;
                let row = tx
                    .query_opt(&stmt, &[&id.as_bytes()])
                    .await
                    .map_err(pg_error(during))?
                    .ok_or_else(|| Error::lock_not_found(id))?;
                let (holder, granted_in): (&[u8], i64) = (row.get(0), row.get(1));
                let refuse = |reason| Error::ReclaimRefused { id: id.clone(), client_id: client_id.clone(), reason };
                if holder != client_id.as_bytes() {
                    return Err(refuse(crate::error::ReclaimRefusal::WrongClient));
                }
                if granted_in >= self.epoch_sql {
                    return Err(refuse(crate::error::ReclaimRefusal::CurrentEpoch));
                }
                let stmt = prepare(&sql::RECLAIM_SET).await?;
                let row = tx.query_one(&stmt, &[&id.as_bytes(), &self.epoch_sql]).await.map_err(pg_error(during))?;
                decode_lock(&row).map(Outcome::Lock)
            }
            Op::EndGrace { share } => {
                let stmt = prepare(&sql::END_GRACE).await?;
                let share = share.as_deref().map(str::as_bytes);
                let rows = tx.query(&stmt, &[&self.epoch_sql, &share]).await.map_err(pg_error(during))?;
                let mut removed = rows.iter().map(decode_lock).collect::<Result<Vec<_>>>()?;
                removed.sort_unstable_by(|a, b| a.id.cmp(&b.id));
                Ok(Outcome::Locks(removed))
            }
        }
    }

    async fn delete_in(&self, tx: &Transaction<'_>, delete: Delete, key: &str) -> Result<u64> {
        let during = "transaction";
        let stmt = tx.prepare_cached(delete.plain()).await.map_err(pg_error(during))?;
        tx.execute(&stmt, &[&key.as_bytes()]).await.map_err(pg_error(during))
    }
}
