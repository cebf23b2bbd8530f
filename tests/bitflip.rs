//! Bit flips in the files of a real store (issue 5, item 5). Guards the
//! promise that damage is never silent: with one bit flipped anywhere in a
//! segment or the snapshot, the store either opens with exactly the
//! acknowledged state (locks, clients, durable handles and records), or
//! refuses with an error naming the damaged file and an offset at or
//! before the flipped byte. The one exception is the
//! ambiguity every log has: a bad last record of the newest segment looks
//! exactly like the write in flight at a crash, so the store may drop that
//! record (and only it), truncating it as a torn tail and reporting it in
//! `stats().torn_tail`. For a store closed cleanly that record is the
//! clean-shutdown marker, whose loss only costs a grace period; for one that
//! was not, it is the last acknowledged transaction (reported to the lead).

use lockwal::testing::crash::{Observed, observe_wal};
use lockwal::testing::workload::{Expected, Rng, Step, expected_states, generate};
use lockwal::wal::{WalLockStore, WalOptions};
use lockwal::{Error, LockStore};
use std::collections::BTreeMap;
use std::path::Path;

/// Flips tried per store.
const FLIPS: usize = 1000;

fn options() -> WalOptions {
    WalOptions { segment_size: lockwal::wal::MIN_SEGMENT_SIZE, compact_after_bytes: None, ..WalOptions::default() }
}

/// Runs `steps` on a real store in `dir`.
async fn build(dir: &Path, steps: &[Step]) {
    let mut store = None;
    for step in steps {
        match step {
            Step::Open => store = Some(WalLockStore::open(dir, options()).await.unwrap()),
            Step::Txn(ops) => {
                let _ = store.as_ref().unwrap().transaction(ops.clone()).await;
            }
            Step::Compact => {
                store.as_ref().unwrap().compact().await.unwrap();
            }
            Step::Close => store.take().unwrap().close().await.unwrap(),
            Step::Drop => drop(store.take()),
        }
    }
}

/// The segment and snapshot files of a store directory.
fn read_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap()))
        .filter(|(name, _)| name.ends_with(".wal") || name.ends_with(".snap"))
        .collect()
}

fn matches(observed: &Observed, expected: &Expected) -> bool {
    let records = expected.model.records.iter().map(|((s, k), v)| (s.clone(), k.clone(), v.clone()));
    observed.locks.iter().eq(expected.model.locks.values())
        && observed.clients.iter().eq(expected.model.clients.values())
        && observed.handles.iter().eq(expected.model.handles.values())
        && observed.records.iter().cloned().eq(records)
        && observed.epoch == expected.model.epoch + 1
        && observed.clean == expected.clean
}

/// The file holding byte `at` of all the files laid end to end, and the
/// offset in it.
fn locate(files: &BTreeMap<String, Vec<u8>>, mut at: usize) -> (&String, &Vec<u8>, usize) {
    for (name, bytes) in files {
        if at < bytes.len() {
            return (name, bytes, at);
        }
        at -= bytes.len();
    }
    unreachable!("offset beyond the files")
}

#[derive(Debug, Default)]
struct Tally {
    exact: usize,
    refused: usize,
    last_record_dropped: usize,
}

/// Flips `FLIPS` random bits, one at a time, in a copy of `files`, opens
/// each copy, and classifies what happened; panics on anything else.
fn flip_and_open(files: &BTreeMap<String, Vec<u8>>, acked: &Expected, before_last: &Expected, seed: u64) -> Tally {
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let total: usize = files.values().map(Vec::len).sum();
    let newest = files.keys().filter(|n| n.ends_with(".wal")).max().unwrap().clone();
    let mut rng = Rng::new(seed);
    let mut tally = Tally::default();
    for trial in 0..FLIPS {
        let (name, bytes, at) = locate(files, rng.below(total as u64) as usize);
        let bit = rng.below(8) as u8;
        let dir = tempfile::tempdir().unwrap();
        for (n, b) in files {
            let mut b = b.clone();
            if n == name {
                b[at] ^= 1 << bit;
            }
            std::fs::write(dir.path().join(n), b).unwrap();
        }
        let what = format!("trial {trial}: bit {bit} of byte {at} of {name} ({} bytes)", bytes.len());
        match runtime.block_on(WalLockStore::open(dir.path(), options())) {
            Err(Error::Corruption { file, offset, reason }) => {
                assert_eq!(file, dir.path().join(name), "{what}: the error names another file ({reason})");
                assert!(offset <= at as u64, "{what}: the error names offset {offset}, after the flip ({reason})");
                tally.refused += 1;
            }
            Err(Error::UnsupportedVersion { file, .. }) => {
                assert_eq!(file, dir.path().join(name), "{what}: the error names another file");
                assert!(at < 16, "{what}: a version error for a flip outside the header's version field");
                tally.refused += 1;
            }
            Err(e) => panic!("{what}: open failed with an error that names no damage: {e}"),
            Ok(store) => {
                let observed = observe_wal(&store).unwrap();
                let torn = store.stats().torn_tail;
                drop(store);
                if matches(&observed, acked) {
                    tally.exact += 1;
                } else {
                    let torn = torn.unwrap_or_else(|| panic!("{what}: opened with another state, no torn tail"));
                    assert_eq!(*name, newest, "{what}: a torn tail outside the newest segment");
                    assert_eq!(torn.file, dir.path().join(name), "{what}");
                    assert!(torn.offset <= at as u64, "{what}: torn tail at {} after the flip", torn.offset);
                    assert!(
                        matches(&observed, before_last),
                        "{what}: the torn tail dropped more than the last record: {observed:?}"
                    );
                    tally.last_record_dropped += 1;
                }
                // The repaired store opens to the same state again.
                let again = runtime.block_on(WalLockStore::open(dir.path(), options())).unwrap();
                let reopened = observe_wal(&again).unwrap();
                let durable = |o: &Observed| (o.locks.clone(), o.clients.clone(), o.handles.clone(), o.records.clone());
                assert_eq!(durable(&reopened), durable(&observed), "{what}");
            }
        }
    }
    tally
}

/// Builds a store (a snapshot and several segments), then flips bits.
fn scenario(clean: bool, seed: u64) -> Tally {
    let mut steps = generate(seed, 400, 250);
    assert_eq!(steps.pop(), Some(Step::Close));
    steps.push(if clean { Step::Close } else { Step::Drop });
    let (expected, _) = expected_states(&steps);
    let acked = expected.last().unwrap().clone();
    // The state without the last record: for a clean close, the marker; for
    // an unclean stop, the last transaction that wrote one.
    let last_logged = steps.iter().rposition(|s| matches!(s, Step::Txn(_) | Step::Close)).unwrap();
    let mut before_last = expected[last_logged].clone();
    before_last.open = acked.open;
    let dir = tempfile::tempdir().unwrap();
    tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(build(dir.path(), &steps));
    let files = read_files(dir.path());
    assert!(files.keys().any(|n| n.ends_with(".snap")), "{files:?}", files = files.keys());
    println!("files: {:?}", files.iter().map(|(n, b)| (n, b.len())).collect::<Vec<_>>());
    assert!(files.keys().filter(|n| n.ends_with(".wal")).count() >= 3);
    flip_and_open(&files, &acked, &before_last, seed)
}

#[test]
fn a_flipped_bit_in_a_cleanly_closed_store_is_refused_or_harmless() {
    let tally = scenario(true, 0xB17);
    println!("clean close: {tally:?}");
    assert_eq!(tally.exact + tally.refused + tally.last_record_dropped, FLIPS);
    assert!(tally.refused > FLIPS / 2, "most bytes are checksummed records: {tally:?}");
    assert!(tally.exact > 0, "flips in the newest segment's zero tail are harmless: {tally:?}");
}

#[test]
fn a_flipped_bit_in_a_store_stopped_without_close_is_refused_or_harmless() {
    let tally = scenario(false, 0xB18);
    println!("unclean stop: {tally:?}");
    assert_eq!(tally.exact + tally.refused + tally.last_record_dropped, FLIPS);
    assert!(tally.refused > FLIPS / 2, "{tally:?}");
}

/// Guards (open question for the WAL): a bit flipped in the last record of
/// a store stopped without `close()` is, today, taken for a torn write: the
/// store opens without that record, although it was acknowledged, and says
/// so only in `stats().torn_tail` and a warning. A torn write could only be
/// a record never acknowledged; telling the two apart needs an assumption
/// about the disk (for example: a torn write leaves zeros from a sector
/// boundary to the frame's end, a flip leaves the frame's full extent
/// written), which DESIGN.md does not make yet.
#[test]
#[ignore = "design question reported to the lead: a damaged last record is indistinguishable from a torn write"]
fn a_flipped_bit_in_the_last_acknowledged_record_is_not_taken_for_a_torn_write() {
    use lockwal::wal::scan::scan_segment;
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let granted = lockwal::testing::workload::lock(2, 2);
    runtime.block_on(async {
        let store = WalLockStore::open(dir.path(), options()).await.unwrap();
        store.put_lock(lockwal::testing::workload::lock(1, 1)).await.unwrap();
        store.put_lock(granted.clone()).await.unwrap();
    });
    let files = read_files(dir.path());
    let (name, bytes) = files.iter().rfind(|(n, _)| n.ends_with(".wal")).unwrap();
    let mut last = 0;
    scan_segment::<()>(bytes, None, true, |offset, _, _| {
        last = offset;
        Ok(())
    })
    .unwrap()
    .unwrap();
    let mut damaged = bytes.clone();
    damaged[last as usize + 16 + 3] ^= 0x04;
    std::fs::write(dir.path().join(name), damaged).unwrap();
    match runtime.block_on(WalLockStore::open(dir.path(), options())) {
        Err(Error::Corruption { offset, .. }) => assert_eq!(offset, last),
        Err(e) => panic!("{e}"),
        Ok(store) => {
            let torn = store.stats().torn_tail;
            assert!(
                runtime.block_on(store.get_lock(&granted.id)).is_ok(),
                "the acknowledged grant was dropped as a torn tail ({torn:?})"
            );
        }
    }
}
