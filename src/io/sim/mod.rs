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
//!
//! The code, from the bottom up: `content` (a file's copy-on-write pages),
//! `fault` (what an injected fault is and which call it hits), `model` (the
//! live and durable state, the pending list and the numbered call gate),
//! `crash` (loss patterns and the images they leave), `fs` (the [`SimFs`]
//! handle and the [`FileSystem`] and [`StoreFile`] implementations).
//!
//! [`FileSystem`]: super::FileSystem
//! [`StoreFile`]: super::StoreFile

mod content;
mod crash;
mod fault;
mod fs;
mod model;

pub use content::MAX_FILE_LEN;
pub use crash::{Fill, Loss};
pub use fault::{Call, Fault};
pub use model::{CallPoint, Pending, SimFs};

#[cfg(test)]
mod tests;
