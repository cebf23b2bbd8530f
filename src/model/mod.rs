//! The lock model: plain data that a file server persists.
//!
//! Everything here is pure data with `serde` support. The kind of a lock is an
//! enum ([`LockKind`]) so that impossible combinations (a lease key on a byte
//! range lock, say) cannot be represented. [`validate`] checks the limits the
//! store enforces before anything reaches storage.

mod client;
pub mod conflict;
mod handle;
mod lock;
mod query;
mod record;
mod time;
pub mod validate;

pub use client::{ClientDetails, ClientKind, ClientQuery, ClientRecord, ClientSelector, Nfs4Details, NsmDetails};
pub use conflict::{Conflicts, Verdict};
pub use handle::{DeletePending, DurableHandle, DurableVersion, FileId, Guid, HandleLease, HandleQuery};
pub use lock::{
    ByteRange, Delegation, DelegationType, Lease, LeaseKey, LeaseState, LockKind, LockType, PersistedLock, RangeFlavor,
    ShareAccess, ShareDeny, ShareReservation,
};
pub use query::{KindFilter, LockQuery};
pub use record::{Record, RecordScan};
pub use time::Timestamp;
