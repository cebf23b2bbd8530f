//! A random run of durable-handle and record operations on PostgreSQL
//! against the state machine (the memory backend), comparing every
//! outcome, error and listing.

use super::*;
use lockwal::MemoryLockStore;

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const IDS: [&str; 6] = ["open-1", "open-2", "Zeta", "éclair", "a\u{0}b", "\u{7f}"];
const SPACES: [&str; 3] = ["s1", "s.2", "no space"];
const SHARES: [&str; 3] = ["projects", "é", "Z"];
const FILE_IDS: usize = 5;
const GUIDS: usize = 4;

fn key16(n: usize, tag: u8) -> [u8; 16] {
    let mut k = [tag; 16];
    k[0] = n as u8;
    k
}

fn record_keys() -> Vec<Vec<u8>> {
    vec![vec![0], vec![0xff], vec![0xff, 0xff], b"a".to_vec(), b"ab".to_vec(), b"a\xff".to_vec(), b"b".to_vec(), vec![]]
}

fn values() -> Vec<Vec<u8>> {
    vec![Vec::new(), b"v1".to_vec(), b"v2".to_vec()]
}

fn random_handle(rng: &mut Rng) -> DurableHandle {
    let mut h = sample::handle(rng.below(1000) as u32);
    h.id = rng.pick(&IDS).to_string();
    h.file_id = key16(rng.below(FILE_IDS), 0xF1);
    h.create_guid = rng.chance(60).then(|| key16(rng.below(GUIDS), 0xC6));
    h.app_instance_id = rng.chance(50).then(|| key16(rng.below(2), 0xA1));
    h.share = rng.pick(&SHARES).to_string();
    h.file_handle = vec![rng.below(3) as u8];
    h.disconnected_at = Timestamp::from_unix_micros(rng.below(1000) as i64);
    h.timeout_ms = rng.below(3) as u64;
    if rng.chance(30) {
        h.lease = None;
    }
    if rng.chance(30) {
        h.delete_pending = None;
    }
    if rng.chance(30) {
        h.version = DurableVersion::V1;
    }
    match rng.below(40) {
        0 => h.id = String::new(),
        1 => h.timeout_ms = u64::MAX,
        2 => h.file_handle = Vec::new(),
        _ => {}
    }
    h
}

fn random_op(rng: &mut Rng) -> Op {
    let keys = record_keys();
    let values = values();
    let maybe_value = |rng: &mut Rng| rng.chance(70).then(|| rng.pick(&values).clone());
    match rng.below(13) {
        0..=2 => Op::PutHandle(random_handle(rng)),
        3 => Op::DeleteHandle { id: rng.pick(&IDS).to_string() },
        4 => Op::ConsumeHandleByFileId { file_id: key16(rng.below(FILE_IDS), 0xF1) },
        5 => Op::ConsumeHandleByCreateGuid { create_guid: key16(rng.below(GUIDS), 0xC6) },
        6 => Op::ExpireHandles { now: Timestamp::from_unix_micros(rng.below(2000) as i64) },
        7 | 8 => Op::PutRecord {
            space: rng.pick(&SPACES).to_string(),
            key: rng.pick(&keys).clone(),
            value: rng.pick(&values).clone(),
        },
        9 => Op::DeleteRecord { space: rng.pick(&SPACES).to_string(), key: rng.pick(&keys).clone() },
        _ => Op::SwapRecord {
            space: rng.pick(&SPACES).to_string(),
            key: rng.pick(&keys).clone(),
            expected: maybe_value(rng),
            value: maybe_value(rng),
        },
    }
}

fn random_scan(rng: &mut Rng) -> RecordScan {
    let keys = record_keys();
    let bound = |rng: &mut Rng| rng.chance(50).then(|| rng.pick(&keys).clone());
    RecordScan {
        prefix: if rng.chance(50) { Vec::new() } else { rng.pick(&keys).clone() },
        start: bound(rng),
        end: bound(rng),
        limit: *rng.pick(&[0, 1, 3, usize::MAX]),
    }
}

/// The observable handle and record state (and the answers to lookups that
/// miss), as text to compare.
async fn observe(store: &dyn LockStore, rng: &mut Rng) -> Vec<String> {
    let mut seen = vec![format!("{:?}", store.list_handles(&HandleQuery::All).await)];
    for n in 0..2 {
        seen.push(format!("{:?}", store.list_handles(&HandleQuery::AppInstance(key16(n, 0xA1))).await));
    }
    for fh in 0..3u8 {
        seen.push(format!("{:?}", store.list_handles(&HandleQuery::FileHandle(vec![fh])).await));
    }
    for share in SHARES {
        seen.push(format!("{:?}", store.list_handles(&HandleQuery::Share(share.into())).await));
    }
    for id in IDS.iter().chain(&[""]) {
        seen.push(format!("{:?}", store.get_handle(id).await));
    }
    for n in 0..FILE_IDS {
        seen.push(format!("{:?}", store.get_handle_by_file_id(&key16(n, 0xF1)).await));
    }
    for n in 0..GUIDS {
        seen.push(format!("{:?}", store.get_handle_by_create_guid(&key16(n, 0xC6)).await));
    }
    for space in SPACES {
        seen.push(format!("{:?}", store.scan_records(space, &RecordScan::all(usize::MAX)).await));
        for key in record_keys() {
            seen.push(format!("{:?}", store.get_record(space, &key).await));
        }
    }
    for _ in 0..4 {
        let scan = random_scan(rng);
        seen.push(format!("{scan:?}: {:?}", store.scan_records("s1", &scan).await));
    }
    seen
}

/// A random run of durable-handle and record operations (colliding file
/// ids and create GUIDs, ids that sort differently as bytes and as text,
/// keys at the byte edges, invalid input now and then), alone, in
/// transactions and in a caller's transaction, gives on PostgreSQL exactly
/// the outcomes, errors (variant and fields) and listings of the state
/// machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_and_records_match_the_state_machine() {
    const STEPS: usize = 300;
    let Some(scratch) = Scratch::new() else { return };
    let pg = scratch.open().await;
    let memory = MemoryLockStore::new();
    let mut caller = caller_client(&scratch).await;
    let mut rng = Rng(0x5EED_1234_ABCD_0042);
    let (mut errors, mut most_handles) = (BTreeSet::new(), 0);
    for step in 0..STEPS {
        let len = if rng.chance(65) { 1 } else { 2 + rng.below(3) };
        let ops: Vec<Op> = (0..len).map(|_| random_op(&mut rng)).collect();
        let want = memory.transaction(ops.clone()).await;
        let got = if rng.chance(25) {
            let tx = caller.transaction().await.unwrap();
            let result = pg.transaction_in(&tx, ops.clone()).await;
            if result.is_ok() {
                tx.commit().await.unwrap()
            } else {
                tx.rollback().await.unwrap()
            }
            result
        } else {
            pg.transaction(ops.clone()).await
        };
        assert_eq!(format!("{got:?}"), format!("{want:?}"), "step {step}: {ops:?}");
        if let Err(e) = &want {
            errors.insert(format!("{e:?}").split([' ', '(']).next().unwrap().to_owned());
        }
        let seed = rng.next();
        let (want, got) = (observe(&memory, &mut Rng(seed)).await, observe(&pg, &mut Rng(seed)).await);
        for (w, g) in want.iter().zip(&got) {
            assert_eq!(g, w, "step {step}, after {ops:?}");
        }
        most_handles = most_handles.max(memory.list_handles(&HandleQuery::All).await.unwrap().len());
    }
    // The run went where it should: every refusal happened, and the
    // handles collided.
    let wanted = ["ConditionFailed", "HandleConflict", "InvalidInput", "NotFound"];
    assert_eq!(errors.iter().map(String::as_str).collect::<Vec<_>>(), wanted);
    assert!(most_handles >= 3, "at most {most_handles} handles at once");
}
