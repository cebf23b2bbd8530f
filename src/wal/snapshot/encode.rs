//! Writing a snapshot: a state view streamed as the string table, then the
//! locks grouped by client, then the client records, durable handles and
//! records, in checksummed blocks
//! of whole entries, with the header written last.

use super::format::{
    BLOCK_HEADER_LEN, MAX_BLOCK, SNAPSHOT_HEADER_LEN, SNAPSHOT_VERSION, SnapshotHeader, TAG_CLIENT, TAG_HANDLE,
    TAG_LOCK, TAG_RECORD, TAG_STRING, block_crc,
};
use crate::model::{DelegationType, LockKind, LockType, RangeFlavor, Timestamp};
use crate::state::StateView;
use std::collections::HashMap;

pub(super) fn put_str16(out: &mut Vec<u8>, s: &str) {
    put_bytes16(out, s.as_bytes());
}

fn put_bytes16(out: &mut Vec<u8>, b: &[u8]) {
    let len = u16::try_from(b.len()).expect("ids are at most 1 KiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(b);
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
            match r.flavor {
                RangeFlavor::Posix => out.push(0),
                RangeFlavor::Smb { share_deny } => out.extend_from_slice(&[1, share_deny as u8]),
            }
        }
        LockKind::Share(s) => {
            out.push(2);
            out.push(s.access as u8);
            out.push(s.deny as u8);
        }
        LockKind::Lease(l) => {
            out.push(3);
            out.extend_from_slice(&l.key);
            out.extend_from_slice(&l.state.0.to_le_bytes());
            out.extend_from_slice(&l.epoch.to_le_bytes());
            out.push(u8::from(l.is_directory) | u8::from(l.is_traditional_oplock) << 1 | u8::from(l.breaking) << 2);
            match l.parent_key {
                Some(k) => {
                    out.push(1);
                    out.extend_from_slice(&k);
                }
                None => out.push(0),
            }
            out.extend_from_slice(&l.break_to.0.to_le_bytes());
            out.extend_from_slice(&l.break_required.0.to_le_bytes());
            match l.break_started_at {
                Some(t) => {
                    out.push(1);
                    out.extend_from_slice(&t.unix_micros.to_le_bytes());
                }
                None => out.push(0),
            }
        }
        LockKind::Delegation(d) => {
            out.push(4);
            put_bytes16(out, &d.delegation_id);
            out.push(match d.delegation_type {
                DelegationType::Read => 0,
                DelegationType::Write => 1,
            });
            out.push(
                u8::from(d.breaking)
                    | u8::from(d.recalled) << 1
                    | u8::from(d.revoked) << 2
                    | u8::from(d.is_directory) << 3,
            );
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
        encode_packed(&mut entry, TAG_CLIENT, client);
        blocks.add(&entry, &mut write_at)?;
    }
    for handle in &view.handles {
        encode_packed(&mut entry, TAG_HANDLE, handle);
        blocks.add(&entry, &mut write_at)?;
    }
    for (space, key, value) in view.records() {
        entry.clear();
        entry.push(TAG_RECORD);
        put_str16(&mut entry, space);
        put_bytes16(&mut entry, key);
        entry.extend_from_slice(&u32::try_from(value.len()).expect("values are at most 64 KiB").to_le_bytes());
        entry.extend_from_slice(value);
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
        handles: view.handles.len() as u64,
        records: view.record_count() as u64,
        blocks: blocks.index,
        version: SNAPSHOT_VERSION,
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

/// Encodes an entry of `tag` whose body is MessagePack: length u32, bytes.
fn encode_packed(entry: &mut Vec<u8>, tag: u8, value: &impl serde::Serialize) {
    entry.clear();
    entry.push(tag);
    entry.extend_from_slice(&[0; 4]);
    rmp_serde::encode::write(entry, value).expect("encoding into a Vec cannot fail");
    let len = u32::try_from(entry.len() - 5).expect("a record is far below 4 GiB");
    entry[1..5].copy_from_slice(&len.to_le_bytes());
}

/// Encodes a lock entry into `entry`; `refs` are the string-table entries
/// of its share, file, owner and client.
pub(super) fn encode_lock(
    entry: &mut Vec<u8>,
    id: &str,
    refs: [u32; 4],
    acquired_at: Timestamp,
    epoch: u64,
    kind: &LockKind,
) {
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
pub(super) struct BlockWriter {
    block: Vec<u8>,
    max: usize,
    pub(super) index: u32,
    offset: u64,
}

impl BlockWriter {
    pub(super) fn new(max: usize) -> Self {
        assert!(max <= MAX_BLOCK);
        BlockWriter { block: Vec::with_capacity(max), max, index: 0, offset: SNAPSHOT_HEADER_LEN as u64 }
    }

    pub(super) fn add<E>(
        &mut self,
        entry: &[u8],
        write_at: &mut impl FnMut(u64, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
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

    pub(super) fn flush<E>(&mut self, write_at: &mut impl FnMut(u64, &[u8]) -> Result<(), E>) -> Result<(), E> {
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
