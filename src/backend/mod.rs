//! The backends that implement [`LockStore`](crate::LockStore).

pub mod memory;
