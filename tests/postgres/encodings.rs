//! How values are stored: exact numerics, and rows that do not decode.

use super::*;

/// Every u64 field is an exact numeric in the database: 2^64-1 is stored as
/// 18446744073709551615 (readable, sortable), and values beyond are refused
/// by the schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn u64_fields_are_exact_numerics_in_the_database() {
    let Some(scratch) = Scratch::new() else { return };
    let store = scratch.open().await;
    let boundaries = [0, 1, 9_999, 10_000, u32::MAX as u64, i64::MAX as u64, 1 << 63, u64::MAX - 1, u64::MAX];
    let sql = scratch.sql().await;
    for (i, &v) in boundaries.iter().enumerate() {
        let mut range = lock(&format!("r{i}"));
        range.kind = LockKind::ByteRange(ByteRange {
            lock_type: LockType::Shared,
            offset: v,
            length: 0,
            zero_byte: false,
            flavor: RangeFlavor::Posix,
        });
        let mut deleg = sample::every_kind().into_iter().find(|l| &*l.id == "kind-delegation-revoked").unwrap();
        deleg.id = format!("d{i}").into();
        if let LockKind::Delegation(d) = &mut deleg.kind {
            d.notification_mask = v as u32;
        }
        let mut client = sample::client(&format!("c{i}"));
        client.epoch = v;
        client.details = ClientDetails::Nfs4(Nfs4Details { short_id: v });
        store
            .transaction(vec![Op::PutLock(range.clone()), Op::PutLock(deleg.clone()), Op::PutClient(client.clone())])
            .await
            .unwrap();
        assert_eq!(store.get_lock(&range.id).await.unwrap().kind, range.kind);
        assert_eq!(store.get_lock(&deleg.id).await.unwrap().kind, deleg.kind);
        assert_eq!(store.get_client(ClientKind::Nfs4, &client.client_id).await.unwrap(), client);
        let row = sql
            .query_one(
                "SELECT (SELECT range_offset::text FROM lockwal_locks WHERE id = $1),
                        (SELECT nfs4_short_id::text FROM lockwal_clients WHERE client_id = $2),
                        (SELECT epoch::text FROM lockwal_clients WHERE client_id = $2)",
                &[&range.id.as_bytes(), &client.client_id.as_bytes()],
            )
            .await
            .unwrap();
        for column in 0..3 {
            assert_eq!(row.get::<_, String>(column), v.to_string(), "value {v}, column {column}");
        }
    }
    let sorted: Vec<String> = sql
        .query(
            "SELECT convert_from(id, 'UTF8') FROM lockwal_locks WHERE kind = 'byte_range' ORDER BY range_offset",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(sorted, (0..boundaries.len()).map(|i| format!("r{i}")).collect::<Vec<_>>(), "numeric order");
    let beyond = sql.execute("UPDATE lockwal_locks SET range_offset = 18446744073709551616 WHERE id = 'r0'", &[]).await;
    let code = beyond.expect_err("2^64 refused").code().cloned();
    assert_eq!(code, Some(tokio_postgres::error::SqlState::CHECK_VIOLATION));
}

/// A row that does not fit the model is an error naming the row and the
/// column, never silently skipped (as the implementation this replaces did).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_that_does_not_decode_is_an_error_not_skipped() {
    let Some(scratch) = Scratch::new() else { return };
    let store = scratch.open().await;
    store.put_lock(lock("good")).await.unwrap();
    store.put_lock(lock("bad")).await.unwrap();
    scratch
        .sql()
        .await
        .execute("UPDATE lockwal_locks SET owner_id = '\\xff'::bytea WHERE id = 'bad'", &[])
        .await
        .unwrap();
    for result in [store.list_locks(&LockQuery::all()).await.map(drop), store.get_lock("bad").await.map(drop)] {
        match result {
            Err(Error::Postgres { during, message, .. }) => {
                assert_eq!(during, "decoding a row");
                assert!(message.contains("lockwal_locks row \"bad\"") && message.contains("owner_id"), "{message}");
            }
            other => panic!("expected a decoding error, got {other:?}"),
        }
    }
    assert_eq!(&*store.get_lock("good").await.unwrap().owner_id, "o");
}
