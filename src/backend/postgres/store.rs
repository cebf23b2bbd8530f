//! The [`LockStore`] implementation: validation and the write path's
//! entry, the reads (one prepared statement each; `list_locks` picks the
//! statement for its combination of filters, `list_handles` and
//! `scan_records` theirs), and `close`.

use super::codec::{client_kind_text, decode_client, decode_handle, decode_lock};
use super::error::pg_error;
use super::sql;
use super::{Core, PostgresLockStore};
use crate::error::{Error, Result};
use crate::metrics::{self, Backend, Query, Statement};
use crate::model::{
    ClientKind, ClientQuery, ClientRecord, DurableHandle, FileId, Guid, HandleQuery, KindFilter, LockQuery,
    PersistedLock, Record, RecordScan, validate,
};
use crate::op::{Op, Outcome, validate_batch};
use crate::store::LockStore;
use async_trait::async_trait;
use std::sync::atomic::Ordering;
use tokio_postgres::types::ToSql;

impl Core {
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
        let _timer = metrics::pg_statement(Statement::Read);
        conn.query(&stmt, params).await.map_err(pg_error(during))
    }
}

impl PostgresLockStore {
    /// [`LockStore::transaction`] without its metrics.
    async fn transaction_unmetered(&self, ops: Vec<Op>) -> Result<Vec<Outcome>> {
        validate_batch(&ops)?;
        self.core.check_writable()?;
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        super::group::submit(&self.core, ops).await
    }
}

/// The handle a lookup found, or `not_found`.
fn one_handle(rows: &[tokio_postgres::Row], not_found: impl FnOnce() -> Error) -> Result<DurableHandle> {
    rows.first().map(decode_handle).unwrap_or_else(|| Err(not_found()))
}

/// The smallest key above every key that starts with `prefix`: `None` when
/// there is none (an empty prefix, or one of 0xff bytes only).
pub(crate) fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|&b| b != 0xff)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

/// A scan's filters as one key range `[from, to)` (`to` `None`: to the end
/// of the space): the larger lower bound and the smaller upper bound of
/// the prefix and of `start` and `end`, exactly the keys `scan.matches`.
pub(crate) fn scan_range(scan: &RecordScan) -> (Vec<u8>, Option<Vec<u8>>) {
    let from = match &scan.start {
        Some(start) if *start > scan.prefix => start.clone(),
        _ => scan.prefix.clone(),
    };
    let to = match (prefix_end(&scan.prefix), scan.end.clone()) {
        (Some(p), Some(e)) => Some(p.min(e)),
        (p, e) => p.or(e),
    };
    (from, to)
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
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    async fn transaction(&self, ops: Vec<Op>) -> Result<Vec<Outcome>> {
        let started = metrics::Timer::start();
        let result = self.transaction_unmetered(ops).await;
        metrics::write_finished(Backend::Postgres, started, &result);
        result
    }

    async fn get_lock(&self, id: &str) -> Result<PersistedLock> {
        let _timer = metrics::query(Backend::Postgres, Query::GetLock);
        let rows = self.core.read("get_lock", &sql::GET_LOCK, &[&id.as_bytes()]).await?;
        rows.first().map(decode_lock).unwrap_or_else(|| Err(Error::lock_not_found(id)))
    }

    async fn list_locks(&self, query: &LockQuery) -> Result<Vec<PersistedLock>> {
        let _timer = metrics::query(Backend::Postgres, Query::ListLocks);
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
        let rows = self.core.read("list_locks", sql::list_locks(mask), &params).await?;
        rows.iter().map(decode_lock).collect()
    }

    async fn count(&self) -> Result<u64> {
        let _timer = metrics::query(Backend::Postgres, Query::Count);
        let rows = self.core.read("count", sql::COUNT, &[]).await?;
        let n: i64 = rows.first().map(|row| row.get(0)).unwrap_or(0);
        Ok(n as u64)
    }

    async fn get_client(&self, kind: ClientKind, client_id: &str) -> Result<ClientRecord> {
        let _timer = metrics::query(Backend::Postgres, Query::GetClient);
        let params: [&(dyn ToSql + Sync); 2] = [&client_kind_text(kind), &client_id.as_bytes()];
        let rows = self.core.read("get_client", &sql::GET_CLIENT, &params).await?;
        rows.first().map(decode_client).unwrap_or_else(|| Err(Error::client_not_found(kind, client_id)))
    }

    async fn list_clients(&self, query: &ClientQuery) -> Result<Vec<ClientRecord>> {
        let _timer = metrics::query(Backend::Postgres, Query::ListClients);
        let kind = query.kind.map(client_kind_text);
        let params: [&(dyn ToSql + Sync); 2] = [&kind, &query.reclaim_complete];
        let rows = self.core.read("list_clients", &sql::LIST_CLIENTS, &params).await?;
        rows.iter().map(decode_client).collect()
    }

    async fn get_handle(&self, id: &str) -> Result<DurableHandle> {
        let _timer = metrics::query(Backend::Postgres, Query::GetHandle);
        validate::id("id", id)?;
        let rows = self.core.read("get_handle", &sql::GET_HANDLE[0], &[&id.as_bytes()]).await?;
        one_handle(&rows, || Error::handle_not_found(id))
    }

    async fn get_handle_by_file_id(&self, file_id: &FileId) -> Result<DurableHandle> {
        let _timer = metrics::query(Backend::Postgres, Query::GetHandleByFileId);
        let rows = self.core.read("get_handle_by_file_id", &sql::GET_HANDLE[1], &[&&file_id[..]]).await?;
        one_handle(&rows, || Error::handle_not_found_by_file_id(file_id))
    }

    async fn get_handle_by_create_guid(&self, create_guid: &Guid) -> Result<DurableHandle> {
        let _timer = metrics::query(Backend::Postgres, Query::GetHandleByCreateGuid);
        let rows = self.core.read("get_handle_by_create_guid", &sql::GET_HANDLE[2], &[&&create_guid[..]]).await?;
        one_handle(&rows, || Error::handle_not_found_by_create_guid(create_guid))
    }

    async fn list_handles(&self, query: &HandleQuery) -> Result<Vec<DurableHandle>> {
        let _timer = metrics::query(Backend::Postgres, Query::ListHandles);
        let during = "list_handles";
        let rows = match query {
            HandleQuery::All => self.core.read(during, &sql::LIST_HANDLES[0], &[]).await?,
            HandleQuery::AppInstance(guid) => self.core.read(during, &sql::LIST_HANDLES[1], &[&&guid[..]]).await?,
            HandleQuery::FileHandle(fh) => self.core.read(during, &sql::LIST_HANDLES[2], &[fh]).await?,
            HandleQuery::Share(share) => self.core.read(during, &sql::LIST_HANDLES[3], &[&share.as_bytes()]).await?,
        };
        rows.iter().map(decode_handle).collect()
    }

    async fn get_record(&self, space: &str, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let _timer = metrics::query(Backend::Postgres, Query::GetRecord);
        validate::space(space)?;
        validate::record_key(key)?;
        let rows = self.core.read("get_record", sql::GET_RECORD, &[&space, &key]).await?;
        Ok(rows.first().map(|row| row.get(0)))
    }

    async fn scan_records(&self, space: &str, scan: &RecordScan) -> Result<Vec<Record>> {
        let _timer = metrics::query(Backend::Postgres, Query::ScanRecords);
        validate::scan(space, scan)?;
        let (from, to) = scan_range(scan);
        // At most i64::MAX rows: more than a space can hold.
        let limit = i64::try_from(scan.limit).unwrap_or(i64::MAX);
        let during = "scan_records";
        let rows = match &to {
            None => self.core.read(during, sql::SCAN_RECORDS, &[&space, &from, &limit]).await?,
            Some(to) => self.core.read(during, sql::SCAN_RECORDS_BOUNDED, &[&space, &from, to, &limit]).await?,
        };
        Ok(rows.iter().map(|row| Record { key: row.get(0), value: row.get(1) }).collect())
    }

    async fn epoch(&self) -> Result<u64> {
        self.core.check_open()?;
        Ok(self.core.epoch)
    }

    async fn previous_shutdown_was_clean(&self) -> Result<bool> {
        self.core.check_open()?;
        Ok(self.core.previous_clean)
    }

    /// Records a clean shutdown (only while the epoch is still this
    /// handle's) and closes the pool. A fenced handle is closed too, but the
    /// call fails with [`Error::Fenced`]: the clean-shutdown marker belongs
    /// to the node that replaced it.
    async fn close(&self) -> Result<()> {
        if self.core.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        if self.core.read_only {
            self.core.shut();
            return Ok(());
        }
        if let Err(e) = self.core.check_unfenced() {
            self.core.shut();
            return Err(e);
        }
        // From here on this handle writes nothing, even if this call is
        // cancelled; the database refuses writes once the marker committed.
        self.core.closing.store(true, Ordering::Release);
        let during = "close";
        let conn = self.core.conn(during).await?;
        let updated = conn.execute(sql::CLOSE, &[&self.core.epoch_sql]).await.map_err(pg_error(during))?;
        let result = if updated == 1 { Ok(()) } else { Err(self.core.fenced(&conn).await) };
        drop(conn);
        self.core.shut();
        if result.is_ok() {
            tracing::info!(schema = %self.core.schema, epoch = self.core.epoch, "lockwal: closed PostgreSQL store cleanly");
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The range of a scan holds exactly the keys the scan matches, for
    /// every combination of prefix, start and end over a small alphabet
    /// with the bytes at the edges (0x00, 0xff).
    #[test]
    fn scan_ranges_select_exactly_the_matching_keys() {
        let alphabet = [0x00u8, 0x01, 0x7f, 0xfe, 0xff];
        let mut keys: Vec<Vec<u8>> = vec![Vec::new()];
        for len in 1..=3 {
            let mut next = Vec::new();
            for key in keys.iter().filter(|k| k.len() == len - 1) {
                for &b in &alphabet {
                    let mut k = key.clone();
                    k.push(b);
                    next.push(k);
                }
            }
            keys.extend(next);
        }
        let bounds: Vec<Option<Vec<u8>>> =
            std::iter::once(None).chain(keys.iter().filter(|k| k.len() <= 2).cloned().map(Some)).collect();
        let mut checked = 0;
        for prefix in keys.iter().filter(|k| k.len() <= 2) {
            for start in &bounds {
                for end in bounds.iter().step_by(3) {
                    let scan = RecordScan { prefix: prefix.clone(), start: start.clone(), end: end.clone(), limit: 0 };
                    let (from, to) = scan_range(&scan);
                    for key in &keys {
                        let in_range = *key >= from && to.as_ref().is_none_or(|t| key < t);
                        assert_eq!(in_range, scan.matches(key), "{scan:?} key {key:?}: range {from:?}..{to:?}");
                        checked += 1;
                    }
                }
            }
        }
        assert!(checked > 100_000, "{checked}");
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(&[0x01, 0xff]), Some(vec![0x02]));
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
    }
}
