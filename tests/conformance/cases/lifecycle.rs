//! Cases about a store's life across opens: the epoch and the clean-shutdown
//! flag, closing (also a cancelled close), grace periods per share, reclaim
//! and the end of grace, and the state that survives restarts.

use super::super::Harness;
use super::support::{all, grid, ids};
use lockwal::error::{Entity, ReclaimRefusal};
use lockwal::model::*;
use lockwal::testing::sample;
use lockwal::{Error, LockStore, Op};
use std::sync::Arc;

/// An update keeps the epoch a lock was granted in (so an update during
/// grace is not a reclaim); grace runs per share: reclaimable, the clients
/// still to reclaim and the end of grace scoped to one share, the unscoped
/// calls covering every share; the NFSv4 clients that have not sent
/// RECLAIM_COMPLETE are a query, and marking one is one operation.
pub async fn update_keeps_the_epoch_and_grace_runs_per_share(mut h: impl Harness) {
    let mut store = h.open().await;
    let old = store.epoch().await.unwrap();
    for (id, share, client) in [("a1", "s1", "ca"), ("a2", "s2", "ca"), ("b1", "s1", "cb"), ("b2", "s2", "cb")] {
        store.put_lock(sample::byte_range(id, share, "f", "o", client)).await.unwrap();
    }
    let lease = sample::every_kind().into_iter().find(|l| &*l.id == "kind-lease-v1").unwrap();
    let mut lease = PersistedLock { id: "lease".into(), share: "s1".into(), client_id: "cb".into(), ..lease };
    store.put_lock(lease.clone()).await.unwrap();
    for id in ["ca", "cb"] {
        let mut record = sample::client(id);
        record.reclaim_complete = false;
        store.put_client(record).await.unwrap();
    }
    store = h.reopen(store).await;
    let now = store.epoch().await.unwrap();
    assert!(now > old);
    assert_eq!(ids(&store.reclaimable_on_share("s1", "ca").await.unwrap()), ["a1"]);
    assert_eq!(ids(&store.reclaimable("ca").await.unwrap()), ["a1", "a2"]);
    assert_eq!(store.clients_with_unreclaimed_locks(Some("s1")).await.unwrap(), ["ca", "cb"]);
    store.reclaim("a1", "ca").await.unwrap();
    assert_eq!(store.clients_with_unreclaimed_locks(Some("s1")).await.unwrap(), ["cb"]);
    assert_eq!(store.clients_with_unreclaimed_locks(None).await.unwrap(), ["ca", "cb"]);
    // A lease breaks during grace: updated, still from the old epoch.
    if let LockKind::Lease(l) = &mut lease.kind {
        l.state = LeaseState::READ;
        l.breaking = true;
        l.break_to = LeaseState::READ;
    }
    lease.server_epoch = now;
    store.update_lock(lease.clone()).await.unwrap();
    let got = store.get_lock("lease").await.unwrap();
    assert_eq!((got.kind.clone(), got.server_epoch), (lease.kind.clone(), old), "an update keeps the epoch");
    assert!(ids(&store.reclaimable_on_share("s1", "cb").await.unwrap()).contains(&"lease".to_owned()));
    let missing = PersistedLock { id: "missing".into(), ..lease.clone() };
    assert!(matches!(store.update_lock(missing).await, Err(Error::NotFound { entity: Entity::Lock, .. })));
    // The grace period of s1 ends; s2's goes on.
    assert_eq!(ids(&store.end_grace_on_share("s1").await.unwrap()), ["b1", "lease"]);
    assert_eq!(ids(&all(&store).await), ["a1", "a2", "b2"]);
    assert_eq!(store.clients_with_unreclaimed_locks(Some("s1")).await.unwrap(), Vec::<String>::new());
    assert_eq!(store.clients_with_unreclaimed_locks(Some("s2")).await.unwrap(), ["ca", "cb"]);
    // RECLAIM_COMPLETE.
    let pending = ClientQuery { kind: Some(ClientKind::Nfs4), reclaim_complete: Some(false) };
    let names = |records: Vec<ClientRecord>| records.into_iter().map(|r| r.client_id).collect::<Vec<_>>();
    assert_eq!(names(store.list_clients(&pending).await.unwrap()), ["ca", "cb"]);
    store.mark_reclaim_complete(ClientKind::Nfs4, "ca").await.unwrap();
    assert_eq!(names(store.list_clients(&pending).await.unwrap()), ["cb"]);
    assert!(matches!(
        store.mark_reclaim_complete(ClientKind::Nsm, "ca").await,
        Err(Error::NotFound { entity: Entity::Client(ClientKind::Nsm), .. })
    ));
    store = h.reopen(store).await;
    assert_eq!(ids(&all(&store).await), ["a1", "a2", "b2"]);
    assert!(store.get_client(ClientKind::Nfs4, "ca").await.unwrap().reclaim_complete);
    assert_eq!(ids(&store.end_grace().await.unwrap()), ["a1", "a2", "b2"]);
}

/// The epoch rises by one on every open; the clean flag tells whether the
/// previous incarnation called `close`.
pub async fn epoch_and_clean_shutdown(mut h: impl Harness) {
    let mut store = h.open().await;
    let first = store.epoch().await.unwrap();
    assert!(first >= 1);
    assert!(!store.previous_shutdown_was_clean().await.unwrap(), "a new store reports unclean");
    store = h.reopen(store).await;
    assert_eq!(store.epoch().await.unwrap(), first + 1);
    assert!(!store.previous_shutdown_was_clean().await.unwrap(), "dropped without close");
    store.close().await.unwrap();
    store = h.reopen(store).await;
    assert_eq!(store.epoch().await.unwrap(), first + 2);
    assert!(store.previous_shutdown_was_clean().await.unwrap(), "closed before reopen");
    store = h.reopen(store).await;
    assert_eq!(store.epoch().await.unwrap(), first + 3);
    assert!(!store.previous_shutdown_was_clean().await.unwrap(), "a clean close counts once");
}

/// After `close`, every call fails with `Closed`; closing again is fine.
pub async fn closed_store_refuses_calls(mut h: impl Harness) {
    let store = h.open().await;
    store.put_lock(sample::byte_range("L", "s", "f", "o", "c")).await.unwrap();
    store.close().await.unwrap();
    store.close().await.unwrap();
    assert!(matches!(store.get_lock("L").await, Err(Error::Closed)));
    assert!(matches!(store.put_lock(sample::byte_range("M", "s", "f", "o", "c")).await, Err(Error::Closed)));
    assert!(matches!(store.list_locks(&LockQuery::all()).await, Err(Error::Closed)));
    assert!(matches!(store.epoch().await, Err(Error::Closed)));
}

/// Regression (issue 15, item 2): once `close` has begun, no write is
/// accepted, even when that `close` is cancelled after its first poll (the
/// marker may already be durable); a store that wrote after the marker
/// would report a clean shutdown and the server would skip its grace
/// period. The next open after a crash reports an unclean shutdown, and a
/// second `close` of the same handle still records a clean one.
pub async fn a_cancelled_close_refuses_later_writes(mut h: impl Harness) {
    let store = h.open().await;
    store.put_lock(sample::byte_range("before", "s", "f", "o", "c")).await.unwrap();
    {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut close = store.close();
        let _ = std::future::Future::poll(close.as_mut(), &mut cx);
    } // dropped: a cancelled close
    let after = store.put_lock(sample::byte_range("after", "s", "f", "o", "c")).await;
    assert!(matches!(after, Err(Error::Closed)), "a write after close began: {after:?}");
    let txn = store.transaction(vec![Op::DeleteLock { id: "before".into() }]).await;
    assert!(matches!(txn, Err(Error::Closed)), "a transaction after close began: {txn:?}");
    let store = h.reopen(store).await;
    assert_eq!(ids(&all(&store).await), ["before"]);
    // A close run to completion after a cancelled one records a clean shutdown.
    {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let mut close = store.close();
        let _ = std::future::Future::poll(close.as_mut(), &mut cx);
    }
    store.close().await.unwrap();
    let store = h.reopen(store).await;
    assert!(store.previous_shutdown_was_clean().await.unwrap(), "closed after a cancelled close");
    assert_eq!(ids(&all(&store).await), ["before"]);
}

async fn restart_with_locks(h: &mut impl Harness) -> (Arc<dyn LockStore>, u64) {
    let store = h.open().await;
    for (id, client) in [("a1", "ca"), ("a2", "ca"), ("b1", "cb"), ("b2", "cb")] {
        store.put_lock(sample::byte_range(id, "s", &format!("f-{id}"), "o", client)).await.unwrap();
    }
    let old = store.epoch().await.unwrap();
    (h.reopen(store).await, old)
}

/// A lock can be reclaimed only by its own client and only when it was
/// granted in an earlier epoch; a refused reclaim changes nothing.
pub async fn reclaim_anti_steal(mut h: impl Harness) {
    let (store, old) = restart_with_locks(&mut h).await;
    let now = store.epoch().await.unwrap();
    assert!(now > old);
    assert_eq!(ids(&store.reclaimable("ca").await.unwrap()), ["a1", "a2"]);
    assert!(store.reclaimable("ca").await.unwrap().iter().all(|l| l.server_epoch == old));
    match store.reclaim("a1", "cb").await {
        Err(Error::ReclaimRefused { reason: ReclaimRefusal::WrongClient, .. }) => {}
        other => panic!("steal not refused: {other:?}"),
    }
    assert_eq!(store.get_lock("a1").await.unwrap().server_epoch, old);
    let reclaimed = store.reclaim("a1", "ca").await.unwrap();
    assert_eq!(reclaimed.server_epoch, now);
    assert_eq!(store.get_lock("a1").await.unwrap(), reclaimed);
    assert!(matches!(
        store.reclaim("a1", "ca").await,
        Err(Error::ReclaimRefused { reason: ReclaimRefusal::CurrentEpoch, .. })
    ));
    store.put_lock(sample::byte_range("new", "s", "f", "o", "ca")).await.unwrap();
    assert!(matches!(
        store.reclaim("new", "ca").await,
        Err(Error::ReclaimRefused { reason: ReclaimRefusal::CurrentEpoch, .. })
    ));
    assert_eq!(ids(&store.reclaimable("ca").await.unwrap()), ["a2"]);
}

/// Ending grace removes exactly the unreclaimed locks of earlier epochs,
/// returns them, and the result survives a restart.
pub async fn end_grace_purges_unreclaimed(mut h: impl Harness) {
    let (mut store, _) = restart_with_locks(&mut h).await;
    store.reclaim("a1", "ca").await.unwrap();
    store.reclaim("b2", "cb").await.unwrap();
    store.put_lock(sample::byte_range("fresh", "s", "f", "o", "cc")).await.unwrap();
    let removed = store.end_grace().await.unwrap();
    assert_eq!(ids(&removed), ["a2", "b1"]);
    assert_eq!(ids(&all(&store).await), ["a1", "b2", "fresh"]);
    assert!(store.end_grace().await.unwrap().is_empty());
    store = h.reopen(store).await;
    assert_eq!(ids(&all(&store).await), ["a1", "b2", "fresh"]);
    assert_eq!(ids(&store.reclaimable("ca").await.unwrap()), ["a1"]);
}

/// Everything written before a restart (closed or not) is there after it.
pub async fn state_survives_reopen(mut h: impl Harness) {
    let mut store = h.open().await;
    let epoch = store.epoch().await.unwrap();
    for lock in grid().into_iter().chain(sample::every_kind()) {
        store.put_lock(lock).await.unwrap();
    }
    store.put_client(sample::client("c1")).await.unwrap();
    let before = all(&store).await;
    assert!(before.iter().all(|l| l.server_epoch == epoch));
    store = h.reopen(store).await;
    assert_eq!(all(&store).await, before);
    store.close().await.unwrap();
    store = h.reopen(store).await;
    assert_eq!(all(&store).await, before);
    assert_eq!(store.list_clients(&ClientQuery::all()).await.unwrap(), vec![sample::client("c1")]);
}

/// A released lock never comes back, however it was released.
pub async fn released_lock_stays_released(mut h: impl Harness) {
    let mut store = h.open().await;
    for lock in grid() {
        store.put_lock(lock).await.unwrap();
    }
    store.delete_lock("g-0-0-0").await.unwrap();
    store.delete_locks_by_client("c2").await.unwrap();
    store.delete_locks_by_file("f1").await.unwrap();
    store.put_lock(sample::byte_range("g-0-0-0", "s", "moved", "o", "c9")).await.unwrap();
    store.delete_lock("g-0-0-0").await.unwrap();
    let want: Vec<String> = grid()
        .into_iter()
        .filter(|l| &*l.id != "g-0-0-0" && &*l.client_id != "c2" && &*l.file_id != "f1")
        .map(|l| l.id.to_string())
        .collect();
    for _ in 0..2 {
        store = h.reopen(store).await;
        assert_eq!(ids(&all(&store).await), want);
        assert!(store.list_locks(&LockQuery::by_file("moved")).await.unwrap().is_empty());
    }
}
