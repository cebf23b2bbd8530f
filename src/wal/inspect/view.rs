//! The read-only, copying view of a store directory that this module reads through.

use crate::io::{FileBytes, FileSystem, LockGuard, OpenMode, StoreFile};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

/// A read-only view of a directory, through which every function of this
/// module reads: whole files are copied, never mapped (nothing here holds
/// the writer lock, and a writer starting meanwhile truncates the newest
/// segment: a mapped page past the new end is SIGBUS), and every write is
/// refused, so nothing here can change the store by mistake. The repair
/// planner also hides and truncates files in it, in memory: recovery runs on
/// it to find what a repair must cut
/// before anything is cut.
pub(super) struct Overlay<'a> {
    pub inner: &'a dyn FileSystem,
    pub hidden: BTreeSet<PathBuf>,
    pub truncated: BTreeMap<PathBuf, u64>,
}

impl<'a> Overlay<'a> {
    /// The directory as it is.
    pub(super) fn of(inner: &'a dyn FileSystem) -> Self {
        Self { inner, hidden: BTreeSet::new(), truncated: BTreeMap::new() }
    }
}

fn read_only_view() -> io::Error {
    io::Error::new(io::ErrorKind::PermissionDenied, "the repair planner's view is read-only")
}

impl FileSystem for Overlay<'_> {
    fn create_dir_all(&self, _: &Path) -> io::Result<()> {
        Err(read_only_view())
    }

    fn open(&self, _: &Path, _: OpenMode) -> io::Result<Box<dyn StoreFile>> {
        Err(read_only_view())
    }

    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        if self.hidden.contains(path) {
            return Err(io::Error::from(io::ErrorKind::NotFound));
        }
        let bytes = self.inner.read_copy(path)?;
        Ok(match self.truncated.get(path) {
            Some(&len) => FileBytes::Owned(bytes[..(len as usize).min(bytes.len())].to_vec()),
            None => bytes,
        })
    }

    fn rename(&self, _: &Path, _: &Path) -> io::Result<()> {
        Err(read_only_view())
    }

    fn remove(&self, _: &Path) -> io::Result<()> {
        Err(read_only_view())
    }

    fn sync_dir(&self, _: &Path) -> io::Result<()> {
        Err(read_only_view())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = self.inner.list(dir)?;
        names.retain(|name| !self.hidden.contains(&dir.join(name)));
        Ok(names)
    }

    fn try_lock(&self, _: &Path) -> io::Result<LockGuard> {
        Err(read_only_view())
    }
}
