//! The adapter traits every store implements.

use crate::{Dataset, Result};
use async_trait::async_trait;
use lockwal::model::PersistedLock;
use std::any::Any;
use std::path::Path;
use std::sync::Arc;

/// Which workloads a peer takes part in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// W1: serial durable grant + release.
    pub serial: bool,
    /// W2: concurrent durable grants.
    pub concurrent: bool,
    /// W3: reopen and read every lock back.
    pub restore: bool,
    /// W4: queries by client and by file.
    pub queries: bool,
}

impl Caps {
    /// Every workload.
    pub const ALL: Caps = Caps { serial: true, concurrent: true, restore: true, queries: true };
}

/// A kind of store: its name, its exact configuration, and how to open it.
#[async_trait]
pub trait Peer: Send + Sync {
    /// Short name used on the command line and in the results (`sqlite`).
    fn name(&self) -> &'static str;
    /// The exact configuration, as the docs print it.
    fn config(&self) -> String;
    /// The workloads it takes part in.
    fn caps(&self) -> Caps;
    /// Opens (creating if needed) the store kept in the empty or existing
    /// directory `dir`.
    async fn open(&self, dir: &Path) -> Result<Arc<dyn Store>>;
}

/// What a restore left resident: the locks read back, kept alive until the
/// peak RSS has been read.
pub struct Restored {
    /// How many locks were read back.
    pub locks: u64,
    /// What holds them: the `Vec<PersistedLock>` of owned records handed
    /// to the caller (every store, lockwal included).
    pub resident: Box<dyn Any + Send>,
}

/// An open store. Every write is durable when it returns (except for the
/// memory backend), and every write maintains the secondary indexes by
/// file, owner and client atomically with the record.
#[async_trait]
pub trait Store: Send + Sync {
    /// Inserts or replaces a lock (a grant), durably.
    async fn put(&self, lock: PersistedLock) -> Result<()>;
    /// Removes a lock (a release), durably. The caller passes the lock it
    /// holds, as a lock manager releasing a lock does.
    async fn delete(&self, lock: &PersistedLock) -> Result<()>;
    /// Writes a chunk of locks the fastest durable way the store has (one
    /// transaction or batch): used to build the 1M-lock stores.
    async fn load(&self, locks: Vec<PersistedLock>) -> Result<()>;
    /// After a bulk load: bring the files into the shape the store keeps in
    /// steady state (lockwal writes its snapshot). Most stores do nothing.
    async fn settle(&self) -> Result<()> {
        Ok(())
    }
    /// The locks of one client, sorted by id.
    async fn by_client(&self, client: &str) -> Result<Vec<PersistedLock>>;
    /// The locks on one file, sorted by id.
    async fn by_file(&self, file: &str) -> Result<Vec<PersistedLock>>;
    /// Reads every lock back into memory (`data` names every client, for
    /// stores that read back through their queries).
    async fn read_all(&self, data: &Dataset) -> Result<Restored>;
    /// Flushes and closes the store.
    async fn close(&self) -> Result<()>;
    /// Engine counters worth printing (fsyncs, batch sizes), if any.
    fn stats(&self) -> Option<serde_json::Value> {
        None
    }
    /// The lockwal store behind a lockwal peer (checked grants and tests
    /// are lockwal's alone); `None` for the other stores.
    fn lockwal(&self) -> Option<&dyn lockwal::LockStore> {
        None
    }
}

/// A peer whose engine has a blocking API.
pub trait SyncPeer: Send + Sync + 'static {
    /// Its open store.
    type Store: SyncStore;
    /// See [`Peer::name`].
    fn name(&self) -> &'static str;
    /// See [`Peer::config`].
    fn config(&self) -> String;
    /// See [`Peer::caps`].
    fn caps(&self) -> Caps {
        Caps::ALL
    }
    /// See [`Peer::open`].
    fn open(&self, dir: &Path) -> Result<Self::Store>;
}

/// The blocking twin of [`Store`].
pub trait SyncStore: Send + Sync + 'static {
    /// See [`Store::put`].
    fn put(&self, lock: PersistedLock) -> Result<()>;
    /// See [`Store::delete`].
    fn delete(&self, lock: &PersistedLock) -> Result<()>;
    /// See [`Store::load`].
    fn load(&self, locks: Vec<PersistedLock>) -> Result<()>;
    /// See [`Store::settle`].
    fn settle(&self) -> Result<()> {
        Ok(())
    }
    /// See [`Store::by_client`].
    fn by_client(&self, client: &str) -> Result<Vec<PersistedLock>>;
    /// See [`Store::by_file`].
    fn by_file(&self, file: &str) -> Result<Vec<PersistedLock>>;
    /// Every lock, decoded.
    fn read_all(&self) -> Result<Vec<PersistedLock>>;
    /// See [`Store::close`].
    fn close(&self) -> Result<()>;
}

/// Runs a [`SyncPeer`] for the async harness. Writes (W1, W2, W5) go to
/// tokio's blocking pool, one blocking thread per call in flight, the way an
/// async server calls a blocking engine. Reads (W3's read-all, W4's
/// queries) call the engine directly on the benchmark's thread, one at a
/// time, with no thread hop: the cheapest way to call it, so the read
/// figures hold no pool overhead.
pub struct Blocking<P>(pub P);

struct BlockingStore<S>(Arc<S>);

async fn blocking<S: SyncStore, T: Send + 'static>(
    store: &Arc<S>,
    f: impl FnOnce(&S) -> Result<T> + Send + 'static,
) -> Result<T> {
    let store = Arc::clone(store);
    tokio::task::spawn_blocking(move || f(&store)).await?
}

#[async_trait]
impl<P: SyncPeer> Peer for Blocking<P> {
    fn name(&self) -> &'static str {
        self.0.name()
    }

    fn config(&self) -> String {
        self.0.config()
    }

    fn caps(&self) -> Caps {
        self.0.caps()
    }

    async fn open(&self, dir: &Path) -> Result<Arc<dyn Store>> {
        let store = tokio::task::block_in_place(|| self.0.open(dir))?;
        Ok(Arc::new(BlockingStore(Arc::new(store))))
    }
}

#[async_trait]
impl<S: SyncStore> Store for BlockingStore<S> {
    async fn put(&self, lock: PersistedLock) -> Result<()> {
        blocking(&self.0, move |s| s.put(lock)).await
    }

    async fn delete(&self, lock: &PersistedLock) -> Result<()> {
        let lock = lock.clone();
        blocking(&self.0, move |s| s.delete(&lock)).await
    }

    async fn load(&self, locks: Vec<PersistedLock>) -> Result<()> {
        blocking(&self.0, move |s| s.load(locks)).await
    }

    async fn settle(&self) -> Result<()> {
        blocking(&self.0, |s| s.settle()).await
    }

    async fn by_client(&self, client: &str) -> Result<Vec<PersistedLock>> {
        self.0.by_client(client)
    }

    async fn by_file(&self, file: &str) -> Result<Vec<PersistedLock>> {
        self.0.by_file(file)
    }

    async fn read_all(&self, _data: &Dataset) -> Result<Restored> {
        let locks = self.0.read_all()?;
        Ok(Restored { locks: locks.len() as u64, resident: Box::new(locks) })
    }

    async fn close(&self) -> Result<()> {
        blocking(&self.0, |s| s.close()).await
    }
}

/// The error for an operation a peer does not support (see [`Caps`]).
pub fn unsupported(peer: &str, what: &str) -> crate::Error {
    format!("{peer} does not support {what}").into()
}
