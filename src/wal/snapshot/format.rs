//! The snapshot's layout: the format constants and entry tags, file names,
//! the 64-byte header, what damage is reported as, and the checksum every
//! block carries. Both the encoder and the loader build on it.

/// Magic bytes at the start of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"LWALSNP\0";
/// The snapshot format version this build writes (and the newest it reads).
pub const SNAPSHOT_VERSION: u32 = 3;
/// The oldest snapshot format version this build reads.
pub const OLDEST_SNAPSHOT_VERSION: u32 = 1;
/// Size of the snapshot header this build writes (version 3).
pub const SNAPSHOT_HEADER_LEN: usize = 88;
/// Size of the header of versions 1 and 2, and of the part of a version-3
/// header an older build checks (its checksum at 60 covers bytes 0..60).
pub const BASE_HEADER_LEN: usize = 64;
/// Size of a block header.
pub const BLOCK_HEADER_LEN: usize = 16;
/// Largest block payload.
pub const MAX_BLOCK: usize = 1 << 20;

pub(super) const TAG_STRING: u8 = 1;
pub(super) const TAG_LOCK: u8 = 2;
pub(super) const TAG_CLIENT: u8 = 3;
pub(super) const TAG_HANDLE: u8 = 4;
pub(super) const TAG_RECORD: u8 = 5;

/// File name of the snapshot as of `lsn`.
pub fn snapshot_name(lsn: u64) -> String {
    format!("snap-{lsn:020}.snap")
}

/// The LSN in a snapshot file name.
pub fn parse_snapshot_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("snap-")?.strip_suffix(".snap")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|n| *n <= crate::state::MAX_COUNTER)
}

/// What a snapshot header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotHeader {
    /// The state is as of this LSN.
    pub lsn: u64,
    /// Epoch of that state.
    pub epoch: u64,
    /// Clean-shutdown flag of that state.
    pub clean: bool,
    /// Number of locks.
    pub locks: u64,
    /// Number of client records.
    pub clients: u64,
    /// Number of string-table entries.
    pub strings: u64,
    /// Number of durable handles (0 before version 3).
    pub handles: u64,
    /// Number of records (0 before version 3).
    pub records: u64,
    /// Number of blocks.
    pub blocks: u32,
    /// The format version, which decides how entries decode.
    pub version: u32,
}

impl SnapshotHeader {
    /// Bytes of the header, where the first block starts: 64 before
    /// version 3, 88 from it.
    pub fn header_len(&self) -> usize {
        if self.version >= 3 { SNAPSHOT_HEADER_LEN } else { BASE_HEADER_LEN }
    }

    /// The header bytes in the layout of its version (only tests write a
    /// version before [`SNAPSHOT_VERSION`]).
    pub fn encode(&self) -> Vec<u8> {
        let mut b = vec![0u8; self.header_len()];
        b[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
        b[8..12].copy_from_slice(&self.version.to_le_bytes());
        b[12..16].copy_from_slice(&u32::from(self.clean).to_le_bytes());
        b[16..24].copy_from_slice(&self.lsn.to_le_bytes());
        b[24..32].copy_from_slice(&self.epoch.to_le_bytes());
        b[32..40].copy_from_slice(&self.locks.to_le_bytes());
        b[40..48].copy_from_slice(&self.clients.to_le_bytes());
        b[48..56].copy_from_slice(&self.strings.to_le_bytes());
        b[56..60].copy_from_slice(&self.blocks.to_le_bytes());
        let crc = crc32fast::hash(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        if self.version >= 3 {
            b[64..72].copy_from_slice(&self.handles.to_le_bytes());
            b[72..80].copy_from_slice(&self.records.to_le_bytes());
            let crc = crc32fast::hash(&b[0..80]);
            b[80..84].copy_from_slice(&crc.to_le_bytes());
        }
        b
    }
}

/// Why a snapshot does not load: the offset of the first bad byte and what
/// is wrong there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotDamage {
    /// Byte offset.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
    /// Set when the damage is an unknown format version.
    pub version: Option<u32>,
}

pub(super) fn damage(offset: usize, reason: impl Into<String>) -> SnapshotDamage {
    SnapshotDamage { offset: offset as u64, reason: reason.into(), version: None }
}

pub(super) fn block_crc(index: u32, len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(&len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

pub(super) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Decodes and checks a snapshot header.
pub fn decode_header(bytes: &[u8]) -> Result<SnapshotHeader, SnapshotDamage> {
    let b = bytes.get(..BASE_HEADER_LEN).ok_or_else(|| damage(0, "shorter than its header"))?;
    if b[0..8] != SNAPSHOT_MAGIC {
        return Err(damage(0, "bad magic"));
    }
    if crc32fast::hash(&b[0..60]) != u32_at(b, 60) {
        return Err(damage(0, "header checksum mismatch"));
    }
    let version = u32_at(b, 8);
    if !(OLDEST_SNAPSHOT_VERSION..=SNAPSHOT_VERSION).contains(&version) {
        return Err(SnapshotDamage { offset: 8, reason: format!("unknown version {version}"), version: Some(version) });
    }
    let (mut handles, mut records) = (0, 0);
    if version >= 3 {
        let b = bytes.get(..SNAPSHOT_HEADER_LEN).ok_or_else(|| damage(BASE_HEADER_LEN, "shorter than its header"))?;
        if crc32fast::hash(&b[0..80]) != u32_at(b, 80) {
            return Err(damage(64, "header checksum mismatch"));
        }
        if u32_at(b, 84) != 0 {
            return Err(damage(84, "reserved header bytes are not zero"));
        }
        (handles, records) = (u64_at(b, 64), u64_at(b, 72));
    }
    let flags = u32_at(b, 12);
    if flags > 1 {
        return Err(damage(12, format!("unknown flags {flags:#x}")));
    }
    let (lsn, epoch) = (u64_at(b, 16), u64_at(b, 24));
    if lsn > crate::state::MAX_COUNTER {
        return Err(damage(16, format!("LSN {lsn} is above {}", crate::state::MAX_COUNTER)));
    }
    if epoch > crate::state::MAX_COUNTER {
        return Err(damage(24, format!("epoch {epoch} is above {}", crate::state::MAX_COUNTER)));
    }
    Ok(SnapshotHeader {
        clean: flags == 1,
        lsn,
        epoch,
        locks: u64_at(b, 32),
        clients: u64_at(b, 40),
        strings: u64_at(b, 48),
        handles,
        records,
        blocks: u32_at(b, 56),
        version,
    })
}
