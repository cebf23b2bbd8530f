//! A small file-server core on lockwal's embedded store: the directory tree
//! lives in keyspaces next to the locks, so creating a file (its directory
//! entry, its inode and the opener's share reservation) and removing it
//! (entry, inode and every lock on it) are each one atomic transaction; a
//! restart runs a grace period in which clients reclaim, and the end of
//! grace drops what nobody reclaimed.
//!
//! ```sh
//! cargo run --example file_server [DIR]   # a temporary directory by default
//! ```
//!
//! Keyspaces: `dirents` (key: parent inode, 8 bytes big-endian, then the
//! name; value: the child inode), `inodes` (key: the inode; value: `file`
//! or `dir`), `meta` (`next-inode`: the next inode number to hand out). A
//! big-endian inode prefix keeps each directory's entries together, so
//! listing a directory is one prefix scan.
//!
//! `tests/examples.rs` runs [`run`] and checks its report.
#![allow(dead_code)]

use lockwal::error::Entity;
use lockwal::model::*;
use lockwal::wal::{WalLockStore, WalOptions};
use lockwal::{Error, LockQuery, LockStore, Op, Result};
use std::path::Path;
use std::sync::Arc;

const DIRENTS: &str = "dirents";
const INODES: &str = "inodes";
const META: &str = "meta";
const NEXT_INODE: &[u8] = b"next-inode";
const SHARE: &str = "export";
const ROOT: u64 = 1;

/// The server's state: its store, and nothing else kept across restarts.
pub struct FileServer {
    store: Arc<dyn LockStore>,
}

fn dirent(parent: u64, name: &str) -> Vec<u8> {
    [&parent.to_be_bytes()[..], name.as_bytes()].concat()
}

/// The lock model's name of a file: its inode.
fn file_id(inode: u64) -> String {
    format!("ino-{inode}")
}

fn inode_of(value: &[u8]) -> u64 {
    u64::from_be_bytes(value.try_into().expect("inode values are 8 bytes"))
}

impl FileServer {
    /// Opens (or creates) the store in `dir`; also says whether the last
    /// incarnation shut down cleanly (if not, run a grace period).
    pub async fn open(dir: &Path) -> Result<(Self, bool)> {
        let store: Arc<dyn LockStore> = Arc::new(WalLockStore::open(dir, WalOptions::default()).await?);
        let clean = store.previous_shutdown_was_clean().await?;
        let server = FileServer { store };
        server.format().await?;
        Ok((server, clean))
    }

    /// Creates the root directory once: the conditional write makes a
    /// second call (or a racing one) change nothing.
    async fn format(&self) -> Result<()> {
        let ops = vec![
            Op::SwapRecord {
                space: META.into(),
                key: NEXT_INODE.to_vec(),
                expected: None,
                value: Some((ROOT + 1).to_be_bytes().to_vec()),
            },
            Op::PutRecord { space: INODES.into(), key: ROOT.to_be_bytes().to_vec(), value: b"dir".to_vec() },
        ];
        match self.store.transaction(ops).await {
            Ok(_) | Err(Error::ConditionFailed { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates `name` in `parent` and opens it for `client` with a share
    /// reservation, in one transaction: the inode number, the entry, the
    /// inode and the reservation all commit, or (name taken, inode number
    /// raced) none does.
    pub async fn create(&self, parent: u64, name: &str, client: &str, deny: ShareDeny) -> Result<u64> {
        loop {
            let next = self.store.get_record(META, NEXT_INODE).await?.expect("formatted");
            let inode = inode_of(&next);
            let open = PersistedLock {
                id: format!("open-{inode}-{client}").into(),
                share: SHARE.into(),
                file_id: file_id(inode).into(),
                owner_id: format!("open:{client}").into(),
                client_id: client.into(),
                kind: LockKind::Share(ShareReservation { access: ShareAccess::ReadWrite, deny }),
                acquired_at: Timestamp::now(),
                server_epoch: 0,
            };
            let ops = vec![
                Op::SwapRecord {
                    space: META.into(),
                    key: NEXT_INODE.to_vec(),
                    expected: Some(next),
                    value: Some((inode + 1).to_be_bytes().to_vec()),
                },
                Op::SwapRecord {
                    space: DIRENTS.into(),
                    key: dirent(parent, name),
                    expected: None,
                    value: Some(inode.to_be_bytes().to_vec()),
                },
                Op::PutRecord { space: INODES.into(), key: inode.to_be_bytes().to_vec(), value: b"file".to_vec() },
                Op::PutLock(open),
            ];
            match self.store.transaction(ops).await {
                Ok(_) => return Ok(inode),
                // Another create took this inode number first: read it again.
                Err(Error::ConditionFailed { key, .. }) if key == NEXT_INODE => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// A byte-range lock on an open file.
    pub async fn lock(&self, inode: u64, client: &str, offset: u64, length: u64) -> Result<()> {
        self.store
            .put_lock(PersistedLock {
                id: format!("range-{inode}-{client}-{offset}").into(),
                share: SHARE.into(),
                file_id: file_id(inode).into(),
                owner_id: format!("nlm:{client}:1").into(),
                client_id: client.into(),
                kind: LockKind::ByteRange(ByteRange {
                    lock_type: LockType::Exclusive,
                    offset,
                    length,
                    zero_byte: false,
                    flavor: RangeFlavor::Posix,
                }),
                acquired_at: Timestamp::now(),
                server_epoch: 0,
            })
            .await
    }

    /// Removes `name` from `parent` with its inode and every lock on the
    /// file, in one transaction; `NotFound` when there is no such entry.
    /// Returns how many locks went with it.
    pub async fn remove(&self, parent: u64, name: &str) -> Result<u64> {
        let key = dirent(parent, name);
        let Some(value) = self.store.get_record(DIRENTS, &key).await? else {
            return Err(Error::NotFound { entity: Entity::Record, id: name.into() });
        };
        let inode = inode_of(&value);
        let ops = vec![
            // Only the entry we read: a concurrent rename fails this.
            Op::SwapRecord { space: DIRENTS.into(), key, expected: Some(value), value: None },
            Op::DeleteRecord { space: INODES.into(), key: inode.to_be_bytes().to_vec() },
            Op::DeleteLocksByFile { file_id: file_id(inode) },
        ];
        match self.store.transaction(ops).await?.pop() {
            Some(lockwal::Outcome::Count(n)) => Ok(n),
            other => panic!("a locks-by-file delete yields a count, got {other:?}"),
        }
    }

    /// The names in `parent`, sorted: one prefix scan.
    pub async fn list(&self, parent: u64) -> Result<Vec<String>> {
        let prefix = parent.to_be_bytes().to_vec();
        let entries = self.store.scan_records(DIRENTS, &RecordScan::prefix(prefix, usize::MAX)).await?;
        Ok(entries.into_iter().map(|r| String::from_utf8_lossy(&r.key[8..]).into_owned()).collect())
    }

    /// A client's reclaim during grace: every lock it held before the
    /// restart moves into the new epoch.
    pub async fn reclaim_all(&self, client: &str) -> Result<usize> {
        let held = self.store.reclaimable(client).await?;
        for lock in &held {
            self.store.reclaim(&lock.id, client).await?;
        }
        Ok(held.len())
    }

    /// Ends grace: drops what nobody reclaimed; the ids, sorted.
    pub async fn end_grace(&self) -> Result<Vec<String>> {
        Ok(self.store.end_grace().await?.into_iter().map(|l| l.id.to_string()).collect())
    }

    /// The ids of every lock, sorted.
    pub async fn locks(&self) -> Result<Vec<String>> {
        Ok(self.store.list_locks(&LockQuery::all()).await?.into_iter().map(|l| l.id.to_string()).collect())
    }

    /// A clean shutdown.
    pub async fn close(&self) -> Result<()> {
        self.store.close().await
    }
}

/// What [`run`] saw at each step.
#[derive(Debug, PartialEq, Eq)]
pub struct Report {
    /// The root directory after the creates and the remove.
    pub names: Vec<String>,
    /// Locks before the crash.
    pub locks_before_crash: Vec<String>,
    /// Locks that went with the removed file.
    pub removed_with_file: u64,
    /// Whether the incarnation after the crash found a clean shutdown.
    pub clean_after_crash: bool,
    /// How many locks alice reclaimed.
    pub reclaimed: usize,
    /// What the end of grace dropped (bob did not come back).
    pub purged: Vec<String>,
    /// Locks after grace.
    pub locks_after_grace: Vec<String>,
    /// The root directory after the restart.
    pub names_after_restart: Vec<String>,
}

/// The story: two clients open files and lock them, one file is removed
/// with its locks, the server crashes, alice reclaims and bob does not.
pub async fn run(dir: &Path) -> Result<Report> {
    let (server, _) = FileServer::open(dir).await?;
    let a = server.create(ROOT, "a.txt", "alice", ShareDeny::Write).await?;
    let b = server.create(ROOT, "b.txt", "bob", ShareDeny::None).await?;
    let c = server.create(ROOT, "c.txt", "bob", ShareDeny::None).await?;
    assert!(matches!(server.create(ROOT, "a.txt", "bob", ShareDeny::None).await, Err(Error::ConditionFailed { .. })));
    server.lock(a, "alice", 0, 100).await?;
    server.lock(b, "bob", 0, 0).await?;
    server.lock(c, "bob", 10, 5).await?;
    let removed_with_file = server.remove(ROOT, "c.txt").await?;
    let names = server.list(ROOT).await?;
    let locks_before_crash = server.locks().await?;
    // A crash: the store is dropped without `close`.
    drop(server);
    let (server, clean_after_crash) = FileServer::open(dir).await?;
    let reclaimed = server.reclaim_all("alice").await?;
    let purged = server.end_grace().await?;
    let report = Report {
        names,
        locks_before_crash,
        removed_with_file,
        clean_after_crash,
        reclaimed,
        purged,
        locks_after_grace: server.locks().await?,
        names_after_restart: server.list(ROOT).await?,
    };
    server.close().await?;
    Ok(report)
}

#[tokio::main]
async fn main() -> Result<()> {
    let temp;
    let dir = match std::env::args().nth(1) {
        Some(dir) => std::path::PathBuf::from(dir),
        None => {
            temp = std::env::temp_dir().join(format!("lockwal-file-server-{}", std::process::id()));
            temp
        }
    };
    let report = run(&dir).await?;
    println!("{report:#?}");
    println!("store: {}", dir.display());
    Ok(())
}
