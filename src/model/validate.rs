//! The limits the store enforces on every input before it is applied.
//!
//! Validation is pure and runs before any state changes, so bad input gets a
//! clear error naming the field and changes nothing.

use super::{ClientDetails, ClientRecord, ClientSelector, DurableHandle, LockKind, PersistedLock, RecordScan};
use crate::error::{Error, Result};

/// Longest id, share, file id, owner id, client id, name or principal, in
/// bytes.
pub const MAX_ID_LEN: usize = 1024;
/// Longest opaque byte field (verifier, callback) of a client record.
pub const MAX_OPAQUE_LEN: usize = 1024;
/// Most operations in one transaction.
pub const MAX_TXN_OPS: usize = 4096;
/// Longest keyspace name, in bytes.
pub const MAX_SPACE_LEN: usize = 64;
/// Longest record key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;
/// Longest record value, in bytes.
pub const MAX_VALUE_LEN: usize = 64 << 10;
/// Most bytes of record keys and values and of durable-handle fields in one
/// transaction.
pub const MAX_TXN_BYTES: usize = 2 << 20;
/// Most bytes a transaction encodes to: what one log frame holds (32 MiB)
/// less the frame's one-byte array header.
pub const MAX_TXN_ENCODED: usize = (32 << 20) - 1;

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::InvalidInput { field, reason: reason.into() }
}

/// Checks a key-like string: non-empty and at most [`MAX_ID_LEN`] bytes.
pub fn id(field: &'static str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    bounded(field, value)
}

/// Checks a free-form string: at most [`MAX_ID_LEN`] bytes (may be empty).
fn bounded(field: &'static str, value: &str) -> Result<()> {
    if value.len() > MAX_ID_LEN {
        return Err(invalid(field, format!("is {} bytes long, the maximum is {MAX_ID_LEN}", value.len())));
    }
    Ok(())
}

fn opaque(field: &'static str, value: &[u8]) -> Result<()> {
    if value.len() > MAX_OPAQUE_LEN {
        return Err(invalid(field, format!("is {} bytes long, the maximum is {MAX_OPAQUE_LEN}", value.len())));
    }
    Ok(())
}

/// Validates every field of a lock.
pub fn lock(lock: &PersistedLock) -> Result<()> {
    id("id", &lock.id)?;
    id("share", &lock.share)?;
    id("file_id", &lock.file_id)?;
    id("owner_id", &lock.owner_id)?;
    id("client_id", &lock.client_id)?;
    match &lock.kind {
        LockKind::ByteRange(r) => {
            if r.zero_byte && r.length != 0 {
                return Err(invalid("length", "a zero-byte lock must have length 0"));
            }
            // 0 and all ones mean "to end of file" (0 also an SMB zero-byte
            // lock): no last byte to check.
            if r.length != 0 && r.length != u64::MAX && r.offset.checked_add(r.length - 1).is_none() {
                return Err(invalid("length", format!("offset {} + length {} overflows u64", r.offset, r.length)));
            }
        }
        LockKind::Delegation(d) => {
            if d.delegation_id.is_empty() {
                return Err(invalid("delegation_id", "must not be empty"));
            }
            opaque("delegation_id", &d.delegation_id)?;
        }
        LockKind::Share(_) | LockKind::Lease(_) => {}
    }
    Ok(())
}

/// Validates every field of a client record.
pub fn client(record: &ClientRecord) -> Result<()> {
    id("client_id", &record.client_id)?;
    bounded("name", &record.name)?;
    bounded("principal", &record.principal)?;
    opaque("verifier", &record.verifier)?;
    opaque("callback", &record.callback)?;
    if let ClientDetails::Nsm(nsm) = &record.details {
        bounded("callback_host", &nsm.callback_host)?;
    }
    Ok(())
}

/// Validates every field of a durable handle.
pub fn handle(handle: &DurableHandle) -> Result<()> {
    id("id", &handle.id)?;
    id("share", &handle.share)?;
    bounded("path", &handle.path)?;
    bounded("user", &handle.user)?;
    if handle.file_handle.is_empty() {
        return Err(invalid("file_handle", "must not be empty"));
    }
    opaque("file_handle", &handle.file_handle)?;
    if let Some(pending) = &handle.delete_pending {
        opaque("parent_handle", &pending.parent_handle)?;
        id("file_name", &pending.file_name)?;
    }
    if handle.expires_at().is_none() {
        return Err(invalid(
            "timeout_ms",
            format!(
                "disconnected_at {} µs + timeout {} ms overflows the timestamp range",
                handle.disconnected_at.unix_micros, handle.timeout_ms
            ),
        ));
    }
    Ok(())
}

/// The bytes of a handle's variable-length fields, counted against
/// [`MAX_TXN_BYTES`].
pub fn handle_bytes(handle: &DurableHandle) -> usize {
    let pending = handle.delete_pending.as_ref().map_or(0, |p| p.parent_handle.len() + p.file_name.len());
    handle.id.len() + handle.share.len() + handle.path.len() + handle.user.len() + handle.file_handle.len() + pending
}

/// Checks a keyspace name: 1 to [`MAX_SPACE_LEN`] bytes of ASCII letters,
/// digits, `_`, `-` and `.`, starting with a letter or digit.
pub fn space(space: &str) -> Result<()> {
    if space.is_empty() || space.len() > MAX_SPACE_LEN {
        return Err(invalid("space", format!("must be 1 to {MAX_SPACE_LEN} bytes long, is {}", space.len())));
    }
    let first_ok = space.as_bytes()[0].is_ascii_alphanumeric();
    let rest_ok = space.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !first_ok || !rest_ok {
        return Err(invalid(
            "space",
            format!("{space:?} must be ASCII letters, digits, '_', '-' or '.', starting with a letter or digit"),
        ));
    }
    Ok(())
}

/// Checks a record key: 1 to [`MAX_KEY_LEN`] bytes.
pub fn record_key(key: &[u8]) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(invalid("key", format!("must be 1 to {MAX_KEY_LEN} bytes long, is {}", key.len())));
    }
    Ok(())
}

/// Checks a record value: at most [`MAX_VALUE_LEN`] bytes (may be empty).
pub fn record_value(value: &[u8]) -> Result<()> {
    if value.len() > MAX_VALUE_LEN {
        return Err(invalid("value", format!("is {} bytes long, the maximum is {MAX_VALUE_LEN}", value.len())));
    }
    Ok(())
}

/// Checks a scan's keyspace and bounds (a bound longer than any key could
/// be is refused, like a key).
pub fn scan(space_name: &str, scan: &RecordScan) -> Result<()> {
    space(space_name)?;
    for (field, bound) in [("prefix", Some(&scan.prefix)), ("start", scan.start.as_ref()), ("end", scan.end.as_ref())] {
        if bound.is_some_and(|b| b.len() > MAX_KEY_LEN + 1) {
            return Err(invalid(field, format!("is longer than {} bytes", MAX_KEY_LEN + 1)));
        }
    }
    Ok(())
}

/// Validates a bulk client delete's filters.
pub fn selector(selector: &ClientSelector) -> Result<()> {
    if let Some(client_id) = &selector.client_id {
        id("client_id", client_id)?;
    }
    selector.name.as_deref().map_or(Ok(()), |name| bounded("name", name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ByteRange, LockType, RangeFlavor, Timestamp};

    fn range(offset: u64, length: u64, zero_byte: bool) -> PersistedLock {
        PersistedLock {
            id: "l".into(),
            share: "s".into(),
            file_id: "f".into(),
            owner_id: "o".into(),
            client_id: "c".into(),
            kind: LockKind::ByteRange(ByteRange {
                lock_type: LockType::Shared,
                offset,
                length,
                zero_byte,
                flavor: RangeFlavor::Posix,
            }),
            acquired_at: Timestamp::from_unix_micros(0),
            server_epoch: 0,
        }
    }

    #[test]
    fn ranges_up_to_u64_max_are_valid_and_overflow_is_named() {
        assert!(lock(&range(u64::MAX, 0, false)).is_ok());
        assert!(lock(&range(0, u64::MAX, false)).is_ok());
        assert!(lock(&range(u64::MAX, 1, false)).is_ok());
        assert!(lock(&range(u64::MAX, 0, true)).is_ok());
        // NFSv4's all-ones length is "to end of file" at any offset.
        assert!(lock(&range(7, u64::MAX, false)).is_ok());
        assert!(lock(&range(u64::MAX, u64::MAX, false)).is_ok());
        match lock(&range(u64::MAX, 2, false)) {
            Err(Error::InvalidInput { field, .. }) => assert_eq!(field, "length"),
            other => panic!("expected InvalidInput, got {other:?}"),
        }
        assert!(matches!(lock(&range(0, 5, true)), Err(Error::InvalidInput { field: "length", .. })));
    }

    #[test]
    fn empty_and_oversized_ids_name_the_field() {
        let mut l = range(0, 1, false);
        l.owner_id = "".into();
        assert!(matches!(lock(&l), Err(Error::InvalidInput { field: "owner_id", .. })));
        l.owner_id = "x".repeat(MAX_ID_LEN).into();
        assert!(lock(&l).is_ok());
        l.owner_id = "x".repeat(MAX_ID_LEN + 1).into();
        assert!(matches!(lock(&l), Err(Error::InvalidInput { field: "owner_id", .. })));
    }
}
