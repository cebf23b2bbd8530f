//! The record shape and a deterministic data set.
//!
//! Issue 7's shape: a 36-character id (UUID text form), a share name of
//! about 8 characters out of 4, a 32-hex-character file id out of 10,000, an
//! owner of about 40 characters out of 5,000, a client of about 16
//! characters out of 1,000 (each owner belongs to one client), and a
//! byte-range lock. Lock `n` of the data set is a pure function of `n`, so
//! every store gets exactly the same records and a child process can rebuild
//! the key lists without reading anything.
//!
//! W6's SMB durable handles ([`handle`]) are pure functions of their number
//! too, each with its own file id and create GUID.

use lockwal::model::{
    ByteRange, DeletePending, DurableHandle, DurableVersion, HandleLease, LeaseState, LockKind, LockType,
    PersistedLock, RangeFlavor, Timestamp,
};

/// How many distinct keys of each kind the data set draws from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Shares (exports).
    pub shares: u32,
    /// Files.
    pub files: u32,
    /// Lock owners.
    pub owners: u32,
    /// Clients (each owner belongs to one).
    pub clients: u32,
}

impl Default for Shape {
    fn default() -> Self {
        Self { shares: 4, files: 10_000, owners: 5_000, clients: 1_000 }
    }
}

/// The key strings of a [`Shape`], built once and cloned into each lock.
pub struct Dataset {
    shape: Shape,
    shares: Vec<String>,
    files: Vec<String>,
    owners: Vec<String>,
    clients: Vec<String>,
}

/// SplitMix64: a tiny, good enough mixer for picking keys.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A small deterministic generator (SplitMix64 stream).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }
}

impl Dataset {
    /// The key tables of `shape`.
    pub fn new(shape: Shape) -> Self {
        let clients: Vec<String> = (0..shape.clients).map(|c| format!("host{c:04}.lab.net")).collect();
        let owners = (0..shape.owners)
            .map(|o| {
                let client = &clients[(o % shape.clients) as usize];
                format!("nlm:{client}:{o:06}:{:012x}", mix(u64::from(o)) & 0xFFFF_FFFF_FFFF)
            })
            .collect();
        Self {
            shape,
            shares: (0..shape.shares).map(|s| format!("export{s:02}")).collect(),
            files: (0..shape.files)
                .map(|f| format!("{:016x}{:016x}", mix(u64::from(f) | 1 << 40), mix(u64::from(f) | 2 << 40)))
                .collect(),
            owners,
            clients,
        }
    }

    /// The shape this data set was built from.
    pub fn shape(&self) -> Shape {
        self.shape
    }

    /// Every client id.
    pub fn clients(&self) -> &[String] {
        &self.clients
    }

    /// Every file id.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// The 36-character id of lock `n`.
    pub fn lock_id(n: u64) -> String {
        let (a, b) = (mix(n), mix(n ^ 0x5555_5555_5555_5555));
        format!(
            "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xFFFF,
            a & 0xFFFF,
            b >> 48,
            b & 0xFFFF_FFFF_FFFF
        )
    }

    /// Lock `n`: a pure function of `n`.
    pub fn lock(&self, n: u64) -> PersistedLock {
        let mut rng = Rng::new(n.wrapping_mul(0xA24B_AED4_963E_E407));
        let file = rng.below(self.shape.files);
        let owner = rng.below(self.shape.owners);
        let client = owner % self.shape.clients;
        let share = file % self.shape.shares;
        PersistedLock {
            id: Self::lock_id(n).into(),
            share: self.shares[share as usize].as_str().into(),
            file_id: self.files[file as usize].as_str().into(),
            owner_id: self.owners[owner as usize].as_str().into(),
            client_id: self.clients[client as usize].as_str().into(),
            kind: LockKind::ByteRange(ByteRange {
                lock_type: if rng.next_u64() & 1 == 0 { LockType::Shared } else { LockType::Exclusive },
                offset: u64::from(rng.below(1 << 20)) * 4096,
                length: 4096,
                zero_byte: false,
                flavor: RangeFlavor::Posix,
            }),
            acquired_at: Timestamp::from_unix_micros(1_764_000_000_000_000 + n as i64),
            server_epoch: 0,
        }
    }

    /// Locks `range` of the data set.
    pub fn locks(&self, range: std::ops::Range<u64>) -> Vec<PersistedLock> {
        range.map(|n| self.lock(n)).collect()
    }
}

/// 16 bytes: `n` little-endian, then 8 bytes mixed from `n` and `tag`.
/// Distinct `n` give distinct keys (the first half is `n` itself).
fn key16(n: u64, tag: u64) -> [u8; 16] {
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&n.to_le_bytes());
    k[8..].copy_from_slice(&mix(n ^ tag.rotate_left(48)).to_le_bytes());
    k
}

/// The create GUID of durable handle `n` (what [`handle`] gives it).
pub fn create_guid(n: u64) -> lockwal::model::Guid {
    key16(n, 4)
}

/// Durable handle `n`, a pure function of `n`: an SMB 3.x (v2) open, so
/// reconnectable by create GUID, with its own `FileId` and create GUID
/// (both start with `n`); on one of 4 shares, a path in one of 1,000
/// directories, a 16-byte file handle out of 10,000, a user out of 500 and
/// a client GUID out of 1,000. Three in four hold a lease, one in four has
/// an app instance id (of 16), one in eight is persistent, one in sixteen
/// is delete-on-close, one in ten is a directory.
pub fn handle(n: u64) -> DurableHandle {
    let h = mix(n ^ 0x6A09_E667_F3BC_C908);
    let file = h % 10_000;
    let dir = (h >> 16) % 1_000;
    let file_id = key16(n, 1);
    let name = format!("file-{n:08}.docx");
    DurableHandle {
        id: format!("smb-open-{n:012}"),
        file_id,
        original_file_id: file_id,
        path: format!("projects/dir{dir:04}/{name}"),
        share: format!("export{:02}", file % 4),
        file_handle: key16(file, 2).to_vec(),
        desired_access: 0x0012_019F,
        granted_access: 0x0012_0089 | ((h >> 8) as u32 & 0x2),
        share_access: 0x7,
        create_options: 0x0000_0040,
        oplock_level: if n % 4 == 3 { 0x08 } else { 0xFF },
        lease: (n % 4 != 3).then(|| HandleLease { key: key16(n, 3), state: LeaseState(0x7), epoch: (h % 16) as u16 }),
        create_guid: Some(create_guid(n)),
        app_instance_id: n.is_multiple_of(4).then(|| key16((h >> 32) % 16, 5)),
        persistent: n.is_multiple_of(8),
        version: DurableVersion::V2,
        user: format!("LAB\\user{:03}", (h >> 40) % 500),
        session_key_hash: [(h & 0xFF) as u8; 32],
        client_guid: key16((h >> 24) % 1_000, 6),
        created_at: Timestamp::from_unix_micros(1_764_000_000_000_000 + n as i64),
        disconnected_at: Timestamp::from_unix_micros(1_764_000_060_000_000 + n as i64),
        timeout_ms: 60_000 + (h % 120) * 1_000,
        server_start_time: Timestamp::from_unix_micros(1_763_990_000_000_000),
        delete_pending: (n % 16 == 5).then(|| DeletePending { parent_handle: key16(dir, 7).to_vec(), file_name: name }),
        is_directory: n % 10 == 9,
        position: (h >> 4) % (1 << 30),
        allocation_size: ((h >> 12) % 4096) * 4096,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_valid_varied_and_unique_by_file_id_and_create_guid() {
        let handles: Vec<DurableHandle> = (0..20_000).map(handle).collect();
        for h in &handles {
            lockwal::model::validate::handle(h).unwrap();
        }
        let unique = |key: &dyn Fn(&DurableHandle) -> Vec<u8>| {
            handles.iter().map(key).collect::<std::collections::HashSet<_>>().len()
        };
        assert_eq!(unique(&|h| h.id.clone().into_bytes()), handles.len());
        assert_eq!(unique(&|h| h.file_id.to_vec()), handles.len());
        assert_eq!(unique(&|h| h.create_guid.unwrap().to_vec()), handles.len());
        assert_eq!(unique(&|h| h.share.clone().into_bytes()), 4);
        assert!(unique(&|h| h.file_handle.clone()) > 8_000, "20,000 draws out of 10,000 file handles");
        assert_eq!(handles.iter().filter(|h| h.lease.is_some()).count(), 15_000);
        assert_eq!(handle(77), handle(77), "deterministic");
    }

    #[test]
    fn records_have_the_issue_shape() {
        let data = Dataset::new(Shape::default());
        for n in 0..1000 {
            let lock = data.lock(n);
            assert_eq!(lock.id.len(), 36);
            assert_eq!(lock.share.len(), 8);
            assert_eq!(lock.file_id.len(), 32);
            assert!(lock.file_id.bytes().all(|b| b.is_ascii_hexdigit()));
            assert_eq!(lock.owner_id.len(), 40, "{}", lock.owner_id);
            assert_eq!(lock.client_id.len(), 16);
            assert!(lock.owner_id.contains(&*lock.client_id), "an owner belongs to its client");
            assert_eq!(lock, data.lock(n), "deterministic");
        }
        let ids: std::collections::HashSet<_> = (0..10_000).map(Dataset::lock_id).collect();
        assert_eq!(ids.len(), 10_000);
    }

    #[test]
    fn keys_spread_over_the_whole_range() {
        let data = Dataset::new(Shape::default());
        let files: std::collections::HashSet<_> = (0..200_000).map(|n| data.lock(n).file_id).collect();
        let clients: std::collections::HashSet<_> = (0..200_000).map(|n| data.lock(n).client_id).collect();
        assert_eq!(files.len(), 10_000);
        assert_eq!(clients.len(), 1_000);
    }
}
