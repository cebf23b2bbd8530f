//! SQLite through rusqlite (bundled): WAL journal, `synchronous=FULL`, one
//! `WITHOUT ROWID` table keyed by lock id and one index per secondary key
//! (`(key, id)`, so a query returns rows already sorted by id). SQLite keeps
//! the indexes in the same transaction as the row.
//!
//! Writes share one connection behind a mutex (SQLite allows one writer at
//! a time; a connection per thread would only add busy-waiting); queries use
//! a second connection, which WAL mode lets read while a write commits.

use crate::Result;
use crate::engine::{SyncPeer, SyncStore};
use lockwal::model::{LockKind, PersistedLock, Timestamp};
use rusqlite::{Connection, Row, params};
use std::path::Path;
use std::sync::Mutex;

/// The SQLite peer.
pub struct Sqlite;

/// An open SQLite store.
pub struct SqliteStore {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS locks (
    id TEXT PRIMARY KEY NOT NULL,
    share TEXT NOT NULL,
    file_id TEXT NOT NULL,
    owner_id TEXT NOT NULL,
    client_id TEXT NOT NULL,
    kind BLOB NOT NULL,
    acquired_at INTEGER NOT NULL,
    server_epoch INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS locks_by_file ON locks (file_id, id);
CREATE INDEX IF NOT EXISTS locks_by_owner ON locks (owner_id, id);
CREATE INDEX IF NOT EXISTS locks_by_client ON locks (client_id, id);
";

const INSERT: &str = "INSERT OR REPLACE INTO locks VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";
const COLUMNS: &str = "id, share, file_id, owner_id, client_id, kind, acquired_at, server_epoch";

fn connect(path: &Path) -> Result<Connection> {
    let conn = Connection::open(path)?;
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("SQLite refused WAL mode ({mode})").into());
    }
    conn.execute_batch("PRAGMA synchronous = FULL;")?;
    let synchronous: i64 = conn.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
    if synchronous != 2 {
        return Err(format!("SQLite synchronous is {synchronous}, not FULL (2)").into());
    }
    Ok(conn)
}

fn insert(conn: &Connection, lock: &PersistedLock) -> Result<()> {
    let kind = rmp_serde::to_vec(&lock.kind)?;
    conn.prepare_cached(INSERT)?.execute(params![
        lock.id,
        lock.share,
        lock.file_id,
        lock.owner_id,
        lock.client_id,
        kind,
        lock.acquired_at.unix_micros,
        lock.server_epoch as i64,
    ])?;
    Ok(())
}

fn decode(row: &Row<'_>) -> Result<PersistedLock> {
    let kind: &[u8] = row.get_ref(5)?.as_blob()?;
    Ok(PersistedLock {
        id: row.get(0)?,
        share: row.get(1)?,
        file_id: row.get(2)?,
        owner_id: row.get(3)?,
        client_id: row.get(4)?,
        kind: rmp_serde::from_slice::<LockKind>(kind)?,
        acquired_at: Timestamp::from_unix_micros(row.get(6)?),
        server_epoch: row.get::<_, i64>(7)? as u64,
    })
}

fn query(conn: &Connection, sql: &str, key: Option<&str>) -> Result<Vec<PersistedLock>> {
    let mut stmt = conn.prepare_cached(sql)?;
    let mut rows = match key {
        Some(key) => stmt.query([key])?,
        None => stmt.query([])?,
    };
    let mut locks = Vec::new();
    while let Some(row) = rows.next()? {
        locks.push(decode(row)?);
    }
    Ok(locks)
}

impl SyncPeer for Sqlite {
    type Store = SqliteStore;

    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn config(&self) -> String {
        format!(
            "SQLite {} (rusqlite, bundled): journal_mode=WAL, synchronous=FULL, one autocommit statement per op; \
             WITHOUT ROWID table keyed by id, indexes (file_id, id), (owner_id, id), (client_id, id); \
             the lock kind as a MessagePack blob",
            rusqlite::version()
        )
    }

    fn open(&self, dir: &Path) -> Result<SqliteStore> {
        let path = dir.join("locks.sqlite");
        let writer = connect(&path)?;
        writer.execute_batch(SCHEMA)?;
        let reader = connect(&path)?;
        Ok(SqliteStore { writer: Mutex::new(writer), reader: Mutex::new(reader) })
    }
}

impl SqliteStore {
    fn writer(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.reader.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl SyncStore for SqliteStore {
    fn put(&self, lock: PersistedLock) -> Result<()> {
        insert(&self.writer(), &lock)
    }

    fn delete(&self, lock: &PersistedLock) -> Result<()> {
        let conn = self.writer();
        let gone = conn.prepare_cached("DELETE FROM locks WHERE id = ?1")?.execute([&lock.id])?;
        if gone != 1 {
            return Err(format!("sqlite: no lock {}", lock.id).into());
        }
        Ok(())
    }

    fn load(&self, locks: Vec<PersistedLock>) -> Result<()> {
        let mut conn = self.writer();
        let txn = conn.transaction()?;
        for lock in &locks {
            insert(&txn, lock)?;
        }
        txn.commit()?;
        Ok(())
    }

    fn by_client(&self, client: &str) -> Result<Vec<PersistedLock>> {
        let sql = format!("SELECT {COLUMNS} FROM locks WHERE client_id = ?1 ORDER BY id");
        query(&self.reader(), &sql, Some(client))
    }

    fn by_file(&self, file: &str) -> Result<Vec<PersistedLock>> {
        let sql = format!("SELECT {COLUMNS} FROM locks WHERE file_id = ?1 ORDER BY id");
        query(&self.reader(), &sql, Some(file))
    }

    fn read_all(&self) -> Result<Vec<PersistedLock>> {
        query(&self.reader(), &format!("SELECT {COLUMNS} FROM locks"), None)
    }

    fn close(&self) -> Result<()> {
        // Checkpoint so the next open does not replay the WAL file (as a
        // clean shutdown of SQLite does when the last connection closes).
        let conn = self.writer();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
        Ok(())
    }
}
