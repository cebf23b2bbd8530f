//! Cases about atomicity and concurrency: transactions that apply all or
//! nothing, a POSIX split in one step, concurrent writers, and random
//! operation sequences checked against the naive model.

use super::super::Harness;
use super::support::{all, ids};
use lockwal::model::*;
use lockwal::testing::{model::Model, sample};
use lockwal::{Op, Outcome};
use std::sync::Arc;

/// A transaction with one failing operation applies none of its operations.
pub async fn transaction_is_all_or_nothing(mut h: impl Harness) {
    let store = h.open().await;
    store.put_lock(sample::byte_range("keep", "s", "f", "o", "c")).await.unwrap();
    store.put_client(sample::client("c")).await.unwrap();
    let before = all(&store).await;
    let failing = [
        vec![
            Op::PutLock(sample::byte_range("x1", "s", "f", "o", "c")),
            Op::DeleteLock { id: "keep".into() },
            Op::DeleteClient { kind: ClientKind::Nfs4, client_id: "c".into() },
            Op::DeleteLock { id: "ghost".into() },
        ],
        vec![
            Op::DeleteLocksByFile { file_id: "f".into() },
            Op::PutClient(sample::client("d")),
            Op::Reclaim { id: "keep".into(), client_id: "c".into() },
        ],
        vec![Op::EndGrace { share: None }, Op::DeleteLock { id: "keep".into() }, Op::DeleteLock { id: "keep".into() }],
    ];
    for ops in failing {
        assert!(store.transaction(ops).await.is_err());
        assert_eq!(all(&store).await, before);
        assert_eq!(store.list_clients(&ClientQuery::all()).await.unwrap(), vec![sample::client("c")]);
    }
    let outcomes = store
        .transaction(vec![
            Op::PutLock(sample::byte_range("x1", "s", "f", "o", "c")),
            Op::DeleteLocksByFile { file_id: "f".into() },
            Op::PutLock(sample::byte_range("x2", "s", "g", "o", "c")),
            Op::DeleteClient { kind: ClientKind::Nfs4, client_id: "c".into() },
        ])
        .await
        .unwrap();
    assert_eq!(outcomes, vec![Outcome::Done, Outcome::Count(2), Outcome::Done, Outcome::Done]);
    assert_eq!(ids(&all(&store).await), ["x2"]);
    assert!(store.list_clients(&ClientQuery::all()).await.unwrap().is_empty());
    assert_eq!(store.transaction(Vec::new()).await.unwrap(), Vec::new());
}

/// Unlocking the middle of a range (a POSIX split) releases one lock and
/// grants its two fragments in one atomic step.
pub async fn posix_split_in_one_transaction(mut h: impl Harness) {
    let mut store = h.open().await;
    let mut whole = sample::byte_range("r", "s", "f", "o", "c");
    whole.kind = LockKind::ByteRange(ByteRange {
        lock_type: LockType::Exclusive,
        offset: 0,
        length: 0,
        zero_byte: false,
        flavor: RangeFlavor::Posix,
    });
    store.put_lock(whole).await.unwrap();
    let frag = |id: &str, offset, length| {
        let mut l = sample::byte_range(id, "s", "f", "o", "c");
        l.kind = LockKind::ByteRange(ByteRange {
            lock_type: LockType::Exclusive,
            offset,
            length,
            zero_byte: false,
            flavor: RangeFlavor::Posix,
        });
        l
    };
    store
        .transaction(vec![
            Op::DeleteLock { id: "r".into() },
            Op::PutLock(frag("r-lo", 0, 100)),
            Op::PutLock(frag("r-hi", 200, 0)),
        ])
        .await
        .unwrap();
    store = h.reopen(store).await;
    let got = store.list_locks(&LockQuery::by_file("f")).await.unwrap();
    assert_eq!(ids(&got), ["r-hi", "r-lo"]);
    assert!(matches!(got[0].kind, LockKind::ByteRange(ByteRange { offset: 200, length: 0, .. })));
}

/// Many tasks writing at once end in the state a sequential run predicts:
/// each task owns its ids, so the final state does not depend on scheduling.
pub async fn concurrent_writers_match_sequential_model(mut h: impl Harness) {
    const TASKS: usize = 16;
    const OPS: usize = 40;
    let store = h.open().await;
    let script = |t: usize| -> Vec<Vec<Op>> {
        (0..OPS)
            .map(|i| {
                let id = format!("t{t}-{}", i % 7);
                let lock = sample::byte_range(&id, "s", &format!("f{}", i % 5), &format!("o{t}"), &format!("c{t}"));
                match i % 6 {
                    0..=2 => vec![Op::PutLock(lock)],
                    3 => vec![Op::DeleteLocksByClient { client_id: format!("c{t}-none") }],
                    4 => vec![
                        Op::PutLock(lock.clone()),
                        Op::PutLock(sample::byte_range(&format!("{id}x"), "s", "f", "o", &format!("c{t}"))),
                    ],
                    _ => vec![Op::DeleteLock { id: format!("t{t}-{}", (i + 3) % 7) }],
                }
            })
            .collect()
    };
    let mut model = Model::new(store.epoch().await.unwrap());
    for t in 0..TASKS {
        for ops in script(t) {
            let _ = model.apply(&ops);
        }
    }
    let handles: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = Arc::clone(&store);
            let ops = script(t);
            tokio::spawn(async move {
                for txn in ops {
                    let _ = store.transaction(txn).await;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    let want = model.list(&LockQuery::all());
    assert!(want.len() > TASKS * 3);
    assert_eq!(all(&store).await, want);
}

/// Random operation sequences with restarts match the naive model.
pub async fn random_operations_match_model(h: impl Harness) {
    super::super::props::check_random_sequences(h, 24, 60).await;
}
