//! The SQL text of every statement the backend prepares.
//!
//! Names are unqualified: every connection of a store sets `search_path` to
//! the store's schema when it connects (and `transaction_in` sets it with
//! `SET LOCAL` inside a caller's transaction), so one text serves every
//! schema and is prepared once per connection.
//!
//! Two forms exist for each single-operation write:
//!
//! - the **fenced** form is one autocommit statement whose first step is
//!   `SELECT ... FROM lockwal_nodes WHERE epoch = <ours> FOR SHARE`. Epochs
//!   are unique, so that is this node's row. The share lock on it makes a
//!   reopen of the node (which updates that row) wait until this statement
//!   has committed, and a statement that starts after such an open finds the
//!   new epoch (READ COMMITTED re-reads the latest row version under a row
//!   lock), matches no row, and writes nothing. One round trip, like the
//!   statement without the fence;
//! - the **plain** form runs inside a multi-operation transaction that took
//!   the same share lock with `FENCE` first.

use super::codec::{CLIENT_COLUMNS, HANDLE_COLUMNS, LOCK_COLUMNS, LOCK_EPOCH_PARAM, handle_param};
use std::sync::LazyLock;

/// Reads the node's row (the node of the connection, `lockwal_node()`) and
/// share-locks it until the transaction ends.
pub(crate) const FENCE: &str = "SELECT epoch, clean FROM lockwal_nodes WHERE node_id = lockwal_node() FOR SHARE";

/// The node's epoch and clean flag now stored (to report why a fenced write
/// matched no row: a newer epoch, or our own clean shutdown).
pub(crate) const CURRENT_EPOCH: &str = "SELECT epoch, clean FROM lockwal_nodes WHERE node_id = lockwal_node()";

/// The first step of an open: waits for the writes in flight of every node
/// (their `FOR SHARE` holds the table's ROW SHARE lock) and makes writes that
/// arrive later queue behind the open. Table locks queue fairly; row share
/// locks alone would let a busy node's new writes keep joining ahead of the
/// waiting open. Plain reads (ACCESS SHARE) are not blocked. Every node's
/// writes wait for an open of any node: the one transaction below.
pub(crate) const OPEN_LOCK: &str = "LOCK TABLE lockwal_nodes IN EXCLUSIVE MODE";

/// The clean flag of the node's previous incarnation, when it has one.
pub(crate) const OPEN_READ: &str = "SELECT clean FROM lockwal_nodes WHERE node_id = lockwal_node()";

/// The node's epoch and clean flag for a read-only open (no lock, no bump):
/// for a node that never opened, the cluster's epoch and unclean, as a new
/// store reports.
pub(crate) const META: &str = "SELECT coalesce(n.epoch, m.epoch), coalesce(n.clean, false) FROM lockwal_meta m \
     LEFT JOIN lockwal_nodes n ON n.node_id = lockwal_node()";

/// Takes the cluster's next epoch.
pub(crate) const OPEN_BUMP: &str = "UPDATE lockwal_meta SET epoch = epoch + 1 RETURNING epoch";

/// The database's clock in microseconds since the Unix epoch, one clock
/// for every node (leases are judged by it).
macro_rules! now_us {
    () => {
        "(extract(epoch FROM clock_timestamp()) * 1000000)::bigint"
    };
}

/// Makes `$1` the node's epoch, not yet cleanly shut down, opened and its
/// lease of `$2` ms renewed now.
pub(crate) const OPEN_NODE: &str = concat!(
    "INSERT INTO lockwal_nodes (node_id, epoch, clean, opened_at, lease_ms, renewed_at) \
     VALUES (lockwal_node(), $1, false, ",
    now_us!(),
    ", $2, ",
    now_us!(),
    ") ON CONFLICT (node_id) DO UPDATE SET epoch = EXCLUDED.epoch, clean = false, \
     opened_at = EXCLUDED.opened_at, lease_ms = EXCLUDED.lease_ms, renewed_at = EXCLUDED.renewed_at"
);

/// Renews the lease of the incarnation of epoch `$1`; no row when it was
/// fenced or closed.
pub(crate) const RENEW_LEASE: &str =
    concat!("UPDATE lockwal_nodes SET renewed_at = ", now_us!(), " WHERE epoch = $1 AND NOT clean");

/// A node to take over (`$1`), row-locked: its epoch, clean flag, need of
/// grace, and how many microseconds its lease has left (negative: expired).
pub(crate) const TAKEOVER_READ: &str = concat!(
    "SELECT epoch, clean, renewed_at + lease_ms * 1000 - ",
    now_us!(),
    " FROM lockwal_nodes WHERE node_id = $1 FOR UPDATE"
);

/// Fences node `$1` with the fresh epoch `$2`, closed and needing nothing:
/// if it comes back it opens as a new incarnation that owns nothing.
pub(crate) const TAKEOVER_FENCE: &str =
    "UPDATE lockwal_nodes SET epoch = $2, clean = true, need_grace = false WHERE node_id = $1";

/// Moves node `$1`'s locks to this node, each stamped no later than `$2`
/// (one before this node's epoch), so that its clients may reclaim them
/// here and this node's end of grace removes what they do not.
pub(crate) const TAKEOVER_LOCKS: &str = "UPDATE lockwal_locks SET node_id = lockwal_node(), \
     server_epoch = LEAST(server_epoch, $2) WHERE node_id = $1";

/// Moves node `$1`'s client records to this node.
pub(crate) const TAKEOVER_CLIENTS: &str = "UPDATE lockwal_clients SET node_id = lockwal_node() WHERE node_id = $1";

/// Moves node `$1`'s durable handles to this node.
pub(crate) const TAKEOVER_HANDLES: &str = "UPDATE lockwal_handles SET node_id = lockwal_node() WHERE node_id = $1";

/// What node `$1` owns: locks, client records, durable handles.
pub(crate) const NODE_OWNS: &str = "SELECT (SELECT count(*) FROM lockwal_locks WHERE node_id = $1), \
     (SELECT count(*) FROM lockwal_clients WHERE node_id = $1), \
     (SELECT count(*) FROM lockwal_handles WHERE node_id = $1)";

/// The locks node `$1` owns, by id.
pub(crate) static NODE_LOCKS: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {} FROM lockwal_locks WHERE node_id = $1 ORDER BY id", *LOCK_SELECT));

/// Removes node `$1`'s row.
pub(crate) const REMOVE_NODE: &str = "DELETE FROM lockwal_nodes WHERE node_id = $1";

/// Ends the grace when no node needs it (after a node's row is gone).
pub(crate) const LIFT_IF_UNNEEDED: &str =
    "UPDATE lockwal_meta SET recovery_epoch = 0 WHERE NOT EXISTS (SELECT FROM lockwal_nodes WHERE need_grace)";

/// Whether this node needs grace now.
pub(crate) const NEEDS_GRACE: &str = "SELECT need_grace FROM lockwal_nodes WHERE node_id = lockwal_node()";

/// Whether the node owns any lock (a node that does needs grace at open).
pub(crate) const OWNS_LOCKS: &str = "SELECT EXISTS (SELECT FROM lockwal_locks WHERE node_id = lockwal_node())";

/// Sets whether the node needs grace (`$1`): the first of the three
/// statements of [`set_need_grace`](super::write::set_need_grace), in this
/// order (node row, then the meta row, then the rule).
pub(crate) const SET_NEED_GRACE: &str = "UPDATE lockwal_nodes SET need_grace = $1 WHERE node_id = lockwal_node()";

/// The recovery epoch, row-locked: two nodes changing their need of grace
/// at once take turns here, so the second's [`GRACE_RULE`] (a statement of
/// its own, with a snapshot taken after the first committed) sees the
/// first's flag. One statement doing both would judge the others' flags in
/// a snapshot taken before it waited (READ COMMITTED re-reads only the
/// updated row), and two nodes ending their grace at once would each see
/// the other still needing it and leave the grace in force for good.
pub(crate) const GRACE_FOR_UPDATE: &str = "SELECT recovery_epoch FROM lockwal_meta FOR UPDATE";

/// Keeps the recovery epoch true to its rule after [`SET_NEED_GRACE`]
/// (`$1`, the same flag): a node that needs grace starts one at epoch `$2`
/// or joins the one in force; with no node needing it, none is. Returns the
/// recovery epoch.
pub(crate) const GRACE_RULE: &str = "UPDATE lockwal_meta SET recovery_epoch = CASE \
     WHEN $1 THEN CASE WHEN recovery_epoch = 0 THEN $2 ELSE recovery_epoch END \
     WHEN EXISTS (SELECT FROM lockwal_nodes WHERE need_grace) THEN recovery_epoch ELSE 0 END \
     RETURNING recovery_epoch";

/// The cluster's recovery epoch, share-locked to the end of the
/// transaction: a grace period cannot start or lift before this
/// transaction commits, so the checked grants it judges see the grace
/// state they commit under.
pub(crate) const GRACE: &str = "SELECT recovery_epoch FROM lockwal_meta FOR SHARE";

/// Ends the grace for every node (what `lockwal cluster lift` does), after
/// [`OPEN_LOCK`] and [`LIFT_READ`] in one transaction: the table lock
/// first, as every other transaction that changes the grace state takes it
/// or its node row before the meta row (regression
/// `a_lift_while_a_grant_of_a_node_in_grace_is_in_flight_does_not_deadlock`).
pub(crate) const LIFT_GRACE: &str = "UPDATE lockwal_nodes SET need_grace = false WHERE need_grace; \
     UPDATE lockwal_meta SET recovery_epoch = 0";

/// The recovery epoch a lift ends, row-locked.
pub(crate) const LIFT_READ: &str = "SELECT recovery_epoch FROM lockwal_meta FOR UPDATE";

/// Records a clean shutdown, only if the epoch is still ours. Every fenced
/// write matches `epoch = ours AND NOT clean`, so none lands after this
/// commits, even from a handle whose `close` was cancelled.
pub(crate) const CLOSE: &str = "UPDATE lockwal_nodes SET clean = true WHERE epoch = $1";

/// Every lock column, in [`LOCK_COLUMNS`] order.
pub(crate) static LOCK_SELECT: LazyLock<String> =
    LazyLock::new(|| LOCK_COLUMNS.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", "));

fn casts(columns: &[(&str, &str)]) -> String {
    columns.iter().enumerate().map(|(i, (_, ty))| format!("${}::{ty}", i + 1)).collect::<Vec<_>>().join(", ")
}

/// The `SET` of an upsert: every column but the key, and the owner (the
/// writing node: the column's default).
fn upsert_set(columns: &[(&str, &str)]) -> String {
    let set = columns[1..].iter().map(|(name, _)| format!("{name} = EXCLUDED.{name}")).collect::<Vec<_>>();
    format!("{}, node_id = EXCLUDED.node_id", set.join(", "))
}

fn names(columns: &[(&str, &str)]) -> String {
    columns.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ")
}

fn fence_cte(epoch_param: usize) -> String {
    format!(
        "WITH fence AS MATERIALIZED (SELECT epoch FROM lockwal_nodes WHERE epoch = ${epoch_param} AND NOT clean FOR SHARE) "
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

/// Upsert of several locks with distinct ids in one statement: parameter
/// `n` is the array of column `n`'s values (`codec::LOCK_COLUMNS` order),
/// one element per lock (`batch.rs`), inside a transaction that took the
/// fence.
pub(crate) static PUT_LOCKS: LazyLock<String> = LazyLock::new(|| {
    let arrays = LOCK_COLUMNS.iter().enumerate().map(|(i, (_, ty))| format!("${}::{ty}[]", i + 1)).collect::<Vec<_>>();
    format!(
        "INSERT INTO lockwal_locks ({}) SELECT * FROM unnest({}) ON CONFLICT (id) DO UPDATE SET {}",
        *LOCK_SELECT,
        arrays.join(", "),
        upsert_set(&LOCK_COLUMNS)
    )
});

/// Removes the locks whose ids are in the array `$1`, inside a transaction
/// that took the fence; returns the ids removed.
pub(crate) const DELETE_LOCKS: &str = "DELETE FROM lockwal_locks WHERE id = ANY($1::bytea[]) RETURNING id";

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
    /// One durable handle by id.
    Handle,
}

impl Delete {
    const ALL: [Delete; 4] = [Delete::Lock, Delete::LocksByClient, Delete::LocksByFile, Delete::Handle];

    fn target(self) -> (&'static str, &'static str) {
        match self {
            Delete::Lock => ("lockwal_locks", "id"),
            Delete::LocksByClient => ("lockwal_locks", "client_id"),
            Delete::LocksByFile => ("lockwal_locks", "file_id"),
            Delete::Handle => ("lockwal_handles", "id"),
        }
    }

    /// The plain delete: `$1` is the key; the affected-row count is the answer.
    pub fn plain(self) -> &'static str {
        static TEXT: LazyLock<[String; 4]> = LazyLock::new(|| {
            Delete::ALL.map(|d| {
                let (table, column) = d.target();
                format!("DELETE FROM {table} WHERE {column} = $1::bytea")
            })
        });
        &TEXT[self as usize]
    }

    /// The fenced delete: `$1` is our epoch, `$2` the key. Returns one row:
    /// whether the epoch was still ours, and how many rows were deleted.
    pub fn fenced(self) -> &'static str {
        static TEXT: LazyLock<[String; 4]> = LazyLock::new(|| {
            Delete::ALL.map(|d| {
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

/// The holder and epoch of a lock, and whether this node owns it,
/// row-locked for a reclaim.
pub(crate) const RECLAIM_CHECK: &str =
    "SELECT client_id, server_epoch, node_id = lockwal_node() FROM lockwal_locks WHERE id = $1 FOR UPDATE";

/// Re-stamps a lock with `$2`, returning it.
pub(crate) static RECLAIM_SET: LazyLock<String> = LazyLock::new(|| {
    format!(
        "UPDATE lockwal_locks SET server_epoch = $2, node_id = lockwal_node() WHERE id = $1 RETURNING {}",
        *LOCK_SELECT
    )
});

/// Removes every lock of this node from an epoch before `$1` (on share
/// `$2`, or every share when it is NULL), returning them. Other nodes'
/// locks are theirs to end.
pub(crate) static END_GRACE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "DELETE FROM lockwal_locks WHERE node_id = lockwal_node() AND server_epoch < $1 \
         AND ($2::bytea IS NULL OR share = $2::bytea) RETURNING {}",
        *LOCK_SELECT
    )
});

/// Replaces every field of lock `$1` but its id, `server_epoch` and owner;
/// parameters in `codec::LOCK_COLUMNS` order (the epoch one unused but
/// typed). Affects one row, or none when the lock does not exist. The owner
/// stays: moving a lock to the updating node with the granting node's older
/// epoch would let the updater's end of grace remove a live lock
/// (regression `an_update_by_another_node_keeps_the_owner_and_survives_its_end_of_grace`).
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
pub(crate) const MARK_RECLAIM_COMPLETE: &str = "UPDATE lockwal_clients SET reclaim_complete = true, node_id = lockwal_node() \
     WHERE kind = $1::text AND client_id = $2::bytea";

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

// ---- checked grants --------------------------------------------------------

/// Serializes the checked grants on one file: the advisory lock of key `$1`
/// (`grant::file_key`), held to the end of the transaction.
pub(crate) const LOCK_FILE: &str = "SELECT pg_advisory_xact_lock($1::bigint)";

/// Serializes a group's checked grants with every other on their files:
/// the advisory locks of the keys in the array `$1`, taken in its order
/// (the caller sorts it, so that groups take them in one order).
pub(crate) const LOCK_FILES: &str = "SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k";

/// How many parameters [`grant_filter`] reads.
pub(crate) const GRANT_FILTER_PARAMS: usize = 8;

/// The rows of a candidate's file that may refuse it or need breaking, a
/// superset of what the rules find (they judge every row): parameters from
/// `$base + 1` on are the file, the candidate's id (skipped: it replaces
/// its own row), owner, client, whether it is a byte range, whether it is
/// exclusive, and the first and last byte it can overlap (a zero-byte lock
/// at `x`: `x - 1` and `x`). A byte-range candidate meets leases and
/// delegations of other clients and the ranges that may overlap it
/// (exclusive ones only, when it is shared): a held range reaches from its
/// offset to its last byte, a "to end of file" or zero-byte one is taken to
/// reach the end, and an offset one past the candidate's last byte is kept
/// for a zero-byte lock straddling it. Any other candidate meets the share
/// reservations of other owners and the leases and delegations of other
/// clients.
fn grant_filter(base: usize) -> String {
    let p = |n: usize| format!("${}", base + n);
    format!(
        "file_id = {file}::bytea AND id <> {id}::bytea AND ( \
         (kind IN ('lease', 'delegation') AND client_id <> {client}::bytea) \
         OR (NOT {range}::boolean AND kind = 'share' AND owner_id <> {owner}::bytea) \
         OR ({range}::boolean AND kind = 'byte_range' AND ({exclusive}::boolean OR range_type = 'exclusive') \
             AND range_offset <= {last}::numeric + 1 \
             AND (range_length = 0 OR range_offset + range_length > {first}::numeric)))",
        file = p(1),
        id = p(2),
        owner = p(3),
        client = p(4),
        range = p(5),
        exclusive = p(6),
        first = p(7),
        last = p(8),
    )
}

/// The rows a checked grant is judged against ([`grant_filter`] from `$1`).
pub(crate) static GRANT_CANDIDATES: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {} FROM lockwal_locks WHERE {}", *LOCK_SELECT, grant_filter(0)));

/// A checked grant's upsert behind the fence, written only when no row
/// could refuse it: the lock's parameters in `codec::LOCK_COLUMNS` order
/// (the `server_epoch` one doubling as the fence's epoch, as in
/// [`PUT_LOCK_FENCED`]), then [`grant_filter`]'s. Affects one row, or none
/// when fenced, when the cluster is in grace, or when a row may refuse it
/// (the rules then decide).
pub(crate) static GRANT_IF_CLEAR_FENCED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{}INSERT INTO lockwal_locks ({}) SELECT {} FROM fence \
         WHERE NOT EXISTS (SELECT 1 FROM lockwal_locks WHERE {}) \
         AND NOT EXISTS (SELECT 1 FROM lockwal_meta WHERE recovery_epoch <> 0) ON CONFLICT (id) DO UPDATE SET {}",
        fence_cte(LOCK_EPOCH_PARAM),
        *LOCK_SELECT,
        casts(&LOCK_COLUMNS),
        grant_filter(LOCK_COLUMNS.len()),
        upsert_set(&LOCK_COLUMNS)
    )
});

// ---- durable handles -------------------------------------------------------

/// Every handle column, in [`HANDLE_COLUMNS`] order.
pub(crate) static HANDLE_SELECT: LazyLock<String> = LazyLock::new(|| names(&HANDLE_COLUMNS));

/// The check and the upsert of one durable handle, as one statement: the
/// other handle (not `$1`) that holds its file id or create GUID, the file
/// id's first as the state machine checks it first, and the upsert only when
/// there is none. `fenced` puts the fence before them, on parameter 31.
/// Returns one row: whether the fence held (always true unfenced), the
/// holder's id and whether it holds the file id (both NULL: written).
///
/// A handle that a concurrent, uncommitted transaction is putting with the
/// same file id or create GUID is invisible to the check; the upsert then
/// waits for that transaction and fails with a unique violation on
/// `lockwal_handles_file_id_key` or `lockwal_handles_create_guid_key` if it
/// commits (the write path runs the statement again, and then sees it).
fn put_handle(fenced: bool) -> String {
    let (file_id, guid) = (handle_param("file_id"), handle_param("create_guid"));
    let (fence, from, unfenced) = if fenced {
        (format!("{}, ", fence_cte(HANDLE_COLUMNS.len() + 1).trim_end()), " FROM fence", "EXISTS (SELECT FROM fence)")
    } else {
        ("WITH ".to_owned(), "", "true")
    };
    format!(
        "{fence}holder AS MATERIALIZED (SELECT id, file_id = ${file_id}::bytea AS by_file_id FROM lockwal_handles \
         WHERE (file_id = ${file_id}::bytea OR create_guid = ${guid}::bytea) AND id <> $1::bytea \
         ORDER BY by_file_id DESC LIMIT 1), \
         put AS (INSERT INTO lockwal_handles ({}) SELECT {}{from} WHERE NOT EXISTS (SELECT FROM holder) \
         ON CONFLICT (id) DO UPDATE SET {}) \
         SELECT {unfenced}, (SELECT id FROM holder), (SELECT by_file_id FROM holder)",
        *HANDLE_SELECT,
        casts(&HANDLE_COLUMNS),
        upsert_set(&HANDLE_COLUMNS)
    )
}

/// [`put_handle`] inside a transaction that took the fence; parameters in
/// `codec::HANDLE_COLUMNS` order.
pub(crate) static PUT_HANDLE: LazyLock<String> = LazyLock::new(|| put_handle(false));

/// [`put_handle`] behind the fence: the store's epoch is one more parameter
/// after the handle's.
pub(crate) static PUT_HANDLE_FENCED: LazyLock<String> = LazyLock::new(|| put_handle(true));

/// The handles a take removes, inside a transaction that took the fence
/// (never autocommit: a removed row that fails to decode must be rolled
/// back): by file id, by create GUID (consumes), or those expired at an
/// instant.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Take {
    /// The handle with file id `key`.
    ByFileId,
    /// The handle with create GUID `key`.
    ByCreateGuid,
    /// The handles whose expiry instant is before `key` (microseconds).
    Expired,
}

impl Take {
    const ALL: [Take; 3] = [Take::ByFileId, Take::ByCreateGuid, Take::Expired];

    fn condition(self, param: usize) -> String {
        match self {
            Take::ByFileId => format!("file_id = ${param}::bytea"),
            Take::ByCreateGuid => format!("create_guid = ${param}::bytea"),
            Take::Expired => format!("expires_at < ${param}::bigint"),
        }
    }

    /// Removes the handles, `$1` the key; returns them. Of two racing takes of one handle, the second
    /// waits for the first's row lock, then finds the row gone and returns
    /// nothing.
    pub(crate) fn plain(self) -> &'static str {
        static TEXT: LazyLock<[String; 3]> = LazyLock::new(|| {
            Take::ALL
                .map(|t| format!("DELETE FROM lockwal_handles WHERE {} RETURNING {}", t.condition(1), *HANDLE_SELECT))
        });
        &TEXT[self as usize]
    }
}

/// One handle by id, file id or create GUID (`$1`).
pub(crate) static GET_HANDLE: LazyLock<[String; 3]> = LazyLock::new(|| {
    ["id", "file_id", "create_guid"]
        .map(|key| format!("SELECT {} FROM lockwal_handles WHERE {key} = $1::bytea", *HANDLE_SELECT))
});

/// The handles of a list query, by id: every one, or those whose app
/// instance id, file handle or share is `$1` (each served by its index).
pub(crate) static LIST_HANDLES: LazyLock<[String; 4]> = LazyLock::new(|| {
    [None, Some("app_instance_id"), Some("file_handle"), Some("share")].map(|column| {
        let filter = column.map(|c| format!(" WHERE {c} = $1::bytea")).unwrap_or_default();
        format!("SELECT {} FROM lockwal_handles{filter} ORDER BY id", *HANDLE_SELECT)
    })
});

// ---- records ----------------------------------------------------------------

/// Upsert of record (`$1` space, `$2` key) to value `$3`.
pub(crate) const PUT_RECORD: &str = "INSERT INTO lockwal_records (space, key, value) VALUES ($1::text, $2::bytea, $3::bytea) \
     ON CONFLICT (space, key) DO UPDATE SET value = EXCLUDED.value";

/// [`PUT_RECORD`] behind the fence on `$4`; affects one row, or none when
/// fenced.
pub(crate) static PUT_RECORD_FENCED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{}INSERT INTO lockwal_records (space, key, value) SELECT $1::text, $2::bytea, $3::bytea FROM fence \
         ON CONFLICT (space, key) DO UPDATE SET value = EXCLUDED.value",
        fence_cte(4)
    )
});

/// Inserts record (`$1` space, `$2` key) with value `$3` only if there is
/// none: affects no row when another transaction has it (waiting for an
/// uncommitted one to finish).
pub(crate) const INSERT_RECORD: &str = "INSERT INTO lockwal_records (space, key, value) \
     VALUES ($1::text, $2::bytea, $3::bytea) ON CONFLICT (space, key) DO NOTHING";

/// The value of record (`$1` space, `$2` key), row-locked for a swap.
pub(crate) const LOCK_RECORD: &str =
    "SELECT value FROM lockwal_records WHERE space = $1::text AND key = $2::bytea FOR UPDATE";

/// Sets the value of record (`$1` space, `$2` key) to `$3`.
pub(crate) const UPDATE_RECORD: &str =
    "UPDATE lockwal_records SET value = $3::bytea WHERE space = $1::text AND key = $2::bytea";

/// Removes record (`$1` space, `$2` key).
pub(crate) const DELETE_RECORD: &str = "DELETE FROM lockwal_records WHERE space = $1::text AND key = $2::bytea";

/// [`DELETE_RECORD`] behind the fence: `$1` our epoch, `$2` space, `$3`
/// key. Returns one row: whether the fence held, how many were removed.
pub(crate) static DELETE_RECORD_FENCED: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{}, gone AS (DELETE FROM lockwal_records WHERE space = $2::text AND key = $3::bytea \
         AND EXISTS (SELECT FROM fence) RETURNING 1) SELECT EXISTS (SELECT FROM fence), (SELECT count(*) FROM gone)",
        fence_cte(1).trim_end()
    )
});

/// The value of record (`$1` space, `$2` key).
pub(crate) const GET_RECORD: &str = "SELECT value FROM lockwal_records WHERE space = $1::text AND key = $2::bytea";

/// The records of space `$1` from key `$2` on, in key order, at most `$3`.
pub(crate) const SCAN_RECORDS: &str = "SELECT key, value FROM lockwal_records WHERE space = $1::text \
     AND key >= $2::bytea ORDER BY key LIMIT $3::bigint";

/// [`SCAN_RECORDS`] with an end: keys in `[$2, $3)`, at most `$4`. A text of
/// its own so the end bounds the index scan (a `$3 IS NULL OR` would leave
/// the scan walking to the end of the space when the limit is not reached).
pub(crate) const SCAN_RECORDS_BOUNDED: &str = "SELECT key, value FROM lockwal_records WHERE space = $1::text \
     AND key >= $2::bytea AND key < $3::bytea ORDER BY key LIMIT $4::bigint";

// ---- the cluster ------------------------------------------------------------

/// The cluster's newest epoch and its recovery epoch.
pub(crate) const CLUSTER_EPOCH: &str = "SELECT epoch, recovery_epoch FROM lockwal_meta";

/// Every node with what it owns, in node id order (each count one index
/// scan of `(node_id, ...)`).
pub(crate) const CLUSTER_NODES: &str = concat!(
    "SELECT n.node_id, n.epoch, n.clean, n.opened_at, n.need_grace, n.lease_ms, ",
    now_us!(),
    " - n.renewed_at, \
     (SELECT count(*) FROM lockwal_locks l WHERE l.node_id = n.node_id), \
     (SELECT count(*) FROM lockwal_clients c WHERE c.node_id = n.node_id), \
     (SELECT count(*) FROM lockwal_handles h WHERE h.node_id = n.node_id) \
     FROM lockwal_nodes n ORDER BY n.node_id"
);

// ---- a caller's transaction -------------------------------------------------

/// The fence inside a caller's transaction, with what identifies the
/// store's database: the caller's connection may reach another database.
/// The node is the caller's transaction's `lockwal.node`, which
/// `transaction_in` sets first.
pub(crate) const CALLER_FENCE: &str = "SELECT epoch, clean, current_database()::text, 'lockwal_meta'::regclass::oid, \
     current_setting('transaction_isolation') FROM lockwal_nodes WHERE node_id = lockwal_node() FOR SHARE";

/// What identifies the store's database: its name and the oid of the
/// store's `lockwal_meta` table.
pub(crate) const IDENTITY: &str = "SELECT current_database()::text, 'lockwal_meta'::regclass::oid";

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
        assert!(Delete::Handle.fenced().contains("DELETE FROM lockwal_handles WHERE id = $2::bytea"));
        assert_eq!(HANDLE_COLUMNS[handle_param("file_id") - 1].0, "file_id");
        assert!(PUT_HANDLE.contains("file_id = $2::bytea OR create_guid = $15::bytea"));
        assert!(PUT_HANDLE.contains("$30::numeric") && !PUT_HANDLE.contains("$31") && !PUT_HANDLE.contains("fence"));
        assert!(PUT_HANDLE_FENCED.contains("WHERE epoch = $31 AND NOT clean FOR SHARE"));
        assert!(PUT_HANDLE_FENCED.contains("SELECT EXISTS (SELECT FROM fence), (SELECT id FROM holder)"));
        assert!(PUT_RECORD_FENCED.contains("WHERE epoch = $4 AND NOT clean FOR SHARE"));
        assert_eq!(
            Take::Expired.plain(),
            format!("DELETE FROM lockwal_handles WHERE expires_at < $1::bigint RETURNING {}", *HANDLE_SELECT)
        );
        assert!(!HANDLE_SELECT.contains("expires_at"), "derived, never written or decoded");
    }
}
