//! Regressions of the adversarial review of several nodes (issue 22): each
//! test is an interleaving or input that broke a promise before its fix.

use super::*;

fn exclusive(id: &str, owner: &str, file: &str) -> PersistedLock {
    let mut l = sample::byte_range(id, "s", file, owner, owner);
    if let LockKind::ByteRange(r) = &mut l.kind {
        r.lock_type = LockType::Exclusive;
    }
    l
}

/// The recovery epoch and each node's need of grace.
async fn grace_state(store: &PostgresLockStore) -> (u64, Vec<(String, bool)>) {
    let s = store.cluster_status().await.unwrap();
    (s.recovery_epoch, s.nodes.into_iter().map(|n| (n.node, n.need_grace)).collect())
}

/// Nodes `a` and `b`, each reopened after a crash while owning a lock: both
/// need grace.
async fn two_nodes_in_grace(scratch: &Scratch) -> (Arc<PostgresLockStore>, Arc<PostgresLockStore>) {
    let a = PostgresLockStore::open(scratch.config().with_node("a")).await.unwrap();
    let b = PostgresLockStore::open(scratch.config().with_node("b")).await.unwrap();
    a.put_lock(lock("a1")).await.unwrap();
    b.put_lock(lock("b1")).await.unwrap();
    drop((a, b));
    let a = Arc::new(PostgresLockStore::open(scratch.config().with_node("a")).await.unwrap());
    let b = Arc::new(PostgresLockStore::open(scratch.config().with_node("b")).await.unwrap());
    let (r, needs) = grace_state(&a).await;
    assert_ne!(r, 0);
    assert_eq!(needs, [("a".to_string(), true), ("b".to_string(), true)]);
    (a, b)
}

/// Two nodes end their grace while a checked grant elsewhere holds the
/// meta row (as any grant in flight does), so both wait there at once.
/// Before the fix each judged the other's flag in a snapshot taken before
/// it waited and neither lifted the grace: R stayed nonzero with no node
/// needing it, and every checked grant was refused for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_ending_their_grace_at_once_lift_it() {
    let Some(scratch) = Scratch::new() else { return };
    let (a, b) = two_nodes_in_grace(&scratch).await;
    let mut blocker = scratch.sql().await;
    let tx = blocker.transaction().await.unwrap();
    tx.query("SELECT recovery_epoch FROM lockwal_meta FOR SHARE", &[]).await.unwrap();
    let ea = tokio::spawn({
        let a = Arc::clone(&a);
        async move { a.end_grace().await }
    });
    let eb = tokio::spawn({
        let b = Arc::clone(&b);
        async move { b.end_grace().await }
    });
    let observer = scratch.sql().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%lockwal_meta%' \
                 AND pid <> pg_backend_pid()",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if waiting >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "both ends of grace never waited on the meta row");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tx.commit().await.unwrap();
    ea.await.unwrap().unwrap();
    eb.await.unwrap().unwrap();
    let (r, needs) = grace_state(&a).await;
    assert_eq!(needs, [("a".to_string(), false), ("b".to_string(), false)]);
    assert_eq!(r, 0, "no node needs grace, yet the cluster is in grace {r}");
    a.grant(lock("after")).await.expect("the grace is over");
}

/// The same race with nothing holding the meta row: two ends of grace at
/// once, several rounds (before the fix the cluster stayed in grace in 19
/// rounds of 20).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_ending_their_grace_at_once_unaided_lift_it() {
    for round in 0..5 {
        let Some(scratch) = Scratch::new() else { return };
        let (a, b) = two_nodes_in_grace(&scratch).await;
        let (x, y) = tokio::join!(a.end_grace(), b.end_grace());
        x.unwrap();
        y.unwrap();
        let (r, needs) = grace_state(&a).await;
        assert!(needs.iter().all(|(_, n)| !n), "round {round}: {needs:?}");
        assert_eq!(r, 0, "round {round}: no node needs grace, yet the cluster is in grace {r}");
    }
}

/// A caller's REPEATABLE READ transaction took its snapshot before another
/// node granted a conflicting lock: a checked grant in it would judge that
/// old snapshot and grant a second exclusive lock. Refused, nothing applied.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checked_grant_in_a_repeatable_read_transaction_is_refused() {
    let Some(scratch) = Scratch::new() else { return };
    let a = PostgresLockStore::open(scratch.config().with_node("a")).await.unwrap();
    let b = PostgresLockStore::open(scratch.config().with_node("b")).await.unwrap();
    use tokio_postgres::IsolationLevel::{RepeatableRead, Serializable};
    for (level, first) in [(RepeatableRead, true), (Serializable, false)] {
        let mut client = caller_client(&scratch).await;
        let tx = client.build_transaction().isolation_level(level).start().await.unwrap();
        tx.query("SELECT 1", &[]).await.unwrap(); // the snapshot is taken
        if first {
            b.grant(exclusive("b-x", "ob", "f")).await.unwrap();
        }
        let result = a.transaction_in(&tx, vec![Op::Grant(exclusive("a-x", "oa", "f"))]).await;
        assert!(
            matches!(&result, Err(Error::InvalidInput { field: "transaction", reason }) if reason.contains("READ COMMITTED")),
            "first {first}: {result:?}"
        );
        let _ = tx.commit().await;
    }
    assert_eq!(all_ids(&a).await, ["b-x"]);
    // READ COMMITTED, the default, judges the file after its lock.
    let mut client = caller_client(&scratch).await;
    let tx = client.transaction().await.unwrap();
    let refused = a.transaction_in(&tx, vec![Op::Grant(exclusive("a-x", "oa", "f"))]).await;
    assert!(matches!(refused, Err(Error::Conflict { .. })), "{refused:?}");
}

/// A named node's caller transaction at REPEATABLE READ whose snapshot
/// predates the node's lease renewal fails with a serialization failure
/// (documented on `transaction_in`: retry), and applies nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeatable_read_caller_transaction_older_than_a_renewal_fails_retryably() {
    let Some(scratch) = Scratch::new() else { return };
    let config = scratch.config().with_node("a").with_lease(Duration::from_millis(150));
    let a = PostgresLockStore::open(config).await.unwrap();
    let mut client = caller_client(&scratch).await;
    let tx = client
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
        .unwrap();
    tx.query("SELECT 1", &[]).await.unwrap();
    let sql = scratch.sql().await;
    let renewed = |sql: tokio_postgres::Client| async move {
        let r: i64 =
            sql.query_one("SELECT renewed_at FROM lockwal_nodes WHERE node_id = 'a'", &[]).await.unwrap().get(0);
        (sql, r)
    };
    let (sql, first) = renewed(sql).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sql = sql;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let (s, now) = renewed(sql).await;
        sql = s;
        if now != first {
            break;
        }
        assert!(Instant::now() < deadline, "the lease was never renewed");
    }
    let result = a.transaction_in(&tx, vec![Op::PutLock(lock("x"))]).await;
    assert!(matches!(&result, Err(Error::Postgres { sqlstate: Some(s), .. }) if s == "40001"), "{result:?}");
    drop(tx);
    assert!(all_ids(&a).await.is_empty());
}

/// Node '' (a store opened without a node id) takes no part in the
/// cluster's grace: before the fix it could take a node over, needed grace,
/// and its `end_grace` never cleared the flag, so the grace never ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_without_an_id_cannot_take_over() {
    let Some(scratch) = Scratch::new() else { return };
    let single = scratch.open().await;
    let a = PostgresLockStore::open(scratch.config().with_node("a")).await.unwrap();
    a.put_lock(lock("a1")).await.unwrap();
    drop(a);
    scratch.sql().await.execute("UPDATE lockwal_nodes SET renewed_at = 0 WHERE node_id = 'a'", &[]).await.unwrap();
    let before = grace_state(&single).await;
    let refused = single.take_over("a").await;
    assert!(matches!(refused, Err(Error::InvalidInput { field: "node", .. })), "{refused:?}");
    assert_eq!(grace_state(&single).await, before);
    assert_eq!(ids(&single.node_locks("a").await.unwrap()), ["a1"]);
    single.grant(lock("new")).await.expect("no grace was started");
}

/// Node '' has no lease: before the fix a named node took an open, serving
/// node '' over at once (a lease of 0 ms read as expired) and fenced it.
/// Refused until it closes cleanly; then allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_node_without_an_id_is_not_taken_over() {
    let Some(scratch) = Scratch::new() else { return };
    let single = scratch.open().await;
    single.put_lock(lock("s1")).await.unwrap();
    let b = PostgresLockStore::open(scratch.config().with_node("b")).await.unwrap();
    let refused = b.take_over("").await;
    assert!(matches!(&refused, Err(Error::InvalidInput { field: "node", reason }) if reason.contains("no lease")));
    let removal = PostgresLockStore::remove_node(&scratch.config(), "").await;
    assert!(matches!(removal, Err(Error::InvalidInput { field: "node", .. })), "{removal:?}");
    single.put_lock(lock("s2")).await.expect("node '' still serves");
    single.close().await.unwrap();
    let took = b.take_over("").await.expect("a cleanly closed node '' may be taken over");
    assert_eq!(took.locks, 2);
}

/// A lift while a node that needs grace has a grant in flight: the grant
/// holds the node's row and waits for the meta row; before the fix the lift
/// held the meta row and waited for the node's row (a deadlock, 40P01).
/// Now the lift waits for the grant's transaction, and both succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lift_while_a_grant_of_a_node_in_grace_is_in_flight_does_not_deadlock() {
    let Some(scratch) = Scratch::new() else { return };
    let a = PostgresLockStore::open(scratch.config().with_node("a")).await.unwrap();
    a.put_lock(lock("a1")).await.unwrap();
    drop(a);
    let a = PostgresLockStore::open(scratch.config().with_node("a")).await.unwrap();
    let mut client = caller_client(&scratch).await;
    let pid = backend_pid(&client).await;
    let tx = client.transaction().await.unwrap();
    a.transaction_in(&tx, vec![]).await.unwrap(); // the fence: a's row FOR SHARE
    let config = scratch.config();
    let lift = tokio::spawn(async move { PostgresLockStore::lift_cluster_grace(&config).await });
    wait_blocked_by(&scratch, pid).await;
    let grant = a.transaction_in(&tx, vec![Op::Grant(lock("g"))]).await;
    assert!(matches!(grant, Err(Error::InGrace { .. })), "the grace is still in force: {grant:?}");
    drop(tx);
    let lifted = lift.await.unwrap().expect("no deadlock");
    assert_ne!(lifted, 0);
    assert_eq!(grace_state(&a).await.0, 0);
}

/// Node b updates a lock node a granted (and still serves) while b is in
/// grace: before the fix the update moved the lock to b with a's older
/// epoch, and b's end of grace removed it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_by_another_node_keeps_the_owner_and_survives_its_end_of_grace() {
    let Some(scratch) = Scratch::new() else { return };
    let a = PostgresLockStore::open(scratch.config().with_node("a")).await.unwrap();
    let b = PostgresLockStore::open(scratch.config().with_node("b")).await.unwrap();
    drop(b); // b crashes
    a.grant(lock("a-live")).await.unwrap();
    let b = PostgresLockStore::open(scratch.config().with_node("b")).await.unwrap();
    assert_ne!(grace_state(&b).await.0, 0, "b needs grace");
    let mut l = a.get_lock("a-live").await.unwrap();
    l.acquired_at = Timestamp::from_unix_micros(l.acquired_at.unix_micros + 1);
    b.update_lock(l.clone()).await.unwrap();
    assert_eq!(ids(&a.node_locks("a").await.unwrap()), ["a-live"]);
    assert!(b.end_grace().await.unwrap().is_empty());
    assert_eq!(a.get_lock("a-live").await.unwrap(), l);
}

/// Migration 5 run by a named node's open (auto_migrate): before the fix
/// the new columns' default, `lockwal_node()`, was evaluated in the
/// migrating session, so every existing row went to that node, which then
/// needed grace and would purge the single node's state.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_5_by_a_named_node_leaves_existing_rows_to_node_without_an_id() {
    let Some(scratch) = Scratch::new() else { return };
    let config = scratch.config().with_auto_migrate(false);
    PostgresLockStore::migrate_to(&config, 4).await.unwrap();
    let sql = scratch.sql().await;
    sql.batch_execute(
        "UPDATE lockwal_meta SET epoch = 7, clean = true;
         INSERT INTO lockwal_locks (id, share, file_id, owner_id, client_id, kind, acquired_at, server_epoch,
                 range_type, range_offset, range_length, range_zero_byte, range_flavor)
             VALUES ('r', 's', 'f', 'o', 'c', 'byte_range', 10, 7, 'exclusive', 0, 0, false, 'posix');",
    )
    .await
    .unwrap();
    let n1 = PostgresLockStore::open(scratch.config().with_node("n1")).await.unwrap();
    let owners: Vec<(Vec<u8>, String)> = sql
        .query("SELECT id, node_id FROM lockwal_locks", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(owners, [(b"r".to_vec(), String::new())]);
    assert_eq!(grace_state(&n1).await, (0, vec![(String::new(), false), ("n1".to_string(), false)]));
    // Rows written after the migration are the writer's.
    n1.put_lock(lock("new")).await.unwrap();
    assert_eq!(ids(&n1.node_locks("n1").await.unwrap()), ["new"]);
}
