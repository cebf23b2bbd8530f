use super::Timestamp;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One lock, share reservation, lease or delegation as the store persists it.
///
/// `id` is the primary key. `share`, `file_id`, `owner_id` and `client_id`
/// are opaque strings that the store indexes; the store never parses them,
/// so they may contain any character (including `:`).
///
/// The strings are `Arc<str>`: every lock with the same file, owner, client
/// or share shares one allocation, and copying a lock out of the store
/// copies no string: keep them as they are rather than converting each
/// to a `String` (which allocates and copies per field).
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
    /// The store stamps this with its current epoch on a grant
    /// ([`Op::PutLock`](crate::Op::PutLock)) and a reclaim; an update
    /// ([`Op::UpdateLock`](crate::Op::UpdateLock)) keeps the epoch the lock
    /// has. The value a caller passes in is ignored.
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
///
/// How a port maps the protocols' ranges: an NLM length of 0 and an NFSv4
/// length of all ones (`u64::MAX`, at any offset) both mean "to end of
/// file" and are stored as given; any other range must end at or before
/// byte `u64::MAX` (offset + length - 1 may not overflow). An SMB
/// zero-byte lock (length 0, any offset, covering no byte) sets
/// `zero_byte`, which tells it apart from "to end of file".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ByteRange {
    /// Shared or exclusive.
    pub lock_type: LockType,
    /// First byte of the range.
    pub offset: u64,
    /// Number of bytes; `0` means "to end of file" unless `zero_byte` is
    /// set, and `u64::MAX` means "to end of file" at any offset.
    pub length: u64,
    /// An SMB zero-length lock: `length` is 0 and it covers no byte, which is
    /// not the same as "to end of file".
    pub zero_byte: bool,
    /// The semantics the lock was granted under, which decide the lock
    /// manager structure a server routes it back to at restart.
    pub flavor: RangeFlavor,
}

/// The semantics of a byte-range lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RangeFlavor {
    /// POSIX / NLM / NFSv4: advisory; a lock manager splits and merges the
    /// ranges of one owner.
    Posix,
    /// SMB: mandatory, stacked, never merged; `share_deny` is the share
    /// mode of the open the lock was taken under.
    Smb {
        /// What the open denies to others.
        share_deny: ShareDeny,
    },
}

impl ByteRange {
    /// The last byte the range covers, `None` when it runs to end of file
    /// (length 0 without `zero_byte`, or `u64::MAX`) or covers no byte
    /// (`zero_byte`).
    pub fn last_byte(&self) -> Option<u64> {
        match self.length {
            0 | u64::MAX => None,
            n => self.offset.checked_add(n - 1),
        }
    }
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

/// An SMB2 lease state: the full 32-bit `LeaseState` field of MS-SMB2
/// (2.2.13.2.8), kept bit for bit, unknown bits included.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct LeaseState(pub u32);

impl LeaseState {
    /// No caching (`SMB2_LEASE_NONE`).
    pub const NONE: LeaseState = LeaseState(0);
    /// R: read caching (`SMB2_LEASE_READ_CACHING`, 0x01).
    pub const READ: LeaseState = LeaseState(0x01);
    /// H: handle caching (`SMB2_LEASE_HANDLE_CACHING`, 0x02).
    pub const HANDLE: LeaseState = LeaseState(0x02);
    /// W: write caching (`SMB2_LEASE_WRITE_CACHING`, 0x04).
    pub const WRITE: LeaseState = LeaseState(0x04);

    /// Whether every bit of `other` is set here.
    pub fn contains(self, other: LeaseState) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for LeaseState {
    type Output = LeaseState;
    fn bitor(self, other: LeaseState) -> LeaseState {
        LeaseState(self.0 | other.0)
    }
}

/// An SMB2/3 lease or traditional oplock.
///
/// The break fields are kept whether or not a break is in progress: a
/// server that finished a break keeps the state it broke to.
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
    /// A break is in progress.
    pub breaking: bool,
    /// The state the server breaks (or broke) the lease to.
    pub break_to: LeaseState,
    /// The state the client must at least give up to (the acknowledgement
    /// target).
    pub break_required: LeaseState,
    /// When the last break started (for the break timeout), if any.
    pub break_started_at: Option<Timestamp>,
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delegation {
    /// The delegation's id, opaque to the store: an NFSv4 stateid's 12-byte
    /// `other` field, a UUID string's bytes, ... (1 to
    /// [`MAX_OPAQUE_LEN`](super::validate::MAX_OPAQUE_LEN) bytes).
    pub delegation_id: Vec<u8>,
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
    /// A directory delegation (NFSv4.1 GET_DIR_DELEGATION).
    pub is_directory: bool,
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

    /// The lease key, when this is a lease.
    pub fn lease_key(&self) -> Option<&LeaseKey> {
        match self {
            LockKind::Lease(l) => Some(&l.key),
            _ => None,
        }
    }
}
