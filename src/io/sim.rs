//! The power-loss simulator: an in-memory [`FileSystem`] that knows which
//! bytes and which directory entries a power cut would keep.
//!
//! # The model
//!
//! - Every file has *live* bytes (what reads see) and *durable* bytes (what
//!   survives power loss). `write_at` and `set_len` change the live bytes
//!   only; `sync_data` of that file makes its live bytes durable (it writes
//!   the pages its pending writes dirtied, and the length).
//! - Every directory has live and durable entries. Creating (including
//!   `try_lock` creating its file), renaming and removing change the live
//!   entries only; `sync_dir` of that directory makes them durable. A file
//!   whose entry never became durable vanishes in a crash even if its data
//!   was synced; a rename not yet synced is undone (the old name is back,
//!   and a replaced target has its old content). `create_dir_all` is an
//!   entry in the parent directory like any other, durable only once the
//!   parent is synced; a directory that vanishes takes its files with it.
//! - Every change not yet durable is also kept, in call order, in one global
//!   list of *pending* operations. A crash ([`SimFs::crash`]) keeps the
//!   durable state and, depending on the [`Loss`], nothing else, a prefix of
//!   the pending list, or a prefix plus the first bytes of the next pending
//!   write with the rest of its range zeroed or filled with garbage (a torn
//!   write). Everything is deterministic: garbage comes from a seed.
//!
//! A sync takes the synced file's (or directory's) operations out of the
//! pending list, wherever they are, so a prefix of what remains is always a
//! state the disk could really be in: an ordered disk that writes back in
//! call order.
//!
//! # Faults and crash points
//!
//! Every call through the seam ([`FileSystem`] and [`StoreFile`] methods) is
//! numbered from 0. [`SimFs::fail_from`] makes call `k` and every later one
//! fail with a chosen error; a failing call changes nothing (unless it is a
//! short write, [`SimFs::fail_from_with_short_write`]). [`SimFs::fail_once`]
//! fails call `k` alone, and a `sync_data` failed that way behaves as on
//! Linux: the file's unsynced writes stay readable but never become durable. "Crash at call `k`"
//! is `fail_from(k, ..)` followed, once the code under test is done
//! reacting, by [`SimFs::crash`]: the image is the state before call `k`.
//! [`SimFs::set_observer`] sees the state before every call, so a test can
//! take the crash images of every call of one run without re-running the
//! workload for each `k`.
//!
//! After a crash the old handle (and every file and lock it handed out) is
//! dead: every call fails. The returned [`SimFs`] holds the image, with
//! nothing pending and no lock held, ready for the store to be reopened.
//!
//! File contents are copy-on-write pages, so an image shares every page the
//! pending operations do not touch: a crash costs time proportional to the
//! pending data and the number of pages, not to the bytes stored.

use super::{FileBytes, FileSystem, LockGuard, OpenMode, StoreFile};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

/// Size of a copy-on-write page of file content.
const PAGE: usize = 4096;
/// Largest file the simulator holds (a bound on the page table).
pub const MAX_FILE_LEN: u64 = 1 << 32;

/// `EIO` on Linux.
const EIO: i32 = 5;
/// `ENOSPC` on Linux.
const ENOSPC: i32 = 28;

/// What a power cut keeps of the operations not yet durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Only what was synced: every pending operation is lost.
    DropUnsynced,
    /// The first `n` pending operations (all of them when `n` is larger).
    KeepPrefix(usize),
    /// The first `keep` pending operations, then the next one torn: if it is
    /// a write, its first `at` bytes land and the rest of its range is
    /// filled with `fill`; if it is not a write (or there is none), nothing
    /// more lands, as with `KeepPrefix(keep)`.
    Torn {
        /// Pending operations kept whole.
        keep: usize,
        /// Bytes of the torn write that land (clamped to its length).
        at: usize,
        /// What the rest of the torn write's range holds.
        fill: Fill,
    },
}

/// What the unwritten part of a torn write holds after the crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Zeros: the file size was updated, the data never written.
    Zeros,
    /// Pseudo-random bytes from this seed: stale or scrambled sectors.
    Garbage(u64),
}

/// The error an injected fault returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `EIO` (a failed write or fsync).
    Eio,
    /// `ENOSPC` (kind [`io::ErrorKind::StorageFull`]).
    NoSpace,
    /// An error of this kind.
    Kind(io::ErrorKind),
}

impl Fault {
    /// The error value.
    pub fn error(self) -> io::Error {
        match self {
            Fault::Eio => io::Error::from_raw_os_error(EIO),
            Fault::NoSpace => io::Error::from_raw_os_error(ENOSPC),
            Fault::Kind(kind) => io::Error::new(kind, "injected fault"),
        }
    }
}

/// Which method a call through the seam was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Call {
    /// [`FileSystem::create_dir_all`].
    CreateDirAll,
    /// [`FileSystem::open`].
    Open,
    /// [`FileSystem::read`].
    Read,
    /// [`FileSystem::rename`].
    Rename,
    /// [`FileSystem::remove`].
    Remove,
    /// [`FileSystem::sync_dir`].
    SyncDir,
    /// [`FileSystem::list`].
    List,
    /// [`FileSystem::try_lock`].
    TryLock,
    /// [`StoreFile::write_at`].
    WriteAt,
    /// [`StoreFile::sync_data`].
    SyncData,
    /// [`StoreFile::set_len`].
    SetLen,
    /// [`StoreFile::len`].
    Len,
}

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

type Ino = u64;
type PageRef = Arc<[u8; PAGE]>;

/// A file's bytes: a length and copy-on-write pages (`None`: all zeros).
/// Invariant: bytes at and beyond `len` in the last page are zero.
#[derive(Clone, Default, PartialEq, Eq)]
struct Content {
    len: u64,
    pages: Vec<Option<PageRef>>,
}

fn pages_for(len: u64) -> usize {
    len.div_ceil(PAGE as u64) as usize
}

impl Content {
    fn check_len(end: u64) -> io::Result<()> {
        if end > MAX_FILE_LEN {
            return Err(io::Error::new(io::ErrorKind::FileTooLarge, "beyond the simulator's largest file"));
        }
        Ok(())
    }

    fn write(&mut self, offset: u64, buf: &[u8]) -> io::Result<()> {
        let end = offset.checked_add(buf.len() as u64).ok_or_else(|| io::Error::from(io::ErrorKind::InvalidInput))?;
        Self::check_len(end)?;
        if buf.is_empty() {
            return Ok(());
        }
        if end > self.len {
            self.pages.resize(pages_for(end), None);
            self.len = end;
        }
        let mut at = offset;
        let mut rest = buf;
        while !rest.is_empty() {
            let page = (at / PAGE as u64) as usize;
            let within = (at % PAGE as u64) as usize;
            let n = rest.len().min(PAGE - within);
            let (chunk, tail) = rest.split_at(n);
            let slot = &mut self.pages[page];
            if slot.is_some() || chunk.iter().any(|&b| b != 0) {
                let bytes = Arc::make_mut(slot.get_or_insert_with(|| Arc::new([0; PAGE])));
                bytes[within..within + n].copy_from_slice(chunk);
            }
            at += n as u64;
            rest = tail;
        }
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        Self::check_len(len)?;
        if len < self.len {
            self.pages.truncate(pages_for(len));
            let within = (len % PAGE as u64) as usize;
            if within != 0
                && let Some(Some(page)) = self.pages.last_mut()
            {
                Arc::make_mut(page)[within..].fill(0);
            }
        } else {
            self.pages.resize(pages_for(len), None);
        }
        self.len = len;
        Ok(())
    }

    fn to_vec(&self) -> Vec<u8> {
        let mut out = vec![0u8; self.len as usize];
        for (i, page) in self.pages.iter().enumerate() {
            if let Some(page) = page {
                let start = i * PAGE;
                let end = (start + PAGE).min(out.len());
                out[start..end].copy_from_slice(&page[..end - start]);
            }
        }
        out
    }
}

impl std::fmt::Debug for Content {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let allocated = self.pages.iter().filter(|p| p.is_some()).count();
        write!(f, "Content {{ len: {}, pages allocated: {allocated} }}", self.len)
    }
}

/// SplitMix64: small, fast, and good enough for garbage.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed ^ 0x6A09_E667_F3BC_C909;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

#[derive(Debug, Default)]
struct Inode {
    live: Content,
    durable: Content,
    /// Open handles (an unreachable inode is kept while one is open).
    handles: usize,
}

#[derive(Debug, Clone, Default)]
struct Dir {
    /// Whether this directory's entry in its parent is durable.
    durable_entry: bool,
    live: BTreeMap<String, Ino>,
    durable: BTreeMap<String, Ino>,
}

/// A pending operation, with everything needed to replay it on an image.
#[derive(Debug, Clone)]
enum Op {
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

    fn public(&self) -> Pending {
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

fn is_root(path: &Path) -> bool {
    path.as_os_str().is_empty() || path == Path::new("/")
}

fn parent(path: &Path) -> &Path {
    path.parent().unwrap_or(Path::new(""))
}

fn split(path: &Path) -> io::Result<(&Path, String)> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, format!("not a file path: {}", path.display())))?;
    Ok((parent(path), name.to_owned()))
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("no such file or directory: {}", path.display()))
}

fn dead() -> io::Error {
    io::Error::other("simulated power loss: this file system crashed")
}

struct FailPlan {
    from: u64,
    fault: Fault,
    /// When call `from` is a write, this many of its bytes land first.
    short_write: Option<usize>,
    /// Only call `from` fails (a transient error); the later ones work.
    once: bool,
}

/// A fault injected into one call.
struct Injected {
    error: io::Error,
    /// For a write: how many of its bytes land before it fails.
    short_write: Option<usize>,
    /// The error is transient (later calls work).
    transient: bool,
}

/// The observer's view of the file system just before a call runs.
pub struct CallPoint<'a> {
    index: u64,
    call: Call,
    state: &'a State,
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

    /// The image a crash right now (before this call) would leave: the
    /// same as `fail_from(self.index(), ..)` then `crash(loss)`.
    pub fn image(&self, loss: Loss) -> SimFs {
        SimFs::from_state(self.state.image(loss))
    }
}

type Observer = Box<dyn FnMut(&CallPoint<'_>) + Send>;

struct State {
    inodes: HashMap<Ino, Inode>,
    next_ino: Ino,
    dirs: BTreeMap<PathBuf, Dir>,
    pending: Vec<Op>,
    locks: BTreeSet<PathBuf>,
    calls: u64,
    fail: Option<FailPlan>,
    dead: bool,
    lossless: bool,
    observer: Option<Observer>,
}

impl State {
    fn empty() -> Self {
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

    fn dir(&self, path: &Path) -> io::Result<&Dir> {
        self.dirs.get(path).ok_or_else(|| not_found(path))
    }

    fn dir_mut(&mut self, path: &Path) -> io::Result<&mut Dir> {
        self.dirs.get_mut(path).ok_or_else(|| not_found(path))
    }

    fn lookup(&self, path: &Path) -> io::Result<Ino> {
        let (dir, name) = split(path)?;
        self.dir(dir)?.live.get(&name).copied().ok_or_else(|| not_found(path))
    }

    fn inode(&mut self, ino: Ino) -> &mut Inode {
        self.inodes.get_mut(&ino).expect("a handle's inode lives while the handle does")
    }

    /// Records a change to a directory or file, durable at once when the
    /// simulated disk is lossless.
    fn push(&mut self, op: Op) {
        let (dir, ino) = (op.dir().map(Path::to_owned), op.ino());
        self.pending.push(op);
        if self.lossless {
            match dir {
                Some(dir) => self.sync_dir(&dir),
                None => self.sync_file(ino.expect("file operations name their inode")),
            }
        }
    }

    fn create_file(&mut self, path: &Path) -> io::Result<Ino> {
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
    fn sync_file(&mut self, ino: Ino) {
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
    fn forget_pending_writes(&mut self, ino: Ino) {
        self.pending.retain(|op| !matches!(op, Op::Write { ino: i, .. } | Op::SetLen { ino: i, .. } if *i == ino));
    }

    fn sync_dir(&mut self, path: &Path) {
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

    /// The state a crash with `loss` leaves: durable state plus the kept
    /// pending operations, with everything durable and nothing pending.
    fn image(&self, loss: Loss) -> State {
        let (keep, torn) = match loss {
            Loss::DropUnsynced => (0, None),
            Loss::KeepPrefix(n) => (n, None),
            Loss::Torn { keep, at, fill } => (keep, Some((at, fill))),
        };
        let keep = keep.min(self.pending.len());
        // Directories that exist durably, with their durable entries.
        let mut dirs: BTreeMap<PathBuf, BTreeMap<String, Ino>> =
            self.dirs.iter().filter(|(_, d)| d.durable_entry).map(|(p, d)| (p.clone(), d.durable.clone())).collect();
        // Contents touched by kept operations, copied (page table only) from
        // the durable contents on first touch.
        let mut files: HashMap<Ino, Content> = HashMap::new();
        let durable = |ino: Ino| self.inodes.get(&ino).map(|i| i.durable.clone()).unwrap_or_default();
        fn touch(files: &mut HashMap<Ino, Content>, ino: Ino, durable: impl Fn(Ino) -> Content) -> &mut Content {
            files.entry(ino).or_insert_with(|| durable(ino))
        }
        for op in &self.pending[..keep] {
            match op {
                Op::Write { ino, offset, data } => {
                    touch(&mut files, *ino, durable).write(*offset, data).expect("replaying a write");
                }
                Op::SetLen { ino, len } => {
                    touch(&mut files, *ino, durable).set_len(*len).expect("replaying a set_len");
                }
                Op::MkDir { path } => {
                    let entries = self.dirs.get(path).map(|d| d.durable.clone()).unwrap_or_default();
                    dirs.entry(path.clone()).or_insert(entries);
                }
                Op::Link { dir, name, ino } => {
                    if let Some(entries) = dirs.get_mut(dir) {
                        entries.insert(name.clone(), *ino);
                    }
                }
                Op::Unlink { dir, name } => {
                    if let Some(entries) = dirs.get_mut(dir) {
                        entries.remove(name);
                    }
                }
                Op::Rename { dir, from, to } => {
                    if let Some(entries) = dirs.get_mut(dir)
                        && let Some(ino) = entries.remove(from)
                    {
                        entries.insert(to.clone(), ino);
                    }
                }
            }
        }
        if let (Some((at, fill)), Some(Op::Write { ino, offset, data })) = (torn, self.pending.get(keep)) {
            let at = at.min(data.len());
            let mut bytes = data[..at].to_vec();
            match fill {
                Fill::Zeros => bytes.resize(data.len(), 0),
                Fill::Garbage(seed) => bytes.extend(garbage(seed, data.len() - at)),
            }
            touch(&mut files, *ino, durable).write(*offset, &bytes).expect("replaying a write");
        }
        // A directory survives only with every ancestor.
        let survives = |path: &Path| path.ancestors().skip(1).all(|a| is_root(a) || dirs.contains_key(a));
        let kept: Vec<PathBuf> = dirs.keys().filter(|p| survives(p)).cloned().collect();
        let mut image = State::empty();
        for path in kept {
            let entries = dirs.remove(&path).expect("listed above");
            for &ino in entries.values() {
                image.inodes.entry(ino).or_insert_with(|| {
                    let c = files.get(&ino).cloned().unwrap_or_else(|| durable(ino));
                    Inode { live: c.clone(), durable: c, handles: 0 }
                });
            }
            image.dirs.insert(path, Dir { durable_entry: true, live: entries.clone(), durable: entries });
        }
        image.next_ino = self.next_ino;
        image.lossless = self.lossless;
        image
    }
}

struct Shared {
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panicking observer must not wedge every later test assertion.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Numbers the call, shows it to the observer, and says whether a fault
    /// is injected into it. `Err`: the file system is dead.
    fn begin(&self, call: Call) -> io::Result<(MutexGuard<'_, State>, Option<Injected>)> {
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
    fn begin_plain(&self, call: Call) -> io::Result<MutexGuard<'_, State>> {
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
    shared: Arc<Shared>,
}

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

    fn from_state(state: State) -> Self {
        Self { shared: Arc::new(Shared { state: Mutex::new(state) }) }
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

    /// Cuts the power: this handle, its clones, and every file and lock
    /// they handed out fail every later call. Returns a new file system
    /// holding what survives under `loss`. May be called again (with the
    /// same or another loss) on the dead handle: its state no longer
    /// changes, so one crash point can be tried with every loss pattern.
    pub fn crash(&self, loss: Loss) -> SimFs {
        let mut st = self.shared.lock();
        st.dead = true;
        st.observer = None;
        Self::from_state(st.image(loss))
    }

    /// An independent copy of what this file system holds now, all of it
    /// durable (the image of a crash that loses nothing), without crashing
    /// this one. Faults, observer and locks are not copied.
    pub fn copy(&self) -> SimFs {
        Self::from_state(self.shared.lock().image(Loss::KeepPrefix(usize::MAX)))
    }

    /// Whether [`crash`](Self::crash) was called on this file system.
    pub fn is_dead(&self) -> bool {
        self.shared.lock().dead
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

#[cfg(test)]
mod tests {
    //! Each rule of the model, with an assertion that fails when the rule is
    //! broken.

    use super::*;
    use proptest::prelude::*;

    fn p(s: &str) -> PathBuf {
        PathBuf::from(s)
    }

    /// A file system with `/d` created and durable.
    fn fs_with_dir() -> SimFs {
        let fs = SimFs::new();
        fs.create_dir_all(&p("/d")).unwrap();
        fs.sync_dir(&p("/")).unwrap();
        fs
    }

    /// Creates `/d/<name>` with `bytes`, data and entry durable.
    fn durable_file(fs: &SimFs, name: &str, bytes: &[u8]) -> Box<dyn StoreFile> {
        let mut f = fs.open(&p("/d").join(name), OpenMode::CreateNew).unwrap();
        f.write_at(0, bytes).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(&p("/d")).unwrap();
        f
    }

    fn read(fs: &SimFs, path: &str) -> io::Result<Vec<u8>> {
        fs.read(&p(path)).map(|b| b.to_vec())
    }

    #[test]
    fn an_unsynced_write_is_lost_and_a_synced_one_kept() {
        let fs = fs_with_dir();
        let mut f = durable_file(&fs, "a", b"durable");
        f.write_at(7, b"+pending").unwrap();
        assert_eq!(read(&fs, "/d/a").unwrap(), b"durable+pending", "reads see live bytes");
        let image = fs.crash(Loss::DropUnsynced);
        assert_eq!(read(&image, "/d/a").unwrap(), b"durable");
        let image = fs.crash(Loss::KeepPrefix(usize::MAX));
        assert_eq!(read(&image, "/d/a").unwrap(), b"durable+pending");
    }

    #[test]
    fn an_unsynced_set_len_is_lost_and_a_synced_one_kept() {
        let fs = fs_with_dir();
        let mut f = durable_file(&fs, "a", b"0123456789");
        f.set_len(4).unwrap();
        assert_eq!(f.len().unwrap(), 4);
        assert_eq!(read(&fs.crash(Loss::DropUnsynced), "/d/a").unwrap(), b"0123456789");

        let fs = fs_with_dir();
        let mut f = durable_file(&fs, "a", b"0123456789");
        f.set_len(4).unwrap();
        f.sync_data().unwrap();
        assert_eq!(read(&fs.crash(Loss::DropUnsynced), "/d/a").unwrap(), b"0123");
    }

    #[test]
    fn a_created_file_vanishes_unless_its_directory_was_synced() {
        let fs = fs_with_dir();
        let mut f = fs.open(&p("/d/new"), OpenMode::CreateNew).unwrap();
        f.write_at(0, b"synced data").unwrap();
        f.sync_data().unwrap();
        assert_eq!(fs.list(&p("/d")).unwrap(), vec!["new"]);
        let image = fs.crash(Loss::DropUnsynced);
        assert_eq!(image.list(&p("/d")).unwrap(), Vec::<String>::new(), "entry never made durable");
        assert_eq!(read(&image, "/d/new").unwrap_err().kind(), io::ErrorKind::NotFound);

        let fs = fs_with_dir();
        durable_file(&fs, "new", b"synced data");
        assert_eq!(read(&fs.crash(Loss::DropUnsynced), "/d/new").unwrap(), b"synced data");
    }

    #[test]
    fn a_durable_entry_with_unsynced_data_survives_empty() {
        let fs = fs_with_dir();
        let mut f = fs.open(&p("/d/new"), OpenMode::CreateNew).unwrap();
        fs.sync_dir(&p("/d")).unwrap();
        f.write_at(0, b"never synced").unwrap();
        assert_eq!(read(&fs.crash(Loss::DropUnsynced), "/d/new").unwrap(), b"");
    }

    #[test]
    fn an_unsynced_rename_is_undone_with_the_old_target_back() {
        let fs = fs_with_dir();
        durable_file(&fs, "target", b"old target");
        durable_file(&fs, "tmp", b"new content");
        fs.rename(&p("/d/tmp"), &p("/d/target")).unwrap();
        assert_eq!(read(&fs, "/d/target").unwrap(), b"new content");
        assert_eq!(fs.list(&p("/d")).unwrap(), vec!["target"]);

        let image = fs.crash(Loss::DropUnsynced);
        assert_eq!(image.list(&p("/d")).unwrap(), vec!["target", "tmp"]);
        assert_eq!(read(&image, "/d/target").unwrap(), b"old target");
        assert_eq!(read(&image, "/d/tmp").unwrap(), b"new content");
        let image = fs.crash(Loss::KeepPrefix(1));
        assert_eq!(image.list(&p("/d")).unwrap(), vec!["target"]);
        assert_eq!(read(&image, "/d/target").unwrap(), b"new content");
    }

    #[test]
    fn a_synced_rename_and_remove_are_durable() {
        let fs = fs_with_dir();
        durable_file(&fs, "target", b"old target");
        durable_file(&fs, "tmp", b"new content");
        durable_file(&fs, "doomed", b"x");
        fs.rename(&p("/d/tmp"), &p("/d/target")).unwrap();
        fs.remove(&p("/d/doomed")).unwrap();
        fs.sync_dir(&p("/d")).unwrap();
        assert!(fs.pending().is_empty());
        let image = fs.crash(Loss::DropUnsynced);
        assert_eq!(image.list(&p("/d")).unwrap(), vec!["target"]);
        assert_eq!(read(&image, "/d/target").unwrap(), b"new content");
    }

    #[test]
    fn an_unsynced_remove_is_undone() {
        let fs = fs_with_dir();
        durable_file(&fs, "a", b"still here");
        fs.remove(&p("/d/a")).unwrap();
        assert_eq!(read(&fs, "/d/a").unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(read(&fs.crash(Loss::DropUnsynced), "/d/a").unwrap(), b"still here");
    }

    #[test]
    fn an_unsynced_directory_vanishes_with_its_synced_files() {
        let fs = SimFs::new();
        fs.create_dir_all(&p("/x/y")).unwrap();
        let mut f = fs.open(&p("/x/y/f"), OpenMode::CreateNew).unwrap();
        f.write_at(0, b"data").unwrap();
        f.sync_data().unwrap();
        fs.sync_dir(&p("/x/y")).unwrap();
        fs.sync_dir(&p("/x")).unwrap(); // y's entry in x, but x's entry in / is pending
        let image = fs.crash(Loss::DropUnsynced);
        assert_eq!(image.list(&p("/x/y")).unwrap_err().kind(), io::ErrorKind::NotFound);
        assert_eq!(image.list(&p("/x")).unwrap_err().kind(), io::ErrorKind::NotFound);
        // Keeping the one pending operation (x in /) brings all of it back.
        assert_eq!(fs.pending(), vec![Pending::MkDir { path: p("/x") }]);
        let image = fs.crash(Loss::KeepPrefix(1));
        assert_eq!(read(&image, "/x/y/f").unwrap(), b"data");
    }

    #[test]
    fn keep_prefix_keeps_exactly_the_first_n_pending_operations_in_call_order() {
        let fs = fs_with_dir();
        let mut a = durable_file(&fs, "a", b"");
        let mut b = durable_file(&fs, "b", b"");
        a.write_at(0, b"a1").unwrap();
        b.write_at(0, b"b1").unwrap();
        a.write_at(2, b"a2").unwrap();
        fs.rename(&p("/d/b"), &p("/d/c")).unwrap();
        // Pending, in call order: a1, b1, a2, rename b -> c.
        let expected: [(&[u8], &[u8], [&str; 2]); 5] = [
            (b"", b"", ["a", "b"]),
            (b"a1", b"", ["a", "b"]),
            (b"a1", b"b1", ["a", "b"]),
            (b"a1a2", b"b1", ["a", "b"]),
            (b"a1a2", b"b1", ["a", "c"]),
        ];
        for (n, (a_bytes, b_bytes, names)) in expected.into_iter().enumerate() {
            let image = fs.crash(Loss::KeepPrefix(n));
            assert_eq!(image.list(&p("/d")).unwrap(), names, "n={n}");
            assert_eq!(read(&image, "/d/a").unwrap(), a_bytes, "n={n}");
            assert_eq!(read(&image, &format!("/d/{}", names[1])).unwrap(), b_bytes, "n={n}");
        }
    }

    #[test]
    fn a_sync_takes_its_operations_out_of_the_middle_of_the_pending_list() {
        let fs = fs_with_dir();
        let mut a = durable_file(&fs, "a", b"");
        let mut b = durable_file(&fs, "b", b"");
        a.write_at(0, b"A").unwrap();
        b.write_at(0, b"B").unwrap();
        a.sync_data().unwrap();
        assert_eq!(fs.pending(), vec![Pending::Write { file: 2, offset: 0, len: 1 }]);
        let image = fs.crash(Loss::DropUnsynced);
        assert_eq!((read(&image, "/d/a").unwrap(), read(&image, "/d/b").unwrap()), (b"A".to_vec(), vec![]));
    }

    #[test]
    fn a_torn_write_lands_its_first_bytes_and_fills_the_rest() {
        let fs = fs_with_dir();
        let mut f = durable_file(&fs, "a", b"head:");
        f.write_at(5, b"ABCDEFGH").unwrap();
        let zeros = fs.crash(Loss::Torn { keep: 0, at: 3, fill: Fill::Zeros });
        assert_eq!(read(&zeros, "/d/a").unwrap(), b"head:ABC\0\0\0\0\0");
        let g1 = read(&fs.crash(Loss::Torn { keep: 0, at: 3, fill: Fill::Garbage(1) }), "/d/a").unwrap();
        let g1_again = read(&fs.crash(Loss::Torn { keep: 0, at: 3, fill: Fill::Garbage(1) }), "/d/a").unwrap();
        let g2 = read(&fs.crash(Loss::Torn { keep: 0, at: 3, fill: Fill::Garbage(2) }), "/d/a").unwrap();
        assert_eq!(&g1[..8], b"head:ABC");
        assert_eq!(g1.len(), 13);
        assert_eq!(g1, g1_again, "garbage is deterministic from the seed");
        assert_ne!(g1, g2, "another seed, other garbage");
        assert_ne!(&g1[8..], b"DEFGH");
        assert_ne!(&g1[8..], &[0; 5]);
        // `at` beyond the write's length: the whole write lands.
        let whole = fs.crash(Loss::Torn { keep: 0, at: 100, fill: Fill::Zeros });
        assert_eq!(read(&whole, "/d/a").unwrap(), b"head:ABCDEFGH");
    }

    #[test]
    fn a_torn_non_write_is_just_a_prefix() {
        let fs = fs_with_dir();
        let mut f = durable_file(&fs, "a", b"abc");
        f.set_len(1).unwrap();
        f.write_at(1, b"Z").unwrap();
        let image = fs.crash(Loss::Torn { keep: 0, at: 0, fill: Fill::Garbage(9) });
        assert_eq!(read(&image, "/d/a").unwrap(), b"abc");
        let image = fs.crash(Loss::Torn { keep: 1, at: 0, fill: Fill::Zeros });
        assert_eq!(read(&image, "/d/a").unwrap(), b"a\0");
    }

    #[test]
    fn contents_across_pages_shrink_and_grow_with_zeros() {
        let fs = fs_with_dir();
        let mut f = durable_file(&fs, "a", b"");
        let big: Vec<u8> = (0..3 * PAGE + 100).map(|i| (i % 251) as u8 + 1).collect();
        f.write_at(10, &big).unwrap();
        let mut expected = vec![0u8; 10];
        expected.extend_from_slice(&big);
        assert_eq!(read(&fs, "/d/a").unwrap(), expected);
        f.set_len(PAGE as u64 + 7).unwrap();
        f.set_len(3 * PAGE as u64).unwrap();
        expected.truncate(PAGE + 7);
        expected.resize(3 * PAGE, 0);
        assert_eq!(read(&fs, "/d/a").unwrap(), expected, "a shrink then grow shows zeros, not old bytes");
        f.sync_data().unwrap();
        assert_eq!(read(&fs.crash(Loss::DropUnsynced), "/d/a").unwrap(), expected);
    }

    #[test]
    fn a_huge_pre_sized_file_costs_no_memory_until_written() {
        let fs = fs_with_dir();
        let mut f = durable_file(&fs, "a", b"");
        f.set_len(1 << 30).unwrap();
        f.write_at(5 << 20, b"x").unwrap();
        f.sync_data().unwrap();
        let st = fs.shared.lock();
        let content = &st.inodes[&1].live;
        assert_eq!(content.len, 1 << 30);
        assert_eq!(content.pages.iter().filter(|p| p.is_some()).count(), 1);
    }

    #[test]
    fn file_sizes_are_bounded() {
        let fs = fs_with_dir();
        let mut f = durable_file(&fs, "a", b"");
        assert_eq!(f.set_len(MAX_FILE_LEN + 1).unwrap_err().kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(f.write_at(MAX_FILE_LEN, b"x").unwrap_err().kind(), io::ErrorKind::FileTooLarge);
        assert_eq!(f.write_at(u64::MAX, b"x").unwrap_err().kind(), io::ErrorKind::InvalidInput);
        assert_eq!(f.len().unwrap(), 0);
    }

    #[test]
    fn errors_are_those_of_a_real_file_system() {
        let fs = fs_with_dir();
        durable_file(&fs, "a", b"");
        let kind = |r: io::Result<()>| r.unwrap_err().kind();
        assert_eq!(kind(fs.open(&p("/d/a"), OpenMode::CreateNew).map(drop)), io::ErrorKind::AlreadyExists);
        assert_eq!(kind(fs.open(&p("/d/b"), OpenMode::Existing).map(drop)), io::ErrorKind::NotFound);
        assert_eq!(kind(fs.open(&p("/nodir/b"), OpenMode::CreateNew).map(drop)), io::ErrorKind::NotFound);
        assert_eq!(kind(fs.read(&p("/d/b")).map(drop)), io::ErrorKind::NotFound);
        assert_eq!(kind(fs.remove(&p("/d/b"))), io::ErrorKind::NotFound);
        assert_eq!(kind(fs.rename(&p("/d/b"), &p("/d/c"))), io::ErrorKind::NotFound);
        assert_eq!(kind(fs.rename(&p("/d/a"), &p("/nodir/c"))), io::ErrorKind::NotFound);
        assert_eq!(kind(fs.sync_dir(&p("/nodir"))), io::ErrorKind::NotFound);
        assert_eq!(kind(fs.list(&p("/nodir")).map(drop)), io::ErrorKind::NotFound);
        assert_eq!(kind(fs.create_dir_all(&p("/d/a/sub"))), io::ErrorKind::AlreadyExists);
        assert_eq!(fs.read(&p("/d/a")).unwrap().len(), 0, "an empty file reads as empty");
        assert!(matches!(fs.read(&p("/d/a")).unwrap(), FileBytes::Owned(_)));
        fs.create_dir_all(&p("/d")).unwrap(); // exists: fine
    }

    #[test]
    fn list_returns_live_names_sorted_and_not_directories() {
        let fs = fs_with_dir();
        for name in ["zeta", "alpha", "mid"] {
            fs.open(&p("/d").join(name), OpenMode::CreateNew).unwrap();
        }
        fs.create_dir_all(&p("/d/sub")).unwrap();
        fs.remove(&p("/d/mid")).unwrap();
        assert_eq!(fs.list(&p("/d")).unwrap(), vec!["alpha", "zeta"]);
    }

    #[test]
    fn every_call_is_counted_and_faults_start_at_call_k() {
        let fs = SimFs::new();
        assert_eq!(fs.calls(), 0);
        fs.create_dir_all(&p("/d")).unwrap(); // 0
        let mut f = fs.open(&p("/d/a"), OpenMode::CreateNew).unwrap(); // 1
        f.write_at(0, b"abc").unwrap(); // 2
        assert_eq!(f.len().unwrap(), 3); // 3
        assert!(!f.is_empty().unwrap()); // 4 (through len)
        assert_eq!(fs.calls(), 5);
        fs.fail_from(6, Fault::Eio);
        f.sync_data().unwrap(); // 5
        let err = f.write_at(3, b"d").unwrap_err(); // 6
        assert_eq!(err.raw_os_error(), Some(EIO));
        assert_eq!(fs.sync_dir(&p("/d")).unwrap_err().raw_os_error(), Some(EIO), "later calls fail too");
        assert_eq!(fs.list(&p("/d")).unwrap_err().raw_os_error(), Some(EIO), "reads too");
        assert_eq!(fs.calls(), 9, "failed calls are counted");
        assert_eq!(fs.peek(&p("/d/a")).unwrap(), b"abc", "a failed call has no effect");
        fs.clear_faults();
        fs.sync_dir(&p("/d")).unwrap();
    }

    #[test]
    fn no_space_is_storage_full() {
        let fs = fs_with_dir();
        fs.fail_from(fs.calls(), Fault::NoSpace);
        let err = fs.open(&p("/d/a"), OpenMode::CreateNew).map(drop).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(err.raw_os_error(), Some(ENOSPC));
        fs.fail_from(0, Fault::Kind(io::ErrorKind::PermissionDenied));
        assert_eq!(fs.sync_dir(&p("/d")).unwrap_err().kind(), io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn a_transient_fault_fails_one_call_and_a_failed_sync_loses_its_writes_for_good() {
        let fs = fs_with_dir();
        let mut f = durable_file(&fs, "a", b"old");
        f.write_at(0, b"new").unwrap();
        fs.fail_once(fs.calls(), Fault::Eio);
        assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(EIO));
        assert_eq!(fs.peek(&p("/d/a")).unwrap(), b"new", "reads still see the unsynced bytes");
        f.write_at(3, b"+more").unwrap();
        f.sync_data().expect("later calls work");
        let image = fs.crash(Loss::KeepPrefix(usize::MAX));
        assert_eq!(read(&image, "/d/a").unwrap(), b"new+more", "the later sync wrote the whole live file");

        // ... unless nothing after the failure dirtied those pages again:
        let fs = fs_with_dir();
        let mut f = durable_file(&fs, "a", b"old");
        let mut g = durable_file(&fs, "b", b"");
        f.write_at(0, b"new").unwrap();
        g.write_at(0, b"other").unwrap();
        fs.fail_once(fs.calls(), Fault::Eio);
        f.sync_data().unwrap_err();
        f.sync_data().expect("the retry \"succeeds\"");
        assert_eq!(fs.pending(), vec![Pending::Write { file: 2, offset: 0, len: 5 }], "f's write is gone");
        let image = fs.crash(Loss::KeepPrefix(usize::MAX));
        assert_eq!(read(&image, "/d/a").unwrap(), b"old", "fsyncgate: the failed write never reached the disk");
        assert_eq!(read(&image, "/d/b").unwrap(), b"other");

        // A transient failure of another call has no effect.
        let fs = fs_with_dir();
        fs.fail_once(fs.calls() + 1, Fault::NoSpace);
        fs.open(&p("/d/x"), OpenMode::CreateNew).unwrap();
        assert!(fs.open(&p("/d/y"), OpenMode::CreateNew).is_err());
        fs.open(&p("/d/z"), OpenMode::CreateNew).unwrap();
        assert_eq!(fs.list(&p("/d")).unwrap(), vec!["x", "z"]);
    }

    #[test]
    fn a_short_write_lands_its_first_bytes_then_fails() {
        let fs = fs_with_dir();
        let mut f = durable_file(&fs, "a", b"");
        fs.fail_from_with_short_write(fs.calls(), Fault::NoSpace, 2);
        assert_eq!(f.write_at(0, b"abcdef").unwrap_err().kind(), io::ErrorKind::StorageFull);
        assert_eq!(fs.peek(&p("/d/a")).unwrap(), b"ab");
        assert_eq!(fs.pending(), vec![Pending::Write { file: 1, offset: 0, len: 2 }]);
        assert!(f.write_at(2, b"cdef").is_err(), "the calls after it fail whole");
        assert_eq!(fs.peek(&p("/d/a")).unwrap(), b"ab");
    }

    #[test]
    fn a_crashed_file_system_refuses_every_call_and_the_image_is_fresh() {
        let fs = fs_with_dir();
        let mut f = durable_file(&fs, "a", b"abc");
        let guard = fs.try_lock(&p("/d/LOCK")).unwrap();
        fs.sync_dir(&p("/d")).unwrap();
        f.write_at(0, b"x").unwrap();
        let calls = fs.calls();
        let image = fs.crash(Loss::DropUnsynced);
        assert!(fs.is_dead());
        assert!(fs.list(&p("/d")).is_err());
        assert!(fs.read(&p("/d/a")).is_err());
        assert!(fs.create_dir_all(&p("/e")).is_err());
        assert!(f.write_at(0, b"y").is_err());
        assert!(f.sync_data().is_err());
        assert!(f.len().is_err());
        assert_eq!(fs.calls(), calls, "calls after death are not counted");
        // The image: nothing pending, nothing locked, nothing counted.
        assert!(!image.is_dead());
        assert_eq!(image.calls(), 0);
        assert!(image.pending().is_empty());
        let _second = image.try_lock(&p("/d/LOCK")).expect("a crash releases every lock");
        drop(guard);
        assert_eq!(read(&image, "/d/a").unwrap(), b"abc");
        // An image of an image is the same image.
        assert_eq!(read(&image.crash(Loss::DropUnsynced), "/d/a").unwrap(), b"abc");
    }

    #[test]
    fn a_copy_is_independent_and_holds_everything() {
        let fs = fs_with_dir();
        let mut f = durable_file(&fs, "a", b"one");
        f.write_at(3, b"+two").unwrap();
        let copy = fs.copy();
        assert!(!fs.is_dead());
        assert_eq!(read(&copy, "/d/a").unwrap(), b"one+two");
        assert!(copy.pending().is_empty());
        copy.open(&p("/d/a"), OpenMode::Existing).unwrap().write_at(0, b"ONE").unwrap();
        assert_eq!(read(&fs, "/d/a").unwrap(), b"one+two", "the copy does not share state");
        assert_eq!(read(&copy.crash(Loss::KeepPrefix(1)), "/d/a").unwrap(), b"ONE+two");
    }

    #[test]
    fn try_lock_conflicts_while_the_guard_lives() {
        let fs = fs_with_dir();
        let guard = fs.try_lock(&p("/d/LOCK")).unwrap();
        assert_eq!(fs.list(&p("/d")).unwrap(), vec!["LOCK"], "try_lock creates the file");
        let err = fs.try_lock(&p("/d/LOCK")).map(drop).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let other = fs.try_lock(&p("/d/OTHER")).unwrap();
        drop(guard);
        let again = fs.try_lock(&p("/d/LOCK")).unwrap();
        assert_eq!(fs.try_lock(&p("/d/OTHER")).map(drop).unwrap_err().kind(), io::ErrorKind::WouldBlock);
        drop((again, other));
        assert_eq!(fs.try_lock(&p("/nodir/LOCK")).map(drop).unwrap_err().kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn the_observer_sees_the_image_of_a_crash_at_each_call() {
        /// Runs a fixed script; returns the number of calls it made.
        fn script(fs: &SimFs) -> u64 {
            let _ = (|| -> io::Result<()> {
                fs.create_dir_all(&p("/d"))?;
                fs.sync_dir(&p("/"))?;
                let mut f = fs.open(&p("/d/a"), OpenMode::CreateNew)?;
                f.write_at(0, b"one")?;
                f.sync_data()?;
                fs.sync_dir(&p("/d"))?;
                f.write_at(3, b"two")?;
                let mut g = fs.open(&p("/d/b.tmp"), OpenMode::CreateNew)?;
                g.write_at(0, b"snapshot")?;
                g.sync_data()?;
                fs.rename(&p("/d/b.tmp"), &p("/d/b"))?;
                f.sync_data()?;
                fs.sync_dir(&p("/d"))?;
                Ok(())
            })();
            fs.calls()
        }
        fn describe(fs: &SimFs) -> Vec<(String, Vec<u8>)> {
            let names = fs.list(&p("/d")).unwrap_or_default();
            names.into_iter().map(|n| (n.clone(), fs.peek(&p("/d").join(&n)).unwrap())).collect()
        }
        let losses = [
            Loss::DropUnsynced,
            Loss::KeepPrefix(1),
            Loss::KeepPrefix(2),
            Loss::Torn { keep: 0, at: 1, fill: Fill::Garbage(3) },
        ];
        let observed = Arc::new(Mutex::new(Vec::new()));
        let fs = SimFs::new();
        let sink = Arc::clone(&observed);
        fs.set_observer(move |point| {
            let images: Vec<_> = losses.iter().map(|&l| describe(&point.image(l))).collect();
            sink.lock().unwrap().push((point.index(), images));
        });
        let total = script(&fs);
        let observed = observed.lock().unwrap();
        assert_eq!(observed.len() as u64, total);
        let mut distinct = BTreeSet::new();
        for (k, images) in observed.iter() {
            for (loss, image) in losses.iter().zip(images) {
                let fs = SimFs::new();
                fs.fail_from(*k, Fault::Eio);
                script(&fs);
                assert_eq!(&describe(&fs.crash(*loss)), image, "k={k} {loss:?}");
                distinct.insert(image.clone());
            }
        }
        assert!(distinct.len() >= 6, "the script passes through many states: {distinct:?}");
    }

    #[test]
    fn a_lossless_file_system_keeps_everything() {
        let fs = SimFs::lossless();
        fs.create_dir_all(&p("/d")).unwrap();
        let mut f = fs.open(&p("/d/a"), OpenMode::CreateNew).unwrap();
        f.write_at(0, b"kept").unwrap();
        fs.open(&p("/d/b"), OpenMode::CreateNew).unwrap();
        fs.rename(&p("/d/b"), &p("/d/c")).unwrap();
        assert!(fs.pending().is_empty());
        let image = fs.crash(Loss::DropUnsynced);
        assert_eq!(image.list(&p("/d")).unwrap(), vec!["a", "c"]);
        assert_eq!(read(&image, "/d/a").unwrap(), b"kept");
        // The image is lossless too.
        let mut g = image.open(&p("/d/a"), OpenMode::Existing).unwrap();
        g.write_at(4, b"!").unwrap();
        assert_eq!(read(&image.crash(Loss::DropUnsynced), "/d/a").unwrap(), b"kept!");
    }

    #[test]
    fn removed_files_are_forgotten_once_nothing_reaches_them() {
        let fs = fs_with_dir();
        for i in 0..10 {
            let name = format!("f{i}");
            drop(durable_file(&fs, &name, &[1; 100]));
            fs.remove(&p("/d").join(&name)).unwrap();
            fs.sync_dir(&p("/d")).unwrap();
        }
        assert_eq!(fs.shared.lock().inodes.len(), 0);
        // An open handle keeps its inode alive (POSIX: unlinked but open).
        let mut f = durable_file(&fs, "open", b"x");
        fs.remove(&p("/d/open")).unwrap();
        fs.sync_dir(&p("/d")).unwrap();
        f.write_at(1, b"y").unwrap();
        f.sync_data().unwrap();
        assert_eq!(fs.shared.lock().inodes.len(), 1);
    }

    #[test]
    fn a_cross_directory_rename_is_a_create_and_a_remove() {
        let fs = fs_with_dir();
        fs.create_dir_all(&p("/e")).unwrap();
        fs.sync_dir(&p("/")).unwrap();
        durable_file(&fs, "a", b"moved");
        fs.rename(&p("/d/a"), &p("/e/a")).unwrap();
        fs.sync_dir(&p("/e")).unwrap();
        let image = fs.crash(Loss::DropUnsynced);
        assert_eq!(read(&image, "/e/a").unwrap(), b"moved");
        assert_eq!(read(&image, "/d/a").unwrap(), b"moved", "the removal from /d was not synced");
    }

    #[derive(Debug, Clone)]
    enum FileOp {
        Write(u16, Vec<u8>),
        SetLen(u16),
        Sync,
    }

    fn file_op() -> impl Strategy<Value = FileOp> {
        prop_oneof![
            4 => (0u16..9000, proptest::collection::vec(any::<u8>(), 0..5000)).prop_map(|(o, b)| FileOp::Write(o, b)),
            1 => (0u16..12000).prop_map(FileOp::SetLen),
            1 => Just(FileOp::Sync),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Against a `Vec<u8>` per state: live bytes are what was written,
        /// a crash keeping everything gives the live bytes, a crash keeping
        /// nothing gives the bytes at the last sync, and every prefix of
        /// the pending operations gives the bytes after that many of the
        /// operations since the last sync.
        #[test]
        fn contents_match_a_naive_model(ops in proptest::collection::vec(file_op(), 1..40)) {
            let fs = fs_with_dir();
            let mut f = durable_file(&fs, "a", b"");
            let mut live: Vec<u8> = Vec::new();
            let mut at_sync = Vec::new();
            let mut since_sync = vec![Vec::new()];
            for op in &ops {
                match op {
                    FileOp::Write(o, b) => {
                        f.write_at(u64::from(*o), b).unwrap();
                        let end = *o as usize + b.len();
                        if end > live.len() { live.resize(end, 0); }
                        live[*o as usize..end].copy_from_slice(b);
                        if !b.is_empty() { since_sync.push(live.clone()); }
                    }
                    FileOp::SetLen(n) => {
                        f.set_len(u64::from(*n)).unwrap();
                        live.resize(*n as usize, 0);
                        since_sync.push(live.clone());
                    }
                    FileOp::Sync => {
                        f.sync_data().unwrap();
                        at_sync = live.clone();
                        since_sync = vec![live.clone()];
                    }
                }
            }
            prop_assert_eq!(read(&fs, "/d/a").unwrap(), live.clone());
            prop_assert_eq!(read(&fs.crash(Loss::KeepPrefix(usize::MAX)), "/d/a").unwrap(), live);
            prop_assert_eq!(read(&fs.crash(Loss::DropUnsynced), "/d/a").unwrap(), at_sync);
            for (n, expected) in since_sync.iter().enumerate() {
                prop_assert_eq!(&read(&fs.crash(Loss::KeepPrefix(n)), "/d/a").unwrap(), expected, "n={}", n);
            }
        }
    }
}
