//! The PostgreSQL backend against a real PostgreSQL server: the whole
//! conformance suite, plus what only a shared database has (two nodes on one
//! store, epoch fencing, concurrent first start, migrations) and the exact
//! `u64` encoding.
//!
//! The server comes from `LOCKWAL_TEST_PG_URL` (`scripts/test` starts a
//! throwaway cluster and sets it). Every test works in its own PostgreSQL
//! schema with a unique name, so tests run in parallel on one database and
//! each conformance case starts from an empty store; the schema is dropped
//! when the test passes (kept, and named, when it fails). Without the
//! variable the tests say they were skipped and why; with `CI=true` they
//! fail instead.
#![cfg(feature = "postgres")]

#[macro_use]
mod conformance;

use async_trait::async_trait;
use conformance::Harness;
use lockwal::backend::postgres::{PostgresConfig, PostgresLockStore, SCHEMA_VERSION, tokio_postgres};
use lockwal::model::*;
use lockwal::testing::sample;
use lockwal::{Error, LockQuery, LockStore, Op};
use std::collections::BTreeSet;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio_postgres::NoTls;

const URL_VAR: &str = "LOCKWAL_TEST_PG_URL";

/// The test server's URL; `None` after saying why the tests are skipped.
/// Panics instead when `CI=true`: CI must run them.
fn test_url() -> Option<String> {
    if let Ok(url) = std::env::var(URL_VAR)
        && !url.trim().is_empty()
    {
        return Some(url);
    }
    let binaries = ["/usr/local/bin", "/usr/bin"]
        .iter()
        .map(|d| format!("{d}/initdb"))
        .chain(
            std::fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| format!("{}/bin/initdb", e.path().display())),
        )
        .find(|p| std::path::Path::new(p).exists());
    let why = match binaries {
        Some(initdb) => format!(
            "{URL_VAR} is not set (PostgreSQL is installed, {initdb}: run scripts/test, or \
             scripts/pg-throwaway run cargo test --features postgres --test postgres)"
        ),
        None => format!("{URL_VAR} is not set and no PostgreSQL server binaries (initdb) are installed"),
    };
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("the PostgreSQL tests may not be skipped in CI: {why}");
    }
    static SAY_ONCE: Once = Once::new();
    SAY_ONCE.call_once(|| {
        // Straight to the process's stderr: the test harness captures eprintln!.
        let _ = writeln!(std::io::stderr(), "\nSKIPPED: lockwal PostgreSQL tests: {why}\n");
    });
    None
}

/// A PostgreSQL schema of its own for one test, dropped afterwards.
struct Scratch {
    url: String,
    schema: String,
}

impl Scratch {
    fn new() -> Option<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let url = test_url()?;
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
        let schema = format!("lockwal_t{}_{nanos}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
        Some(Self { url, schema })
    }

    /// The store's configuration: this schema, migrated on open.
    fn config(&self) -> PostgresConfig {
        PostgresConfig::new(&self.url).with_schema(&self.schema).with_pool_size(4).with_auto_migrate(true)
    }

    async fn open(&self) -> PostgresLockStore {
        PostgresLockStore::open(self.config()).await.expect("open the PostgreSQL store")
    }

    /// A plain connection with `search_path` set to this schema.
    async fn sql(&self) -> tokio_postgres::Client {
        let (client, connection) = tokio_postgres::connect(&self.url, NoTls).await.expect("connect");
        tokio::spawn(connection);
        client.batch_execute(&format!("SET search_path TO {}", self.schema)).await.expect("set search_path");
        client
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = writeln!(std::io::stderr(), "kept PostgreSQL schema {} of the failed test", self.schema);
            return;
        }
        let (url, schema) = (self.url.clone(), self.schema.clone());
        // A thread of its own: this may run inside the test's runtime.
        let dropped = std::thread::spawn(move || -> Result<(), String> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| e.to_string())?;
            rt.block_on(async {
                let (client, connection) = tokio_postgres::connect(&url, NoTls).await.map_err(|e| e.to_string())?;
                tokio::spawn(connection);
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            let _ = writeln!(std::io::stderr(), "could not drop test schema {}: {e}", self.schema);
        }
    }
}

/// Opens the store in the test's schema; `reopen` drops the handle and
/// opens the same schema again (the next epoch).
struct Pg {
    scratch: Scratch,
}

#[async_trait]
impl Harness for Pg {
    async fn open(&mut self) -> Arc<dyn LockStore> {
        Arc::new(self.scratch.open().await)
    }

    async fn reopen(&mut self, store: Arc<dyn LockStore>) -> Arc<dyn LockStore> {
        drop(store);
        self.open().await
    }
}

/// A fresh harness, or a return from the test when it is skipped.
macro_rules! pg_or_skip {
    () => {
        match Scratch::new() {
            Some(scratch) => Pg { scratch },
            None => return,
        }
    };
}

conformance_suite!(pg_or_skip!());

fn ids(locks: &[PersistedLock]) -> Vec<String> {
    locks.iter().map(|l| l.id.to_string()).collect()
}

async fn all_ids(store: &impl LockStore) -> Vec<String> {
    ids(&store.list_locks(&LockQuery::all()).await.expect("list"))
}

fn lock(id: &str) -> PersistedLock {
    sample::byte_range(id, "s", &format!("f-{id}"), "o", "c")
}

#[track_caller]
fn assert_fenced(result: Result<impl std::fmt::Debug, Error>, ours: u64, current: u64) {
    match result {
        Err(Error::Fenced { ours: o, current: c }) if o == ours && c == current => {}
        other => panic!("expected Fenced {{ ours: {ours}, current: {current} }}, got {other:?}"),
    }
}

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
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_lockwal"))
            .args(args)
            .args(["--url", &scratch.url, "--schema", &scratch.schema, "--json"])
            .output()
            .expect("run lockwal");
        assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("one JSON value")
    };
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

/// Every write path (one-statement puts and deletes, multi-operation
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
    for _ in 0..10 {
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

async fn tables(scratch: &Scratch) -> Vec<String> {
    scratch
        .sql()
        .await
        .query("SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY 1", &[&scratch.schema])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

async fn recorded(scratch: &Scratch) -> Vec<i32> {
    let sql = scratch.sql().await;
    sql.query("SELECT version FROM lockwal_migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Migrations go up, down and up again; each step is recorded; a store
/// opens only on the version it was built for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_up_down_up() {
    let Some(scratch) = Scratch::new() else { return };
    let config = scratch.config().with_auto_migrate(false);
    assert_eq!(SCHEMA_VERSION, 3);
    assert_eq!(PostgresLockStore::schema_version(&config).await.unwrap(), 0);
    match PostgresLockStore::open(config.clone()).await {
        Err(Error::SchemaVersion { found: 0, expected: SCHEMA_VERSION, schema }) => assert_eq!(schema, scratch.schema),
        other => panic!("expected SchemaVersion, got {other:?}"),
    }

    let up = PostgresLockStore::migrate(&config).await.unwrap();
    assert_eq!((up.from, up.to, up.steps), (0, 3, vec![1, 2, 3]));
    assert_eq!(tables(&scratch).await, ["lockwal_clients", "lockwal_locks", "lockwal_meta", "lockwal_migrations"]);
    assert_eq!(recorded(&scratch).await, [1, 2, 3]);
    let again = PostgresLockStore::migrate(&config).await.unwrap();
    assert_eq!((again.from, again.to, again.steps), (3, 3, vec![]));

    let store = PostgresLockStore::open(config.clone()).await.unwrap();
    store.put_lock(lock("L")).await.unwrap();
    // What migration 2 can hold too (no NFSv4 short id), so it can go down.
    let mut client = sample::client("c");
    client.details = ClientDetails::Nfs4(Nfs4Details::default());
    store.put_client(client).await.unwrap();
    store.close().await.unwrap();

    let down = PostgresLockStore::migrate_to(&config, 1).await.unwrap();
    assert_eq!((down.from, down.to, down.steps), (3, 1, vec![3, 2]));
    assert_eq!(tables(&scratch).await, ["lockwal_locks", "lockwal_meta", "lockwal_migrations"]);
    assert!(matches!(PostgresLockStore::open(config.clone()).await, Err(Error::SchemaVersion { found: 1, .. })));
    let down = PostgresLockStore::migrate_to(&config, 0).await.unwrap();
    assert_eq!((down.from, down.to, down.steps), (1, 0, vec![1]));
    assert_eq!(tables(&scratch).await, ["lockwal_migrations"]);
    assert!(recorded(&scratch).await.is_empty());

    let up = PostgresLockStore::migrate(&config).await.unwrap();
    assert_eq!((up.from, up.to, up.steps), (0, 3, vec![1, 2, 3]));
    let store = PostgresLockStore::open(config.clone()).await.unwrap();
    assert_eq!(store.epoch().await.unwrap(), 1, "a fresh schema after down and up");
    assert_eq!(store.count().await.unwrap(), 0);
    assert!(store.list_clients(&ClientQuery::all()).await.unwrap().is_empty());
    store.put_lock(lock("after")).await.unwrap();
    assert_eq!(all_ids(&store).await, ["after"]);

    assert!(matches!(
        PostgresLockStore::migrate_to(&config, SCHEMA_VERSION + 1).await,
        Err(Error::InvalidInput { field: "target", .. })
    ));
    // A schema migrated by a newer build is refused, not misread.
    scratch
        .sql()
        .await
        .execute("INSERT INTO lockwal_migrations (version, name) VALUES (99, 'future')", &[])
        .await
        .unwrap();
    assert!(matches!(PostgresLockStore::open(config.clone()).await, Err(Error::SchemaVersion { found: 99, .. })));
    assert!(matches!(PostgresLockStore::migrate(&config).await, Err(Error::SchemaVersion { found: 99, .. })));
}

/// The rows of a database at migration 2, as that version wrote them
/// (every column of every kind, the lease states and delegation ids in
/// their migration-2 encodings), as one JSON text per row (keys sorted,
/// so column order does not count).
async fn rows_as_text(sql: &tokio_postgres::Client) -> Vec<String> {
    let locks = sql.query("SELECT to_jsonb(l)::text FROM lockwal_locks l ORDER BY id", &[]).await.unwrap();
    let clients = sql.query("SELECT to_jsonb(c)::text FROM lockwal_clients c ORDER BY client_id", &[]).await.unwrap();
    locks.iter().chain(&clients).map(|r| r.get(0)).collect()
}

/// A database at migration 2 with rows of every kind is upgraded in place
/// by migration 3: its rows read back as the WAL converts a format-1 log
/// (DESIGN.md, "Upgrading"). Down to 2 gives back the rows exactly as
/// migration 2 held them, and up again the same records; a row migration 2
/// cannot hold makes the down migration refuse and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_3_upgrades_rows_in_place_and_down_up_is_lossless() {
    let Some(scratch) = Scratch::new() else { return };
    let config = scratch.config().with_auto_migrate(false);
    PostgresLockStore::migrate_to(&config, 2).await.unwrap();
    let sql = scratch.sql().await;
    let columns = "id, share, file_id, owner_id, client_id, kind, acquired_at, server_epoch";
    let base = "'s'::bytea, 'f'::bytea, 'o'::bytea, 'c'::bytea";
    sql.batch_execute(&format!(
        "UPDATE lockwal_meta SET epoch = 4, clean = true;
         INSERT INTO lockwal_locks ({columns}, range_type, range_offset, range_length, range_zero_byte)
             VALUES ('r', {base}, 'byte_range', 10, 3, 'exclusive', 18446744073709551615, 0, false);
         INSERT INTO lockwal_locks ({columns}, share_access, share_deny)
             VALUES ('s', {base}, 'share', 11, 3, 'read_write', 'write');
         INSERT INTO lockwal_locks ({columns}, lease_key, lease_state, lease_epoch, lease_parent_key,
                 lease_is_directory, lease_is_traditional_oplock, lease_break_to, lease_break_required,
                 lease_break_started_at)
             VALUES ('lb', {base}, 'lease', 12, 2, '\\x0707070707070707070707070707070b', 'RWH', 65535,
                 '\\x08080808080808080808080808080808', true, false, 'R', 'RH', -5);
         INSERT INTO lockwal_locks ({columns}, lease_key, lease_state, lease_epoch, lease_is_directory,
                 lease_is_traditional_oplock)
             VALUES ('lq', {base}, 'lease', 13, 1, '\\x0909090909090909090909090909090c', 'WH', 0, false, true);
         INSERT INTO lockwal_locks ({columns}, deleg_id, deleg_type, deleg_breaking, deleg_recalled, deleg_revoked,
                 deleg_notification_mask)
             VALUES ('d', {base}, 'delegation', 14, 3, 18446744073709551614, 'write', true, false, true, 4294967295);
         INSERT INTO lockwal_clients (client_id, kind, name, verifier, principal, callback, registered_at, epoch,
                 reclaim_complete)
             VALUES ('a', 'nsm', 'host-a', '\\x0102', '', '\\x03', 20, 2, false),
                    ('b', 'nfs4', 'Linux NFSv4.2 b', '\\x0405', 'nfs/b', '', 21, 18446744073709551615, true),
                    ('c', 'smb', 'WS', '', 'DOMAIN/u', '\\x06', 22, 3, false);"
    ))
    .await
    .unwrap();
    let written = rows_as_text(&sql).await;
    assert_eq!(written.len(), 8);

    let report = PostgresLockStore::migrate(&config).await.unwrap();
    assert_eq!((report.from, report.to, report.steps), (2, 3, vec![3]));
    let store = PostgresLockStore::open_read_only(config.clone()).await.unwrap();
    let locks = store.list_locks(&LockQuery::all()).await.unwrap();
    let kinds: Vec<(&str, &LockKind, u64)> = locks.iter().map(|l| (&*l.id, &l.kind, l.server_epoch)).collect();
    let flavor = RangeFlavor::Posix;
    let lease = |key: [u8; 16]| Lease {
        key,
        state: LeaseState::NONE,
        epoch: 0,
        parent_key: None,
        is_directory: false,
        is_traditional_oplock: false,
        breaking: false,
        break_to: LeaseState::NONE,
        break_required: LeaseState::NONE,
        break_started_at: None,
    };
    let mut key = [7; 16];
    key[15] = 0x0b;
    let breaking = Lease {
        state: LeaseState::READ | LeaseState::WRITE | LeaseState::HANDLE,
        epoch: 65535,
        parent_key: Some([8; 16]),
        is_directory: true,
        breaking: true,
        break_to: LeaseState::READ,
        break_required: LeaseState::READ | LeaseState::HANDLE,
        break_started_at: Some(Timestamp::from_unix_micros(-5)),
        ..lease(key)
    };
    let mut key = [9; 16];
    key[15] = 0x0c;
    let quiet = Lease { state: LeaseState::WRITE | LeaseState::HANDLE, is_traditional_oplock: true, ..lease(key) };
    let mut id = (u64::MAX - 1).to_le_bytes().to_vec();
    let expected = [
        (
            "d",
            LockKind::Delegation(Delegation {
                delegation_id: std::mem::take(&mut id),
                delegation_type: DelegationType::Write,
                breaking: true,
                recalled: false,
                revoked: true,
                notification_mask: u32::MAX,
                is_directory: false,
            }),
            3,
        ),
        ("lb", LockKind::Lease(breaking), 2),
        ("lq", LockKind::Lease(quiet), 1),
        (
            "r",
            LockKind::ByteRange(ByteRange {
                lock_type: LockType::Exclusive,
                offset: u64::MAX,
                length: 0,
                zero_byte: false,
                flavor,
            }),
            3,
        ),
        ("s", LockKind::Share(ShareReservation { access: ShareAccess::ReadWrite, deny: ShareDeny::Write }), 3),
    ];
    let expected: Vec<(&str, &LockKind, u64)> = expected.iter().map(|(id, k, e)| (*id, k, *e)).collect();
    assert_eq!(kinds, expected);
    let clients = store.list_clients(&ClientQuery::all()).await.unwrap();
    let details: Vec<(&str, &ClientDetails)> = clients.iter().map(|c| (c.client_id.as_str(), &c.details)).collect();
    let nsm = ClientDetails::Nsm(NsmDetails::default());
    let nfs4 = ClientDetails::Nfs4(Nfs4Details { short_id: 0 });
    assert_eq!(details, [("a", &nsm), ("b", &nfs4), ("c", &ClientDetails::Smb)]);
    assert_eq!(clients[1].epoch, u64::MAX);
    assert_eq!((clients[2].principal.as_str(), clients[2].callback.as_slice()), ("DOMAIN/u", &[6u8][..]));
    store.close().await.unwrap();

    // Down to 2: the rows exactly as migration 2 held them.
    let report = PostgresLockStore::migrate_to(&config, 2).await.unwrap();
    assert_eq!(report.steps, [3]);
    assert_eq!(rows_as_text(&sql).await, written);
    PostgresLockStore::migrate(&config).await.unwrap();
    let store = PostgresLockStore::open_read_only(config.clone()).await.unwrap();
    assert_eq!(store.list_locks(&LockQuery::all()).await.unwrap(), locks);
    assert_eq!(store.list_clients(&ClientQuery::all()).await.unwrap(), clients);
    store.close().await.unwrap();

    // A record only migration 3 can hold: down refuses, nothing changes.
    let store = PostgresLockStore::open(config.clone()).await.unwrap();
    let mut smb = lock("smb");
    smb.kind = sample::every_kind().into_iter().find(|l| &*l.id == "kind-smb-deny-read").unwrap().kind;
    store.put_lock(smb).await.unwrap();
    store.close().await.unwrap();
    let before = rows_as_text(&sql).await;
    match PostgresLockStore::migrate_to(&config, 2).await {
        Err(Error::Postgres { message, .. }) => assert!(message.contains("cannot revert migration 3"), "{message}"),
        other => panic!("expected a refused down migration, got {other:?}"),
    }
    assert_eq!(rows_as_text(&sql).await, before);
    assert_eq!(PostgresLockStore::schema_version(&config).await.unwrap(), 3);
}

/// Every u64 field is an exact numeric in the database: 2^64-1 is stored as
/// 18446744073709551615 (readable, sortable), and values beyond are refused
/// by the schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u64_fields_are_exact_numerics_in_the_database() {
    let Some(scratch) = Scratch::new() else { return };
    let store = scratch.open().await;
    let boundaries = [0, 1, 9_999, 10_000, u32::MAX as u64, i64::MAX as u64, 1 << 63, u64::MAX - 1, u64::MAX];
    let sql = scratch.sql().await;
    for (i, &v) in boundaries.iter().enumerate() {
        let mut range = lock(&format!("r{i}"));
        range.kind = LockKind::ByteRange(ByteRange {
            lock_type: LockType::Shared,
            offset: v,
            length: 0,
            zero_byte: false,
            flavor: RangeFlavor::Posix,
        });
        let mut deleg = sample::every_kind().into_iter().find(|l| &*l.id == "kind-delegation-revoked").unwrap();
        deleg.id = format!("d{i}").into();
        if let LockKind::Delegation(d) = &mut deleg.kind {
            d.notification_mask = v as u32;
        }
        let mut client = sample::client(&format!("c{i}"));
        client.epoch = v;
        client.details = ClientDetails::Nfs4(Nfs4Details { short_id: v });
        store
            .transaction(vec![Op::PutLock(range.clone()), Op::PutLock(deleg.clone()), Op::PutClient(client.clone())])
            .await
            .unwrap();
        assert_eq!(store.get_lock(&range.id).await.unwrap().kind, range.kind);
        assert_eq!(store.get_lock(&deleg.id).await.unwrap().kind, deleg.kind);
        assert_eq!(store.get_client(ClientKind::Nfs4, &client.client_id).await.unwrap(), client);
        let row = sql
            .query_one(
                "SELECT (SELECT range_offset::text FROM lockwal_locks WHERE id = $1),
                        (SELECT nfs4_short_id::text FROM lockwal_clients WHERE client_id = $2),
                        (SELECT epoch::text FROM lockwal_clients WHERE client_id = $2)",
                &[&range.id.as_bytes(), &client.client_id.as_bytes()],
            )
            .await
            .unwrap();
        for column in 0..3 {
            assert_eq!(row.get::<_, String>(column), v.to_string(), "value {v}, column {column}");
        }
    }
    let sorted: Vec<String> = sql
        .query(
            "SELECT convert_from(id, 'UTF8') FROM lockwal_locks WHERE kind = 'byte_range' ORDER BY range_offset",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(sorted, (0..boundaries.len()).map(|i| format!("r{i}")).collect::<Vec<_>>(), "numeric order");
    let beyond = sql.execute("UPDATE lockwal_locks SET range_offset = 18446744073709551616 WHERE id = 'r0'", &[]).await;
    let code = beyond.expect_err("2^64 refused").code().cloned();
    assert_eq!(code, Some(tokio_postgres::error::SqlState::CHECK_VIOLATION));
}

/// A row that does not fit the model is an error naming the row and the
/// column, never silently skipped (as the implementation this replaces did).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_does_not_decode_is_an_error_not_skipped() {
    let Some(scratch) = Scratch::new() else { return };
    let store = scratch.open().await;
    store.put_lock(lock("good")).await.unwrap();
    store.put_lock(lock("bad")).await.unwrap();
    scratch
        .sql()
        .await
        .execute("UPDATE lockwal_locks SET owner_id = '\\xff'::bytea WHERE id = 'bad'", &[])
        .await
        .unwrap();
    for result in [store.list_locks(&LockQuery::all()).await.map(drop), store.get_lock("bad").await.map(drop)] {
        match result {
            Err(Error::Postgres { during, message, .. }) => {
                assert_eq!(during, "decoding a row");
                assert!(message.contains("lockwal_locks row \"bad\"") && message.contains("owner_id"), "{message}");
            }
            other => panic!("expected a decoding error, got {other:?}"),
        }
    }
    assert_eq!(&*store.get_lock("good").await.unwrap().owner_id, "o");
}

/// A transaction whose future is dropped part way leaves nothing behind, and
/// the connection it used goes back to the pool outside any transaction: the
/// next write on it (the pool has one) is committed and seen by others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_transaction_is_all_or_nothing_and_frees_its_connection() {
    const OPS: usize = 200;
    let Some(scratch) = Scratch::new() else { return };
    let store = PostgresLockStore::open(scratch.config().with_pool_size(1)).await.unwrap();
    let observer = scratch.sql().await;
    let count = |file: String| {
        let observer = &observer;
        async move {
            let n: i64 = observer
                .query_one("SELECT count(*) FROM lockwal_locks WHERE file_id = $1", &[&file.as_bytes()])
                .await
                .unwrap()
                .get(0);
            n as usize
        }
    };
    let mut cut = 0;
    for round in 0..20u64 {
        let file = format!("batch-{round}");
        let ops = (0..OPS).map(|i| Op::PutLock(sample::byte_range(&format!("{round}-{i}"), "s", &file, "o", "c")));
        let write = store.transaction(ops.collect());
        let finished = tokio::time::timeout(Duration::from_micros(500 + 700 * round), write).await.is_ok();
        let marker = format!("marker-{round}");
        store.put_lock(sample::byte_range(&marker, "s", &marker, "o", "c")).await.unwrap();
        assert_eq!(count(marker).await, 1, "round {round}: the next write on the connection committed");
        let n = count(file).await;
        assert!(n == 0 || n == OPS, "round {round}: {n} of {OPS} operations visible");
        if !finished {
            cut += 1;
        }
    }
    assert!(cut > 0, "no transaction was cut part way");
}

/// Configuration and connection failures are typed errors with context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_and_connection_errors_are_typed() {
    // Port 1 on loopback: nothing listens; no server needed for this test.
    let refused = PostgresLockStore::open(PostgresConfig::new("postgres://lockwal@127.0.0.1:1/none")).await;
    assert!(matches!(refused, Err(Error::Postgres { during: "connect", sqlstate: None, .. })), "{refused:?}");
    let bad_schema =
        PostgresLockStore::open(PostgresConfig::new("postgres://h/db").with_schema("Robert'); DROP")).await;
    assert!(matches!(bad_schema, Err(Error::InvalidInput { field: "schema", .. })), "{bad_schema:?}");
    let no_pool = PostgresLockStore::open(PostgresConfig::new("postgres://h/db").with_pool_size(0)).await;
    assert!(matches!(no_pool, Err(Error::InvalidInput { field: "pool_size", .. })), "{no_pool:?}");
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
