//! Checked grants across connections: serialized per file in the database,
//! not in the process.

use super::*;

/// A checked grant in a transaction still open on one connection (a
/// caller's, through `transaction_in`) holds off a conflicting checked grant
/// on the same file from the store's own connections until it commits; that
/// grant then sees the committed lock and is refused naming it. A grant on
/// another file does not wait. Without the per-file lock in the database
/// the second grant would read no conflicting row (the first is not
/// committed) and both would be granted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checked_grants_on_one_file_serialize_across_connections() {
    let Some(scratch) = Scratch::new() else { return };
    let store = Arc::new(scratch.open().await);
    let mut client = caller_client(&scratch).await;
    let holder = backend_pid(&client).await;
    let tx = client.transaction().await.unwrap();
    let first = sample::byte_range("first", "s", "f", "o1", "c1");
    store.transaction_in(&tx, vec![Op::Grant(first)]).await.expect("nothing holds the file");
    store.grant(sample::byte_range("elsewhere", "s", "g", "o2", "c2")).await.expect("another file does not wait");
    let racing = {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.grant(sample::byte_range("second", "s", "f", "o2", "c2")).await })
    };
    wait_blocked_by(&scratch, holder).await;
    assert!(!racing.is_finished(), "the second grant waits for the first's transaction");
    tx.commit().await.unwrap();
    match racing.await.unwrap() {
        Err(Error::Conflict { id, conflicts }) => {
            assert_eq!((id.as_str(), ids(&conflicts.holders)), ("second", vec!["first".to_string()]))
        }
        other => panic!("the second grant: {other:?}"),
    }
    assert_eq!(all_ids(&*store).await, ["elsewhere", "first"]);
}

/// A checked grant refused inside a caller's transaction leaves it aborted,
/// like every refused operation there, and nothing of it commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_checked_grant_aborts_the_caller_transaction() {
    let Some(scratch) = Scratch::new() else { return };
    let store = scratch.open().await;
    store.put_lock(sample::byte_range("held", "s", "f", "o1", "c1")).await.unwrap();
    let mut client = caller_client(&scratch).await;
    let tx = client.transaction().await.unwrap();
    let ops = vec![
        Op::PutLock(sample::byte_range("before", "s", "g", "o2", "c2")),
        Op::Grant(sample::byte_range("refused", "s", "f", "o2", "c2")),
    ];
    let refused = store.transaction_in(&tx, ops).await;
    assert!(matches!(&refused, Err(Error::Conflict { id, .. }) if id == "refused"), "{refused:?}");
    let _ = tx.commit().await;
    assert_eq!(all_ids(&store).await, ["held"]);
}

/// A grant alone is decided in one flight when no row of its file may
/// refuse it, and when a row refuses it; a row that may refuse it but
/// turns out compatible (the owner's own overlapping range, which the
/// statement's filter keeps) sends it through a transaction that grants it.
/// Each way ends as the rules say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_alone_ends_as_the_rules_say_on_every_path() {
    let Some(scratch) = Scratch::new() else { return };
    let store = scratch.open().await;
    let epoch = store.epoch().await.unwrap();
    store.grant(sample::byte_range("first", "s", "f", "o1", "c1")).await.expect("alone on the file");
    store.grant(sample::byte_range("own", "s", "f", "o1", "c1")).await.expect("the owner's own range");
    let refused = store.grant(sample::byte_range("other", "s", "f", "o2", "c2")).await;
    match refused {
        Err(Error::Conflict { conflicts, .. }) => assert_eq!(ids(&conflicts.holders), ["first", "own"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(all_ids(&store).await, ["first", "own"]);
    let granted = store.get_lock("own").await.unwrap();
    assert_eq!(granted.server_epoch, epoch);
}
