//! Cases about what is stored and found: every field of every lock and
//! client kind survives a round trip, the client namespaces, the indexes
//! behind lookups, bulk deletes and query filters, typed not-found errors,
//! refused input, and reads that return copies.

use super::super::Harness;
use super::support::{all, grid, ids, stamped};
use lockwal::error::Entity;
use lockwal::model::*;
use lockwal::testing::sample;
use lockwal::{Error, Op};
use std::collections::BTreeSet;

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
