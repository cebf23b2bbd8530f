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
//!
//! Files by topic: `fencing.rs` (handles of one node, the epoch fence,
//! read-only opens), `nodes.rs` (named nodes at once: fencing per node,
//! ownership, the cluster-wide grace, the conformance suite as one node of
//! three), `migrations.rs`, `encodings.rs` (exact numerics, rows that do not
//! decode), `connections.rs` (transactions and the pool, typed errors),
//! `handles.rs` (durable handles and records: every field, the epoch on
//! every write path, rows that do not decode, key conflicts),
//! `handle_races.rs` (racing consumers, puts and swaps),
//! `handle_model.rs` (a random run of handle and record operations against
//! the state machine), `caller.rs` (operations in a caller's own
//! transaction), `group.rs` (group commit: outcomes, atomicity and the
//! fence inside a group).
#![cfg(feature = "postgres")]

#[macro_use]
#[path = "../conformance/mod.rs"]
mod conformance;

mod caller;
mod cluster_races;
mod connections;
mod encodings;
mod fencing;
mod grants;
mod group;
mod handle_model;
mod handle_races;
mod handles;
mod migrations;
mod nodes;

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

/// Runs `lockwal ARGS --url URL --schema SCHEMA --json` on the test's
/// schema; it must succeed and print one JSON value, which it returns.
#[cfg(feature = "cli")]
fn lockwal_json(scratch: &Scratch, args: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_lockwal"))
        .args(args)
        .args(["--url", &scratch.url, "--schema", &scratch.schema, "--json"])
        .output()
        .expect("run lockwal");
    assert!(out.status.success(), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("one JSON value")
}

/// The backend process id of a connection.
async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    client.query_one("SELECT pg_backend_pid()", &[]).await.expect("pg_backend_pid").get(0)
}

/// A raw connection with the server's default `search_path`, as a caller's
/// own connection would be.
async fn caller_client(scratch: &Scratch) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&scratch.url, NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

/// Waits until another backend is blocked by backend `holder` (on a row,
/// key or table lock it holds): a racer is then really waiting for it.
async fn wait_blocked_by(scratch: &Scratch, holder: i32) {
    wait_blocked(scratch, holder, 1).await;
}

/// Waits until `n` backends are blocked by backend `holder`.
async fn wait_blocked(scratch: &Scratch, holder: i32, n: i64) {
    let observer = scratch.sql().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let waiting: i64 = observer
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE $1::integer = ANY (pg_blocking_pids(pid))",
                &[&holder],
            )
            .await
            .expect("pg_blocking_pids")
            .get(0);
        if waiting >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{waiting} of {n} backends waited for backend {holder} within 30 s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
