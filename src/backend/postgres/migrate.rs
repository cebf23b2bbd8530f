//! Versioned schema migrations, embedded in the binary from
//! `migrations/postgres/NNNN_name.{up,down}.sql`.
//!
//! A migration run is one transaction that first takes a transaction-scoped
//! advisory lock derived from the schema name, so nodes that start at once
//! queue behind each other: the first applies what is missing, the others
//! then find it recorded in `lockwal_migrations` and apply nothing. DDL is
//! transactional in PostgreSQL, so a failed run changes nothing.

use super::config::validate_schema;
use super::error::pg_error;
use crate::error::{Error, Result};
use tokio_postgres::{Client, GenericClient};

/// One migration: its version, name, and the SQL that applies and reverts it.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// The version (the file name's number); versions are 1, 2, 3, ...
    pub version: u32,
    /// The file name's name part.
    pub name: &'static str,
    /// SQL that applies it.
    pub up: &'static str,
    /// SQL that reverts it.
    pub down: &'static str,
}

macro_rules! migration {
    ($version:literal, $file:literal, $name:literal) => {
        Migration {
            version: $version,
            name: $name,
            up: include_str!(concat!("../../../migrations/postgres/", $file, ".up.sql")),
            down: include_str!(concat!("../../../migrations/postgres/", $file, ".down.sql")),
        }
    };
}

/// Every migration this build knows, in version order.
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_locks", "locks"),
    migration!(2, "0002_clients", "clients"),
    migration!(3, "0003_fidelity", "fidelity"),
    migration!(4, "0004_handles_records", "handles_records"),
    migration!(5, "0005_nodes", "nodes"),
];

/// The schema version this build reads and writes: the newest migration.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// What a migration run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigrationReport {
    /// The version before the run.
    pub from: u32,
    /// The version after it.
    pub to: u32,
    /// The versions applied (ascending) or reverted (descending), in order.
    pub steps: Vec<u32>,
}

/// The advisory-lock key of a schema's migrations: FNV-1a of a fixed
/// prefix and the schema name, so stores in different schemas do not queue
/// behind each other and every node computes the same key.
pub(crate) fn advisory_key(schema: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in b"lockwal migrations ".iter().chain(schema.as_bytes()) {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// The newest migration recorded in the schema, 0 when none (or when the
/// schema or its migrations table does not exist).
/// `Ok` when the schema is at the version this build reads and writes;
/// else `SchemaVersion` (older: migrate; newer: upgrade this node).
pub(crate) async fn require_current(client: &impl GenericClient, schema: &str) -> Result<()> {
    match current_version(client).await? {
        SCHEMA_VERSION => Ok(()),
        found => Err(Error::SchemaVersion { schema: schema.to_owned(), found, expected: SCHEMA_VERSION }),
    }
}

pub(crate) async fn current_version(client: &impl GenericClient) -> Result<u32> {
    let exists: bool = client
        .query_one("SELECT to_regclass('lockwal_migrations') IS NOT NULL", &[])
        .await
        .map_err(pg_error("reading the schema version"))?
        .get(0);
    if !exists {
        return Ok(0);
    }
    let version: i32 = client
        .query_one("SELECT coalesce(max(version), 0) FROM lockwal_migrations", &[])
        .await
        .map_err(pg_error("reading the schema version"))?
        .get(0);
    u32::try_from(version).map_err(|_| Error::Postgres {
        during: "reading the schema version",
        sqlstate: None,
        message: format!("lockwal_migrations holds version {version}"),
    })
}

/// Migrates the schema `schema` (already the connection's `search_path`) up
/// or down to `target`, in one transaction under the advisory lock.
pub(crate) async fn migrate_to(client: &mut Client, schema: &str, target: u32) -> Result<MigrationReport> {
    validate_schema(schema)?;
    if target > SCHEMA_VERSION {
        return Err(Error::InvalidInput {
            field: "target",
            reason: format!("version {target} is unknown; this build knows versions up to {SCHEMA_VERSION}"),
        });
    }
    let during = "migrating the schema";
    let tx = client.transaction().await.map_err(pg_error(during))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&advisory_key(schema)]).await.map_err(pg_error(during))?;
    // Checked before CREATE SCHEMA IF NOT EXISTS, which needs the CREATE
    // privilege on the database even when the schema exists.
    let exists: bool = tx
        .query_one("SELECT EXISTS (SELECT FROM pg_namespace WHERE nspname = $1)", &[&schema])
        .await
        .map_err(pg_error(during))?
        .get(0);
    if !exists {
        tx.batch_execute(&format!("CREATE SCHEMA \"{schema}\"")).await.map_err(pg_error(during))?;
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS lockwal_migrations (
             version integer PRIMARY KEY,
             name text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(pg_error(during))?;
    let from = current_version(&tx).await?;
    if from > SCHEMA_VERSION {
        return Err(Error::SchemaVersion { schema: schema.to_owned(), found: from, expected: SCHEMA_VERSION });
    }
    let mut steps = Vec::new();
    if target > from {
        for m in MIGRATIONS.iter().filter(|m| m.version > from && m.version <= target) {
            tx.batch_execute(m.up).await.map_err(pg_error("applying a migration"))?;
            tx.execute(
                "INSERT INTO lockwal_migrations (version, name) VALUES ($1, $2)",
                &[&(m.version as i32), &m.name],
            )
            .await
            .map_err(pg_error(during))?;
            steps.push(m.version);
        }
    } else {
        for m in MIGRATIONS.iter().rev().filter(|m| m.version > target && m.version <= from) {
            tx.batch_execute(m.down).await.map_err(pg_error("reverting a migration"))?;
            tx.execute("DELETE FROM lockwal_migrations WHERE version = $1", &[&(m.version as i32)])
                .await
                .map_err(pg_error(during))?;
            steps.push(m.version);
        }
    }
    tx.commit().await.map_err(pg_error(during))?;
    if !steps.is_empty() {
        tracing::info!(schema, from, to = target, ?steps, "lockwal: migrated PostgreSQL schema");
    }
    Ok(MigrationReport { from, to: if steps.is_empty() { from } else { target }, steps })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_migration_file_is_embedded_in_order() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("migrations/postgres")
            .map(|e| e.expect("dir entry").file_name().into_string().expect("UTF-8 name"))
            .collect();
        files.sort();
        let embedded: Vec<String> = MIGRATIONS
            .iter()
            .flat_map(|m| {
                let base = format!("{:04}_{}", m.version, m.name);
                [format!("{base}.down.sql"), format!("{base}.up.sql")]
            })
            .collect();
        assert_eq!(files, embedded, "a migration file is missing from MIGRATIONS (or the other way round)");
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version as usize, i + 1, "versions are 1, 2, 3, ...");
            assert!(!m.up.trim().is_empty() && !m.down.trim().is_empty());
        }
    }

    #[test]
    fn advisory_keys_differ_by_schema_and_are_stable() {
        assert_ne!(advisory_key("public"), advisory_key("lockwal"));
        // FNV-1a is fixed: every node, every build computes the same key.
        assert_eq!(advisory_key("public"), advisory_key("public"));
        assert_eq!(advisory_key(""), 0x9bf5_12d6_4667_0ead_u64 as i64);
    }
}
