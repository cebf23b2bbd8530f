//! redb: `Durability::Immediate` (its default, set explicitly), the lock
//! table (id -> MessagePack record) and three multimap index tables (key ->
//! lock ids) written in the same write transaction, so the indexes commit
//! atomically with the record. redb serializes write transactions itself.

use crate::engine::{SyncPeer, SyncStore};
use crate::{Error, Result};
use lockwal::model::PersistedLock;
use redb::{
    Database, Durability, MultimapTable, MultimapTableDefinition, ReadableDatabase, ReadableTable,
    ReadableTableMetadata, Table, TableDefinition, WriteTransaction,
};
use std::path::Path;

/// The redb peer.
pub struct Redb;

/// An open redb store.
pub struct RedbStore {
    db: Database,
}

const LOCKS: TableDefinition<&str, &[u8]> = TableDefinition::new("locks");
const BY_FILE: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("by_file");
const BY_OWNER: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("by_owner");
const BY_CLIENT: MultimapTableDefinition<&str, &str> = MultimapTableDefinition::new("by_client");

/// The four tables of a write transaction, opened once.
struct Tables<'txn> {
    locks: Table<'txn, &'static str, &'static [u8]>,
    /// File, owner and client indexes, in the order of [`index_keys`].
    indexes: [MultimapTable<'txn, &'static str, &'static str>; 3],
}

fn index_keys(lock: &PersistedLock) -> [&str; 3] {
    [&lock.file_id, &lock.owner_id, &lock.client_id]
}

impl<'txn> Tables<'txn> {
    fn open(txn: &'txn WriteTransaction) -> Result<Self> {
        Ok(Self {
            locks: txn.open_table(LOCKS)?,
            indexes: [
                txn.open_multimap_table(BY_FILE)?,
                txn.open_multimap_table(BY_OWNER)?,
                txn.open_multimap_table(BY_CLIENT)?,
            ],
        })
    }

    /// Writes `lock` and its index entries, removing the index entries of
    /// the record it replaces.
    fn upsert(&mut self, lock: &PersistedLock) -> Result<()> {
        let value = rmp_serde::to_vec(lock)?;
        let old = self.locks.insert(&*lock.id, value.as_slice())?;
        let old: Option<PersistedLock> = old.map(|v| rmp_serde::from_slice(v.value())).transpose()?;
        let new_keys = index_keys(lock);
        let old_keys = old.as_ref().map(index_keys);
        for (i, index) in self.indexes.iter_mut().enumerate() {
            if let Some(old_keys) = &old_keys {
                if old_keys[i] == new_keys[i] {
                    continue;
                }
                index.remove(old_keys[i], &*lock.id)?;
            }
            index.insert(new_keys[i], &*lock.id)?;
        }
        Ok(())
    }

    fn remove(&mut self, id: &str) -> Result<()> {
        let old = self.locks.remove(id)?.ok_or_else(|| -> Error { format!("redb: no lock {id}").into() })?;
        let old: PersistedLock = rmp_serde::from_slice(old.value())?;
        for (index, key) in self.indexes.iter_mut().zip(index_keys(&old)) {
            index.remove(key, id)?;
        }
        Ok(())
    }
}

fn begin(db: &Database) -> Result<WriteTransaction> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    Ok(txn)
}

impl SyncPeer for Redb {
    type Store = RedbStore;

    fn name(&self) -> &'static str {
        "redb"
    }

    fn config(&self) -> String {
        "redb 4 (default cache): Durability::Immediate, one write transaction per op; \
         table id -> MessagePack record, multimap tables file/owner/client -> id in the same transaction"
            .into()
    }

    fn open(&self, dir: &Path) -> Result<RedbStore> {
        let db = Database::create(dir.join("locks.redb"))?;
        let txn = begin(&db)?;
        txn.open_table(LOCKS)?;
        for def in [BY_FILE, BY_OWNER, BY_CLIENT] {
            txn.open_multimap_table(def)?;
        }
        txn.commit()?;
        Ok(RedbStore { db })
    }
}

impl RedbStore {
    fn lookup(&self, index: MultimapTableDefinition<&str, &str>, key: &str) -> Result<Vec<PersistedLock>> {
        let txn = self.db.begin_read()?;
        let ids = txn.open_multimap_table(index)?;
        let locks = txn.open_table(LOCKS)?;
        let mut out = Vec::new();
        for id in ids.get(key)? {
            let id = id?;
            let record =
                locks.get(id.value())?.ok_or_else(|| -> Error { format!("redb: dangling {}", id.value()).into() })?;
            out.push(rmp_serde::from_slice(record.value())?);
        }
        Ok(out)
    }
}

impl SyncStore for RedbStore {
    fn put(&self, lock: PersistedLock) -> Result<()> {
        let txn = begin(&self.db)?;
        Tables::open(&txn)?.upsert(&lock)?;
        txn.commit()?;
        Ok(())
    }

    fn delete(&self, lock: &PersistedLock) -> Result<()> {
        let txn = begin(&self.db)?;
        Tables::open(&txn)?.remove(&lock.id)?;
        txn.commit()?;
        Ok(())
    }

    fn load(&self, locks: Vec<PersistedLock>) -> Result<()> {
        let txn = begin(&self.db)?;
        {
            let mut tables = Tables::open(&txn)?;
            for lock in &locks {
                tables.upsert(lock)?;
            }
        }
        txn.commit()?;
        Ok(())
    }

    fn by_client(&self, client: &str) -> Result<Vec<PersistedLock>> {
        self.lookup(BY_CLIENT, client)
    }

    fn by_file(&self, file: &str) -> Result<Vec<PersistedLock>> {
        self.lookup(BY_FILE, file)
    }

    fn read_all(&self) -> Result<Vec<PersistedLock>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(LOCKS)?;
        let mut out = Vec::with_capacity(table.len()? as usize);
        for entry in table.iter()? {
            let (_, value) = entry?;
            out.push(rmp_serde::from_slice(value.value())?);
        }
        Ok(out)
    }

    fn close(&self) -> Result<()> {
        Ok(())
    }
}
