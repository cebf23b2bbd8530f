//! The bodies of the fuzz targets in `fuzz/`, here in the library so that a
//! plain `cargo test` also runs them over the checked-in seed corpus
//! (`fuzz/corpus/<target>/`). A finding is a panic.
//!
//! - [`replay_bytes`]: arbitrary bytes as a segment (of format 4, or 3)
//!   or a snapshot, raw or wrapped in valid headers and checksums so that
//!   the fuzzer reaches the record and entry decoders (durable-handle and
//!   record entries too); also a valid store (holding handles and records)
//!   with bytes flipped. Opening never panics and returns a state or a
//!   typed error; a state that opens, opens again the same.
//! - [`ops_crash`]: an operation sequence, a fault at some call, and a loss
//!   pattern, on the power-loss simulator; the recovered store is checked
//!   against the model as in `tests/crash_enumeration.rs` (one input in
//!   four also crashes that recovery, at every eighth call).
//! - [`record_roundtrip`]: commands through frames and snapshots and back
//!   (locks, clients, durable handles, records), and the format-3 rule.

use crate::error::Error;
use crate::io::sim::{Fault, SimFs};
use crate::io::{FileSystem, OpenMode};
use crate::model::LockQuery;
use crate::state::{Command, State};
use crate::testing::crash::{
    SelectLosses, check_image, crash_options, losses, observe_wal, prepare_dir, run, store_dir,
};
use crate::testing::workload::{Step, decode_steps, generate};
use crate::wal::format::{
    FORMAT_VERSION, SegmentHeader, append_frame, decode_commands, decode_frame, encode_commands, segment_name,
};
use crate::wal::scan::scan_segment;
use crate::wal::snapshot::{
    BLOCK_HEADER_LEN, MAX_BLOCK, SNAPSHOT_VERSION, SnapshotHeader, Threads, decode_snapshot, decode_snapshot_with,
    encode_snapshot_to_vec, snapshot_name,
};
use crate::wal::{WalLockStore, WalOptions};
use std::path::Path;
use std::sync::{Arc, OnceLock};

/// Salt of the segments the fuzz bodies build.
const SALT: u64 = 0x5EED_F022;
/// Most steps an `ops_crash` input decodes to.
const MAX_STEPS: usize = 16;
/// Most steps a `record_roundtrip` input decodes to.
const MAX_ROUNDTRIP_STEPS: usize = 24;

/// A segment header for segment 1 starting at LSN 1, of format `version`.
fn segment_header(version: u32) -> [u8; 48] {
    SegmentHeader { version, ..SegmentHeader::new(1, SALT, 1, 1) }.encode()
}

/// Cuts `body` into pieces, each led by a length byte (1..=256 bytes).
fn pieces(body: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some((&len, tail)) = rest.split_first() {
        let len = (usize::from(len) + 1).min(tail.len());
        if len == 0 {
            break;
        }
        out.push(&tail[..len]);
        rest = &tail[len..];
    }
    out
}

/// A valid segment of format `version` whose frames carry the pieces of
/// `body` as payloads, with correct checksums and LSNs: the payload decoder
/// sees raw bytes.
fn framed(body: &[u8], version: u32) -> Vec<u8> {
    let mut out = segment_header(version).to_vec();
    for (i, payload) in pieces(body).into_iter().enumerate() {
        append_frame(&mut out, SALT, i as u64 + 1, |o| o.extend_from_slice(payload));
    }
    out
}

fn crc_block(index: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&index.to_le_bytes());
    h.update(&(payload.len() as u32).to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// A snapshot with a valid header and valid block checksums around the
/// pieces of `body` (after five count bytes: locks, clients, strings,
/// handles, records): the entry decoder sees raw bytes.
fn blocked_snapshot(body: &[u8]) -> Vec<u8> {
    let (counts, rest) = body.split_at(body.len().min(5));
    let count = |i: usize| u64::from(counts.get(i).copied().unwrap_or(0));
    let blocks = pieces(rest);
    let header = SnapshotHeader {
        lsn: 0,
        epoch: count(0) % 4,
        clean: false,
        locks: count(0),
        clients: count(1),
        strings: count(2),
        handles: count(3),
        records: count(4),
        blocks: blocks.len() as u32,
        version: SNAPSHOT_VERSION,
    };
    let mut out = header.encode();
    for (index, payload) in blocks.into_iter().enumerate() {
        let index = index as u32;
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(&crc_block(index, payload).to_le_bytes());
        out.extend_from_slice(&index.to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(payload);
        out.resize(out.len().next_multiple_of(8), 0);
    }
    debug_assert_eq!(BLOCK_HEADER_LEN, 16);
    out
}

/// The snapshot file name its header's LSN field asks for (so that the
/// name check passes and decoding goes on).
fn snapshot_file_name(bytes: &[u8]) -> String {
    let lsn = bytes.get(16..24).map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    snapshot_name(lsn)
}

/// The files of a small valid store: a snapshot and a few segments.
fn valid_store() -> &'static [(String, Vec<u8>)] {
    static FILES: OnceLock<Vec<(String, Vec<u8>)>> = OnceLock::new();
    FILES.get_or_init(|| {
        let fs = SimFs::lossless();
        let dir = store_dir();
        prepare_dir(&fs, &dir).expect("a fresh simulator");
        run(&fs, &dir, &crash_options(), &generate(3, 60, 40)).expect("the workload runs");
        let mut files = crate::testing::crash::files(&fs, &dir);
        files.retain(|(name, _)| name != "LOCK");
        files
    })
}

/// A valid store with the mutations `body` describes, four bytes each:
/// file, offset (two bytes), and a byte to xor there (0: cut the file).
fn mutated_store(body: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut files = valid_store().to_vec();
    for m in body.chunks_exact(4).take(16) {
        let count = files.len();
        let (_, bytes) = &mut files[usize::from(m[0]) % count];
        if bytes.is_empty() {
            continue;
        }
        let at = usize::from(u16::from_le_bytes([m[1], m[2]])) % bytes.len();
        match m[3] {
            0 => bytes.truncate(at),
            x => bytes[at] ^= x,
        }
    }
    files
}

fn write_files(fs: &SimFs, dir: &Path, files: &[(String, Vec<u8>)]) {
    prepare_dir(fs, dir).expect("a fresh simulator");
    for (name, bytes) in files {
        let mut file = fs.open(&dir.join(name), OpenMode::CreateNew).expect("distinct names");
        file.write_at(0, bytes).expect("a lossless simulator");
    }
}

fn fuzz_options(read_only: bool) -> WalOptions {
    WalOptions { read_only, ..crash_options() }
}

/// A snapshot decodes to the same state, or the same damage, on one thread
/// and on two (where the two-thread path applies, it must agree exactly).
pub(crate) fn snapshot_threads_agree(bytes: &[u8]) {
    let decode = |threads| {
        decode_snapshot_with(bytes, threads, crate::state::Keys::Index, |_, _| {}).map(|(header, state)| {
            state.check_invariants();
            let clients: Vec<_> = state.clients().cloned().collect();
            (header, state.list(&LockQuery::all()), clients, state.epoch(), state.clean())
        })
    };
    assert_eq!(decode(Threads::One), decode(Threads::Two), "one and two threads disagree");
}

/// Opens arbitrary store files. Never panics; a damaged store is refused
/// with `Corruption` or `UnsupportedVersion`; a store that opens, opens
/// again with the same locks and clients.
pub fn replay_bytes(data: &[u8]) {
    let Some((&mode, body)) = data.split_first() else { return };
    // The pure decoders on the raw bytes.
    let _ = scan_segment::<()>(body, None, true, |_, _, _| Ok(()));
    let _ = scan_segment::<()>(body, Some(1), false, |_, _, _| Ok(()));
    snapshot_threads_agree(body);
    let _ = decode_commands(body, FORMAT_VERSION);
    let _ = decode_commands(body, 3);
    let _ = decode_commands(body, 1);
    // Bit 0x40 of the mode: a format-3 segment (which may not hold the
    // durable-handle and record operations of format 4).
    let version = if mode & 0x40 != 0 { 3 } else { FORMAT_VERSION };
    let files = match mode % 6 {
        0 => vec![(segment_name(1), body.to_vec())],
        1 => vec![(snapshot_file_name(body), body.to_vec())],
        2 => vec![(segment_name(1), [&segment_header(version)[..], body].concat())],
        3 => vec![(segment_name(1), framed(body, version))],
        4 => {
            let snapshot = blocked_snapshot(body);
            snapshot_threads_agree(&snapshot);
            vec![(snapshot_file_name(&snapshot), snapshot)]
        }
        _ => mutated_store(body),
    };
    let fs = SimFs::lossless();
    let dir = store_dir();
    write_files(&fs, &dir, &files);
    let read_only = mode & 0x80 == 0;
    let fs_dyn: Arc<dyn FileSystem> = Arc::new(fs.clone());
    match WalLockStore::open_blocking(Arc::clone(&fs_dyn), dir.clone(), fuzz_options(read_only)) {
        Ok(store) => {
            let first = observe_wal(&store).expect("reads of an open store");
            drop(store);
            let again = WalLockStore::open_blocking(fs_dyn, dir, fuzz_options(true))
                .unwrap_or_else(|e| panic!("opened once, then refused: {e}"));
            let second = observe_wal(&again).expect("reads of an open store");
            assert_eq!(
                (first.locks, first.clients, first.handles, first.records),
                (second.locks, second.clients, second.handles, second.records),
                "a second open differs"
            );
        }
        Err(Error::Corruption { .. } | Error::UnsupportedVersion { .. }) => {}
        Err(e) => panic!("damaged files refused with an error that names no damage: {e:?}"),
    }
}

/// Runs the operations the bytes describe with a fault at some call, cuts
/// the power with some loss pattern (and, for some inputs, again during
/// recovery), and checks the recovered store against the model.
pub fn ops_crash(data: &[u8]) {
    let [k0, k1, fault, loss, rest @ ..] = data else { return };
    let steps = decode_steps(rest, MAX_STEPS);
    let fs = SimFs::new();
    let dir = store_dir();
    prepare_dir(&fs, &dir).expect("a fresh simulator");
    let k = fs.calls() + u64::from(u16::from_le_bytes([*k0, *k1]));
    match fault % 4 {
        0 => fs.fail_from(k, Fault::Eio),
        1 => fs.fail_from(k, Fault::NoSpace),
        2 => fs.fail_from_with_short_write(k, Fault::NoSpace, usize::from(*fault)),
        _ => {} // the power fails after the last step
    }
    let trace = run(&fs, &dir, &crash_options(), &steps).unwrap_or_else(|e| panic!("{e}"));
    let candidates = losses(&fs.pending(), u64::from(*loss), 4, 2);
    let loss = candidates[usize::from(*loss) % candidates.len()];
    let image = fs.crash(loss);
    // One input in four also crashes the recovery, at every eighth of its
    // calls (from a phase the input picks) with one loss pattern each: the
    // exhaustive sweep over every recovery call and pattern is
    // `tests/crash_enumeration.rs`; here inputs stay cheap so that the
    // fuzzer tries more operation sequences.
    let nested = (data[3] & 0xC0 == 0xC0).then(|| every_eighth_call(u64::from(data[3] >> 3) & 7));
    let window = trace.window_at_end();
    if let Err(e) = check_image(&image, &dir, &crash_options(), trace.allowed(window), nested) {
        panic!("fault at call {k}, then {loss:?} ({window:?}), steps {steps:?}: {e}");
    }
}

/// Crash points at recovery calls `phase`, `phase + 8`, ..., one loss
/// pattern each (varying with the call).
fn every_eighth_call(phase: u64) -> SelectLosses {
    Arc::new(move |k, pending| {
        if k % 8 != phase {
            return Vec::new();
        }
        let candidates = losses(pending, k, 4, 2);
        vec![candidates[(k / 8) as usize % candidates.len()]]
    })
}

/// Commands from the bytes go through a frame and back unchanged, and the
/// state they build (locks, clients, durable handles, records) goes through
/// a snapshot and back unchanged; any bytes that decode as a payload
/// re-encode to the same commands, and decode as format 3 exactly when they
/// hold no operation format 4 added.
pub fn record_roundtrip(data: &[u8]) {
    if let Ok(commands) = decode_commands(data, FORMAT_VERSION) {
        let mut again = Vec::new();
        encode_commands(&mut again, &commands.iter().collect::<Vec<_>>());
        assert_eq!(decode_commands(&again, FORMAT_VERSION).as_ref(), Ok(&commands), "re-encoding changed the commands");
        check_format_3(data, &commands);
    }
    // Bytes that decode as a format-1 payload convert into commands that
    // encode and decode as today's.
    if let Ok(commands) = decode_commands(data, 1) {
        let mut again = Vec::new();
        encode_commands(&mut again, &commands.iter().collect::<Vec<_>>());
        assert_eq!(decode_commands(&again, FORMAT_VERSION).as_ref(), Ok(&commands), "a converted payload changed");
    }
    let mut state = State::new();
    let mut lsn = 0;
    let mut epoch = 0;
    for step in decode_steps(data, MAX_ROUNDTRIP_STEPS) {
        let command = match step {
            Step::Open => {
                epoch += 1;
                Command::Open { epoch }
            }
            Step::Txn(ops) => Command::Txn(ops),
            Step::Close => Command::CleanShutdown,
            Step::Compact | Step::Drop => continue,
        };
        lsn += 1;
        let mut frame = Vec::new();
        append_frame(&mut frame, SALT, lsn, |out| encode_commands(out, &[&command]));
        let decoded = decode_frame(&frame, SALT, |l| l == lsn).expect("a frame just encoded");
        assert_eq!(decoded.len, frame.len());
        assert_eq!(decode_commands(decoded.payload, FORMAT_VERSION), Ok(vec![command.clone()]));
        check_format_3(decoded.payload, std::slice::from_ref(&command));
        let _ = state.apply(&command);
    }
    let encode = |max_block| encode_snapshot_to_vec(&state.view(), lsn, max_block);
    // Tiny blocks: a few locks span enough blocks for the two-thread load,
    // which must agree with the one-thread load, also on a damaged byte.
    let (_, mut small) = encode(256);
    snapshot_threads_agree(&small);
    let at = data.iter().fold(0usize, |h, &b| h.wrapping_mul(31).wrapping_add(b.into())) % small.len();
    small[at] ^= data.first().copied().unwrap_or(1) | 1;
    snapshot_threads_agree(&small);
    let (header, snapshot) = encode(MAX_BLOCK);
    let (decoded_header, restored) = decode_snapshot(&snapshot).expect("a snapshot just encoded");
    assert_eq!(decoded_header, header);
    assert_eq!(restored.list(&LockQuery::all()), state.list(&LockQuery::all()));
    assert!(restored.clients().eq(state.clients()));
    assert!(restored.handles().eq(state.handles()), "durable handles changed through a snapshot");
    assert!(restored.records().eq(state.records()), "records changed through a snapshot");
    assert_eq!(
        (decoded_header.handles, decoded_header.records),
        (state.handle_count() as u64, state.record_count() as u64)
    );
    // The indexes are rebuilt: every handle is found by its file id and
    // create GUID.
    for handle in state.handles() {
        assert_eq!(restored.handle_by_file_id(&handle.file_id).as_ref(), Some(handle));
        if let Some(guid) = &handle.create_guid {
            assert_eq!(restored.handle_by_create_guid(guid).as_ref(), Some(handle));
        }
    }
    assert_eq!((restored.epoch(), restored.clean()), (state.epoch(), state.clean()));
    restored.check_invariants();
}

/// A payload decodes as format 3 to the same commands when they hold no
/// operation of format 4, and is refused as damage when they do.
fn check_format_3(payload: &[u8], commands: &[Command]) {
    let as_3 = decode_commands(payload, 3);
    if commands.iter().flat_map(Command::ops).all(crate::op::Op::in_format_3) {
        assert_eq!(as_3.as_deref(), Ok(commands), "a format-3 payload decodes as format 4 does");
    } else {
        assert!(as_3.is_err(), "a format-3 payload holds an operation of format 4: {commands:?}");
    }
}

#[cfg(test)]
mod tests {
    //! The seed corpus, run by `cargo test`; and its generator.

    use super::*;
    use crate::testing::workload::Rng;
    use std::path::PathBuf;

    fn corpus(target: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target)
    }

    /// Runs `body` over every file of the target's seed corpus.
    fn run_corpus(target: &str, body: fn(&[u8])) -> usize {
        let mut n = 0;
        for entry in std::fs::read_dir(corpus(target)).expect("the seed corpus is checked in") {
            let path = entry.expect("a directory entry").path();
            let data = std::fs::read(&path).expect("a corpus file");
            let outcome = std::panic::catch_unwind(|| body(&data));
            assert!(outcome.is_ok(), "{target} failed on {}", path.display());
            n += 1;
        }
        n
    }

    #[test]
    fn replay_bytes_seed_corpus() {
        assert!(run_corpus("replay_bytes", replay_bytes) >= 20);
    }

    #[test]
    fn ops_crash_seed_corpus() {
        assert!(run_corpus("ops_crash", ops_crash) >= 20);
    }

    #[test]
    fn record_roundtrip_seed_corpus() {
        assert!(run_corpus("record_roundtrip", record_roundtrip) >= 10);
    }

    #[test]
    fn the_wrappers_reach_the_decoders_behind_the_checksums() {
        // A framed payload that is a valid command array reaches the
        // state machine: the store opens with its lock.
        let lock = crate::testing::workload::lock(1, 5);
        let command = Command::Txn(vec![crate::op::Op::PutLock(lock.clone())]);
        let mut payload = Vec::new();
        encode_commands(&mut payload, &[&Command::Open { epoch: 1 }, &command]);
        assert!(payload.len() <= 256, "one piece");
        let body = [&[(payload.len() - 1) as u8][..], &payload].concat();
        let fs = SimFs::lossless();
        write_files(&fs, &store_dir(), &[(segment_name(1), framed(&body, FORMAT_VERSION))]);
        let store =
            WalLockStore::open_blocking(Arc::new(fs), store_dir(), fuzz_options(true)).expect("a valid framed segment");
        assert_eq!(observe_wal(&store).unwrap().locks.iter().map(|l| &l.id).collect::<Vec<_>>(), [&lock.id]);
        // Framed durable-handle and record operations reach the state
        // machine in a format-4 segment, and are damage in a format-3 one.
        let body = framed_body(&handle_and_record_commands());
        let fs = SimFs::lossless();
        write_files(&fs, &store_dir(), &[(segment_name(1), framed(&body, FORMAT_VERSION))]);
        let store = WalLockStore::open_blocking(Arc::new(fs), store_dir(), fuzz_options(true)).expect("format 4");
        let observed = observe_wal(&store).unwrap();
        assert_eq!(observed.handles.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["open-2", "open-3"]);
        assert_eq!(observed.records.len(), 2);
        let fs = SimFs::lossless();
        write_files(&fs, &store_dir(), &[(segment_name(1), framed(&body, 3))]);
        let refused = WalLockStore::open_blocking(Arc::new(fs), store_dir(), fuzz_options(true)).map(drop);
        assert!(matches!(refused, Err(Error::Corruption { .. })), "{refused:?}");
        // A blocked snapshot with matching counts decodes, also with durable
        // handle and record entries.
        assert!(decode_snapshot(&blocked_snapshot(&[0, 0, 0, 0, 0])).is_ok());
        let (body, state) = blocked_handles_and_records();
        let (_, decoded) = decode_snapshot(&blocked_snapshot(&body)).expect("valid entries");
        assert!(decoded.handles().eq(state.handles()) && decoded.records().eq(state.records()));
        assert_eq!((decoded.handle_count(), decoded.record_count()), (3, 4));
        // One count byte off: damage.
        let mut wrong = body.clone();
        wrong[3] += 1;
        assert!(decode_snapshot(&blocked_snapshot(&wrong)).is_err());
        // The valid store opens, and holds handles and records, in its
        // snapshot and in its log.
        let fs = SimFs::lossless();
        write_files(&fs, &store_dir(), valid_store());
        let store = WalLockStore::open_blocking(Arc::new(fs), store_dir(), fuzz_options(true)).expect("valid");
        let observed = observe_wal(&store).unwrap();
        assert!(!observed.handles.is_empty() && !observed.records.is_empty());
        let (_, snapshot) = valid_store().iter().find(|(n, _)| n.ends_with(".snap")).expect("a snapshot");
        let header = crate::wal::snapshot::decode_header(snapshot).unwrap();
        assert!(header.handles > 0 && header.records > 0, "{header:?}");
    }

    /// A small durable handle: its entry and its command fit one piece
    /// (at most 256 bytes).
    fn small_handle(n: u8) -> crate::model::DurableHandle {
        let mut h = crate::testing::workload::handle(u64::from(n), u64::from(n), Some(u64::from(n)), 0);
        let key = |tag: u8| [tag ^ n; 16].map(|b| b & 0x7F);
        (h.file_id, h.original_file_id, h.create_guid, h.client_guid) = (key(1), key(2), Some(key(3)), key(4));
        (h.id, h.path, h.share, h.user, h.file_handle) =
            (format!("open-{n}"), "p".into(), "s".into(), "u".into(), vec![n]);
        (h.lease, h.app_instance_id, h.delete_pending, h.session_key_hash) = (None, None, None, [0x11; 32]);
        h
    }

    /// Durable-handle and record commands that each fit one piece: an
    /// open, puts, a consume, a swap, an expiry that keeps both handles.
    fn handle_and_record_commands() -> Vec<Command> {
        use crate::op::Op;
        let record = |key: &[u8], value: &[u8]| Op::PutRecord {
            space: "dirents".into(),
            key: key.to_vec(),
            value: value.to_vec(),
        };
        let now = crate::model::Timestamp::from_unix_micros(crate::testing::workload::DISCONNECTED_FROM);
        vec![
            Command::Open { epoch: 1 },
            Command::Txn(vec![Op::PutHandle(small_handle(1))]),
            Command::Txn(vec![Op::PutHandle(small_handle(2))]),
            Command::Txn(vec![Op::PutHandle(small_handle(3)), record(b"a", b"1")]),
            Command::Txn(vec![record(b"ab", b"2")]),
            Command::Txn(vec![Op::ConsumeHandleByFileId { file_id: small_handle(1).file_id }]),
            Command::Txn(vec![Op::SwapRecord {
                space: "dirents".into(),
                key: b"ab".to_vec(),
                expected: Some(b"2".to_vec()),
                value: Some(b"3".to_vec()),
            }]),
            Command::Txn(vec![Op::ExpireHandles { now }]),
        ]
    }

    /// A framed body: each command its own payload (one piece each).
    fn framed_body(commands: &[Command]) -> Vec<u8> {
        let mut body = Vec::new();
        for command in commands {
            let mut payload = Vec::new();
            encode_commands(&mut payload, &[command]);
            assert!(payload.len() <= 256, "one piece: {} bytes", payload.len());
            body.push((payload.len() - 1) as u8);
            body.extend_from_slice(&payload);
        }
        body
    }

    /// A blocked-snapshot body (the five count bytes, then one entry per
    /// piece) of a state with three durable handles and four records in
    /// two keyspaces, and that state: taken from a real snapshot encoded
    /// with one entry per block.
    fn blocked_handles_and_records() -> (Vec<u8>, State) {
        use crate::op::Op;
        let mut state = State::new();
        state.apply(&Command::Open { epoch: 1 }).unwrap();
        let record =
            |space: &str, key: &[u8]| Op::PutRecord { space: space.into(), key: key.to_vec(), value: key.to_vec() };
        let ops = vec![
            Op::PutHandle(small_handle(1)),
            Op::PutHandle(small_handle(2)),
            Op::PutHandle(small_handle(3)),
            record("dirents", b"a"),
            record("dirents", b"a\0"),
            record("dirents.v2", b"ab"),
            record("dirents.v2", b"\xff"),
        ];
        state.apply(&Command::Txn(ops)).unwrap();
        let (header, snapshot) = encode_snapshot_to_vec(&state.view(), 1, 1);
        let mut body = vec![0, 0, 0, header.handles as u8, header.records as u8];
        let mut at = header.header_len();
        for _ in 0..header.blocks {
            let len = u32::from_le_bytes(snapshot[at..at + 4].try_into().unwrap()) as usize;
            let payload = &snapshot[at + BLOCK_HEADER_LEN..at + BLOCK_HEADER_LEN + len];
            assert!((1..=256).contains(&len), "one entry per piece: {len} bytes");
            body.push((len - 1) as u8);
            body.extend_from_slice(payload);
            at = (at + BLOCK_HEADER_LEN + len).next_multiple_of(8);
        }
        assert_eq!(at, snapshot.len());
        (body, state)
    }

    /// Writes the seed corpus: `cargo test --lib write_seed_corpus -- --ignored`.
    #[test]
    #[ignore = "writes fuzz/corpus; run by hand when the formats change"]
    fn write_seed_corpus() {
        let write = |target: &str, name: &str, data: &[u8]| {
            std::fs::create_dir_all(corpus(target)).unwrap();
            std::fs::write(corpus(target).join(name), data).unwrap();
        };
        let mut rng = Rng::new(5);
        let mut random = |n: usize| (0..n).map(|_| rng.next_u64() as u8).collect::<Vec<u8>>();
        // replay_bytes: every mode, from real files where there are some.
        for (i, (name, bytes)) in valid_store().iter().enumerate() {
            let mode = if name.ends_with(".snap") { 1u8 } else { 0 };
            write("replay_bytes", &format!("file-{i}"), &[&[mode][..], bytes].concat());
            write("replay_bytes", &format!("file-{i}-rw"), &[&[mode | 0x80][..], bytes].concat());
            let cut = bytes.len() * 2 / 3;
            write("replay_bytes", &format!("file-{i}-cut"), &[&[mode][..], &bytes[..cut]].concat());
        }
        let commands: Vec<Command> = decode_steps(&random(64), 12)
            .into_iter()
            .filter_map(|s| if let Step::Txn(ops) = s { Some(Command::Txn(ops)) } else { None })
            .collect();
        for (i, command) in commands.iter().enumerate() {
            let mut payload = Vec::new();
            encode_commands(&mut payload, &[command]);
            let mut body = Vec::new();
            for chunk in payload.chunks(200) {
                body.push((chunk.len() - 1) as u8);
                body.extend_from_slice(chunk);
            }
            write("replay_bytes", &format!("framed-{i}"), &[&[3u8][..], &body].concat());
            write("record_roundtrip", &format!("payload-{i}"), &payload);
        }
        // Durable handles and records behind the checksums: framed in a
        // format-4 segment and (damage) in a format-3 one (mode bit 0x40),
        // and as snapshot entries.
        let body = framed_body(&handle_and_record_commands());
        write("replay_bytes", "framed-handles", &[&[3u8][..], &body].concat());
        write("replay_bytes", "framed-handles-format-3", &[&[0x45u8][..], &body].concat());
        let (body, _) = blocked_handles_and_records();
        write("replay_bytes", "blocks-handles", &[&[4u8][..], &body].concat());
        write("replay_bytes", "blocks-handles-rw", &[&[0x84u8][..], &body].concat());
        for i in 0..4u8 {
            write("replay_bytes", &format!("header-format-3-{i}"), &[&[0x44u8][..], &random(60)].concat());
            write("replay_bytes", &format!("header-{i}"), &[&[2u8][..], &random(40 + 50 * usize::from(i))].concat());
            write("replay_bytes", &format!("blocks-{i}"), &[&[4u8, i, 0, 0][..], &random(30)].concat());
            write("replay_bytes", &format!("mutated-{i}"), &[&[5u8 | (i << 7)][..], &random(16)].concat());
        }
        // ops_crash: faults early and late, every loss selector.
        for i in 0..24u16 {
            let k = (i * 37).to_le_bytes();
            let data = [&[k[0], k[1], i as u8, (i * 11) as u8][..], &random(8 + 3 * usize::from(i))].concat();
            write("ops_crash", &format!("seed-{i}"), &data);
        }
        for i in 0..8 {
            write("record_roundtrip", &format!("random-{i}"), &random(16 + 24 * i));
        }
        // Step bytes that decode to durable-handle and record operations
        // (codes 12 to 15, single and in multi-operation transactions).
        let extra = |n: usize| -> Vec<u8> {
            let mut rng = Rng::new(n as u64 + 100);
            (0..n)
                .flat_map(|i| {
                    let kind = if i % 3 == 2 { 10 + rng.below(2) as u8 } else { (12 + rng.below(4) as u8) << 4 };
                    [kind | (rng.below(8) as u8 * u8::from(kind < 16)), rng.next_u64() as u8]
                })
                .collect()
        };
        for i in 0..6 {
            let steps = extra(8 + 4 * i);
            write("record_roundtrip", &format!("handles-{i}"), &steps);
            let k = (i as u16 * 53).to_le_bytes();
            let data =
                [&[k[0], k[1], i as u8, (i * 37) as u8 | if i % 2 == 1 { 0xC0 } else { 0 }][..], &steps].concat();
            write("ops_crash", &format!("handles-{i}"), &data);
        }
        let mut payload = Vec::new();
        encode_commands(&mut payload, &handle_and_record_commands().iter().collect::<Vec<_>>());
        write("record_roundtrip", "payload-handles", &payload);
    }
}
