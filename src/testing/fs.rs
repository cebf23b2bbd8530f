//! A real file system whose whole-file reads pass through a hook and whose
//! lock calls are counted: for tests of what readers see (a copy caught
//! mid-write) and of how they read (mapped or copied, locked or not).

use crate::io::{FileBytes, FileSystem, LockGuard, OpenMode, RealFs, StoreFile};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

/// How a whole file was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadKind {
    /// [`FileSystem::read`]: memory-mapped on the real file system.
    Mapped,
    /// [`FileSystem::read_copy`]: copied into memory.
    Copied,
}

/// The hook: given the path, how it is read and what the disk holds,
/// returns what the reader gets.
pub type ReadHook = Box<dyn Fn(&Path, ReadKind, FileBytes) -> io::Result<FileBytes> + Send + Sync>;

/// [`RealFs`] with a hook on whole-file reads and a count of `try_lock` calls.
pub struct HookedFs {
    on_read: ReadHook,
    locks: AtomicU32,
}

impl HookedFs {
    /// The real file system with `on_read` applied to every whole-file read.
    pub fn new(on_read: impl Fn(&Path, ReadKind, FileBytes) -> io::Result<FileBytes> + Send + Sync + 'static) -> Self {
        Self { on_read: Box::new(on_read), locks: AtomicU32::new(0) }
    }

    /// How many times the writer lock was asked for.
    pub fn locks_taken(&self) -> u32 {
        self.locks.load(Ordering::SeqCst)
    }
}

impl FileSystem for HookedFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        RealFs.create_dir_all(dir)
    }
    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StoreFile>> {
        RealFs.open(path, mode)
    }
    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        (self.on_read)(path, ReadKind::Mapped, RealFs.read(path)?)
    }
    fn read_copy(&self, path: &Path) -> io::Result<FileBytes> {
        (self.on_read)(path, ReadKind::Copied, RealFs.read_copy(path)?)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        RealFs.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        RealFs.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealFs.sync_dir(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        RealFs.list(dir)
    }
    fn try_lock(&self, path: &Path) -> io::Result<LockGuard> {
        self.locks.fetch_add(1, Ordering::SeqCst);
        RealFs.try_lock(path)
    }
}
