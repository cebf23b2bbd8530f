//! The SQL text of every statement the backend prepares.
//!
//! Names are unqualified: every connection of a store sets `search_path` to
//! the store's schema when it connects, so one text serves every schema and
//! is prepared once per connection.
//!
//! Two forms exist for each single-operation write:
//!
//! - the **fenced** form is one autocommit statement whose first step is
//!   `SELECT ... FROM lockwal_meta WHERE epoch = <ours> FOR SHARE`. The share
//!   lock on the epoch row makes an `open` by another node (which updates that
//!   row) wait until this statement has committed, and a statement that
//!   starts after such an open finds the new epoch (READ COMMITTED re-reads
//!   the latest row version under a row lock), matches no row, and writes
//!   nothing. One round trip, like the statement without the fence;
//! - the **plain** form runs inside a multi-operation transaction that took
//!   the same share lock with `FENCE` first.

use super::codec::{CLIENT_COLUMNS, LOCK_COLUMNS, LOCK_EPOCH_PARAM};
use std::sync::LazyLock;

/// Reads the epoch row and share-locks it until the transaction ends.
pub(crate) const FENCE: &str = "SELECT epoch, clean FROM lockwal_meta FOR SHARE";

/// The epoch and clean flag now stored (to report why a fenced write
/// matched no row: a newer epoch, or our own clean shutdown).
pub(crate) const CURRENT_EPOCH: &str = "SELECT epoch, clean FROM lockwal_meta";

/// The first step of an open: waits for the writes in flight (their
/// `FOR SHARE` holds the table's ROW SHARE lock) and makes writes that arrive
/// later queue behind the open. Table locks queue fairly; row share locks
/// alone would let a busy node's new writes keep joining ahead of the
/// waiting open. Plain reads (ACCESS SHARE) are not blocked.
pub(crate) const OPEN_LOCK: &str = "LOCK TABLE lockwal_meta IN EXCLUSIVE MODE";

/// Locks the epoch row for an open.
pub(crate) const OPEN_READ: &str = "SELECT epoch, clean FROM lockwal_meta FOR UPDATE";

/// The epoch row, for a read-only open (no lock, no bump).
pub(crate) const META: &str = "SELECT epoch, clean FROM lockwal_meta";

/// Starts the next epoch, not yet cleanly shut down.
pub(crate) const OPEN_BUMP: &str = "UPDATE lockwal_meta SET epoch = epoch + 1, clean = false RETURNING epoch";

/// Records a clean shutdown, only if the epoch is still ours. Every fenced
/// write matches `epoch = ours AND NOT clean`, so none lands after this
/// commits, even from a handle whose `close` was cancelled.
pub(crate) const CLOSE: &str = "UPDATE lockwal_meta SET clean = true WHERE epoch = $1";

/// Every lock column, in [`LOCK_COLUMNS`] order.
pub(crate) static LOCK_SELECT: LazyLock<String> =
    LazyLock::new(|| LOCK_COLUMNS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", "));

fn casts(columns: &[(&str, &str)]) -> String {
    columns.iter().enumerate().map(|(i, (_, ty))| format!("${}::{ty}", i + 1)).collect::<Vec<_>>().join(", ")
}

fn upsert_set(columns: &[(&str, &str)]) -> String {
    columns[1..].iter().map(|(name, _)| format!("{name} = EXCLUDED.{name}")).collect::<Vec<_>>().join(", ")
}

fn names(columns: &[(&str, &str)]) -> String {
    columns.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
}

fn fence_cte(epoch_param: usize) -> String {
    format!(
        "WITH fence AS MATERIALIZED (SELECT epoch FROM lockwal_meta WHERE epoch = ${epoch_param} AND NOT clean FOR SHARE) "
    )
}

/// Upsert of one lock; parameters in `codec::LOCK_COLUMNS` order.
pub static PUT_LOCK: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO lockwal_locks ({}) VALUES ({}) ON CONFLICT (id) DO UPDATE SET {}",
        *LOCK_SELECT,
        casts(&LOCK_COLUMNS),
        upsert_set(&LOCK_COLUMNS)
    )
});

/// [`PUT_LOCK`] behind the fence: same parameters, the `server_epoch`
/// parameter doubling as the epoch the row must still hold. Affects one row,
/// or none when fenced.
pub static PUT_LOCK_FENCED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{}INSERT INTO lockwal_locks ({}) SELECT {} FROM fence ON CONFLICT (id) DO UPDATE SET {}",
        fence_cte(LOCK_EPOCH_PARAM),
        *LOCK_SELECT,
        casts(&LOCK_COLUMNS),
        upsert_set(&LOCK_COLUMNS)
    )
});

/// Upsert of one client record; parameters in [`CLIENT_COLUMNS`] order.
pub(crate) static PUT_CLIENT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "INSERT INTO lockwal_clients ({}) VALUES ({}) ON CONFLICT (kind, client_id) DO UPDATE SET {}",
        names(&CLIENT_COLUMNS),
        casts(&CLIENT_COLUMNS),
        upsert_set(&CLIENT_COLUMNS)
    )
});

/// [`PUT_CLIENT`] behind the fence; the store's epoch is one more parameter
/// after the record's.
pub(crate) static PUT_CLIENT_FENCED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{}INSERT INTO lockwal_clients ({}) SELECT {} FROM fence ON CONFLICT (kind, client_id) DO UPDATE SET {}",
        fence_cte(CLIENT_COLUMNS.len() + 1),
        names(&CLIENT_COLUMNS),
        casts(&CLIENT_COLUMNS),
        upsert_set(&CLIENT_COLUMNS)
    )
});

/// The deletes, keyed by the column their one parameter matches.
#[derive(Debug, Clone, Copy)]
pub enum Delete {
    /// One lock by id.
    Lock,
    /// Every lock of a client.
    LocksByClient,
    /// Every lock on a file.
    LocksByFile,
}

impl Delete {
    fn target(self) -> (&'static str, &'static str) {
        match self {
            Delete::Lock => ("lockwal_locks", "id"),
            Delete::LocksByClient => ("lockwal_locks", "client_id"),
            Delete::LocksByFile => ("lockwal_locks", "file_id"),
        }
    }

    /// The plain delete: `$1` is the key; the affected-row count is the answer.
    pub fn plain(self) -> &'static str {
        static TEXT: LazyLock<[String; 3]> = LazyLock::new(|| {
            [Delete::Lock, Delete::LocksByClient, Delete::LocksByFile].map(|d| {
                let (table, column) = d.target();
                format!("DELETE FROM {table} WHERE {column} = $1::bytea")
            })
        });
        &TEXT[self as usize]
    }

    /// The fenced delete: `$1` is our epoch, `$2` the key. Returns one row:
    /// whether the epoch was still ours, and how many rows were deleted.
    pub fn fenced(self) -> &'static str {
        static TEXT: LazyLock<[String; 3]> = LazyLock::new(|| {
            [Delete::Lock, Delete::LocksByClient, Delete::LocksByFile].map(|d| {
                let (table, column) = d.target();
                format!(
                    "{}, gone AS (DELETE FROM {table} WHERE {column} = $2::bytea AND EXISTS (SELECT FROM fence) \
                     RETURNING 1) SELECT EXISTS (SELECT FROM fence), (SELECT count(*) FROM gone)",
                    fence_cte(1).trim_end()
                )
            })
        });
        &TEXT[self as usize]
    }
}

/// The holder and epoch of a lock, row-locked for a reclaim.
pub(crate) const RECLAIM_CHECK: &str = "SELECT client_id, server_epoch FROM lockwal_locks WHERE id = $1 FOR UPDATE";

/// Re-stamps a lock with `$2`, returning it.
pub(crate) static RECLAIM_SET: LazyLock<String> =
    LazyLock::new(|| format!("UPDATE lockwal_locks SET server_epoch = $2 WHERE id = $1 RETURNING {}", *LOCK_SELECT));

/// Removes every lock from an epoch before `$1` (on share `$2`, or every
/// share when it is NULL), returning them.
pub(crate) static END_GRACE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "DELETE FROM lockwal_locks WHERE server_epoch < $1 AND ($2::bytea IS NULL OR share = $2::bytea) RETURNING {}",
        *LOCK_SELECT
    )
});

/// Replaces every field of lock `$1` but its id and `server_epoch`;
/// parameters in `codec::LOCK_COLUMNS` order (the epoch one unused but
/// typed). Affects one row, or none when the lock does not exist.
pub(crate) static UPDATE_LOCK: LazyLock<String> = LazyLock::new(|| {
    let set = LOCK_COLUMNS
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 0 && *i + 1 != LOCK_EPOCH_PARAM)
        .map(|(i, (name, ty))| format!("{name} = ${}::{ty}", i + 1))
        .collect::<Vec<_>>()
        .join(", ");
    format!("UPDATE lockwal_locks SET {set} WHERE id = $1::bytea AND ${LOCK_EPOCH_PARAM}::bigint IS NOT NULL")
});

/// Removes client record (`$1` kind, `$2` id).
pub(crate) const DELETE_CLIENT: &str = "DELETE FROM lockwal_clients WHERE kind = $1::text AND client_id = $2::bytea";

/// Removes the client records a selector matches: kind `$1`, id `$2`,
/// name `$3`, each ignored when NULL.
pub(crate) const DELETE_CLIENTS: &str = "DELETE FROM lockwal_clients WHERE ($1::text IS NULL OR kind = $1::text) \
     AND ($2::bytea IS NULL OR client_id = $2::bytea) AND ($3::bytea IS NULL OR name = $3::bytea)";

/// Sets `reclaim_complete` of client record (`$1` kind, `$2` id).
pub(crate) const MARK_RECLAIM_COMPLETE: &str =
    "UPDATE lockwal_clients SET reclaim_complete = true WHERE kind = $1::text AND client_id = $2::bytea";

/// One lock by id.
pub(crate) static GET_LOCK: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {} FROM lockwal_locks WHERE id = $1", *LOCK_SELECT));

/// How many locks there are.
pub(crate) const COUNT: &str = "SELECT count(*) FROM lockwal_locks";

/// One client record: kind `$1`, id `$2`.
pub(crate) static GET_CLIENT: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT {} FROM lockwal_clients WHERE kind = $1::text AND client_id = $2::bytea", names(&CLIENT_COLUMNS))
});

/// The client records of kind `$1` with `reclaim_complete` `$2` (each
/// ignored when NULL), by kind in the model's order (NSM, NFSv4, SMB), then
/// client id.
pub(crate) static LIST_CLIENTS: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {} FROM lockwal_clients WHERE ($1::text IS NULL OR kind = $1::text) \
         AND ($2::boolean IS NULL OR reclaim_complete = $2::boolean) \
         ORDER BY CASE kind WHEN 'nsm' THEN 0 WHEN 'nfs4' THEN 1 ELSE 2 END, client_id",
        names(&CLIENT_COLUMNS)
    )
});

/// The filters a lock query can have, in the order of the filter mask bits
/// of [`list_locks`]: column, comparison, parameter type.
pub(crate) const FILTER_COLUMNS: [(&str, &str, &str); 8] = [
    ("file_id", "=", "bytea"),
    ("owner_id", "=", "bytea"),
    ("client_id", "=", "bytea"),
    ("share", "=", "bytea"),
    ("kind", "=", "text"),
    ("kind", "<>", "text"),
    ("lease_key", "=", "bytea"),
    ("server_epoch", "<", "bigint"),
];

/// The list statement for the filters whose bits are set in `mask` (bit `i`
/// is [`FILTER_COLUMNS`]`[i]`), parameters in that order. One text per
/// combination, so each is planned for the indexes it can use (a catch-all
/// `$1 IS NULL OR ...` statement would defeat them).
pub(crate) fn list_locks(mask: usize) -> &'static str {
    static TEXT: LazyLock<Vec<String>> = LazyLock::new(|| {
        (0..1 << FILTER_COLUMNS.len())
            .map(|mask: usize| {
                let mut conds = Vec::new();
                for (bit, (column, op, ty)) in FILTER_COLUMNS.iter().enumerate() {
                    if mask & (1 << bit) != 0 {
                        conds.push(format!("{column} {op} ${}::{ty}", conds.len() + 1));
                    }
                }
                let filter = if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) };
                format!("SELECT {} FROM lockwal_locks{filter} ORDER BY id", *LOCK_SELECT)
            })
            .collect()
    });
    &TEXT[mask]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_number_their_parameters_in_column_order() {
        assert!(PUT_LOCK.contains("$33::boolean") && !PUT_LOCK.contains("$34"));
        assert!(!UPDATE_LOCK.contains("server_epoch =") && UPDATE_LOCK.contains("deleg_is_directory = $33::boolean"));
        assert!(PUT_LOCK_FENCED.contains(&format!("WHERE epoch = ${LOCK_EPOCH_PARAM} AND NOT clean FOR SHARE")));
        assert_eq!(LOCK_COLUMNS[LOCK_EPOCH_PARAM - 1].0, "server_epoch");
        assert!(PUT_CLIENT_FENCED.contains("WHERE epoch = $15 AND NOT clean FOR SHARE"));
        assert_eq!(list_locks(0b10101), {
            let s = format!(
                "SELECT {} FROM lockwal_locks WHERE file_id = $1::bytea AND client_id = $2::bytea AND kind = $3::text \
                 ORDER BY id",
                *LOCK_SELECT
            );
            s
        });
        assert!(Delete::LocksByFile.fenced().contains("DELETE FROM lockwal_locks WHERE file_id = $2::bytea"));
    }
}
