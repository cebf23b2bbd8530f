//! fjall: the lock keyspace (id -> MessagePack record) and three index
//! keyspaces (`key 0x00 id` -> empty) written in one atomic write batch that
//! is committed with `PersistMode::SyncData` (fdatasync of the journal
//! before the commit returns). A put reads the old record first so that a
//! replaced lock leaves no stale index entry. After the bulk load of W3 the
//! memtables are flushed, so a reopen reads tables rather than the journal.

use crate::engine::{SyncPeer, SyncStore};
use crate::{Error, Result};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, OwnedWriteBatch as WriteBatch, PersistMode};
use lockwal::model::PersistedLock;
use std::path::Path;

/// The fjall peer.
pub struct Fjall;

/// An open fjall store.
pub struct FjallStore {
    db: Database,
    locks: Keyspace,
    /// By file, owner and client.
    indexes: [Keyspace; 3],
}

fn index_key(key: &str, id: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1 + id.len());
    k.extend_from_slice(key.as_bytes());
    k.push(0);
    k.extend_from_slice(id.as_bytes());
    k
}

fn index_keys(lock: &PersistedLock) -> [Vec<u8>; 3] {
    [&lock.file_id, &lock.owner_id, &lock.client_id].map(|k| index_key(k, &lock.id))
}

impl SyncPeer for Fjall {
    type Store = FjallStore;

    fn name(&self) -> &'static str {
        "fjall"
    }

    fn config(&self) -> String {
        "fjall 3 (defaults): one WriteBatch per op over keyspaces locks (id -> MessagePack record) and \
         by_file/by_owner/by_client (key\\0id -> empty), committed with PersistMode::SyncData"
            .into()
    }

    fn open(&self, dir: &Path) -> Result<FjallStore> {
        let db = Database::builder(dir.join("fjall")).open()?;
        let locks = db.keyspace("locks", KeyspaceCreateOptions::default)?;
        let indexes = [
            db.keyspace("by_file", KeyspaceCreateOptions::default)?,
            db.keyspace("by_owner", KeyspaceCreateOptions::default)?,
            db.keyspace("by_client", KeyspaceCreateOptions::default)?,
        ];
        Ok(FjallStore { db, locks, indexes })
    }
}

impl FjallStore {
    fn batch(&self) -> WriteBatch {
        self.db.batch().durability(Some(PersistMode::SyncData))
    }

    /// Adds `lock` and its index entries to `batch`, removing the index
    /// entries of the record it replaces.
    fn upsert(&self, batch: &mut WriteBatch, lock: &PersistedLock) -> Result<()> {
        let new_keys = index_keys(lock);
        if let Some(old) = self.locks.get(&*lock.id)? {
            let old: PersistedLock = rmp_serde::from_slice(&old)?;
            for ((index, old_key), new_key) in self.indexes.iter().zip(index_keys(&old)).zip(&new_keys) {
                if old_key != *new_key {
                    batch.remove(index, old_key);
                }
            }
        }
        batch.insert(&self.locks, &*lock.id, rmp_serde::to_vec(lock)?);
        for (index, key) in self.indexes.iter().zip(new_keys) {
            batch.insert(index, key, []);
        }
        Ok(())
    }

    fn lookup(&self, index: &Keyspace, key: &str) -> Result<Vec<PersistedLock>> {
        let prefix = index_key(key, "");
        let mut out = Vec::new();
        for entry in index.prefix(&prefix) {
            let k = entry.key()?;
            let id = &k[prefix.len()..];
            let record = self.locks.get(id)?.ok_or_else(|| -> Error { "fjall: dangling index entry".into() })?;
            out.push(rmp_serde::from_slice(&record)?);
        }
        Ok(out)
    }
}

impl SyncStore for FjallStore {
    fn put(&self, lock: PersistedLock) -> Result<()> {
        let mut batch = self.batch();
        self.upsert(&mut batch, &lock)?;
        batch.commit()?;
        Ok(())
    }

    fn delete(&self, lock: &PersistedLock) -> Result<()> {
        let mut batch = self.batch();
        batch.remove(&self.locks, &*lock.id);
        for (index, key) in self.indexes.iter().zip(index_keys(lock)) {
            batch.remove(index, key);
        }
        batch.commit()?;
        Ok(())
    }

    fn load(&self, locks: Vec<PersistedLock>) -> Result<()> {
        let mut batch = self.batch();
        for lock in &locks {
            self.upsert(&mut batch, lock)?;
        }
        batch.commit()?;
        Ok(())
    }

    /// Flushes the memtables to tables on disk, so that a reopen does not
    /// replay the journal (the steady state; lockwal writes its snapshot).
    fn settle(&self) -> Result<()> {
        let keyspaces: Vec<&Keyspace> = std::iter::once(&self.locks).chain(&self.indexes).collect();
        for keyspace in &keyspaces {
            keyspace.rotate_memtable()?;
        }
        // Flushes run on fjall's workers; wait for them (bounded: 10 min).
        for _ in 0..60_000 {
            if keyspaces.iter().all(|k| k.sealed_memtable_count() == 0) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }

    fn by_client(&self, client: &str) -> Result<Vec<PersistedLock>> {
        self.lookup(&self.indexes[2], client)
    }

    fn by_file(&self, file: &str) -> Result<Vec<PersistedLock>> {
        self.lookup(&self.indexes[0], file)
    }

    fn read_all(&self) -> Result<Vec<PersistedLock>> {
        let mut out = Vec::new();
        for entry in self.locks.iter() {
            out.push(rmp_serde::from_slice(&entry.value()?)?);
        }
        Ok(out)
    }

    fn close(&self) -> Result<()> {
        self.db.persist(PersistMode::SyncAll)?;
        Ok(())
    }
}
