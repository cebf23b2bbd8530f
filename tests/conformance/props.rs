//! Random operation sequences, with restarts, checked against the naive
//! model in `lockwal::testing::model`. The strategies are also used by the
//! shrinking `proptest!` tests of the state machine.

use super::Harness;
use lockwal::model::*;
use lockwal::testing::model::{Model, error_kind};
use lockwal::testing::sample;
use lockwal::{LockQuery, LockStore, Op};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use std::sync::Arc;

/// One step of a random workload.
#[derive(Debug, Clone)]
pub enum Action {
    /// A transaction of one or more operations.
    Txn(Vec<Op>),
    /// Restart the store, closing it first when `clean`.
    Restart {
        /// Close before the restart.
        clean: bool,
    },
}

fn key(prefix: &'static str, n: u8) -> impl Strategy<Value = String> {
    (0..n).prop_map(move |i| format!("{prefix}{i}"))
}

/// A lock from a small key space so that operations collide often.
pub fn lock() -> impl Strategy<Value = PersistedLock> {
    let kinds = sample::every_kind();
    (
        key("l", 10),
        key("s", 2),
        key("f", 4),
        key("o", 3),
        key("c", 3),
        0..kinds.len() + 1,
        any::<u64>(),
        prop_oneof![Just(0u64), 1u64..1000, Just(u64::MAX)],
        any::<i64>(),
    )
        .prop_map(move |(id, share, file_id, owner_id, client_id, k, offset, length, micros)| {
            let kind = match kinds.get(k) {
                Some(lock) => lock.kind.clone(),
                None => LockKind::ByteRange(ByteRange {
                    lock_type: LockType::Shared,
                    offset,
                    length,
                    zero_byte: false,
                    flavor: RangeFlavor::Posix,
                }),
            };
            PersistedLock {
                id: id.into(),
                share: share.into(),
                file_id: file_id.into(),
                owner_id: owner_id.into(),
                client_id: client_id.into(),
                kind,
                acquired_at: Timestamp::from_unix_micros(micros),
                server_epoch: 0,
            }
        })
}

/// One operation, sometimes invalid.
pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => lock().prop_map(Op::PutLock),
        3 => key("l", 10).prop_map(|id| Op::DeleteLock { id }),
        1 => key("c", 4).prop_map(|client_id| Op::DeleteLocksByClient { client_id }),
        1 => key("f", 5).prop_map(|file_id| Op::DeleteLocksByFile { file_id }),
        1 => key("c", 3).prop_map(|c| Op::PutClient(sample::client(&c))),
        1 => key("c", 3).prop_map(|client_id| Op::DeleteClient { kind: ClientKind::Nfs4, client_id }),
        2 => (key("l", 10), key("c", 3)).prop_map(|(id, client_id)| Op::Reclaim { id, client_id }),
        1 => Just(Op::EndGrace { share: None }),
        1 => lock().prop_map(|mut l| { l.owner_id = "".into(); Op::PutLock(l) }),
    ]
}

/// One step: mostly transactions, sometimes a restart.
pub fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        12 => proptest::collection::vec(op(), 1..4).prop_map(Action::Txn),
        1 => any::<bool>().prop_map(|clean| Action::Restart { clean }),
    ]
}

async fn assert_same_state(store: &Arc<dyn LockStore>, model: &Model, context: &str) {
    assert_eq!(store.list_locks(&LockQuery::all()).await.unwrap(), model.list(&LockQuery::all()), "{context}");
    let clients: Vec<ClientRecord> = model.clients.values().cloned().collect();
    assert_eq!(store.list_clients(&ClientQuery::all()).await.unwrap(), clients, "{context}");
    assert_eq!(store.epoch().await.unwrap(), model.epoch, "{context}");
}

/// Runs `rounds` random sequences of `steps` actions on one store (the
/// model follows it across rounds) and compares every outcome and, after
/// each round, the whole state.
pub async fn check_random_sequences(mut h: impl Harness, rounds: usize, steps: usize) {
    let mut runner = TestRunner::deterministic();
    let strategy = proptest::collection::vec(action(), steps);
    let mut store = h.open().await;
    let mut model = Model::new(store.epoch().await.unwrap());
    let mut restarts = 0;
    for round in 0..rounds {
        let actions = strategy.new_tree(&mut runner).expect("strategy").current();
        for (step, action) in actions.into_iter().enumerate() {
            let context = format!("round {round} step {step}: {action:?}");
            match action {
                Action::Txn(ops) => {
                    let want = model.apply(&ops);
                    let got = store.transaction(ops).await;
                    match (&got, &want) {
                        (Ok(g), Ok(w)) => assert_eq!(g, w, "{context}"),
                        (Err(g), Err(w)) => assert_eq!(error_kind(g), error_kind(w), "{context}: {g} vs {w}"),
                        _ => panic!("{context}: store {got:?}, model {want:?}"),
                    }
                }
                Action::Restart { clean } => {
                    if clean {
                        store.close().await.unwrap();
                    }
                    store = h.reopen(store).await;
                    model.restart();
                    restarts += 1;
                    assert_eq!(store.previous_shutdown_was_clean().await.unwrap(), clean, "{context}");
                }
            }
        }
        assert_same_state(&store, &model, &format!("after round {round}")).await;
    }
    assert!(restarts > 0, "the workload never restarted the store");
}
