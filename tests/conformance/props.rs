//! Random operation sequences, with restarts, checked against the naive
//! model in `lockwal::testing::model`. The strategies are also used by the
//! shrinking `proptest!` tests of the state machine.

use super::Harness;
use lockwal::model::*;
use lockwal::testing::model::{Model, error_kind};
use lockwal::testing::sample;
use lockwal::testing::workload::{self, SPACES};
use lockwal::{Error, LockQuery, LockStore, Op};
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

/// A durable handle from a small key space: six ids, four file ids, four
/// create GUIDs or none (v1), so that puts collide and consumes find them;
/// times from small sets, so that expiry instants coincide.
pub fn handle() -> impl Strategy<Value = DurableHandle> {
    (0..6u64, 0..4u64, prop_oneof![1 => Just(None), 3 => (0..4u64).prop_map(Some)], 0..64u64)
        .prop_map(|(n, file, guid, variant)| workload::handle(n, file, guid, variant))
}

/// An instant at or next to one that handles expire from.
fn expiry_instant() -> impl Strategy<Value = Timestamp> {
    (0..8i64, prop_oneof![Just(0i64), Just(1), Just(-1), Just(1000), Just(1001), Just(60_000_000)])
        .prop_map(|(secs, micros)| Timestamp::from_unix_micros(workload::DISCONNECTED_FROM + secs * 1_000_000 + micros))
}

/// A keyspace (two that share a prefix) and a key (six, sharing prefixes).
fn record_slot() -> impl Strategy<Value = (String, Vec<u8>)> {
    (0..2usize, 0..6u64).prop_map(|(space, key)| (SPACES[space].to_owned(), workload::record_key(key)))
}

/// A record value from a small set (so that swaps find what they expect).
fn record_value() -> impl Strategy<Value = Vec<u8>> {
    (0..3u64).prop_map(workload::record_value)
}

/// A durable-handle or record operation.
pub fn extra_op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => handle().prop_map(Op::PutHandle),
        1 => (0..6u8).prop_map(|n| Op::DeleteHandle { id: format!("h{n}") }),
        2 => (0..4u64).prop_map(|n| Op::ConsumeHandleByFileId { file_id: workload::file_id(n) }),
        2 => (0..4u64).prop_map(|n| Op::ConsumeHandleByCreateGuid { create_guid: workload::create_guid(n) }),
        1 => expiry_instant().prop_map(|now| Op::ExpireHandles { now }),
        2 => (record_slot(), record_value()).prop_map(|((space, key), value)| Op::PutRecord { space, key, value }),
        2 => record_slot().prop_map(|(space, key)| Op::DeleteRecord { space, key }),
        3 => (record_slot(), proptest::option::of(record_value()), proptest::option::of(record_value()))
            .prop_map(|((space, key), expected, value)| Op::SwapRecord { space, key, expected, value }),
    ]
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
        8 => extra_op(),
        4 => lock().prop_map(Op::Grant),
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
    // Durable handles through every index, records through scans.
    let mut queries = vec![HandleQuery::All];
    queries.extend((0..3u8).map(|i| HandleQuery::AppInstance([0xA0 | i; 16])));
    queries.extend((0..3).map(|i| HandleQuery::Share(format!("s{i}"))));
    queries.extend((0..4).map(|i| HandleQuery::FileHandle(format!("f{i}").into_bytes())));
    for query in queries {
        let want = model.list_handles(&query);
        assert_eq!(store.list_handles(&query).await.unwrap(), want, "{context}: {query:?}");
    }
    for n in 0..4 {
        let by_file = model.handles.values().find(|h| h.file_id == workload::file_id(n)).cloned();
        assert_eq!(store.get_handle_by_file_id(&workload::file_id(n)).await.ok(), by_file, "{context}");
        let guid = workload::create_guid(n);
        let by_guid = model.handles.values().find(|h| h.create_guid == Some(guid)).cloned();
        assert_eq!(store.get_handle_by_create_guid(&guid).await.ok(), by_guid, "{context}");
    }
    for space in SPACES {
        let scans = [
            RecordScan::all(usize::MAX),
            RecordScan::prefix(b"a".to_vec(), usize::MAX),
            RecordScan::prefix(b"ab".to_vec(), 1),
            RecordScan { start: Some(b"a\0".to_vec()), end: Some(b"abc".to_vec()), ..RecordScan::all(2) },
        ];
        for scan in scans {
            let want = model.scan_records(space, &scan);
            assert_eq!(store.scan_records(space, &scan).await.unwrap(), want, "{context}: {space} {scan:?}");
        }
    }
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
                        (Err(Error::Conflict { conflicts: g, .. }), Err(Error::Conflict { conflicts: w, .. })) => {
                            assert_eq!(g, w, "{context}")
                        }
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
