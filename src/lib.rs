//! # lockwal
//!
//! A durable store for the lock state of a file server (NFSv3 with NLM,
//! NFSv4, SMB2/3): byte-range locks, share reservations, leases,
//! delegations and client records, the server epoch, the clean-shutdown
//! marker and grace-period reclaim, behind one async trait, [`LockStore`].
//!
//! ```
//! use lockwal::{LockStore, MemoryLockStore, LockQuery};
//! use lockwal::model::*;
//! use std::sync::Arc;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> lockwal::Result<()> {
//! let store: Arc<dyn LockStore> = Arc::new(MemoryLockStore::new());
//! store.put_lock(PersistedLock {
//!     id: "7f0c".into(),
//!     share: "export".into(),
//!     file_id: "fh-42".into(),
//!     owner_id: "nlm:host1:17:00ff".into(),
//!     client_id: "host1".into(),
//!     kind: LockKind::ByteRange(ByteRange {
//!         lock_type: LockType::Exclusive, offset: 0, length: 0, zero_byte: false,
//!         flavor: RangeFlavor::Posix,
//!     }),
//!     acquired_at: Timestamp::now(),
//!     server_epoch: 0, // stamped by the store
//! }).await?;
//! let on_file = store.list_locks(&LockQuery::by_file("fh-42")).await?;
//! assert_eq!(on_file.len(), 1);
//! assert_eq!(on_file[0].server_epoch, store.epoch().await?);
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]
#![deny(unsafe_code)]

pub mod backend;
pub mod error;
pub mod io;
pub mod metrics;
pub mod model;
pub mod op;
pub mod state;
mod store;
#[doc(hidden)]
pub mod testing;
pub mod wal;

pub use backend::memory::MemoryLockStore;
#[cfg(feature = "postgres")]
pub use backend::postgres::{PostgresConfig, PostgresLockStore};
pub use error::{Error, Result};
pub use model::LockQuery;
pub use op::{Op, Outcome};
pub use store::LockStore;
