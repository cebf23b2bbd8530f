//! The [`SimFs`] handle: its constructors, the fault plan and observer
//! settings, inspection outside the seam, and the [`FileSystem`] and
//! [`StoreFile`] implementations through which the store calls it.

use super::content::Content;
use super::fault::{Call, FailPlan, Fault, Injected};
use super::model::{CallPoint, Dir, Ino, Op, Pending, Shared, SimFs, State, dead, split};
use crate::io::{FileBytes, FileSystem, LockGuard, OpenMode, StoreFile};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};

impl std::fmt::Debug for SimFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.shared.lock();
        f.debug_struct("SimFs")
            .field("calls", &st.calls)
            .field("pending", &st.pending.len())
            .field("files", &st.inodes.len())
            .field("dead", &st.dead)
            .finish()
    }
}

impl Default for SimFs {
    fn default() -> Self {
        Self::new()
    }
}

impl SimFs {
    /// An empty file system that loses what was not synced.
    pub fn new() -> Self {
        Self::from_state(State::empty())
    }

    /// An empty file system that loses nothing: every change is durable at
    /// once, so a crash keeps exactly what reads see. For ordinary tests.
    pub fn lossless() -> Self {
        let mut state = State::empty();
        state.lossless = true;
        Self::from_state(state)
    }

    /// Calls made through the seam so far (the next call's number). Calls
    /// on a crashed file system are not counted.
    pub fn calls(&self) -> u64 {
        self.shared.lock().calls
    }

    /// Makes call number `k` and every later one fail with `fault`, without
    /// effect. Replaces an earlier plan.
    pub fn fail_from(&self, k: u64, fault: Fault) {
        self.shared.lock().fail = Some(FailPlan { from: k, fault, short_write: None, once: false });
    }

    /// Makes only call number `k` fail with `fault` (a transient error);
    /// later calls work. A failed `sync_data` behaves as on Linux: the
    /// file's unsynced writes stay visible to reads but are never made
    /// durable ("fsyncgate": the kernel marked the pages clean), so a crash
    /// loses them however much is synced later. Other failed calls have no
    /// effect.
    pub fn fail_once(&self, k: u64, fault: Fault) {
        self.shared.lock().fail = Some(FailPlan { from: k, fault, short_write: None, once: true });
    }

    /// Like [`fail_from`](Self::fail_from), but if call `k` is a write, its
    /// first `landed` bytes are written (pending, like any write) before it
    /// fails: a short write, as `ENOSPC` in the middle of a record.
    pub fn fail_from_with_short_write(&self, k: u64, fault: Fault, landed: usize) {
        self.shared.lock().fail = Some(FailPlan { from: k, fault, short_write: Some(landed), once: false });
    }

    /// Removes the fault plan.
    pub fn clear_faults(&self) {
        self.shared.lock().fail = None;
    }

    /// Calls `observer` before every later call, with the call's number and
    /// a view from which crash images can be taken. The observer runs under
    /// the file system's lock: it must not call this file system.
    pub fn set_observer(&self, observer: impl FnMut(&CallPoint<'_>) + Send + 'static) {
        self.shared.lock().observer = Some(Box::new(observer));
    }

    /// Removes the observer.
    pub fn clear_observer(&self) {
        self.shared.lock().observer = None;
    }

    /// The operations not yet durable, oldest first.
    pub fn pending(&self) -> Vec<Pending> {
        self.shared.lock().pending.iter().map(Op::public).collect()
    }

    /// The live bytes of a file (outside the seam: not counted, no faults),
    /// for tests to inspect and tamper with images.
    pub fn peek(&self, path: &Path) -> io::Result<Vec<u8>> {
        let st = self.shared.lock();
        let ino = st.lookup(path)?;
        Ok(st.inodes[&ino].live.to_vec())
    }

    /// Replaces a file's bytes, live and durable, outside the seam (not
    /// counted, no faults): media corruption for bit-flip tests.
    pub fn poke(&self, path: &Path, bytes: &[u8]) -> io::Result<()> {
        let mut st = self.shared.lock();
        let ino = st.lookup(path)?;
        let mut content = Content::default();
        content.write(0, bytes)?;
        let inode = st.inode(ino);
        inode.live = content.clone();
        inode.durable = content;
        Ok(())
    }
}

struct SimFile {
    shared: Weak<Shared>,
    ino: Ino,
}

impl SimFile {
    fn shared(&self) -> io::Result<Arc<Shared>> {
        self.shared.upgrade().ok_or_else(dead)
    }
}

impl Drop for SimFile {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            let mut st = shared.lock();
            if let Some(inode) = st.inodes.get_mut(&self.ino) {
                inode.handles -= 1;
            }
        }
    }
}

impl StoreFile for SimFile {
    fn write_at(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let shared = self.shared()?;
        let (mut st, injected) = shared.begin(Call::WriteAt)?;
        let (buf, error) = match injected {
            Some(Injected { short_write: Some(n), error, .. }) => (&buf[..n.min(buf.len())], Some(error)),
            Some(Injected { error, .. }) => return Err(error),
            None => (buf, None),
        };
        st.inode(self.ino).live.write(offset, buf)?;
        if !buf.is_empty() {
            st.push(Op::Write { ino: self.ino, offset, data: buf.into() });
        }
        error.map_or(Ok(()), Err)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let shared = self.shared()?;
        let (mut st, injected) = shared.begin(Call::SyncData)?;
        match injected {
            None => {
                st.sync_file(self.ino);
                Ok(())
            }
            Some(Injected { error, transient, .. }) => {
                if transient {
                    st.forget_pending_writes(self.ino);
                }
                Err(error)
            }
        }
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        let shared = self.shared()?;
        let mut st = shared.begin_plain(Call::SetLen)?;
        st.inode(self.ino).live.set_len(len)?;
        st.push(Op::SetLen { ino: self.ino, len });
        Ok(())
    }

    fn len(&self) -> io::Result<u64> {
        let shared = self.shared()?;
        let mut st = shared.begin_plain(Call::Len)?;
        Ok(st.inode(self.ino).live.len)
    }
}

struct SimLock {
    shared: Weak<Shared>,
    path: PathBuf,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            shared.lock().locks.remove(&self.path);
        }
    }
}

impl FileSystem for SimFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.shared.begin_plain(Call::CreateDirAll)?;
        let missing: Vec<PathBuf> =
            dir.ancestors().take_while(|a| !st.dirs.contains_key(*a)).map(Path::to_owned).collect();
        for path in missing.into_iter().rev() {
            let (parent_dir, name) = split(&path)?;
            if st.dir(parent_dir)?.live.contains_key(&name) {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("a file: {}", path.display())));
            }
            st.dirs.insert(path.clone(), Dir::default());
            st.push(Op::MkDir { path });
        }
        Ok(())
    }

    fn open(&self, path: &Path, mode: OpenMode) -> io::Result<Box<dyn StoreFile>> {
        let mut st = self.shared.begin_plain(Call::Open)?;
        if st.dirs.contains_key(path) {
            return Err(io::Error::new(io::ErrorKind::IsADirectory, format!("a directory: {}", path.display())));
        }
        let ino = match mode {
            OpenMode::Existing => st.lookup(path)?,
            OpenMode::CreateNew => st.create_file(path)?,
        };
        st.inode(ino).handles += 1;
        Ok(Box::new(SimFile { shared: Arc::downgrade(&self.shared), ino }))
    }

    fn read(&self, path: &Path) -> io::Result<FileBytes> {
        let st = self.shared.begin_plain(Call::Read)?;
        let ino = st.lookup(path)?;
        Ok(FileBytes::Owned(st.inodes[&ino].live.to_vec()))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.shared.begin_plain(Call::Rename)?;
        let ino = st.lookup(from)?;
        let (from_dir, from_name) = split(from)?;
        let (to_dir, to_name) = split(to)?;
        st.dir(to_dir)?;
        if from == to {
            return Ok(());
        }
        st.dir_mut(from_dir)?.live.remove(&from_name);
        st.dir_mut(to_dir)?.live.insert(to_name.clone(), ino);
        if from_dir == to_dir {
            st.push(Op::Rename { dir: from_dir.to_owned(), from: from_name, to: to_name });
        } else {
            st.push(Op::Link { dir: to_dir.to_owned(), name: to_name, ino });
            st.push(Op::Unlink { dir: from_dir.to_owned(), name: from_name });
        }
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.shared.begin_plain(Call::Remove)?;
        st.lookup(path)?;
        let (dir, name) = split(path)?;
        st.dir_mut(dir)?.live.remove(&name);
        st.push(Op::Unlink { dir: dir.to_owned(), name });
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.shared.begin_plain(Call::SyncDir)?;
        st.dir(dir)?;
        st.sync_dir(dir);
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.shared.begin_plain(Call::List)?;
        // BTreeMap keys: already sorted.
        Ok(st.dir(dir)?.live.keys().cloned().collect())
    }

    fn try_lock(&self, path: &Path) -> io::Result<LockGuard> {
        let mut st = self.shared.begin_plain(Call::TryLock)?;
        if let Err(e) = st.lookup(path) {
            if e.kind() != io::ErrorKind::NotFound {
                return Err(e);
            }
            st.create_file(path)?;
        }
        if !st.locks.insert(path.to_owned()) {
            return Err(io::Error::from(io::ErrorKind::WouldBlock));
        }
        Ok(Box::new(SimLock { shared: Arc::downgrade(&self.shared), path: path.to_owned() }))
    }
}
