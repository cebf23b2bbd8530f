//! How durable handles map to the columns of `lockwal_handles`: statement
//! parameters from a handle, and a row back to one (checked like every
//! decoding step of [`super`]).

use super::Reader;
use crate::backend::postgres::numeric::PgU64;
use crate::error::Result;
use crate::model::{DeletePending, DurableHandle, DurableVersion, HandleLease, LeaseState, Timestamp};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

/// The columns of `lockwal_handles`, in parameter and `SELECT` order (the
/// generated `expires_at` is neither written nor decoded).
pub(crate) const HANDLE_COLUMNS: [(&str, &str); 30] = [
    ("id", "bytea"),
    ("file_id", "bytea"),
    ("original_file_id", "bytea"),
    ("path", "bytea"),
    ("share", "bytea"),
    ("file_handle", "bytea"),
    ("desired_access", "bigint"),
    ("granted_access", "bigint"),
    ("share_access", "bigint"),
    ("create_options", "bigint"),
    ("oplock_level", "smallint"),
    ("lease_key", "bytea"),
    ("lease_state", "bigint"),
    ("lease_epoch", "integer"),
    ("create_guid", "bytea"),
    ("app_instance_id", "bytea"),
    ("persistent", "boolean"),
    ("version", "text"),
    ("user_name", "bytea"),
    ("session_key_hash", "bytea"),
    ("client_guid", "bytea"),
    ("created_at", "bigint"),
    ("disconnected_at", "bigint"),
    ("timeout_ms", "numeric"),
    ("server_start_time", "bigint"),
    ("delete_parent_handle", "bytea"),
    ("delete_file_name", "bytea"),
    ("is_directory", "boolean"),
    ("position", "numeric"),
    ("allocation_size", "numeric"),
];

/// 1-based parameter number of a column of [`HANDLE_COLUMNS`].
pub(crate) fn handle_param(column: &str) -> usize {
    HANDLE_COLUMNS.iter().position(|(name, _)| *name == column).expect("a column of lockwal_handles") + 1
}

fn version_text(v: DurableVersion) -> &'static str {
    match v {
        DurableVersion::V1 => "v1",
        DurableVersion::V2 => "v2",
    }
}

/// The statement parameters of one durable handle, borrowed from it.
pub(crate) struct HandleParams<'a> {
    id: &'a [u8],
    file_id: &'a [u8],
    original_file_id: &'a [u8],
    path: &'a [u8],
    share: &'a [u8],
    file_handle: &'a [u8],
    desired_access: i64,
    granted_access: i64,
    share_access: i64,
    create_options: i64,
    oplock_level: i16,
    lease_key: Option<&'a [u8]>,
    lease_state: Option<i64>,
    lease_epoch: Option<i32>,
    create_guid: Option<&'a [u8]>,
    app_instance_id: Option<&'a [u8]>,
    persistent: bool,
    version: &'static str,
    user_name: &'a [u8],
    session_key_hash: &'a [u8],
    client_guid: &'a [u8],
    created_at: i64,
    disconnected_at: i64,
    timeout_ms: PgU64,
    server_start_time: i64,
    delete_parent_handle: Option<&'a [u8]>,
    delete_file_name: Option<&'a [u8]>,
    is_directory: bool,
    position: PgU64,
    allocation_size: PgU64,
}

impl<'a> HandleParams<'a> {
    /// The parameters of `handle`.
    pub(crate) fn new(h: &'a DurableHandle) -> Self {
        HandleParams {
            id: h.id.as_bytes(),
            file_id: &h.file_id,
            original_file_id: &h.original_file_id,
            path: h.path.as_bytes(),
            share: h.share.as_bytes(),
            file_handle: &h.file_handle,
            desired_access: i64::from(h.desired_access),
            granted_access: i64::from(h.granted_access),
            share_access: i64::from(h.share_access),
            create_options: i64::from(h.create_options),
            oplock_level: i16::from(h.oplock_level),
            lease_key: h.lease.as_ref().map(|l| &l.key[..]),
            lease_state: h.lease.map(|l| i64::from(l.state.0)),
            lease_epoch: h.lease.map(|l| i32::from(l.epoch)),
            create_guid: h.create_guid.as_ref().map(|g| &g[..]),
            app_instance_id: h.app_instance_id.as_ref().map(|g| &g[..]),
            persistent: h.persistent,
            version: version_text(h.version),
            user_name: h.user.as_bytes(),
            session_key_hash: &h.session_key_hash,
            client_guid: &h.client_guid,
            created_at: h.created_at.unix_micros,
            disconnected_at: h.disconnected_at.unix_micros,
            timeout_ms: PgU64(h.timeout_ms),
            server_start_time: h.server_start_time.unix_micros,
            delete_parent_handle: h.delete_pending.as_ref().map(|p| &p.parent_handle[..]),
            delete_file_name: h.delete_pending.as_ref().map(|p| p.file_name.as_bytes()),
            is_directory: h.is_directory,
            position: PgU64(h.position),
            allocation_size: PgU64(h.allocation_size),
        }
    }

    /// The parameters in [`HANDLE_COLUMNS`] order.
    pub(crate) fn refs(&self) -> [&(dyn ToSql + Sync); 30] {
        [
            &self.id,
            &self.file_id,
            &self.original_file_id,
            &self.path,
            &self.share,
            &self.file_handle,
            &self.desired_access,
            &self.granted_access,
            &self.share_access,
            &self.create_options,
            &self.oplock_level,
            &self.lease_key,
            &self.lease_state,
            &self.lease_epoch,
            &self.create_guid,
            &self.app_instance_id,
            &self.persistent,
            &self.version,
            &self.user_name,
            &self.session_key_hash,
            &self.client_guid,
            &self.created_at,
            &self.disconnected_at,
            &self.timeout_ms,
            &self.server_start_time,
            &self.delete_parent_handle,
            &self.delete_file_name,
            &self.is_directory,
            &self.position,
            &self.allocation_size,
        ]
    }
}

/// Decodes a row whose first columns are [`HANDLE_COLUMNS`], in order.
pub(crate) fn decode_handle(row: &Row) -> Result<DurableHandle> {
    let mut r = Reader { row, table: "lockwal_handles", columns: &HANDLE_COLUMNS, key: None };
    let id = r.string(0)?;
    r.key = Some(id.clone());
    let lease = match (r.key16(11)?, r.get::<Option<i64>>(12)?, r.get::<Option<i32>>(13)?) {
        (None, None, None) => None,
        (Some(key), Some(_), Some(_)) => {
            Some(HandleLease { key, state: LeaseState(r.u32(12)?), epoch: r.narrow::<i32, u16>(13)? })
        }
        (key, state, _) => {
            let missing = if key.is_none() {
                11
            } else if state.is_none() {
                12
            } else {
                13
            };
            return Err(r.error(missing, "is NULL while the other lease columns are set"));
        }
    };
    let delete_pending = match (r.get::<Option<&[u8]>>(25)?, r.opt_string(26)?) {
        (None, None) => None,
        (Some(parent_handle), Some(file_name)) => {
            Some(DeletePending { parent_handle: parent_handle.to_vec(), file_name })
        }
        (parent, _) => {
            let missing = if parent.is_none() { 25 } else { 26 };
            return Err(r.error(missing, "is NULL while the other delete-pending column is set"));
        }
    };
    Ok(DurableHandle {
        file_id: r.need_fixed(1, "a file id")?,
        original_file_id: r.need_fixed(2, "a file id")?,
        path: r.string(3)?,
        share: r.string(4)?,
        file_handle: r.get(5)?,
        desired_access: r.u32(6)?,
        granted_access: r.u32(7)?,
        share_access: r.u32(8)?,
        create_options: r.u32(9)?,
        oplock_level: r.narrow::<i16, u8>(10)?,
        lease,
        create_guid: r.fixed(14, "a GUID")?,
        app_instance_id: r.fixed(15, "a GUID")?,
        persistent: r.get(16)?,
        version: r.enumeration(17, |t| match t {
            "v1" => Some(DurableVersion::V1),
            "v2" => Some(DurableVersion::V2),
            _ => None,
        })?,
        user: r.string(18)?,
        session_key_hash: r.need_fixed(19, "a session key hash")?,
        client_guid: r.need_fixed(20, "a GUID")?,
        created_at: Timestamp::from_unix_micros(r.get(21)?),
        disconnected_at: Timestamp::from_unix_micros(r.get(22)?),
        timeout_ms: r.u64(23)?,
        server_start_time: Timestamp::from_unix_micros(r.get(24)?),
        delete_pending,
        is_directory: r.get(27)?,
        position: r.u64(28)?,
        allocation_size: r.u64(29)?,
        id,
    })
}
