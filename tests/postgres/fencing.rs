//! Several nodes on one store: shared state, the epoch fence on every
//! write path, writes racing an open, concurrent first starts, read-only
//! opens that fence no one.

use super::*;

/// Two nodes on one database: each sees the other's commits; once the
/// second has opened, the first is fenced on its next write, every later
/// write of any kind is refused, none of them is visible, and its close does
/// not mark the shutdown clean for the node that replaced it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_state_and_the_replaced_node_is_fenced() {
    let Some(scratch) = Scratch::new() else { return };
    let a = scratch.open().await;
    let ea = a.epoch().await.unwrap();
    a.put_lock(lock("a1")).await.unwrap();
    a.put_client(sample::client("ca")).await.unwrap();

    let b = scratch.open().await;
    let eb = b.epoch().await.unwrap();
    assert_eq!(eb, ea + 1);
    assert_eq!(all_ids(&b).await, ["a1"], "B sees what A committed");
    assert_eq!(b.get_client(ClientKind::Nfs4, "ca").await.unwrap(), sample::client("ca"));
    b.put_lock(lock("b1")).await.unwrap();
    assert_eq!(all_ids(&a).await, ["a1", "b1"], "A sees what B committed");

    assert_fenced(a.put_lock(lock("a2")).await, ea, eb);
    assert_fenced(a.delete_lock("a1").await, ea, eb);
    assert_fenced(a.delete_locks_by_client("c").await, ea, eb);
    assert_fenced(a.delete_locks_by_file("f-b1").await, ea, eb);
    assert_fenced(a.put_client(sample::client("cb")).await, ea, eb);
    assert_fenced(a.delete_client(ClientKind::Nfs4, "ca").await, ea, eb);
    assert_fenced(a.reclaim("a1", "c").await, ea, eb);
    assert_fenced(a.end_grace().await, ea, eb);
    assert_fenced(a.transaction(vec![Op::PutLock(lock("a3")), Op::DeleteLock { id: "b1".into() }]).await, ea, eb);

    assert_eq!(all_ids(&b).await, ["a1", "b1"], "nothing A attempted after B opened is visible");
    assert_eq!(b.get_lock("a1").await.unwrap().server_epoch, ea);
    assert_eq!(b.get_lock("b1").await.unwrap().server_epoch, eb);
    assert_eq!(b.list_clients(&ClientQuery::all()).await.unwrap(), vec![sample::client("ca")]);
    assert_eq!(a.get_lock("b1").await.unwrap().server_epoch, eb, "a fenced node still reads");

    assert_fenced(a.close().await, ea, eb);
    assert!(matches!(a.epoch().await, Err(Error::Closed)));
    b.reclaim("a1", "c").await.unwrap();
    assert_eq!(b.end_grace().await.unwrap(), Vec::new());
    b.close().await.unwrap();
    let c = scratch.open().await;
    assert!(c.previous_shutdown_was_clean().await.unwrap(), "B's close counts, A's did not undo it");
    assert_eq!(all_ids(&c).await, ["a1", "b1"]);
}

/// A read-only handle (what `lockwal stat --url` opens) sees the live
/// node's state and epoch, bumps nothing, fences no one, refuses every
/// write, and its close records nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_open_fences_no_one_and_writes_nothing() {
    let Some(scratch) = Scratch::new() else { return };
    let live = scratch.open().await;
    let epoch = live.epoch().await.unwrap();
    live.put_lock(lock("l1")).await.unwrap();

    let reader = PostgresLockStore::open_read_only(scratch.config()).await.unwrap();
    assert_eq!(reader.epoch().await.unwrap(), epoch, "the live node's epoch, not a new one");
    assert!(!reader.previous_shutdown_was_clean().await.unwrap(), "the live node has not closed");
    assert_eq!(all_ids(&reader).await, ["l1"]);
    for result in [
        reader.put_lock(lock("r1")).await,
        reader.delete_lock("l1").await,
        reader.delete_locks_by_client("c").await.map(drop),
        reader.end_grace().await.map(drop),
    ] {
        assert!(matches!(result, Err(Error::ReadOnly { .. })), "{result:?}");
    }
    reader.close().await.unwrap();

    live.put_lock(lock("l2")).await.expect("the live node is not fenced by a reader");
    assert_eq!(all_ids(&live).await, ["l1", "l2"], "no write of the reader landed");
    live.close().await.unwrap();
    let after = PostgresLockStore::open_read_only(scratch.config()).await.unwrap();
    assert_eq!(after.epoch().await.unwrap(), epoch);
    assert!(after.previous_shutdown_was_clean().await.unwrap(), "the live node's clean close stands");
    after.close().await.unwrap();
    let next = scratch.open().await;
    assert_eq!(next.epoch().await.unwrap(), epoch + 1, "read-only opens took no epoch");
}

/// `lockwal stat|list|clients --url` read a PostgreSQL store without
/// bumping its epoch.
#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reads_a_postgres_store_with_url() {
    let Some(scratch) = Scratch::new() else { return };
    let live = scratch.open().await;
    let epoch = live.epoch().await.unwrap();
    live.put_lock(lock("l1")).await.unwrap();
    live.put_lock(sample::byte_range("l2", "s", "f-other", "o", "c2")).await.unwrap();
    live.put_client(sample::client("c2")).await.unwrap();
    let run = |args: &[&str]| lockwal_json(&scratch, args);
    let stat = run(&["stat"]);
    assert_eq!(stat["backend"], "postgres");
    assert_eq!(stat["schema"], scratch.schema.as_str());
    assert_eq!(stat["epoch"], epoch);
    assert_eq!((stat["locks"].as_u64(), stat["clients"].as_u64()), (Some(2), Some(1)));
    assert_eq!(stat["clean_shutdown"], false);
    let listed = run(&["list", "--client", "c2"]);
    let listed: Vec<&str> = listed.as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(listed, ["l2"]);
    let clients = run(&["clients"]);
    assert_eq!(clients.as_array().unwrap().len(), 1);
    assert_eq!(clients[0]["client_id"], "c2");
    live.put_lock(lock("l3")).await.expect("the CLI fenced no one");
}

/// Every write path (one-statement puts and deletes, checked grants, multi-operation
/// transactions, reclaim, end of grace, close) checks the epoch in the
/// database itself: each stale handle here has never been refused before,
/// so only the database can tell it that it was replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_write_path_checks_the_epoch_in_the_database() {
    let Some(scratch) = Scratch::new() else { return };
    let setup = scratch.open().await;
    setup.put_lock(lock("x")).await.unwrap();
    setup.put_client(sample::client("c")).await.unwrap();
    let mut stale = Vec::new();
    for _ in 0..12 {
        stale.push(scratch.open().await);
    }
    let current = scratch.open().await;
    let now = current.epoch().await.unwrap();
    let before = current.list_locks(&LockQuery::all()).await.unwrap();
    let mut attempts: Vec<(u64, Result<(), Error>)> = Vec::new();
    let mut stale = stale.into_iter();
    let mut next = || stale.next().expect("enough stale handles");
    macro_rules! attempt {
        ($s:ident => $call:expr) => {{
            let $s = next();
            let ours = $s.epoch().await.unwrap();
            let result = $call.await.map(drop);
            attempts.push((ours, result));
        }};
    }
    attempt!(s => s.put_lock(lock("new")));
    attempt!(s => s.grant(lock("granted")));
    attempt!(s => s.grant(sample::byte_range("refused", "s", "f-x", "o2", "c2")));
    attempt!(s => s.put_client(sample::client("new")));
    attempt!(s => s.delete_lock("x"));
    attempt!(s => s.delete_client(ClientKind::Nfs4, "c"));
    attempt!(s => s.delete_locks_by_client("c"));
    attempt!(s => s.delete_locks_by_file("f-x"));
    attempt!(s => s.reclaim("x", "c"));
    attempt!(s => s.end_grace());
    attempt!(s => s.transaction(vec![Op::DeleteLock { id: "x".into() }, Op::PutLock(lock("y"))]));
    attempt!(s => s.close());
    for (ours, result) in attempts {
        assert_fenced(result, ours, now);
    }
    assert_eq!(current.list_locks(&LockQuery::all()).await.unwrap(), before);
    assert_eq!(current.list_clients(&ClientQuery::all()).await.unwrap(), vec![sample::client("c")]);
    current.close().await.unwrap();
    assert!(scratch.open().await.previous_shutdown_was_clean().await.unwrap());
}

/// Writes racing with another node's open are each ordered entirely before
/// the new epoch or refused: afterwards the new node sees exactly the writes
/// that were acknowledged, and every writer was refused once it opened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_racing_an_open_are_acknowledged_and_visible_or_fenced_and_absent() {
    const TASKS: usize = 8;
    let Some(scratch) = Scratch::new() else { return };
    let a = Arc::new(PostgresLockStore::open(scratch.config().with_pool_size(TASKS)).await.unwrap());
    let ea = a.epoch().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let writers: Vec<_> = (0..TASKS)
        .map(|t| {
            let a = Arc::clone(&a);
            tokio::spawn(async move {
                let mut acked = Vec::new();
                for i in 0.. {
                    assert!(Instant::now() < deadline, "writer {t} was never fenced");
                    let id = format!("w{t}-{i}");
                    let result = if i % 3 == 0 {
                        let pair = vec![Op::PutLock(lock(&id)), Op::PutLock(lock(&format!("{id}b")))];
                        a.transaction(pair).await.map(|_| vec![id.clone(), format!("{id}b")])
                    } else {
                        a.put_lock(lock(&id)).await.map(|_| vec![id.clone()])
                    };
                    match result {
                        Ok(written) => acked.extend(written),
                        Err(Error::Fenced { ours, .. }) if ours == ea => return acked,
                        Err(e) => panic!("writer {t}: {e}"),
                    }
                }
                unreachable!()
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b = scratch.open().await;
    let mut acked = BTreeSet::new();
    for writer in writers {
        acked.extend(writer.await.unwrap());
    }
    assert!(!acked.is_empty(), "no write was acknowledged before the open");
    let visible: BTreeSet<String> = all_ids(&b).await.into_iter().collect();
    assert_eq!(visible, acked, "acknowledged writes are visible, refused ones are not");
    assert!(b.list_locks(&LockQuery::all()).await.unwrap().iter().all(|l| l.server_epoch == ea));
}

/// Nodes that start at once on an empty database all succeed: the schema is
/// migrated once, and each node gets its own epoch, the newest fencing the
/// others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_first_start_of_several_nodes() {
    for round in 0..3 {
        let Some(scratch) = Scratch::new() else { return };
        let nodes = 2 + round;
        let opening: Vec<_> = (0..nodes)
            .map(|_| {
                let config = scratch.config().with_pool_size(2);
                tokio::spawn(PostgresLockStore::open(config))
            })
            .collect();
        let mut stores = Vec::new();
        for handle in opening {
            stores.push(handle.await.unwrap().unwrap_or_else(|e| panic!("round {round}: {e}")));
        }
        let mut epochs = Vec::new();
        for store in &stores {
            epochs.push(store.epoch().await.unwrap());
        }
        epochs.sort();
        assert_eq!(epochs, (1..=nodes as u64).collect::<Vec<_>>(), "round {round}");
        let versions: Vec<i32> = scratch
            .sql()
            .await
            .query("SELECT version FROM lockwal_migrations ORDER BY version", &[])
            .await
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        assert_eq!(versions, (1..=SCHEMA_VERSION as i32).collect::<Vec<_>>(), "each migration applied once");
        let newest = nodes as u64;
        for store in &stores {
            let epoch = store.epoch().await.unwrap();
            let put = store.put_lock(lock(&format!("from-{epoch}"))).await;
            if epoch == newest {
                put.unwrap();
            } else {
                assert_fenced(put, epoch, newest);
            }
        }
        assert_eq!(all_ids(&stores[0]).await, [format!("from-{newest}")]);
    }
}

/// Another node can open while this one writes as fast as it can: the open
/// queues ahead of writes that arrive after it (a fair table lock), so a
/// busy, replaced node cannot keep the new node from starting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_is_not_starved_by_a_busy_node() {
    const TASKS: usize = 32;
    let Some(scratch) = Scratch::new() else { return };
    let a = Arc::new(PostgresLockStore::open(scratch.config().with_pool_size(TASKS)).await.unwrap());
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..TASKS)
        .map(|t| {
            let (a, stop) = (Arc::clone(&a), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    match a.put_lock(lock(&format!("busy{t}-{}", i % 50))).await {
                        Ok(()) => i += 1,
                        Err(Error::Fenced { .. }) => return i,
                        Err(e) => panic!("{e}"),
                    }
                }
                i
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let b = tokio::time::timeout(Duration::from_secs(60), scratch.open()).await;
    let took = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let mut written = 0;
    for w in writers {
        written += w.await.unwrap();
    }
    let _ = writeln!(std::io::stderr(), "open took {took:?} while {TASKS} writers wrote {written}");
    assert!(b.is_ok(), "the open did not finish within 60 s of continuous writes ({written} writes)");
}
