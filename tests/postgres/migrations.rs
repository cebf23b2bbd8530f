//! Migrations up, down and up again, migration 3 converting rows in place,
//! and migration 4 adding the durable-handle and record tables beside the
//! rows it leaves alone.

use super::*;

async fn tables(scratch: &Scratch) -> Vec<String> {
    scratch
        .sql()
        .await
        .query("SELECT tablename::text FROM pg_tables WHERE schemaname = $1 ORDER BY 1", &[&scratch.schema])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

const ALL_TABLES: [&str; 7] = [
    "lockwal_clients",
    "lockwal_handles",
    "lockwal_locks",
    "lockwal_meta",
    "lockwal_migrations",
    "lockwal_nodes",
    "lockwal_records",
];

const TABLES_4: [&str; 6] =
    ["lockwal_clients", "lockwal_handles", "lockwal_locks", "lockwal_meta", "lockwal_migrations", "lockwal_records"];

async fn recorded(scratch: &Scratch) -> Vec<i32> {
    let sql = scratch.sql().await;
    sql.query("SELECT version FROM lockwal_migrations ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// Migrations go up, down and up again; each step is recorded; a store
/// opens only on the version it was built for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrations_up_down_up() {
    let Some(scratch) = Scratch::new() else { return };
    let config = scratch.config().with_auto_migrate(false);
    assert_eq!(SCHEMA_VERSION, 5);
    assert_eq!(PostgresLockStore::schema_version(&config).await.unwrap(), 0);
    match PostgresLockStore::open(config.clone()).await {
        Err(Error::SchemaVersion { found: 0, expected: SCHEMA_VERSION, schema }) => assert_eq!(schema, scratch.schema),
        other => panic!("expected SchemaVersion, got {other:?}"),
    }

    let up = PostgresLockStore::migrate(&config).await.unwrap();
    assert_eq!((up.from, up.to, up.steps), (0, 5, vec![1, 2, 3, 4, 5]));
    assert_eq!(tables(&scratch).await, ALL_TABLES);
    assert_eq!(recorded(&scratch).await, [1, 2, 3, 4, 5]);
    let again = PostgresLockStore::migrate(&config).await.unwrap();
    assert_eq!((again.from, again.to, again.steps), (5, 5, vec![]));

    let store = PostgresLockStore::open(config.clone()).await.unwrap();
    store.put_lock(lock("L")).await.unwrap();
    // What migration 2 can hold too (no NFSv4 short id), so it can go down.
    let mut client = sample::client("c");
    client.details = ClientDetails::Nfs4(Nfs4Details::default());
    store.put_client(client).await.unwrap();
    store.close().await.unwrap();

    let down = PostgresLockStore::migrate_to(&config, 1).await.unwrap();
    assert_eq!((down.from, down.to, down.steps), (5, 1, vec![5, 4, 3, 2]));
    assert_eq!(tables(&scratch).await, ["lockwal_locks", "lockwal_meta", "lockwal_migrations"]);
    assert!(matches!(PostgresLockStore::open(config.clone()).await, Err(Error::SchemaVersion { found: 1, .. })));
    let down = PostgresLockStore::migrate_to(&config, 0).await.unwrap();
    assert_eq!((down.from, down.to, down.steps), (1, 0, vec![1]));
    assert_eq!(tables(&scratch).await, ["lockwal_migrations"]);
    assert!(recorded(&scratch).await.is_empty());

    let up = PostgresLockStore::migrate(&config).await.unwrap();
    assert_eq!((up.from, up.to, up.steps), (0, 5, vec![1, 2, 3, 4, 5]));
    let store = PostgresLockStore::open(config.clone()).await.unwrap();
    assert_eq!(store.epoch().await.unwrap(), 1, "a fresh schema after down and up");
    assert_eq!(store.count().await.unwrap(), 0);
    assert!(store.list_clients(&ClientQuery::all()).await.unwrap().is_empty());
    store.put_lock(lock("after")).await.unwrap();
    assert_eq!(all_ids(&store).await, ["after"]);

    assert!(matches!(
        PostgresLockStore::migrate_to(&config, SCHEMA_VERSION + 1).await,
        Err(Error::InvalidInput { field: "target", .. })
    ));
    // A schema migrated by a newer build is refused, not misread.
    scratch
        .sql()
        .await
        .execute("INSERT INTO lockwal_migrations (version, name) VALUES (99, 'future')", &[])
        .await
        .unwrap();
    assert!(matches!(PostgresLockStore::open(config.clone()).await, Err(Error::SchemaVersion { found: 99, .. })));
    assert!(matches!(PostgresLockStore::migrate(&config).await, Err(Error::SchemaVersion { found: 99, .. })));
}

/// The rows of a database at migration 2, as that version wrote them
/// (every column of every kind, the lease states and delegation ids in
/// their migration-2 encodings), as one JSON text per row (keys sorted,
/// so column order does not count), without the owner column.
async fn rows_as_text(sql: &tokio_postgres::Client) -> Vec<String> {
    // Without the owner, which migration 5 adds (its own test checks it).
    let locks =
        sql.query("SELECT (to_jsonb(l) - 'node_id')::text FROM lockwal_locks l ORDER BY id", &[]).await.unwrap();
    let clients = sql
        .query("SELECT (to_jsonb(c) - 'node_id')::text FROM lockwal_clients c ORDER BY client_id", &[])
        .await
        .unwrap();
    locks.iter().chain(&clients).map(|r| r.get(0)).collect()
}

/// A database at migration 2 with rows of every kind is upgraded in place
/// by migration 3: its rows read back as the WAL converts a format-1 log
/// (DESIGN.md, "Upgrading"). Down to 2 gives back the rows exactly as
/// migration 2 held them, and up again the same records; a row migration 2
/// cannot hold makes the down migration refuse and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_3_upgrades_rows_in_place_and_down_up_is_lossless() {
    let Some(scratch) = Scratch::new() else { return };
    let config = scratch.config().with_auto_migrate(false);
    PostgresLockStore::migrate_to(&config, 2).await.unwrap();
    let sql = scratch.sql().await;
    let columns = "id, share, file_id, owner_id, client_id, kind, acquired_at, server_epoch";
    let base = "'s'::bytea, 'f'::bytea, 'o'::bytea, 'c'::bytea";
    sql.batch_execute(&format!(
        "UPDATE lockwal_meta SET epoch = 4, clean = true;
         INSERT INTO lockwal_locks ({columns}, range_type, range_offset, range_length, range_zero_byte)
             VALUES ('r', {base}, 'byte_range', 10, 3, 'exclusive', 18446744073709551615, 0, false);
         INSERT INTO lockwal_locks ({columns}, share_access, share_deny)
             VALUES ('s', {base}, 'share', 11, 3, 'read_write', 'write');
         INSERT INTO lockwal_locks ({columns}, lease_key, lease_state, lease_epoch, lease_parent_key,
                 lease_is_directory, lease_is_traditional_oplock, lease_break_to, lease_break_required,
                 lease_break_started_at)
             VALUES ('lb', {base}, 'lease', 12, 2, '\\x0707070707070707070707070707070b', 'RWH', 65535,
                 '\\x08080808080808080808080808080808', true, false, 'R', 'RH', -5);
         INSERT INTO lockwal_locks ({columns}, lease_key, lease_state, lease_epoch, lease_is_directory,
                 lease_is_traditional_oplock)
             VALUES ('lq', {base}, 'lease', 13, 1, '\\x0909090909090909090909090909090c', 'WH', 0, false, true);
         INSERT INTO lockwal_locks ({columns}, deleg_id, deleg_type, deleg_breaking, deleg_recalled, deleg_revoked,
                 deleg_notification_mask)
             VALUES ('d', {base}, 'delegation', 14, 3, 18446744073709551614, 'write', true, false, true, 4294967295);
         INSERT INTO lockwal_clients (client_id, kind, name, verifier, principal, callback, registered_at, epoch,
                 reclaim_complete)
             VALUES ('a', 'nsm', 'host-a', '\\x0102', '', '\\x03', 20, 2, false),
                    ('b', 'nfs4', 'Linux NFSv4.2 b', '\\x0405', 'nfs/b', '', 21, 18446744073709551615, true),
                    ('c', 'smb', 'WS', '', 'DOMAIN/u', '\\x06', 22, 3, false);"
    ))
    .await
    .unwrap();
    let written = rows_as_text(&sql).await;
    assert_eq!(written.len(), 8);

    let report = PostgresLockStore::migrate(&config).await.unwrap();
    assert_eq!((report.from, report.to, report.steps), (2, 5, vec![3, 4, 5]));
    let store = PostgresLockStore::open_read_only(config.clone()).await.unwrap();
    let locks = store.list_locks(&LockQuery::all()).await.unwrap();
    let kinds: Vec<(&str, &LockKind, u64)> = locks.iter().map(|l| (&*l.id, &l.kind, l.server_epoch)).collect();
    let flavor = RangeFlavor::Posix;
    let lease = |key: [u8; 16]| Lease {
        key,
        state: LeaseState::NONE,
        epoch: 0,
        parent_key: None,
        is_directory: false,
        is_traditional_oplock: false,
        breaking: false,
        break_to: LeaseState::NONE,
        break_required: LeaseState::NONE,
        break_started_at: None,
    };
    let mut key = [7; 16];
    key[15] = 0x0b;
    let breaking = Lease {
        state: LeaseState::READ | LeaseState::WRITE | LeaseState::HANDLE,
        epoch: 65535,
        parent_key: Some([8; 16]),
        is_directory: true,
        breaking: true,
        break_to: LeaseState::READ,
        break_required: LeaseState::READ | LeaseState::HANDLE,
        break_started_at: Some(Timestamp::from_unix_micros(-5)),
        ..lease(key)
    };
    let mut key = [9; 16];
    key[15] = 0x0c;
    let quiet = Lease { state: LeaseState::WRITE | LeaseState::HANDLE, is_traditional_oplock: true, ..lease(key) };
    let mut id = (u64::MAX - 1).to_le_bytes().to_vec();
    let expected = [
        (
            "d",
            LockKind::Delegation(Delegation {
                delegation_id: std::mem::take(&mut id),
                delegation_type: DelegationType::Write,
                breaking: true,
                recalled: false,
                revoked: true,
                notification_mask: u32::MAX,
                is_directory: false,
            }),
            3,
        ),
        ("lb", LockKind::Lease(breaking), 2),
        ("lq", LockKind::Lease(quiet), 1),
        (
            "r",
            LockKind::ByteRange(ByteRange {
                lock_type: LockType::Exclusive,
                offset: u64::MAX,
                length: 0,
                zero_byte: false,
                flavor,
            }),
            3,
        ),
        ("s", LockKind::Share(ShareReservation { access: ShareAccess::ReadWrite, deny: ShareDeny::Write }), 3),
    ];
    let expected: Vec<(&str, &LockKind, u64)> = expected.iter().map(|(id, k, e)| (*id, k, *e)).collect();
    assert_eq!(kinds, expected);
    let clients = store.list_clients(&ClientQuery::all()).await.unwrap();
    let details: Vec<(&str, &ClientDetails)> = clients.iter().map(|c| (c.client_id.as_str(), &c.details)).collect();
    let nsm = ClientDetails::Nsm(NsmDetails::default());
    let nfs4 = ClientDetails::Nfs4(Nfs4Details { short_id: 0 });
    assert_eq!(details, [("a", &nsm), ("b", &nfs4), ("c", &ClientDetails::Smb)]);
    assert_eq!(clients[1].epoch, u64::MAX);
    assert_eq!((clients[2].principal.as_str(), clients[2].callback.as_slice()), ("DOMAIN/u", &[6u8][..]));
    store.close().await.unwrap();

    // Down to 2: the rows exactly as migration 2 held them.
    let report = PostgresLockStore::migrate_to(&config, 2).await.unwrap();
    assert_eq!(report.steps, [5, 4, 3]);
    assert_eq!(rows_as_text(&sql).await, written);
    PostgresLockStore::migrate(&config).await.unwrap();
    let store = PostgresLockStore::open_read_only(config.clone()).await.unwrap();
    assert_eq!(store.list_locks(&LockQuery::all()).await.unwrap(), locks);
    assert_eq!(store.list_clients(&ClientQuery::all()).await.unwrap(), clients);
    store.close().await.unwrap();

    // A record only migration 3 can hold: down refuses, nothing changes.
    let store = PostgresLockStore::open(config.clone()).await.unwrap();
    let mut smb = lock("smb");
    smb.kind = sample::every_kind().into_iter().find(|l| &*l.id == "kind-smb-deny-read").unwrap().kind;
    store.put_lock(smb).await.unwrap();
    store.close().await.unwrap();
    let before = rows_as_text(&sql).await;
    match PostgresLockStore::migrate_to(&config, 2).await {
        Err(Error::Postgres { message, .. }) => assert!(message.contains("cannot revert migration 3"), "{message}"),
        other => panic!("expected a refused down migration, got {other:?}"),
    }
    assert_eq!(rows_as_text(&sql).await, before);
    assert_eq!(PostgresLockStore::schema_version(&config).await.unwrap(), 5);
    assert_eq!(tables(&scratch).await, ALL_TABLES, "the refused run dropped nothing");
}

/// Migration 4 on a database at migration 3 with locks and client records:
/// it adds the durable-handle and record tables and leaves every row as it
/// was; handles and records then work; down to 3 drops exactly the two
/// tables (the other rows unchanged, the store refused at version 3), and
/// up again gives them back empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_4_adds_handles_and_records_and_down_up_keeps_the_rest() {
    let Some(scratch) = Scratch::new() else { return };
    let config = scratch.config().with_auto_migrate(false);
    PostgresLockStore::migrate_to(&config, 3).await.unwrap();
    let sql = scratch.sql().await;
    let columns = "id, share, file_id, owner_id, client_id, kind, acquired_at, server_epoch";
    sql.batch_execute(&format!(
        "INSERT INTO lockwal_locks ({columns}, range_type, range_offset, range_length, range_zero_byte, range_flavor,
                 range_share_deny)
             VALUES ('r', 's', 'f', 'o', 'c', 'byte_range', 10, 0, 'exclusive', 7, 3, false, 'smb', 'read');
         INSERT INTO lockwal_clients (client_id, kind, name, verifier, principal, callback, registered_at, epoch,
                 reclaim_complete, nfs4_short_id)
             VALUES ('b', 'nfs4', 'n', '', '', '', 21, 5, true, 18446744073709551615);"
    ))
    .await
    .unwrap();
    let rows = rows_as_text(&sql).await;
    assert!(matches!(PostgresLockStore::open(config.clone()).await, Err(Error::SchemaVersion { found: 3, .. })));

    let up = PostgresLockStore::migrate_to(&config, 4).await.unwrap();
    assert_eq!((up.from, up.to, up.steps), (3, 4, vec![4]));
    assert_eq!(tables(&scratch).await, TABLES_4);
    assert_eq!(rows_as_text(&sql).await, rows, "migration 4 leaves the other rows alone");
    // This build opens version 5 only: upgrade, then come back to 4 below.
    PostgresLockStore::migrate(&config).await.unwrap();
    let store = PostgresLockStore::open(config.clone()).await.unwrap();
    assert_eq!(store.list_locks(&LockQuery::all()).await.unwrap().len(), 1);
    store.put_handle(sample::handle(1)).await.unwrap();
    store.put_record("s", b"k", b"v").await.unwrap();
    assert_eq!(store.get_handle("open-1").await.unwrap(), sample::handle(1));
    store.close().await.unwrap();

    let down = PostgresLockStore::migrate_to(&config, 3).await.unwrap();
    assert_eq!((down.from, down.to, down.steps), (5, 3, vec![5, 4]));
    assert_eq!(tables(&scratch).await, ["lockwal_clients", "lockwal_locks", "lockwal_meta", "lockwal_migrations"]);
    let meta: (i64, bool) = {
        let row = sql.query_one("SELECT epoch, clean FROM lockwal_meta", &[]).await.unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(meta, (1, true), "the epoch row is kept");
    assert_eq!(rows_as_text(&sql).await, rows, "down leaves the other rows alone");
    assert!(matches!(PostgresLockStore::open(config.clone()).await, Err(Error::SchemaVersion { found: 3, .. })));

    let up = PostgresLockStore::migrate(&config).await.unwrap();
    assert_eq!(up.steps, [4, 5]);
    let store = PostgresLockStore::open(config.clone()).await.unwrap();
    assert_eq!(store.epoch().await.unwrap(), 2);
    assert!(store.list_handles(&HandleQuery::All).await.unwrap().is_empty());
    assert_eq!(store.scan_records("s", &RecordScan::all(10)).await.unwrap(), Vec::new());
    assert_eq!(rows_as_text(&sql).await, rows);
}
