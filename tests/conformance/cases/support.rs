//! Helpers shared by the conformance cases: lock ids of a listing, a lock
//! stamped with an epoch, the whole lock table, and a grid of byte-range
//! locks over several files, clients and shares.

use lockwal::LockStore;
use lockwal::model::*;
use lockwal::testing::sample;
use std::sync::Arc;

pub(super) fn ids(locks: &[PersistedLock]) -> Vec<String> {
    locks.iter().map(|l| l.id.to_string()).collect()
}

pub(super) fn stamped(mut lock: PersistedLock, epoch: u64) -> PersistedLock {
    lock.server_epoch = epoch;
    lock
}

pub(super) async fn all(store: &Arc<dyn LockStore>) -> Vec<PersistedLock> {
    store.list_locks(&LockQuery::all()).await.expect("list all")
}

pub(super) fn grid() -> Vec<PersistedLock> {
    let mut locks = Vec::new();
    for f in 0..3 {
        for c in 0..3 {
            for n in 0..2 {
                let id = format!("g-{f}-{c}-{n}");
                locks.push(sample::byte_range(
                    &id,
                    &format!("s{}", (f + c) % 2),
                    &format!("f{f}"),
                    &format!("o{n}"),
                    &format!("c{c}"),
                ));
            }
        }
    }
    locks
}
