//! Fault injection: the errors an injected fault returns, the calls
//! through the seam it can hit, and the plan that says from which call on
//! (or at which call alone) they fail and whether a write lands in part.
//! The plan is set through [`SimFs`](super::SimFs) and applied as each call
//! begins.

use std::io;

#[cfg(doc)]
use crate::io::{FileSystem, StoreFile};

/// `EIO` on Linux.
pub(super) const EIO: i32 = 5;
/// `ENOSPC` on Linux.
pub(super) const ENOSPC: i32 = 28;

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

pub(super) struct FailPlan {
    pub(super) from: u64,
    pub(super) fault: Fault,
    /// When call `from` is a write, this many of its bytes land first.
    pub(super) short_write: Option<usize>,
    /// Only call `from` fails (a transient error); the later ones work.
    pub(super) once: bool,
}

/// A fault injected into one call.
pub(super) struct Injected {
    pub(super) error: io::Error,
    /// For a write: how many of its bytes land before it fails.
    pub(super) short_write: Option<usize>,
    /// The error is transient (later calls work).
    pub(super) transient: bool,
}
