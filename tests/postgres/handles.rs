//! Durable handles and records on PostgreSQL: every field as its own
//! column, the epoch checked on every write path, rows that do not decode,
//! and conflicts on a handle's keys named as the state machine names them.

use super::*;
use lockwal::MemoryLockStore;

/// A handle with every optional part set to its other value and every
/// integer at its extreme, as unlike `sample::handle` as the model allows.
fn extreme_handle() -> DurableHandle {
    let disconnected = i64::MAX - 1_000 * 1_000_000;
    DurableHandle {
        id: "é\u{0}\u{10FFFF}".into(),
        file_id: [0xff; 16],
        original_file_id: [0; 16],
        path: String::new(),
        share: "\u{0}".into(),
        file_handle: vec![0],
        desired_access: u32::MAX,
        granted_access: 0,
        share_access: u32::MAX,
        create_options: 1,
        oplock_level: 0,
        lease: None,
        create_guid: None,
        app_instance_id: None,
        persistent: false,
        version: DurableVersion::V1,
        user: "ü".repeat(512),
        session_key_hash: [0; 32],
        client_guid: [0xff; 16],
        created_at: Timestamp::from_unix_micros(i64::MIN),
        disconnected_at: Timestamp::from_unix_micros(disconnected),
        timeout_ms: 1_000_000,
        server_start_time: Timestamp::from_unix_micros(-1),
        delete_pending: Some(DeletePending { parent_handle: Vec::new(), file_name: "x".repeat(1024) }),
        is_directory: false,
        position: u64::MAX,
        allocation_size: 0,
    }
}

/// Every field of a durable handle (every one non-default in
/// `sample::handle`, every optional part absent and every integer at its
/// edge in the other) round-trips exactly through each lookup, and reads
/// in psql as the number, text or bytes it is, with the expiry instant as
/// a column of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_handle_field_round_trips_exactly() {
    let Some(scratch) = Scratch::new() else { return };
    let store = scratch.open().await;
    let handles = [sample::handle(1), sample::handle(2), extreme_handle()];
    for h in &handles {
        store.put_handle(h.clone()).await.unwrap();
        assert_eq!(&store.get_handle(&h.id).await.unwrap(), h);
        assert_eq!(&store.get_handle_by_file_id(&h.file_id).await.unwrap(), h);
        if let Some(guid) = &h.create_guid {
            assert_eq!(&store.get_handle_by_create_guid(guid).await.unwrap(), h);
        }
    }
    let mut sorted = handles.to_vec();
    sorted.sort_by(|a, b| a.id.cmp(&b.id));
    assert_eq!(store.list_handles(&HandleQuery::All).await.unwrap(), sorted);
    let h = &handles[0];
    let by_share = store.list_handles(&HandleQuery::Share(h.share.clone())).await.unwrap();
    assert_eq!(by_share, sorted[..2].to_vec());
    let by_app = store.list_handles(&HandleQuery::AppInstance(h.app_instance_id.unwrap())).await.unwrap();
    assert_eq!(by_app, vec![h.clone()]);
    let by_fh = store.list_handles(&HandleQuery::FileHandle(h.file_handle.clone())).await.unwrap();
    assert_eq!(by_fh, vec![h.clone()]);

    let row = scratch
        .sql()
        .await
        .query_one(
            "SELECT convert_from(path, 'UTF8'), convert_from(user_name, 'UTF8'), timeout_ms::text, position::text,
                    allocation_size::text, expires_at, lease_state, oplock_level, version, encode(create_guid, 'hex')
             FROM lockwal_handles WHERE id = $1",
            &[&h.id.as_bytes()],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), h.path);
    assert_eq!(row.get::<_, String>(1), h.user);
    assert_eq!(row.get::<_, String>(2), h.timeout_ms.to_string());
    assert_eq!(row.get::<_, String>(3), h.position.to_string());
    assert_eq!(row.get::<_, String>(4), h.allocation_size.to_string());
    assert_eq!(row.get::<_, i64>(5), h.expires_at().unwrap().unix_micros);
    assert_eq!(row.get::<_, i64>(6), 7);
    assert_eq!(row.get::<_, i16>(7), 0xff);
    assert_eq!(row.get::<_, &str>(8), "v2");
    let guid: String = h.create_guid.unwrap().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(row.get::<_, String>(9), guid);
    let extreme = extreme_handle();
    let expiry: i64 = scratch
        .sql()
        .await
        .query_one("SELECT expires_at FROM lockwal_handles WHERE id = $1", &[&extreme.id.as_bytes()])
        .await
        .unwrap()
        .get(0);
    assert_eq!(expiry, i64::MAX, "the largest expiry instant fits");

    // Reopened (the next epoch), everything is still there.
    drop(store);
    let store = scratch.open().await;
    assert_eq!(store.list_handles(&HandleQuery::All).await.unwrap(), sorted);
}

/// Every handle and record write path (the one-statement puts and deletes,
/// the consumes, the expiry and the swap as transactions, a caller's
/// transaction) checks the epoch in the database itself: each stale handle
/// here has never been refused before, so only the database can tell it
/// that it was replaced. Nothing any of them tried is visible.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_handle_and_record_write_path_checks_the_epoch_in_the_database() {
    let Some(scratch) = Scratch::new() else { return };
    let setup = scratch.open().await;
    let h = sample::handle(1);
    setup.put_handle(h.clone()).await.unwrap();
    setup.put_record("dir", b"k", b"v").await.unwrap();
    let mut stale = Vec::new();
    for _ in 0..9 {
        stale.push(scratch.open().await);
    }
    let current = scratch.open().await;
    let now = current.epoch().await.unwrap();
    let mut client = caller_client(&scratch).await;
    let tx = client.transaction().await.unwrap();
    let attempts = [
        Op::PutHandle(sample::handle(2)),
        Op::DeleteHandle { id: h.id.clone() },
        Op::ConsumeHandleByFileId { file_id: h.file_id },
        Op::ConsumeHandleByCreateGuid { create_guid: h.create_guid.unwrap() },
        Op::ExpireHandles { now: Timestamp::from_unix_micros(i64::MAX) },
        Op::PutRecord { space: "dir".into(), key: b"new".to_vec(), value: vec![] },
        Op::DeleteRecord { space: "dir".into(), key: b"k".to_vec() },
        Op::SwapRecord { space: "dir".into(), key: b"k".to_vec(), expected: Some(b"v".to_vec()), value: None },
    ];
    for (store, op) in stale.iter().zip(attempts) {
        let ours = store.epoch().await.unwrap();
        assert_fenced(store.transaction(vec![op]).await, ours, now);
    }
    let last = &stale[8];
    assert_fenced(
        last.transaction_in(&tx, vec![Op::PutHandle(sample::handle(3))]).await,
        last.epoch().await.unwrap(),
        now,
    );
    tx.rollback().await.unwrap();
    assert_eq!(current.list_handles(&HandleQuery::All).await.unwrap(), vec![h]);
    let records = current.scan_records("dir", &RecordScan::all(10)).await.unwrap();
    assert_eq!(records, vec![Record { key: b"k".to_vec(), value: b"v".to_vec() }]);
}

/// A handle row that does not fit the model (bytes that are not UTF-8, a
/// lease with a part missing once its constraint is gone) is a decoding
/// error naming the table, the handle and the column, on every read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handle_row_that_does_not_decode_is_an_error() {
    let Some(scratch) = Scratch::new() else { return };
    let store = scratch.open().await;
    let (good, bad) = (sample::handle(1), sample::handle(2));
    store.put_handle(good.clone()).await.unwrap();
    store.put_handle(bad.clone()).await.unwrap();
    let sql = scratch.sql().await;
    let cases = [
        ("UPDATE lockwal_handles SET path = '\\xff'::bytea WHERE id = 'open-2'", "column path: "),
        ("UPDATE lockwal_handles SET user_name = '\\xc3'::bytea WHERE id = 'open-2'", "column user_name: "),
        (
            "ALTER TABLE lockwal_handles DROP CONSTRAINT lockwal_handles_lease;
             UPDATE lockwal_handles SET lease_epoch = NULL WHERE id = 'open-2'",
            "column lease_epoch: is NULL while the other lease columns are set",
        ),
    ];
    for (damage, wanted) in cases {
        // Restore the row (a put replaces every column), then damage it.
        store.put_handle(bad.clone()).await.unwrap();
        sql.batch_execute(damage).await.unwrap();
        let reads = [
            store.get_handle("open-2").await.map(drop),
            store.get_handle_by_file_id(&bad.file_id).await.map(drop),
            store.get_handle_by_create_guid(&bad.create_guid.unwrap()).await.map(drop),
            store.list_handles(&HandleQuery::All).await.map(drop),
            store.list_handles(&HandleQuery::Share("projects".into())).await.map(drop),
            store.consume_handle_by_file_id(&bad.file_id).await.map(drop),
            store.expire_handles(Timestamp::from_unix_micros(i64::MAX)).await.map(drop),
        ];
        for result in reads {
            match result {
                Err(Error::Postgres { during: "decoding a row", message, .. }) => {
                    assert!(
                        message.contains("lockwal_handles row \"open-2\"") && message.contains(wanted),
                        "{message}"
                    );
                }
                other => panic!("{damage}: expected a decoding error, got {other:?}"),
            }
        }
        // The consume and the expiry that could not decode a row they
        // removed rolled back.
        let n: i64 = sql.query_one("SELECT count(*) FROM lockwal_handles", &[]).await.unwrap().get(0);
        assert_eq!(n, 2, "{damage}");
    }
    assert_eq!(store.get_handle("open-1").await.unwrap(), good, "the other row still reads");
}

/// A put refused for a key another handle holds names the field and the
/// holder as the state machine does: the file id first when two handles
/// hold one key each, the create GUID otherwise; a handle re-put with its
/// own keys, or taking keys freed earlier in the same transaction, is no
/// conflict.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handle_conflicts_name_the_field_and_the_holder_as_the_state_machine() {
    let with = |n: u32, file: u32, guid: Option<u32>| {
        let mut h = sample::handle(n);
        h.file_id = sample::handle(file).file_id;
        h.create_guid = guid.map(|g| sample::handle(g).create_guid.unwrap());
        Op::PutHandle(h)
    };
    let steps: Vec<Vec<Op>> = vec![
        vec![with(1, 1, Some(1)), with(2, 2, Some(2))],
        // File id of 1, GUID of 2: the file id's holder.
        vec![with(3, 1, Some(2))],
        vec![with(3, 3, Some(2))],
        vec![with(3, 1, None)],
        // Handle 1 again, keys its own, then another's GUID.
        vec![with(1, 1, Some(1))],
        vec![with(1, 1, Some(2))],
        vec![with(2, 1, Some(2))],
        // Keys freed earlier in the same transaction are free.
        vec![Op::DeleteHandle { id: "open-1".into() }, with(3, 1, Some(1))],
        vec![
            Op::ConsumeHandleByCreateGuid { create_guid: sample::handle(2).create_guid.unwrap() },
            with(4, 2, Some(2)),
        ],
        // Taken earlier in the same transaction: a conflict, and nothing of
        // the transaction is applied.
        vec![with(5, 5, Some(5)), with(6, 5, None)],
        vec![with(5, 5, Some(5)), with(6, 6, Some(5))],
    ];
    // As given (one-operation steps take the one-statement write), then
    // with every step in a transaction of several operations.
    for padded in [false, true] {
        let Some(scratch) = Scratch::new() else { return };
        let pg = scratch.open().await;
        let memory = MemoryLockStore::new();
        for (i, ops) in steps.iter().enumerate() {
            let mut ops = ops.clone();
            if padded && ops.len() == 1 {
                ops.insert(0, Op::PutRecord { space: "s".into(), key: vec![1], value: vec![] });
            }
            let want = memory.transaction(ops.clone()).await;
            let got = pg.transaction(ops.clone()).await;
            assert_eq!(format!("{got:?}"), format!("{want:?}"), "step {i} (padded {padded}): {ops:?}");
        }
        let want = memory.list_handles(&HandleQuery::All).await.unwrap();
        assert_eq!(pg.list_handles(&HandleQuery::All).await.unwrap(), want);
        assert_eq!(want.iter().map(|h| h.id.as_str()).collect::<Vec<_>>(), ["open-3", "open-4"]);
    }
}
