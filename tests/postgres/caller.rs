//! Operations inside a caller's own transaction
//! (`PostgresLockStore::transaction_in`): committed with the caller's
//! statements or rolled back with them, fenced like every write, aborted on
//! any refusal, its `search_path` left as it was, refused on another
//! database.

use super::*;
use lockwal::Outcome;
use lockwal::error::Entity;
use tokio_postgres::error::SqlState;

/// A caller's own connection (the server's default `search_path`) with a
/// table of its own, `app_files`, and a temporary table named like one of
/// the store's, which must not stand in for it.
async fn caller(scratch: &Scratch) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&scratch.url, NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE TEMPORARY TABLE app_files (name text PRIMARY KEY);
             CREATE TEMPORARY TABLE lockwal_records (space text, key bytea, value bytea)",
        )
        .await
        .unwrap();
    client
}

async fn app_files(client: &tokio_postgres::Client) -> Vec<String> {
    client.query("SELECT name FROM app_files ORDER BY name", &[]).await.unwrap().iter().map(|r| r.get(0)).collect()
}

async fn search_path(client: &impl tokio_postgres::GenericClient) -> String {
    client.query_one("SHOW search_path", &[]).await.unwrap().get(0)
}

fn ops() -> Vec<Op> {
    vec![
        Op::PutLock(lock("l1")),
        Op::PutRecord { space: "dir".into(), key: b"a.txt".to_vec(), value: b"fh-a".to_vec() },
        Op::PutHandle(sample::handle(1)),
        Op::SwapRecord { space: "dir".into(), key: b"b.txt".to_vec(), expected: None, value: Some(b"fh-b".to_vec()) },
    ]
}

/// What `ops` leave in the store, or that none of it is there.
async fn assert_ops_applied(store: &PostgresLockStore, applied: bool, what: &str) {
    let lock = store.get_lock("l1").await;
    let record = store.get_record("dir", b"a.txt").await.unwrap();
    let swapped = store.get_record("dir", b"b.txt").await.unwrap();
    let handle = store.get_handle("open-1").await;
    if applied {
        assert_eq!(lock.unwrap().id.as_ref(), "l1", "{what}");
        assert_eq!((record, swapped), (Some(b"fh-a".to_vec()), Some(b"fh-b".to_vec())), "{what}");
        assert_eq!(handle.unwrap(), sample::handle(1), "{what}");
    } else {
        assert!(matches!(lock, Err(Error::NotFound { entity: Entity::Lock, .. })), "{what}: {lock:?}");
        assert_eq!((record, swapped), (None, None), "{what}");
        assert!(matches!(handle, Err(Error::NotFound { entity: Entity::Handle, .. })), "{what}: {handle:?}");
    }
}

/// The caller's statements and the store's operations commit in one
/// COMMIT: neither is visible before it, both after; the caller's
/// `search_path` is as it was once the call returns, so its own tables
/// resolve as before, and the caller's temporary `lockwal_records` took no
/// record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_transaction_commits_its_statements_and_the_operations_together() {
    let Some(scratch) = Scratch::new() else { return };
    let store = scratch.open().await;
    let mut client = caller(&scratch).await;
    let observer = caller(&scratch).await;
    let path = search_path(&client).await;
    assert!(!path.contains(&scratch.schema), "{path}");

    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO app_files VALUES ('a.txt')", &[]).await.unwrap();
    let outcomes = store.transaction_in(&tx, ops()).await.unwrap();
    assert_eq!(outcomes, vec![Outcome::Done; 4]);
    assert_eq!(search_path(&tx).await, path, "the caller's search_path is restored");
    tx.execute("INSERT INTO app_files VALUES ('b.txt')", &[]).await.unwrap();
    assert_ops_applied(&store, false, "before the COMMIT").await;
    let outcomes =
        store.transaction_in(&tx, vec![Op::ConsumeHandleByFileId { file_id: sample::handle(1).file_id }]).await;
    assert_eq!(outcomes.unwrap(), vec![Outcome::Handle(Box::new(sample::handle(1)))], "sees its own earlier writes");
    store.transaction_in(&tx, vec![Op::PutHandle(sample::handle(1))]).await.unwrap();
    tx.commit().await.unwrap();

    assert_ops_applied(&store, true, "after the COMMIT").await;
    assert_eq!(app_files(&client).await, ["a.txt", "b.txt"]);
    let decoy: i64 = client.query_one("SELECT count(*) FROM lockwal_records", &[]).await.unwrap().get(0);
    assert_eq!(decoy, 0, "the caller's temporary table took no record");
    assert_eq!(search_path(&client).await, path);
    assert!(app_files(&observer).await.is_empty(), "the observer's own temporary table");
}

/// A caller transaction that rolls back, or is dropped, leaves nothing of
/// the caller's statements or of the operations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolled_back_caller_transaction_leaves_nothing() {
    let Some(scratch) = Scratch::new() else { return };
    let store = scratch.open().await;
    let mut client = caller(&scratch).await;
    for rollback in [true, false] {
        let tx = client.transaction().await.unwrap();
        tx.execute("INSERT INTO app_files VALUES ('a.txt')", &[]).await.unwrap();
        store.transaction_in(&tx, ops()).await.unwrap();
        if rollback {
            tx.rollback().await.unwrap();
        } else {
            drop(tx);
        }
        assert_ops_applied(&store, false, &format!("rollback {rollback}")).await;
        assert!(app_files(&client).await.is_empty());
    }
    // The store and the connection are fine afterwards.
    let tx = client.transaction().await.unwrap();
    store.transaction_in(&tx, ops()).await.unwrap();
    tx.commit().await.unwrap();
    assert_ops_applied(&store, true, "a later transaction").await;
}

/// Another node opens between the caller's BEGIN (and its first
/// statement) and the operations: the call fails with `Fenced`, the
/// transaction is aborted (no later statement runs, a COMMIT commits
/// nothing), and after the rollback nothing of it is written. Later calls
/// are refused by the latch, and abort their transaction too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_transaction_fenced_after_begin_fails_and_writes_nothing() {
    let Some(scratch) = Scratch::new() else { return };
    let store = scratch.open().await;
    let ours = store.epoch().await.unwrap();
    let mut client = caller(&scratch).await;

    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO app_files VALUES ('a.txt')", &[]).await.unwrap();
    let other = scratch.open().await;
    let current = other.epoch().await.unwrap();
    assert_fenced(store.transaction_in(&tx, ops()).await, ours, current);
    let later = tx.execute("INSERT INTO app_files VALUES ('b.txt')", &[]).await;
    assert_eq!(later.unwrap_err().code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION));
    tx.rollback().await.unwrap();
    assert!(app_files(&client).await.is_empty());
    assert_ops_applied(&other, false, "fenced").await;

    // The latch: refused without asking the database, and the caller's
    // COMMIT of the transaction commits nothing either.
    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO app_files VALUES ('c.txt')", &[]).await.unwrap();
    assert_fenced(store.transaction_in(&tx, vec![]).await, ours, current);
    let _ = tx.commit().await;
    assert!(app_files(&client).await.is_empty(), "a COMMIT after the refusal committed nothing");
    assert_ops_applied(&other, false, "fenced").await;

    // The new node writes through the same connection.
    let tx = client.transaction().await.unwrap();
    other.transaction_in(&tx, ops()).await.unwrap();
    tx.commit().await.unwrap();
    assert_ops_applied(&other, true, "the new node").await;
}

/// A caller's transaction that has passed the fence (with operations, or
/// with none: a transaction of the caller's own statements ordered by the
/// epoch) holds off another node's open until it ends; the new node then
/// sees what it committed, and the old node is fenced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_waits_for_a_caller_transaction_that_took_the_fence() {
    let Some(scratch) = Scratch::new() else { return };
    let mut client = caller(&scratch).await;
    let holder = backend_pid(&client).await;
    for with_ops in [true, false] {
        let store = scratch.open().await;
        let ours = store.epoch().await.unwrap();
        let tx = client.transaction().await.unwrap();
        let name = format!("{with_ops}.txt");
        tx.execute("INSERT INTO app_files VALUES ($1)", &[&name]).await.unwrap();
        let ops = if with_ops { vec![Op::PutLock(lock(&name))] } else { vec![] };
        let outcomes = store.transaction_in(&tx, ops).await.unwrap();
        assert_eq!(outcomes.len(), usize::from(with_ops));
        let config = scratch.config();
        let opening = tokio::spawn(async move { PostgresLockStore::open(config).await });
        wait_blocked_by(&scratch, holder).await;
        assert!(!opening.is_finished(), "with ops {with_ops}: the open waits for the caller's transaction");
        tx.commit().await.unwrap();
        let other = opening.await.unwrap().unwrap();
        assert_eq!(other.epoch().await.unwrap(), ours + 1);
        assert_eq!(other.get_lock(&name).await.is_ok(), with_ops);
        assert!(app_files(&client).await.contains(&name));
        assert_fenced(store.put_lock(lock("late")).await, ours, ours + 1);
    }
}

/// A refused operation (not found, condition failed, handle conflict)
/// fails the call with its own error and leaves the caller's transaction
/// aborted, so that neither the operations before it nor the caller's
/// statements can commit. Invalid input is refused before anything is
/// sent, the transaction untouched. A savepoint of the caller's lets it
/// carry on after a refusal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_operation_aborts_the_caller_transaction() {
    let Some(scratch) = Scratch::new() else { return };
    let store = scratch.open().await;
    store.put_handle(sample::handle(7)).await.unwrap();
    let mut client = caller(&scratch).await;
    let mut conflicting = sample::handle(8);
    conflicting.file_id = sample::handle(7).file_id;
    type Expected = fn(&Error) -> bool;
    let refusals: [(Op, Expected); 3] = [
        (Op::DeleteLock { id: "missing".into() }, |e| matches!(e, Error::NotFound { entity: Entity::Lock, .. })),
        (Op::SwapRecord { space: "dir".into(), key: b"k".to_vec(), expected: Some(b"x".to_vec()), value: None }, |e| {
            matches!(e, Error::ConditionFailed { reason: "the record is absent", .. })
        }),
        (Op::PutHandle(conflicting), |e| matches!(e, Error::HandleConflict { field: "file_id", .. })),
    ];
    for (refused, expected) in refusals {
        let tx = client.transaction().await.unwrap();
        tx.execute("INSERT INTO app_files VALUES ('a.txt')", &[]).await.unwrap();
        let mut batch = ops();
        batch.push(refused.clone());
        let result = store.transaction_in(&tx, batch).await;
        assert!(result.as_ref().is_err_and(expected), "{refused:?}: {result:?}");
        let later = tx.execute("INSERT INTO app_files VALUES ('b.txt')", &[]).await;
        assert_eq!(later.unwrap_err().code(), Some(&SqlState::IN_FAILED_SQL_TRANSACTION), "{refused:?}");
        let _ = tx.commit().await;
        assert!(app_files(&client).await.is_empty(), "{refused:?}");
        assert_ops_applied(&store, false, &format!("{refused:?}")).await;
    }

    let tx = client.transaction().await.unwrap();
    tx.execute("INSERT INTO app_files VALUES ('a.txt')", &[]).await.unwrap();
    let invalid =
        store.transaction_in(&tx, vec![Op::PutRecord { space: "".into(), key: vec![1], value: vec![] }]).await;
    assert!(matches!(invalid, Err(Error::InvalidInput { field: "space", .. })), "{invalid:?}");
    tx.execute("INSERT INTO app_files VALUES ('b.txt')", &[]).await.expect("untouched by invalid input");
    tx.commit().await.unwrap();
    assert_eq!(app_files(&client).await, ["a.txt", "b.txt"]);

    let mut tx = client.transaction().await.unwrap();
    let savepoint = tx.savepoint("attempt").await.unwrap();
    let missing = store.transaction_in(&savepoint, vec![Op::DeleteHandle { id: "missing".into() }]).await;
    assert!(matches!(missing, Err(Error::NotFound { entity: Entity::Handle, .. })), "{missing:?}");
    savepoint.rollback().await.unwrap();
    tx.execute("INSERT INTO app_files VALUES ('c.txt')", &[]).await.unwrap();
    store.transaction_in(&tx, ops()).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(app_files(&client).await, ["a.txt", "b.txt", "c.txt"]);
    assert_ops_applied(&store, true, "after the savepoint").await;
}

/// A transaction on another database, even one with a store in a schema of
/// the same name, is refused (`InvalidInput`, field `transaction`) and
/// nothing is written to either store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_transaction_on_another_database_is_refused() {
    let Some(scratch) = Scratch::new() else { return };
    let store = scratch.open().await;
    let admin = scratch.sql().await;
    let database = scratch.schema.replace("lockwal_t", "lockwal_db");
    if let Err(e) = admin.batch_execute(&format!("CREATE DATABASE {database}")).await {
        let _ = writeln!(std::io::stderr(), "SKIPPED: cannot create a second database: {e}");
        return;
    }
    let (base, query) = scratch.url.split_once('?').map_or((scratch.url.as_str(), ""), |(b, q)| (b, q));
    let url = format!(
        "{}/{database}{}",
        base.rsplit_once('/').unwrap().0,
        if query.is_empty() { String::new() } else { format!("?{query}") }
    );
    let result = async {
        let there =
            PostgresLockStore::open(PostgresConfig::new(&url).with_schema(&scratch.schema).with_auto_migrate(true))
                .await
                .unwrap();
        let (mut client, connection) = tokio_postgres::connect(&url, NoTls).await.unwrap();
        tokio::spawn(connection);
        let tx = client.transaction().await.unwrap();
        let refused = store.transaction_in(&tx, ops()).await;
        drop(tx);
        let written = there.get_lock("l1").await.is_ok();
        there.close().await.unwrap();
        (refused, written)
    }
    .await;
    admin.batch_execute(&format!("DROP DATABASE {database} WITH (FORCE)")).await.unwrap();
    match result.0 {
        Err(Error::InvalidInput { field: "transaction", reason }) => {
            assert!(reason.contains(&format!("{database:?}")), "{reason}");
        }
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    assert!(!result.1, "nothing written to the other database's store");
    assert_ops_applied(&store, false, "the store's own database").await;
}

/// Any isolation level: under REPEATABLE READ the operations commit with
/// the caller's statements, and an open by another node after the
/// transaction took its snapshot (but before the fence) is a serialization
/// failure (`40001`: run the transaction again), never a write that lands
/// behind the fence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeatable_read_caller_transaction_is_fenced_by_serialization() {
    let Some(scratch) = Scratch::new() else { return };
    let store = scratch.open().await;
    let mut client = caller(&scratch).await;
    let tx = client.build_transaction().isolation_level(tokio_postgres::IsolationLevel::RepeatableRead).start().await;
    let tx = tx.unwrap();
    tx.execute("INSERT INTO app_files VALUES ('a.txt')", &[]).await.unwrap();
    store.transaction_in(&tx, ops()).await.unwrap();
    tx.commit().await.unwrap();
    assert_ops_applied(&store, true, "repeatable read").await;

    let tx = client.build_transaction().isolation_level(tokio_postgres::IsolationLevel::RepeatableRead).start().await;
    let tx = tx.unwrap();
    tx.execute("INSERT INTO app_files VALUES ('b.txt')", &[]).await.unwrap();
    let other = scratch.open().await;
    let result = store.transaction_in(&tx, vec![Op::DeleteLock { id: "l1".into() }]).await;
    assert!(matches!(&result, Err(Error::Postgres { sqlstate: Some(code), .. }) if code == "40001"), "{result:?}");
    tx.rollback().await.unwrap();
    assert_eq!(app_files(&client).await, ["a.txt"]);
    assert!(other.get_lock("l1").await.is_ok(), "the delete did not land");
}
