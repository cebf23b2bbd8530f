//! The [`LockStore`] implementation: validation and the write path's
//! entry, the reads (one prepared statement each; `list_locks` picks the
//! statement for its combination of filters), and `close`.

use super::PostgresLockStore;
use super::codec::{client_kind_text, decode_client, decode_lock};
use super::error::pg_error;
use super::sql;
use crate::error::{Error, Result};
use crate::model::{ClientKind, ClientQuery, ClientRecord, KindFilter, LockQuery, PersistedLock};
use crate::op::{Op, Outcome, validate_batch};
use crate::store::LockStore;
use async_trait::async_trait;
use std::sync::atomic::Ordering;
use tokio_postgres::types::ToSql;

impl PostgresLockStore {
    /// Runs a read statement.
    async fn read(
        &self,
        during: &'static str,
        text: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        self.check_open()?;
        let conn = self.conn(during).await?;
        let stmt = conn.prepare_cached(text).await.map_err(pg_error(during))?;
        conn.query(&stmt, params).await.map_err(pg_error(during))
    }
}

fn kind_text(kind: KindFilter) -> &'static str {
    match kind {
        KindFilter::ByteRange => "byte_range",
        KindFilter::Share => "share",
        KindFilter::Lease => "lease",
        KindFilter::Delegation => "delegation",
    }
}

#[async_trait]
impl LockStore for PostgresLockStore {
    async fn transaction(&self, ops: Vec<Op>) -> Result<Vec<Outcome>> {
        validate_batch(&ops)?;
        self.check_writable()?;
        match ops.as_slice() {
            [] => Ok(Vec::new()),
            [op] => match self.single(op).await {
                Some(outcome) => outcome.map(|o| vec![o]),
                None => self.multi(&ops).await,
            },
            _ => self.multi(&ops).await,
        }
    }

    async fn get_lock(&self, id: &str) -> Result<PersistedLock> {
        let rows = self.read("get_lock", &sql::GET_LOCK, &[&id.as_bytes()]).await?;
        rows.first().map(decode_lock).unwrap_or_else(|| Err(Error::lock_not_found(id)))
    }

    async fn list_locks(&self, query: &LockQuery) -> Result<Vec<PersistedLock>> {
        let kind = query.kind.map(kind_text);
        let keys = [
            query.file_id.as_deref().map(str::as_bytes),
            query.owner_id.as_deref().map(str::as_bytes),
            query.client_id.as_deref().map(str::as_bytes),
            query.share.as_deref().map(str::as_bytes),
        ];
        let mut mask = 0;
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(sql::FILTER_COLUMNS.len());
        for (bit, key) in keys.iter().enumerate() {
            if let Some(key) = key {
                mask |= 1 << bit;
                params.push(key);
            }
        }
        let excluded = query.exclude_kind.map(kind_text);
        let lease_key = query.lease_key.as_ref().map(|k| &k[..]);
        // Every stored epoch is at most i64::MAX: a bound above it filters
        // nothing.
        let before = query.granted_before_epoch.and_then(|e| i64::try_from(e).ok());
        let rest: [(usize, Option<&(dyn ToSql + Sync)>); 4] = [
            (4, kind.as_ref().map(|k| k as &(dyn ToSql + Sync))),
            (5, excluded.as_ref().map(|k| k as &(dyn ToSql + Sync))),
            (6, lease_key.as_ref().map(|k| k as &(dyn ToSql + Sync))),
            (7, before.as_ref().map(|e| e as &(dyn ToSql + Sync))),
        ];
        for (bit, param) in rest {
            if let Some(param) = param {
                mask |= 1 << bit;
                params.push(param);
            }
        }
        let rows = self.read("list_locks", sql::list_locks(mask), &params).await?;
        rows.iter().map(decode_lock).collect()
    }

    async fn count(&self) -> Result<u64> {
        let rows = self.read("count", sql::COUNT, &[]).await?;
        let n: i64 = rows.first().map(|row| row.get(0)).unwrap_or(0);
        Ok(n as u64)
    }

    async fn get_client(&self, kind: ClientKind, client_id: &str) -> Result<ClientRecord> {
        let params: [&(dyn ToSql + Sync); 2] = [&client_kind_text(kind), &client_id.as_bytes()];
        let rows = self.read("get_client", &sql::GET_CLIENT, &params).await?;
        rows.first().map(decode_client).unwrap_or_else(|| Err(Error::client_not_found(kind, client_id)))
    }

    async fn list_clients(&self, query: &ClientQuery) -> Result<Vec<ClientRecord>> {
        let kind = query.kind.map(client_kind_text);
        let params: [&(dyn ToSql + Sync); 2] = [&kind, &query.reclaim_complete];
        let rows = self.read("list_clients", &sql::LIST_CLIENTS, &params).await?;
        rows.iter().map(decode_client).collect()
    }

    async fn epoch(&self) -> Result<u64> {
        self.check_open()?;
        Ok(self.epoch)
    }

    async fn previous_shutdown_was_clean(&self) -> Result<bool> {
        self.check_open()?;
        Ok(self.previous_clean)
    }

    /// Records a clean shutdown (only while the epoch is still this
    /// handle's) and closes the pool. A fenced handle is closed too, but the
    /// call fails with [`Error::Fenced`]: the clean-shutdown marker belongs
    /// to the node that replaced it.
    async fn close(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        if self.read_only {
            self.shut();
            return Ok(());
        }
        if let Err(e) = self.check_unfenced() {
            self.shut();
            return Err(e);
        }
        // From here on this handle writes nothing, even if this call is
        // cancelled; the database refuses writes once the marker committed.
        self.closing.store(true, Ordering::Release);
        let during = "close";
        let conn = self.conn(during).await?;
        let updated = conn.execute(sql::CLOSE, &[&self.epoch_sql]).await.map_err(pg_error(during))?;
        let result = if updated == 1 { Ok(()) } else { Err(self.fenced(&conn).await) };
        drop(conn);
        self.shut();
        if result.is_ok() {
            tracing::info!(schema = %self.schema, epoch = self.epoch, "lockwal: closed PostgreSQL store cleanly");
        }
        result
    }
}
