//! The file-system model: every file's live and durable bytes, every
//! directory's live and durable entries, and the list of pending
//! operations (what is not durable yet, in call order) that a sync takes
//! its own out of. Also the gate every call passes through: calls are
//! numbered, shown to the observer, and failed by the fault plan.

use super::content::{Content, PAGE};
use super::fault::{Call, FailPlan, Injected};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// One operation not yet durable, as a test sees it (to choose loss
/// patterns: which pending operations are writes, and how long).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    /// A write of `len` bytes at `offset` of the file `file` (its inode
    /// number).
    Write {
        /// Inode number.
        file: u64,
        /// Offset written.
        offset: u64,
        /// Bytes written.
        len: usize,
    },
    /// A length change.
    SetLen {
        /// Inode number.
        file: u64,
        /// New length.
        len: u64,
    },
    /// A directory created (an entry in `path`'s parent).
    MkDir {
        /// The new directory.
        path: PathBuf,
    },
    /// A file created.
    Create {
        /// Its path.
        path: PathBuf,
    },
    /// A file removed.
    Remove {
        /// Its path.
        path: PathBuf,
    },
    /// A rename (within one directory; across directories it is a create
    /// and a remove).
    Rename {
        /// Old path.
        from: PathBuf,
        /// New path.
        to: PathBuf,
    },
}

pub(super) type Ino = u64;

#[derive(Debug, Default)]
pub(super) struct Inode {
    pub(super) live: Content,
    pub(super) durable: Content,
    /// Open handles (an unreachable inode is kept while one is open).
    pub(super) handles: usize,
}

#[derive(Debug, Clone, Default)]
pub(super) struct Dir {
    /// Whether this directory's entry in its parent is durable.
    pub(super) durable_entry: bool,
    pub(super) live: BTreeMap<String, Ino>,
    pub(super) durable: BTreeMap<String, Ino>,
}

/// A pending operation, with everything needed to replay it on an image.
#[derive(Debug, Clone)]
pub(super) enum Op {
    Write { ino: Ino, offset: u64, data: Arc<[u8]> },
    SetLen { ino: Ino, len: u64 },
    MkDir { path: PathBuf },
    Link { dir: PathBuf, name: String, ino: Ino },
    Unlink { dir: PathBuf, name: String },
    Rename { dir: PathBuf, from: String, to: String },
}

impl Op {
    /// The directory whose sync makes this operation durable, if any.
    fn dir(&self) -> Option<&Path> {
        match self {
            Op::Write { .. } | Op::SetLen { .. } => None,
            Op::MkDir { path } => Some(parent(path)),
            Op::Link { dir, .. } | Op::Unlink { dir, .. } | Op::Rename { dir, .. } => Some(dir),
        }
    }

    fn ino(&self) -> Option<Ino> {
        match self {
            Op::Write { ino, .. } | Op::SetLen { ino, .. } | Op::Link { ino, .. } => Some(*ino),
            _ => None,
        }
    }

    pub(super) fn public(&self) -> Pending {
        match self {
            Op::Write { ino, offset, data } => Pending::Write { file: *ino, offset: *offset, len: data.len() },
            Op::SetLen { ino, len } => Pending::SetLen { file: *ino, len: *len },
            Op::MkDir { path } => Pending::MkDir { path: path.clone() },
            Op::Link { dir, name, .. } => Pending::Create { path: dir.join(name) },
            Op::Unlink { dir, name } => Pending::Remove { path: dir.join(name) },
            Op::Rename { dir, from, to } => Pending::Rename { from: dir.join(from), to: dir.join(to) },
        }
    }
}

pub(super) fn is_root(path: &Path) -> bool {
    path.as_os_str().is_empty() || path == Path::new("/")
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

pub(super) fn split(path: &Path) -> io::Result<(&Path, String)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("not a file path: {}", path.display())))?;
    Ok((parent(path), name.to_owned()))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no such file or directory: {}", path.display()))
}

pub(super) fn dead() -> io::Error {
    io::Error::other("simulated power loss: this file system crashed")
}

/// The observer's view of the file system just before a call runs.
pub struct CallPoint<'a> {
    index: u64,
    call: Call,
    pub(super) state: &'a State,
}

impl CallPoint<'_> {
    /// The call's number (0 for the first call).
    pub fn index(&self) -> u64 {
        self.index
    }

    /// Which method is being called.
    pub fn call(&self) -> Call {
        self.call
    }

    /// The operations not yet durable, oldest first.
    pub fn pending(&self) -> Vec<Pending> {
        self.state.pending.iter().map(Op::public).collect()
    }
}

type Observer = Box<dyn FnMut(&CallPoint<'_>) + Send>;

pub(super) struct State {
    pub(super) inodes: HashMap<Ino, Inode>,
    pub(super) next_ino: Ino,
    pub(super) dirs: BTreeMap<PathBuf, Dir>,
    pub(super) pending: Vec<Op>,
    pub(super) locks: BTreeSet<PathBuf>,
    pub(super) calls: u64,
    pub(super) fail: Option<FailPlan>,
    pub(super) dead: bool,
    pub(super) lossless: bool,
    pub(super) observer: Option<Observer>,
}

impl State {
    pub(super) fn empty() -> Self {
        let root = Dir { durable_entry: true, ..Dir::default() };
        Self {
            inodes: HashMap::new(),
            next_ino: 1,
            dirs: [(PathBuf::from(""), root.clone()), (PathBuf::from("/"), root)].into_iter().collect(),
            pending: Vec::new(),
            locks: BTreeSet::new(),
            calls: 0,
            fail: None,
            dead: false,
            lossless: false,
            observer: None,
        }
    }

    pub(super) fn dir(&self, path: &Path) -> io::Result<&Dir> {
        self.dirs.get(path).ok_or_else(|| not_found(path))
    }

    pub(super) fn dir_mut(&mut self, path: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(path).ok_or_else(|| not_found(path))
    }

    pub(super) fn lookup(&self, path: &Path) -> io::Result<Ino> {
        let (dir, name) = split(path)?;
        self.dir(dir)?.live.get(&name).copied().ok_or_else(|| not_found(path))
    }

    pub(super) fn inode(&mut self, ino: Ino) -> &mut Inode {
        self.inodes.get_mut(&ino).expect("a handle's inode lives while the handle does")
    }

    /// Records a change to a directory or file, durable at once when the
    /// simulated disk is lossless.
    pub(super) fn push(&mut self, op: Op) {
        let (dir, ino) = (op.dir().map(Path::to_owned), op.ino());
        self.pending.push(op);
        if self.lossless {
            match dir {
                Some(dir) => self.sync_dir(&dir),
                None => self.sync_file(ino.expect("file operations name their inode")),
            }
        }
    }

    pub(super) fn create_file(&mut self, path: &Path) -> io::Result<Ino> {
        let (dir, name) = split(path)?;
        let ino = self.next_ino;
        let entries = &mut self.dir_mut(dir)?.live;
        if entries.contains_key(&name) {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("file exists: {}", path.display())));
        }
        entries.insert(name.clone(), ino);
        self.next_ino += 1;
        self.inodes.insert(ino, Inode::default());
        self.push(Op::Link { dir: dir.to_owned(), name, ino });
        Ok(ino)
    }

    /// `fdatasync`: writes the file's dirty pages (those its pending writes
    /// touched, whole, as the kernel does) and its length. Without a
    /// forgotten write (see [`forget_pending_writes`](Self::forget_pending_writes))
    /// the durable bytes then equal the live ones.
    pub(super) fn sync_file(&mut self, ino: Ino) {
        let mut dirty = BTreeSet::new();
        let mut lengths = Vec::new();
        for op in &self.pending {
            match op {
                Op::Write { ino: i, offset, data } if *i == ino => {
                    let first = offset / PAGE as u64;
                    let last = (offset + data.len() as u64 - 1) / PAGE as u64;
                    dirty.extend((first..=last).map(|p| p as usize));
                }
                Op::SetLen { ino: i, len } if *i == ino => lengths.push(*len),
                _ => {}
            }
        }
        let inode = self.inode(ino);
        for len in lengths.into_iter().chain([inode.live.len]) {
            inode.durable.set_len(len).expect("lengths the live file already had");
        }
        for page in dirty.into_iter().filter(|&p| p < inode.live.pages.len()) {
            inode.durable.pages[page] = inode.live.pages[page].clone();
        }
        self.forget_pending_writes(ino);
    }

    /// What Linux does when writeback fails: the error is reported once
    /// and the dirty pages are marked clean. Reads still see the bytes, but
    /// they will never become durable (no later sync writes them).
    pub(super) fn forget_pending_writes(&mut self, ino: Ino) {
        self.pending.retain(|op| !matches!(op, Op::Write { ino: i, .. } | Op::SetLen { ino: i, .. } if *i == ino));
    }

    pub(super) fn sync_dir(&mut self, path: &Path) {
        let dir = self.dirs.get_mut(path).expect("checked by the caller");
        dir.durable = dir.live.clone();
        let mut made_durable = Vec::new();
        self.pending.retain(|op| {
            let here = op.dir() == Some(path);
            if let (true, Op::MkDir { path: child }) = (here, op) {
                made_durable.push(child.clone());
            }
            !here
        });
        for child in made_durable {
            if let Some(child) = self.dirs.get_mut(&child) {
                child.durable_entry = true;
            }
        }
        self.collect_garbage();
    }

    /// Forgets inodes nothing can reach any more: no entry (live or
    /// durable), no pending operation, no open handle.
    fn collect_garbage(&mut self) {
        let mut reachable: BTreeSet<Ino> = self.pending.iter().filter_map(Op::ino).collect();
        for dir in self.dirs.values() {
            reachable.extend(dir.live.values().chain(dir.durable.values()));
        }
        self.inodes.retain(|ino, inode| inode.handles > 0 || reachable.contains(ino));
    }
}

pub(super) struct Shared {
    pub(super) state: Mutex<State>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking observer must not wedge every later test assertion.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Numbers the call, shows it to the observer, and says whether a fault
    /// is injected into it. `Err`: the file system is dead.
    pub(super) fn begin(&self, call: Call) -> io::Result<(MutexGuard<'_, State>, Option<Injected>)> {
        let mut st = self.lock();
        if st.dead {
            return Err(dead());
        }
        let index = st.calls;
        st.calls += 1;
        if let Some(mut observer) = st.observer.take() {
            observer(&CallPoint { index, call, state: &st });
            st.observer = Some(observer);
        }
        let injected = match &st.fail {
            Some(plan) if index == plan.from || (index > plan.from && !plan.once) => Some(Injected {
                error: plan.fault.error(),
                short_write: plan.short_write.filter(|_| index == plan.from && call == Call::WriteAt),
                transient: plan.once,
            }),
            _ => None,
        };
        Ok((st, injected))
    }

    /// Like [`begin`](Self::begin) for calls that fail whole, without
    /// effect, when a fault is injected.
    pub(super) fn begin_plain(&self, call: Call) -> io::Result<MutexGuard<'_, State>> {
        match self.begin(call)? {
            (st, None) => Ok(st),
            (_, Some(injected)) => Err(injected.error),
        }
    }
}

/// The simulated file system. Cloning gives another handle to the same
/// file system (not a copy: see [`SimFs::crash`] for images).
#[derive(Clone)]
pub struct SimFs {
    pub(super) shared: Arc<Shared>,
}

impl SimFs {
    pub(super) fn from_state(state: State) -> Self {
        Self { shared: Arc::new(Shared { state: Mutex::new(state) }) }
    }
}
