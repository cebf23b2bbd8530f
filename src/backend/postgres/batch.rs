//! Many requests of a group as one statement: the upserts of several locks
//! as one `INSERT ... SELECT FROM unnest(...)`, the deletes of several locks
//! as one `DELETE ... WHERE id = ANY(...)`. One statement is parsed, planned
//! and run once for all its rows, where a statement per lock costs the
//! server that much per lock (docs/decisions/0041-postgres-group-commit.md).
//!
//! Each parameter is a one-dimensional array of one column's values
//! ([`Column`]), encoded in PostgreSQL's binary array format from the very
//! values the single-lock statements send.

use super::codec::{LOCK_COLUMNS, LockParams};
use super::sql;
use super::write::Txn;
use crate::error::Result;
use crate::model::PersistedLock;
use bytes::{BufMut, BytesMut};
use tokio_postgres::types::{IsNull, Kind, ToSql, Type, to_sql_checked};

type BoxError = Box<dyn std::error::Error + Sync + Send>;

/// One column's values as a PostgreSQL array parameter (`bytea[]`,
/// `numeric[]`, ...); each value is encoded by its own [`ToSql`], as the
/// array's element type.
#[derive(Debug)]
struct Column<'a>(Vec<&'a (dyn ToSql + Sync)>);

impl ToSql for Column<'_> {
    fn to_sql(&self, ty: &Type, out: &mut BytesMut) -> std::result::Result<IsNull, BoxError> {
        let Kind::Array(member) = ty.kind() else {
            return Err(format!("column parameter of non-array type {ty}").into());
        };
        let len = i32::try_from(self.0.len()).map_err(|_| "too many array elements")?;
        let header = out.len();
        // ndim, has-nulls flag, element type, then the one dimension's size
        // and lower bound.
        out.put_i32(1);
        out.put_i32(0);
        out.put_u32(member.oid());
        out.put_i32(len);
        out.put_i32(1);
        let mut nulls = false;
        for value in &self.0 {
            let at = out.len();
            out.put_i32(0);
            let size = match value.to_sql_checked(member, out)? {
                IsNull::Yes => {
                    nulls = true;
                    -1
                }
                IsNull::No => i32::try_from(out.len() - at - 4).map_err(|_| "array element too large")?,
            };
            out[at..at + 4].copy_from_slice(&size.to_be_bytes());
        }
        if nulls {
            out[header + 4..header + 8].copy_from_slice(&1i32.to_be_bytes());
        }
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(ty.kind(), Kind::Array(_))
    }

    to_sql_checked!();
}

/// Upserts `locks` (distinct ids) stamped with `epoch`, in one statement,
/// inside a fenced transaction.
pub(super) async fn put_locks(txn: &Txn<'_, '_>, locks: &[&PersistedLock], epoch: i64) -> Result<u64> {
    let params: Vec<LockParams<'_>> = locks.iter().map(|lock| LockParams::new(lock, epoch)).collect();
    let rows: Vec<[&(dyn ToSql + Sync); LOCK_COLUMNS.len()]> = params.iter().map(LockParams::refs).collect();
    let columns: Vec<Column<'_>> =
        (0..LOCK_COLUMNS.len()).map(|c| Column(rows.iter().map(|row| row[c]).collect())).collect();
    let refs: Vec<&(dyn ToSql + Sync)> = columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
    txn.execute(&sql::PUT_LOCKS, &refs).await
}

/// Deletes the locks `ids` (repeats allowed) in one statement inside a
/// fenced transaction; the ids of the rows it removed.
pub(super) async fn delete_locks(txn: &Txn<'_, '_>, ids: &[&str]) -> Result<Vec<Vec<u8>>> {
    let values: Vec<&[u8]> = ids.iter().map(|id| id.as_bytes()).collect();
    let column = Column(values.iter().map(|v| v as &(dyn ToSql + Sync)).collect());
    let rows = txn.query(sql::DELETE_LOCKS, &[&column]).await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}
