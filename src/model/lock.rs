use super::Timestamp;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One lock, share reservation, lease or delegation as the store persists it.
///
/// `id` is the primary key. `share`, `file_id`, `owner_id` and `client_id`
/// are opaque strings that the store indexes; the store never parses them,
/// so they may contain any character (including `:`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersistedLock {
    /// Unique id of the lock (e.g. a UUID).
    pub id: Arc<str>,
    /// The share (export) the file belongs to.
    pub share: Arc<str>,
    /// The opaque file handle.
    pub file_id: Arc<str>,
    /// The lock owner (e.g. `nlm:{caller}:{svid}:{oh-hex}` or an SMB open id).
    pub owner_id: Arc<str>,
    /// The client that holds it (NLM caller name, `nfs4:{clientid}`, ...).
    pub client_id: Arc<str>,
    /// What kind of lock this is, with its kind-specific fields.
    pub kind: LockKind,
    /// When the lock was granted.
    pub acquired_at: Timestamp,
    /// The server incarnation that granted (or last reclaimed) the lock.
    ///
    /// The store stamps this with its current epoch on every `put_lock` and
    /// `reclaim`; the value a caller passes in is ignored.
    pub server_epoch: u64,
}

/// The kind of a lock and its kind-specific fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum LockKind {
    /// A POSIX / NLM / NFSv4 / SMB byte-range lock.
    ByteRange(ByteRange),
    /// An NFSv4 / SMB share reservation (open access and deny modes).
    Share(ShareReservation),
    /// An SMB2/3 lease or traditional oplock.
    Lease(Lease),
    /// An NFSv4 delegation.
    Delegation(Delegation),
}

/// Shared (read) or exclusive (write).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LockType {
    /// Many holders may share the range.
    Shared,
    /// One holder only.
    Exclusive,
}

/// A byte range lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRange {
    /// Shared or exclusive.
    pub lock_type: LockType,
    /// First byte of the range.
    pub offset: u64,
    /// Number of bytes; `0` means "to end of file" unless `zero_byte` is set.
    pub length: u64,
    /// An SMB zero-length lock: `length` is 0 and it covers no byte, which is
    /// not the same as "to end of file".
    pub zero_byte: bool,
}

/// The access a share reservation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ShareAccess {
    /// Read access.
    Read,
    /// Write access.
    Write,
    /// Read and write access.
    ReadWrite,
}

/// What a share reservation denies to other opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ShareDeny {
    /// Deny nothing.
    None,
    /// Deny read access to others.
    Read,
    /// Deny write access to others.
    Write,
    /// Deny both.
    All,
}

/// A share reservation (open mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareReservation {
    /// The access this open holds.
    pub access: ShareAccess,
    /// What it denies to others.
    pub deny: ShareDeny,
}

/// An SMB lease key (16 bytes chosen by the client).
pub type LeaseKey = [u8; 16];

/// SMB lease state bits: read caching, write caching, handle caching.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct LeaseState {
    /// R: read caching.
    pub read: bool,
    /// W: write caching.
    pub write: bool,
    /// H: handle caching.
    pub handle: bool,
}

/// A lease break in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseBreak {
    /// The state the server is breaking the lease to.
    pub to: LeaseState,
    /// The state the client must at least give up to (acknowledgement target).
    pub required: LeaseState,
    /// When the break started (for the break timeout).
    pub started_at: Timestamp,
}

/// An SMB2/3 lease or traditional oplock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// The client's 16-byte lease key.
    pub key: LeaseKey,
    /// The granted state.
    pub state: LeaseState,
    /// The lease epoch (SMB 3 lease v2), incremented on every state change.
    pub epoch: u16,
    /// The parent directory's lease key (lease v2), if any.
    pub parent_key: Option<LeaseKey>,
    /// A directory lease.
    pub is_directory: bool,
    /// A traditional oplock expressed as a lease.
    pub is_traditional_oplock: bool,
    /// A break in progress, if any.
    pub breaking: Option<LeaseBreak>,
}

/// Read or write delegation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DelegationType {
    /// Read delegation.
    Read,
    /// Write delegation.
    Write,
}

/// An NFSv4 delegation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    /// The delegation's stateid (opaque to the store).
    pub delegation_id: u64,
    /// Read or write.
    pub delegation_type: DelegationType,
    /// A recall (CB_RECALL) is in progress.
    pub breaking: bool,
    /// The client was asked to return it.
    pub recalled: bool,
    /// The server revoked it.
    pub revoked: bool,
    /// Directory notification mask (NFSv4.1 directory delegations).
    pub notification_mask: u32,
}

impl LockKind {
    /// The filter that selects this kind in a [`LockQuery`](super::LockQuery).
    pub fn filter(&self) -> super::KindFilter {
        match self {
            LockKind::ByteRange(_) => super::KindFilter::ByteRange,
            LockKind::Share(_) => super::KindFilter::Share,
            LockKind::Lease(_) => super::KindFilter::Lease,
            LockKind::Delegation(_) => super::KindFilter::Delegation,
        }
    }
}
