//! The file-system seam: every byte the engine reads or writes goes through
//! [`FileSystem`] and [`StoreFile`].
//!
//! [`RealFs`] is the default. Tests replace it with the power-loss simulator
//! ([`crate::io::sim`]) or with wrappers that inject errors at any call, which
//! proves that nothing bypasses the seam: a store opened on the simulator
//! cannot touch the disk.

mod os;
mod real;
pub mod sim;

pub use os::{FileBytes, lower_this_thread_priority};
pub use real::RealFs;

use std::any::Any;
use std::io;
use std::path::{Path, PathBuf};

/// How to open a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenMode {
    /// Open an existing file for reading and writing.
    Existing,
    /// Create a new file; fails if it exists (`create_new`). The new file is
    /// not durable until its directory is synced.
    CreateNew,
}

/// An open file of the store.
pub trait StoreFile: Send + Sync {
    /// Writes all of `buf` at `offset` (positional write; the file grows if
    /// needed).
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Makes the file's data and size durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Sets the file's length (truncates or extends with zeros).
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// The file's current length.
    fn len(&self) -> io::Result<u64>;
    /// Whether the file is empty.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
}

/// A held exclusive lock on a file; dropping it releases the lock.
pub type LockGuard = Box<dyn Any + Send + Sync>;

/// The operations the engine needs from a file system, and no more.
pub trait FileSystem: Send + Sync {
    /// Creates `dir` and its parents (owner-only permissions where new).
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Opens a file (owner-only permissions when created).
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StoreFile>>;
    /// Reads a whole file (memory-mapped on the real file system).
    fn read(&self, path: &Path) -> io::Result<FileBytes>;
    /// Reads a whole file into memory, never mapped: for readers that do not
    /// hold the store's lock, since a writer may truncate a file they would
    /// have mapped (a mapped page past the new end is SIGBUS).
    fn read_copy(&self, path: &Path) -> io::Result<FileBytes> {
        self.read(path)
    }
    /// Atomically renames `from` to `to`, replacing `to`. Not durable until
    /// the directory is synced.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file. Not durable until the directory is synced.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// The names of the files in `dir` (not recursive), sorted.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Takes an exclusive, non-blocking lock on `path` (created if absent).
    /// `Err` of kind `WouldBlock` when another holder has it.
    fn try_lock(&self, path: &Path) -> io::Result<LockGuard>;
}

/// A file system whose whole-file reads copy instead of mapping
/// ([`FileSystem::read_copy`]); everything else goes to the inner one.
/// Read-only opens use it: they do not hold the writer lock, and a writer
/// starting meanwhile truncates the newest segment.
pub struct CopyingReads(pub std::sync::Arc<dyn FileSystem>);

impl FileSystem for CopyingReads {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.0.create_dir_all(dir)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StoreFile>> {
        self.0.open(path, mode)
    }
    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        self.0.read_copy(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.0.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.0.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.0.sync_dir(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.0.list(dir)
    }
    fn try_lock(&self, path: &Path) -> io::Result<LockGuard> {
        self.0.try_lock(path)
    }
}

/// Joins a directory and a file name.
pub fn join(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
