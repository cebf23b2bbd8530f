//! Cases about reading everything back: `for_each_lock`, the unsorted
//! hand-over a server's lock manager restores its tables from.

use super::super::Harness;
use super::support::{all, grid};
use lockwal::LockStore;
use lockwal::model::*;
use lockwal::testing::sample;
use std::sync::Arc;

async fn visited(store: &Arc<dyn LockStore>) -> (u64, Vec<PersistedLock>) {
    let mut locks = Vec::new();
    let count = store.for_each_lock(&mut |lock| locks.push(lock)).await.expect("for_each_lock");
    locks.sort_by(|a, b| a.id.cmp(&b.id));
    (count, locks)
}

/// `for_each_lock` hands over every lock exactly once, every field intact,
/// and counts what it handed over: on an empty store, after puts and
/// deletes (holes in the backend's storage), after a restart and after a
/// restart from a snapshot.
pub async fn for_each_lock_hands_over_every_lock(mut h: impl Harness) {
    let mut store = h.open().await;
    assert_eq!(visited(&store).await, (0, Vec::new()), "an empty store hands over nothing");
    let mut locks = grid();
    locks.extend(sample::every_kind());
    for lock in &locks {
        store.put_lock(lock.clone()).await.unwrap();
    }
    for lock in locks.iter().step_by(3) {
        store.delete_lock(&lock.id).await.unwrap();
    }
    let want = all(&store).await;
    assert_eq!(want.len(), locks.len() - locks.len().div_ceil(3));
    assert_eq!(visited(&store).await, (want.len() as u64, want.clone()));
    store = h.reopen(store).await;
    assert_eq!(visited(&store).await, (want.len() as u64, want.clone()), "after a restart");
    store = h.reopen_from_snapshot(store).await;
    assert_eq!(visited(&store).await, (want.len() as u64, want), "after a restart from a snapshot");
}
