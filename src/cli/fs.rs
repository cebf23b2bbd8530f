//! The file system the read-only commands use.

use lockwal::io::{FileBytes, FileSystem, LockGuard, OpenMode, RealFs, StoreFile};
use std::io;
use std::path::Path;

/// The real file system, except that whole-file reads copy the file instead
/// of mapping it.
///
/// A read-only command does not hold the writer lock, so a server may start
/// while it runs, and a starting server truncates the newest segment (its
/// pre-sized zero tail or a torn write). A mapped page past the new end of
/// the file would kill the command with SIGBUS; a copy just sees the file as
/// it was (or shorter), and scanning treats what is missing at the end as a
/// torn tail. Under `lockwal torture` a mapping reader died this way within
/// seconds; the copying reader never did.
#[derive(Debug, Default, Clone, Copy)]
pub struct CopyingFs;

impl FileSystem for CopyingFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        RealFs.create_dir_all(dir)
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StoreFile>> {
        RealFs.open(path, mode)
    }

    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        std::fs::read(path).map(FileBytes::Owned)
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
        RealFs.try_lock(path)
    }
}
