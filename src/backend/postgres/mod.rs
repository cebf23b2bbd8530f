//! The PostgreSQL backend (cargo feature `postgres`): several nodes share one
//! lock state in a PostgreSQL database, and the server epoch fences a node
//! that another node has replaced.
//!
//! ```no_run
//! use lockwal::backend::postgres::{PostgresConfig, PostgresLockStore};
//! use lockwal::LockStore;
//! # async fn f() -> lockwal::Result<()> {
//! let config = PostgresConfig::new("postgres://lockwal@db.example/locks").with_auto_migrate(true);
//! let store = PostgresLockStore::open(config).await?;
//! if !store.previous_shutdown_was_clean().await? {
//!     // grace period: clients reclaim(id, client); then store.end_grace()
//! }
//! store.close().await?; // records a clean shutdown
//! # Ok(()) }
//! ```
//!
//! # Fencing
//!
//! [`PostgresLockStore::open`] takes the cluster's next epoch from
//! `lockwal_meta` and makes it the epoch of the configured node
//! ([`PostgresConfig::with_node`]; none: node `""`) in `lockwal_nodes`.
//! Every write commits in an SQL transaction (its own, or one it shares
//! with the handle's concurrent writes: group commit) that share-locks the
//! node's row and checks it still holds this handle's epoch before
//! anything commits: when the same node has opened the store since, the
//! write changes nothing and fails with [`Error::Fenced`], and this handle
//! refuses every later write without asking the database. Other nodes are
//! not fenced. An open waits for every write in flight to commit, so each
//! write is ordered either entirely before the new epoch or not at all.
//! Reads keep working on a fenced handle.
//!
//! # Several nodes
//!
//! Named nodes serve one database at once. Every lock, client record and
//! durable handle belongs to the node that last wrote it; a node reclaims
//! and ends the grace of its own locks only. A named node that restarts
//! after an unclean stop, or that owns locks, starts the cluster's grace
//! period or joins it; while it is in force every node's checked grants
//! fail with [`Error::InGrace`], decided in the database. It lifts when
//! the last node that needs it calls `end_grace`, or when an operator runs
//! [`PostgresLockStore::lift_cluster_grace`]. See
//! [`cluster_status`](PostgresLockStore::cluster_status) and DESIGN.md,
//! "Nodes: ownership and the cluster-wide grace period", for the schema,
//! the transitions and why each is safe.
//!
//! # Operations in the caller's transaction
//!
//! A server whose own metadata lives in the same PostgreSQL database can
//! commit it and lock-state operations in one transaction with
//! [`PostgresLockStore::transaction_in`], fenced like every write:
//!
//! ```no_run
//! use lockwal::backend::postgres::{PostgresLockStore, tokio_postgres};
//! use lockwal::Op;
//! # async fn f(store: &PostgresLockStore, client: &mut tokio_postgres::Client, ops: Vec<Op>)
//! #     -> Result<(), Box<dyn std::error::Error>> {
//! let tx = client.transaction().await?;
//! tx.execute("DELETE FROM files WHERE name = $1", &[&"a.txt"]).await?;
//! match store.transaction_in(&tx, ops).await {
//!     Ok(_outcomes) => tx.commit().await?,
//!     // Fenced, refused or failed: nothing of either may commit.
//!     Err(e) => {
//!         tx.rollback().await?;
//!         return Err(e.into());
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! TLS is not built in: the pool connects without TLS (`sslmode=require`
//! fails); use a loopback or otherwise trusted network, or a local proxy.
//!
//! The module: `config.rs` (how to reach the database), `error.rs` (the
//! client library's errors as [`Error`]), `sql.rs` (the text of every
//! statement), `codec.rs` (statement parameters from the model, rows back
//! to it), `numeric.rs` (the exact `u64` codec), `migrate.rs` (the embedded
//! migrations), this file (the handle, open and the fence), `cluster.rs`
//! (the nodes' status), `write.rs` (the
//! write path of one request), `group.rs` and `batch.rs` (group commit:
//! concurrent requests in one transaction, a group's lock upserts and
//! deletes as one statement each), `caller.rs` (a caller's transaction)
//! and `store.rs` (the [`LockStore`] implementation).

mod batch;
mod caller;
mod cluster;
mod codec;
mod config;
mod error;
mod grant;
mod group;
mod migrate;
mod numeric;
/// The SQL text of the backend's statements. Not a stable API: public only
/// so that `examples/pg_bench.rs` can run the very same statements through
/// pgbench.
#[doc(hidden)]
pub mod sql;
mod store;
mod write;

pub use cluster::{ClusterStatus, GRACE_POLL, NodeStatus, Takeover};
pub use config::PostgresConfig;
pub use group::GroupStats;
pub use migrate::{MIGRATIONS, Migration, MigrationReport, SCHEMA_VERSION};
/// The PostgreSQL client library this backend uses, re-exported so callers
/// (and tests) use the same version.
pub use tokio_postgres;

use crate::error::{Error, Result};
#[cfg(doc)]
use crate::store::LockStore;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, QueueMode, RecyclingMethod};
use error::{pg_error, pool_error};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio_postgres::NoTls;

const NOT_FENCED: u64 = u64::MAX;

/// The receiver handed out by `watch_grace` and its task.
type GraceWatch = std::sync::Mutex<Option<(tokio::sync::watch::Receiver<u64>, tokio::task::AbortHandle)>>;
/// A [`LockStore`] in a PostgreSQL database, shared by every node that opens
/// the same database and schema; see the [module documentation](self).
pub struct PostgresLockStore {
    /// Shared with the group-commit tasks ([`group`]), which outlive a call.
    core: Arc<Core>,
}

/// What a handle is: its pool, epoch and state, and the group-commit queue.
struct Core {
    pool: Pool,
    schema: String,
    /// The node this handle is (`''` without a node id).
    node: String,
    /// This handle's epoch, and the same as the `bigint` the schema holds.
    epoch: u64,
    epoch_sql: i64,
    previous_clean: bool,
    /// Opened by [`open_read_only`](Self::open_read_only): writes refused.
    read_only: bool,
    closed: AtomicBool,
    /// `close` has begun: writes are refused from then on.
    closing: AtomicBool,
    /// The newer epoch that fenced this handle, or [`NOT_FENCED`].
    fenced_by: AtomicU64,
    /// The task renewing a named node's lease (`cluster.rs`), stopped when
    /// the handle closes or is dropped.
    renewer: std::sync::Mutex<Option<tokio::task::AbortHandle>>,
    /// The grace watch (`cluster.rs`), once started, and how it connects.
    grace_watch: GraceWatch,
    listen: tokio_postgres::Config,
    /// The store's database and the oid of its `lockwal_meta`, to refuse a
    /// caller's transaction on another database
    /// ([`transaction_in`](Self::transaction_in)).
    identity: (String, u32),
    /// Concurrent writers' requests waiting to share one SQL transaction.
    group: group::Group,
}

impl std::fmt::Debug for PostgresLockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresLockStore")
            .field("schema", &self.core.schema)
            .field("node", &self.core.node)
            .field("epoch", &self.core.epoch)
            .field("closed", &self.core.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Drop for PostgresLockStore {
    /// A dropped handle renews its lease no more (as a crashed node): after
    /// the lease another node may take it over.
    fn drop(&mut self) {
        self.core.stop_renewing();
    }
}

impl PostgresLockStore {
    /// Opens the store as the configured node: connects, applies missing
    /// migrations when `auto_migrate` is set, checks the schema version, and
    /// gives the node the cluster's next epoch (which fences every handle of
    /// this node opened before, and no other node's).
    pub async fn open(config: PostgresConfig) -> Result<Self> {
        let lease_ms: i64 = match (config.node.is_empty(), config.lease.as_millis()) {
            (true, _) => 0,
            (false, 0) => return Err(Error::InvalidInput { field: "lease", reason: "must be at least 1 ms".into() }),
            (false, ms) => i64::try_from(ms).unwrap_or(i64::MAX),
        };
        let (pool, mut conn, identity) = Self::connect(&config, config.auto_migrate).await?;
        let during = "opening the store";
        let tx = conn.transaction().await.map_err(pg_error(during))?;
        tx.batch_execute(sql::OPEN_LOCK).await.map_err(pg_error(during))?;
        // A node that never opened reports unclean, as a new store does.
        let previous: Option<bool> =
            tx.query_opt(sql::OPEN_READ, &[]).await.map_err(pg_error(during))?.map(|row| row.get(0));
        let previous_clean = previous == Some(true);
        let epoch_sql: i64 = tx.query_one(sql::OPEN_BUMP, &[]).await.map_err(pg_error(during))?.get(0);
        tx.execute(sql::OPEN_NODE, &[&epoch_sql, &lease_ms]).await.map_err(pg_error(during))?;
        // A named node needs grace when its previous incarnation stopped
        // uncleanly or it owns locks its clients may reclaim; it then starts
        // the cluster's grace period or joins the one in force. Node '' (no
        // node id) keeps the single-node behaviour: no cluster grace.
        let mut recovery_epoch = 0;
        if !config.node.is_empty() {
            let owns: bool = tx.query_one(sql::OWNS_LOCKS, &[]).await.map_err(pg_error(during))?.get(0);
            let need = owns || previous == Some(false);
            recovery_epoch = write::set_need_grace(&tx, need, epoch_sql, during).await?;
        }
        tx.commit().await.map_err(pg_error(during))?;
        drop(conn);
        let epoch = epoch_from_sql(epoch_sql, during)?;
        tracing::info!(
            schema = %config.schema, node = %config.node, epoch, previous_clean, recovery_epoch,
            "lockwal: opened PostgreSQL store"
        );
        let store = Self::new(pool, config, epoch, previous_clean, false, identity)?;
        if lease_ms > 0 {
            store.core.start_renewing(lease_ms);
        }
        Ok(store)
    }

    /// Opens the store for reading only, as operators' tools do: no epoch
    /// bump (so no live node is fenced), no migration; every write fails
    /// with [`Error::ReadOnly`], and `close` records nothing. `epoch()` and
    /// `previous_shutdown_was_clean()` report the stored epoch and clean
    /// flag as they were at open.
    pub async fn open_read_only(config: PostgresConfig) -> Result<Self> {
        let (pool, conn, identity) = Self::connect(&config, false).await?;
        let during = "opening the store read-only";
        let (epoch_sql, clean) = read_meta(&conn, sql::META, during).await?;
        drop(conn);
        let epoch = epoch_from_sql(epoch_sql, during)?;
        Self::new(pool, config, epoch, clean, true, identity)
    }

    /// The pool and one connection from it, after migrating (when asked)
    /// and checking the schema version, and the store's identity.
    async fn connect(config: &PostgresConfig, migrate: bool) -> Result<(Pool, Object, (String, u32))> {
        if config.pool_size == 0 {
            return Err(Error::InvalidInput { field: "pool_size", reason: "must be at least 1".into() });
        }
        let manager = Manager::from_config(
            config.connection()?,
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        // LIFO: the connection used last is reused first, so a caller that is
        // not concurrent keeps one warm connection (and one warm server
        // process) instead of cycling through the whole pool.
        let pool =
            Pool::builder(manager).max_size(config.pool_size).queue_mode(QueueMode::Lifo).build().map_err(|e| {
                Error::Postgres { during: "creating the connection pool", sqlstate: None, message: e.to_string() }
            })?;
        let mut conn = pool.get().await.map_err(pool_error("connect"))?;
        if migrate {
            migrate::migrate_to(&mut conn, &config.schema, SCHEMA_VERSION).await?;
        }
        migrate::require_current(&**conn, &config.schema).await?;
        let row = conn.query_one(sql::IDENTITY, &[]).await.map_err(pg_error("connect"))?;
        Ok((pool, conn, (row.get(0), row.get(1))))
    }

    fn new(
        pool: Pool,
        config: PostgresConfig,
        epoch: u64,
        previous_clean: bool,
        read_only: bool,
        identity: (String, u32),
    ) -> Result<Self> {
        let listen = config.connection()?;
        let core = Core {
            pool,
            schema: config.schema,
            node: config.node,
            epoch,
            epoch_sql: epoch as i64,
            previous_clean,
            read_only,
            closed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            fenced_by: AtomicU64::new(NOT_FENCED),
            renewer: std::sync::Mutex::new(None),
            grace_watch: std::sync::Mutex::new(None),
            listen,
            identity,
            group: group::Group::default(),
        };
        Ok(Self { core: Arc::new(core) })
    }

    /// Applies every migration the schema lacks (creating the schema when it
    /// does not exist). Safe to run from several nodes at once.
    pub async fn migrate(config: &PostgresConfig) -> Result<MigrationReport> {
        Self::migrate_to(config, SCHEMA_VERSION).await
    }

    /// Migrates the schema up or down to `version` (0 removes every table
    /// but the `lockwal_migrations` record). Down migrations drop data.
    pub async fn migrate_to(config: &PostgresConfig, version: u32) -> Result<MigrationReport> {
        let mut client = config.connect().await?;
        migrate::migrate_to(&mut client, &config.schema, version).await
    }

    /// The newest migration applied to the configured schema (0 for none).
    pub async fn schema_version(config: &PostgresConfig) -> Result<u32> {
        migrate::current_version(&config.connect().await?).await
    }

    /// The PostgreSQL schema this store lives in.
    pub fn schema(&self) -> &str {
        &self.core.schema
    }

    /// Ends the cluster's grace period for every node at once, without
    /// removing anything (each node's `end_grace` still removes what its
    /// clients did not reclaim): what an operator runs when a node that
    /// needs grace will not come back. Fences no one. Returns the recovery
    /// epoch it ended, 0 when none was in force.
    pub async fn lift_cluster_grace(config: &PostgresConfig) -> Result<u64> {
        let during = "lifting the cluster's grace";
        let mut client = config.connect().await?;
        migrate::require_current(&client, &config.schema).await?;
        let tx = client.transaction().await.map_err(pg_error(during))?;
        tx.batch_execute(sql::OPEN_LOCK).await.map_err(pg_error(during))?;
        let ended: i64 = tx.query_one(sql::LIFT_READ, &[]).await.map_err(pg_error(during))?.get(0);
        tx.batch_execute(sql::LIFT_GRACE).await.map_err(pg_error(during))?;
        tx.commit().await.map_err(pg_error(during))?;
        let ended = epoch_from_sql(ended, during)?;
        tracing::warn!(schema = %config.schema, ended, "lockwal: cluster grace lifted by an operator");
        Ok(ended)
    }

    /// The node this handle is (empty without a node id).
    pub fn node(&self) -> &str {
        &self.core.node
    }

    /// How many writes group commit has shared transactions among so far.
    pub fn group_stats(&self) -> GroupStats {
        self.core.group.stats()
    }
}

impl Core {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) { Err(Error::Closed) } else { Ok(()) }
    }

    fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        if self.closing.load(Ordering::Acquire) {
            return Err(Error::Closed);
        }
        self.check_unfenced()
    }

    /// Not read-only and not fenced (`close` checks this much: it may run
    /// again after a cancelled close).
    fn check_unfenced(&self) -> Result<()> {
        if self.read_only {
            return Err(Error::ReadOnly { store: format!("PostgreSQL schema {}", self.schema) });
        }
        match self.fenced_by.load(Ordering::Acquire) {
            NOT_FENCED => Ok(()),
            current => Err(Error::Fenced { ours: self.epoch, current }),
        }
    }

    /// Marks the handle closed, stops renewing its lease and closes its pool.
    fn shut(&self) {
        self.closed.store(true, Ordering::Release);
        self.stop_renewing();
        self.pool.close();
    }

    /// Latches the fence: this handle never writes again.
    fn fence_at(&self, current: u64) -> Error {
        self.fenced_by.store(current, Ordering::Release);
        tracing::warn!(schema = %self.schema, ours = self.epoch, current, "lockwal: fenced by a newer epoch");
        Error::Fenced { ours: self.epoch, current }
    }

    /// A fenced statement matched no epoch row: find out whether a newer
    /// epoch replaced ours (latch the fence) or our own clean shutdown was
    /// recorded (a `close` that was cancelled after it committed: closed).
    async fn fenced(&self, conn: &Object) -> Error {
        let current = async {
            let stmt = conn.prepare_cached(sql::CURRENT_EPOCH).await?;
            conn.query_one(&stmt, &[]).await.map(|row| (row.get::<_, i64>(0), row.get::<_, bool>(1)))
        };
        match current.await {
            Ok((current, clean)) => self.refusal(current, clean),
            Err(e) => pg_error("reading the epoch after a fenced write")(e),
        }
    }

    /// `Ok` when a fence row read in a transaction (its first two columns:
    /// the node's epoch and clean flag, as `sql::FENCE` reads them) still
    /// admits this handle's writes; else why not ([`refusal`](Self::refusal)).
    fn check_fence(&self, row: &tokio_postgres::Row) -> Result<()> {
        let (current, clean): (i64, bool) = (row.get(0), row.get(1));
        if current != self.epoch_sql || clean { Err(self.refusal(current, clean)) } else { Ok(()) }
    }

    /// Why the epoch row (`current`, `clean`) refuses this handle's writes.
    fn refusal(&self, current: i64, clean: bool) -> Error {
        if current == self.epoch_sql && clean {
            self.closing.store(true, Ordering::Release);
            return Error::Closed;
        }
        self.fence_at(current.max(0) as u64)
    }

    async fn conn(&self, during: &'static str) -> Result<Object> {
        let _wait = crate::metrics::pg_pool_wait();
        self.pool.get().await.map_err(pool_error(during))
    }
}

/// The epoch and clean flag of `lockwal_meta`, read with `text`.
async fn read_meta(
    client: &impl deadpool_postgres::GenericClient,
    text: &str,
    during: &'static str,
) -> Result<(i64, bool)> {
    let row = client.query_opt(text, &[]).await.map_err(pg_error(during))?.ok_or_else(|| Error::Postgres {
        during,
        sqlstate: None,
        message: "lockwal_meta has no row".into(),
    })?;
    Ok((row.get(0), row.get(1)))
}

fn epoch_from_sql(epoch_sql: i64, during: &'static str) -> Result<u64> {
    u64::try_from(epoch_sql).map_err(|_| Error::Postgres {
        during,
        sqlstate: None,
        message: format!("negative epoch {epoch_sql}"),
    })
}
