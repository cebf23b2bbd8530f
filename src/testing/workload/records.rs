//! The record builders: locks, client records, durable handles and the
//! server's records whose keys come from small spaces, so that workloads
//! collide on them.

use crate::model::{
    ByteRange, ClientKind, ClientRecord, DurableHandle, DurableVersion, HandleLease, LeaseState, LockKind, LockType,
    PersistedLock, RangeFlavor, ShareDeny, Timestamp,
};
use crate::op::Op;
use crate::testing::sample;

/// A lock whose keys come from small spaces, so that bulk deletes, queries
/// and overwrites hit several locks.
pub fn lock(n: u64, variant: u64) -> PersistedLock {
    let id = format!("l{n}");
    let kinds = sample::every_kind();
    let mut lock = sample::byte_range(
        &id,
        &format!("s{}", variant % 3),
        &format!("f{}", variant % 13),
        &format!("o{}", variant % 11),
        &format!("c{}", variant % 7),
    );
    match variant % 9 {
        0..4 => lock.kind = kinds[(variant / 9) as usize % kinds.len()].kind.clone(),
        _ => {
            lock.kind = LockKind::ByteRange(ByteRange {
                lock_type: if variant.is_multiple_of(2) { LockType::Shared } else { LockType::Exclusive },
                offset: variant * 4096,
                length: variant % 5000,
                zero_byte: false,
                flavor: if variant.is_multiple_of(3) {
                    RangeFlavor::Smb { share_deny: [ShareDeny::None, ShareDeny::Read][(variant % 2) as usize] }
                } else {
                    RangeFlavor::Posix
                },
            })
        }
    }
    lock.acquired_at = Timestamp::from_unix_micros(1_764_000_000_000_000 + variant as i64);
    lock
}

/// A client record `c<n>`, of a kind that `variant` picks.
pub fn client(n: u64, variant: u64) -> ClientRecord {
    let mut records = sample::every_client(&format!("c{n}"));
    let mut record = records.swap_remove((variant % records.len() as u64) as usize);
    record.epoch = variant;
    record.verifier = variant.to_le_bytes().to_vec();
    record.name = format!("name{}", variant % 3);
    record.reclaim_complete = variant.is_multiple_of(2);
    record
}

/// The kind a small number picks.
pub(super) fn client_kind(n: u64) -> ClientKind {
    ClientKind::ALL[(n % 3) as usize]
}

/// An update of lock `l<n>`: its keys kept, its kind fields from
/// `variant` (fails as not found when there is no such lock).
pub fn update(n: u64, variant: u64, existing: Option<&PersistedLock>) -> Op {
    let mut lock = lock(n, variant);
    if let Some(old) = existing {
        lock.share = old.share.clone();
        lock.file_id = old.file_id.clone();
        lock.owner_id = old.owner_id.clone();
        lock.client_id = old.client_id.clone();
    }
    Op::UpdateLock(lock)
}

/// The keyspaces workloads write records in (two of them share a prefix).
/// [`crate::testing::crash::observe()`] reads these, so a record anywhere
/// else would not be seen: every workload keeps to them.
pub const SPACES: [&str; 3] = ["dirents", "dirents.v2", "xattr"];

/// Record keys: a few that share prefixes (one is a prefix of the others,
/// one continues with a NUL), the empty-prefix extremes, and paths.
const KEYS: [&[u8]; 8] = [b"a", b"a\0", b"ab", b"ab/c", b"abc", b"b", b"\0", b"\xff\xfe"];

/// The instant handles disconnect from: `disconnected_at` is this plus a
/// whole number of seconds, so that expiry instants coincide.
pub const DISCONNECTED_FROM: i64 = 1_764_000_060_000_000;

/// The timeouts handles get, in milliseconds (0: expired right after the
/// disconnect; 1000 and 2000 land on other handles' disconnect instants).
const TIMEOUTS_MS: [u64; 5] = [0, 1, 1000, 2000, 60_000];

/// Record key `n`: one of eight keys that share prefixes (`a`, `a\0`,
/// `ab`, `ab/c`, `abc`, `b`, `\0`, `\xff\xfe`), or a path `d<i>/f<j>`.
pub fn record_key(n: u64) -> Vec<u8> {
    match KEYS.get(n as usize % 12) {
        Some(key) => key.to_vec(),
        None => format!("d{}/f{}", n % 3, n / 12 % 4).into_bytes(),
    }
}

/// Record value `variant`: empty, a few bytes, or (one in eight) 700
/// bytes; never [`NEVER_HELD`].
pub fn record_value(variant: u64) -> Vec<u8> {
    match variant % 8 {
        0 => Vec::new(),
        7 => (0..700u32).map(|i| (i as u64 ^ variant) as u8).collect(),
        n => [&variant.to_le_bytes()[..n as usize], b"v"].concat(),
    }
}

/// A value no record holds: a swap that expects it fails.
pub const NEVER_HELD: &[u8] = b"never held";

/// A 16-byte key (file id, create GUID) numbered `n`.
pub fn key16(tag: u8, n: u64) -> [u8; 16] {
    let mut key = [tag; 16];
    key[8..].copy_from_slice(&n.to_le_bytes());
    key
}

/// The file id numbered `n`.
pub fn file_id(n: u64) -> [u8; 16] {
    key16(0xF1, n)
}

/// The create GUID numbered `n`.
pub fn create_guid(n: u64) -> [u8; 16] {
    key16(0xC6, n)
}

/// Durable handle `h<n>` with file id `file` and create GUID `guid`
/// (`None`: a v1 handle, reconnected by file id only), every other field
/// non-default ([`sample::handle`]) and varied by `variant`: share, file
/// handle, app instance, lease, delete-pending, and the disconnect time
/// and timeout, from small sets so that expiry instants coincide.
pub fn handle(n: u64, file: u64, guid: Option<u64>, variant: u64) -> DurableHandle {
    let mut h = sample::handle(n as u32);
    h.id = format!("h{n}");
    h.file_id = file_id(file);
    h.original_file_id = key16(0x0F, variant % 5);
    h.create_guid = guid.map(create_guid);
    h.version = if guid.is_some() { DurableVersion::V2 } else { DurableVersion::V1 };
    h.persistent = guid.is_some() && variant.is_multiple_of(2);
    h.share = format!("s{}", variant % 3);
    h.file_handle = format!("f{}", variant % 13).into_bytes();
    h.app_instance_id = (!variant.is_multiple_of(4)).then_some([0xA0 | (variant % 3) as u8; 16]);
    h.lease = (!variant.is_multiple_of(5)).then(|| HandleLease {
        key: key16(0x1E, variant % 7),
        state: LeaseState(1 + (variant % 7) as u32),
        epoch: (variant % 11) as u16 + 1,
    });
    if variant.is_multiple_of(3) {
        h.delete_pending = None;
    }
    h.desired_access ^= (variant as u32) << 8;
    h.position = variant;
    h.disconnected_at = Timestamp::from_unix_micros(DISCONNECTED_FROM + (variant % 6) as i64 * 1_000_000);
    h.timeout_ms = TIMEOUTS_MS[(variant / 6) as usize % TIMEOUTS_MS.len()];
    h
}

/// The instant `handle` expires from (validated handles have one).
pub fn expires_at(handle: &DurableHandle) -> i64 {
    handle.expires_at().map_or(i64::MAX, |t| t.unix_micros)
}
