//! The snapshot file: the complete state as of an LSN, laid out for fast
//! loading. Pure encoding and decoding; the install sequence is in
//! `compact.rs`.
//!
//! ```text
//! snap-<lsn:020>.snap
//! header, 64 bytes
//! | 0  magic "LWALSNP\0"  | 8  version u32 | 12 flags u32 (bit 0: clean shutdown) |
//! | 16 LSN u64            | 24 epoch u64   | 32 locks u64 | 40 clients u64       |
//! | 48 strings u64        | 56 blocks u32  | 60 crc32 of bytes 0..60             |
//! blocks, each 8-aligned
//! | 0 payload length u32 (1..=MAX_BLOCK) | 4 crc32 over index, length, payload |
//! | 8 block index u32 (0, 1, 2, ...)     | 12 reserved, zero                   |
//! | 16 payload: whole entries, never split across blocks; zero padding to 8  |
//! entries
//! | 1 string: len u16, bytes (UTF-8)     -> the next string-table index      |
//! | 2 lock: id (len u16, bytes), share/file/owner/client string index u32 x4,|
//! |         acquired_at i64, server_epoch u64, kind (tag u8 + fields)         |
//! | 3 client: len u32, MessagePack ClientRecord                              |
//! ```
//! The file ends exactly after the last block. Shared strings (shares, file
//! ids, owners, clients) are written once, in the string table, and loaded
//! as one `Arc<str>` that every lock using them shares.

use crate::model::{
    ByteRange, ClientRecord, Delegation, DelegationType, Lease, LeaseBreak, LeaseState, LockKind, LockType,
    ShareAccess, ShareDeny, ShareReservation, Timestamp,
};
use crate::state::{FinishError, LockEntry, Part, RestoreError, Restorer, State, StateView};
use std::collections::HashMap;
use std::sync::Arc;

/// Magic bytes at the start of every snapshot.
pub const SNAPSHOT_MAGIC: [u8; 8] = *b"LWALSNP\0";
/// The snapshot format version this build reads and writes.
pub const SNAPSHOT_VERSION: u32 = 1;
/// Size of the snapshot header.
pub const SNAPSHOT_HEADER_LEN: usize = 64;
/// Size of a block header.
pub const BLOCK_HEADER_LEN: usize = 16;
/// Largest block payload.
pub const MAX_BLOCK: usize = 1 << 20;

const TAG_STRING: u8 = 1;
const TAG_LOCK: u8 = 2;
const TAG_CLIENT: u8 = 3;

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
    digits.parse().ok()
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
    /// Number of blocks.
    pub blocks: u32,
}

impl SnapshotHeader {
    /// The 64 header bytes.
    pub fn encode(&self) -> [u8; SNAPSHOT_HEADER_LEN] {
        let mut b = [0u8; SNAPSHOT_HEADER_LEN];
        b[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
        b[8..12].copy_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&u32::from(self.clean).to_le_bytes());
        b[16..24].copy_from_slice(&self.lsn.to_le_bytes());
        b[24..32].copy_from_slice(&self.epoch.to_le_bytes());
        b[32..40].copy_from_slice(&self.locks.to_le_bytes());
        b[40..48].copy_from_slice(&self.clients.to_le_bytes());
        b[48..56].copy_from_slice(&self.strings.to_le_bytes());
        b[56..60].copy_from_slice(&self.blocks.to_le_bytes());
        let crc = crc32fast::hash(&b[0..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
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

fn damage(offset: usize, reason: impl Into<String>) -> SnapshotDamage {
    SnapshotDamage { offset: offset as u64, reason: reason.into(), version: None }
}

// ---- encoding -----------------------------------------------------------------

fn put_str16(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).expect("ids are at most 1 KiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn lease_bits(s: LeaseState) -> u8 {
    u8::from(s.read) | u8::from(s.write) << 1 | u8::from(s.handle) << 2
}

fn encode_kind(out: &mut Vec<u8>, kind: &LockKind) {
    match kind {
        LockKind::ByteRange(r) => {
            out.push(1);
            out.push(match r.lock_type {
                LockType::Shared => 0,
                LockType::Exclusive => 1,
            });
            out.extend_from_slice(&r.offset.to_le_bytes());
            out.extend_from_slice(&r.length.to_le_bytes());
            out.push(u8::from(r.zero_byte));
        }
        LockKind::Share(s) => {
            out.push(2);
            out.push(s.access as u8);
            out.push(s.deny as u8);
        }
        LockKind::Lease(l) => {
            out.push(3);
            out.extend_from_slice(&l.key);
            out.push(lease_bits(l.state));
            out.extend_from_slice(&l.epoch.to_le_bytes());
            out.push(u8::from(l.is_directory) | u8::from(l.is_traditional_oplock) << 1);
            match l.parent_key {
                Some(k) => {
                    out.push(1);
                    out.extend_from_slice(&k);
                }
                None => out.push(0),
            }
            match l.breaking {
                Some(b) => {
                    out.push(1);
                    out.push(lease_bits(b.to));
                    out.push(lease_bits(b.required));
                    out.extend_from_slice(&b.started_at.unix_micros.to_le_bytes());
                }
                None => out.push(0),
            }
        }
        LockKind::Delegation(d) => {
            out.push(4);
            out.extend_from_slice(&d.delegation_id.to_le_bytes());
            out.push(match d.delegation_type {
                DelegationType::Read => 0,
                DelegationType::Write => 1,
            });
            out.push(u8::from(d.breaking) | u8::from(d.recalled) << 1 | u8::from(d.revoked) << 2);
            out.extend_from_slice(&d.notification_mask.to_le_bytes());
        }
    }
}

/// Streams a snapshot of `view` as of `lsn` to `write_at(offset, bytes)`:
/// blocks in order as they fill, the header (at offset 0) last. Returns the
/// header and the file's total length. Memory: one block buffer and the
/// string-table map.
pub(crate) fn encode_snapshot<E>(
    view: &StateView,
    lsn: u64,
    write_at: impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<(SnapshotHeader, u64), E> {
    encode_snapshot_in(view, lsn, MAX_BLOCK, write_at)
}

/// [`encode_snapshot`] in blocks of at most `max_block` bytes, or one
/// entry when that is larger (tests use small blocks to span many with few
/// locks).
pub(crate) fn encode_snapshot_in<E>(
    view: &StateView,
    lsn: u64,
    max_block: usize,
    mut write_at: impl FnMut(u64, &[u8]) -> Result<(), E>,
) -> Result<(SnapshotHeader, u64), E> {
    let mut blocks = BlockWriter::new(max_block);
    // The string table, keyed by the address of the shared string: every
    // lock with the same owner holds the same `Arc`, and the view keeps
    // every `Arc` alive (so no address is reused) while this runs. It is
    // written whole before the first lock, so that a loader can split the
    // locks between threads.
    let mut strings: HashMap<*const u8, u32> = HashMap::new();
    let mut entry = Vec::with_capacity(4096);
    // Each lock's client, as its string-table entry, for the grouping below.
    let mut client_of = Vec::with_capacity(view.locks);
    for slot in view.slots() {
        for s in [&slot.share, &slot.file, &slot.owner, &slot.client] {
            let next = u32::try_from(strings.len()).expect("fewer than 2^32 strings");
            if let std::collections::hash_map::Entry::Vacant(v) = strings.entry(s.as_ptr()) {
                v.insert(next);
                entry.clear();
                entry.push(TAG_STRING);
                put_str16(&mut entry, s);
                blocks.add(&entry, &mut write_at)?;
            }
        }
        client_of.push(strings[&slot.client.as_ptr()]);
    }
    // The locks grouped by client (in slot order within a client; a
    // counting sort on the client's entry): a restored store then holds
    // each client's locks side by side in its slab, so listing or
    // reclaiming one client's locks, what every client does in the grace
    // period after a restart, reads contiguous memory.
    let mut next = vec![0usize; strings.len() + 1];
    for &client in &client_of {
        next[client as usize + 1] += 1;
    }
    for i in 1..next.len() {
        next[i] += next[i - 1];
    }
    let mut by_client = vec![None; client_of.len()];
    for (slot, &client) in view.slots().zip(&client_of) {
        let at = &mut next[client as usize];
        by_client[*at] = Some(slot);
        *at += 1;
    }
    drop(client_of);
    for slot in by_client.into_iter().flatten() {
        let refs = [&slot.share, &slot.file, &slot.owner, &slot.client].map(|s| strings[&s.as_ptr()]);
        encode_lock(&mut entry, &slot.id, refs, slot.acquired_at, slot.epoch, &slot.kind.to_kind());
        blocks.add(&entry, &mut write_at)?;
    }
    for client in &view.clients {
        let encoded = rmp_serde::to_vec(client).expect("encoding into a Vec cannot fail");
        entry.clear();
        entry.push(TAG_CLIENT);
        entry.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
        entry.extend_from_slice(&encoded);
        blocks.add(&entry, &mut write_at)?;
    }
    blocks.flush(&mut write_at)?;
    let header = SnapshotHeader {
        lsn,
        epoch: view.epoch,
        clean: view.clean,
        locks: view.locks as u64,
        clients: view.clients.len() as u64,
        strings: strings.len() as u64,
        blocks: blocks.index,
    };
    write_at(0, &header.encode())?;
    Ok((header, blocks.offset))
}

/// [`encode_snapshot_in`] into memory: the header and the whole file.
pub(crate) fn encode_snapshot_to_vec(view: &StateView, lsn: u64, max_block: usize) -> (SnapshotHeader, Vec<u8>) {
    let mut file = Vec::new();
    let written = encode_snapshot_in::<std::convert::Infallible>(view, lsn, max_block, |at, bytes| {
        let end = at as usize + bytes.len();
        if file.len() < end {
            file.resize(end, 0);
        }
        file[at as usize..end].copy_from_slice(bytes);
        Ok(())
    });
    let Ok((header, len)) = written;
    assert_eq!(len, file.len() as u64, "the length returned is the file's");
    (header, file)
}

/// Encodes a lock entry into `entry`; `refs` are the string-table entries
/// of its share, file, owner and client.
fn encode_lock(entry: &mut Vec<u8>, id: &str, refs: [u32; 4], acquired_at: Timestamp, epoch: u64, kind: &LockKind) {
    entry.clear();
    entry.push(TAG_LOCK);
    put_str16(entry, id);
    for r in refs {
        entry.extend_from_slice(&r.to_le_bytes());
    }
    entry.extend_from_slice(&acquired_at.unix_micros.to_le_bytes());
    entry.extend_from_slice(&epoch.to_le_bytes());
    encode_kind(entry, kind);
}

/// Fills blocks with whole entries and hands each full one to the sink.
struct BlockWriter {
    block: Vec<u8>,
    max: usize,
    index: u32,
    offset: u64,
}

impl BlockWriter {
    fn new(max: usize) -> Self {
        assert!(max <= MAX_BLOCK);
        BlockWriter { block: Vec::with_capacity(max), max, index: 0, offset: SNAPSHOT_HEADER_LEN as u64 }
    }

    fn add<E>(&mut self, entry: &[u8], write_at: &mut impl FnMut(u64, &[u8]) -> Result<(), E>) -> Result<(), E> {
        debug_assert!(entry.len() <= MAX_BLOCK - BLOCK_HEADER_LEN, "an entry always fits a block");
        // An entry larger than a (test-sized) block gets a block of its own.
        if !self.block.is_empty() && self.block.len() + entry.len() > self.max {
            self.flush(write_at)?;
        }
        if self.block.is_empty() {
            self.block.extend_from_slice(&[0u8; BLOCK_HEADER_LEN]);
        }
        self.block.extend_from_slice(entry);
        Ok(())
    }

    fn flush<E>(&mut self, write_at: &mut impl FnMut(u64, &[u8]) -> Result<(), E>) -> Result<(), E> {
        if self.block.is_empty() {
            return Ok(());
        }
        let len = (self.block.len() - BLOCK_HEADER_LEN) as u32;
        let crc = block_crc(self.index, len, &self.block[BLOCK_HEADER_LEN..]);
        self.block[0..4].copy_from_slice(&len.to_le_bytes());
        self.block[4..8].copy_from_slice(&crc.to_le_bytes());
        self.block[8..12].copy_from_slice(&self.index.to_le_bytes());
        self.block.resize(self.block.len().next_multiple_of(8), 0);
        write_at(self.offset, &self.block)?;
        self.offset += self.block.len() as u64;
        self.index += 1;
        self.block.clear();
        Ok(())
    }
}

fn block_crc(index: u32, len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(&len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

// ---- decoding -----------------------------------------------------------------

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Decodes and checks a snapshot header.
pub fn decode_header(bytes: &[u8]) -> Result<SnapshotHeader, SnapshotDamage> {
    let b = bytes.get(..SNAPSHOT_HEADER_LEN).ok_or_else(|| damage(0, "shorter than its header"))?;
    if b[0..8] != SNAPSHOT_MAGIC {
        return Err(damage(0, "bad magic"));
    }
    if crc32fast::hash(&b[0..60]) != u32_at(b, 60) {
        return Err(damage(0, "header checksum mismatch"));
    }
    let version = u32_at(b, 8);
    if version != SNAPSHOT_VERSION {
        return Err(SnapshotDamage { offset: 8, reason: format!("unknown version {version}"), version: Some(version) });
    }
    let flags = u32_at(b, 12);
    if flags > 1 {
        return Err(damage(12, format!("unknown flags {flags:#x}")));
    }
    Ok(SnapshotHeader {
        clean: flags == 1,
        lsn: u64_at(b, 16),
        epoch: u64_at(b, 24),
        locks: u64_at(b, 32),
        clients: u64_at(b, 40),
        strings: u64_at(b, 48),
        blocks: u32_at(b, 56),
    })
}

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

fn lease_state(bits: u8, c: &Cursor<'_>) -> Result<LeaseState, SnapshotDamage> {
    if bits > 7 {
        return Err(c.bad("lease state bits out of range"));
    }
    Ok(LeaseState { read: bits & 1 != 0, write: bits & 2 != 0, handle: bits & 4 != 0 })
}

fn decode_kind(c: &mut Cursor<'_>) -> Result<LockKind, SnapshotDamage> {
    Ok(match c.u8()? {
        1 => {
            let lock_type = match c.u8()? {
                0 => LockType::Shared,
                1 => LockType::Exclusive,
                _ => return Err(c.bad("bad lock type")),
            };
            LockKind::ByteRange(ByteRange { lock_type, offset: c.u64()?, length: c.u64()?, zero_byte: c.flag()? })
        }
        2 => {
            let access = match c.u8()? {
                0 => ShareAccess::Read,
                1 => ShareAccess::Write,
                2 => ShareAccess::ReadWrite,
                _ => return Err(c.bad("bad share access")),
            };
            let deny = match c.u8()? {
                0 => ShareDeny::None,
                1 => ShareDeny::Read,
                2 => ShareDeny::Write,
                3 => ShareDeny::All,
                _ => return Err(c.bad("bad share deny")),
            };
            LockKind::Share(ShareReservation { access, deny })
        }
        3 => {
            let key = c.key()?;
            let state = lease_state(c.u8()?, c)?;
            let epoch = c.u16()?;
            let flags = c.u8()?;
            if flags > 3 {
                return Err(c.bad("bad lease flags"));
            }
            let parent_key = if c.flag()? { Some(c.key()?) } else { None };
            let breaking = if c.flag()? {
                let to = lease_state(c.u8()?, c)?;
                let required = lease_state(c.u8()?, c)?;
                Some(LeaseBreak { to, required, started_at: Timestamp::from_unix_micros(c.u64()? as i64) })
            } else {
                None
            };
            LockKind::Lease(Lease {
                key,
                state,
                epoch,
                parent_key,
                is_directory: flags & 1 != 0,
                is_traditional_oplock: flags & 2 != 0,
                breaking,
            })
        }
        4 => {
            let delegation_id = c.u64()?;
            let delegation_type = match c.u8()? {
                0 => DelegationType::Read,
                1 => DelegationType::Write,
                _ => return Err(c.bad("bad delegation type")),
            };
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
                notification_mask: c.u32()?,
            })
        }
        _ => return Err(c.bad("unknown lock kind")),
    })
}

/// Verifies every byte of a snapshot and loads it into a [`State`].
pub fn decode_snapshot(bytes: &[u8]) -> Result<(SnapshotHeader, State), SnapshotDamage> {
    decode_snapshot_with(bytes, Threads::available(), |_, _| {})
}

/// How many threads a snapshot may be decoded on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Threads {
    /// One: every entry in file order on the calling thread.
    One,
    /// Two when the locks span two blocks or more after the string table.
    Two,
}

impl Threads {
    /// Two when the machine has more than one CPU.
    pub(crate) fn available() -> Self {
        if std::thread::available_parallelism().is_ok_and(|n| n.get() > 1) { Threads::Two } else { Threads::One }
    }
}

/// [`decode_snapshot`], calling `done(start, end)` once the bytes from
/// `start` to `end` are read: they are not read again.
///
/// The string table comes first in a snapshot this build writes; once it is
/// read, the blocks left are split in two halves decoded at once, one on a
/// second thread (see `Restorer::fork`). The fast path only ever succeeds:
/// on any damage (and on a file whose string table is not all before its
/// locks, which the format allows) the snapshot is decoded again on one
/// thread, so an error is always the one of the first damaged entry.
pub(crate) fn decode_snapshot_with(
    bytes: &[u8],
    threads: Threads,
    done: impl Fn(usize, usize) + Sync,
) -> Result<(SnapshotHeader, State), SnapshotDamage> {
    let header = decode_header(bytes)?;
    let mut restorer = new_restorer(bytes, header);
    let (mut index, mut at) = (0, SNAPSHOT_HEADER_LEN);
    if threads == Threads::Two {
        // In file order up to the block where locks start: the string table
        // is then complete.
        while index < header.blocks && restorer.locks() == 0 {
            let end = decode_block(bytes, index, at, &mut restorer)?;
            done(at, end);
            (index, at) = (index + 1, end);
        }
        if let Some(starts) = block_starts(bytes, index..header.blocks, at) {
            if let Some(state) = decode_halves(bytes, header, restorer, index, &starts, &done) {
                return Ok((header, state));
            }
            // Again on one thread, for the error at the first damaged entry.
            restorer = new_restorer(bytes, header);
            (index, at) = (0, SNAPSHOT_HEADER_LEN);
        }
    }
    let at = decode_blocks(bytes, index..header.blocks, at, &mut restorer, &done)?;
    finish(bytes, header, at, restorer).map(|state| (header, state))
}

fn new_restorer(bytes: &[u8], header: SnapshotHeader) -> Restorer {
    let capacity = usize::try_from(header.locks).unwrap_or(usize::MAX).min(bytes.len() / 32);
    State::restorer(header.epoch, header.clean, capacity)
}

/// The checks after the last block (which ended at `at`), then the state.
fn finish(bytes: &[u8], header: SnapshotHeader, at: usize, restorer: Restorer) -> Result<State, SnapshotDamage> {
    if at != bytes.len() {
        return Err(damage(at, format!("{} bytes after the last block", bytes.len().saturating_sub(at))));
    }
    let counts = (restorer.locks() as u64, restorer.clients() as u64, restorer.strings() as u64);
    if counts != (header.locks, header.clients, header.strings) {
        return Err(damage(32, "entry counts differ from the header"));
    }
    restorer.finish().map_err(|e| match e {
        FinishError::RepeatedString { text, at } => {
            damage(at, format!("string {text:?} repeats an earlier entry that names a key of the same index"))
        }
        // Only a forked restore finds these here, and it is never reported.
        FinishError::DuplicateId | FinishError::DuplicateClient => damage(32, "duplicate ids"),
    })
}

/// Where each of `blocks` starts (the first at `at`) and where the last
/// ends, from the block headers alone (each is checked again when it is
/// decoded); `None` when there are fewer than two, or a header or a block
/// runs past the end of the file.
fn block_starts(bytes: &[u8], blocks: std::ops::Range<u32>, at: usize) -> Option<Vec<usize>> {
    if blocks.len() < 2 {
        return None;
    }
    let mut starts = vec![at];
    for _ in blocks {
        let start = *starts.last().expect("one start");
        let len = u32_at(bytes.get(start..start + BLOCK_HEADER_LEN)?, 0) as usize;
        let end = start + BLOCK_HEADER_LEN + len;
        if end > bytes.len() {
            return None;
        }
        starts.push(end.next_multiple_of(8));
    }
    Some(starts)
}

/// The fast path of [`decode_snapshot_with`]: blocks `first..` (starting at
/// `starts`) decoded in two halves at once into `restorer`, whose string
/// table is complete. `None` when anything fails.
fn decode_halves(
    bytes: &[u8],
    header: SnapshotHeader,
    mut restorer: Restorer,
    first: u32,
    starts: &[usize],
    done: &(impl Fn(usize, usize) + Sync),
) -> Option<State> {
    let blocks = starts.len() - 1;
    let (half, split) = (first + (blocks / 2) as u32, starts[blocks / 2]);
    let (at, end) = (starts[0], starts[blocks]);
    // Room for the second half's share of the locks, by bytes (and never
    // more than its bytes could hold, whatever the header says).
    let share = (end - split) as f64 / (end - at).max(1) as f64;
    let estimate = ((header.locks as f64 * share * 1.05) as usize).saturating_add(CHUNK_SLACK);
    let mut other = restorer.fork(estimate.min(bytes.len().saturating_sub(split) / 32));
    let (strings, mine) = restorer.parts();
    let (first, second) = std::thread::scope(|scope| {
        let second = scope.spawn(|| {
            let mut sink = PartSink { strings, part: &mut other };
            decode_blocks(bytes, half..header.blocks, split, &mut sink, done)
        });
        let first = decode_blocks(bytes, first..half, at, &mut PartSink { strings, part: mine }, done);
        (first, second.join())
    });
    if first.ok()? != split {
        return None;
    }
    let at = second.ok()?.ok()?;
    restorer.join(other);
    finish(bytes, header, at, restorer).ok()
}

/// Spare room for a part's slots, over its estimated share.
const CHUNK_SLACK: usize = 1024;

/// Decodes blocks `blocks`, the first at `at`; returns where they end.
fn decode_blocks(
    bytes: &[u8],
    blocks: std::ops::Range<u32>,
    mut at: usize,
    sink: &mut impl Entries,
    done: &impl Fn(usize, usize),
) -> Result<usize, SnapshotDamage> {
    for index in blocks {
        let end = decode_block(bytes, index, at, sink)?;
        done(at, end);
        at = end;
    }
    Ok(at)
}

/// Where decoded entries go.
trait Entries {
    fn string(&mut self, text: &str, at: usize) -> Result<(), SnapshotDamage>;
    fn lock(&mut self, at: usize, lock: LockEntry<'_>) -> Result<(), SnapshotDamage>;
    fn client(&mut self, at: usize, record: ClientRecord) -> Result<(), SnapshotDamage>;
}

fn restore_damage(at: usize, e: RestoreError) -> SnapshotDamage {
    damage(
        at,
        match e {
            RestoreError::UnknownString(r) => format!("lock refers to string {r}, not yet defined"),
            RestoreError::DuplicateId(id) => format!("duplicate lock id {id:?}"),
            RestoreError::DuplicateClient(id) => format!("duplicate client {id:?}"),
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
}

/// One half of a forked restore: the string table is complete.
struct PartSink<'a> {
    strings: &'a [Arc<str>],
    part: &'a mut Part,
}

impl Entries for PartSink<'_> {
    fn string(&mut self, _: &str, at: usize) -> Result<(), SnapshotDamage> {
        Err(damage(at, "a string entry after the first lock: decoded on one thread"))
    }
    fn lock(&mut self, at: usize, l: LockEntry<'_>) -> Result<(), SnapshotDamage> {
        self.part.add_lock(self.strings, l).map_err(|e| restore_damage(at, e))
    }
    fn client(&mut self, _: usize, record: ClientRecord) -> Result<(), SnapshotDamage> {
        self.part.add_client(record);
        Ok(())
    }
}

/// Checks block `index` at offset `at` and hands its entries to `sink`;
/// returns where the next block starts.
fn decode_block(bytes: &[u8], index: u32, at: usize, sink: &mut impl Entries) -> Result<usize, SnapshotDamage> {
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
                let kind = decode_kind(&mut c)?;
                sink.lock(entry_at, LockEntry { id, refs: [file, owner, client, share], acquired_at, epoch, kind })?;
            }
            TAG_CLIENT => {
                let len = c.u32()? as usize;
                let record: ClientRecord = rmp_serde::from_slice(c.take(len)?)
                    .map_err(|e| damage(entry_at, format!("client record does not decode: {e}")))?;
                sink.client(entry_at, record)?;
            }
            _ => return Err(c.bad("unknown entry tag")),
        }
    }
    Ok(padded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::Op;
    use crate::state::Command;
    use crate::testing::sample;

    #[test]
    fn block_starts_refuses_a_block_past_the_end_of_the_file() {
        let file = encode_small(&sample_state(3000), 4);
        let header = decode_header(&file).unwrap();
        assert!(block_starts(&file, 0..header.blocks, SNAPSHOT_HEADER_LEN).is_some());
        let mut lying = file.clone();
        let last = *block_starts(&file, 0..header.blocks - 1, SNAPSHOT_HEADER_LEN).unwrap().last().unwrap();
        lying[last..last + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(block_starts(&lying, 0..header.blocks, SNAPSHOT_HEADER_LEN), None);
    }

    fn sample_state(n: usize) -> State {
        let mut state = State::new();
        state.apply(&Command::Open { epoch: 3 }).unwrap();
        let mut ops: Vec<Op> = sample::every_kind().into_iter().map(Op::PutLock).collect();
        for i in 0..n {
            ops.push(Op::PutLock(sample::byte_range(&format!("id-{i}"), "s", &format!("f{}", i % 7), "o", "c")));
        }
        ops.push(Op::PutClient(sample::client("c1")));
        for chunk in ops.chunks(1000) {
            state.apply(&Command::Txn(chunk.to_vec())).unwrap();
        }
        state
    }

    fn encode(state: &State, lsn: u64) -> Vec<u8> {
        encode_in(state, lsn, MAX_BLOCK)
    }

    fn encode_in(state: &State, lsn: u64, max_block: usize) -> Vec<u8> {
        encode_snapshot_to_vec(&state.view(), lsn, max_block).1
    }

    #[test]
    fn round_trips_every_kind_and_many_blocks() {
        let state = sample_state(30_000);
        let file = encode(&state, 77);
        let (header, loaded) = decode_snapshot(&file).unwrap();
        assert_eq!((header.lsn, header.epoch, header.locks), (77, 3, 30_005));
        assert!(header.blocks > 1, "the test must span blocks");
        loaded.check_invariants();
        assert_eq!(loaded.list(&crate::LockQuery::all()), state.list(&crate::LockQuery::all()));
        assert_eq!(loaded.clients().collect::<Vec<_>>(), state.clients().collect::<Vec<_>>());
        assert_eq!((loaded.epoch(), loaded.clean()), (3, false));
    }

    #[test]
    fn every_flipped_bit_and_every_truncation_is_detected() {
        let file = encode(&sample_state(3), 5);
        for bit in 0..file.len() * 8 {
            let mut b = file.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_snapshot(&b).is_err(), "bit {bit} flipped undetected");
        }
        for cut in 0..file.len() {
            assert!(decode_snapshot(&file[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = file.clone();
        longer.extend_from_slice(&[0; 8]);
        assert!(decode_snapshot(&longer).is_err());
    }

    #[test]
    fn snapshot_names_round_trip() {
        assert_eq!(parse_snapshot_name(&snapshot_name(42)), Some(42));
        assert_eq!(parse_snapshot_name("snap-42.snap"), None);
        assert_eq!(parse_snapshot_name("snap-00000000000000000042.snap.tmp"), None);
    }

    /// Regression (found in review): two string-table entries with the same
    /// text, both naming files, used to install the second one's locks
    /// over the first's in the file index (release builds): a restored
    /// store listed one of three locks on the file, and deleting another
    /// then panicked in the writer. Now it is damage at the second entry.
    #[test]
    fn a_repeated_string_naming_one_index_twice_is_damage() {
        let mut state = State::new();
        let ops = ["a", "b", "c"]
            .iter()
            .zip(["f", "g", "f"])
            .map(|(id, file)| Op::PutLock(sample::byte_range(id, "s", file, "o", "c")))
            .collect();
        state.apply(&Command::Txn(ops)).unwrap();
        let mut file = encode(&state, 1);
        let entry = file.windows(4).position(|w| w == [TAG_STRING, 1, 0, b'g']).expect("the entry of \"g\"");
        file[entry + 3] = b'f';
        let at = SNAPSHOT_HEADER_LEN;
        let len = u32_at(&file, at);
        let crc = block_crc(0, len, &file[at + BLOCK_HEADER_LEN..at + BLOCK_HEADER_LEN + len as usize]);
        file[at + 4..at + 8].copy_from_slice(&crc.to_le_bytes());
        let damage = decode_snapshot(&file).expect_err("a repeated key string is refused");
        assert_eq!(damage.offset, entry as u64, "{}", damage.reason);
        assert!(damage.reason.contains("repeats"), "{}", damage.reason);
    }

    /// A block size that makes a few thousand locks span dozens of blocks.
    const SMALL_BLOCK: usize = 4096;

    fn encode_small(state: &State, lsn: u64) -> Vec<u8> {
        encode_in(state, lsn, SMALL_BLOCK)
    }

    pub(super) fn decode(bytes: &[u8], threads: Threads) -> Result<(SnapshotHeader, State), SnapshotDamage> {
        decode_snapshot_with(bytes, threads, |_, _| {})
    }

    /// Decodes on two threads; also says whether that took the fast path,
    /// in which every block is read (and released) exactly once.
    pub(super) fn decode_two(bytes: &[u8]) -> (Result<(SnapshotHeader, State), SnapshotDamage>, bool) {
        let released = std::sync::Mutex::new(Vec::new());
        let decoded =
            decode_snapshot_with(bytes, Threads::Two, |start, end| released.lock().unwrap().push((start, end)));
        let mut released = released.into_inner().unwrap();
        released.sort();
        let once = released.windows(2).all(|w| w[0].1 == w[1].0);
        (decoded, once)
    }

    /// Recomputes the checksum of the block holding offset `at`.
    fn fix_block_crc(file: &mut [u8], at: usize) {
        let (mut start, mut index) = (SNAPSHOT_HEADER_LEN, 0u32);
        loop {
            let len = u32_at(file, start) as usize;
            let end = start + BLOCK_HEADER_LEN + len;
            if at < end {
                let crc = block_crc(index, len as u32, &file[start + BLOCK_HEADER_LEN..end]);
                file[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
                return;
            }
            (start, index) = (end.next_multiple_of(8), index + 1);
        }
    }

    #[test]
    fn two_threads_restore_the_same_state_as_one() {
        let mut state = sample_state(3000);
        // Free slots in the source too.
        state.apply(&Command::Txn((0..300).map(|i| Op::DeleteLock { id: format!("id-{}", i * 7) }).collect())).unwrap();
        let file = encode_small(&state, 9);
        let header = decode_header(&file).unwrap();
        assert!(header.blocks >= 10, "the locks must span blocks");
        let (two, fast) = decode_two(&file);
        let (_, two) = two.unwrap();
        assert!(fast, "a snapshot this build writes takes the fast path");
        let (_, one) = decode(&file, Threads::One).unwrap();
        for restored in [&two, &one] {
            restored.check_invariants();
            assert_eq!(restored.list(&crate::LockQuery::all()), state.list(&crate::LockQuery::all()));
            assert_eq!(restored.clients().collect::<Vec<_>>(), state.clients().collect::<Vec<_>>());
            assert_eq!((restored.epoch(), restored.clean()), (state.epoch(), state.clean()));
            assert_eq!(
                restored.list(&crate::LockQuery::by_file("f3")).len(),
                state.list(&crate::LockQuery::by_file("f3")).len()
            );
        }
        // The restored state keeps working: the free slots a join leaves
        // are reused.
        let mut two = two;
        let more: Vec<Op> =
            (0..600).map(|i| Op::PutLock(sample::byte_range(&format!("new-{i}"), "s", "f1", "o", "c"))).collect();
        two.apply(&Command::Txn(more)).unwrap();
        two.apply(&Command::Txn(vec![Op::DeleteLocksByFile { file_id: "f1".into() }])).unwrap();
        two.check_invariants();
    }

    /// Damage anywhere in a snapshot loaded on two threads is reported
    /// exactly as on one: the first damaged entry, by offset.
    #[test]
    fn damage_is_reported_the_same_on_two_threads() {
        let file = encode_small(&sample_state(3000), 4);
        assert!(decode_header(&file).unwrap().blocks >= 10);
        for n in 0..48 {
            let at = SNAPSHOT_HEADER_LEN + (file.len() - SNAPSHOT_HEADER_LEN) * n / 48 + n % 5;
            let mut bad = file.clone();
            bad[at] ^= 0x41;
            let one = decode(&bad, Threads::One).map(|_| ()).expect_err("a flipped byte is damage");
            assert_eq!(decode(&bad, Threads::Two).map(|_| ()), Err(one), "byte {at}");
        }
    }

    #[test]
    fn a_duplicate_id_across_the_halves_is_damage_at_the_second() {
        let mut file = encode_small(&sample_state(3000), 4);
        let find = |file: &[u8], id: &[u8]| file.windows(id.len()).position(|w| w == id).expect("the id");
        let second = find(&file, b"id-2999");
        file[second..second + 7].copy_from_slice(b"id-1000");
        fix_block_crc(&mut file, second);
        assert!(!decode_two(&file).1, "the fast path finds the duplicate and declines");
        for threads in [Threads::One, Threads::Two] {
            let damage = decode(&file, threads).map(|_| ()).expect_err("a duplicate id is damage");
            // The entry starts with its tag and the id's length.
            assert_eq!(damage.offset, (second - 3) as u64, "{}", damage.reason);
            assert!(damage.reason.contains("duplicate lock id"), "{}", damage.reason);
        }
    }

    /// A snapshot lists each client's locks together, so a restored slab
    /// holds them side by side.
    #[test]
    fn a_restored_slab_holds_each_clients_locks_together() {
        let mut state = State::new();
        state.apply(&Command::Open { epoch: 1 }).unwrap();
        let ops = (0..700)
            .map(|i| {
                Op::PutLock(sample::byte_range(
                    &format!("l{i}"),
                    "s",
                    &format!("f{}", i % 5),
                    "o",
                    &format!("c{}", i % 7),
                ))
            })
            .collect();
        state.apply(&Command::Txn(ops)).unwrap();
        let interleaved: Vec<Arc<str>> = state.locks().map(|l| l.client_id).collect();
        assert!(interleaved.windows(2).filter(|w| w[0] != w[1]).count() > 7, "the live slab interleaves clients");
        for threads in [Threads::One, Threads::Two] {
            let (_, restored) = decode(&encode_small(&state, 2), threads).unwrap();
            let clients: Vec<Arc<str>> = restored.locks().map(|l| l.client_id).collect();
            assert_eq!(clients.len(), 700);
            assert_eq!(clients.windows(2).filter(|w| w[0] != w[1]).count(), 6, "one run per client: {clients:?}");
            assert_eq!(restored.list(&crate::LockQuery::all()), state.list(&crate::LockQuery::all()));
        }
    }

    /// Regression (found in review of the two-thread load): the second
    /// half's room was sized from the header's lock count alone, so a header
    /// claiming 2^62 locks (checksum intact) overflowed instead of being
    /// refused as damage.
    #[test]
    fn a_header_claiming_too_many_locks_is_damage_on_two_threads() {
        let mut file = encode_small(&sample_state(3000), 4);
        let mut header = decode_header(&file).unwrap();
        header.locks = 1 << 62;
        file[..SNAPSHOT_HEADER_LEN].copy_from_slice(&header.encode());
        for threads in [Threads::One, Threads::Two] {
            let damage = decode(&file, threads).map(|_| ()).expect_err("counts differ from the header");
            assert_eq!(damage.offset, 32, "{}", damage.reason);
        }
    }
}

/// Adversarial tests of the two-thread load (written in review).
#[cfg(test)]
#[path = "snapshot_adversarial.rs"]
mod adversarial;
