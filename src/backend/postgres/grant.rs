//! Checked grants ([`Op::Grant`](crate::Op::Grant)) in the database.
//!
//! Checked grants on one file serialize on a transaction-scoped advisory
//! lock keyed by the file ([`file_key`]), taken in its own statement before
//! the file's locks are read: under READ COMMITTED every statement reads a
//! snapshot taken when it starts, so the read that follows the lock sees
//! every checked grant on the file that committed before it, from any
//! connection or process. The read fetches the rows that can matter (a
//! superset: ranges that may overlap, and the non-range kinds the rules
//! consult), [`conflict`](crate::model::conflict) judges them exactly, and
//! the upsert follows when nothing refuses. Files other than the
//! candidate's never wait.

use super::Core;
use super::codec::{LockParams, decode_lock};
use super::sql;
use super::write::Txn;
use crate::error::{Error, Result};
use crate::model::conflict::{self, covered};
use crate::model::{LockKind, PersistedLock};
use crate::op::Outcome;
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

/// The bytes a candidate's rows must be read for: the bytes it covers, or
/// for a zero-byte lock at `x` the two bytes `x - 1` and `x` it can
/// straddle (a superset; the rules decide).
fn span(lock: &PersistedLock) -> Option<(u64, u64)> {
    let LockKind::ByteRange(range) = &lock.kind else { return None };
    Some(covered(range).unwrap_or((range.offset.saturating_sub(1), range.offset)))
}

impl Core {
    /// A checked grant inside a fenced transaction.
    pub(super) async fn grant(&self, txn: &Txn<'_, '_>, lock: &PersistedLock) -> Result<Outcome> {
        txn.execute(sql::LOCK_FILE, &[&file_key(&lock.file_id)]).await?;
        let file: &(dyn ToSql + Sync) = &lock.file_id.as_bytes();
        let rows = match span(lock) {
            Some((first, last)) => {
                let (first, last) = (super::numeric::PgU64(first), super::numeric::PgU64(last));
                txn.query(&sql::GRANT_RANGE_CANDIDATES, &[file, &first, &last]).await?
            }
            None => txn.query(&sql::GRANT_WHOLE_FILE_CANDIDATES, &[file]).await?,
        };
        let held = rows.iter().map(decode_lock).collect::<Result<Vec<_>>>()?;
        let conflicts = conflict::conflicts(lock, &held);
        if !conflicts.is_clear() {
            return Err(Error::Conflict { id: lock.id.to_string(), conflicts: Box::new(conflicts) });
        }
        txn.execute(&sql::PUT_LOCK, &LockParams::new(lock, self.epoch_sql).refs()).await?;
        Ok(Outcome::Done)
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
