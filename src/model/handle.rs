//! SMB2/3 durable and persistent handles: an open that outlives its
//! connection (MS-SMB2 3.3.5.9.7, 3.3.5.9.12), kept so that a reconnect by
//! file id or create GUID restores it exactly.

use super::{LeaseKey, LeaseState, Timestamp};
use serde::{Deserialize, Serialize};

/// An SMB2 `FileId`: the persistent and volatile halves, 16 bytes as on the
/// wire.
pub type FileId = [u8; 16];

/// A 16-byte GUID (create GUID, app instance id, client GUID), as on the
/// wire.
pub type Guid = [u8; 16];

/// Which durable-handle request created the open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DurableVersion {
    /// `SMB2_CREATE_DURABLE_HANDLE_REQUEST` (SMB 2.x): reconnect by file id.
    V1,
    /// `SMB2_CREATE_DURABLE_HANDLE_REQUEST_V2` (SMB 3.x): reconnect by create
    /// GUID, with a timeout and the persistent flag.
    V2,
}

/// The lease an open held when its connection dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandleLease {
    /// The client's lease key.
    #[serde(with = "serde_bytes")]
    pub key: LeaseKey,
    /// The lease state granted.
    pub state: LeaseState,
    /// The lease epoch (lease v2).
    pub epoch: u16,
}

/// A delete-on-close open: what the scavenger needs to remove the file when
/// the handle expires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletePending {
    /// The opaque metadata handle of the parent directory.
    #[serde(with = "serde_bytes")]
    pub parent_handle: Vec<u8>,
    /// The file's name in that directory.
    pub file_name: String,
}

/// A disconnected durable or persistent open: everything a reconnect needs
/// to restore it exactly.
///
/// Byte fields serialize as byte strings (MessagePack `bin`), not as
/// sequences of integers: the log and snapshot hold them at their size.
///
/// Two handles never share a `file_id`, nor a `create_guid`: a reconnect by
/// either finds one open. A put that would break that is refused with
/// [`Error::HandleConflict`](crate::Error::HandleConflict).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DurableHandle {
    /// Key of the record (the server's own id for the open).
    pub id: String,
    /// The `FileId` the client reconnects with.
    #[serde(with = "serde_bytes")]
    pub file_id: FileId,
    /// The `FileId` of the original open (before any earlier reconnect).
    #[serde(with = "serde_bytes")]
    pub original_file_id: FileId,
    /// The path of the file within its share.
    pub path: String,
    /// The share (tree) name.
    pub share: String,
    /// The opaque metadata handle of the file (what locks call `file_id`).
    #[serde(with = "serde_bytes")]
    pub file_handle: Vec<u8>,
    /// `DesiredAccess` of the original create.
    pub desired_access: u32,
    /// The access mask granted at the original open (DACL-evaluated); a
    /// reconnect restores exactly it.
    pub granted_access: u32,
    /// `ShareAccess` of the original create.
    pub share_access: u32,
    /// `CreateOptions` of the original create.
    pub create_options: u32,
    /// The oplock level granted (`SMB2_OPLOCK_LEVEL_*`, 0x09 for a lease).
    pub oplock_level: u8,
    /// The lease, when the open held one.
    pub lease: Option<HandleLease>,
    /// The create GUID (v2 handles).
    #[serde(with = "serde_bytes")]
    pub create_guid: Option<Guid>,
    /// The application instance id (`SMB2_CREATE_APP_INSTANCE_ID`), if any.
    #[serde(with = "serde_bytes")]
    pub app_instance_id: Option<Guid>,
    /// A persistent handle (continuously available share).
    pub persistent: bool,
    /// Which durable request created it.
    pub version: DurableVersion,
    /// The user the session authenticated as.
    pub user: String,
    /// A hash of the session key (never the key itself), to check that the
    /// reconnecting session is the same principal.
    #[serde(with = "serde_bytes")]
    pub session_key_hash: [u8; 32],
    /// The client's `ClientGuid`.
    #[serde(with = "serde_bytes")]
    pub client_guid: Guid,
    /// When the open was created.
    pub created_at: Timestamp,
    /// When its connection dropped.
    pub disconnected_at: Timestamp,
    /// How long after `disconnected_at` a reconnect is accepted, in
    /// milliseconds (MS-SMB2's `Timeout`).
    pub timeout_ms: u64,
    /// The start time of the server incarnation the times are measured
    /// against.
    pub server_start_time: Timestamp,
    /// Set for a delete-on-close open.
    pub delete_pending: Option<DeletePending>,
    /// The open is of a directory.
    pub is_directory: bool,
    /// `FilePositionInformation`: the current byte offset.
    pub position: u64,
    /// The allocation size requested at create.
    pub allocation_size: u64,
}

impl DurableHandle {
    /// The instant from which the handle is expired: `disconnected_at +
    /// timeout_ms`. `None` when it overflows (validation refuses such a
    /// handle, so a stored handle always has one).
    pub fn expires_at(&self) -> Option<Timestamp> {
        let micros = i64::try_from(self.timeout_ms).ok()?.checked_mul(1000)?;
        self.disconnected_at.unix_micros.checked_add(micros).map(Timestamp::from_unix_micros)
    }

    /// Whether the handle is expired at `now`: its expiry instant is before
    /// `now` (at the instant itself it is still valid).
    pub fn expired_at(&self, now: Timestamp) -> bool {
        self.expires_at().is_some_and(|at| at < now)
    }
}

/// Which handles to list. One selector at a time: each is served by its
/// own index. Results come back sorted by handle id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum HandleQuery {
    /// Every handle.
    All,
    /// The handles of one application instance (a failover cluster's
    /// application reclaiming all its opens).
    AppInstance(Guid),
    /// The handles of one file (its opaque metadata handle).
    FileHandle(#[serde(with = "serde_bytes")] Vec<u8>),
    /// The handles on one share.
    Share(String),
}
