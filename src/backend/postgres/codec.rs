//! How the model maps to columns: statement parameters from locks, client
//! records and durable handles, and rows back to them (`u64` columns through
//! [`PgU64`](super::numeric::PgU64)).
//!
//! Every decoding step checks what it reads: a row that does not fit the
//! model (a NULL where the kind needs a value, an unknown enum text, bytes
//! that are not UTF-8) is an error naming the table, the key and the column,
//! never a silently skipped or defaulted record.
//!
//! Durable handles have their own module, [`handle`].

use super::numeric::PgU64;
use crate::error::{Error, Result};
use crate::model::{
    ByteRange, ClientDetails, ClientKind, ClientRecord, Delegation, DelegationType, Lease, LeaseKey, LeaseState,
    LockKind, LockType, Nfs4Details, NsmDetails, PersistedLock, RangeFlavor, ShareAccess, ShareDeny, ShareReservation,
    Timestamp,
};
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, ToSql};

mod handle;

pub(crate) use handle::{HANDLE_COLUMNS, HandleParams, decode_handle, handle_param};

// ---- enums as text ----------------------------------------------------------

fn lock_type_text(t: LockType) -> &'static str {
    match t {
        LockType::Shared => "shared",
        LockType::Exclusive => "exclusive",
    }
}

fn share_access_text(a: ShareAccess) -> &'static str {
    match a {
        ShareAccess::Read => "read",
        ShareAccess::Write => "write",
        ShareAccess::ReadWrite => "read_write",
    }
}

fn share_deny_text(d: ShareDeny) -> &'static str {
    match d {
        ShareDeny::None => "none",
        ShareDeny::Read => "read",
        ShareDeny::Write => "write",
        ShareDeny::All => "all",
    }
}

fn delegation_type_text(t: DelegationType) -> &'static str {
    match t {
        DelegationType::Read => "read",
        DelegationType::Write => "write",
    }
}

pub(crate) fn client_kind_text(k: ClientKind) -> &'static str {
    match k {
        ClientKind::Nsm => "nsm",
        ClientKind::Nfs4 => "nfs4",
        ClientKind::Smb => "smb",
    }
}

fn parse_share_deny(t: &str) -> Option<ShareDeny> {
    match t {
        "none" => Some(ShareDeny::None),
        "read" => Some(ShareDeny::Read),
        "write" => Some(ShareDeny::Write),
        "all" => Some(ShareDeny::All),
        _ => None,
    }
}

// ---- locks ------------------------------------------------------------------

/// The columns of `lockwal_locks` in the order of [`LockParams::refs`] and
/// of every `SELECT` the backend decodes, with the type each parameter is
/// cast to.
pub(crate) const LOCK_COLUMNS: [(&str, &str); 33] = [
    ("id", "bytea"),
    ("share", "bytea"),
    ("file_id", "bytea"),
    ("owner_id", "bytea"),
    ("client_id", "bytea"),
    ("kind", "text"),
    ("acquired_at", "bigint"),
    ("server_epoch", "bigint"),
    ("range_type", "text"),
    ("range_offset", "numeric"),
    ("range_length", "numeric"),
    ("range_zero_byte", "boolean"),
    ("range_flavor", "text"),
    ("range_share_deny", "text"),
    ("share_access", "text"),
    ("share_deny", "text"),
    ("lease_key", "bytea"),
    ("lease_state", "bigint"),
    ("lease_epoch", "integer"),
    ("lease_parent_key", "bytea"),
    ("lease_is_directory", "boolean"),
    ("lease_is_traditional_oplock", "boolean"),
    ("lease_breaking", "boolean"),
    ("lease_break_to", "bigint"),
    ("lease_break_required", "bigint"),
    ("lease_break_started_at", "bigint"),
    ("deleg_id", "bytea"),
    ("deleg_type", "text"),
    ("deleg_breaking", "boolean"),
    ("deleg_recalled", "boolean"),
    ("deleg_revoked", "boolean"),
    ("deleg_notification_mask", "bigint"),
    ("deleg_is_directory", "boolean"),
];

/// 1-based parameter number of `server_epoch` in [`LOCK_COLUMNS`]; the fenced
/// upsert compares the stored epoch with it.
pub(crate) const LOCK_EPOCH_PARAM: usize = 8;

/// The statement parameters of one lock, borrowed from it where possible.
#[derive(Default)]
pub(crate) struct LockParams<'a> {
    id: &'a [u8],
    share: &'a [u8],
    file_id: &'a [u8],
    owner_id: &'a [u8],
    client_id: &'a [u8],
    kind: &'static str,
    acquired_at: i64,
    server_epoch: i64,
    range_type: Option<&'static str>,
    range_offset: Option<PgU64>,
    range_length: Option<PgU64>,
    range_zero_byte: Option<bool>,
    range_flavor: Option<&'static str>,
    range_share_deny: Option<&'static str>,
    share_access: Option<&'static str>,
    share_deny: Option<&'static str>,
    lease_key: Option<&'a [u8]>,
    lease_state: Option<i64>,
    lease_epoch: Option<i32>,
    lease_parent_key: Option<&'a [u8]>,
    lease_is_directory: Option<bool>,
    lease_is_traditional_oplock: Option<bool>,
    lease_breaking: Option<bool>,
    lease_break_to: Option<i64>,
    lease_break_required: Option<i64>,
    lease_break_started_at: Option<i64>,
    deleg_id: Option<&'a [u8]>,
    deleg_type: Option<&'static str>,
    deleg_breaking: Option<bool>,
    deleg_recalled: Option<bool>,
    deleg_revoked: Option<bool>,
    deleg_notification_mask: Option<i64>,
    deleg_is_directory: Option<bool>,
}

impl<'a> LockParams<'a> {
    /// The parameters of `lock`, stamped with `epoch` (the store's, not the
    /// caller's `server_epoch`).
    pub(crate) fn new(lock: &'a PersistedLock, epoch: i64) -> Self {
        let mut p = LockParams {
            id: lock.id.as_bytes(),
            share: lock.share.as_bytes(),
            file_id: lock.file_id.as_bytes(),
            owner_id: lock.owner_id.as_bytes(),
            client_id: lock.client_id.as_bytes(),
            acquired_at: lock.acquired_at.unix_micros,
            server_epoch: epoch,
            ..LockParams::default()
        };
        match &lock.kind {
            LockKind::ByteRange(r) => {
                p.kind = "byte_range";
                p.range_type = Some(lock_type_text(r.lock_type));
                p.range_offset = Some(PgU64(r.offset));
                p.range_length = Some(PgU64(r.length));
                p.range_zero_byte = Some(r.zero_byte);
                match r.flavor {
                    RangeFlavor::Posix => p.range_flavor = Some("posix"),
                    RangeFlavor::Smb { share_deny } => {
                        p.range_flavor = Some("smb");
                        p.range_share_deny = Some(share_deny_text(share_deny));
                    }
                }
            }
            LockKind::Share(s) => {
                p.kind = "share";
                p.share_access = Some(share_access_text(s.access));
                p.share_deny = Some(share_deny_text(s.deny));
            }
            LockKind::Lease(l) => {
                p.kind = "lease";
                p.lease_key = Some(&l.key);
                p.lease_state = Some(i64::from(l.state.0));
                p.lease_epoch = Some(i32::from(l.epoch));
                p.lease_parent_key = l.parent_key.as_ref().map(|k| &k[..]);
                p.lease_is_directory = Some(l.is_directory);
                p.lease_is_traditional_oplock = Some(l.is_traditional_oplock);
                p.lease_breaking = Some(l.breaking);
                p.lease_break_to = Some(i64::from(l.break_to.0));
                p.lease_break_required = Some(i64::from(l.break_required.0));
                p.lease_break_started_at = l.break_started_at.map(|t| t.unix_micros);
            }
            LockKind::Delegation(d) => {
                p.kind = "delegation";
                p.deleg_id = Some(&d.delegation_id);
                p.deleg_type = Some(delegation_type_text(d.delegation_type));
                p.deleg_breaking = Some(d.breaking);
                p.deleg_recalled = Some(d.recalled);
                p.deleg_revoked = Some(d.revoked);
                p.deleg_notification_mask = Some(i64::from(d.notification_mask));
                p.deleg_is_directory = Some(d.is_directory);
            }
        }
        p
    }

    /// The parameters in [`LOCK_COLUMNS`] order.
    pub(crate) fn refs(&self) -> [&(dyn ToSql + Sync); 33] {
        [
            &self.id,
            &self.share,
            &self.file_id,
            &self.owner_id,
            &self.client_id,
            &self.kind,
            &self.acquired_at,
            &self.server_epoch,
            &self.range_type,
            &self.range_offset,
            &self.range_length,
            &self.range_zero_byte,
            &self.range_flavor,
            &self.range_share_deny,
            &self.share_access,
            &self.share_deny,
            &self.lease_key,
            &self.lease_state,
            &self.lease_epoch,
            &self.lease_parent_key,
            &self.lease_is_directory,
            &self.lease_is_traditional_oplock,
            &self.lease_breaking,
            &self.lease_break_to,
            &self.lease_break_required,
            &self.lease_break_started_at,
            &self.deleg_id,
            &self.deleg_type,
            &self.deleg_breaking,
            &self.deleg_recalled,
            &self.deleg_revoked,
            &self.deleg_notification_mask,
            &self.deleg_is_directory,
        ]
    }
}

/// Reads columns of one row, naming the table, key and column in errors.
struct Reader<'r> {
    row: &'r Row,
    table: &'static str,
    columns: &'static [(&'static str, &'static str)],
    key: Option<String>,
}

impl<'r> Reader<'r> {
    fn error(&self, column: usize, reason: impl std::fmt::Display) -> Error {
        let key = self.key.as_deref().map(|k| format!(" {k:?}")).unwrap_or_default();
        Error::Postgres {
            during: "decoding a row",
            sqlstate: None,
            message: format!("{} row{key}: column {}: {reason}", self.table, self.columns[column].0),
        }
    }

    fn get<'a, T: FromSql<'a>>(&'a self, column: usize) -> Result<T> {
        self.row.try_get::<usize, T>(column).map_err(|e| self.error(column, e))
    }

    /// A column that the row's kind requires.
    fn need<'a, T: FromSql<'a>>(&'a self, column: usize) -> Result<T> {
        self.get::<Option<T>>(column)?.ok_or_else(|| self.error(column, "is NULL"))
    }

    fn string(&self, column: usize) -> Result<String> {
        let bytes: &[u8] = self.get(column)?;
        String::from_utf8(bytes.to_vec()).map_err(|e| self.error(column, e))
    }

    fn enumeration<T>(&self, column: usize, parse: impl Fn(&str) -> Option<T>) -> Result<T> {
        let text: &str = self.need(column)?;
        parse(text).ok_or_else(|| self.error(column, format!("unknown value {text:?}")))
    }

    fn u64(&self, column: usize) -> Result<u64> {
        self.need::<PgU64>(column).map(|v| v.0)
    }

    /// A `bigint` column that holds a `u32`.
    fn u32(&self, column: usize) -> Result<u32> {
        let v: i64 = self.need(column)?;
        u32::try_from(v).map_err(|_| self.error(column, format!("{v} is not a u32")))
    }

    fn key16(&self, column: usize) -> Result<Option<LeaseKey>> {
        self.fixed(column, "a lease key")
    }

    /// A nullable `bytea` column that holds exactly `N` bytes (`what` has
    /// them, for the message).
    fn fixed<const N: usize>(&self, column: usize, what: &str) -> Result<Option<[u8; N]>> {
        match self.get::<Option<&[u8]>>(column)? {
            None => Ok(None),
            Some(bytes) => <[u8; N]>::try_from(bytes)
                .map(Some)
                .map_err(|_| self.error(column, format!("{} bytes, {what} has {N}", bytes.len()))),
        }
    }

    /// A `bytea` column that the row requires, of exactly `N` bytes.
    fn need_fixed<const N: usize>(&self, column: usize, what: &str) -> Result<[u8; N]> {
        self.fixed(column, what)?.ok_or_else(|| self.error(column, "is NULL"))
    }

    /// An integer column that holds a narrower unsigned integer.
    fn narrow<'a, W, T>(&'a self, column: usize) -> Result<T>
    where
        W: FromSql<'a> + Copy + std::fmt::Display,
        T: TryFrom<W>,
    {
        let v: W = self.need(column)?;
        T::try_from(v)
            .map_err(|_| self.error(column, format!("{v} is out of range for a {}", std::any::type_name::<T>())))
    }

    /// A `bytea` column holding UTF-8 that may be NULL.
    fn opt_string(&self, column: usize) -> Result<Option<String>> {
        match self.get::<Option<&[u8]>>(column)? {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes.to_vec()).map(Some).map_err(|e| self.error(column, e)),
        }
    }
}

/// Decodes a row whose columns are [`LOCK_COLUMNS`], in order.
pub(crate) fn decode_lock(row: &Row) -> Result<PersistedLock> {
    let mut r = Reader { row, table: "lockwal_locks", columns: &LOCK_COLUMNS, key: None };
    let id = r.string(0)?;
    r.key = Some(id.clone());
    let kind_text: &str = r.get(5)?;
    let kind = match kind_text {
        "byte_range" => LockKind::ByteRange(ByteRange {
            lock_type: r.enumeration(8, |t| match t {
                "shared" => Some(LockType::Shared),
                "exclusive" => Some(LockType::Exclusive),
                _ => None,
            })?,
            offset: r.u64(9)?,
            length: r.u64(10)?,
            zero_byte: r.need(11)?,
            flavor: match r.need::<&str>(12)? {
                "posix" => RangeFlavor::Posix,
                "smb" => RangeFlavor::Smb { share_deny: r.enumeration(13, parse_share_deny)? },
                other => return Err(r.error(12, format!("unknown value {other:?}"))),
            },
        }),
        "share" => LockKind::Share(ShareReservation {
            access: r.enumeration(14, |t| match t {
                "read" => Some(ShareAccess::Read),
                "write" => Some(ShareAccess::Write),
                "read_write" => Some(ShareAccess::ReadWrite),
                _ => None,
            })?,
            deny: r.enumeration(15, parse_share_deny)?,
        }),
        "lease" => {
            let epoch: i32 = r.need(18)?;
            LockKind::Lease(Lease {
                key: r.key16(16)?.ok_or_else(|| r.error(16, "is NULL"))?,
                state: LeaseState(r.u32(17)?),
                epoch: u16::try_from(epoch).map_err(|_| r.error(18, format!("{epoch} is not a u16")))?,
                parent_key: r.key16(19)?,
                is_directory: r.need(20)?,
                is_traditional_oplock: r.need(21)?,
                breaking: r.need(22)?,
                break_to: LeaseState(r.u32(23)?),
                break_required: LeaseState(r.u32(24)?),
                break_started_at: r.get::<Option<i64>>(25)?.map(Timestamp::from_unix_micros),
            })
        }
        "delegation" => LockKind::Delegation(Delegation {
            delegation_id: r.need(26)?,
            delegation_type: r.enumeration(27, |t| match t {
                "read" => Some(DelegationType::Read),
                "write" => Some(DelegationType::Write),
                _ => None,
            })?,
            breaking: r.need(28)?,
            recalled: r.need(29)?,
            revoked: r.need(30)?,
            notification_mask: r.u32(31)?,
            is_directory: r.need(32)?,
        }),
        other => return Err(r.error(5, format!("unknown lock kind {other:?}"))),
    };
    let epoch: i64 = r.get(7)?;
    Ok(PersistedLock {
        share: r.string(1)?.into(),
        file_id: r.string(2)?.into(),
        owner_id: r.string(3)?.into(),
        client_id: r.string(4)?.into(),
        kind,
        acquired_at: Timestamp::from_unix_micros(r.get(6)?),
        server_epoch: u64::try_from(epoch).map_err(|_| r.error(7, format!("negative epoch {epoch}")))?,
        id: id.into(),
    })
}

// ---- client records ---------------------------------------------------------

/// The columns of `lockwal_clients`, in parameter and `SELECT` order.
pub(crate) const CLIENT_COLUMNS: [(&str, &str); 14] = [
    ("client_id", "bytea"),
    ("kind", "text"),
    ("name", "bytea"),
    ("verifier", "bytea"),
    ("principal", "bytea"),
    ("callback", "bytea"),
    ("registered_at", "bigint"),
    ("epoch", "numeric"),
    ("reclaim_complete", "boolean"),
    ("nsm_callback_host", "bytea"),
    ("nsm_program", "bigint"),
    ("nsm_version", "bigint"),
    ("nsm_procedure", "bigint"),
    ("nfs4_short_id", "numeric"),
];

/// The statement parameters of one client record.
pub(crate) struct ClientParams<'a> {
    client_id: &'a [u8],
    kind: &'static str,
    name: &'a [u8],
    verifier: &'a [u8],
    principal: &'a [u8],
    callback: &'a [u8],
    registered_at: i64,
    epoch: PgU64,
    reclaim_complete: bool,
    nsm_callback_host: Option<&'a [u8]>,
    nsm_program: Option<i64>,
    nsm_version: Option<i64>,
    nsm_procedure: Option<i64>,
    nfs4_short_id: Option<PgU64>,
}

impl<'a> ClientParams<'a> {
    /// The parameters of `record`.
    pub(crate) fn new(record: &'a ClientRecord) -> Self {
        let mut p = ClientParams {
            client_id: record.client_id.as_bytes(),
            kind: client_kind_text(record.kind()),
            name: record.name.as_bytes(),
            verifier: &record.verifier,
            principal: record.principal.as_bytes(),
            callback: &record.callback,
            registered_at: record.registered_at.unix_micros,
            epoch: PgU64(record.epoch),
            reclaim_complete: record.reclaim_complete,
            nsm_callback_host: None,
            nsm_program: None,
            nsm_version: None,
            nsm_procedure: None,
            nfs4_short_id: None,
        };
        match &record.details {
            ClientDetails::Nsm(nsm) => {
                p.nsm_callback_host = Some(nsm.callback_host.as_bytes());
                p.nsm_program = Some(i64::from(nsm.program));
                p.nsm_version = Some(i64::from(nsm.version));
                p.nsm_procedure = Some(i64::from(nsm.procedure));
            }
            ClientDetails::Nfs4(nfs4) => p.nfs4_short_id = Some(PgU64(nfs4.short_id)),
            ClientDetails::Smb => {}
        }
        p
    }

    /// The parameters in [`CLIENT_COLUMNS`] order.
    pub(crate) fn refs(&self) -> [&(dyn ToSql + Sync); 14] {
        [
            &self.client_id,
            &self.kind,
            &self.name,
            &self.verifier,
            &self.principal,
            &self.callback,
            &self.registered_at,
            &self.epoch,
            &self.reclaim_complete,
            &self.nsm_callback_host,
            &self.nsm_program,
            &self.nsm_version,
            &self.nsm_procedure,
            &self.nfs4_short_id,
        ]
    }
}

/// Decodes a row whose columns are [`CLIENT_COLUMNS`], in order.
pub(crate) fn decode_client(row: &Row) -> Result<ClientRecord> {
    let mut r = Reader { row, table: "lockwal_clients", columns: &CLIENT_COLUMNS, key: None };
    let client_id = r.string(0)?;
    r.key = Some(client_id.clone());
    let details = match r.need::<&str>(1)? {
        "nsm" => ClientDetails::Nsm(NsmDetails {
            callback_host: {
                let bytes: &[u8] = r.need(9)?;
                String::from_utf8(bytes.to_vec()).map_err(|e| r.error(9, e))?
            },
            program: r.u32(10)?,
            version: r.u32(11)?,
            procedure: r.u32(12)?,
        }),
        "nfs4" => ClientDetails::Nfs4(Nfs4Details { short_id: r.u64(13)? }),
        "smb" => ClientDetails::Smb,
        other => return Err(r.error(1, format!("unknown value {other:?}"))),
    };
    Ok(ClientRecord {
        name: r.string(2)?,
        verifier: r.get(3)?,
        principal: r.string(4)?,
        callback: r.get(5)?,
        registered_at: Timestamp::from_unix_micros(r.get(6)?),
        epoch: r.u64(7)?,
        reclaim_complete: r.get(8)?,
        details,
        client_id,
    })
}
