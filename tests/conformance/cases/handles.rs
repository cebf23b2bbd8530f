//! Cases about SMB durable handles: every field round-trips (live, after a
//! restart, from a snapshot), each lookup and list finds exactly the right
//! handles, unique keys are enforced, a consume gives a handle to exactly one
//! of many racing reconnects, expiry is exact at its boundary instant, and
//! handle operations are atomic with lock operations.

use super::super::Harness;
use super::support::ids;
use lockwal::error::Entity;
use lockwal::model::*;
use lockwal::testing::sample;
use lockwal::{Error, LockStore, Op, Outcome};
use std::sync::Arc;

async fn every_handle(store: &Arc<dyn LockStore>) -> Vec<DurableHandle> {
    store.list_handles(&HandleQuery::All).await.expect("list handles")
}

fn handle_ids(handles: &[DurableHandle]) -> Vec<String> {
    handles.iter().map(|h| h.id.clone()).collect()
}

/// A v1 handle: no create GUID, no app instance, no lease, no pending
/// delete; the other fields still non-default.
fn v1(n: u32) -> DurableHandle {
    DurableHandle {
        create_guid: None,
        app_instance_id: None,
        lease: None,
        delete_pending: None,
        persistent: false,
        version: DurableVersion::V1,
        ..sample::handle(n)
    }
}

fn assert_not_found(result: Result<DurableHandle, Error>) {
    match result {
        Err(Error::NotFound { entity: Entity::Handle, .. }) => {}
        other => panic!("expected a durable handle not found, got {other:?}"),
    }
}

/// Every field of a handle (all non-default, and a v1 handle with the
/// optional fields absent) survives put and every lookup, a restart from
/// the log and a restart from a snapshot.
pub async fn handles_round_trip_every_field(mut h: impl Harness) {
    let mut store = h.open().await;
    let handles: Vec<DurableHandle> = (0..4).map(sample::handle).chain([v1(10), v1(11)]).collect();
    for handle in &handles {
        store.put_handle(handle.clone()).await.unwrap();
        assert_eq!(&store.get_handle(&handle.id).await.unwrap(), handle);
        assert_eq!(&store.get_handle_by_file_id(&handle.file_id).await.unwrap(), handle);
        if let Some(guid) = handle.create_guid {
            assert_eq!(&store.get_handle_by_create_guid(&guid).await.unwrap(), handle);
        }
    }
    let mut sorted = handles.clone();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(every_handle(&store).await, sorted);
    store = h.reopen(store).await;
    assert_eq!(every_handle(&store).await, sorted, "after a restart");
    store = h.reopen_from_snapshot(store).await;
    assert_eq!(every_handle(&store).await, sorted, "after a restart from a snapshot");
    for handle in &handles {
        assert_eq!(&store.get_handle_by_file_id(&handle.file_id).await.unwrap(), handle, "index after restart");
    }
}

/// The lists by app instance, file handle and share return exactly the
/// handles with that key, sorted by id, and follow a handle whose keys an
/// upsert changed.
pub async fn handle_lists_follow_every_index(mut h: impl Harness) {
    let store = h.open().await;
    let handles: Vec<DurableHandle> = (0..12)
        .map(|n| DurableHandle {
            share: format!("share-{}", n % 3),
            app_instance_id: (n % 4 != 0).then_some([n as u8 % 2; 16]),
            ..sample::handle(n)
        })
        .collect();
    for handle in &handles {
        store.put_handle(handle.clone()).await.unwrap();
    }
    let expect = |pred: &dyn Fn(&DurableHandle) -> bool| {
        let mut ids: Vec<String> = handles.iter().filter(|h| pred(h)).map(|h| h.id.clone()).collect();
        ids.sort();
        ids
    };
    for app in [[0u8; 16], [1; 16], [2; 16]] {
        let got = store.list_handles(&HandleQuery::AppInstance(app)).await.unwrap();
        assert_eq!(handle_ids(&got), expect(&|h| h.app_instance_id == Some(app)), "app instance {app:?}");
    }
    for fh in ["fh-0", "fh-3", "fh-none"] {
        let got = store.list_handles(&HandleQuery::FileHandle(fh.as_bytes().to_vec())).await.unwrap();
        assert_eq!(handle_ids(&got), expect(&|h| h.file_handle == fh.as_bytes()), "file handle {fh}");
    }
    for share in ["share-0", "share-2", "nope"] {
        let got = store.list_handles(&HandleQuery::Share(share.into())).await.unwrap();
        assert_eq!(handle_ids(&got), expect(&|h| h.share == share), "share {share}");
    }
    // Move one handle to other keys: every index follows it.
    let moved = DurableHandle {
        share: "elsewhere".into(),
        app_instance_id: Some([9; 16]),
        file_handle: b"fh-moved".to_vec(),
        file_id: [0xEE; 16],
        create_guid: Some([0xEF; 16]),
        ..handles[1].clone()
    };
    store.put_handle(moved.clone()).await.unwrap();
    assert_eq!(store.list_handles(&HandleQuery::Share("elsewhere".into())).await.unwrap(), vec![moved.clone()]);
    assert_eq!(store.list_handles(&HandleQuery::AppInstance([9; 16])).await.unwrap(), vec![moved.clone()]);
    assert_eq!(store.list_handles(&HandleQuery::FileHandle(b"fh-moved".to_vec())).await.unwrap(), vec![moved.clone()]);
    assert_eq!(store.get_handle_by_file_id(&[0xEE; 16]).await.unwrap(), moved);
    assert_not_found(store.get_handle_by_file_id(&handles[1].file_id).await);
    assert_not_found(store.get_handle_by_create_guid(&handles[1].create_guid.unwrap()).await);
    let share_1 = store.list_handles(&HandleQuery::Share("share-1".into())).await.unwrap();
    assert!(!handle_ids(&share_1).contains(&moved.id), "the old share still lists the moved handle");
    assert_eq!(every_handle(&store).await.len(), handles.len());
}

/// Two handles never share a file id or a create GUID: such a put is
/// `HandleConflict` naming the field and the holder and changes nothing;
/// replacing a handle by its own id with its own keys is allowed, and v1
/// handles (no create GUID) do not collide on the missing GUID.
pub async fn handle_unique_keys_are_enforced(mut h: impl Harness) {
    let store = h.open().await;
    let a = sample::handle(1);
    store.put_handle(a.clone()).await.unwrap();
    let same_file = DurableHandle { id: "other".into(), create_guid: Some([0x77; 16]), ..a.clone() };
    let same_guid = DurableHandle { id: "other".into(), file_id: [0x78; 16], ..a.clone() };
    for (handle, field) in [(same_file, "file_id"), (same_guid, "create_guid")] {
        match store.put_handle(handle).await {
            Err(Error::HandleConflict { id, field: f, holder }) => {
                assert_eq!((id.as_str(), f, holder.as_str()), ("other", field, a.id.as_str()));
            }
            other => panic!("expected HandleConflict on {field}, got {other:?}"),
        }
        assert_eq!(every_handle(&store).await, vec![a.clone()], "a refused put changed something");
    }
    let replaced = DurableHandle { position: 7, ..a.clone() };
    store.put_handle(replaced.clone()).await.unwrap();
    assert_eq!(store.get_handle(&a.id).await.unwrap(), replaced);
    store.put_handle(v1(2)).await.unwrap();
    store.put_handle(v1(3)).await.unwrap();
    assert_eq!(every_handle(&store).await.len(), 3);
}

/// A consume by file id or by create GUID returns the handle and removes
/// it with its index entries; a second consume, and a consume of a key no
/// handle has, is a durable-handle not-found.
pub async fn consume_returns_and_removes_the_handle(mut h: impl Harness) {
    let store = h.open().await;
    let (a, b) = (sample::handle(1), v1(2));
    store.put_handle(a.clone()).await.unwrap();
    store.put_handle(b.clone()).await.unwrap();
    assert_eq!(store.consume_handle_by_create_guid(&a.create_guid.unwrap()).await.unwrap(), a);
    assert_not_found(store.consume_handle_by_create_guid(&a.create_guid.unwrap()).await);
    assert_not_found(store.consume_handle_by_file_id(&a.file_id).await);
    assert_not_found(store.get_handle(&a.id).await);
    assert!(store.list_handles(&HandleQuery::Share(a.share.clone())).await.unwrap().iter().all(|h| h.id != a.id));
    assert_eq!(store.consume_handle_by_file_id(&b.file_id).await.unwrap(), b);
    assert_not_found(store.consume_handle_by_file_id(&b.file_id).await);
    assert!(every_handle(&store).await.is_empty());
    match store.delete_handle(&a.id).await {
        Err(Error::NotFound { entity: Entity::Handle, id }) => assert_eq!(id, a.id),
        other => panic!("expected not found, got {other:?}"),
    }
}

/// Of many reconnects racing for one handle (by create GUID and by file id
/// at once), exactly one gets it, for every handle.
pub async fn racing_consumers_get_each_handle_once(mut h: impl Harness) {
    let store = h.open().await;
    let handles: Vec<DurableHandle> = (0..24).map(sample::handle).collect();
    for handle in &handles {
        store.put_handle(handle.clone()).await.unwrap();
    }
    for handle in handles {
        let mut tasks = Vec::new();
        for racer in 0..8 {
            let (store, handle) = (Arc::clone(&store), handle.clone());
            tasks.push(tokio::spawn(async move {
                if racer % 2 == 0 {
                    store.consume_handle_by_create_guid(&handle.create_guid.unwrap()).await
                } else {
                    store.consume_handle_by_file_id(&handle.file_id).await
                }
            }));
        }
        let mut winners = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(got) => winners.push(got),
                Err(Error::NotFound { entity: Entity::Handle, .. }) => {}
                Err(e) => panic!("a racing consume failed: {e}"),
            }
        }
        assert_eq!(winners, vec![handle.clone()], "exactly one reconnect gets {}", handle.id);
    }
    assert!(every_handle(&store).await.is_empty());
}

/// Expiry removes exactly the handles whose `disconnected_at + timeout` is
/// before `now`: at the boundary instant a handle is still valid, one
/// microsecond later it is expired. The removed handles come back whole
/// (delete-pending fields included), sorted by id.
pub async fn expire_is_exact_at_the_boundary(mut h: impl Harness) {
    let store = h.open().await;
    let t = 1_764_000_000_000_000;
    let at = |n: u32, disconnected: i64, timeout_ms: u64| DurableHandle {
        disconnected_at: Timestamp::from_unix_micros(disconnected),
        timeout_ms,
        ..sample::handle(n)
    };
    // Expiry instants: t + 1 s (two handles), t + 2 s, t - 1 s, and t.
    let handles = [at(5, t, 1000), at(1, t + 500_000, 500), at(2, t, 2000), at(3, t - 2_000_000, 1000), at(4, t, 0)];
    for handle in &handles {
        store.put_handle(handle.clone()).await.unwrap();
    }
    let expire = |micros: i64| {
        let store = Arc::clone(&store);
        async move { handle_ids(&store.expire_handles(Timestamp::from_unix_micros(micros)).await.unwrap()) }
    };
    assert_eq!(expire(t - 1_000_000).await, Vec::<String>::new(), "t - 1 s is the first boundary: not yet");
    assert_eq!(expire(t).await, ["open-3"], "before t: only the one that expired at t - 1 s");
    assert_eq!(expire(t + 1).await, ["open-4"], "timeout 0 expires one microsecond after disconnecting");
    assert_eq!(expire(t + 1_000_000).await, Vec::<String>::new(), "at t + 1 s exactly, both are still valid");
    let removed = store.expire_handles(Timestamp::from_unix_micros(t + 1_000_001)).await.unwrap();
    assert_eq!(removed, vec![handles[1].clone(), handles[0].clone()], "whole handles, sorted by id");
    assert!(removed.iter().all(|h| h.delete_pending.is_some()));
    assert_eq!(handle_ids(&every_handle(&store).await), ["open-2"]);
    assert_eq!(expire(i64::MAX).await, ["open-2"]);
}

/// A reconnect consumes its handle and restores the open's locks in one
/// transaction: both apply, or (when a later op fails) neither does.
pub async fn handle_ops_are_atomic_with_lock_ops(mut h: impl Harness) {
    let mut store = h.open().await;
    let handle = sample::handle(1);
    store.put_handle(handle.clone()).await.unwrap();
    let lock = sample::byte_range("restored", "projects", "fh-1", "open-1", "client-1");
    let failing = vec![
        Op::ConsumeHandleByCreateGuid { create_guid: handle.create_guid.unwrap() },
        Op::PutLock(lock.clone()),
        Op::DeleteLock { id: "absent".into() },
    ];
    assert!(matches!(store.transaction(failing).await, Err(Error::NotFound { entity: Entity::Lock, .. })));
    assert_eq!(store.get_handle(&handle.id).await.unwrap(), handle, "the consume was rolled back");
    assert_eq!(store.count().await.unwrap(), 0, "the lock was rolled back");
    let outcomes = store
        .transaction(vec![
            Op::ConsumeHandleByCreateGuid { create_guid: handle.create_guid.unwrap() },
            Op::PutLock(lock.clone()),
            Op::PutHandle(sample::handle(2)),
        ])
        .await
        .unwrap();
    assert_eq!(outcomes, vec![Outcome::Handle(Box::new(handle.clone())), Outcome::Done, Outcome::Done]);
    store = h.reopen(store).await;
    assert_not_found(store.get_handle(&handle.id).await);
    assert_eq!(ids(&store.list_locks(&LockQuery::all()).await.unwrap()), ["restored"]);
    assert_eq!(handle_ids(&every_handle(&store).await), ["open-2"]);
}

/// Bad handles and lookups are `InvalidInput` naming the field and change
/// nothing: an empty id, an empty file handle, a path over the limit, a
/// timeout that overflows the timestamp range.
pub async fn invalid_handles_change_nothing(mut h: impl Harness) {
    let store = h.open().await;
    store.put_handle(sample::handle(1)).await.unwrap();
    let before = every_handle(&store).await;
    let cases = [
        ("id", DurableHandle { id: String::new(), ..sample::handle(2) }),
        ("file_handle", DurableHandle { file_handle: Vec::new(), ..sample::handle(2) }),
        ("path", DurableHandle { path: "p".repeat(validate::MAX_ID_LEN + 1), ..sample::handle(2) }),
        ("share", DurableHandle { share: String::new(), ..sample::handle(2) }),
        (
            "timeout_ms",
            DurableHandle {
                disconnected_at: Timestamp::from_unix_micros(i64::MAX - 10),
                timeout_ms: 1,
                ..sample::handle(2)
            },
        ),
        ("timeout_ms", DurableHandle { timeout_ms: u64::MAX, ..sample::handle(2) }),
    ];
    for (field, handle) in cases {
        match store.transaction(vec![Op::PutHandle(sample::handle(3)), Op::PutHandle(handle)]).await {
            Err(Error::InvalidInput { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected InvalidInput({field}), got {other:?}"),
        }
        assert_eq!(every_handle(&store).await, before);
    }
    assert!(matches!(store.get_handle("").await, Err(Error::InvalidInput { field: "id", .. })));
    assert!(matches!(store.delete_handle("").await, Err(Error::InvalidInput { field: "id", .. })));
}
