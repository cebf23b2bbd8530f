//! The backends that implement [`LockStore`](crate::LockStore).

pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
