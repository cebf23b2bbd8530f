//! One file per peer; [`all`] lists them in the order the docs show them.

pub mod checked;
pub mod fjall;
pub mod memory;
pub mod postgres;
pub mod raw;
pub mod redb;
pub mod sqlite;
pub mod wal;

use crate::engine::{Blocking, Peer};
use std::sync::Arc;

/// Every peer, in table order: the floor first, then lockwal, then the
/// stores a user would pick instead. lockwal's PostgreSQL backend is there
/// only when `LOCKWAL_TEST_PG_URL` names a server (see [`postgres`]).
pub fn all() -> Vec<Arc<dyn Peer>> {
    let postgres = postgres::Postgres::from_env().map(|p| Arc::new(p) as Arc<dyn Peer>);
    let peers: Vec<Arc<dyn Peer>> = vec![
        Arc::new(raw::Raw::Growing),
        Arc::new(raw::Raw::Prealloc),
        Arc::new(raw::Raw::Sparse),
        Arc::new(raw::Raw::GroupCommit),
        Arc::new(raw::Raw::Log),
        Arc::new(wal::Wal::Snapshot),
        Arc::new(wal::Wal::LogOnly),
        Arc::new(wal::Wal::Tail),
        Arc::new(memory::Memory),
    ];
    let others: Vec<Arc<dyn Peer>> =
        vec![Arc::new(Blocking(sqlite::Sqlite)), Arc::new(Blocking(redb::Redb)), Arc::new(Blocking(fjall::Fjall))];
    peers.into_iter().chain(postgres).chain(others).collect()
}

/// The peer called `name`.
pub fn by_name(name: &str) -> Option<Arc<dyn Peer>> {
    all().into_iter().find(|p| p.name() == name)
}
