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
//! [`PostgresLockStore::open`] increments the epoch in `lockwal_meta` under a
//! row lock and remembers the new value as this handle's epoch. Every write
//! is one SQL transaction whose first step share-locks that row and checks
//! it still holds this handle's epoch: when another node has opened the
//! store since, the write changes nothing and fails with
//! [`Error::Fenced`], and this handle refuses every later write without
//! asking the database. An open waits for every write in flight to commit
//! (its row update waits for their share locks), so each write is ordered
//! either entirely before the new epoch or not at all. Reads keep working on
//! a fenced handle. See DESIGN.md, "PostgreSQL backend", for the schema, the
//! encodings and the decisions.
//!
//! TLS is not built in: the pool connects without TLS (`sslmode=require`
//! fails); use a loopback or otherwise trusted network, or a local proxy.

mod codec;
mod migrate;
/// The SQL text of the backend's statements. Not a stable API: public only
/// so that `examples/pg_bench.rs` can run the very same statements through
/// pgbench.
#[doc(hidden)]
pub mod sql;

pub use migrate::{MIGRATIONS, Migration, MigrationReport, SCHEMA_VERSION};
/// The PostgreSQL client library this backend uses, re-exported so callers
/// (and tests) use the same version.
pub use tokio_postgres;

use crate::error::{Error, Result};
use crate::model::{ClientKind, ClientQuery, ClientRecord, KindFilter, LockQuery, PersistedLock};
use crate::op::{Op, Outcome, validate_batch};
use crate::store::LockStore;
use async_trait::async_trait;
use codec::{ClientParams, LockParams, client_kind_text, decode_client, decode_lock};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, QueueMode, RecyclingMethod, Transaction};
use sql::Delete;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

/// How to reach the database and which schema holds the store.
#[derive(Clone)]
pub struct PostgresConfig {
    /// A libpq-style connection string: `postgres://user:pass@host:port/db`
    /// or `host=... user=... dbname=...`.
    pub url: String,
    /// The PostgreSQL schema (namespace) of the store's tables, so several
    /// stores can share one database. Lowercase letters, digits and `_`,
    /// starting with a letter or `_`, at most 63 bytes. Default `public`.
    pub schema: String,
    /// Most connections the store keeps open. Default 16; writes from more
    /// tasks than this wait for a free connection.
    pub pool_size: usize,
    /// Apply missing migrations when opening (under the migration lock, so
    /// nodes may start at once). Default `false`: opening a schema at another
    /// version fails with [`Error::SchemaVersion`].
    pub auto_migrate: bool,
}

impl PostgresConfig {
    /// The defaults for the database at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self { url: url.into(), schema: "public".into(), pool_size: 16, auto_migrate: false }
    }

    /// Uses the schema `schema`.
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Keeps at most `pool_size` connections.
    pub fn with_pool_size(mut self, pool_size: usize) -> Self {
        self.pool_size = pool_size;
        self
    }

    /// Applies missing migrations when opening.
    pub fn with_auto_migrate(mut self, auto_migrate: bool) -> Self {
        self.auto_migrate = auto_migrate;
        self
    }

    /// The client library's configuration: the URL, plus `search_path` set
    /// to the schema and `application_name` (when the URL sets none).
    fn connection(&self) -> Result<tokio_postgres::Config> {
        validate_schema(&self.schema)?;
        let mut pg: tokio_postgres::Config = self
            .url
            .parse()
            .map_err(|e: tokio_postgres::Error| Error::InvalidInput { field: "url", reason: e.to_string() })?;
        let search_path = format!("-c search_path={}", self.schema);
        let options = match pg.get_options() {
            Some(options) if !options.trim().is_empty() => format!("{options} {search_path}"),
            _ => search_path,
        };
        pg.options(options);
        if pg.get_application_name().is_none() {
            pg.application_name("lockwal");
        }
        if pg.get_connect_timeout().is_none() {
            pg.connect_timeout(Duration::from_secs(10));
        }
        Ok(pg)
    }

    /// One connection outside any pool, for migrations and version checks.
    async fn connect(&self) -> Result<tokio_postgres::Client> {
        let (client, connection) = self.connection()?.connect(NoTls).await.map_err(pg_error("connect"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "lockwal: PostgreSQL connection ended with an error");
            }
        });
        Ok(client)
    }
}

impl std::fmt::Debug for PostgresConfig {
    /// Shows everything but the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &redact_password(&self.url))
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("auto_migrate", &self.auto_migrate)
            .finish()
    }
}

/// `url` with any password replaced by `***`, in both URL and key=value form.
fn redact_password(url: &str) -> String {
    if let Some(scheme_end) = url.find("://") {
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        if let Some(at) = rest[..authority_end].rfind('@')
            && let Some(colon) = rest[..at].find(':')
        {
            return format!("{}{}:***{}", &url[..scheme_end + 3], &rest[..colon], &rest[at..]);
        }
        return url.to_owned();
    }
    url.split(' ')
        .map(|part| if part.starts_with("password=") { "password=***" } else { part })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks a schema name: a plain lowercase identifier, so it never needs
/// quoting in `search_path` and cannot inject anything.
pub(crate) fn validate_schema(schema: &str) -> Result<()> {
    let invalid = |reason: &str| Error::InvalidInput { field: "schema", reason: format!("{schema:?} {reason}") };
    let mut chars = schema.chars();
    match chars.next() {
        None => return Err(invalid("is empty")),
        Some(c) if !(c.is_ascii_lowercase() || c == '_') => {
            return Err(invalid("must start with a lowercase ASCII letter or '_'"));
        }
        Some(_) => {}
    }
    if !chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_') {
        return Err(invalid("may hold only lowercase ASCII letters, digits and '_'"));
    }
    if schema.len() > 63 {
        return Err(invalid("is longer than 63 bytes"));
    }
    if schema.starts_with("pg_") {
        return Err(invalid("starts with pg_, which PostgreSQL reserves"));
    }
    Ok(())
}

/// Wraps a client-library error with what the store was doing.
pub(crate) fn pg_error(during: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |e| {
        let sqlstate = e.code().map(|c| c.code().to_owned());
        let message = match e.as_db_error() {
            Some(db) => {
                let mut message = db.message().to_owned();
                if let Some(detail) = db.detail() {
                    message.push_str(" (");
                    message.push_str(detail);
                    message.push(')');
                }
                message
            }
            None => e.to_string(),
        };
        Error::Postgres { during, sqlstate, message }
    }
}

fn pool_error(during: &'static str) -> impl FnOnce(PoolError) -> Error {
    move |e| match e {
        PoolError::Backend(e) => pg_error(during)(e),
        other => Error::Postgres { during, sqlstate: None, message: other.to_string() },
    }
}

/// Deadlock and serialization failures: the transaction was rolled back
/// whole and may simply be run again.
fn retryable(e: &Error) -> bool {
    matches!(e, Error::Postgres { sqlstate: Some(code), .. } if code == "40P01" || code == "40001")
}

const NOT_FENCED: u64 = u64::MAX;
const TXN_ATTEMPTS: usize = 5;

/// A [`LockStore`] in a PostgreSQL database, shared by every node that opens
/// the same database and schema; see the [module documentation](self).
pub struct PostgresLockStore {
    pool: Pool,
    schema: String,
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
}

impl std::fmt::Debug for PostgresLockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresLockStore")
            .field("schema", &self.schema)
            .field("epoch", &self.epoch)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl PostgresLockStore {
    /// Opens the store: connects, applies missing migrations when
    /// `auto_migrate` is set, checks the schema version, and starts the next
    /// epoch (which fences every handle opened before).
    pub async fn open(config: PostgresConfig) -> Result<Self> {
        let (pool, mut conn) = Self::connect(&config, config.auto_migrate).await?;
        let during = "opening the store";
        let tx = conn.transaction().await.map_err(pg_error(during))?;
        tx.batch_execute(sql::OPEN_LOCK).await.map_err(pg_error(during))?;
        let (_, previous_clean) = read_meta(&tx, sql::OPEN_READ, during).await?;
        let epoch_sql: i64 = tx.query_one(sql::OPEN_BUMP, &[]).await.map_err(pg_error(during))?.get(0);
        tx.commit().await.map_err(pg_error(during))?;
        drop(conn);
        let epoch = epoch_from_sql(epoch_sql, during)?;
        tracing::info!(schema = %config.schema, epoch, previous_clean, "lockwal: opened PostgreSQL store");
        Ok(Self::new(pool, config.schema, epoch, previous_clean, false))
    }

    /// Opens the store for reading only, as operators' tools do: no epoch
    /// bump (so no live node is fenced), no migration; every write fails
    /// with [`Error::ReadOnly`], and `close` records nothing. `epoch()` and
    /// `previous_shutdown_was_clean()` report the stored epoch and clean
    /// flag as they were at open.
    pub async fn open_read_only(config: PostgresConfig) -> Result<Self> {
        let (pool, conn) = Self::connect(&config, false).await?;
        let during = "opening the store read-only";
        let (epoch_sql, clean) = read_meta(&conn, sql::META, during).await?;
        drop(conn);
        let epoch = epoch_from_sql(epoch_sql, during)?;
        Ok(Self::new(pool, config.schema, epoch, clean, true))
    }

    /// The pool and one connection from it, after migrating (when asked)
    /// and checking the schema version.
    async fn connect(config: &PostgresConfig, migrate: bool) -> Result<(Pool, Object)> {
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
        let found = migrate::current_version(&**conn).await?;
        if found != SCHEMA_VERSION {
            return Err(Error::SchemaVersion { schema: config.schema.clone(), found, expected: SCHEMA_VERSION });
        }
        Ok((pool, conn))
    }

    fn new(pool: Pool, schema: String, epoch: u64, previous_clean: bool, read_only: bool) -> Self {
        Self {
            pool,
            schema,
            epoch,
            epoch_sql: epoch as i64,
            previous_clean,
            read_only,
            closed: AtomicBool::new(false),
            closing: AtomicBool::new(false),
            fenced_by: AtomicU64::new(NOT_FENCED),
        }
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
        &self.schema
    }

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

    /// Marks the handle closed and closes its pool.
    fn shut(&self) {
        self.closed.store(true, Ordering::Release);
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

    /// Why the epoch row (`current`, `clean`) refuses this handle's writes.
    fn refusal(&self, current: i64, clean: bool) -> Error {
        if current == self.epoch_sql && clean {
            self.closing.store(true, Ordering::Release);
            return Error::Closed;
        }
        self.fence_at(current.max(0) as u64)
    }

    async fn conn(&self, during: &'static str) -> Result<Object> {
        self.pool.get().await.map_err(pool_error(during))
    }

    /// A write that is one operation: one autocommit statement behind the
    /// fence, one round trip. `None` for the operations that need several
    /// statements (reclaim, end of grace) or are rare (updates and the
    /// client-record operations), which run as a fenced transaction.
    async fn single(&self, op: &Op) -> Option<Result<Outcome>> {
        Some(match op {
            Op::PutLock(lock) => {
                self.put_fenced("put_lock", &sql::PUT_LOCK_FENCED, &LockParams::new(lock, self.epoch_sql).refs()).await
            }
            Op::PutClient(record) => {
                let params = ClientParams::new(record);
                let mut refs: Vec<&(dyn ToSql + Sync)> = params.refs().to_vec();
                refs.push(&self.epoch_sql);
                self.put_fenced("put_client", &sql::PUT_CLIENT_FENCED, &refs).await
            }
            Op::DeleteLock { id } => match self.delete_fenced("delete_lock", Delete::Lock, id).await {
                Ok(0) => Err(Error::lock_not_found(id)),
                other => other.map(|_| Outcome::Done),
            },
            Op::DeleteLocksByClient { client_id } => {
                self.delete_fenced("delete_locks_by_client", Delete::LocksByClient, client_id).await.map(Outcome::Count)
            }
            Op::DeleteLocksByFile { file_id } => {
                self.delete_fenced("delete_locks_by_file", Delete::LocksByFile, file_id).await.map(Outcome::Count)
            }
            Op::UpdateLock(_)
            | Op::DeleteClient { .. }
            | Op::DeleteClients(_)
            | Op::MarkReclaimComplete { .. }
            | Op::Reclaim { .. }
            | Op::EndGrace { .. } => return None,
        })
    }

    async fn put_fenced(&self, during: &'static str, text: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Outcome> {
        let conn = self.conn(during).await?;
        let stmt = conn.prepare_cached(text).await.map_err(pg_error(during))?;
        match conn.execute(&stmt, params).await.map_err(pg_error(during))? {
            0 => Err(self.fenced(&conn).await),
            _ => Ok(Outcome::Done),
        }
    }

    /// Runs a fenced delete; the number of rows it removed.
    async fn delete_fenced(&self, during: &'static str, delete: Delete, key: &str) -> Result<u64> {
        let conn = self.conn(during).await?;
        let stmt = conn.prepare_cached(delete.fenced()).await.map_err(pg_error(during))?;
        let row = conn.query_one(&stmt, &[&self.epoch_sql, &key.as_bytes()]).await.map_err(pg_error(during))?;
        let (unfenced, removed): (bool, i64) = (row.get(0), row.get(1));
        if !unfenced {
            return Err(self.fenced(&conn).await);
        }
        Ok(removed as u64)
    }

    /// A write of several operations: one SQL transaction that share-locks
    /// the epoch row first, run again (whole) after a deadlock.
    async fn multi(&self, ops: &[Op]) -> Result<Vec<Outcome>> {
        let mut attempt = 1;
        loop {
            match self.try_multi(ops).await {
                Err(e) if retryable(&e) && attempt < TXN_ATTEMPTS => {
                    tracing::debug!(error = %e, attempt, "lockwal: PostgreSQL transaction rolled back, retrying");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn try_multi(&self, ops: &[Op]) -> Result<Vec<Outcome>> {
        let during = "transaction";
        let mut conn = self.conn(during).await?;
        let tx = conn.transaction().await.map_err(pg_error(during))?;
        let fence = tx.prepare_cached(sql::FENCE).await.map_err(pg_error(during))?;
        let row = tx.query_one(&fence, &[]).await.map_err(pg_error(during))?;
        let (current, clean): (i64, bool) = (row.get(0), row.get(1));
        if current != self.epoch_sql || clean {
            // Dropping the transaction rolls it back; it wrote nothing.
            return Err(self.refusal(current, clean));
        }
        let mut outcomes = Vec::with_capacity(ops.len());
        for op in ops {
            match self.apply(&tx, op).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => {
                    // Roll back before the connection goes back to the pool.
                    let _ = tx.rollback().await;
                    return Err(e);
                }
            }
        }
        tx.commit().await.map_err(pg_error("commit"))?;
        Ok(outcomes)
    }

    /// One operation inside a fenced transaction.
    async fn apply(&self, tx: &Transaction<'_>, op: &Op) -> Result<Outcome> {
        let during = "transaction";
        let prepare = |text: &'static str| async move { tx.prepare_cached(text).await.map_err(pg_error(during)) };
        match op {
            Op::PutLock(lock) => {
                let stmt = prepare(&sql::PUT_LOCK).await?;
                tx.execute(&stmt, &LockParams::new(lock, self.epoch_sql).refs()).await.map_err(pg_error(during))?;
                Ok(Outcome::Done)
            }
            Op::PutClient(record) => {
                let stmt = prepare(&sql::PUT_CLIENT).await?;
                tx.execute(&stmt, &ClientParams::new(record).refs()).await.map_err(pg_error(during))?;
                Ok(Outcome::Done)
            }
            Op::DeleteLock { id } => match self.delete_in(tx, Delete::Lock, id).await? {
                0 => Err(Error::lock_not_found(id)),
                _ => Ok(Outcome::Done),
            },
            Op::UpdateLock(lock) => {
                let stmt = prepare(&sql::UPDATE_LOCK).await?;
                match tx.execute(&stmt, &LockParams::new(lock, 0).refs()).await.map_err(pg_error(during))? {
                    0 => Err(Error::lock_not_found(&*lock.id)),
                    _ => Ok(Outcome::Done),
                }
            }
            Op::DeleteClient { kind, client_id } => {
                let stmt = prepare(sql::DELETE_CLIENT).await?;
                let params: [&(dyn ToSql + Sync); 2] = [&client_kind_text(*kind), &client_id.as_bytes()];
                match tx.execute(&stmt, &params).await.map_err(pg_error(during))? {
                    0 => Err(Error::client_not_found(*kind, client_id)),
                    _ => Ok(Outcome::Done),
                }
            }
            Op::DeleteClients(selector) => {
                let stmt = prepare(sql::DELETE_CLIENTS).await?;
                let kind = selector.kind.map(client_kind_text);
                let id = selector.client_id.as_deref().map(str::as_bytes);
                let name = selector.name.as_deref().map(str::as_bytes);
                let params: [&(dyn ToSql + Sync); 3] = [&kind, &id, &name];
                tx.execute(&stmt, &params).await.map_err(pg_error(during)).map(Outcome::Count)
            }
            Op::MarkReclaimComplete { kind, client_id } => {
                let stmt = prepare(sql::MARK_RECLAIM_COMPLETE).await?;
                let params: [&(dyn ToSql + Sync); 2] = [&client_kind_text(*kind), &client_id.as_bytes()];
                match tx.execute(&stmt, &params).await.map_err(pg_error(during))? {
                    0 => Err(Error::client_not_found(*kind, client_id)),
                    _ => Ok(Outcome::Done),
                }
            }
            Op::DeleteLocksByClient { client_id } => {
                self.delete_in(tx, Delete::LocksByClient, client_id).await.map(Outcome::Count)
            }
            Op::DeleteLocksByFile { file_id } => {
                self.delete_in(tx, Delete::LocksByFile, file_id).await.map(Outcome::Count)
            }
            Op::Reclaim { id, client_id } => {
                let stmt = prepare(sql::RECLAIM_CHECK).await?;
                let row = tx
                    .query_opt(&stmt, &[&id.as_bytes()])
                    .await
                    .map_err(pg_error(during))?
                    .ok_or_else(|| Error::lock_not_found(id))?;
                let (holder, granted_in): (&[u8], i64) = (row.get(0), row.get(1));
                let refuse = |reason| Error::ReclaimRefused { id: id.clone(), client_id: client_id.clone(), reason };
                if holder != client_id.as_bytes() {
                    return Err(refuse(crate::error::ReclaimRefusal::WrongClient));
                }
                if granted_in >= self.epoch_sql {
                    return Err(refuse(crate::error::ReclaimRefusal::CurrentEpoch));
                }
                let stmt = prepare(&sql::RECLAIM_SET).await?;
                let row = tx.query_one(&stmt, &[&id.as_bytes(), &self.epoch_sql]).await.map_err(pg_error(during))?;
                decode_lock(&row).map(Outcome::Lock)
            }
            Op::EndGrace { share } => {
                let stmt = prepare(&sql::END_GRACE).await?;
                let share = share.as_deref().map(str::as_bytes);
                let rows = tx.query(&stmt, &[&self.epoch_sql, &share]).await.map_err(pg_error(during))?;
                let mut removed = rows.iter().map(decode_lock).collect::<Result<Vec<_>>>()?;
                removed.sort_unstable_by(|a, b| a.id.cmp(&b.id));
                Ok(Outcome::Locks(removed))
            }
        }
    }

    async fn delete_in(&self, tx: &Transaction<'_>, delete: Delete, key: &str) -> Result<u64> {
        let during = "transaction";
        let stmt = tx.prepare_cached(delete.plain()).await.map_err(pg_error(during))?;
        tx.execute(&stmt, &[&key.as_bytes()]).await.map_err(pg_error(during))
    }

    /// Runs a read statement.
    async fn read(
        &self,
        during: &'static str,
        text: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>> {
        self.check_open()?;
        let conn = self.conn(during).await?;
        let stmt = conn.prepare_cached(text).await.map_err(pg_error(during))?;
        conn.query(&stmt, params).await.map_err(pg_error(during))
    }
}

fn kind_text(kind: KindFilter) -> &'static str {
    match kind {
        KindFilter::ByteRange => "byte_range",
        KindFilter::Share => "share",
        KindFilter::Lease => "lease",
        KindFilter::Delegation => "delegation",
    }
}

#[async_trait]
impl LockStore for PostgresLockStore {
    async fn transaction(&self, ops: Vec<Op>) -> Result<Vec<Outcome>> {
        validate_batch(&ops)?;
        self.check_writable()?;
        match ops.as_slice() {
            [] => Ok(Vec::new()),
            [op] => match self.single(op).await {
                Some(outcome) => outcome.map(|o| vec![o]),
                None => self.multi(&ops).await,
            },
            _ => self.multi(&ops).await,
        }
    }

    async fn get_lock(&self, id: &str) -> Result<PersistedLock> {
        let rows = self.read("get_lock", &sql::GET_LOCK, &[&id.as_bytes()]).await?;
        rows.first().map(decode_lock).unwrap_or_else(|| Err(Error::lock_not_found(id)))
    }

    async fn list_locks(&self, query: &LockQuery) -> Result<Vec<PersistedLock>> {
        let kind = query.kind.map(kind_text);
        let keys = [
            query.file_id.as_deref().map(str::as_bytes),
            query.owner_id.as_deref().map(str::as_bytes),
            query.client_id.as_deref().map(str::as_bytes),
            query.share.as_deref().map(str::as_bytes),
        ];
        let mut mask = 0;
        let mut params: Vec<&(dyn ToSql + Sync)> = Vec::with_capacity(sql::FILTER_COLUMNS.len());
        for (bit, key) in keys.iter().enumerate() {
            if let Some(key) = key {
                mask |= 1 << bit;
                params.push(key);
            }
        }
        let excluded = query.exclude_kind.map(kind_text);
        let lease_key = query.lease_key.as_ref().map(|k| &k[..]);
        // Every stored epoch is at most i64::MAX: a bound above it filters
        // nothing.
        let before = query.granted_before_epoch.and_then(|e| i64::try_from(e).ok());
        let rest: [(usize, Option<&(dyn ToSql + Sync)>); 4] = [
            (4, kind.as_ref().map(|k| k as &(dyn ToSql + Sync))),
            (5, excluded.as_ref().map(|k| k as &(dyn ToSql + Sync))),
            (6, lease_key.as_ref().map(|k| k as &(dyn ToSql + Sync))),
            (7, before.as_ref().map(|e| e as &(dyn ToSql + Sync))),
        ];
        for (bit, param) in rest {
            if let Some(param) = param {
                mask |= 1 << bit;
                params.push(param);
            }
        }
        let rows = self.read("list_locks", sql::list_locks(mask), &params).await?;
        rows.iter().map(decode_lock).collect()
    }

    async fn count(&self) -> Result<u64> {
        let rows = self.read("count", sql::COUNT, &[]).await?;
        let n: i64 = rows.first().map(|row| row.get(0)).unwrap_or(0);
        Ok(n as u64)
    }

    async fn get_client(&self, kind: ClientKind, client_id: &str) -> Result<ClientRecord> {
        let params: [&(dyn ToSql + Sync); 2] = [&client_kind_text(kind), &client_id.as_bytes()];
        let rows = self.read("get_client", &sql::GET_CLIENT, &params).await?;
        rows.first().map(decode_client).unwrap_or_else(|| Err(Error::client_not_found(kind, client_id)))
    }

    async fn list_clients(&self, query: &ClientQuery) -> Result<Vec<ClientRecord>> {
        let kind = query.kind.map(client_kind_text);
        let params: [&(dyn ToSql + Sync); 2] = [&kind, &query.reclaim_complete];
        let rows = self.read("list_clients", &sql::LIST_CLIENTS, &params).await?;
        rows.iter().map(decode_client).collect()
    }

    async fn epoch(&self) -> Result<u64> {
        self.check_open()?;
        Ok(self.epoch)
    }

    async fn previous_shutdown_was_clean(&self) -> Result<bool> {
        self.check_open()?;
        Ok(self.previous_clean)
    }

    /// Records a clean shutdown (only while the epoch is still this
    /// handle's) and closes the pool. A fenced handle is closed too, but the
    /// call fails with [`Error::Fenced`]: the clean-shutdown marker belongs
    /// to the node that replaced it.
    async fn close(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(());
        }
        if self.read_only {
            self.shut();
            return Ok(());
        }
        if let Err(e) = self.check_unfenced() {
            self.shut();
            return Err(e);
        }
        // From here on this handle writes nothing, even if this call is
        // cancelled; the database refuses writes once the marker committed.
        self.closing.store(true, Ordering::Release);
        let during = "close";
        let conn = self.conn(during).await?;
        let updated = conn.execute(sql::CLOSE, &[&self.epoch_sql]).await.map_err(pg_error(during))?;
        let result = if updated == 1 { Ok(()) } else { Err(self.fenced(&conn).await) };
        drop(conn);
        self.shut();
        if result.is_ok() {
            tracing::info!(schema = %self.schema, epoch = self.epoch, "lockwal: closed PostgreSQL store cleanly");
        }
        result
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_plain_identifiers() {
        for ok in ["public", "lockwal", "_x", "t_123_abc", &"a".repeat(63)] {
            assert!(validate_schema(ok).is_ok(), "{ok}");
        }
        for bad in ["", "Public", "1abc", "a-b", "a b", "a\"b", "pg_temp", &"a".repeat(64), "é"] {
            assert!(matches!(validate_schema(bad), Err(Error::InvalidInput { field: "schema", .. })), "{bad:?}");
        }
    }

    #[test]
    fn passwords_never_reach_debug_output() {
        let cases = [
            ("postgres://u:secret@h:5432/db", "postgres://u:***@h:5432/db"),
            ("postgres://u:secr@t@h/db?x=1", "postgres://u:***@h/db?x=1"),
            ("postgres://u@h/db", "postgres://u@h/db"),
            ("host=h user=u password=secret dbname=d", "host=h user=u password=*** dbname=d"),
        ];
        for (url, shown) in cases {
            assert_eq!(redact_password(url), shown);
            let debug = format!("{:?}", PostgresConfig::new(url));
            assert!(!debug.contains("secret") && !debug.contains("secr@t"), "{debug}");
        }
    }

    #[test]
    fn connection_sets_search_path_and_keeps_url_options() {
        let config = PostgresConfig::new("postgres://u@h/db?options=-c%20work_mem%3D4MB").with_schema("s1");
        let pg = config.connection().unwrap();
        assert_eq!(pg.get_options(), Some("-c work_mem=4MB -c search_path=s1"));
        assert_eq!(pg.get_application_name(), Some("lockwal"));
        let bad = PostgresConfig::new("postgres://u@h:notaport/db").connection();
        assert!(matches!(bad, Err(Error::InvalidInput { field: "url", .. })), "{bad:?}");
    }
}
