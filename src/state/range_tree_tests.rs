//! The range trees built at a file's first test query (decision 0059) stay
//! in step with the file's locks: through grants that build them in the
//! middle of a transaction, the writer's trial and its rollback, upserts
//! that move or retype a lock, bulk deletes, and a file dropping below 16
//! locks and growing past 64 again in one transaction; and readers making
//! the first query at once build one tree. (Found by a review of the
//! change, as tests it did not have.)
use super::{Command, State, Undo};
use crate::model::*;
use crate::op::Op;
use crate::testing::conflict::{Answer, answer};
use proptest::prelude::*;
use std::collections::BTreeMap;

fn lk(id: u16, file: u8, owner: u8, kind: LockKind) -> PersistedLock {
    PersistedLock {
        id: format!("l{id}").into(),
        share: "s".into(),
        file_id: format!("f{file}").into(),
        owner_id: format!("o{owner}").into(),
        client_id: format!("c{}", owner % 3).into(),
        kind,
        acquired_at: Timestamp::from_unix_micros(1),
        server_epoch: 0,
    }
}

fn range(offset: u64, length: u64, excl: bool) -> LockKind {
    LockKind::ByteRange(ByteRange {
        lock_type: if excl { LockType::Exclusive } else { LockType::Shared },
        offset,
        length,
        zero_byte: false,
        flavor: RangeFlavor::Posix,
    })
}

/// Puts of the locks `ids` on file f0 by owner o0, lock `i` exclusive over
/// the 5 bytes at `10 * i`.
fn crowd(ids: std::ops::Range<u16>) -> Vec<Op> {
    ids.map(|i| Op::PutLock(lk(i, 0, 0, range(u64::from(i) * 10, 5, true)))).collect()
}

fn share() -> LockKind {
    LockKind::Share(ShareReservation { access: ShareAccess::Read, deny: ShareDeny::None })
}

fn kind() -> impl Strategy<Value = LockKind> {
    prop_oneof![
        5 => (0..40u64, 0..5u64, any::<bool>()).prop_map(|(o, l, e)| range(o * 10, l * 7, e)),
        1 => Just(share()),
    ]
}

fn a_lock() -> impl Strategy<Value = PersistedLock> {
    (0..150u16, 0..6u8, 0..8u8, kind()).prop_map(|(id, f, o, k)| lk(id, if f == 0 { 1 } else { 0 }, o, k))
}

fn an_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => a_lock().prop_map(Op::PutLock),
        2 => a_lock().prop_map(Op::Grant),
        1 => a_lock().prop_map(Op::UpdateLock),
        3 => (0..150u16).prop_map(|i| Op::DeleteLock { id: format!("l{i}") }),
        1 => (0..2u8).prop_map(|f| Op::DeleteLocksByFile { file_id: format!("f{f}") }),
        1 => (0..3u8).prop_map(|c| Op::DeleteLocksByClient { client_id: format!("c{c}") }),
    ]
}

fn a_cmd() -> impl Strategy<Value = Command> {
    prop::collection::vec(an_op(), 1..90).prop_map(Command::Txn)
}

fn model(state: &State) -> BTreeMap<String, PersistedLock> {
    state.list(&LockQuery::all()).into_iter().map(|l| (l.id.to_string(), l)).collect()
}

fn compare(state: &State, candidates: &[PersistedLock]) {
    let m = model(state);
    for c in candidates {
        let got = state.test_lock(c);
        let got = Answer {
            holders: got.holders.iter().map(|l| l.id.to_string()).collect(),
            to_break: got.to_break.iter().map(|l| l.id.to_string()).collect(),
        };
        assert_eq!(got, answer(c, &m), "{c:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    /// Transactions with grants mid-way (a test query that builds the tree),
    /// half-way failures, upserts moving/retyping locks, bulk deletes, and
    /// groups applied with one undo log and rolled back (the trial): every
    /// built tree matches its file, and answers equal the naive model's.
    #[test]
    fn range_trees_stay_in_step_through_grants_trials_and_rollbacks(seed_locks in prop::collection::vec(a_lock(), 0..150),
                        groups in prop::collection::vec((prop::collection::vec(a_cmd(), 1..4), any::<bool>(), any::<bool>()), 1..12),
                        candidates in prop::collection::vec(a_lock(), 1..4)) {
        let mut state = State::new();
        state.apply(&Command::Open { epoch: 1 }).unwrap();
        state.apply(&Command::Txn(seed_locks.into_iter().map(Op::PutLock).collect())).unwrap();
        state.check_invariants();
        for (group, trial, query) in groups {
            if trial {
                let before = model(&state);
                let mut undo = Undo::recording();
                let verdicts: Vec<_> = group.iter().map(|c| format!("{:?}", state.apply_undoable(c, &mut undo))).collect();
                state.check_invariants();
                compare(&state, &candidates);
                state.rollback(undo);
                state.check_invariants();
                prop_assert_eq!(model(&state), before);
                for (c, v) in group.iter().zip(verdicts) {
                    prop_assert_eq!(format!("{:?}", state.apply(c)), v);
                    state.check_invariants();
                }
            } else {
                for c in &group {
                    let _ = state.apply(c);
                    state.check_invariants();
                }
            }
            if query {
                compare(&state, &candidates);
                state.check_invariants();
            }
        }
        compare(&state, &candidates);
        state.check_invariants();
    }
}

/// A built tree; one transaction takes the file below 16 (index dropped)
/// and back above 64 (new index, unbuilt), grants on it (tree built
/// mid-transaction), then fails: rollback must leave a tree equal to the file.
#[test]
fn a_file_dropped_and_regrown_in_a_failed_transaction_keeps_a_true_tree() {
    let mut state = State::new();
    state.apply(&Command::Open { epoch: 1 }).unwrap();
    state.apply(&Command::Txn(crowd(0..70))).unwrap();
    let probe = lk(999, 0, 1, range(0, 10_000, true));
    assert_eq!(state.test_lock(&probe).holders.len(), 70);
    assert_eq!(state.range_tree_built("f0"), Some(true));
    let mut ops: Vec<Op> = (0..60).map(|i| Op::DeleteLock { id: format!("l{i}") }).collect();
    ops.extend(crowd(100..170));
    ops.push(Op::Grant(lk(500, 0, 0, range(1, 1, true)))); // same owner: granted, builds the tree
    ops.push(Op::PutLock(lk(5, 0, 2, share()))); // re-add a deleted id as a share
    ops.push(Op::Grant(lk(501, 0, 9, range(1000, 1, true)))); // conflicts with l100: fails
    let err = state.apply(&Command::Txn(ops));
    assert!(err.is_err());
    state.check_invariants();
    compare(&state, &[probe.clone(), lk(998, 0, 3, share())]);
    state.check_invariants();
    assert_eq!(state.test_lock(&probe).holders.len(), 70);
}

/// Many readers build one unbuilt tree at once.
#[test]
fn readers_making_the_first_query_at_once_build_one_tree() {
    let mut state = State::new();
    state.apply(&Command::Open { epoch: 1 }).unwrap();
    state.apply(&Command::Txn(crowd(0..3000))).unwrap();
    // Make the tree unbuilt: drop below 16 and regrow without a query.
    state.apply(&Command::Txn(vec![Op::DeleteLocksByFile { file_id: "f0".into() }])).unwrap();
    state.apply(&Command::Txn(crowd(0..3000))).unwrap();
    assert_eq!(state.range_tree_built("f0"), Some(false));
    let lock = std::sync::RwLock::new(state);
    let answers: Vec<usize> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..8u64)
            .map(|t| {
                let lock = &lock;
                s.spawn(move || {
                    lock.read().unwrap().test_lock(&lk(9999, 0, 1, range(t * 100, 1000, true))).holders.len()
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(answers.iter().all(|&n| n == 100), "{answers:?}");
    lock.read().unwrap().check_invariants();
}
