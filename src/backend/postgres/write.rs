//! The write path of one request: a single operation as one fenced
//! autocommit statement, several as one fenced transaction (run again whole
//! after a deadlock), and each operation's statements inside a transaction
//! (`apply`, which a group commit (`group.rs`) and a caller's transaction
//! (`caller.rs`) share through [`Txn`]).

use super::Core;
use super::codec::{ClientParams, HandleParams, LockParams, client_kind_text, decode_handle, decode_lock};
use super::error::{pg_error, put_handle_error, retryable};
use super::sql::{self, Delete, Take};
use crate::error::{Error, Result};
use crate::metrics::{self, Statement as Kind};
use crate::model::DurableHandle;
use crate::op::{Op, Outcome};
use deadpool_postgres::StatementCache;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, Statement, Transaction};

/// Attempts of a transaction that deadlocks or fails to serialize, and of a
/// durable-handle put that loses a race (see [`sql::PUT_HANDLE`]).
const TXN_ATTEMPTS: usize = 5;

/// A transaction the operations run in, and where its statements are
/// prepared.
pub(super) struct Txn<'a, 't> {
    pub(super) tx: &'a Transaction<'t>,
    statements: Statements<'a>,
    pub(super) during: &'static str,
    trips: metrics::RoundTrips,
}

enum Statements<'a> {
    /// A pooled connection's cache: each text is prepared once per
    /// connection. A failed durable-handle put aborts the transaction, which
    /// the pooled path runs again whole.
    Pooled(&'a StatementCache),
    /// A caller's transaction: each text is prepared once per call (and
    /// closed when the call returns). A durable-handle put runs under a
    /// savepoint, as the caller's transaction cannot be run again here.
    Caller(Mutex<HashMap<&'static str, Statement>>),
}

impl<'a, 't> Txn<'a, 't> {
    /// A transaction on a pooled connection.
    pub(super) fn pooled(tx: &'a deadpool_postgres::Transaction<'t>, during: &'static str) -> Self {
        Self { tx, statements: Statements::Pooled(&tx.statement_cache), during, trips: Default::default() }
    }

    /// A caller's transaction.
    pub(super) fn caller(tx: &'a Transaction<'t>, during: &'static str) -> Self {
        Self { tx, statements: Statements::Caller(Mutex::new(HashMap::new())), during, trips: Default::default() }
    }

    pub(super) async fn prepare(&self, text: &'static str) -> Result<Statement> {
        match &self.statements {
            Statements::Pooled(cache) => cache.prepare(self.tx.client(), text).await.map_err(pg_error(self.during)),
            Statements::Caller(cache) => {
                let cached = cache.lock().unwrap_or_else(|e| e.into_inner()).get(text).cloned();
                if let Some(stmt) = cached {
                    return Ok(stmt);
                }
                let stmt = self.tx.prepare(text).await.map_err(pg_error(self.during))?;
                cache.lock().unwrap_or_else(|e| e.into_inner()).insert(text, stmt.clone());
                Ok(stmt)
            }
        }
    }

    pub(super) async fn execute(&self, text: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<u64> {
        let stmt = self.prepare(text).await?;
        let _timer = self.trips.statement();
        self.tx.execute(&stmt, params).await.map_err(pg_error(self.during))
    }

    pub(super) async fn query(&self, text: &'static str, params: &[&(dyn ToSql + Sync)]) -> Result<Vec<Row>> {
        let stmt = self.prepare(text).await?;
        let _timer = self.trips.statement();
        self.tx.query(&stmt, params).await.map_err(pg_error(self.during))
    }

    pub(super) async fn savepoint(&self, command: &str) -> Result<()> {
        self.tx.batch_execute(command).await.map_err(pg_error(self.during))
    }
}

impl Core {
    /// One request on its own: [`single`](Self::single) when it is one
    /// operation that can be one statement, else [`multi`](Self::multi).
    pub(super) async fn alone(&self, ops: &[Op]) -> Result<Vec<Outcome>> {
        match ops {
            [op] => match self.single(op).await {
                // One autocommit statement: one round trip.
                Some(outcome) => outcome.inspect(|_| metrics::pg_round_trips(1)).map(|o| vec![o]),
                None => self.multi(ops).await,
            },
            _ => self.multi(ops).await,
        }
    }

    /// A write that is one operation: one autocommit statement behind the
    /// fence, one round trip. `None` for the operations that need several
    /// statements (reclaim, swap), that return rows they removed (end of
    /// grace, consumes, expiry: a row that fails to decode must roll its
    /// removal back, which an autocommit statement could not), or are rare
    /// (updates and the client-record operations), which run as a fenced
    /// transaction.
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
            Op::PutHandle(handle) => self.put_handle_fenced(handle).await,
            Op::DeleteHandle { id } => match self.delete_fenced("delete_handle", Delete::Handle, id).await {
                Ok(0) => Err(Error::handle_not_found(id)),
                other => other.map(|_| Outcome::Done),
            },
            Op::PutRecord { space, key, value } => {
                let params: [&(dyn ToSql + Sync); 4] = [space, key, value, &self.epoch_sql];
                self.put_fenced("put_record", &sql::PUT_RECORD_FENCED, &params).await
            }
            Op::DeleteRecord { space, key } => self.delete_record_fenced(space, key).await,
            Op::Grant(lock) => return self.grant_alone(lock).await,
            Op::UpdateLock(_)
            | Op::DeleteClient { .. }
            | Op::DeleteClients(_)
            | Op::MarkReclaimComplete { .. }
            | Op::Reclaim { .. }
            | Op::EndGrace { .. }
            | Op::ConsumeHandleByFileId { .. }
            | Op::ConsumeHandleByCreateGuid { .. }
            | Op::ExpireHandles { .. }
            | Op::SwapRecord { .. } => return None,
        })
    }

    async fn put_fenced(&self, during: &'static str, text: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Outcome> {
        let conn = self.conn(during).await?;
        let stmt = conn.prepare_cached(text).await.map_err(pg_error(during))?;
        let _timer = metrics::pg_statement(Kind::Write);
        match conn.execute(&stmt, params).await.map_err(pg_error(during))? {
            0 => Err(self.fenced(&conn).await),
            _ => Ok(Outcome::Done),
        }
    }

    /// Runs a fenced delete; the number of rows it removed.
    async fn delete_fenced(&self, during: &'static str, delete: Delete, key: &str) -> Result<u64> {
        let conn = self.conn(during).await?;
        let stmt = conn.prepare_cached(delete.fenced()).await.map_err(pg_error(during))?;
        let _timer = metrics::pg_statement(Kind::Write);
        let row = conn.query_one(&stmt, &[&self.epoch_sql, &key.as_bytes()]).await.map_err(pg_error(during))?;
        let (unfenced, removed): (bool, i64) = (row.get(0), row.get(1));
        if !unfenced {
            return Err(self.fenced(&conn).await);
        }
        Ok(removed as u64)
    }

    async fn delete_record_fenced(&self, space: &str, key: &[u8]) -> Result<Outcome> {
        let during = "delete_record";
        let conn = self.conn(during).await?;
        let stmt = conn.prepare_cached(&sql::DELETE_RECORD_FENCED).await.map_err(pg_error(during))?;
        let _timer = metrics::pg_statement(Kind::Write);
        let row = conn.query_one(&stmt, &[&self.epoch_sql, &space, &key]).await.map_err(pg_error(during))?;
        let (unfenced, removed): (bool, i64) = (row.get(0), row.get(1));
        match (unfenced, removed) {
            (false, _) => Err(self.fenced(&conn).await),
            (true, 0) => Err(Error::record_not_found(space, key)),
            (true, _) => Ok(Outcome::Done),
        }
    }

    /// A durable-handle put as one fenced statement, run again when it lost
    /// a race to a concurrent put (the statement then sees that handle).
    async fn put_handle_fenced(&self, handle: &DurableHandle) -> Result<Outcome> {
        let during = "put_handle";
        let conn = self.conn(during).await?;
        let stmt = conn.prepare_cached(&sql::PUT_HANDLE_FENCED).await.map_err(pg_error(during))?;
        let params = HandleParams::new(handle);
        let mut refs: Vec<&(dyn ToSql + Sync)> = params.refs().to_vec();
        refs.push(&self.epoch_sql);
        let mut attempt = 1;
        let row = loop {
            let _timer = metrics::pg_statement(Kind::Write);
            match conn.query_one(&stmt, &refs).await.map_err(put_handle_error(during)) {
                Err(e) if retryable(&e) && attempt < TXN_ATTEMPTS => attempt += 1,
                result => break result?,
            }
        };
        if !row.get::<_, bool>(0) {
            return Err(self.fenced(&conn).await);
        }
        handle_conflict(handle, &row)
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
        let txn = Txn::pooled(&tx, during);
        let row = txn.tx.query_one(&txn.prepare(sql::FENCE).await?, &[]).await.map_err(pg_error(during))?;
        // On a refusal, dropping the transaction rolls it back; it wrote nothing.
        self.check_fence(&row)?;
        match self.apply_all(&txn, ops).await {
            Ok(outcomes) => {
                txn.trips.record(3); // BEGIN, the fence, COMMIT
                drop(txn);
                tx.commit().await.map_err(pg_error("commit"))?;
                Ok(outcomes)
            }
            Err(e) => {
                drop(txn);
                // Roll back before the connection goes back to the pool.
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    /// Every operation in order inside a fenced transaction; stops at the
    /// first that fails.
    pub(super) async fn apply_all(&self, txn: &Txn<'_, '_>, ops: &[Op]) -> Result<Vec<Outcome>> {
        let mut outcomes = Vec::with_capacity(ops.len());
        for op in ops {
            outcomes.push(self.apply(txn, op).await?);
        }
        Ok(outcomes)
    }

    /// One operation inside a fenced transaction.
    pub(super) async fn apply(&self, txn: &Txn<'_, '_>, op: &Op) -> Result<Outcome> {
        let during = txn.during;
        match op {
            Op::PutLock(lock) => {
                txn.execute(&sql::PUT_LOCK, &LockParams::new(lock, self.epoch_sql).refs()).await?;
                Ok(Outcome::Done)
            }
            Op::Grant(lock) => self.grant(txn, lock).await,
            Op::PutClient(record) => {
                txn.execute(&sql::PUT_CLIENT, &ClientParams::new(record).refs()).await?;
                Ok(Outcome::Done)
            }
            Op::DeleteLock { id } => match txn.execute(Delete::Lock.plain(), &[&id.as_bytes()]).await? {
                0 => Err(Error::lock_not_found(id)),
                _ => Ok(Outcome::Done),
            },
            Op::UpdateLock(lock) => match txn.execute(&sql::UPDATE_LOCK, &LockParams::new(lock, 0).refs()).await? {
                0 => Err(Error::lock_not_found(&*lock.id)),
                _ => Ok(Outcome::Done),
            },
            Op::DeleteClient { kind, client_id } => {
                let params: [&(dyn ToSql + Sync); 2] = [&client_kind_text(*kind), &client_id.as_bytes()];
                match txn.execute(sql::DELETE_CLIENT, &params).await? {
                    0 => Err(Error::client_not_found(*kind, client_id)),
                    _ => Ok(Outcome::Done),
                }
            }
            Op::DeleteClients(selector) => {
                let kind = selector.kind.map(client_kind_text);
                let id = selector.client_id.as_deref().map(str::as_bytes);
                let name = selector.name.as_deref().map(str::as_bytes);
                let params: [&(dyn ToSql + Sync); 3] = [&kind, &id, &name];
                txn.execute(sql::DELETE_CLIENTS, &params).await.map(Outcome::Count)
            }
            Op::MarkReclaimComplete { kind, client_id } => {
                let params: [&(dyn ToSql + Sync); 2] = [&client_kind_text(*kind), &client_id.as_bytes()];
                match txn.execute(sql::MARK_RECLAIM_COMPLETE, &params).await? {
                    0 => Err(Error::client_not_found(*kind, client_id)),
                    _ => Ok(Outcome::Done),
                }
            }
            Op::DeleteLocksByClient { client_id } => {
                txn.execute(Delete::LocksByClient.plain(), &[&client_id.as_bytes()]).await.map(Outcome::Count)
            }
            Op::DeleteLocksByFile { file_id } => {
                txn.execute(Delete::LocksByFile.plain(), &[&file_id.as_bytes()]).await.map(Outcome::Count)
            }
            Op::Reclaim { id, client_id } => {
                let row = txn
                    .query(sql::RECLAIM_CHECK, &[&id.as_bytes()])
                    .await?
                    .into_iter()
                    .next()
                    .ok_or_else(|| Error::lock_not_found(id))?;
                let (holder, granted_in, ours): (&[u8], i64, bool) = (row.get(0), row.get(1), row.get(2));
                let refuse = |reason| Error::ReclaimRefused { id: id.clone(), client_id: client_id.clone(), reason };
                if !ours {
                    return Err(refuse(crate::error::ReclaimRefusal::OtherNode));
                }
                if holder != client_id.as_bytes() {
                    return Err(refuse(crate::error::ReclaimRefusal::WrongClient));
                }
                if granted_in >= self.epoch_sql {
                    return Err(refuse(crate::error::ReclaimRefusal::CurrentEpoch));
                }
                let stmt = txn.prepare(&sql::RECLAIM_SET).await?;
                let _timer = txn.trips.statement();
                let row =
                    txn.tx.query_one(&stmt, &[&id.as_bytes(), &self.epoch_sql]).await.map_err(pg_error(during))?;
                decode_lock(&row).map(Outcome::Lock)
            }
            Op::EndGrace { share } => {
                let share = share.as_deref().map(str::as_bytes);
                let rows = txn.query(&sql::END_GRACE, &[&self.epoch_sql, &share]).await?;
                let mut removed = rows.iter().map(decode_lock).collect::<Result<Vec<_>>>()?;
                // A named node's whole end of grace: it no longer needs the
                // cluster's grace, which lifts when no node does, atomic with
                // the purge.
                if share.is_none() && !self.node.is_empty() {
                    set_need_grace(txn.tx, false, 0, txn.during).await?;
                }
                removed.sort_unstable_by(|a, b| a.id.cmp(&b.id));
                Ok(Outcome::Locks(removed))
            }
            Op::PutHandle(handle) => self.put_handle_in(txn, handle).await,
            Op::DeleteHandle { id } => match txn.execute(Delete::Handle.plain(), &[&id.as_bytes()]).await? {
                0 => Err(Error::handle_not_found(id)),
                _ => Ok(Outcome::Done),
            },
            Op::ConsumeHandleByFileId { file_id } => {
                consumed(txn.query(Take::ByFileId.plain(), &[&&file_id[..]]).await?, || {
                    Error::handle_not_found_by_file_id(file_id)
                })
            }
            Op::ConsumeHandleByCreateGuid { create_guid } => {
                consumed(txn.query(Take::ByCreateGuid.plain(), &[&&create_guid[..]]).await?, || {
                    Error::handle_not_found_by_create_guid(create_guid)
                })
            }
            Op::ExpireHandles { now } => {
                let rows = txn.query(Take::Expired.plain(), &[&now.unix_micros]).await?;
                rows.iter().map(decode_handle).collect::<Result<Vec<_>>>().map(expired)
            }
            Op::PutRecord { space, key, value } => {
                txn.execute(sql::PUT_RECORD, &[space, key, value]).await?;
                Ok(Outcome::Done)
            }
            Op::DeleteRecord { space, key } => match txn.execute(sql::DELETE_RECORD, &[space, key]).await? {
                0 => Err(Error::record_not_found(space, key)),
                _ => Ok(Outcome::Done),
            },
            Op::SwapRecord { space, key, expected, value } => {
                let current = txn.query(sql::LOCK_RECORD, &[space, key]).await?;
                let current: Option<&[u8]> = current.first().map(|row| row.get(0));
                let failed = |reason| Error::ConditionFailed { space: space.clone(), key: key.clone(), reason };
                match (current, expected.as_deref()) {
                    (None, Some(_)) => return Err(failed("the record is absent")),
                    (Some(_), None) => return Err(failed("the record exists")),
                    (Some(c), Some(e)) if c != e => return Err(failed("the record holds another value")),
                    _ => {}
                }
                match (current, value) {
                    // Absent and to stay absent: nothing to write.
                    (None, None) => {}
                    // Absent in this transaction's view: a concurrent insert
                    // that commits first makes this insert a no-op, and the
                    // swap fails as it would have after that insert.
                    (None, Some(v)) => {
                        if txn.execute(sql::INSERT_RECORD, &[space, key, v]).await? == 0 {
                            return Err(failed("the record exists"));
                        }
                    }
                    // Row-locked by the read: the write finds it.
                    (Some(_), Some(v)) => {
                        txn.execute(sql::UPDATE_RECORD, &[space, key, v]).await?;
                    }
                    (Some(_), None) => {
                        txn.execute(sql::DELETE_RECORD, &[space, key]).await?;
                    }
                }
                Ok(Outcome::Done)
            }
        }
    }

    /// A durable-handle put inside a fenced transaction. On a pooled
    /// connection a lost race fails the transaction with a retryable error
    /// ([`multi`](Self::multi) runs it again); in a caller's transaction the
    /// statement runs under a savepoint and again after a lost race.
    async fn put_handle_in(&self, txn: &Txn<'_, '_>, handle: &DurableHandle) -> Result<Outcome> {
        let stmt = txn.prepare(&sql::PUT_HANDLE).await?;
        let params = HandleParams::new(handle);
        let refs = params.refs();
        if matches!(txn.statements, Statements::Pooled(_)) {
            let _timer = txn.trips.statement();
            let row = txn.tx.query_one(&stmt, &refs).await.map_err(put_handle_error(txn.during))?;
            return handle_conflict(handle, &row);
        }
        let mut attempt = 1;
        loop {
            txn.savepoint("SAVEPOINT lockwal_put_handle").await?;
            match txn.tx.query_one(&stmt, &refs).await.map_err(put_handle_error(txn.during)) {
                Ok(row) => {
                    txn.savepoint("RELEASE SAVEPOINT lockwal_put_handle").await?;
                    return handle_conflict(handle, &row);
                }
                Err(e) if retryable(&e) && attempt < TXN_ATTEMPTS => {
                    txn.savepoint("ROLLBACK TO SAVEPOINT lockwal_put_handle").await?;
                    attempt += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// The outcome of a put-handle statement's row (fence held): written, or
/// refused because another handle holds the file id or create GUID.
fn handle_conflict(handle: &DurableHandle, row: &Row) -> Result<Outcome> {
    let holder: Option<&[u8]> = row.get(1);
    let Some(holder) = holder else { return Ok(Outcome::Done) };
    let field = if row.get::<_, bool>(2) { "file_id" } else { "create_guid" };
    let holder = String::from_utf8(holder.to_vec()).map_err(|e| Error::Postgres {
        during: "decoding a row",
        sqlstate: None,
        message: format!("lockwal_handles row holding the {field} of {:?}: column id: {e}", handle.id),
    })?;
    Err(Error::HandleConflict { id: handle.id.clone(), field, holder })
}

/// The outcome of a consume: the one handle removed, or not found.
fn consumed(rows: Vec<Row>, not_found: impl FnOnce() -> Error) -> Result<Outcome> {
    match rows.first() {
        Some(row) => decode_handle(row).map(|h| Outcome::Handle(Box::new(h))),
        None => Err(not_found()),
    }
}

/// The outcome of an expiry: the handles removed, sorted by id.
fn expired(mut handles: Vec<DurableHandle>) -> Outcome {
    handles.sort_unstable_by(|a, b| a.id.cmp(&b.id));
    Outcome::Handles(handles)
}

/// Sets whether this node needs grace and keeps the recovery epoch true to
/// its rule (a node that needs grace starts one at `epoch` or joins the one
/// in force; with none needing it, none is), in `tx`: the node's row, then
/// the meta row locked, then the rule judged in a statement of its own (see
/// [`sql::GRACE_FOR_UPDATE`]; regression
/// `two_nodes_ending_their_grace_at_once_lift_it`). Returns the recovery
/// epoch.
pub(super) async fn set_need_grace(tx: &Transaction<'_>, need: bool, epoch: i64, during: &'static str) -> Result<i64> {
    let e = || pg_error(during);
    tx.execute(sql::SET_NEED_GRACE, &[&need]).await.map_err(e())?;
    tx.query_one(sql::GRACE_FOR_UPDATE, &[]).await.map_err(e())?;
    Ok(tx.query_one(sql::GRACE_RULE, &[&need, &epoch]).await.map_err(e())?.get(0))
}
