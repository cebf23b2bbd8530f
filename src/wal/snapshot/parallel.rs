//! The entry points of snapshot loading and the two-thread load: once the
//! string table is read, the blocks left are split in two halves decoded at
//! once into two parts of the restorer; on any damage the file is decoded
//! again on one thread, so errors are always those of the one-thread load.

use super::format::{BLOCK_HEADER_LEN, SnapshotDamage, SnapshotHeader, damage, decode_header, u32_at};
use super::load::{Entries, decode_block, decode_blocks, finish, new_restorer, restore_damage};
use crate::model::{ClientRecord, DurableHandle};
use crate::state::{Keys, LockEntry, Part, Restorer, State};
use std::sync::Arc;

/// Verifies every byte of a snapshot and loads it into a [`State`].
pub fn decode_snapshot(bytes: &[u8]) -> Result<(SnapshotHeader, State), SnapshotDamage> {
    decode_snapshot_with(bytes, Threads::available(), Keys::Index, |_, _| {})
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
/// `start` to `end` are read: they are not read again. With
/// [`Keys::Defer`] the state may come back with its key indexes pending
/// (see `State::index_pending_keys`).
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
    keys: Keys,
    done: impl Fn(usize, usize) + Sync,
) -> Result<(SnapshotHeader, State), SnapshotDamage> {
    let header = decode_header(bytes)?;
    let mut restorer = new_restorer(bytes, header, keys);
    let (mut index, mut at) = (0, header.header_len());
    if threads == Threads::Two {
        // In file order up to the block where locks start: the string table
        // is then complete.
        while index < header.blocks && restorer.locks() == 0 {
            let end = decode_block(bytes, header.version, index, at, &mut restorer)?;
            done(at, end);
            (index, at) = (index + 1, end);
        }
        if let Some(starts) = block_starts(bytes, index..header.blocks, at) {
            if let Some(state) = decode_halves(bytes, header, restorer, index, &starts, &done) {
                return Ok((header, state));
            }
            // Again on one thread, for the error at the first damaged entry.
            restorer = new_restorer(bytes, header, keys);
            (index, at) = (0, header.header_len());
        }
    }
    let at = decode_blocks(bytes, header.version, index..header.blocks, at, &mut restorer, &done)?;
    finish(bytes, header, at, restorer).map(|state| (header, state))
}

/// Where each of `blocks` starts (the first at `at`) and where the last
/// ends, from the block headers alone (each is checked again when it is
/// decoded); `None` when there are fewer than two, or a header or a block
/// runs past the end of the file.
pub(super) fn block_starts(bytes: &[u8], blocks: std::ops::Range<u32>, at: usize) -> Option<Vec<usize>> {
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
            decode_blocks(bytes, header.version, half..header.blocks, split, &mut sink, done)
        });
        let first = decode_blocks(bytes, header.version, first..half, at, &mut PartSink { strings, part: mine }, done);
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
    fn handle(&mut self, at: usize, handle: DurableHandle) -> Result<(), SnapshotDamage> {
        self.part.add_handle(at, handle);
        Ok(())
    }
    fn record(&mut self, _: usize, space: &str, key: &[u8], value: &[u8]) -> Result<(), SnapshotDamage> {
        self.part.add_record(space, key, value);
        Ok(())
    }
}
