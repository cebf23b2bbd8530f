//! The cases of the conformance suite. Each begins with what it guards.

use super::Harness;
use lockwal::error::{Entity, ReclaimRefusal};
use lockwal::model::*;
use lockwal::testing::{model::Model, sample};
use lockwal::{Error, LockStore, Op, Outcome};
use std::collections::BTreeSet;
use std::sync::Arc;

fn ids(locks: &[PersistedLock]) -> Vec<String> {
    locks.iter().map(|l| l.id.to_string()).collect()
}

fn stamped(mut lock: PersistedLock, epoch: u64) -> PersistedLock {
    lock.server_epoch = epoch;
    lock
}

async fn all(store: &Arc<dyn LockStore>) -> Vec<PersistedLock> {
    store.list_locks(&LockQuery::all()).await.expect("list all")
}

/// Every field of every lock kind survives put/get/list, and `server_epoch`
/// is stamped with the store's epoch whatever the caller passed.
pub async fn round_trip_every_kind(mut h: impl Harness) {
    let store = h.open().await;
    let epoch = store.epoch().await.unwrap();
    for mut lock in sample::every_kind() {
        lock.server_epoch = 999_999;
        store.put_lock(lock.clone()).await.unwrap();
        assert_eq!(store.get_lock(&lock.id).await.unwrap(), stamped(lock, epoch));
    }
    let expected: Vec<_> = sample::every_kind().into_iter().map(|l| stamped(l, epoch)).collect();
    let mut sorted = expected.clone();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(all(&store).await, sorted);
    for kind in [KindFilter::ByteRange, KindFilter::Share, KindFilter::Lease, KindFilter::Delegation] {
        let got = store.list_locks(&LockQuery::all().with_kind(kind)).await.unwrap();
        let want: Vec<_> = sorted.iter().filter(|l| l.kind.filter() == kind).cloned().collect();
        assert!(!want.is_empty());
        assert_eq!(got, want, "kind filter {kind:?}");
    }
    assert_eq!(store.count().await.unwrap(), sorted.len() as u64);
}

/// Port fidelity: one record of every shape a file server persists
/// (`sample::every_kind`, `sample::every_client`) keeps every field after a
/// put, after a restart from the log, and after a restart from a snapshot.
pub async fn port_fidelity(mut h: impl Harness) {
    let mut store = h.open().await;
    let epoch = store.epoch().await.unwrap();
    let mut locks: Vec<PersistedLock> = sample::every_kind().into_iter().map(|l| stamped(l, epoch)).collect();
    for lock in &locks {
        store.put_lock(lock.clone()).await.unwrap();
        assert_eq!(&store.get_lock(&lock.id).await.unwrap(), lock, "after the put");
    }
    let mut clients: Vec<ClientRecord> = ["x", "y"].iter().flat_map(|id| sample::every_client(id)).collect();
    for record in &clients {
        store.put_client(record.clone()).await.unwrap();
        assert_eq!(&store.get_client(record.kind(), &record.client_id).await.unwrap(), record, "after the put");
    }
    locks.sort_by(|a, b| a.id.cmp(&b.id));
    clients.sort_by(|a, b| (a.kind(), &a.client_id).cmp(&(b.kind(), &b.client_id)));
    assert_eq!(all(&store).await, locks);
    assert_eq!(store.list_clients(&ClientQuery::all()).await.unwrap(), clients);
    store = h.reopen(store).await;
    assert_eq!(all(&store).await, locks, "after a restart from the log");
    assert_eq!(store.list_clients(&ClientQuery::all()).await.unwrap(), clients, "after a restart from the log");
    store = h.reopen_from_snapshot(store).await;
    assert_eq!(all(&store).await, locks, "after a restart from a snapshot");
    assert_eq!(store.list_clients(&ClientQuery::all()).await.unwrap(), clients, "after a restart from a snapshot");
    for record in &clients {
        assert_eq!(&store.get_client(record.kind(), &record.client_id).await.unwrap(), record);
    }
}

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

/// NSM, NFSv4 and SMB records live in separate namespaces (one id in each
/// is three records); bulk deletes of a kind, by monitored name and by id
/// (idempotent) remove exactly what they name and return the count.
pub async fn client_namespaces_and_bulk_client_deletes(mut h: impl Harness) {
    let mut store = h.open().await;
    for id in ["x", "y", "z"] {
        for record in sample::every_client(id) {
            store.put_client(record).await.unwrap();
        }
    }
    assert_eq!(store.list_clients(&ClientQuery::all()).await.unwrap().len(), 9);
    for kind in ClientKind::ALL {
        let got = store.get_client(kind, "x").await.unwrap();
        assert_eq!(got.kind(), kind);
        let of_kind = store.list_clients(&ClientQuery::by_kind(kind)).await.unwrap();
        assert_eq!(of_kind.iter().map(|r| r.client_id.as_str()).collect::<Vec<_>>(), ["x", "y", "z"]);
    }
    store.delete_client(ClientKind::Nsm, "x").await.unwrap();
    assert!(matches!(
        store.get_client(ClientKind::Nsm, "x").await,
        Err(Error::NotFound { entity: Entity::Client(ClientKind::Nsm), .. })
    ));
    assert!(store.get_client(ClientKind::Nfs4, "x").await.is_ok(), "another namespace");
    // SM_NOTIFY from monitored.y: its registrations go, nothing else.
    assert_eq!(store.delete_clients(ClientSelector::named(ClientKind::Nsm, "monitored.y")).await.unwrap(), 1);
    assert_eq!(store.delete_clients(ClientSelector::named(ClientKind::Nsm, "monitored.y")).await.unwrap(), 0);
    assert_eq!(store.delete_clients(ClientSelector::id(ClientKind::Nfs4, "x")).await.unwrap(), 1);
    assert_eq!(store.delete_clients(ClientSelector::id(ClientKind::Nfs4, "x")).await.unwrap(), 0, "idempotent");
    assert_eq!(store.delete_clients(ClientSelector::all(ClientKind::Smb)).await.unwrap(), 3);
    store = h.reopen(store).await;
    let left: Vec<(ClientKind, String)> =
        store.list_clients(&ClientQuery::all()).await.unwrap().into_iter().map(|r| (r.kind(), r.client_id)).collect();
    let want = [(ClientKind::Nsm, "z"), (ClientKind::Nfs4, "y"), (ClientKind::Nfs4, "z")];
    assert_eq!(left, want.map(|(k, id)| (k, id.to_owned())));
    assert_eq!(store.delete_clients(ClientSelector { kind: None, client_id: None, name: None }).await.unwrap(), 3);
    assert!(store.list_clients(&ClientQuery::all()).await.unwrap().is_empty());
}

/// A lease is found by file and lease key (SMB lease reclaim), and a
/// query can leave leases out.
pub async fn lease_lookup_and_kind_exclusion(mut h: impl Harness) {
    let store = h.open().await;
    let epoch = store.epoch().await.unwrap();
    let locks: Vec<PersistedLock> = sample::every_kind().into_iter().map(|l| stamped(l, epoch)).collect();
    for lock in &locks {
        store.put_lock(lock.clone()).await.unwrap();
    }
    let v2 = locks.iter().find(|l| &*l.id == "kind-lease-v2").unwrap();
    let LockKind::Lease(lease) = &v2.kind else { unreachable!() };
    let found = store.list_locks(&LockQuery::lease(v2.file_id.to_string(), lease.key)).await.unwrap();
    assert_eq!(found, vec![v2.clone()]);
    assert!(store.list_locks(&LockQuery::lease("other file", lease.key)).await.unwrap().is_empty());
    let not_leases = store.list_locks(&LockQuery::all().without_kind(KindFilter::Lease)).await.unwrap();
    let mut want: Vec<PersistedLock> = locks.iter().filter(|l| l.kind.filter() != KindFilter::Lease).cloned().collect();
    want.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(not_leases, want);
    assert!(want.len() < locks.len());
}

/// Offsets and lengths up to 2^64-1 are stored exactly (a signed 64-bit
/// column rejected them in the implementation this replaces).
pub async fn u64_max_ranges_round_trip(mut h: impl Harness) {
    let mut store = h.open().await;
    // The last two: NFSv4's all-ones length ("to end of file") at a
    // non-zero offset is valid; a range whose last byte would be past
    // 2^64-1 is not.
    let shapes = [
        (u64::MAX, 0, false),
        (0, u64::MAX, false),
        (u64::MAX, 1, false),
        (u64::MAX, 0, true),
        (2, u64::MAX, false),
        (3, u64::MAX - 1, false),
    ];
    for (i, &(offset, length, zero_byte)) in shapes.iter().enumerate() {
        let mut lock = sample::byte_range(&format!("max-{i}"), "s", "f", "o", "c");
        lock.kind = LockKind::ByteRange(ByteRange {
            lock_type: LockType::Exclusive,
            offset,
            length,
            zero_byte,
            flavor: RangeFlavor::Posix,
        });
        let result = store.put_lock(lock.clone()).await;
        if offset == 3 && length == u64::MAX - 1 {
            assert!(matches!(result, Err(Error::InvalidInput { field: "length", .. })), "{result:?}");
        } else {
            result.unwrap();
        }
    }
    store = h.reopen(store).await;
    let got = all(&store).await;
    assert_eq!(got.len(), 5);
    for (i, lock) in got.iter().enumerate() {
        let (offset, length, zero_byte) = shapes[i];
        assert_eq!(
            lock.kind,
            LockKind::ByteRange(ByteRange {
                lock_type: LockType::Exclusive,
                offset,
                length,
                zero_byte,
                flavor: RangeFlavor::Posix
            })
        );
    }
}

/// An upsert that changes file, owner, client and share moves the lock in
/// every index: the old keys no longer find it and bulk deletes through the
/// old keys do not remove it.
pub async fn upsert_moves_every_index(mut h: impl Harness) {
    let store = h.open().await;
    store.put_lock(sample::byte_range("L", "s1", "f1", "o1", "c1")).await.unwrap();
    store.put_lock(sample::byte_range("other", "s1", "f1", "o1", "c1")).await.unwrap();
    store.put_lock(sample::byte_range("L", "s2", "f2", "o2", "c2")).await.unwrap();
    for q in
        [LockQuery::by_file("f1"), LockQuery::by_owner("o1"), LockQuery::by_client("c1"), LockQuery::by_share("s1")]
    {
        assert_eq!(ids(&store.list_locks(&q).await.unwrap()), ["other"], "{q:?}");
    }
    for q in
        [LockQuery::by_file("f2"), LockQuery::by_owner("o2"), LockQuery::by_client("c2"), LockQuery::by_share("s2")]
    {
        assert_eq!(ids(&store.list_locks(&q).await.unwrap()), ["L"], "{q:?}");
    }
    assert_eq!(store.delete_locks_by_file("f1").await.unwrap(), 1);
    assert_eq!(&*store.get_lock("L").await.unwrap().file_id, "f2");
    assert_eq!(store.delete_locks_by_client("c1").await.unwrap(), 0);
    assert_eq!(store.delete_locks_by_client("c2").await.unwrap(), 1);
    assert_eq!(store.count().await.unwrap(), 0);
}

fn grid() -> Vec<PersistedLock> {
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

/// Bulk deletes by client and by file remove exactly the matching locks,
/// report how many, and answer 0 (not an error) when nothing matches.
pub async fn bulk_deletes_remove_exactly_the_right_locks(mut h: impl Harness) {
    let store = h.open().await;
    for lock in grid() {
        store.put_lock(lock).await.unwrap();
    }
    assert_eq!(store.delete_locks_by_client("c1").await.unwrap(), 6);
    let left: BTreeSet<String> = ids(&all(&store).await).into_iter().collect();
    let want: BTreeSet<String> =
        grid().into_iter().filter(|l| &*l.client_id != "c1").map(|l| l.id.to_string()).collect();
    assert_eq!(left, want);
    assert_eq!(store.delete_locks_by_file("f2").await.unwrap(), 4);
    let want: Vec<String> =
        grid().into_iter().filter(|l| &*l.client_id != "c1" && &*l.file_id != "f2").map(|l| l.id.to_string()).collect();
    assert_eq!(ids(&all(&store).await), want);
    assert_eq!(store.delete_locks_by_file("f2").await.unwrap(), 0);
    assert_eq!(store.delete_locks_by_client("nobody").await.unwrap(), 0);
    assert_eq!(store.count().await.unwrap(), 8);
}

/// Every combination of the five filters returns exactly the matching locks,
/// sorted by id.
pub async fn query_filters_and_ordering(mut h: impl Harness) {
    let store = h.open().await;
    let mut locks = grid();
    locks.extend(sample::every_kind());
    // Insert in reverse so that insertion order is not id order.
    for lock in locks.iter().rev() {
        store.put_lock(lock.clone()).await.unwrap();
    }
    let epoch = store.epoch().await.unwrap();
    let values = |f: fn(&PersistedLock) -> String| -> Vec<Option<String>> {
        let mut v: Vec<Option<String>> =
            locks.iter().map(|l| Some(f(l))).collect::<BTreeSet<_>>().into_iter().collect();
        v.push(None);
        v.push(Some("absent".into()));
        v
    };
    let files = values(|l| l.file_id.to_string());
    let owners = values(|l| l.owner_id.to_string());
    let clients = values(|l| l.client_id.to_string());
    let shares = values(|l| l.share.to_string());
    let kinds = [None, Some(KindFilter::ByteRange), Some(KindFilter::Lease)];
    let mut checked = 0;
    for file_id in &files {
        for owner_id in &owners {
            for client_id in &clients {
                for share in &shares {
                    for kind in kinds {
                        let q = LockQuery {
                            file_id: file_id.clone(),
                            owner_id: owner_id.clone(),
                            client_id: client_id.clone(),
                            share: share.clone(),
                            kind,
                            ..LockQuery::default()
                        };
                        let mut want: Vec<PersistedLock> =
                            locks.iter().filter(|l| q.matches(l)).cloned().map(|l| stamped(l, epoch)).collect();
                        want.sort_by(|a, b| a.id.cmp(&b.id));
                        assert_eq!(store.list_locks(&q).await.unwrap(), want, "{q:?}");
                        checked += 1;
                    }
                }
            }
        }
    }
    assert!(checked > 1000, "only {checked} combinations");
}

/// Missing locks and clients give a typed not-found error naming the id.
pub async fn not_found_errors(mut h: impl Harness) {
    let store = h.open().await;
    let is_nf = |r: Result<(), Error>, entity: Entity| match r {
        Err(Error::NotFound { entity: e, id }) => e == entity && id == "ghost",
        _ => false,
    };
    assert!(is_nf(store.get_lock("ghost").await.map(drop), Entity::Lock));
    assert!(is_nf(store.delete_lock("ghost").await, Entity::Lock));
    assert!(is_nf(store.get_client(ClientKind::Nfs4, "ghost").await.map(drop), Entity::Client(ClientKind::Nfs4)));
    assert!(is_nf(store.delete_client(ClientKind::Nfs4, "ghost").await, Entity::Client(ClientKind::Nfs4)));
    assert!(is_nf(store.reclaim("ghost", "c").await.map(drop), Entity::Lock));
    store.put_lock(sample::byte_range("L", "s", "f", "o", "c")).await.unwrap();
    store.delete_lock("L").await.unwrap();
    assert!(matches!(store.delete_lock("L").await, Err(Error::NotFound { .. })));
}

/// Bad input is refused with the field named, and changes nothing.
pub async fn invalid_input_changes_nothing(mut h: impl Harness) {
    let store = h.open().await;
    store.put_lock(sample::byte_range("keep", "s", "f", "o", "c")).await.unwrap();
    store.put_client(sample::client("c")).await.unwrap();
    let before = all(&store).await;
    let mut cases: Vec<(Vec<Op>, &str)> = Vec::new();
    let with = |f: fn(&mut PersistedLock)| {
        let mut l = sample::byte_range("new", "s", "f", "o", "c");
        f(&mut l);
        vec![Op::PutLock(l)]
    };
    cases.push((with(|l| l.id = "".into()), "id"));
    cases.push((with(|l| l.share = "".into()), "share"));
    cases.push((with(|l| l.file_id = "".into()), "file_id"));
    cases.push((with(|l| l.client_id = "x".repeat(1025).into()), "client_id"));
    cases.push((with(|l| l.owner_id = "x".repeat(5000).into()), "owner_id"));
    cases.push((
        with(|l| {
            l.kind = LockKind::ByteRange(ByteRange {
                lock_type: LockType::Shared,
                offset: u64::MAX,
                length: 2,
                zero_byte: false,
                flavor: RangeFlavor::Posix,
            })
        }),
        "length",
    ));
    cases.push((vec![Op::DeleteLock { id: String::new() }], "id"));
    cases.push((vec![Op::DeleteLocksByClient { client_id: String::new() }], "client_id"));
    let mut bad_client = sample::client("c");
    bad_client.verifier = vec![0; 4096];
    cases.push((vec![Op::PutClient(bad_client)], "verifier"));
    cases.push((vec![Op::DeleteLock { id: "keep".into() }; 5000], "ops"));
    let mut valid_then_bad = vec![Op::DeleteLock { id: "keep".into() }];
    valid_then_bad.extend(with(|l| l.id = "".into()));
    cases.push((valid_then_bad, "id"));
    for (ops, field) in cases {
        match store.transaction(ops).await {
            Err(Error::InvalidInput { field: f, reason }) => {
                assert_eq!(f, field);
                assert!(!reason.is_empty());
            }
            other => panic!("expected InvalidInput({field}), got {other:?}"),
        }
    }
    assert_eq!(all(&store).await, before);
    assert_eq!(store.list_clients(&ClientQuery::all()).await.unwrap(), vec![sample::client("c")]);
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

/// A transaction with one failing operation applies none of its operations.
pub async fn transaction_is_all_or_nothing(mut h: impl Harness) {
    let store = h.open().await;
    store.put_lock(sample::byte_range("keep", "s", "f", "o", "c")).await.unwrap();
    store.put_client(sample::client("c")).await.unwrap();
    let before = all(&store).await;
    let failing = [
        vec![
            Op::PutLock(sample::byte_range("x1", "s", "f", "o", "c")),
            Op::DeleteLock { id: "keep".into() },
            Op::DeleteClient { kind: ClientKind::Nfs4, client_id: "c".into() },
            Op::DeleteLock { id: "ghost".into() },
        ],
        vec![
            Op::DeleteLocksByFile { file_id: "f".into() },
            Op::PutClient(sample::client("d")),
            Op::Reclaim { id: "keep".into(), client_id: "c".into() },
        ],
        vec![Op::EndGrace { share: None }, Op::DeleteLock { id: "keep".into() }, Op::DeleteLock { id: "keep".into() }],
    ];
    for ops in failing {
        assert!(store.transaction(ops).await.is_err());
        assert_eq!(all(&store).await, before);
        assert_eq!(store.list_clients(&ClientQuery::all()).await.unwrap(), vec![sample::client("c")]);
    }
    let outcomes = store
        .transaction(vec![
            Op::PutLock(sample::byte_range("x1", "s", "f", "o", "c")),
            Op::DeleteLocksByFile { file_id: "f".into() },
            Op::PutLock(sample::byte_range("x2", "s", "g", "o", "c")),
            Op::DeleteClient { kind: ClientKind::Nfs4, client_id: "c".into() },
        ])
        .await
        .unwrap();
    assert_eq!(outcomes, vec![Outcome::Done, Outcome::Count(2), Outcome::Done, Outcome::Done]);
    assert_eq!(ids(&all(&store).await), ["x2"]);
    assert!(store.list_clients(&ClientQuery::all()).await.unwrap().is_empty());
    assert_eq!(store.transaction(Vec::new()).await.unwrap(), Vec::new());
}

/// Unlocking the middle of a range (a POSIX split) releases one lock and
/// grants its two fragments in one atomic step.
pub async fn posix_split_in_one_transaction(mut h: impl Harness) {
    let mut store = h.open().await;
    let mut whole = sample::byte_range("r", "s", "f", "o", "c");
    whole.kind = LockKind::ByteRange(ByteRange {
        lock_type: LockType::Exclusive,
        offset: 0,
        length: 0,
        zero_byte: false,
        flavor: RangeFlavor::Posix,
    });
    store.put_lock(whole).await.unwrap();
    let frag = |id: &str, offset, length| {
        let mut l = sample::byte_range(id, "s", "f", "o", "c");
        l.kind = LockKind::ByteRange(ByteRange {
            lock_type: LockType::Exclusive,
            offset,
            length,
            zero_byte: false,
            flavor: RangeFlavor::Posix,
        });
        l
    };
    store
        .transaction(vec![
            Op::DeleteLock { id: "r".into() },
            Op::PutLock(frag("r-lo", 0, 100)),
            Op::PutLock(frag("r-hi", 200, 0)),
        ])
        .await
        .unwrap();
    store = h.reopen(store).await;
    let got = store.list_locks(&LockQuery::by_file("f")).await.unwrap();
    assert_eq!(ids(&got), ["r-hi", "r-lo"]);
    assert!(matches!(got[0].kind, LockKind::ByteRange(ByteRange { offset: 200, length: 0, .. })));
}

/// Client records: put (upsert), get, list sorted, delete, every field kept.
pub async fn client_records_crud(mut h: impl Harness) {
    let mut store = h.open().await;
    for id in ["c2", "c1", "c3"] {
        store.put_client(sample::client(id)).await.unwrap();
    }
    let mut changed = sample::client("c2");
    changed.details = ClientDetails::Nfs4(Nfs4Details { short_id: 99 });
    changed.reclaim_complete = false;
    changed.verifier = vec![9; 16];
    store.put_client(changed.clone()).await.unwrap();
    store.delete_client(ClientKind::Nfs4, "c3").await.unwrap();
    store = h.reopen(store).await;
    assert_eq!(store.get_client(ClientKind::Nfs4, "c2").await.unwrap(), changed);
    assert_eq!(store.list_clients(&ClientQuery::all()).await.unwrap(), vec![sample::client("c1"), changed]);
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

/// Values returned by reads are copies: changing them changes nothing stored.
pub async fn reads_return_copies(mut h: impl Harness) {
    let store = h.open().await;
    store.put_lock(sample::byte_range("L", "s", "f", "o", "c")).await.unwrap();
    let mut got = store.get_lock("L").await.unwrap();
    let original = got.clone();
    got.file_id = "changed".into();
    got.kind = LockKind::Share(ShareReservation { access: ShareAccess::Read, deny: ShareDeny::All });
    let mut listed = all(&store).await;
    listed[0].owner_id = "changed".into();
    assert_eq!(store.get_lock("L").await.unwrap(), original);
    assert_eq!(all(&store).await, vec![original]);
}

/// Many tasks writing at once end in the state a sequential run predicts:
/// each task owns its ids, so the final state does not depend on scheduling.
pub async fn concurrent_writers_match_sequential_model(mut h: impl Harness) {
    const TASKS: usize = 16;
    const OPS: usize = 40;
    let store = h.open().await;
    let script = |t: usize| -> Vec<Vec<Op>> {
        (0..OPS)
            .map(|i| {
                let id = format!("t{t}-{}", i % 7);
                let lock = sample::byte_range(&id, "s", &format!("f{}", i % 5), &format!("o{t}"), &format!("c{t}"));
                match i % 6 {
                    0..=2 => vec![Op::PutLock(lock)],
                    3 => vec![Op::DeleteLocksByClient { client_id: format!("c{t}-none") }],
                    4 => vec![
                        Op::PutLock(lock.clone()),
                        Op::PutLock(sample::byte_range(&format!("{id}x"), "s", "f", "o", &format!("c{t}"))),
                    ],
                    _ => vec![Op::DeleteLock { id: format!("t{t}-{}", (i + 3) % 7) }],
                }
            })
            .collect()
    };
    let mut model = Model::new(store.epoch().await.unwrap());
    for t in 0..TASKS {
        for ops in script(t) {
            let _ = model.apply(&ops);
        }
    }
    let handles: Vec<_> = (0..TASKS)
        .map(|t| {
            let store = Arc::clone(&store);
            let ops = script(t);
            tokio::spawn(async move {
                for txn in ops {
                    let _ = store.transaction(txn).await;
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.unwrap();
    }
    let want = model.list(&LockQuery::all());
    assert!(want.len() > TASKS * 3);
    assert_eq!(all(&store).await, want);
}

/// Random operation sequences with restarts match the naive model.
pub async fn random_operations_match_model(h: impl Harness) {
    super::props::check_random_sequences(h, 24, 60).await;
}
