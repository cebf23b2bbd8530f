//! Cases about the server's own records (named keyspaces of key to value
//! bytes): put, get, delete and ordered scans; the conditional write; the
//! limits and refused input; restarts and snapshots; and transactions that
//! change records and locks together.

use super::super::Harness;
use super::support::ids;
use lockwal::error::Entity;
use lockwal::model::*;
use lockwal::testing::sample;
use lockwal::{Error, LockStore, Op};
use std::sync::Arc;

fn put(space: &str, key: &[u8], value: &[u8]) -> Op {
    Op::PutRecord { space: space.into(), key: key.to_vec(), value: value.to_vec() }
}

fn keys(records: &[Record]) -> Vec<Vec<u8>> {
    records.iter().map(|r| r.key.clone()).collect()
}

async fn scan_all(store: &Arc<dyn LockStore>, space: &str) -> Vec<Record> {
    store.scan_records(space, &RecordScan::all(usize::MAX)).await.expect("scan")
}

/// Put, get, replace and delete; a scan returns keys in byte order, with
/// every filter (prefix, start, end, limit) and paging; keyspaces are
/// separate; absent records read as `None`, delete as not-found.
pub async fn records_put_get_delete_and_scan(mut h: impl Harness) {
    let store = h.open().await;
    let names: [&[u8]; 7] = [b"a", b"a/b", b"a/b/c", b"a/c", b"b", b"\x00", b"\xFF\xFF"];
    for (i, key) in names.iter().enumerate() {
        store.put_record("tree", key, &[i as u8; 3]).await.unwrap();
    }
    store.put_record("other", b"a/b", b"elsewhere").await.unwrap();
    assert_eq!(store.get_record("tree", b"a/b").await.unwrap(), Some(vec![1; 3]));
    assert_eq!(store.get_record("other", b"a/b").await.unwrap(), Some(b"elsewhere".to_vec()));
    assert_eq!(store.get_record("tree", b"missing").await.unwrap(), None);
    assert_eq!(store.get_record("nospace", b"a").await.unwrap(), None);
    store.put_record("tree", b"a", b"replaced").await.unwrap();
    assert_eq!(store.get_record("tree", b"a").await.unwrap(), Some(b"replaced".to_vec()));
    let mut sorted: Vec<Vec<u8>> = names.iter().map(|k| k.to_vec()).collect();
    sorted.sort();
    assert_eq!(keys(&scan_all(&store, "tree").await), sorted, "byte order");
    let scan = |s: RecordScan| {
        let store = Arc::clone(&store);
        async move { keys(&store.scan_records("tree", &s).await.unwrap()) }
    };
    let k = |s: &[u8]| s.to_vec();
    assert_eq!(scan(RecordScan::prefix(b"a/".to_vec(), 100)).await, [k(b"a/b"), k(b"a/b/c"), k(b"a/c")]);
    assert_eq!(scan(RecordScan::prefix(b"a/b".to_vec(), 100)).await, [k(b"a/b"), k(b"a/b/c")]);
    assert_eq!(scan(RecordScan::prefix(b"a".to_vec(), 2)).await, [k(b"a"), k(b"a/b")]);
    assert_eq!(scan(RecordScan::prefix(b"zz".to_vec(), 100)).await, Vec::<Vec<u8>>::new());
    let ranged = RecordScan { start: Some(k(b"a/b/c")), end: Some(k(b"b")), ..RecordScan::all(100) };
    assert_eq!(scan(ranged).await, [k(b"a/b/c"), k(b"a/c")]);
    let start_before_prefix = RecordScan { start: Some(k(b"\x00")), ..RecordScan::prefix(b"a/".to_vec(), 100) };
    assert_eq!(scan(start_before_prefix).await, [k(b"a/b"), k(b"a/b/c"), k(b"a/c")]);
    assert_eq!(scan(RecordScan::all(0)).await, Vec::<Vec<u8>>::new());
    // Paging through a prefix two at a time sees every key once.
    let mut page = RecordScan::prefix(b"a".to_vec(), 2);
    let mut seen = Vec::new();
    loop {
        let got = scan(page.clone()).await;
        let Some(last) = got.last().cloned() else { break };
        seen.extend(got);
        page = page.after(&last);
    }
    assert_eq!(seen, [k(b"a"), k(b"a/b"), k(b"a/b/c"), k(b"a/c")]);
    store.delete_record("tree", b"a/b").await.unwrap();
    assert_eq!(store.get_record("tree", b"a/b").await.unwrap(), None);
    assert_eq!(store.get_record("other", b"a/b").await.unwrap(), Some(b"elsewhere".to_vec()));
    match store.delete_record("tree", b"a/b").await {
        Err(Error::NotFound { entity: Entity::Record, id }) => assert_eq!(id, "tree/612f62"),
        other => panic!("expected a record not found, got {other:?}"),
    }
    store.delete_record("other", b"a/b").await.unwrap();
    assert!(scan_all(&store, "other").await.is_empty());
}

/// The conditional write applies only when the record holds the expected
/// value (or is absent when `None` is expected), can create and remove, and
/// otherwise is `ConditionFailed` and, in a transaction, undoes the rest.
pub async fn swap_record_applies_only_on_the_expected_value(mut h: impl Harness) {
    let store = h.open().await;
    store.swap_record("s", b"k", None, Some(b"v1")).await.unwrap();
    assert_eq!(store.get_record("s", b"k").await.unwrap(), Some(b"v1".to_vec()));
    for (expected, why) in [(None, "exists"), (Some(&b"v0"[..]), "another value")] {
        match store.swap_record("s", b"k", expected, Some(b"v2")).await {
            Err(Error::ConditionFailed { space, key, .. }) => {
                assert_eq!((space.as_str(), key.as_slice()), ("s", &b"k"[..]))
            }
            other => panic!("expected ConditionFailed ({why}), got {other:?}"),
        }
        assert_eq!(store.get_record("s", b"k").await.unwrap(), Some(b"v1".to_vec()));
    }
    assert!(matches!(
        store.swap_record("s", b"absent", Some(b"v1"), Some(b"x")).await,
        Err(Error::ConditionFailed { .. })
    ));
    assert_eq!(store.get_record("s", b"absent").await.unwrap(), None);
    store.swap_record("s", b"k", Some(b"v1"), Some(b"v2")).await.unwrap();
    assert_eq!(store.get_record("s", b"k").await.unwrap(), Some(b"v2".to_vec()));
    let failing = vec![
        put("s", b"other", b"x"),
        Op::PutLock(sample::byte_range("l", "s", "f", "o", "c")),
        Op::SwapRecord { space: "s".into(), key: b"k".to_vec(), expected: Some(b"v1".to_vec()), value: None },
    ];
    assert!(matches!(store.transaction(failing).await, Err(Error::ConditionFailed { .. })));
    assert_eq!(keys(&scan_all(&store, "s").await), [b"k".to_vec()]);
    assert_eq!(store.count().await.unwrap(), 0);
    store.swap_record("s", b"k", Some(b"v2"), None).await.unwrap();
    assert!(scan_all(&store, "s").await.is_empty());
}

/// Keyspace names, key and value sizes and the bytes of one transaction
/// are bounded: input at each limit is accepted, one past it is
/// `InvalidInput` naming the field, and nothing changes.
pub async fn record_limits_and_bad_input(mut h: impl Harness) {
    let store = h.open().await;
    let long_space = "s".repeat(validate::MAX_SPACE_LEN);
    let max_key = vec![0xAB; validate::MAX_KEY_LEN];
    let max_value = vec![0xCD; validate::MAX_VALUE_LEN];
    store.put_record(&long_space, &max_key, &max_value).await.unwrap();
    store.put_record("dir.v2_x-y", b"k", b"").await.unwrap();
    let before = (scan_all(&store, &long_space).await, scan_all(&store, "dir.v2_x-y").await);
    let too_long_space = "s".repeat(validate::MAX_SPACE_LEN + 1);
    let bad: Vec<(&str, Op)> = vec![
        ("space", put("", b"k", b"v")),
        ("space", put(&too_long_space, b"k", b"v")),
        ("space", put("a/b", b"k", b"v")),
        ("space", put("_hidden", b"k", b"v")),
        ("space", put("naïve", b"k", b"v")),
        ("key", put("s", b"", b"v")),
        ("key", put("s", &vec![1; validate::MAX_KEY_LEN + 1], b"v")),
        ("value", put("s", b"k", &vec![1; validate::MAX_VALUE_LEN + 1])),
        ("key", Op::DeleteRecord { space: "s".into(), key: Vec::new() }),
        (
            "value",
            Op::SwapRecord {
                space: "s".into(),
                key: b"k".to_vec(),
                expected: Some(vec![0; validate::MAX_VALUE_LEN + 1]),
                value: None,
            },
        ),
    ];
    for (field, op) in bad {
        match store.transaction(vec![put("s", b"fine", b"v"), op]).await {
            Err(Error::InvalidInput { field: f, .. }) => assert_eq!(f, field),
            other => panic!("expected InvalidInput({field}), got {other:?}"),
        }
    }
    // Many values, each valid, over the bytes a transaction may carry.
    let n = validate::MAX_TXN_BYTES / validate::MAX_VALUE_LEN + 1;
    let big: Vec<Op> = (0..n).map(|i| put("s", format!("k{i}").as_bytes(), &max_value)).collect();
    assert!(matches!(store.transaction(big).await, Err(Error::InvalidInput { field: "ops", .. })));
    assert!(scan_all(&store, "s").await.is_empty(), "a refused write changed something");
    assert_eq!((scan_all(&store, &long_space).await, scan_all(&store, "dir.v2_x-y").await), before);
    assert!(matches!(store.get_record("a b", b"k").await, Err(Error::InvalidInput { field: "space", .. })));
    assert!(matches!(store.get_record("s", b"").await, Err(Error::InvalidInput { field: "key", .. })));
    assert!(matches!(
        store.scan_records("", &RecordScan::all(1)).await,
        Err(Error::InvalidInput { field: "space", .. })
    ));
}

/// Records with binary keys and values (zero bytes, 0xFF, empty values)
/// survive a restart from the log and from a snapshot, and a deleted one
/// stays deleted.
pub async fn records_survive_restart_and_snapshot(mut h: impl Harness) {
    let mut store = h.open().await;
    let mut ops = Vec::new();
    for space in ["inodes", "dirents"] {
        for i in 0u8..20 {
            ops.push(put(space, &[0, i, 0xFF], &vec![i; usize::from(i) * 7]));
        }
    }
    store.transaction(ops).await.unwrap();
    store.delete_record("inodes", &[0, 3, 0xFF]).await.unwrap();
    let expected = (scan_all(&store, "inodes").await, scan_all(&store, "dirents").await);
    assert_eq!((expected.0.len(), expected.1.len()), (19, 20));
    store = h.reopen(store).await;
    assert_eq!((scan_all(&store, "inodes").await, scan_all(&store, "dirents").await), expected, "after a restart");
    store = h.reopen_from_snapshot(store).await;
    assert_eq!((scan_all(&store, "inodes").await, scan_all(&store, "dirents").await), expected, "from a snapshot");
    assert_eq!(store.get_record("inodes", &[0, 3, 0xFF]).await.unwrap(), None);
    assert_eq!(store.get_record("dirents", &[0, 0, 0xFF]).await.unwrap(), Some(Vec::new()));
}

/// A file server's two atomic changes: create a file (directory entry and
/// share reservation) and remove it (entry and every lock on it) commit
/// together or, when an op fails, not at all.
pub async fn records_and_locks_commit_together(mut h: impl Harness) {
    let mut store = h.open().await;
    let share = PersistedLock {
        kind: LockKind::Share(ShareReservation { access: ShareAccess::ReadWrite, deny: ShareDeny::Write }),
        ..sample::byte_range("open-1", "export", "inode-7", "owner", "client")
    };
    let create = vec![
        Op::SwapRecord {
            space: "dirents".into(),
            key: b"/f".to_vec(),
            expected: None,
            value: Some(b"inode-7".to_vec()),
        },
        Op::PutLock(share.clone()),
        Op::PutLock(sample::byte_range("range-1", "export", "inode-7", "owner", "client")),
    ];
    store.transaction(create.clone()).await.unwrap();
    // Creating it again fails on the entry, so the locks are not granted twice.
    let again = vec![create[0].clone(), Op::PutLock(sample::byte_range("extra", "export", "inode-7", "o", "c"))];
    assert!(matches!(store.transaction(again).await, Err(Error::ConditionFailed { .. })));
    assert_eq!(ids(&store.list_locks(&LockQuery::by_file("inode-7")).await.unwrap()), ["open-1", "range-1"]);
    let failing_remove = vec![
        Op::DeleteRecord { space: "dirents".into(), key: b"/f".to_vec() },
        Op::DeleteLocksByFile { file_id: "inode-7".into() },
        Op::DeleteRecord { space: "inodes".into(), key: b"7".to_vec() },
    ];
    assert!(matches!(store.transaction(failing_remove).await, Err(Error::NotFound { entity: Entity::Record, .. })));
    assert_eq!(store.get_record("dirents", b"/f").await.unwrap(), Some(b"inode-7".to_vec()));
    assert_eq!(store.count().await.unwrap(), 2);
    let remove = vec![
        Op::DeleteRecord { space: "dirents".into(), key: b"/f".to_vec() },
        Op::DeleteLocksByFile { file_id: "inode-7".into() },
    ];
    assert_eq!(store.transaction(remove).await.unwrap()[1], lockwal::Outcome::Count(2));
    store = h.reopen(store).await;
    assert_eq!(store.get_record("dirents", b"/f").await.unwrap(), None);
    assert_eq!(store.count().await.unwrap(), 0);
}
