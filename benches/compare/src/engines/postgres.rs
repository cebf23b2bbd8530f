//! lockwal's PostgreSQL backend (cargo feature `postgres`), for W1 and W2
//! only: every grant and every release is one autocommit statement behind
//! the epoch fence, durable when the server acknowledges its commit.
//!
//! It needs a server: the URL comes from `LOCKWAL_TEST_PG_URL` (what
//! `scripts/pg-throwaway start` exports; `scripts/compare` starts a
//! throwaway cluster when the server binaries are installed). Without that
//! variable [`super::all`] leaves this peer out.
//!
//! The store lives in the database, not in the directory it is given: each
//! open gets a fresh schema of its own (named after this process and a
//! counter, since W2 reopens the same directory for every task count), which
//! `close` drops again.

use crate::engine::{Caps, Peer, Restored, Store, unsupported};
use crate::{Dataset, Result};
use async_trait::async_trait;
use lockwal::backend::postgres::tokio_postgres::{self, NoTls};
use lockwal::backend::postgres::{PostgresConfig, PostgresLockStore};
use lockwal::model::PersistedLock;
use lockwal::{LockQuery, LockStore};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// The environment variable holding the server's URL.
pub const URL_VAR: &str = "LOCKWAL_TEST_PG_URL";

/// Connections in the store's pool: W2's tasks share them, and tasks beyond
/// this many wait for a free one.
pub const POOL_SIZE: usize = 64;

/// The PostgreSQL-backend peer, for the server at `url`.
pub struct Postgres {
    url: String,
}

impl Postgres {
    /// The peer for the server named by `LOCKWAL_TEST_PG_URL`, or `None`
    /// when it is unset or empty.
    pub fn from_env() -> Option<Self> {
        std::env::var(URL_VAR).ok().filter(|u| !u.trim().is_empty()).map(|url| Postgres { url })
    }

    /// Where the server is, without user, password or database: the
    /// `(host, port)` pairs of the URL (`None` when it does not parse).
    fn endpoint(&self) -> Option<String> {
        let config: tokio_postgres::Config = self.url.parse().ok()?;
        let ports = config.get_ports();
        let hosts = config.get_hosts().iter().enumerate().map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                tokio_postgres::config::Host::Tcp(h) if h == "127.0.0.1" || h == "localhost" || h == "::1" => {
                    format!("loopback TCP to {h}:{port}")
                }
                tokio_postgres::config::Host::Tcp(h) => format!("TCP to {h}:{port}"),
                tokio_postgres::config::Host::Unix(p) => format!("unix socket in {}", p.display()),
            }
        });
        Some(hosts.collect::<Vec<_>>().join(", "))
    }
}

/// The server's version and durability settings, read at the first open of
/// this process (the docs print them with the configuration).
static SERVER: OnceLock<String> = OnceLock::new();

/// Numbers the schemas this process creates.
static NEXT_SCHEMA: AtomicU64 = AtomicU64::new(0);

/// A plain connection to the database, outside any store.
async fn connect(url: &str) -> Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// `name=value` of the settings that decide what a durable commit costs.
async fn server_settings(admin: &tokio_postgres::Client) -> Result<String> {
    let rows = admin
        .query(
            "SELECT name, setting, unit FROM pg_settings WHERE name IN ('server_version', 'fsync', \
             'synchronous_commit', 'wal_sync_method', 'full_page_writes', 'commit_delay', 'shared_buffers', \
             'max_connections') ORDER BY name = 'server_version' DESC, name",
            &[],
        )
        .await?;
    let settings: Vec<String> = rows
        .iter()
        .map(|r| {
            let (name, setting, unit): (&str, &str, Option<&str>) = (r.get(0), r.get(1), r.get(2));
            match (name, unit) {
                ("server_version", _) => format!("PostgreSQL {setting}"),
                // shared_buffers is counted in 8kB pages.
                ("shared_buffers", Some("8kB")) => {
                    format!("shared_buffers={} MiB", setting.parse::<u64>().unwrap_or(0) * 8 / 1024)
                }
                (_, Some(unit)) => format!("{name}={setting} {unit}"),
                _ => format!("{name}={setting}"),
            }
        })
        .collect();
    Ok(settings.join(", "))
}

/// An open store: the backend, the schema it owns, and a connection to drop
/// that schema at close.
struct PostgresStore {
    store: PostgresLockStore,
    schema: String,
    admin: tokio_postgres::Client,
}

#[async_trait]
impl Peer for Postgres {
    fn name(&self) -> &'static str {
        "lockwal-postgres"
    }

    fn config(&self) -> String {
        let server = match SERVER.get() {
            Some(settings) => settings.clone(),
            None => "server settings not read (no store opened in this run)".into(),
        };
        let origin = if std::env::var_os("LOCKWAL_PG_THROWAWAY_DIR").is_some() {
            "a throwaway cluster from scripts/pg-throwaway on this machine (initdb defaults but max_connections=300)"
        } else {
            "the server at $LOCKWAL_TEST_PG_URL"
        };
        format!(
            "lockwal PostgresLockStore (feature `postgres`): each grant and release one autocommit statement behind \
             the epoch fence, acknowledged after the server's commit; pool of {POOL_SIZE} connections shared by \
             every task (more tasks wait for a connection); a fresh schema per store. Server: {origin}, {}; {server}",
            self.endpoint().unwrap_or_else(|| "unparsed URL".into())
        )
    }

    fn caps(&self) -> Caps {
        Caps { serial: true, concurrent: true, restore: false, queries: false }
    }

    async fn open(&self, _dir: &Path) -> Result<Arc<dyn Store>> {
        let admin = connect(&self.url).await?;
        if SERVER.get().is_none() {
            let _ = SERVER.set(server_settings(&admin).await?);
        }
        let n = NEXT_SCHEMA.fetch_add(1, Ordering::Relaxed);
        let schema = format!("lockwal_compare_{}_{n}", std::process::id());
        // A leftover of an earlier process with the same id would not be empty.
        admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await?;
        let config =
            PostgresConfig::new(&self.url).with_schema(&schema).with_pool_size(POOL_SIZE).with_auto_migrate(true);
        let store = PostgresLockStore::open(config).await?;
        Ok(Arc::new(PostgresStore { store, schema, admin }))
    }
}

#[async_trait]
impl Store for PostgresStore {
    fn lockwal(&self) -> Option<&dyn LockStore> {
        Some(&self.store)
    }

    async fn put(&self, lock: PersistedLock) -> Result<()> {
        Ok(self.store.put_lock(lock).await?)
    }

    async fn delete(&self, lock: &PersistedLock) -> Result<()> {
        Ok(self.store.delete_lock(&lock.id).await?)
    }

    async fn load(&self, locks: Vec<PersistedLock>) -> Result<()> {
        super::memory::load_in_transactions(&self.store, locks).await
    }

    async fn by_client(&self, client: &str) -> Result<Vec<PersistedLock>> {
        Ok(self.store.list_locks(&LockQuery::by_client(client)).await?)
    }

    async fn by_file(&self, file: &str) -> Result<Vec<PersistedLock>> {
        Ok(self.store.list_locks(&LockQuery::by_file(file)).await?)
    }

    async fn read_all(&self, _data: &Dataset) -> Result<Restored> {
        Err(unsupported("lockwal-postgres", "restore (it takes part in W1 and W2 only)"))
    }

    /// Closes the store, then drops its schema: nothing is left in the
    /// database.
    async fn close(&self) -> Result<()> {
        self.store.close().await?;
        self.admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema)).await?;
        Ok(())
    }
}

/// Nodes of [`PostgresNodes`].
pub const NODES: usize = 3;

/// lockwal's PostgreSQL backend as a cluster: [`NODES`] handles with
/// distinct node ids (`n0`, `n1`, `n2`) on one schema of one server, in
/// this process, each with a pool of [`POOL_SIZE`] connections; every
/// grant a checked grant (`LockStore::grant`), each lock's grant and
/// release sent to the node its id hashes to. A refused grant is the
/// store's answer (counted, as in `checked.rs`).
pub struct PostgresNodes {
    /// The server.
    pub pg: Postgres,
}

struct NodesStore {
    nodes: Vec<PostgresLockStore>,
    schema: String,
    admin: tokio_postgres::Client,
    refused: AtomicU64,
}

impl NodesStore {
    fn node(&self, lock_id: &str) -> &PostgresLockStore {
        use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
        let h = BuildHasherDefault::<DefaultHasher>::default().hash_one(lock_id);
        &self.nodes[(h % self.nodes.len() as u64) as usize]
    }
}

#[async_trait]
impl Peer for PostgresNodes {
    fn name(&self) -> &'static str {
        "lockwal-postgres-3nodes-checked"
    }

    fn config(&self) -> String {
        format!(
            "{NODES} named nodes of lockwal PostgresLockStore on one schema, in one process, each with its own \
             pool of {POOL_SIZE} connections; every grant a checked grant sent to the node its lock id hashes to, \
             releases likewise; otherwise as lockwal-postgres: {}",
            self.pg.config()
        )
    }

    fn caps(&self) -> Caps {
        Caps { serial: false, concurrent: true, restore: false, queries: false }
    }

    async fn open(&self, _dir: &Path) -> Result<Arc<dyn Store>> {
        let admin = connect(&self.pg.url).await?;
        if SERVER.get().is_none() {
            let _ = SERVER.set(server_settings(&admin).await?);
        }
        let n = NEXT_SCHEMA.fetch_add(1, Ordering::Relaxed);
        let schema = format!("lockwal_compare_{}_{n}", std::process::id());
        admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await?;
        let mut nodes = Vec::new();
        for i in 0..NODES {
            let config = PostgresConfig::new(&self.pg.url)
                .with_schema(&schema)
                .with_pool_size(POOL_SIZE)
                .with_auto_migrate(true)
                .with_node(format!("n{i}"));
            nodes.push(PostgresLockStore::open(config).await?);
        }
        Ok(Arc::new(NodesStore { nodes, schema, admin, refused: AtomicU64::new(0) }))
    }
}

#[async_trait]
impl Store for NodesStore {
    fn lockwal(&self) -> Option<&dyn LockStore> {
        Some(&self.nodes[0])
    }

    async fn put(&self, lock: PersistedLock) -> Result<()> {
        super::checked::grant_counting_refusals(self.node(&lock.id), lock, &self.refused).await
    }

    async fn delete(&self, lock: &PersistedLock) -> Result<()> {
        Ok(self.node(&lock.id).delete_lock(&lock.id).await?)
    }

    async fn load(&self, locks: Vec<PersistedLock>) -> Result<()> {
        super::memory::load_in_transactions(&self.nodes[0], locks).await
    }

    async fn by_client(&self, client: &str) -> Result<Vec<PersistedLock>> {
        Ok(self.nodes[0].list_locks(&LockQuery::by_client(client)).await?)
    }

    async fn by_file(&self, file: &str) -> Result<Vec<PersistedLock>> {
        Ok(self.nodes[0].list_locks(&LockQuery::by_file(file)).await?)
    }

    async fn read_all(&self, _data: &Dataset) -> Result<Restored> {
        Err(unsupported("lockwal-postgres-3nodes-checked", "restore"))
    }

    async fn close(&self) -> Result<()> {
        for node in &self.nodes {
            node.close().await?;
        }
        self.admin.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema)).await?;
        Ok(())
    }

    fn stats(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({ "refused_grants": self.refused.load(Ordering::Relaxed) }))
    }
}
