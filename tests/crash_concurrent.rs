//! Power cuts at every I/O call while many tasks write at once (group
//! commit) and compactions run beside them. Guards the promise that group
//! commit acknowledges a request only once the frame holding it is durable,
//! and that a transaction committed in a group is still all or nothing.
//!
//! The tasks write disjoint locks, so any subset of the operations in
//! flight at the cut is a valid outcome; the check is per transaction: an
//! acknowledged grant is present unless its release may have landed, an
//! acknowledged release is absent, nothing never issued is present, and the
//! locks of one transaction are all present or all absent.
//!
//! The second test does the same with transactions that grant locks with
//! a record and release them together (both there or both absent), while
//! the two tasks of each pair race to consume one durable handle, each in
//! a transaction with its own lock: exactly one consume wins; after a cut
//! exactly one of the handle and the winner's lock is there, never the
//! loser's lock, and an acknowledged consume's handle never comes back.

use lockwal::io::FileSystem;
use lockwal::io::sim::{Loss, SimFs};
use lockwal::model::{DurableHandle, PersistedLock};
use lockwal::testing::crash::{Observed, crash_options, default_losses, open_and_observe, prepare_dir, store_dir};
use lockwal::testing::workload::{SPACES, handle, lock};
use lockwal::wal::WalLockStore;
use lockwal::{Error, LockStore, Op};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

const TASKS: usize = 8;
const ROUNDS: usize = 40;

/// One transaction as issued: when (in file-system calls) it was issued and
/// acknowledged.
#[derive(Debug, Clone)]
struct Txn {
    issued_at: u64,
    acked_at: Option<u64>,
}

/// The locks of one grant transaction and, when they were released, the
/// release transaction.
#[derive(Debug, Clone)]
struct Group {
    locks: Vec<PersistedLock>,
    grant: Txn,
    release: Option<Txn>,
}

/// `rounds` compactions of `store`, each after `yields` yields to the
/// writers.
async fn compactions(store: Arc<WalLockStore>, rounds: usize, yields: usize) {
    for _ in 0..rounds {
        for _ in 0..yields {
            tokio::task::yield_now().await;
        }
        store.compact().await.unwrap();
    }
}

fn group_locks(task: usize, round: usize) -> Vec<PersistedLock> {
    (0..1 + (task + round) % 3)
        .map(|i| {
            let mut l = lock((task * 1000 + round * 10 + i) as u64, (task * 7 + round) as u64);
            l.id = format!("t{task}-r{round}-{i}").into();
            l.server_epoch = 1;
            l
        })
        .collect()
}

async fn writer(store: Arc<WalLockStore>, fs: SimFs, task: usize, groups: Arc<Mutex<Vec<Group>>>) {
    let mut previous: Option<usize> = None;
    for round in 0..ROUNDS {
        let locks = group_locks(task, round);
        let issued_at = fs.calls();
        let ops = locks.iter().cloned().map(Op::PutLock).collect();
        let acked_at = store.transaction(ops).await.ok().map(|_| fs.calls());
        assert!(acked_at.is_some(), "no fault is injected: every grant succeeds");
        let index = {
            let mut g = groups.lock().unwrap();
            g.push(Group { locks, grant: Txn { issued_at, acked_at }, release: None });
            g.len() - 1
        };
        // Every other round, release the previous round's locks together.
        if round % 2 == 1
            && let Some(p) = previous.take()
        {
            let ids: Vec<String> = groups.lock().unwrap()[p].locks.iter().map(|l| l.id.to_string()).collect();
            let issued_at = fs.calls();
            let ops = ids.into_iter().map(|id| Op::DeleteLock { id }).collect();
            let acked_at = store.transaction(ops).await.ok().map(|_| fs.calls());
            assert!(acked_at.is_some());
            groups.lock().unwrap()[p].release = Some(Txn { issued_at, acked_at });
        } else {
            previous = Some(index);
        }
        tokio::task::yield_now().await;
    }
}

/// The verdict on a grant and its release, if any, for a cut at call `k`,
/// given whether all that the grant wrote was recovered (`all`): an error
/// when that contradicts what was issued and acknowledged, else how many of
/// the two were in flight at the cut.
fn check_grant(
    k: u64,
    id: &impl std::fmt::Display,
    all: bool,
    grant: &Txn,
    release: Option<&Txn>,
) -> Result<usize, String> {
    let acked = |t: &Txn| t.acked_at.is_some_and(|a| a <= k);
    let issued = |t: &Txn| t.issued_at < k;
    let release_may = release.is_some_and(issued);
    let release_must = release.is_some_and(acked);
    if all && (!issued(grant) || release_must) {
        return Err(format!("{id} present: grant issued {}, release acknowledged {release_must}", issued(grant)));
    }
    if !all && acked(grant) && !release_may {
        return Err(format!("{id} lost: its grant was acknowledged and no release was issued"));
    }
    Ok(usize::from(issued(grant) && !acked(grant)) + usize::from(release_may && !release_must))
}

/// Checks one recovered set of locks against the groups for a cut at call
/// `k`; returns how many groups were in flight at the cut.
fn check(k: u64, locks: &[PersistedLock], groups: &[Group]) -> Result<usize, String> {
    let by_id: BTreeMap<&str, &PersistedLock> = locks.iter().map(|l| (&*l.id, l)).collect();
    let mut known = BTreeSet::new();
    let mut in_flight = 0;
    for g in groups {
        let present: Vec<bool> = g.locks.iter().map(|l| by_id.contains_key(&*l.id)).collect();
        known.extend(g.locks.iter().map(|l| &*l.id));
        let all = present.iter().all(|&p| p);
        if !all && present.iter().any(|&p| p) {
            return Err(format!("transaction torn apart: {:?} present {present:?}", g.locks[0].id));
        }
        in_flight += check_grant(k, &g.locks[0].id, all, &g.grant, g.release.as_ref())?;
        if all {
            for l in &g.locks {
                if by_id[&*l.id] != l {
                    return Err(format!("{} recovered with other contents", l.id));
                }
            }
        }
    }
    if let Some(stranger) = by_id.keys().find(|id| !known.contains(*id)) {
        return Err(format!("{stranger} was never issued"));
    }
    Ok(in_flight)
}

#[test]
fn power_cuts_during_group_commit_and_compaction_lose_no_acknowledged_write() {
    let fs = SimFs::new();
    let dir = store_dir();
    prepare_dir(&fs, &dir).unwrap();
    let images = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&images);
    let select = default_losses();
    fs.set_observer(move |point| {
        for loss in select(point.index(), &point.pending()) {
            sink.lock().unwrap().push((point.index(), loss, point.image(loss)));
        }
    });
    let groups = Arc::new(Mutex::new(Vec::new()));
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let opened_at = runtime.block_on(async {
        let store = Arc::new(
            WalLockStore::open_with_fs(Arc::new(fs.clone()) as Arc<dyn FileSystem>, &dir, crash_options())
                .await
                .unwrap(),
        );
        let opened_at = fs.calls();
        let mut tasks: Vec<_> =
            (0..TASKS).map(|t| tokio::spawn(writer(Arc::clone(&store), fs.clone(), t, Arc::clone(&groups)))).collect();
        tasks.push(tokio::spawn(compactions(Arc::clone(&store), 4, 40)));
        for task in tasks {
            task.await.unwrap();
        }
        let stats = store.stats();
        assert!(stats.compactions >= 4);
        // How much was grouped depends on scheduling; printed, not asserted.
        println!("mean group size {:.2}", stats.mean_batch_size);
        opened_at
    });
    fs.clear_observer();
    let groups = groups.lock().unwrap().clone();
    let images = std::mem::take(&mut *images.lock().unwrap());
    assert_eq!(groups.len(), TASKS * ROUNDS);

    let mut failures = Vec::new();
    let (mut in_flight, mut checked) = (0, 0);
    for (k, loss, image) in &images {
        match open_and_observe(image, &dir, &crash_options()) {
            Ok(observed) => {
                let want_epoch = if opened_at <= *k { 2 } else { observed.epoch.max(1) };
                if observed.epoch != want_epoch || observed.epoch > 2 {
                    failures.push(format!("cut at {k} {loss:?}: epoch {}", observed.epoch));
                }
                match check(*k, &observed.locks, &groups) {
                    Ok(n) => in_flight += n,
                    Err(e) => failures.push(format!("cut at {k} {loss:?}: {e}")),
                }
            }
            Err(e) => failures.push(format!("cut at {k} {loss:?}: open failed: {e}")),
        }
        checked += 1;
    }
    let last = fs.crash(Loss::DropUnsynced);
    let observed = open_and_observe(&last, &dir, &crash_options()).unwrap();
    assert!(check(u64::MAX, &observed.locks, &groups).is_ok());
    assert!(
        failures.is_empty(),
        "{} of {checked} cuts failed; the first:\n{}",
        failures.len(),
        failures[..failures.len().min(8)].join("\n")
    );
    println!("{checked} power cuts during concurrent writes checked; {in_flight} transactions were in flight at them");
    // Every call is a cut point; how many calls there are depends on how
    // the requests were grouped, but never fewer than one per compaction
    // step and one frame per eight requests.
    assert!(checked > 150, "{checked}");
    assert!(in_flight > 20, "the cuts hit transactions in flight: {in_flight}");
}

const PAIRS: usize = 3;
const MIXED_ROUNDS: usize = 12;

/// One grant of locks with their directory-entry record, released later
/// by one transaction.
#[derive(Debug, Clone)]
struct Entry {
    locks: Vec<PersistedLock>,
    record: (String, Vec<u8>, Vec<u8>),
    grant: Txn,
    release: Option<Txn>,
}

/// A durable handle the two tasks of a pair race to consume, each in a
/// transaction that also grants its own lock: exactly one wins.
#[derive(Debug, Clone)]
struct Race {
    handle: DurableHandle,
    locks: [PersistedLock; 2],
    consumes: [Option<(Txn, bool)>; 2],
}

fn race_handle(pair: usize, round: usize) -> DurableHandle {
    let n = (pair * 100 + round) as u64;
    handle(n, n, Some(n), n)
}

async fn mixed_writer(
    store: Arc<WalLockStore>,
    fs: SimFs,
    task: usize,
    entries: Arc<Mutex<Vec<Entry>>>,
    races: Arc<Mutex<Vec<Race>>>,
) {
    let (pair, side) = (task / 2, task % 2);
    let mut previous: Option<usize> = None;
    for round in 0..MIXED_ROUNDS {
        let locks: Vec<PersistedLock> = group_locks(task, round)
            .into_iter()
            .map(|mut l| {
                l.id = format!("m{task}-r{round}-{}", l.id).into();
                l
            })
            .collect();
        let record = (SPACES[round % 2].to_owned(), format!("t{task}/r{round}").into_bytes(), vec![task as u8; round]);
        let mut ops: Vec<Op> = locks.iter().cloned().map(Op::PutLock).collect();
        ops.push(Op::PutRecord { space: record.0.clone(), key: record.1.clone(), value: record.2.clone() });
        let issued_at = fs.calls();
        let acked_at = store.transaction(ops).await.ok().map(|_| fs.calls());
        assert!(acked_at.is_some(), "no fault is injected: every grant succeeds");
        let index = {
            let mut e = entries.lock().unwrap();
            e.push(Entry { locks, record, grant: Txn { issued_at, acked_at }, release: None });
            e.len() - 1
        };
        // The race: consume the pair's handle of this round, with a lock.
        let create_guid = race_handle(pair, round).create_guid.unwrap();
        let lock = races.lock().unwrap()[pair * MIXED_ROUNDS + round].locks[side].clone();
        let issued_at = fs.calls();
        let answer = store.transaction(vec![Op::ConsumeHandleByCreateGuid { create_guid }, Op::PutLock(lock)]).await;
        let won = match answer {
            Ok(_) => true,
            Err(Error::NotFound { .. }) => false,
            Err(e) => panic!("a consume fails only as not found: {e}"),
        };
        let txn = Txn { issued_at, acked_at: Some(fs.calls()) };
        races.lock().unwrap()[pair * MIXED_ROUNDS + round].consumes[side] = Some((txn, won));
        // Every other round, release the previous round's locks and record
        // together.
        if round % 2 == 1
            && let Some(p) = previous.take()
        {
            let entry = entries.lock().unwrap()[p].clone();
            let mut ops: Vec<Op> = entry.locks.iter().map(|l| Op::DeleteLock { id: l.id.to_string() }).collect();
            ops.push(Op::DeleteRecord { space: entry.record.0, key: entry.record.1 });
            let issued_at = fs.calls();
            let acked_at = store.transaction(ops).await.ok().map(|_| fs.calls());
            assert!(acked_at.is_some());
            entries.lock().unwrap()[p].release = Some(Txn { issued_at, acked_at });
        } else {
            previous = Some(index);
        }
        tokio::task::yield_now().await;
    }
}

/// Checks one recovered store against the entries and races for a cut at
/// call `k`; returns how many transactions were in flight at the cut.
fn check_mixed(k: u64, observed: &Observed, entries: &[Entry], races: &[Race]) -> Result<usize, String> {
    let locks: BTreeMap<&str, &PersistedLock> = observed.locks.iter().map(|l| (&*l.id, l)).collect();
    let records: BTreeMap<(&str, &[u8]), &[u8]> =
        observed.records.iter().map(|(s, k, v)| ((s.as_str(), k.as_slice()), v.as_slice())).collect();
    let handles: BTreeMap<&str, &DurableHandle> = observed.handles.iter().map(|h| (h.id.as_str(), h)).collect();
    let acked = |t: &Txn| t.acked_at.is_some_and(|a| a <= k);
    let issued = |t: &Txn| t.issued_at < k;
    let (mut known_locks, mut known_records) = (BTreeSet::new(), BTreeSet::new());
    let mut in_flight = 0;
    for e in entries {
        let key = (e.record.0.as_str(), e.record.1.as_slice());
        known_records.insert(key);
        known_locks.extend(e.locks.iter().map(|l| &*l.id));
        let mut present: Vec<bool> = e.locks.iter().map(|l| locks.contains_key(&*l.id)).collect();
        present.push(records.contains_key(&key));
        let all = present.iter().all(|&p| p);
        if !all && present.iter().any(|&p| p) {
            return Err(format!(
                "records and locks of one transaction torn apart: {:?} present {present:?}",
                e.locks[0].id
            ));
        }
        in_flight += check_grant(k, &e.locks[0].id, all, &e.grant, e.release.as_ref())?;
        if all && (records[&key] != e.record.2.as_slice() || e.locks.iter().any(|l| locks[&*l.id] != l)) {
            return Err(format!("{} recovered with other contents", e.locks[0].id));
        }
    }
    for r in races {
        let winner = r.consumes.iter().position(|c| c.as_ref().is_some_and(|(_, won)| *won)).expect("a winner");
        let loser = 1 - winner;
        known_locks.extend(r.locks.iter().map(|l| &*l.id));
        let (txn, _) = r.consumes[winner].as_ref().expect("issued");
        let held = handles.get(r.handle.id.as_str());
        let restored = locks.contains_key(&*r.locks[winner].id);
        if locks.contains_key(&*r.locks[loser].id) {
            return Err(format!("the lock of the consume that lost the race for {} is present", r.handle.id));
        }
        if held.is_some() == restored {
            return Err(format!(
                "handle {} present {}, the winner's lock present {restored}",
                r.handle.id,
                held.is_some()
            ));
        }
        if held.is_some_and(|h| **h != r.handle) {
            return Err(format!("handle {} recovered with other contents", r.handle.id));
        }
        if held.is_some() && acked(txn) {
            return Err(format!("handle {} is back: its consume was acknowledged", r.handle.id));
        }
        if restored && !issued(txn) {
            return Err(format!("{} present before its consume was issued", r.locks[winner].id));
        }
        in_flight += usize::from(issued(txn) && !acked(txn));
    }
    if let Some(stranger) = locks.keys().find(|id| !known_locks.contains(*id)) {
        return Err(format!("lock {stranger} was never issued"));
    }
    if let Some(stranger) = records.keys().find(|key| !known_records.contains(*key)) {
        return Err(format!("record {stranger:?} was never issued"));
    }
    if observed.handles.len() > races.len() {
        return Err(format!("{} handles, {} were put", observed.handles.len(), races.len()));
    }
    Ok(in_flight)
}

#[test]
fn power_cuts_during_group_commit_keep_records_with_their_locks_and_a_consume_won_once() {
    let fs = SimFs::new();
    let dir = store_dir();
    prepare_dir(&fs, &dir).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    let store = runtime.block_on(async {
        let fs_dyn = Arc::new(fs.clone()) as Arc<dyn FileSystem>;
        let store = WalLockStore::open_with_fs(fs_dyn, &dir, crash_options()).await.unwrap();
        // The handles the pairs race for, durable before the cuts start.
        let handles = (0..PAIRS).flat_map(|p| (0..MIXED_ROUNDS).map(move |r| Op::PutHandle(race_handle(p, r))));
        store.transaction(handles.collect()).await.unwrap();
        Arc::new(store)
    });
    let races: Vec<Race> = (0..PAIRS * MIXED_ROUNDS)
        .map(|i| {
            let (pair, round) = (i / MIXED_ROUNDS, i % MIXED_ROUNDS);
            let lock_of = |side: usize| {
                let mut l = lock(i as u64, (pair * 7 + round + side) as u64);
                l.id = format!("reconnect-p{pair}-r{round}-{side}").into();
                l.server_epoch = 1;
                l
            };
            Race { handle: race_handle(pair, round), locks: [lock_of(0), lock_of(1)], consumes: [None, None] }
        })
        .collect();
    let races = Arc::new(Mutex::new(races));
    let images = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&images);
    let select = default_losses();
    fs.set_observer(move |point| {
        for loss in select(point.index(), &point.pending()) {
            sink.lock().unwrap().push((point.index(), loss, point.image(loss)));
        }
    });
    let entries = Arc::new(Mutex::new(Vec::new()));
    runtime.block_on(async {
        let mut tasks: Vec<_> = (0..2 * PAIRS)
            .map(|t| {
                let (store, fs, entries, races) =
                    (Arc::clone(&store), fs.clone(), Arc::clone(&entries), Arc::clone(&races));
                tokio::spawn(mixed_writer(store, fs, t, entries, races))
            })
            .collect();
        tasks.push(tokio::spawn(compactions(Arc::clone(&store), 3, 30)));
        for task in tasks {
            task.await.unwrap();
        }
    });
    fs.clear_observer();
    drop(store);
    let entries = entries.lock().unwrap().clone();
    let races = races.lock().unwrap().clone();
    let images = std::mem::take(&mut *images.lock().unwrap());
    // Of the two consumers of each handle exactly one got it.
    for r in &races {
        let won: Vec<bool> = r.consumes.iter().map(|c| c.as_ref().expect("both issued").1).collect();
        assert_eq!(won.iter().filter(|&&w| w).count(), 1, "{}: {won:?}", r.handle.id);
    }
    let mut failures = Vec::new();
    let mut in_flight = 0;
    for (k, loss, image) in &images {
        match open_and_observe(image, &dir, &crash_options()) {
            Ok(observed) => match check_mixed(*k, &observed, &entries, &races) {
                Ok(n) => in_flight += n,
                Err(e) => failures.push(format!("cut at {k} {loss:?}: {e}")),
            },
            Err(e) => failures.push(format!("cut at {k} {loss:?}: open failed: {e}")),
        }
    }
    let last = fs.crash(Loss::DropUnsynced);
    let observed = open_and_observe(&last, &dir, &crash_options()).unwrap();
    assert_eq!(check_mixed(u64::MAX, &observed, &entries, &races).map(drop), Ok(()));
    assert!(observed.handles.is_empty(), "every handle was consumed");
    assert!(
        failures.is_empty(),
        "{} of {} cuts failed; the first:\n{}",
        failures.len(),
        images.len(),
        failures[..failures.len().min(8)].join("\n")
    );
    println!(
        "{} power cuts during concurrent mixed writes checked; {in_flight} transactions were in flight",
        images.len()
    );
    assert!(images.len() > 100, "{}", images.len());
    assert!(in_flight > 20, "the cuts hit transactions in flight: {in_flight}");
}
