//! Round trips, damage detection and the two-thread load of the snapshot
//! format as a whole: each test encodes a state and decodes it again, and
//! the helpers here serve the adversarial tests too.

use super::format::{TAG_STRING, block_crc, u32_at};
use super::parallel::block_starts;
use super::*;
use crate::op::Op;
use crate::state::Command;
use crate::state::State;
use crate::testing::sample;
use std::sync::Arc;

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
    ops.extend(sample::every_client("c1").into_iter().map(Op::PutClient));
    ops.extend((0..3).map(|n| Op::PutHandle(sample::handle(n))));
    for (space, n) in [("dirents", 5u8), ("inodes", 3)] {
        ops.extend((0..n).map(|i| Op::PutRecord {
            space: space.into(),
            key: vec![i, 0, 0xFF],
            value: vec![i; usize::from(i)],
        }));
    }
    for chunk in ops.chunks(1000) {
        state.apply(&Command::Txn(chunk.to_vec())).unwrap();
    }
    state
}

/// Asserts that `restored` holds what `state` holds: locks, clients,
/// handles (through every unique index), records, epoch and clean flag.
fn assert_same(restored: &State, state: &State) {
    restored.check_invariants();
    assert_eq!(restored.list(&crate::LockQuery::all()), state.list(&crate::LockQuery::all()));
    assert_eq!(restored.clients().collect::<Vec<_>>(), state.clients().collect::<Vec<_>>());
    assert_eq!(restored.handles().collect::<Vec<_>>(), state.handles().collect::<Vec<_>>());
    for handle in state.handles() {
        assert_eq!(restored.handle_by_file_id(&handle.file_id).as_ref(), Some(handle));
        if let Some(guid) = &handle.create_guid {
            assert_eq!(restored.handle_by_create_guid(guid).as_ref(), Some(handle));
        }
    }
    assert_eq!(restored.records().collect::<Vec<_>>(), state.records().collect::<Vec<_>>());
    assert_eq!((restored.epoch(), restored.clean()), (state.epoch(), state.clean()));
    // The test query answers alike: the files of many locks answer from
    // their range indexes, whose trees the first query builds (their exact
    // contents checked after).
    for lock in state.list(&crate::LockQuery::all()).iter().step_by(97) {
        let mut candidate = lock.clone();
        candidate.id = "candidate".into();
        candidate.owner_id = "another owner".into();
        assert_eq!(restored.test_lock(&candidate), state.test_lock(&candidate), "{candidate:?}");
    }
    restored.check_invariants();
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
    assert_eq!((header.lsn, header.epoch, header.locks), (77, 3, 30_000 + sample::every_kind().len() as u64));
    assert_eq!((header.handles, header.records, header.version), (3, 8, 3));
    assert!(header.blocks > 1, "the test must span blocks");
    assert_same(&loaded, &state);
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

/// The version-3 header is laid out as specified, and its first 64 bytes
/// are what a version-2 build checks (magic, checksum of 0..60): such a
/// build verifies them and refuses the file by its version, never as
/// damage.
#[test]
fn the_version_3_header_is_laid_out_as_an_older_build_expects() {
    let file = encode(&sample_state(2), 5);
    let h = decode_header(&file).unwrap();
    assert_eq!(SNAPSHOT_HEADER_LEN, 88);
    assert_eq!(&file[0..8], b"LWALSNP\0");
    assert_eq!(u32_at(&file, 8), 3);
    assert_eq!(u32_at(&file, 60), crc32fast::hash(&file[0..60]), "the check a version-2 build makes");
    let u64_at = |at: usize| u64::from_le_bytes(file[at..at + 8].try_into().unwrap());
    assert_eq!((u64_at(32), u64_at(40), u64_at(64), u64_at(72)), (h.locks, h.clients, h.handles, h.records));
    assert_eq!(u32_at(&file, 80), crc32fast::hash(&file[0..80]));
    assert_eq!(u32_at(&file, 84), 0);
    assert_eq!(u32_at(&file, 88 + 8), 0, "the first block (index 0) starts at byte 88");
    // A version-2 header is 64 bytes and its first block starts there.
    let v2 = SnapshotHeader { version: 2, handles: 0, records: 0, ..h };
    assert_eq!((v2.encode().len(), v2.header_len()), (64, 64));
    let mut newer = file.clone();
    newer[8..12].copy_from_slice(&4u32.to_le_bytes());
    let crc = crc32fast::hash(&newer[0..60]);
    newer[60..64].copy_from_slice(&crc.to_le_bytes());
    assert_eq!(decode_header(&newer).unwrap_err().version, Some(4));
}

/// A version-2 snapshot (64-byte header, no handle or record entries)
/// still loads, and one that holds a handle entry is damage: version 2
/// has no such tag.
#[test]
fn a_version_2_snapshot_loads_and_cannot_hold_handles() {
    let mut state = State::new();
    state.apply(&Command::Open { epoch: 2 }).unwrap();
    let ops: Vec<Op> = sample::every_kind().into_iter().map(Op::PutLock).collect();
    state.apply(&Command::Txn(ops)).unwrap();
    let as_v2 = |file: &[u8]| {
        let h = decode_header(file).unwrap();
        let mut v2 = SnapshotHeader { version: 2, handles: 0, records: 0, ..h }.encode();
        v2.extend_from_slice(&file[SNAPSHOT_HEADER_LEN..]);
        v2
    };
    let (_, loaded) = decode_snapshot(&as_v2(&encode(&state, 3))).unwrap();
    assert_same(&loaded, &state);
    state.apply(&Command::Txn(vec![Op::PutHandle(sample::handle(1))])).unwrap();
    let file = encode(&state, 4);
    let mut v2 = as_v2(&file);
    let mut header = decode_header(&v2).unwrap();
    header.handles = 0;
    v2[..64].copy_from_slice(&header.encode());
    let damage = decode_snapshot(&v2).map(|_| ()).unwrap_err();
    assert!(damage.reason.contains("unknown entry tag"), "{}", damage.reason);
}

/// A handle entry whose length is longer than its MessagePack value is
/// damage at the entry (review of issue 18: `from_slice` ignored the
/// bytes after the value).
#[test]
fn a_handle_entry_longer_than_its_value_is_damage() {
    let mut state = State::new();
    state.apply(&Command::Open { epoch: 1 }).unwrap();
    state.apply(&Command::Txn(vec![Op::PutHandle(sample::handle(1))])).unwrap();
    let file = encode(&state, 2);
    let packed = rmp_serde::to_vec(&sample::handle(1)).unwrap();
    let at = file.windows(packed.len()).position(|w| w == packed.as_slice()).expect("the handle's bytes");
    // The entry: tag at `at - 5`, length at `at - 4`. One byte more in
    // both the length and the block (a zero after the value).
    let mut bad = file[..at + packed.len()].to_vec();
    bad.push(0);
    bad.extend_from_slice(&file[at + packed.len()..]);
    bad[at - 4..at].copy_from_slice(&(packed.len() as u32 + 1).to_le_bytes());
    let block_at = SNAPSHOT_HEADER_LEN;
    let len = u32_at(&bad, block_at) + 1;
    bad[block_at..block_at + 4].copy_from_slice(&len.to_le_bytes());
    let padded = (block_at + BLOCK_HEADER_LEN + len as usize).next_multiple_of(8);
    bad.truncate(padded.max(block_at + BLOCK_HEADER_LEN + len as usize));
    bad.resize(padded, 0);
    fix_block_crc(&mut bad, block_at + BLOCK_HEADER_LEN);
    let damage = decode_snapshot(&bad).map(|_| ()).unwrap_err();
    assert_eq!(damage.offset, (at - 5) as u64, "{}", damage.reason);
    assert!(damage.reason.contains("1 bytes after the value"), "{}", damage.reason);
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
    decode_snapshot_with(bytes, threads, crate::state::Keys::Index, |_, _| {})
}

/// Decodes on two threads; also says whether that took the fast path,
/// in which every block is read (and released) exactly once.
pub(super) fn decode_two(bytes: &[u8]) -> (Result<(SnapshotHeader, State), SnapshotDamage>, bool) {
    let released = std::sync::Mutex::new(Vec::new());
    let decoded = decode_snapshot_with(bytes, Threads::Two, crate::state::Keys::Index, |start, end| {
        released.lock().unwrap().push((start, end))
    });
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
        assert_same(restored, &state);
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
            Op::PutLock(sample::byte_range(&format!("l{i}"), "s", &format!("f{}", i % 5), "o", &format!("c{}", i % 7)))
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

/// A restore gives each file of 64 locks or more its range index, its tree
/// unbuilt until the file's first test query: here files of 20,000 locks
/// mixing byte ranges (at offsets above 2^32, zero-byte, to end of file, so
/// that the sort is needed) with share reservations, leases and
/// delegations, of exactly 64 and 63 locks, and of whole-file locks only,
/// with free slots among them. Both loads restore what was encoded, build
/// no tree, answer the test query alike (`check_invariants` compares each
/// tree a query built with the file's locks), and keep a tree in step with
/// writes after it is built, and an unbuilt one unbuilt until asked for.
#[test]
fn a_restored_crowded_file_mixing_kinds_matches_its_source() {
    use crate::model::{ByteRange, LockKind, PersistedLock};
    let kinds = sample::every_kind();
    let (ranges, whole): (Vec<_>, Vec<_>) =
        kinds.iter().map(|l| l.kind.clone()).partition(|k| matches!(k, LockKind::ByteRange(_)));
    let lock = |id: String, file: &str, kind: LockKind| PersistedLock {
        id: id.into(),
        file_id: file.into(),
        kind,
        ..sample::byte_range("", "s", "", &format!("o{}", file.len()), "c")
    };
    let ranged = |i: usize| match &ranges[i % ranges.len()] {
        LockKind::ByteRange(r) if r.length != 0 && r.length < u64::MAX - (1 << 44) => {
            LockKind::ByteRange(ByteRange { offset: (i as u64).wrapping_mul(0x9E37_79B9) % (1 << 44), ..*r })
        }
        other => other.clone(),
    };
    let mut ops = Vec::new();
    for i in 0..20_000 {
        let kind = if i % 5 == 0 { whole[i % whole.len()].clone() } else { ranged(i) };
        ops.push(Op::PutLock(lock(format!("big-{i}"), "big", kind)));
    }
    ops.extend((0..64).map(|i| Op::PutLock(lock(format!("exact-{i}"), "exact", ranged(i)))));
    ops.extend((0..63).map(|i| Op::PutLock(lock(format!("below-{i}"), "below", ranged(i)))));
    ops.extend((0..100).map(|i| Op::PutLock(lock(format!("whole-{i}"), "whole", whole[i % whole.len()].clone()))));
    let mut state = State::new();
    state.apply(&Command::Open { epoch: 2 }).unwrap();
    for chunk in ops.chunks(1000) {
        state.apply(&Command::Txn(chunk.to_vec())).unwrap();
    }
    let deletes = (0..20_000).step_by(7).map(|i| Op::DeleteLock { id: format!("big-{i}") }).collect::<Vec<_>>();
    state.apply(&Command::Txn(deletes)).unwrap();
    state.check_invariants();
    // Small blocks: the load forks after the first lock's block, leaving
    // more than the 16,384 ids that `finish` indexes on a second thread.
    let file = encode_small(&state, 9);
    let (two, fast) = decode_two(&file);
    assert!(fast, "the two-thread load took its fast path");
    let big = state.range_indexed("big").expect("a crowded file has a range index");
    let mut writes: Vec<Op> =
        (0..20_000).step_by(7).map(|i| Op::PutLock(lock(format!("big-{i}"), "big", ranged(i)))).collect();
    writes.extend((0..50).map(|i| Op::DeleteLock { id: format!("whole-{i}") }));
    writes.extend((0..10).map(|i| Op::DeleteLock { id: format!("exact-{i}") }));
    writes.push(Op::PutLock(lock("below-63".into(), "below", ranged(63))));
    let mut written = state.clone();
    written.apply(&Command::Txn(writes.clone())).unwrap();
    for (_, mut restored) in [decode(&file, Threads::One).unwrap(), two.unwrap()] {
        for file in ["big", "exact", "whole"] {
            assert_eq!(restored.range_tree_built(file), Some(false), "{file}: an index, its tree unbuilt");
        }
        assert_eq!(restored.range_tree_built("below"), None, "63 locks restore without an index");
        // "exact" and "whole" built before the writes, "big" after them.
        assert_eq!(restored.range_indexed("exact"), Some(64));
        assert_eq!(restored.range_indexed("whole"), Some(100));
        restored.check_invariants();
        restored.apply(&Command::Txn(writes.clone())).unwrap();
        restored.check_invariants();
        assert_eq!(restored.range_tree_built("big"), Some(false), "writes leave an unbuilt tree alone");
        assert_eq!(restored.range_tree_built("below"), Some(false), "the 64th lock gives the file an index");
        assert_eq!((restored.range_indexed("exact"), restored.range_indexed("whole")), (Some(54), Some(50)));
        assert_eq!(restored.range_indexed("big"), Some(big + 20_000usize.div_ceil(7)));
        assert_eq!(restored.range_indexed("below"), Some(64));
        restored.check_invariants();
        assert_same(&restored, &written);
    }
}

fn decode_deferred(bytes: &[u8], threads: Threads) -> State {
    decode_snapshot_with(bytes, threads, crate::state::Keys::Defer, |_, _| {}).unwrap().1
}

/// Applies `cmd` to `indexed` and to `pending` (restored from one snapshot,
/// the second with its key indexes pending) and asserts the same outcome.
fn apply_both(indexed: &mut State, pending: &mut State, cmd: &Command) {
    let want = indexed.apply(cmd);
    assert_eq!(format!("{:?}", pending.apply(cmd)), format!("{want:?}"), "{cmd:?}");
}

/// Writes that need no key index, so a pending restore stays pending
/// through them: new locks with new keys and a text the table holds under
/// another index, a file growing past 64 locks and one shrinking below 16,
/// replaced and updated locks, reclaims after a new epoch, grace ended on
/// every share, and failing transactions rolled back half way.
fn writes_without_key_queries() -> Vec<Command> {
    let lock = |id: &str, file: &str, owner: &str| sample::byte_range(id, "s", file, owner, "c");
    let one = |op: Op| Command::Txn(vec![op]);
    let mut cmds = vec![Command::Open { epoch: 4 }];
    // Reclaim the even locks of the snapshot; grace removes the odd ones.
    cmds.extend((0..3000).step_by(2).map(|i| one(Op::Reclaim { id: format!("id-{i}"), client_id: "c".into() })));
    cmds.push(one(Op::Reclaim { id: "id-3".into(), client_id: "not the owner".into() }));
    cmds.push(one(Op::EndGrace { share: None }));
    let fresh = (0..70).map(|i| Op::PutLock(lock(&format!("grow-{i}"), "grows", &format!("new-owner-{}", i % 3))));
    cmds.extend(fresh.map(one));
    // "o" is an owner and "f1" a file in the table.
    cmds.push(one(Op::PutLock(lock("crossed", "o", "f1"))));
    cmds.extend((0..3000).filter(|i| i % 14 == 2).map(|i| one(Op::DeleteLock { id: format!("id-{i}") })));
    cmds.extend((0..60).map(|i| one(Op::DeleteLock { id: format!("small-{i}") })));
    cmds.push(one(Op::PutLock(lock("id-4", "f6", "replaced"))));
    cmds.push(one(Op::UpdateLock(lock("id-6", "f2", "updated"))));
    cmds.push(Command::Txn(vec![
        Op::PutLock(lock("rolled-back", "nowhere", "nobody")),
        Op::DeleteLock { id: "id-8".into() },
        Op::DeleteLock { id: "absent".into() },
    ]));
    cmds.push(Command::CleanShutdown);
    cmds
}

/// Recovery before a long log restores the snapshot with its key indexes
/// pending and builds them after replay (decision 0057). Replayed that way,
/// every command has the outcome it has on a fully indexed restore, and the
/// state ends the same: contents, indexes (`check_invariants` in
/// `assert_same`), range indexes and test queries. First with writes that
/// keep the keys pending to the end, then with random workloads whose bulk
/// deletes, grants and grace on one share build them part way.
#[test]
fn a_restore_with_its_keys_pending_replays_to_the_state_of_one_without() {
    let mut source = sample_state(3000);
    let smalls = (0..70).map(|i| Op::PutLock(sample::byte_range(&format!("small-{i}"), "s", "shrinks", "o", "c")));
    source.apply(&Command::Txn(smalls.collect())).unwrap();
    let file = encode_small(&source, 9);
    for threads in [Threads::One, Threads::Two] {
        let (_, mut indexed) = decode(&file, threads).unwrap();
        let mut pending = decode_deferred(&file, threads);
        assert!(pending.keys_pending(), "{threads:?}: the keys wait for the log");
        for cmd in writes_without_key_queries() {
            apply_both(&mut indexed, &mut pending, &cmd);
        }
        assert!(pending.keys_pending(), "{threads:?}: no write needed a key index");
        pending.index_pending_keys();
        assert!(!pending.keys_pending());
        assert_same(&pending, &indexed);
        assert_eq!(pending.range_indexed("grows"), Some(70), "a file past 64 locks gets its range index");
        assert_eq!(pending.range_indexed("shrinks"), None, "a file below 16 locks has none");
        assert_eq!(indexed.range_indexed("shrinks"), None);
        assert!(pending.list(&crate::LockQuery::all()).len() > 1000, "grace kept the reclaimed locks");
        for file in ["grows", "o", "f1", "f6", "shrinks", "nowhere"] {
            let query = crate::LockQuery::by_file(file);
            assert_eq!(pending.list(&query), indexed.list(&query), "locks of {file}");
        }
        for owner in ["f1", "new-owner-1", "replaced", "updated", "nobody"] {
            let query = crate::LockQuery { owner_id: Some(owner.into()), ..crate::LockQuery::all() };
            assert_eq!(pending.list(&query), indexed.list(&query), "locks of owner {owner}");
        }
    }
    // Each write that reads a key index builds the pending ones first.
    let mut conflicting = sample::byte_range("contender", "s", "f2", "another owner", "c");
    conflicting.kind = source.get("id-2").expect("id-2 is in f2").kind;
    let needs_keys = [
        Op::Grant(conflicting),
        Op::DeleteLocksByClient { client_id: "c".into() },
        Op::DeleteLocksByFile { file_id: "f1".into() },
        Op::EndGrace { share: Some("s".into()) },
    ];
    for op in needs_keys {
        let (_, mut indexed) = decode(&file, Threads::Two).unwrap();
        let mut pending = decode_deferred(&file, Threads::Two);
        apply_both(&mut indexed, &mut pending, &Command::Open { epoch: 4 });
        assert!(pending.keys_pending());
        apply_both(&mut indexed, &mut pending, &Command::Txn(vec![op.clone()]));
        assert!(!pending.keys_pending(), "{op:?} built the keys");
        assert_same(&pending, &indexed);
    }
    for seed in 0..6 {
        let (_, mut indexed) = decode(&file, Threads::Two).unwrap();
        let mut pending = decode_deferred(&file, Threads::Two);
        let mut epoch = 3;
        let mut built_part_way = false;
        for step in crate::testing::workload::generate(seed, 300, 0) {
            let cmd = match step {
                crate::testing::workload::Step::Txn(ops) => Command::Txn(ops),
                crate::testing::workload::Step::Open => {
                    epoch += 1;
                    Command::Open { epoch }
                }
                crate::testing::workload::Step::Close => Command::CleanShutdown,
                _ => continue,
            };
            let was_pending = pending.keys_pending();
            apply_both(&mut indexed, &mut pending, &cmd);
            built_part_way |= was_pending && !pending.keys_pending();
        }
        assert!(built_part_way, "seed {seed}: a write needing the keys built them");
        pending.index_pending_keys();
        assert_same(&pending, &indexed);
    }
}

/// A snapshot may hold one text in two string-table entries when they name
/// keys of different indexes (here a file and an owner). A lock replayed
/// with its keys pending could not say which entry is its key, so such a
/// restore indexes its keys at once, and ends as a restore that never
/// deferred.
#[test]
fn a_text_in_two_entries_makes_a_restore_index_its_keys_at_once() {
    let mut state = State::new();
    let ops = vec![
        Op::PutLock(sample::byte_range("a", "s", "f", "o", "c")),
        Op::PutLock(sample::byte_range("b", "s", "g", "q", "c")),
    ];
    state.apply(&Command::Txn(ops)).unwrap();
    let mut file = encode(&state, 1);
    let entry = file.windows(4).position(|w| w == [TAG_STRING, 1, 0, b'q']).expect("the entry of \"q\"");
    file[entry + 3] = b'f';
    fix_block_crc(&mut file, entry);
    let (_, indexed) = decode(&file, Threads::One).unwrap();
    let pending = decode_deferred(&file, Threads::One);
    assert!(!pending.keys_pending(), "the keys are indexed at once");
    assert_same(&pending, &indexed);
    let owner_f = crate::LockQuery { owner_id: Some("f".into()), ..crate::LockQuery::all() };
    assert_eq!(pending.list(&owner_f).len(), 1, "lock b's owner is now \"f\"");
}

/// With the keys pending, a transaction writes to crowded files (no range
/// tree upkeep), then a grant indexes the keys and builds the trees in the
/// middle of it, then it fails: the rollback runs on built trees holding
/// locks written while pending, and ends as a fully indexed restore does
/// (from a review of decision 0059).
#[test]
fn a_grant_that_builds_trees_while_keys_are_pending_rolls_back_cleanly() {
    use crate::model::{ByteRange, LockKind, LockType, RangeFlavor, ShareAccess, ShareDeny, ShareReservation};
    let source = sample_state(3000);
    let file = encode_small(&source, 9);
    let ranged = |o: u64| {
        LockKind::ByteRange(ByteRange {
            lock_type: LockType::Exclusive,
            offset: o,
            length: 3,
            zero_byte: false,
            flavor: RangeFlavor::Posix,
        })
    };
    let with = |id: &str, f: &str, owner: &str, kind: LockKind| {
        let mut l = sample::byte_range(id, "s", f, owner, "c");
        l.kind = kind;
        l
    };
    for threads in [Threads::One, Threads::Two] {
        let (_, mut indexed) = decode(&file, threads).unwrap();
        let mut pending = decode_deferred(&file, threads);
        let share = LockKind::Share(ShareReservation { access: ShareAccess::Read, deny: ShareDeny::None });
        let ops = vec![
            Op::PutLock(with("new-x", "f2", "o", ranged(1 << 40))),
            Op::PutLock(with("id-2", "f3", "o", share.clone())), // moves and retypes
            Op::PutLock(with("id-3", "f3", "o", ranged(7))),     // same file, new range
            Op::Grant(with("new-y", "f2", "o", ranged(1 << 41))),
            Op::Grant(with("new-z", "f3", "o", ranged(1 << 42))),
            Op::DeleteLock { id: "id-9".into() },
            Op::DeleteLock { id: "absent".into() },
        ];
        apply_both(&mut indexed, &mut pending, &Command::Txn(ops));
        assert!(!pending.keys_pending());
        assert_eq!(pending.range_tree_built("f2"), Some(true));
        assert_eq!(pending.range_tree_built("f3"), Some(true));
        pending.check_invariants();
        assert_same(&pending, &indexed);
        for f in ["f2", "f3"] {
            assert_eq!(pending.range_indexed(f), indexed.range_indexed(f));
        }
    }
}

/// A text that names a crowded file and an owner (two entries): the file's
/// unbuilt index holds the file entry's key, and its tree, built at the
/// first query, follows later writes (from a review of decision 0059).
#[test]
fn a_crowded_file_whose_text_is_also_an_owner_keeps_a_true_tree() {
    let mut state = State::new();
    let mut ops: Vec<Op> = (0..70)
        .map(|i| {
            let mut l = sample::byte_range(&format!("a{i}"), "s", "f", "o", "c");
            if let crate::model::LockKind::ByteRange(r) = &mut l.kind {
                r.offset = i * 1000;
            }
            Op::PutLock(l)
        })
        .collect();
    ops.push(Op::PutLock(sample::byte_range("b", "s", "g", "q", "c")));
    state.apply(&Command::Txn(ops)).unwrap();
    let mut file = encode(&state, 1);
    let entry = file.windows(4).position(|w| w == [TAG_STRING, 1, 0, b'q']).expect("the entry of \"q\"");
    file[entry + 3] = b'f';
    fix_block_crc(&mut file, entry);
    for mut restored in [decode(&file, Threads::One).unwrap().1, decode_deferred(&file, Threads::One)] {
        restored.index_pending_keys();
        assert_eq!(restored.range_tree_built("f"), Some(false));
        restored.check_invariants();
        let mut c = sample::byte_range("cand", "s", "f", "other", "c");
        if let crate::model::LockKind::ByteRange(r) = &mut c.kind {
            r.offset = 5000;
            r.length = 1;
        }
        assert_eq!(restored.test_lock(&c).holders.len(), 1);
        restored.check_invariants();
        restored
            .apply(&Command::Txn(vec![
                Op::DeleteLock { id: "a5".into() },
                Op::PutLock(sample::byte_range("b", "s", "f", "f", "c")),
            ]))
            .unwrap();
        restored.check_invariants();
        assert_eq!(restored.test_lock(&c).holders.len(), 0);
    }
}

/// Review of decision 0060: two-thread restores of many sizes (chunk edges,
/// free slots, block sizes) find every id through the sharded table, and
/// the table stays true while live writes grow and shrink its shards.
#[test]
fn forked_restores_of_many_sizes_find_every_id_and_grow_their_shards() {
    for n in [1usize, 2, 30, 255, 256, 257, 300, 511, 512, 700, 1023, 1500, 2049, 3000] {
        for every in [0usize, 3, 7] {
            let mut state = sample_state(n);
            if every > 0 {
                let ops: Vec<Op> = (0..n).step_by(every).map(|i| Op::DeleteLock { id: format!("id-{i}") }).collect();
                state.apply(&Command::Txn(ops)).unwrap();
            }
            for block in [512usize, 1024, SMALL_BLOCK] {
                let file = encode_in(&state, 9, block);
                let (decoded, once) = decode_two(&file);
                assert!(once, "{n} locks, blocks of {block}: decoded once, without falling back to one thread");
                let (_, mut two) = decoded.unwrap();
                assert_same(&two, &state);
                for lock in state.list(&crate::LockQuery::all()) {
                    assert_eq!(two.get(&lock.id).as_ref(), Some(&lock), "{n} locks, blocks of {block}");
                }
                let more =
                    (0..700).map(|i| Op::PutLock(sample::byte_range(&format!("new-{i}"), "s", "f-new", "o", "c")));
                two.apply(&Command::Txn(more.collect())).unwrap();
                two.check_invariants();
                let fewer = (0..700).step_by(2).map(|i| Op::DeleteLock { id: format!("new-{i}") });
                two.apply(&Command::Txn(fewer.collect())).unwrap();
                two.apply(&Command::Txn(vec![Op::DeleteLocksByFile { file_id: "f-new".into() }])).unwrap();
                two.check_invariants();
                assert_eq!(two.lock_count(), state.lock_count(), "{n} locks: back to the restored ones");
            }
        }
    }
}
