//! Loading a snapshot on one thread: each block checked (length, index,
//! checksum, padding) and its entries decoded in file order into a sink
//! (the restorer, or one part of a two-thread load), then the checks after
//! the last block and the restored state.

use super::format::{
    BLOCK_HEADER_LEN, MAX_BLOCK, SnapshotDamage, SnapshotHeader, TAG_CLIENT, TAG_HANDLE, TAG_LOCK, TAG_RECORD,
    TAG_STRING, block_crc, damage, u32_at,
};
use crate::model::{
    ByteRange, ClientRecord, Delegation, DelegationType, DurableHandle, Lease, LeaseState, LockKind, LockType,
    RangeFlavor, ShareAccess, ShareDeny, ShareReservation, Timestamp,
};
use crate::state::{FinishError, Keys, LockEntry, RestoreError, Restorer, State};

/// A cursor over one verified block's payload; every read is bounds-checked
/// and reports the absolute offset of what it could not read.
struct Cursor<'a> {
    bytes: &'a [u8],
    at: usize,
    base: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SnapshotDamage> {
        let s = self
            .bytes
            .get(self.at..self.at + n)
            .ok_or_else(|| damage(self.base + self.at, "entry runs past its block"))?;
        self.at += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, SnapshotDamage> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, SnapshotDamage> {
        Ok(u16::from_le_bytes(self.take(2)?.try_into().expect("2")))
    }
    fn u32(&mut self) -> Result<u32, SnapshotDamage> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().expect("4")))
    }
    fn u64(&mut self) -> Result<u64, SnapshotDamage> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().expect("8")))
    }
    fn key(&mut self) -> Result<[u8; 16], SnapshotDamage> {
        Ok(self.take(16)?.try_into().expect("16"))
    }
    fn bytes16(&mut self) -> Result<&'a [u8], SnapshotDamage> {
        let len = self.u16()? as usize;
        self.take(len)
    }
    fn str16(&mut self) -> Result<&'a str, SnapshotDamage> {
        let at = self.base + self.at;
        let len = self.u16()? as usize;
        std::str::from_utf8(self.take(len)?).map_err(|_| damage(at, "string is not UTF-8"))
    }
    fn flag(&mut self) -> Result<bool, SnapshotDamage> {
        let at = self.base + self.at;
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(damage(at, format!("flag byte {v}"))),
        }
    }
    fn bad(&self, what: &str) -> SnapshotDamage {
        damage(self.base + self.at.saturating_sub(1), what)
    }
}

fn lock_type(c: &mut Cursor<'_>) -> Result<LockType, SnapshotDamage> {
    match c.u8()? {
        0 => Ok(LockType::Shared),
        1 => Ok(LockType::Exclusive),
        _ => Err(c.bad("bad lock type")),
    }
}

fn share_deny(c: &mut Cursor<'_>) -> Result<ShareDeny, SnapshotDamage> {
    match c.u8()? {
        0 => Ok(ShareDeny::None),
        1 => Ok(ShareDeny::Read),
        2 => Ok(ShareDeny::Write),
        3 => Ok(ShareDeny::All),
        _ => Err(c.bad("bad share deny")),
    }
}

fn share(c: &mut Cursor<'_>) -> Result<LockKind, SnapshotDamage> {
    let access = match c.u8()? {
        0 => ShareAccess::Read,
        1 => ShareAccess::Write,
        2 => ShareAccess::ReadWrite,
        _ => return Err(c.bad("bad share access")),
    };
    Ok(LockKind::Share(ShareReservation { access, deny: share_deny(c)? }))
}

fn delegation_type(c: &mut Cursor<'_>) -> Result<DelegationType, SnapshotDamage> {
    match c.u8()? {
        0 => Ok(DelegationType::Read),
        1 => Ok(DelegationType::Write),
        _ => Err(c.bad("bad delegation type")),
    }
}

fn timestamp(c: &mut Cursor<'_>) -> Result<Timestamp, SnapshotDamage> {
    Ok(Timestamp::from_unix_micros(c.u64()? as i64))
}

/// A lock kind of a format-2 snapshot.
fn decode_kind(c: &mut Cursor<'_>) -> Result<LockKind, SnapshotDamage> {
    Ok(match c.u8()? {
        1 => {
            let (lock_type, offset, length, zero_byte) = (lock_type(c)?, c.u64()?, c.u64()?, c.flag()?);
            let flavor = match c.u8()? {
                0 => RangeFlavor::Posix,
                1 => RangeFlavor::Smb { share_deny: share_deny(c)? },
                _ => return Err(c.bad("bad byte-range flavor")),
            };
            LockKind::ByteRange(ByteRange { lock_type, offset, length, zero_byte, flavor })
        }
        2 => share(c)?,
        3 => {
            let (key, state, epoch, flags) = (c.key()?, LeaseState(c.u32()?), c.u16()?, c.u8()?);
            if flags > 7 {
                return Err(c.bad("bad lease flags"));
            }
            let parent_key = if c.flag()? { Some(c.key()?) } else { None };
            let (break_to, break_required) = (LeaseState(c.u32()?), LeaseState(c.u32()?));
            let break_started_at = if c.flag()? { Some(timestamp(c)?) } else { None };
            LockKind::Lease(Lease {
                key,
                state,
                epoch,
                parent_key,
                is_directory: flags & 1 != 0,
                is_traditional_oplock: flags & 2 != 0,
                breaking: flags & 4 != 0,
                break_to,
                break_required,
                break_started_at,
            })
        }
        4 => {
            let len = c.u16()? as usize;
            if len == 0 || len > crate::model::validate::MAX_OPAQUE_LEN {
                return Err(c.bad("bad delegation id length"));
            }
            let delegation_id = c.take(len)?.to_vec();
            let delegation_type = delegation_type(c)?;
            let flags = c.u8()?;
            if flags > 15 {
                return Err(c.bad("bad delegation flags"));
            }
            LockKind::Delegation(Delegation {
                delegation_id,
                delegation_type,
                breaking: flags & 1 != 0,
                recalled: flags & 2 != 0,
                revoked: flags & 4 != 0,
                is_directory: flags & 8 != 0,
                notification_mask: c.u32()?,
            })
        }
        _ => return Err(c.bad("unknown lock kind")),
    })
}

/// A lock kind of a format-1 snapshot, converted as `wal::legacy` says.
fn decode_kind_v1(c: &mut Cursor<'_>) -> Result<LockKind, SnapshotDamage> {
    fn lease_state_v1(bits: u8, c: &Cursor<'_>) -> Result<LeaseState, SnapshotDamage> {
        if bits > 7 {
            return Err(c.bad("lease state bits out of range"));
        }
        Ok(crate::wal::legacy::lease_state(bits & 1 != 0, bits & 2 != 0, bits & 4 != 0))
    }
    Ok(match c.u8()? {
        1 => {
            let (lock_type, offset, length, zero_byte) = (lock_type(c)?, c.u64()?, c.u64()?, c.flag()?);
            LockKind::ByteRange(ByteRange { lock_type, offset, length, zero_byte, flavor: RangeFlavor::Posix })
        }
        2 => share(c)?,
        3 => {
            let key = c.key()?;
            let state = lease_state_v1(c.u8()?, c)?;
            let epoch = c.u16()?;
            let flags = c.u8()?;
            if flags > 3 {
                return Err(c.bad("bad lease flags"));
            }
            let parent_key = if c.flag()? { Some(c.key()?) } else { None };
            let (breaking, break_to, break_required, break_started_at) = if c.flag()? {
                let to = lease_state_v1(c.u8()?, c)?;
                let required = lease_state_v1(c.u8()?, c)?;
                (true, to, required, Some(timestamp(c)?))
            } else {
                (false, LeaseState::NONE, LeaseState::NONE, None)
            };
            LockKind::Lease(Lease {
                key,
                state,
                epoch,
                parent_key,
                is_directory: flags & 1 != 0,
                is_traditional_oplock: flags & 2 != 0,
                breaking,
                break_to,
                break_required,
                break_started_at,
            })
        }
        4 => {
            let delegation_id = c.u64()?.to_le_bytes().to_vec();
            let delegation_type = delegation_type(c)?;
            let flags = c.u8()?;
            if flags > 7 {
                return Err(c.bad("bad delegation flags"));
            }
            LockKind::Delegation(Delegation {
                delegation_id,
                delegation_type,
                breaking: flags & 1 != 0,
                recalled: flags & 2 != 0,
                revoked: flags & 4 != 0,
                is_directory: false,
                notification_mask: c.u32()?,
            })
        }
        _ => return Err(c.bad("unknown lock kind")),
    })
}

/// Decodes MessagePack that must fill `bytes` exactly: an entry whose
/// length says more than its value holds is damage.
fn decode_whole<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    let mut de = rmp_serde::Deserializer::new(std::io::Cursor::new(bytes));
    let value = T::deserialize(&mut de).map_err(|e| e.to_string())?;
    let left = bytes.len() - de.position() as usize;
    if left > 0 {
        return Err(format!("{left} bytes after the value"));
    }
    Ok(value)
}

pub(super) fn new_restorer(bytes: &[u8], header: SnapshotHeader, keys: Keys) -> Restorer {
    let capacity = usize::try_from(header.locks).unwrap_or(usize::MAX).min(bytes.len() / 32);
    State::restorer(header.epoch, header.clean, capacity, keys)
}

/// The checks after the last block (which ended at `at`), then the state.
pub(super) fn finish(
    bytes: &[u8],
    header: SnapshotHeader,
    at: usize,
    restorer: Restorer,
) -> Result<State, SnapshotDamage> {
    if at != bytes.len() {
        return Err(damage(at, format!("{} bytes after the last block", bytes.len().saturating_sub(at))));
    }
    let counts = (restorer.locks() as u64, restorer.clients() as u64, restorer.strings() as u64);
    if counts != (header.locks, header.clients, header.strings) {
        return Err(damage(32, "entry counts differ from the header"));
    }
    if (restorer.handles() as u64, restorer.records() as u64) != (header.handles, header.records) {
        return Err(damage(64, "handle or record counts differ from the header"));
    }
    restorer.finish().map_err(|e| match e {
        FinishError::RepeatedString { text, at } => {
            damage(at, format!("string {text:?} repeats an earlier entry that names a key of the same index"))
        }
        // Only a forked restore finds these here, and it is never reported.
        FinishError::DuplicateId | FinishError::DuplicateClient | FinishError::DuplicateExtra => {
            damage(32, "duplicate ids")
        }
        FinishError::Entry { at, error } => restore_damage(at, error),
    })
}

/// Decodes blocks `blocks`, the first at `at`; returns where they end.
pub(super) fn decode_blocks(
    bytes: &[u8],
    version: u32,
    blocks: std::ops::Range<u32>,
    mut at: usize,
    sink: &mut impl Entries,
    done: &impl Fn(usize, usize),
) -> Result<usize, SnapshotDamage> {
    for index in blocks {
        let end = decode_block(bytes, version, index, at, sink)?;
        done(at, end);
        at = end;
    }
    Ok(at)
}

/// Where decoded entries go.
pub(super) trait Entries {
    fn string(&mut self, text: &str, at: usize) -> Result<(), SnapshotDamage>;
    fn lock(&mut self, at: usize, lock: LockEntry<'_>) -> Result<(), SnapshotDamage>;
    fn client(&mut self, at: usize, record: ClientRecord) -> Result<(), SnapshotDamage>;
    fn handle(&mut self, at: usize, handle: DurableHandle) -> Result<(), SnapshotDamage>;
    fn record(&mut self, at: usize, space: &str, key: &[u8], value: &[u8]) -> Result<(), SnapshotDamage>;
}

pub(super) fn restore_damage(at: usize, e: RestoreError) -> SnapshotDamage {
    damage(
        at,
        match e {
            RestoreError::UnknownString(r) => format!("lock refers to string {r}, not yet defined"),
            RestoreError::DuplicateId(id) => format!("duplicate lock id {id:?}"),
            RestoreError::DuplicateClient(kind, id) => format!("duplicate client {id:?} of kind {kind:?}"),
            RestoreError::DuplicateHandle(id) => format!("duplicate durable handle {id:?}"),
            RestoreError::HandleConflict { id, field, holder } => {
                format!("durable handle {id:?} has the {field} of handle {holder:?}")
            }
            RestoreError::DuplicateRecord(space, key) => {
                format!("duplicate record {} in keyspace {space:?}", crate::error::hex(&key))
            }
        },
    )
}

impl Entries for Restorer {
    fn string(&mut self, text: &str, at: usize) -> Result<(), SnapshotDamage> {
        self.add_string(text, at);
        Ok(())
    }
    fn lock(&mut self, at: usize, l: LockEntry<'_>) -> Result<(), SnapshotDamage> {
        self.add_lock(l).map_err(|e| restore_damage(at, e))
    }
    fn client(&mut self, at: usize, record: ClientRecord) -> Result<(), SnapshotDamage> {
        self.add_client(record).map_err(|e| restore_damage(at, e))
    }
    fn handle(&mut self, at: usize, handle: DurableHandle) -> Result<(), SnapshotDamage> {
        self.add_handle(at, handle);
        Ok(())
    }
    fn record(&mut self, at: usize, space: &str, key: &[u8], value: &[u8]) -> Result<(), SnapshotDamage> {
        self.add_record(space, key, value).map_err(|e| restore_damage(at, e))
    }
}

/// Checks block `index` at offset `at` of a snapshot of format `version`
/// and hands its entries to `sink`; returns where the next block starts.
pub(super) fn decode_block(
    bytes: &[u8],
    version: u32,
    index: u32,
    at: usize,
    sink: &mut impl Entries,
) -> Result<usize, SnapshotDamage> {
    let h = bytes.get(at..at + BLOCK_HEADER_LEN).ok_or_else(|| damage(at, "file ends before its last block"))?;
    let len = u32_at(h, 0);
    if len == 0 || len as usize > MAX_BLOCK - BLOCK_HEADER_LEN {
        return Err(damage(at, format!("bad block length {len}")));
    }
    if u32_at(h, 8) != index || u32_at(h, 12) != 0 {
        return Err(damage(at + 8, "bad block index"));
    }
    let end = at + BLOCK_HEADER_LEN + len as usize;
    let payload = bytes.get(at + BLOCK_HEADER_LEN..end).ok_or_else(|| damage(at, "block runs past end of file"))?;
    if block_crc(index, len, payload) != u32_at(h, 4) {
        return Err(damage(at, "block checksum mismatch"));
    }
    let padded = end.next_multiple_of(8);
    if bytes.get(end..padded).is_none_or(|p| p.iter().any(|&b| b != 0)) {
        return Err(damage(end, "bad block padding"));
    }
    let mut c = Cursor { bytes: payload, at: 0, base: at + BLOCK_HEADER_LEN };
    while c.at < payload.len() {
        // Where this entry starts, for errors about the entry as a whole.
        let entry_at = c.base + c.at;
        match c.u8()? {
            TAG_STRING => sink.string(c.str16()?, entry_at)?,
            TAG_LOCK => {
                let id = c.str16()?;
                // On disk: share, file, owner, client; the restorer takes
                // file, owner, client, share.
                let [share, file, owner, client] = [c.u32()?, c.u32()?, c.u32()?, c.u32()?];
                let acquired_at = Timestamp::from_unix_micros(c.u64()? as i64);
                let epoch = c.u64()?;
                let kind = if version == 1 { decode_kind_v1(&mut c)? } else { decode_kind(&mut c)? };
                sink.lock(entry_at, LockEntry { id, refs: [file, owner, client, share], acquired_at, epoch, kind })?;
            }
            TAG_CLIENT => {
                let len = c.u32()? as usize;
                let bytes = c.take(len)?;
                let record = if version == 1 {
                    crate::wal::legacy::decode_client(bytes)
                } else {
                    rmp_serde::from_slice::<ClientRecord>(bytes).map_err(|e| e.to_string())
                }
                .map_err(|e| damage(entry_at, format!("client record does not decode: {e}")))?;
                sink.client(entry_at, record)?;
            }
            TAG_HANDLE if version >= 3 => {
                let len = c.u32()? as usize;
                let handle = decode_whole::<DurableHandle>(c.take(len)?)
                    .map_err(|e| damage(entry_at, format!("durable handle does not decode: {e}")))?;
                // Every stored handle passed validation; one that does not
                // is damage, never a handle no write could have made.
                crate::model::validate::handle(&handle)
                    .map_err(|e| damage(entry_at, format!("durable handle is not valid: {e}")))?;
                sink.handle(entry_at, handle)?;
            }
            TAG_RECORD if version >= 3 => {
                let space = c.str16()?;
                let key = c.bytes16()?;
                let len = c.u32()? as usize;
                let value = c.take(len)?;
                let valid = crate::model::validate::space(space)
                    .and_then(|()| crate::model::validate::record_key(key))
                    .and_then(|()| crate::model::validate::record_value(value));
                valid.map_err(|e| damage(entry_at, format!("record is not valid: {e}")))?;
                sink.record(entry_at, space, key, value)?;
            }
            _ => return Err(c.bad("unknown entry tag")),
        }
    }
    Ok(padded)
}
