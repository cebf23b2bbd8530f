//! The one error type of the crate. Context lives in fields, so callers can
//! match on it; `Display` gives an operator one clear line.

use std::path::PathBuf;

/// What kind of record a [`Error::NotFound`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    /// A lock, lease, share reservation or delegation.
    Lock,
    /// A client record of this kind.
    Client(crate::model::ClientKind),
    /// A durable handle (by id, file id or create GUID).
    Handle,
    /// A record of a keyspace (the id is `space/hex-key`).
    Record,
    /// A node of a PostgreSQL cluster (the id is the node id).
    Node,
}

impl std::fmt::Display for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::model::ClientKind;
        f.write_str(match self {
            Entity::Lock => "lock",
            Entity::Client(ClientKind::Nsm) => "NSM client",
            Entity::Client(ClientKind::Nfs4) => "NFSv4 client",
            Entity::Client(ClientKind::Smb) => "SMB client",
            Entity::Handle => "durable handle",
            Entity::Record => "record",
            Entity::Node => "node",
        })
    }
}

/// Why a reclaim was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReclaimRefusal {
    /// The lock belongs to another client (anti-steal).
    WrongClient,
    /// The lock was granted (or already reclaimed) in the current epoch.
    CurrentEpoch,
    /// The lock belongs to another node of a PostgreSQL cluster, which its
    /// client must reclaim from.
    OtherNode,
}

impl std::fmt::Display for ReclaimRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReclaimRefusal::WrongClient => "it belongs to another client",
            ReclaimRefusal::CurrentEpoch => "it was granted in the current epoch",
            ReclaimRefusal::OtherNode => "it belongs to another node",
        })
    }
}

/// Every error a [`LockStore`](crate::LockStore) returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No lock or client with this id.
    #[error("{entity} not found: {id:?}")]
    NotFound {
        /// Lock or client.
        entity: Entity,
        /// The id that was looked up.
        id: String,
    },
    /// The input breaks a rule of the model; nothing was changed.
    #[error("invalid {field}: {reason}")]
    InvalidInput {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A reclaim during grace was refused; nothing was changed.
    #[error("reclaim of lock {id:?} by client {client_id:?} refused: {reason}")]
    ReclaimRefused {
        /// The lock.
        id: String,
        /// The client that asked.
        client_id: String,
        /// Why.
        reason: ReclaimRefusal,
    },
    /// A durable handle would share its file id or create GUID with another
    /// handle; nothing was changed.
    #[error("durable handle {id:?} conflicts with handle {holder:?}: both have this {field}")]
    HandleConflict {
        /// The handle being put.
        id: String,
        /// `file_id` or `create_guid`.
        field: &'static str,
        /// The handle that holds it.
        holder: String,
    },
    /// A conditional record write found another value; nothing was changed.
    #[error("condition failed for record {space}/{}: {reason}", hex(.key))]
    ConditionFailed {
        /// The keyspace.
        space: String,
        /// The key.
        key: Vec<u8>,
        /// What was found instead of the expected value.
        reason: &'static str,
    },
    /// A checked grant ([`Op::Grant`](crate::Op::Grant)) met locks of other
    /// owners that refuse it, or leases and delegations of other clients to
    /// break or recall first; nothing of its transaction was applied.
    #[error("grant of lock {id:?} refused: {}", describe_conflicts(.conflicts))]
    Conflict {
        /// The lock that was to be granted.
        id: String,
        /// Who refuses it and what to break first, each sorted by id.
        conflicts: Box<crate::model::Conflicts>,
    },
    /// A checked grant ([`Op::Grant`](crate::Op::Grant)) while the
    /// PostgreSQL cluster is in a grace period: only reclaims are allowed
    /// until every node that needs grace has ended it. Nothing of its
    /// transaction was applied.
    #[error("grant of lock {id:?} refused: the cluster is in grace (recovery epoch {recovery_epoch})")]
    InGrace {
        /// The lock that was to be granted.
        id: String,
        /// The epoch of the open that started the grace period.
        recovery_epoch: u64,
    },
    /// A takeover of a PostgreSQL node whose incarnation is still open and
    /// whose lease has not expired: it may be alive, so nothing changed.
    #[error("node {node:?} may be alive: its lease expires in {expires_in_ms} ms")]
    NodeLive {
        /// The node that was to be taken over.
        node: String,
        /// How long until its lease expires, by the database's clock,
        /// unless it renews it first.
        expires_in_ms: u64,
    },
    /// Another process or handle holds the store's writer lock.
    #[error("store {dir} is locked by another writer")]
    Locked {
        /// The store directory.
        dir: PathBuf,
    },
    /// The store directory does not exist: a read-only open (or an operator
    /// command) on a directory that was never created, or a typo in its
    /// path. Nothing was created. A writable open creates the directory
    /// instead.
    #[error("no such directory {dir}")]
    NoSuchDirectory {
        /// The directory.
        dir: PathBuf,
    },
    /// A file of the store is damaged. Nothing was changed on disk.
    #[error("corruption in {file} at byte offset {offset}: {reason}")]
    Corruption {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the first bad byte or record.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A file was written by an unknown format version.
    #[error("{file} has format version {found}, this build reads version {supported}")]
    UnsupportedVersion {
        /// The file.
        file: PathBuf,
        /// The version in its header.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// An operating-system I/O error.
    #[error("I/O error during {op} on {path}: {source}")]
    Io {
        /// What the store was doing (`write`, `fdatasync`, `rename`, ...).
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A write or sync failed earlier; the store refuses writes until it is
    /// reopened (reads keep working).
    #[error("store is poisoned after a failed write or sync ({cause}); reopen it to recover")]
    Poisoned {
        /// The failure that poisoned it.
        cause: String,
    },
    /// Another node opened the shared store with a newer epoch; this handle
    /// may not write again.
    #[error("fenced: this node's epoch {ours} was replaced by epoch {current}")]
    Fenced {
        /// The epoch this handle opened with.
        ours: u64,
        /// The epoch now current in the shared store.
        current: u64,
    },
    /// The store was opened read-only; writes are refused.
    #[error("store {store} is open read-only")]
    ReadOnly {
        /// Which store: its directory, or its PostgreSQL schema.
        store: String,
    },
    /// The store was closed.
    #[error("store is closed")]
    Closed,
    /// A repair was refused before it changed anything: its plan drops more
    /// than the damage itself (valid records, or a snapshot and with it the
    /// state as of its LSN), and the caller did not accept that loss.
    #[error("repair of {dir} refused: {reason}")]
    RepairRefused {
        /// The store directory.
        dir: PathBuf,
        /// What the plan would drop.
        reason: String,
    },
    /// An error from the database of a shared backend.
    #[error("database error: {0}")]
    Database(String),
    /// An error from PostgreSQL or the connection to it (PostgreSQL backend).
    #[error("PostgreSQL error during {during}{}: {message}", sqlstate_suffix(.sqlstate))]
    Postgres {
        /// What the store was doing (`connect`, `put_lock`, `migrate`, ...).
        during: &'static str,
        /// The SQLSTATE code when the server reported the error
        /// (`40P01` deadlock, `23514` check violation, ...).
        sqlstate: Option<String>,
        /// The server's or the client library's message.
        message: String,
    },
    /// The PostgreSQL schema is not at the migration version this build uses
    /// (PostgreSQL backend).
    #[error(
        "PostgreSQL schema {schema:?} is at migration version {found}, this build uses version {expected}: {}",
        schema_hint(*.found, *.expected)
    )]
    SchemaVersion {
        /// The PostgreSQL schema (namespace) of the store.
        schema: String,
        /// The newest migration applied to it.
        found: u32,
        /// The newest migration this build knows.
        expected: u32,
    },
    /// A broken internal invariant (a bug in lockwal); nothing was applied.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Bytes as lowercase hex, for messages that name a binary key.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sqlstate_suffix(sqlstate: &Option<String>) -> String {
    sqlstate.as_ref().map(|code| format!(" (SQLSTATE {code})")).unwrap_or_default()
}

fn schema_hint(found: u32, expected: u32) -> &'static str {
    if found < expected {
        "run the migrations (migrate, or open with auto_migrate)"
    } else {
        "a newer lockwal migrated it; upgrade this node"
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Wraps an OS error with what was being done and to which path:
/// `file.sync_data().map_err(io_error("fdatasync", &path))`.
pub(crate) fn io_error<'a>(op: &'static str, path: &'a std::path::Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Io { op, path: path.to_owned(), source }
}

fn describe_conflicts(conflicts: &crate::model::Conflicts) -> String {
    let ids = |locks: &[crate::model::PersistedLock]| locks.iter().map(|l| format!("{:?}", &*l.id)).collect::<Vec<_>>();
    let mut parts = Vec::new();
    if !conflicts.holders.is_empty() {
        parts.push(format!("held by {}", ids(&conflicts.holders).join(", ")));
    }
    if !conflicts.to_break.is_empty() {
        parts.push(format!("break or recall {} first", ids(&conflicts.to_break).join(", ")));
    }
    parts.join("; ")
}

impl Error {
    /// Shorthand for a lock that does not exist.
    pub fn lock_not_found(id: impl Into<String>) -> Self {
        Error::NotFound { entity: Entity::Lock, id: id.into() }
    }

    /// Shorthand for a durable handle that does not exist; `key` names how
    /// it was looked up (`id`, a file id, a create GUID).
    pub fn handle_not_found(key: impl Into<String>) -> Self {
        Error::NotFound { entity: Entity::Handle, id: key.into() }
    }

    /// Shorthand for no durable handle with this file id.
    pub fn handle_not_found_by_file_id(file_id: &crate::model::FileId) -> Self {
        Self::handle_not_found(format!("file id {}", hex(file_id)))
    }

    /// Shorthand for no durable handle with this create GUID.
    pub fn handle_not_found_by_create_guid(guid: &crate::model::Guid) -> Self {
        Self::handle_not_found(format!("create GUID {}", hex(guid)))
    }

    /// Shorthand for a record that does not exist.
    pub fn record_not_found(space: &str, key: &[u8]) -> Self {
        Error::NotFound { entity: Entity::Record, id: format!("{space}/{}", hex(key)) }
    }

    /// Shorthand for a client record of `kind` that does not exist.
    pub fn client_not_found(kind: crate::model::ClientKind, id: impl Into<String>) -> Self {
        Error::NotFound { entity: Entity::Client(kind), id: id.into() }
    }
}
