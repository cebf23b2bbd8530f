//! # lockwal-compare
//!
//! lockwal against the stores a file server would otherwise pick (SQLite,
//! redb, fjall), its own memory backend (the upper bound) and the disk itself
//! (a raw `write` + `fdatasync` loop), on the same workloads, on the same
//! machine, in one run.
//!
//! Every store is an adapter behind two small traits ([`Peer`] opens a store
//! in a directory, [`Store`] is the open store), so adding a peer is one file
//! in `engines/` plus one line in [`engines::all`]. Synchronous engines
//! implement [`SyncPeer`]/[`SyncStore`] and are run on tokio's blocking pool
//! through [`Blocking`], as an async file server would call them.
//!
//! The workloads (W1 to W5 of issue 7) are in [`workload`]; the record shape
//! and the data set in [`data`]. `src/bin/compare.rs` runs everything and
//! writes JSON; `scripts/compare` turns it into docs/benchmarks.md and the
//! SVG plots. `benches/workloads.rs` holds the criterion benches.

pub mod data;
pub mod engine;
pub mod engines;
pub mod machine;
pub mod stats;
pub mod workload;

pub use data::Dataset;
pub use engine::{Blocking, Caps, Peer, Restored, Store, SyncPeer, SyncStore};

/// Errors of every engine, boxed: the benchmarks only report them.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// Result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
