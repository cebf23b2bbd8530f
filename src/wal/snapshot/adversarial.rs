//! Adversarial tests of the two-thread snapshot load: crafted files on
//! which one and two threads must agree (written in review; the first two
//! found a crash, see `header_u64_max_locks_skewed_halves`).
use super::encode::{BlockWriter, encode_lock, put_str16};
use super::format::{TAG_CLIENT, TAG_STRING, block_crc, u32_at};
use super::parallel::block_starts;
use super::tests::{decode, decode_two};
use super::*;
use crate::model::Timestamp;
use crate::state::State;
use crate::testing::sample;

const SMALL: usize = 4096;

#[derive(Clone)]
enum E {
    Str(&'static str),
    /// id, refs on disk order [share, file, owner, client]
    Lock(String, [u32; 4]),
    Client(String),
    Flush,
}

struct Built {
    file: Vec<u8>,
    header: SnapshotHeader,
}

fn build(entries: &[E], max_block: usize) -> Built {
    let mut file = vec![0u8; SNAPSHOT_HEADER_LEN];
    let mut write_at = |at: u64, bytes: &[u8]| -> Result<(), ()> {
        let end = at as usize + bytes.len();
        if file.len() < end {
            file.resize(end, 0);
        }
        file[at as usize..end].copy_from_slice(bytes);
        Ok(())
    };
    let mut blocks = BlockWriter::new(max_block);
    let mut entry = Vec::new();
    let kind = sample::byte_range("x", "s", "f", "o", "c").kind;
    let (mut locks, mut clients, mut strings) = (0u64, 0u64, 0u64);
    for e in entries {
        match e {
            E::Str(t) => {
                entry.clear();
                entry.push(TAG_STRING);
                put_str16(&mut entry, t);
                strings += 1;
            }
            E::Lock(id, refs) => {
                encode_lock(&mut entry, id, *refs, Timestamp::from_unix_micros(1), 1, &kind);
                locks += 1;
            }
            E::Client(c) => {
                let encoded = rmp_serde::to_vec(&sample::client(c)).unwrap();
                entry.clear();
                entry.push(TAG_CLIENT);
                entry.extend_from_slice(&(encoded.len() as u32).to_le_bytes());
                entry.extend_from_slice(&encoded);
                clients += 1;
            }
            E::Flush => {
                blocks.flush(&mut write_at).unwrap();
                continue;
            }
        }
        blocks.add(&entry, &mut write_at).unwrap();
    }
    blocks.flush(&mut write_at).unwrap();
    let header = SnapshotHeader {
        lsn: 1,
        epoch: 1,
        clean: true,
        locks,
        clients,
        strings,
        handles: 0,
        records: 0,
        blocks: blocks.index,
        version: SNAPSHOT_VERSION,
    };
    write_at(0, &header.encode()).unwrap();
    Built { file, header }
}

fn set_header(file: &mut [u8], h: SnapshotHeader) {
    file[..SNAPSHOT_HEADER_LEN].copy_from_slice(&h.encode());
}

/// Asserts that one and two threads agree on `bytes`; the two-thread
/// result, and whether it took the fast path.
fn agree(bytes: &[u8]) -> (Result<(SnapshotHeader, State), SnapshotDamage>, bool) {
    crate::testing::fuzz::snapshot_threads_agree(bytes);
    decode_two(bytes)
}

/// Strings s,f,o,c, then `n` locks (ids l0..), flush after the first lock so
/// the pre-fork part is one block; blocks of SMALL bytes.
fn base(n: usize) -> Vec<E> {
    let mut v = vec![E::Str("s"), E::Str("f"), E::Str("o"), E::Str("c")];
    for i in 0..n {
        v.push(E::Lock(format!("l{i}"), [0, 1, 2, 3]));
        if i == 0 {
            v.push(E::Flush);
        }
    }
    v
}

/// Where each block starts.
fn block_offsets(file: &[u8]) -> Vec<usize> {
    let blocks = decode_header(file).unwrap().blocks;
    let mut starts = block_starts(file, 0..blocks, SNAPSHOT_HEADER_LEN).expect("blocks within the file");
    starts.pop();
    starts
}

fn block_count_after_first_lock(file: &[u8]) -> u32 {
    decode_header(file).unwrap().blocks - 1
}

#[test]
fn baseline_fast_path_agrees() {
    let b = build(&base(3000), SMALL);
    assert!(block_count_after_first_lock(&b.file) >= 4);
    let (two, fast) = agree(&b.file);
    assert!(two.is_ok() && fast);
}

/// Header claims u64::MAX locks, and the second half holds > 95% of the
/// bytes after the pre-fork block: estimate saturates to usize::MAX, then
/// `+ CHUNK_SLACK` overflows.
#[test]
fn header_u64_max_locks_skewed_halves() {
    let mut e = base(1);
    e.push(E::Lock("small".into(), [0, 1, 2, 3]));
    e.push(E::Flush); // first half: one tiny block
    for i in 0..130 {
        e.push(E::Lock(format!("big-{i}"), [0, 1, 2, 3]));
    }
    let mut b = build(&e, SMALL);
    assert_eq!(b.header.blocks, 4, "pre-fork, tiny, then 2 blocks");
    let mut h = b.header;
    h.locks = u64::MAX;
    set_header(&mut b.file, h);
    let one = decode(&b.file, Threads::One).map(|_| ()).expect_err("counts");
    assert_eq!(one.offset, 32);
    let two = decode(&b.file, Threads::Two).map(|_| ()).expect_err("counts");
    assert_eq!(two, one);
}

/// A client record in the first half and the same one in the second half.
#[test]
fn duplicate_client_across_halves() {
    let mut e = base(1);
    e.push(E::Client("dup".into()));
    for i in 0..200 {
        e.push(E::Lock(format!("a{i}"), [0, 1, 2, 3]));
    }
    e.push(E::Client("dup".into()));
    let b = build(&e, SMALL);
    assert!(block_count_after_first_lock(&b.file) >= 3);
    let (two, fast) = agree(&b.file);
    assert!(!fast, "must fall back");
    assert!(two.map(|_| ()).unwrap_err().reason.contains("duplicate client"));
}

/// A client record before the first lock (pre-fork, in state.clients) and
/// again in the second half.
#[test]
fn duplicate_client_prefork_and_second_half() {
    let mut e = vec![E::Str("s"), E::Str("f"), E::Str("o"), E::Str("c"), E::Client("dup".into())];
    for i in 0..200 {
        e.push(E::Lock(format!("a{i}"), [0, 1, 2, 3]));
        if i == 0 {
            e.push(E::Flush);
        }
    }
    e.push(E::Client("dup".into()));
    let b = build(&e, SMALL);
    let (two, fast) = agree(&b.file);
    assert!(!fast);
    assert!(two.is_err());
}

/// A lock in the second half names string 4 of a 4-entry table.
#[test]
fn unknown_string_in_second_half() {
    let mut e = base(200);
    e.push(E::Lock("bad".into(), [0, 1, 4, 3]));
    e.push(E::Lock("bad2".into(), [0, 1, u32::MAX, 3]));
    let b = build(&e, SMALL);
    let (two, fast) = agree(&b.file);
    assert!(!fast);
    assert!(two.map(|_| ()).unwrap_err().reason.contains("not yet defined"));
}

/// The NO_KEY marker itself as a string ref in the second half.
#[test]
fn ref_u32_max_in_first_half() {
    let mut e = base(1);
    e.push(E::Lock("bad".into(), [u32::MAX, u32::MAX, u32::MAX, u32::MAX]));
    for i in 0..200 {
        e.push(E::Lock(format!("a{i}"), [0, 1, 2, 3]));
    }
    let b = build(&e, SMALL);
    let (two, _) = agree(&b.file);
    assert!(two.is_err());
}

/// Header lock count off by exactly the number of padding slots (either way).
#[test]
fn header_locks_off_by_padding() {
    // Pre-fork 1 lock + first half: make the own part end off a chunk
    // boundary.
    let b = build(&base(3000), SMALL);
    let (two, fast) = agree(&b.file);
    assert!(fast);
    let (_, state) = two.unwrap();
    let padding = state.free_slot_count() as u64;
    assert!(padding > 0, "the test needs padding slots");
    for locks in [b.header.locks + padding, b.header.locks - padding, b.header.locks + 1, b.header.locks - 1] {
        let mut f = b.file.clone();
        let mut h = b.header;
        h.locks = locks;
        set_header(&mut f, h);
        let (two, _) = agree(&f);
        assert_eq!(two.map(|_| ()).unwrap_err().offset, 32);
    }
}

/// Wrong client / string counts in the header.
#[test]
fn header_other_counts_wrong() {
    let mut e = base(1500);
    e.push(E::Client("c1".into()));
    let b = build(&e, SMALL);
    for (dc, ds) in [(1i64, 0i64), (-1, 0), (0, 1), (0, -1)] {
        let mut f = b.file.clone();
        let mut h = b.header;
        h.clients = (h.clients as i64 + dc) as u64;
        h.strings = (h.strings as i64 + ds) as u64;
        set_header(&mut f, h);
        let (two, _) = agree(&f);
        assert!(two.is_err());
    }
}

/// Block headers lying about lengths, each block in turn, checksum fixed
/// where possible (not possible: crc covers length, so the crc is
/// recomputed over the length and the payload prefix).
#[test]
fn block_length_lies() {
    let b = build(&base(1200), SMALL);
    let starts = block_offsets(&b.file);
    for (i, &s) in starts.iter().enumerate() {
        for len in [0u32, 1, 8, 16, 4000, 5000, (MAX_BLOCK - BLOCK_HEADER_LEN) as u32, MAX_BLOCK as u32, u32::MAX] {
            let mut f = b.file.clone();
            f[s..s + 4].copy_from_slice(&len.to_le_bytes());
            // Recompute crc over whatever payload the lying length covers.
            let end = (s + BLOCK_HEADER_LEN + len as usize).min(f.len());
            let crc = block_crc(i as u32, len, &f[s + BLOCK_HEADER_LEN..end]);
            f[s + 4..s + 8].copy_from_slice(&crc.to_le_bytes());
            let _ = agree(&f);
        }
    }
}

/// Duplicate id: pre-fork lock repeated in the second half, first half
/// repeated in the second half, and twice within one half.
#[test]
fn duplicate_ids_everywhere() {
    for (a, b_) in [(0usize, 1190usize), (100, 1190), (100, 150), (1100, 1190), (0, 5)] {
        let mut e = base(1200);
        let i = 4 + a + usize::from(a > 0); // index into e (flush after l0)
        let j = 4 + b_ + 1;
        let E::Lock(id, _) = e[i].clone() else { panic!() };
        if let E::Lock(other, _) = &mut e[j] {
            *other = id.clone();
        }
        let b = build(&e, SMALL);
        let (two, _) = agree(&b.file);
        assert!(two.map(|_| ()).unwrap_err().reason.contains("duplicate lock id"), "{a} {b_}");
    }
}

/// The second half holds no locks, only client records: the own part is
/// padded with free slots that nothing follows.
#[test]
fn second_half_only_clients() {
    let mut e = base(30);
    e.push(E::Flush);
    for i in 0..120 {
        e.push(E::Client(format!("client-{i:0>200}")));
    }
    let b = build(&e, SMALL);
    assert!(block_count_after_first_lock(&b.file) >= 2);
    let (two, fast) = agree(&b.file);
    assert!(fast);
    let (_, mut state) = two.unwrap();
    state.check_invariants();
    assert_eq!(state.lock_count(), 30);
    // The state keeps working.
    use crate::op::Op;
    use crate::state::Command;
    let more: Vec<Op> =
        (0..600).map(|i| Op::PutLock(sample::byte_range(&format!("n{i}"), "s", "f", "o", "c"))).collect();
    state.apply(&Command::Txn(more)).unwrap();
    state.apply(&Command::Txn(vec![Op::DeleteLocksByFile { file_id: "f".into() }])).unwrap();
    state.check_invariants();
    assert_eq!(state.lock_count(), 0);
}

/// First half exactly a multiple of CHUNK locks (no padding) and many
/// other chunk alignments; each compared and then mutated.
#[test]
fn many_sizes_agree_and_keep_working() {
    use crate::op::Op;
    use crate::state::Command;
    for n in [2usize, 3, 50, 255, 256, 257, 511, 512, 513, 1023, 1024, 1025, 2000, 4097] {
        let b = build(&base(n), SMALL);
        let (two, _) = agree(&b.file);
        let (_, mut state) = two.unwrap();
        let ops: Vec<Op> = (0..n).step_by(3).map(|i| Op::DeleteLock { id: format!("l{i}") }).collect();
        state.apply(&Command::Txn(ops)).unwrap();
        let more: Vec<Op> =
            (0..300).map(|i| Op::PutLock(sample::byte_range(&format!("n{i}"), "s2", "f2", "o2", "c2"))).collect();
        state.apply(&Command::Txn(more)).unwrap();
        state.check_invariants();
        for i in 0..n {
            assert_eq!(state.get(&format!("l{i}")).is_some(), i % 3 != 0, "n={n} l{i}");
        }
    }
}

/// A lying last-block length (payload beyond the file) while the header
/// claims many locks: the second part's room is bounded by `end - split`,
/// where `end` comes from the unchecked length. Returns how many slots.
#[test]
fn lying_last_block_length_room() {
    let mut b = build(&base(3000), SMALL);
    let at = *block_offsets(&b.file).last().unwrap();
    b.file[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
    let mut h = b.header;
    h.locks = 1 << 40;
    set_header(&mut b.file, h);
    let one = decode(&b.file, Threads::One).map(|_| ()).unwrap_err();
    let two = decode(&b.file, Threads::Two).map(|_| ()).unwrap_err();
    assert_eq!(one, two);
}

/// Blocks of the second half swapped (indexes then wrong) and a block index
/// rewritten with a fixed crc.
#[test]
fn block_index_games() {
    let b = build(&base(1200), SMALL);
    let starts = block_offsets(&b.file);
    for (i, &s) in starts.iter().enumerate().skip(1) {
        let mut f = b.file.clone();
        let len = u32_at(&f, s);
        let idx = (i as u32) ^ 1;
        f[s + 8..s + 12].copy_from_slice(&idx.to_le_bytes());
        let crc = block_crc(idx, len, &f[s + BLOCK_HEADER_LEN..s + BLOCK_HEADER_LEN + len as usize]);
        f[s + 4..s + 8].copy_from_slice(&crc.to_le_bytes());
        let _ = agree(&f);
    }
}

/// A header claiming more blocks than there are, and fewer.
#[test]
fn header_block_count_wrong() {
    let b = build(&base(1200), SMALL);
    for blocks in [b.header.blocks + 1, b.header.blocks - 1, b.header.blocks * 2, u32::MAX, 2, 1, 0] {
        let mut f = b.file.clone();
        let mut h = b.header;
        h.blocks = blocks;
        set_header(&mut f, h);
        let _ = agree(&f);
    }
}

/// The format lets a string entry follow locks (it only has to come before
/// the locks that use it); such a file loads on one thread.
#[test]
fn a_string_after_the_first_lock_still_loads() {
    let mut e = base(3000);
    e.push(E::Str("late"));
    e.push(E::Lock("last".into(), [0, 4, 2, 3]));
    let b = build(&e, SMALL);
    assert!(b.header.blocks >= 10);
    let (decoded, fast) = agree(&b.file);
    assert!(!fast, "the fast path declines");
    let (_, state) = decoded.unwrap();
    assert_eq!(state.lock_count(), 3001);
    assert_eq!(state.list(&crate::LockQuery::by_file("late")).len(), 1);
}
