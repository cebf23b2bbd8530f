//! Several named nodes on one database at once (migration 5): fencing per
//! node, ownership of every row, grace and reclaim scoped to the node, the
//! cluster-wide grace period (`InGrace`, start, join, lift, ordering
//! against grants in flight),
//! checked grants racing across nodes, the cluster's status, migration 5
//! on a store a single node wrote, and the whole conformance suite run by
//! one node of a three-node cluster.

use super::*;
use lockwal::backend::postgres::NodeStatus;
use lockwal::error::ReclaimRefusal;

impl Scratch {
    /// The store's configuration as node `node`.
    fn node_config(&self, node: &str) -> PostgresConfig {
        self.config().with_node(node)
    }

    async fn open_node(&self, node: &str) -> PostgresLockStore {
        PostgresLockStore::open(self.node_config(node)).await.expect("open a node")
    }

    /// The owner column of `table`'s rows, by key, as SQL sees it.
    async fn owners(&self, table: &str, key: &str) -> Vec<(Vec<u8>, String)> {
        let rows = self
            .sql()
            .await
            .query(&format!("SELECT {key}, node_id FROM {table} ORDER BY {key}"), &[])
            .await
            .expect("owners");
        rows.iter().map(|r| (r.get(0), r.get(1))).collect()
    }
}

fn owned(pairs: &[(&str, &str)]) -> Vec<(Vec<u8>, String)> {
    pairs.iter().map(|(k, n)| (k.as_bytes().to_vec(), n.to_string())).collect()
}

/// Three nodes open at once: none fences another; each node's writes land;
/// reopening node a fences the previous handle of a and only it, on every
/// write path; epochs are unique and grow with each open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reopening_a_node_fences_that_node_and_no_other() {
    let Some(scratch) = Scratch::new() else { return };
    let a = scratch.open_node("a").await;
    let b = scratch.open_node("b").await;
    let c = scratch.open_node("c").await;
    let (ea, eb, ec) = (a.epoch().await.unwrap(), b.epoch().await.unwrap(), c.epoch().await.unwrap());
    assert!(ea < eb && eb < ec, "{ea} {eb} {ec}");
    for (store, id) in [(&a, "a1"), (&b, "b1"), (&c, "c1")] {
        store.put_lock(lock(id)).await.unwrap();
    }
    assert_eq!(all_ids(&a).await, ["a1", "b1", "c1"], "one shared state");

    let a2 = scratch.open_node("a").await;
    let ea2 = a2.epoch().await.unwrap();
    assert!(ea2 > ec);
    assert_fenced(a.put_lock(lock("a-late")).await, ea, ea2);
    assert_fenced(a.transaction(vec![Op::DeleteLock { id: "b1".into() }]).await, ea, ea2);
    assert_fenced(a.grant(lock("a-grant")).await, ea, ea2);
    assert_fenced(a.put_client(sample::client("x")).await, ea, ea2);
    b.put_lock(lock("b2")).await.expect("b is not fenced by a's reopen");
    c.transaction(vec![Op::PutLock(lock("c2")), Op::DeleteLock { id: "c1".into() }]).await.expect("nor is c");
    a2.put_lock(lock("a2")).await.unwrap();
    assert_eq!(all_ids(&b).await, ["a1", "a2", "b1", "b2", "c2"], "nothing of the fenced handle landed");
    assert_eq!((b.epoch().await.unwrap(), c.epoch().await.unwrap()), (eb, ec));
    for store in [a2, b, c] {
        store.close().await.unwrap();
    }
}

/// Every lock, client record and durable handle belongs to the node that
/// last wrote it, on every write path (alone, grouped, in a transaction, a
/// checked grant, an update, a reclaim, a caller's transaction); the
/// cluster status counts them per node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_belong_to_the_node_that_last_wrote_them() {
    let Some(scratch) = Scratch::new() else { return };
    let a = Arc::new(scratch.open_node("a").await);
    let b = scratch.open_node("b").await;
    a.put_lock(lock("alone")).await.unwrap();
    a.transaction(vec![Op::PutLock(lock("txn")), Op::PutClient(sample::client("ca"))]).await.unwrap();
    a.grant(lock("granted")).await.unwrap();
    a.put_handle(sample::handle(1)).await.unwrap();
    let grouped: Vec<_> = (0..8)
        .map(|i| {
            let a = Arc::clone(&a);
            tokio::spawn(async move { a.put_lock(lock(&format!("group-{i}"))).await })
        })
        .collect();
    for task in grouped {
        task.await.unwrap().unwrap();
    }
    b.put_lock(lock("b-own")).await.unwrap();
    b.put_client(sample::client("cb")).await.unwrap();
    let mut ours: Vec<(String, &str)> = (0..8).map(|i| (format!("group-{i}"), "a")).collect();
    ours.extend([("alone", "a"), ("b-own", "b"), ("granted", "a"), ("txn", "a")].map(|(k, n)| (k.to_owned(), n)));
    ours.sort();
    let expect: Vec<(&str, &str)> = ours.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    assert_eq!(scratch.owners("lockwal_locks", "id").await, owned(&expect));

    // Another node's put of a lock takes it over (with the putter's epoch);
    // an update keeps the owner and the epoch.
    b.put_lock(lock("alone")).await.unwrap();
    b.update_lock(lock("txn")).await.unwrap();
    let mut client = caller_client(&scratch).await;
    let tx = client.transaction().await.unwrap();
    b.transaction_in(&tx, vec![Op::PutLock(lock("caller"))]).await.unwrap();
    tx.commit().await.unwrap();
    let owners = scratch.owners("lockwal_locks", "id").await;
    for (id, node) in [("alone", "b"), ("txn", "a"), ("caller", "b"), ("granted", "a")] {
        assert!(owners.contains(&(id.as_bytes().to_vec(), node.to_owned())), "{id} belongs to {node}: {owners:?}");
    }
    assert_eq!(scratch.owners("lockwal_clients", "client_id").await, owned(&[("ca", "a"), ("cb", "b")]));
    assert_eq!(scratch.owners("lockwal_handles", "id").await, owned(&[("open-1", "a")]));

    let status = b.cluster_status().await.unwrap();
    let summary: Vec<(&str, u64, u64, u64)> =
        status.nodes.iter().map(|n: &NodeStatus| (n.node.as_str(), n.locks, n.clients, n.handles)).collect();
    assert_eq!(summary, [("a", 10, 1, 1), ("b", 3, 1, 0)]);
    assert_eq!(status.epoch, b.epoch().await.unwrap());
    let a_row = &status.nodes[0];
    assert_eq!((a_row.epoch, a_row.clean), (a.epoch().await.unwrap(), false));
    Arc::into_inner(a).unwrap().close().await.unwrap();
    let status = b.cluster_status().await.unwrap();
    assert!(status.nodes[0].clean, "a closed cleanly");
    b.close().await.unwrap();
}

/// A node's grace is its own: after an unclean restart of node a, a
/// reclaims only its own locks (another node's lock is refused, even for
/// the client that holds it) and `end_grace` removes only a's unreclaimed
/// locks, not node b's, which are older than a's new epoch too. Without
/// ownership, a's end of grace would drop every lock b holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_and_reclaim_are_scoped_to_the_node() {
    let Some(scratch) = Scratch::new() else { return };
    let a = scratch.open_node("a").await;
    let b = scratch.open_node("b").await;
    a.put_lock(lock("a-kept")).await.unwrap();
    a.put_lock(lock("a-lost")).await.unwrap();
    b.put_lock(lock("b-held")).await.unwrap();
    drop(a); // a crash: no close

    let a = scratch.open_node("a").await;
    assert!(!a.previous_shutdown_was_clean().await.unwrap());
    assert!(b.get_lock("b-held").await.unwrap().server_epoch < a.epoch().await.unwrap());
    a.reclaim("a-kept", "c").await.unwrap();
    match a.reclaim("b-held", "c").await {
        Err(Error::ReclaimRefused { reason: ReclaimRefusal::OtherNode, .. }) => {}
        other => panic!("expected OtherNode, got {other:?}"),
    }
    let ended = a.end_grace().await.unwrap();
    assert_eq!(ids(&ended), ["a-lost"]);
    assert_eq!(all_ids(&b).await, ["a-kept", "b-held"]);
    assert!(b.previous_shutdown_was_clean().await.is_ok());
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// Checked grants for one range from three nodes, 16 tasks each, each node
/// with its own pool of connections: exactly one is granted in the
/// database, every other is refused naming it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checked_grants_race_across_nodes_and_exactly_one_wins() {
    let Some(scratch) = Scratch::new() else { return };
    const PER_NODE: usize = 16;
    let nodes = [
        Arc::new(scratch.open_node("a").await),
        Arc::new(scratch.open_node("b").await),
        Arc::new(scratch.open_node("c").await),
    ];
    let start = Arc::new(tokio::sync::Barrier::new(3 * PER_NODE));
    let mut racers = Vec::new();
    for (n, node) in nodes.iter().enumerate() {
        for t in 0..PER_NODE {
            let (node, start) = (Arc::clone(node), Arc::clone(&start));
            let id = format!("n{n}-t{t:02}");
            racers.push(tokio::spawn(async move {
                let mut candidate = sample::byte_range(&id, "s", "one-file", &format!("owner-{id}"), "c");
                if let LockKind::ByteRange(range) = &mut candidate.kind {
                    (range.lock_type, range.offset, range.length) = (LockType::Exclusive, t as u64, 100);
                }
                start.wait().await;
                (id, node.grant(candidate).await)
            }));
        }
    }
    let mut results = Vec::new();
    for racer in racers {
        results.push(racer.await.unwrap());
    }
    let held = nodes[0].list_locks(&LockQuery::all()).await.unwrap();
    assert_eq!(held.len(), 1, "exactly one granted: {:?}", ids(&held));
    for (id, result) in &results {
        match result {
            Ok(()) => assert_eq!(*id, *held[0].id),
            Err(Error::Conflict { conflicts, .. }) => assert_eq!(ids(&conflicts.holders), ids(&held), "{id}"),
            Err(e) => panic!("{id}: {e}"),
        }
    }
    for node in nodes {
        Arc::into_inner(node).unwrap().close().await.unwrap();
    }
}

/// A node id the schema cannot hold is refused before anything connects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_node_id_is_refused_and_changes_nothing() {
    let Some(scratch) = Scratch::new() else { return };
    let good = scratch.open_node("a").await;
    for bad in ["-a", "a b", "a'b", &"n".repeat(65)] {
        match PostgresLockStore::open(scratch.node_config(bad)).await {
            Err(Error::InvalidInput { field: "node", .. }) => {}
            other => panic!("{bad:?}: expected InvalidInput, got {other:?}"),
        }
    }
    good.put_lock(lock("still")).await.expect("the good node is not fenced");
    let nodes: Vec<String> = good.cluster_status().await.unwrap().nodes.into_iter().map(|n| n.node).collect();
    assert_eq!(nodes, ["a"]);
    good.close().await.unwrap();
}

/// Migration 5 on a store that one node wrote at migration 4: the rows
/// belong to node '', which keeps the epoch and clean flag; the store opens
/// without a node id exactly as before, and a named node beside it fences
/// nothing. Down to 4 gives the epoch row back a clean flag that is only
/// true when node '' was the last to open and closed cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_5_makes_the_single_node_node_empty_and_down_restores_it() {
    let Some(scratch) = Scratch::new() else { return };
    let config = scratch.config().with_auto_migrate(false);
    PostgresLockStore::migrate_to(&config, 4).await.unwrap();
    let sql = scratch.sql().await;
    sql.batch_execute(
        "UPDATE lockwal_meta SET epoch = 7, clean = true;
         INSERT INTO lockwal_locks (id, share, file_id, owner_id, client_id, kind, acquired_at, server_epoch,
                 range_type, range_offset, range_length, range_zero_byte, range_flavor)
             VALUES ('r', 's', 'f', 'o', 'c', 'byte_range', 10, 7, 'exclusive', 0, 0, false, 'posix');
         INSERT INTO lockwal_clients (client_id, kind, name, verifier, principal, callback, registered_at, epoch,
                 reclaim_complete, nfs4_short_id)
             VALUES ('b', 'nfs4', 'n', '', '', '', 21, 5, true, 3);",
    )
    .await
    .unwrap();
    let up = PostgresLockStore::migrate(&config).await.unwrap();
    assert_eq!((up.from, up.to, up.steps), (4, 5, vec![5]));
    let node: (String, i64, bool) = {
        let row = sql.query_one("SELECT node_id, epoch, clean FROM lockwal_nodes", &[]).await.unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    assert_eq!(node, (String::new(), 7, true));
    assert_eq!(scratch.owners("lockwal_locks", "id").await, owned(&[("r", "")]));
    assert_eq!(scratch.owners("lockwal_clients", "client_id").await, owned(&[("b", "")]));

    let single = PostgresLockStore::open(config.clone()).await.unwrap();
    assert_eq!(single.epoch().await.unwrap(), 8);
    assert!(single.previous_shutdown_was_clean().await.unwrap(), "the clean flag came along");
    let named = PostgresLockStore::open(config.clone().with_node("n1")).await.unwrap();
    assert!(!named.previous_shutdown_was_clean().await.unwrap(), "a node that never opened reports unclean");
    single.put_lock(lock("after")).await.expect("the named node fenced nothing");
    single.close().await.unwrap();
    named.close().await.unwrap();

    // n1 opened last: the flag on the way down is not node '''s to give.
    let down = PostgresLockStore::migrate_to(&config, 4).await.unwrap();
    assert_eq!(down.steps, [5]);
    let meta: (i64, bool) = {
        let row = sql.query_one("SELECT epoch, clean FROM lockwal_meta", &[]).await.unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(meta, (9, false));
    PostgresLockStore::migrate(&config).await.unwrap();
    let single = PostgresLockStore::open(config.clone()).await.unwrap();
    single.close().await.unwrap();
    PostgresLockStore::migrate_to(&config, 4).await.unwrap();
    let clean: bool = sql.query_one("SELECT clean FROM lockwal_meta", &[]).await.unwrap().get(0);
    assert!(clean, "node '' opened last and closed cleanly");
}

/// Opens node `b` of a three-node cluster whose nodes `a` and `c` stay open
/// (holding nothing, so the suite's counts are its own); `reopen` reopens
/// `b` only, lifts the grace that starts, and checks that `a` and `c` still
/// write.
struct ClusterNode {
    scratch: Scratch,
    others: Vec<PostgresLockStore>,
}

#[async_trait]
impl Harness for ClusterNode {
    async fn open(&mut self) -> Arc<dyn LockStore> {
        if self.others.is_empty() {
            self.others = vec![self.scratch.open_node("a").await, self.scratch.open_node("c").await];
        }
        Arc::new(self.scratch.open_node("b").await)
    }

    async fn reopen(&mut self, store: Arc<dyn LockStore>) -> Arc<dyn LockStore> {
        drop(store);
        let reopened = self.open().await;
        // A reopened node that owns locks or stopped uncleanly puts the
        // cluster in grace, which refuses checked grants: the suite tests a
        // node's contract, so the operator's lift ends it (the grace tests
        // above test grace itself).
        PostgresLockStore::lift_cluster_grace(&self.scratch.config()).await.expect("lift the grace");
        for other in &self.others {
            other.delete_locks_by_client("nobody").await.expect("another node's reopen fences no one else");
        }
        reopened
    }
}

mod one_node_of_three {
    use super::*;

    macro_rules! node_or_skip {
        () => {
            match Scratch::new() {
                Some(scratch) => ClusterNode { scratch, others: Vec::new() },
                None => return,
            }
        };
    }

    conformance_suite!(node_or_skip!());
}

/// `lockwal cluster status --json` shows every node with its epoch, clean
/// flag and what it owns, and fences no one.
#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_shows_the_cluster() {
    let Some(scratch) = Scratch::new() else { return };
    let a = scratch.open_node("a").await;
    let b = scratch.open_node("b").await;
    a.put_lock(lock("a1")).await.unwrap();
    a.put_lock(lock("a2")).await.unwrap();
    b.put_client(sample::client("cb")).await.unwrap();
    b.close().await.unwrap();
    let status = lockwal_json(&scratch, &["cluster", "status"]);
    let nodes: Vec<(String, bool, u64, u64)> = status["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            let count = |k: &str| n[k].as_u64().unwrap();
            (
                n["node"].as_str().unwrap().to_owned(),
                n["clean_shutdown"].as_bool().unwrap(),
                count("locks"),
                count("clients"),
            )
        })
        .collect();
    let expect = [("a", false, 2, 0), ("b", true, 0, 1)].map(|(n, c, l, k)| (n.to_owned(), c, l, k));
    assert_eq!(nodes, expect);
    assert_eq!(status["nodes"][0]["epoch"], a.epoch().await.unwrap());
    assert_eq!(status["epoch"], a.epoch().await.unwrap() + 1);
    a.put_lock(lock("a3")).await.expect("the CLI fenced no one");
    a.close().await.unwrap();
}

#[track_caller]
fn assert_in_grace(result: Result<(), Error>, recovery: u64) {
    match result {
        Err(Error::InGrace { recovery_epoch, .. }) if recovery_epoch == recovery => {}
        other => panic!("expected InGrace {{ recovery_epoch: {recovery} }}, got {other:?}"),
    }
}

async fn recovery_epoch(store: &PostgresLockStore) -> u64 {
    store.cluster_status().await.unwrap().recovery_epoch
}

/// A fresh cluster is not in grace. Node a restarting after a crash with
/// locks starts a grace period: every node's checked grants are refused
/// with `InGrace` on every path (alone, grouped, in a transaction, in a
/// caller's transaction) and change nothing; reclaims and plain puts still
/// work; another node's end of grace does not lift it; a's end of grace
/// removes what was not reclaimed and lifts it, in one transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unclean_restart_puts_every_node_in_grace_until_the_node_ends_it() {
    let Some(scratch) = Scratch::new() else { return };
    let a = scratch.open_node("a").await;
    let b = Arc::new(scratch.open_node("b").await);
    assert_eq!(recovery_epoch(&b).await, 0, "new nodes have nothing to reclaim");
    a.grant(lock("a-kept")).await.unwrap();
    a.grant(lock("a-lost")).await.unwrap();
    drop(a);

    let a = scratch.open_node("a").await;
    let r = a.epoch().await.unwrap();
    let status = b.cluster_status().await.unwrap();
    assert_eq!(status.recovery_epoch, r, "the grace period starts at a's epoch");
    let needs: Vec<(&str, bool)> = status.nodes.iter().map(|n| (n.node.as_str(), n.need_grace)).collect();
    assert_eq!(needs, [("a", true), ("b", false)]);

    assert_in_grace(b.grant(lock("b-new")).await, r);
    assert_in_grace(a.grant(lock("a-new")).await, r);
    let racing: Vec<_> = (0..8)
        .map(|i| {
            let b = Arc::clone(&b);
            tokio::spawn(async move { b.grant(lock(&format!("b-racer-{i}"))).await })
        })
        .collect();
    for racer in racing {
        assert_in_grace(racer.await.unwrap(), r);
    }
    match b.transaction(vec![Op::PutLock(lock("b-txn")), Op::Grant(lock("b-txn-grant"))]).await {
        Err(Error::InGrace { recovery_epoch, .. }) => assert_eq!(recovery_epoch, r),
        other => panic!("expected InGrace, got {other:?}"),
    }
    let mut client = caller_client(&scratch).await;
    let tx = client.transaction().await.unwrap();
    assert!(matches!(b.transaction_in(&tx, vec![Op::Grant(lock("b-caller"))]).await, Err(Error::InGrace { .. })));
    drop(tx);
    assert_eq!(all_ids(&*b).await, ["a-kept", "a-lost"], "no refused grant left anything");

    a.reclaim("a-kept", "c").await.unwrap();
    b.put_lock(lock("b-plain")).await.expect("plain puts are not checked");
    assert_eq!(b.end_grace().await.unwrap(), Vec::new());
    assert_eq!(recovery_epoch(&b).await, r, "b needed no grace: its end lifts nothing");
    assert_eq!(ids(&a.end_grace().await.unwrap()), ["a-lost"]);
    assert_eq!(recovery_epoch(&b).await, 0);
    b.grant(lock("b-new")).await.expect("grants work again");
    a.close().await.unwrap();
    Arc::into_inner(b).unwrap().close().await.unwrap();
}

/// Two nodes that need grace: the second joins the first's grace period
/// (same recovery epoch); it lifts only when both have ended theirs. A
/// clean restart of a node that owns locks needs grace too; a clean restart
/// of a node that owns nothing does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grace_lifts_when_the_last_node_that_needs_it_ends_it() {
    let Some(scratch) = Scratch::new() else { return };
    let (a, b, c) = (scratch.open_node("a").await, scratch.open_node("b").await, scratch.open_node("c").await);
    a.put_lock(lock("a1")).await.unwrap();
    b.put_lock(lock("b1")).await.unwrap();
    drop(a);
    b.close().await.unwrap();
    c.close().await.unwrap();

    let a = scratch.open_node("a").await;
    let r = a.epoch().await.unwrap();
    let b = scratch.open_node("b").await;
    assert!(b.previous_shutdown_was_clean().await.unwrap());
    let c = scratch.open_node("c").await;
    let status = c.cluster_status().await.unwrap();
    assert_eq!(status.recovery_epoch, r, "b joined a's grace period");
    let needs: Vec<(&str, bool)> = status.nodes.iter().map(|n| (n.node.as_str(), n.need_grace)).collect();
    assert_eq!(needs, [("a", true), ("b", true), ("c", false)]);

    a.reclaim("a1", "c").await.unwrap();
    a.end_grace().await.unwrap();
    assert_eq!(recovery_epoch(&c).await, r, "b still needs it");
    assert_in_grace(c.grant(lock("c1")).await, r);
    b.reclaim("b1", "c").await.unwrap();
    b.end_grace().await.unwrap();
    assert_eq!(recovery_epoch(&c).await, 0);
    c.grant(lock("c1")).await.unwrap();
    assert_eq!(all_ids(&c).await, ["a1", "b1", "c1"]);
    for store in [a, b, c] {
        store.close().await.unwrap();
    }
}

/// A grace period cannot start under a checked grant in flight: node a's
/// open (which starts one) waits for b's uncommitted grant, which therefore
/// commits before the grace and is kept; the next grant is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grace_period_waits_for_the_grants_in_flight() {
    let Some(scratch) = Scratch::new() else { return };
    let a = scratch.open_node("a").await;
    let b = scratch.open_node("b").await;
    a.put_lock(lock("a1")).await.unwrap();
    drop(a);
    let mut client = caller_client(&scratch).await;
    let pid = backend_pid(&client).await;
    let tx = client.transaction().await.unwrap();
    b.transaction_in(&tx, vec![Op::Grant(lock("in-flight"))]).await.unwrap();
    let opening = {
        let config = scratch.node_config("a");
        tokio::spawn(async move { PostgresLockStore::open(config).await })
    };
    wait_blocked_by(&scratch, pid).await;
    assert!(!opening.is_finished(), "the open waits for the grant");
    tx.commit().await.unwrap();
    let a = opening.await.unwrap().unwrap();
    let r = a.epoch().await.unwrap();
    assert_eq!(recovery_epoch(&b).await, r);
    assert_eq!(all_ids(&b).await, ["a1", "in-flight"], "the grant committed before the grace");
    assert_in_grace(b.grant(lock("after")).await, r);
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// `lockwal cluster lift` ends the grace for every node without removing
/// anything and fences no one; `cluster status` shows the grace before.
#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_lifts_the_grace() {
    let Some(scratch) = Scratch::new() else { return };
    let a = scratch.open_node("a").await;
    a.put_lock(lock("a1")).await.unwrap();
    drop(a);
    let a = scratch.open_node("a").await;
    let r = a.epoch().await.unwrap();
    let run = |args: &[&str]| lockwal_json(&scratch, args);
    let status = run(&["cluster", "status"]);
    assert_eq!(status["recovery_epoch"], r);
    assert_eq!(status["nodes"][0]["need_grace"], true);
    assert_eq!(run(&["cluster", "lift"])["ended_recovery_epoch"], r);
    assert_eq!(run(&["cluster", "lift"])["ended_recovery_epoch"], 0, "nothing left to lift");
    assert_eq!(run(&["cluster", "status"])["nodes"][0]["need_grace"], false);
    a.grant(lock("a2")).await.expect("grants work again, and a is not fenced");
    assert_eq!(all_ids(&a).await, ["a1", "a2"], "lifting removed nothing");
    a.close().await.unwrap();
}

/// `renewed_at` of a node, as stored.
async fn renewed_at(scratch: &Scratch, node: &str) -> i64 {
    let sql = scratch.sql().await;
    sql.query_one("SELECT renewed_at FROM lockwal_nodes WHERE node_id = $1", &[&node]).await.unwrap().get(0)
}

/// A node whose lease expired (its renewal time set back by SQL, as if it
/// had stopped renewing long ago) is taken over: the survivor fences it,
/// owns its locks (stamped before the survivor's epoch, so its clients
/// reclaim them here even those granted in a later epoch than the
/// survivor's), client records and handles, and needs grace; the returning
/// node's old handle is fenced on every write; the survivor's end of grace
/// removes what was not reclaimed; the node reopens as a new incarnation
/// that owns nothing. A live node, an unknown one and this node itself are
/// refused and nothing changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_node_is_taken_over_and_its_clients_reclaim_at_the_survivor() {
    let Some(scratch) = Scratch::new() else { return };
    let b = scratch.open_node("b").await;
    let hour = Duration::from_secs(3600);
    let a = PostgresLockStore::open(scratch.node_config("a").with_lease(hour)).await.unwrap();
    let ea = a.epoch().await.unwrap();
    assert!(ea > b.epoch().await.unwrap(), "a's locks are newer than b's epoch");
    a.grant(lock("a-kept")).await.unwrap();
    a.grant(lock("a-lost")).await.unwrap();
    a.put_client(sample::client("ca")).await.unwrap();
    a.put_handle(sample::handle(1)).await.unwrap();

    match b.take_over("a").await {
        Err(Error::NodeLive { node, expires_in_ms }) => {
            assert_eq!(node, "a");
            assert!(expires_in_ms > 0 && expires_in_ms <= 3_600_000, "{expires_in_ms}");
        }
        other => panic!("expected NodeLive, got {other:?}"),
    }
    assert!(matches!(b.take_over("nobody").await, Err(Error::NotFound { .. })));
    assert!(matches!(b.take_over("b").await, Err(Error::InvalidInput { field: "node", .. })));
    assert_eq!(scratch.owners("lockwal_locks", "id").await, owned(&[("a-kept", "a"), ("a-lost", "a")]));

    // a stops renewing (a partition): its lease runs out.
    scratch.sql().await.execute("UPDATE lockwal_nodes SET renewed_at = 0 WHERE node_id = 'a'", &[]).await.unwrap();
    let takeover = b.take_over("a").await.unwrap();
    assert_eq!((takeover.locks, takeover.clients, takeover.handles), (2, 1, 1));
    assert_eq!(takeover.recovery_epoch, takeover.fenced_with, "the takeover starts a grace period");
    assert_eq!(scratch.owners("lockwal_locks", "id").await, owned(&[("a-kept", "b"), ("a-lost", "b")]));
    assert_eq!(scratch.owners("lockwal_clients", "client_id").await, owned(&[("ca", "b")]));
    assert_eq!(scratch.owners("lockwal_handles", "id").await, owned(&[("open-1", "b")]));

    assert_fenced(a.put_lock(lock("a-late")).await, ea, takeover.fenced_with);
    assert_fenced(a.end_grace().await, ea, takeover.fenced_with);
    assert_in_grace(b.grant(lock("b-new")).await, takeover.recovery_epoch);
    b.reclaim("a-kept", "c").await.expect("a's client reclaims at b");
    assert_eq!(ids(&b.end_grace().await.unwrap()), ["a-lost"]);
    assert_eq!(recovery_epoch(&b).await, 0);
    b.grant(lock("b-new")).await.unwrap();

    drop(a);
    let a = scratch.open_node("a").await;
    assert!(a.previous_shutdown_was_clean().await.unwrap(), "its state went to b");
    assert_eq!(recovery_epoch(&b).await, 0, "a new incarnation that owns nothing needs no grace");
    a.grant(lock("a-again")).await.unwrap();
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A node renews its lease while it is open, and not once dropped (a
/// crash) or closed. Waits for a change rather than for a time: a slow
/// machine only makes it wait longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lease_is_renewed_while_the_node_is_open() {
    let Some(scratch) = Scratch::new() else { return };
    let a = PostgresLockStore::open(scratch.node_config("a").with_lease(Duration::from_millis(150))).await.unwrap();
    let first = renewed_at(&scratch, "a").await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while renewed_at(&scratch, "a").await == first {
        assert!(Instant::now() < deadline, "no renewal within 60 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(a);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after_drop = renewed_at(&scratch, "a").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(renewed_at(&scratch, "a").await, after_drop, "a dropped handle renews no more");
    let status = scratch.open_node("b").await.cluster_status().await.unwrap();
    assert_eq!(status.nodes[0].lease, Duration::from_millis(150));
    assert!(status.nodes[0].renewed_ago >= Duration::from_millis(600));
    assert!(matches!(
        PostgresLockStore::open(scratch.node_config("z").with_lease(Duration::ZERO)).await,
        Err(Error::InvalidInput { field: "lease", .. })
    ));
}

/// `remove_node` (`lockwal cluster remove`) refuses a live node and a node
/// that owns anything, removes one that is neither, ends a grace only it
/// needed, and the node may come back as a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_removed_only_when_gone_and_owning_nothing() {
    let Some(scratch) = Scratch::new() else { return };
    let config = scratch.config();
    let a = scratch.open_node("a").await;
    let b = scratch.open_node("b").await;
    assert!(matches!(PostgresLockStore::remove_node(&config, "a").await, Err(Error::NodeLive { .. })));
    a.put_lock(lock("a1")).await.unwrap();
    a.close().await.unwrap();
    match PostgresLockStore::remove_node(&config, "a").await {
        Err(Error::InvalidInput { field: "node", reason }) => assert!(reason.contains("owns 1 locks"), "{reason}"),
        other => panic!("expected InvalidInput, got {other:?}"),
    }
    // a comes back (owns a lock: needs grace), crashes for good; b takes over.
    let a = scratch.open_node("a").await;
    let r = a.epoch().await.unwrap();
    assert_eq!(recovery_epoch(&b).await, r);
    drop(a);
    scratch.sql().await.execute("UPDATE lockwal_nodes SET renewed_at = 0 WHERE node_id = 'a'", &[]).await.unwrap();
    b.take_over("a").await.unwrap();
    PostgresLockStore::remove_node(&config, "a").await.unwrap();
    assert!(matches!(PostgresLockStore::remove_node(&config, "a").await, Err(Error::NotFound { .. })));
    let nodes: Vec<String> = b.cluster_status().await.unwrap().nodes.into_iter().map(|n| n.node).collect();
    assert_eq!(nodes, ["b"]);
    assert_ne!(recovery_epoch(&b).await, 0, "b still needs the grace for a's clients");
    b.end_grace().await.unwrap();
    assert_eq!(recovery_epoch(&b).await, 0);
    let a = scratch.open_node("a").await;
    assert!(!a.previous_shutdown_was_clean().await.unwrap(), "a new node again");
    a.close().await.unwrap();
    b.close().await.unwrap();
}

/// A short `lockwal cluster-torture`: three node processes SIGKILLed,
/// restarted, taken over and cut off at random for a few seconds; the run
/// checks itself (no conflicting locks held, no grant during grace, no
/// acknowledged grant lost or release back, reclaims by the holder, epochs
/// growing) and must pass.
#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_cluster_torture_passes() {
    let Some(scratch) = Scratch::new() else { return };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lockwal"))
        .args(["cluster-torture", "--url", &scratch.url, "--nodes", "3", "--seconds", "6", "--json"])
        .output()
        .expect("run lockwal");
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(report["violations"], serde_json::json!([]), "{report}");
    assert_eq!(report["passed"], true, "{report}");
    assert!(out.status.success());
    assert!(report["opens"].as_u64().unwrap() >= 3, "{report}");
    assert!(report["grants_acknowledged"].as_u64().unwrap() > 0, "{report}");
}

/// Waits (up to 30 s: a slow machine only waits longer) until the watched
/// recovery epoch is `want`.
async fn heard(rx: &mut tokio::sync::watch::Receiver<u64>, want: u64) {
    let wait = async {
        while *rx.borrow_and_update() != want {
            rx.changed().await.expect("the watch is running");
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait).await.unwrap_or_else(|_| panic!("never heard {want}"));
}

/// `watch_grace` follows the recovery epoch: another node's unclean
/// restart starts it, that node's end of grace lifts it; with the
/// notification trigger disabled (a notification lost), the periodic read
/// still brings each change; the watch stops with the handle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_grace_watch_hears_every_change() {
    let Some(scratch) = Scratch::new() else { return };
    let b = scratch.open_node("b").await;
    let mut rx = b.watch_grace().await.unwrap();
    heard(&mut rx, 0).await;
    let a = scratch.open_node("a").await;
    a.put_lock(lock("a1")).await.unwrap();
    drop(a);
    let a = scratch.open_node("a").await;
    let r = a.epoch().await.unwrap();
    heard(&mut rx, r).await;
    a.end_grace().await.unwrap();
    heard(&mut rx, 0).await;

    let sql = scratch.sql().await;
    sql.batch_execute("ALTER TABLE lockwal_meta DISABLE TRIGGER lockwal_notify_grace").await.unwrap();
    drop(a);
    let a = scratch.open_node("a").await;
    heard(&mut rx, a.epoch().await.unwrap()).await;
    let mut again = b.watch_grace().await.unwrap();
    assert_eq!(*again.borrow_and_update(), a.epoch().await.unwrap(), "one watch, shared");
    b.close().await.unwrap();
    tokio::time::timeout(Duration::from_secs(30), async { while rx.changed().await.is_ok() {} })
        .await
        .expect("the watch ends with the handle");
    a.close().await.unwrap();
}
