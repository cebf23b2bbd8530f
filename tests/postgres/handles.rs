//! Durable handles and records on PostgreSQL: every field as its own
//! column, rows that do not decode, racing consumers and racing puts, and
//! a random run against the state machine (the memory backend) that
//! compares every outcome, error and listing.

use super::*;
use lockwal::MemoryLockStore;
use lockwal::Outcome;
use lockwal::error::Entity;
use tokio::sync::Barrier;

/// A raw connection with the server's default `search_path`, as a caller's
/// own connection would be.
async fn caller_client(scratch: &Scratch) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(&scratch.url, NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

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

/// How a racer consumes: the one-statement write, a multi-operation
/// transaction (with a lock put), or a caller's transaction.
#[derive(Debug, Clone, Copy)]
enum Path {
    Single,
    Multi,
    Caller,
}

async fn consume(
    store: &PostgresLockStore,
    client: &mut tokio_postgres::Client,
    path: Path,
    op: Op,
) -> Result<Outcome, Error> {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let lock = Op::PutLock(lock(&format!("restored-{}", NEXT.fetch_add(1, Ordering::Relaxed))));
    match path {
        Path::Single => store.transaction(vec![op]).await.map(|mut o| o.remove(0)),
        Path::Multi => store.transaction(vec![op, lock]).await.map(|mut o| o.remove(0)),
        Path::Caller => {
            let tx = client.transaction().await.unwrap();
            let result = store.transaction_in(&tx, vec![op, lock]).await;
            match result {
                Ok(mut outcomes) => {
                    tx.commit().await.unwrap();
                    Ok(outcomes.remove(0))
                }
                Err(e) => {
                    tx.rollback().await.unwrap();
                    Err(e)
                }
            }
        }
    }
}

/// Racing reconnects: many times over, three consumers on separate
/// connections (the one-statement write, a transaction, a caller's
/// transaction) released together consume one handle by create GUID or by
/// file id, while a node that another has replaced tries too. Exactly one
/// gets the handle, whole; the others find nothing (a typed not-found);
/// the replaced node is fenced every time and never wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn racing_consumers_of_one_handle_exactly_one_wins() {
    const ROUNDS: u32 = 60;
    let Some(scratch) = Scratch::new() else { return };
    let stale = Arc::new(scratch.open().await);
    let stale_epoch = stale.epoch().await.unwrap();
    let store = Arc::new(PostgresLockStore::open(scratch.config().with_pool_size(4)).await.unwrap());
    let epoch = store.epoch().await.unwrap();
    let mut clients = Vec::new();
    for _ in 0..3 {
        clients.push(Some(caller_client(&scratch).await));
    }
    let mut wins = [0usize; 3];
    for round in 0..2 * ROUNDS {
        let handle = sample::handle(round);
        store.put_handle(handle.clone()).await.unwrap();
        let by_guid = round % 2 == 0;
        let op = if by_guid {
            Op::ConsumeHandleByCreateGuid { create_guid: handle.create_guid.unwrap() }
        } else {
            Op::ConsumeHandleByFileId { file_id: handle.file_id }
        };
        let barrier = Arc::new(Barrier::new(4));
        let racers: Vec<_> = [Path::Single, Path::Multi, Path::Caller]
            .into_iter()
            .enumerate()
            .map(|(i, path)| {
                let (store, barrier, op) = (Arc::clone(&store), Arc::clone(&barrier), op.clone());
                let mut client = clients[i].take().unwrap();
                tokio::spawn(async move {
                    barrier.wait().await;
                    let result = consume(&store, &mut client, path, op).await;
                    (client, result)
                })
            })
            .collect();
        let stale_try = {
            let (stale, barrier, op) = (Arc::clone(&stale), Arc::clone(&barrier), op.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                stale.transaction(vec![op]).await
            })
        };
        let mut winners = Vec::new();
        for (i, racer) in racers.into_iter().enumerate() {
            let (client, result) = racer.await.unwrap();
            clients[i] = Some(client);
            match result {
                Ok(Outcome::Handle(got)) => {
                    assert_eq!(*got, handle, "round {round}: the winner gets the handle whole");
                    winners.push(i);
                }
                Err(Error::NotFound { entity: Entity::Handle, id }) => {
                    let key = if by_guid { "create GUID" } else { "file id" };
                    assert!(id.starts_with(key), "round {round}: {id}");
                }
                other => panic!("round {round}, racer {i}: {other:?}"),
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        wins[winners[0]] += 1;
        assert_fenced(stale_try.await.unwrap(), stale_epoch, epoch);
        assert!(matches!(store.get_handle(&handle.id).await, Err(Error::NotFound { .. })), "round {round}");
    }
    let _ = writeln!(std::io::stderr(), "consume races won by single/multi/caller: {wins:?}");
    assert_eq!(wins.iter().sum::<usize>(), 2 * ROUNDS as usize);
}

/// The race decided deterministically: a consume in a caller's transaction
/// that has not committed holds the row; a second consume (each write path
/// in turn) waits for it, and finds nothing once it commits, or gets the
/// handle when it rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consume_waits_for_an_uncommitted_one_then_finds_nothing() {
    let Some(scratch) = Scratch::new() else { return };
    let store = Arc::new(scratch.open().await);
    let mut caller = caller_client(&scratch).await;
    let holder = backend_pid(&caller).await;
    let mut second = caller_client(&scratch).await;
    for (n, path) in [Path::Single, Path::Multi, Path::Caller].into_iter().enumerate() {
        for commit in [true, false] {
            let handle = sample::handle(n as u32 * 2 + u32::from(commit));
            store.put_handle(handle.clone()).await.unwrap();
            let op = Op::ConsumeHandleByFileId { file_id: handle.file_id };
            let tx = caller.transaction().await.unwrap();
            let first = store.transaction_in(&tx, vec![op.clone()]).await.unwrap();
            assert_eq!(first, vec![Outcome::Handle(Box::new(handle.clone()))]);
            let racer = {
                let store = Arc::clone(&store);
                let mut client = std::mem::replace(&mut second, caller_client(&scratch).await);
                tokio::spawn(async move { consume(&store, &mut client, path, op).await })
            };
            wait_blocked_by(&scratch, holder).await;
            assert!(!racer.is_finished(), "{path:?}: the second consume waits for the first");
            if commit {
                tx.commit().await.unwrap();
                match racer.await.unwrap() {
                    Err(Error::NotFound { entity: Entity::Handle, .. }) => {}
                    other => panic!("{path:?}: expected not found, got {other:?}"),
                }
            } else {
                tx.rollback().await.unwrap();
                assert_eq!(racer.await.unwrap().unwrap(), Outcome::Handle(Box::new(handle.clone())), "{path:?}");
            }
            assert!(store.get_handle(&handle.id).await.is_err());
        }
    }
}

/// A put racing an uncommitted put of another handle with the same file id
/// or create GUID (each write path in turn): it waits, then is refused with
/// `HandleConflict` naming the winner once that commits (the unique
/// violation never surfaces), or succeeds when the winner rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_racing_an_uncommitted_put_of_its_key_is_a_handle_conflict() {
    let Some(scratch) = Scratch::new() else { return };
    let store = Arc::new(scratch.open().await);
    let mut caller = caller_client(&scratch).await;
    let holder = backend_pid(&caller).await;
    let mut round = 0;
    for path in [Path::Single, Path::Multi, Path::Caller] {
        for field in ["file_id", "create_guid"] {
            for commit in [true, false] {
                round += 1;
                let first = sample::handle(1000 + round);
                let mut second = sample::handle(2000 + round);
                match field {
                    "file_id" => second.file_id = first.file_id,
                    _ => second.create_guid = first.create_guid,
                }
                let tx = caller.transaction().await.unwrap();
                store.transaction_in(&tx, vec![Op::PutHandle(first.clone())]).await.unwrap();
                let racer = {
                    let (store, second) = (Arc::clone(&store), second.clone());
                    let mut client = caller_client(&scratch).await;
                    tokio::spawn(async move {
                        let op = Op::PutHandle(second);
                        match path {
                            Path::Single => store.transaction(vec![op]).await,
                            Path::Multi => store.transaction(vec![Op::PutLock(lock("x")), op]).await,
                            Path::Caller => {
                                let tx = client.transaction().await.unwrap();
                                let result = store.transaction_in(&tx, vec![Op::PutLock(lock("x")), op]).await;
                                if result.is_ok() {
                                    tx.commit().await.unwrap()
                                } else {
                                    tx.rollback().await.unwrap()
                                }
                                result
                            }
                        }
                    })
                };
                wait_blocked_by(&scratch, holder).await;
                assert!(!racer.is_finished(), "{path:?} {field}: the second put waits for the first");
                let what = format!("{path:?}, {field}, commit {commit}");
                if commit {
                    tx.commit().await.unwrap();
                    match racer.await.unwrap() {
                        Err(Error::HandleConflict { id, field: f, holder }) => {
                            assert_eq!((id, f, holder), (second.id.clone(), field, first.id.clone()), "{what}");
                        }
                        other => panic!("{what}: expected HandleConflict, got {other:?}"),
                    }
                    assert_eq!(store.get_handle(&first.id).await.unwrap(), first);
                    assert!(store.get_handle(&second.id).await.is_err(), "{what}");
                } else {
                    tx.rollback().await.unwrap();
                    racer.await.unwrap().unwrap_or_else(|e| panic!("{what}: {e:?}"));
                    assert_eq!(store.get_handle(&second.id).await.unwrap(), second);
                    assert!(store.get_handle(&first.id).await.is_err(), "{what}");
                }
                for h in [&first, &second] {
                    let _ = store.delete_handle(&h.id).await;
                }
            }
        }
    }
}

/// Compare-and-set under a race: a swap in a caller's transaction that has
/// not committed holds the record (or, for an absent one, its key); a
/// second swap expecting what the first expected waits, then fails with
/// the reason the state machine gives after the first (the record exists,
/// or holds another value), or succeeds when the first rolls back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_swap_racing_an_uncommitted_swap_fails_as_after_it() {
    let Some(scratch) = Scratch::new() else { return };
    let store = Arc::new(scratch.open().await);
    let mut caller = caller_client(&scratch).await;
    let holder = backend_pid(&caller).await;
    let swap = |key: &[u8], expected: Option<&[u8]>, value: Option<&[u8]>| Op::SwapRecord {
        space: "dir".into(),
        key: key.to_vec(),
        expected: expected.map(<[u8]>::to_vec),
        value: value.map(<[u8]>::to_vec),
    };
    // (key, value before, the first swap's new value, reason the second fails)
    type Case<'a> = (&'a [u8], Option<&'a [u8]>, Option<&'a [u8]>, &'a str);
    let cases: [Case; 3] = [
        (b"absent", None, Some(b"v1"), "the record exists"),
        (b"present", Some(b"v0"), Some(b"v1"), "the record holds another value"),
        (b"removed", Some(b"v0"), None, "the record is absent"),
    ];
    for (key, before, first_value, reason) in cases {
        for commit in [true, false] {
            if let Some(v) = before {
                store.put_record("dir", key, v).await.unwrap();
            }
            let tx = caller.transaction().await.unwrap();
            store.transaction_in(&tx, vec![swap(key, before, first_value)]).await.unwrap();
            let racer = {
                let (store, op) = (Arc::clone(&store), swap(key, before, Some(b"v2")));
                tokio::spawn(async move { store.transaction(vec![op]).await })
            };
            wait_blocked_by(&scratch, holder).await;
            assert!(!racer.is_finished(), "{reason}: the second swap waits for the first");
            let what = format!("{:?} commit {commit}", String::from_utf8_lossy(key));
            if commit {
                tx.commit().await.unwrap();
                match racer.await.unwrap() {
                    Err(Error::ConditionFailed { reason: r, space, key: k }) => {
                        assert_eq!((r, space.as_str(), k.as_slice()), (reason, "dir", key), "{what}")
                    }
                    other => panic!("{what}: expected ConditionFailed, got {other:?}"),
                }
                assert_eq!(store.get_record("dir", key).await.unwrap().as_deref(), first_value, "{what}");
            } else {
                tx.rollback().await.unwrap();
                racer.await.unwrap().unwrap_or_else(|e| panic!("{what}: {e:?}"));
                assert_eq!(store.get_record("dir", key).await.unwrap().as_deref(), Some(&b"v2"[..]), "{what}");
            }
            let _ = store.delete_record("dir", key).await;
        }
    }
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

const IDS: [&str; 6] = ["open-1", "open-2", "Zeta", "éclair", "a\u{0}b", "\u{7f}"];
const SPACES: [&str; 3] = ["s1", "s.2", "no space"];
const SHARES: [&str; 3] = ["projects", "é", "Z"];
const FILE_IDS: usize = 5;
const GUIDS: usize = 4;

fn key16(n: usize, tag: u8) -> [u8; 16] {
    let mut k = [tag; 16];
    k[0] = n as u8;
    k
}

fn record_keys() -> Vec<Vec<u8>> {
    vec![vec![0], vec![0xff], vec![0xff, 0xff], b"a".to_vec(), b"ab".to_vec(), b"a\xff".to_vec(), b"b".to_vec(), vec![]]
}

fn values() -> Vec<Vec<u8>> {
    vec![Vec::new(), b"v1".to_vec(), b"v2".to_vec()]
}

fn random_handle(rng: &mut Rng) -> DurableHandle {
    let mut h = sample::handle(rng.below(1000) as u32);
    h.id = rng.pick(&IDS).to_string();
    h.file_id = key16(rng.below(FILE_IDS), 0xF1);
    h.create_guid = rng.chance(60).then(|| key16(rng.below(GUIDS), 0xC6));
    h.app_instance_id = rng.chance(50).then(|| key16(rng.below(2), 0xA1));
    h.share = rng.pick(&SHARES).to_string();
    h.file_handle = vec![rng.below(3) as u8];
    h.disconnected_at = Timestamp::from_unix_micros(rng.below(1000) as i64);
    h.timeout_ms = rng.below(3) as u64;
    if rng.chance(30) {
        h.lease = None;
    }
    if rng.chance(30) {
        h.delete_pending = None;
    }
    if rng.chance(30) {
        h.version = DurableVersion::V1;
    }
    match rng.below(40) {
        0 => h.id = String::new(),
        1 => h.timeout_ms = u64::MAX,
        2 => h.file_handle = Vec::new(),
        _ => {}
    }
    h
}

fn random_op(rng: &mut Rng) -> Op {
    let keys = record_keys();
    let values = values();
    let maybe_value = |rng: &mut Rng| rng.chance(70).then(|| rng.pick(&values).clone());
    match rng.below(13) {
        0..=2 => Op::PutHandle(random_handle(rng)),
        3 => Op::DeleteHandle { id: rng.pick(&IDS).to_string() },
        4 => Op::ConsumeHandleByFileId { file_id: key16(rng.below(FILE_IDS), 0xF1) },
        5 => Op::ConsumeHandleByCreateGuid { create_guid: key16(rng.below(GUIDS), 0xC6) },
        6 => Op::ExpireHandles { now: Timestamp::from_unix_micros(rng.below(2000) as i64) },
        7 | 8 => Op::PutRecord {
            space: rng.pick(&SPACES).to_string(),
            key: rng.pick(&keys).clone(),
            value: rng.pick(&values).clone(),
        },
        9 => Op::DeleteRecord { space: rng.pick(&SPACES).to_string(), key: rng.pick(&keys).clone() },
        _ => Op::SwapRecord {
            space: rng.pick(&SPACES).to_string(),
            key: rng.pick(&keys).clone(),
            expected: maybe_value(rng),
            value: maybe_value(rng),
        },
    }
}

fn random_scan(rng: &mut Rng) -> RecordScan {
    let keys = record_keys();
    let bound = |rng: &mut Rng| rng.chance(50).then(|| rng.pick(&keys).clone());
    RecordScan {
        prefix: if rng.chance(50) { Vec::new() } else { rng.pick(&keys).clone() },
        start: bound(rng),
        end: bound(rng),
        limit: *rng.pick(&[0, 1, 3, usize::MAX]),
    }
}

/// The observable handle and record state (and the answers to lookups that
/// miss), as text to compare.
async fn observe(store: &dyn LockStore, rng: &mut Rng) -> Vec<String> {
    let mut seen = vec![format!("{:?}", store.list_handles(&HandleQuery::All).await)];
    for n in 0..2 {
        seen.push(format!("{:?}", store.list_handles(&HandleQuery::AppInstance(key16(n, 0xA1))).await));
    }
    for fh in 0..3u8 {
        seen.push(format!("{:?}", store.list_handles(&HandleQuery::FileHandle(vec![fh])).await));
    }
    for share in SHARES {
        seen.push(format!("{:?}", store.list_handles(&HandleQuery::Share(share.into())).await));
    }
    for id in IDS.iter().chain(&[""]) {
        seen.push(format!("{:?}", store.get_handle(id).await));
    }
    for n in 0..FILE_IDS {
        seen.push(format!("{:?}", store.get_handle_by_file_id(&key16(n, 0xF1)).await));
    }
    for n in 0..GUIDS {
        seen.push(format!("{:?}", store.get_handle_by_create_guid(&key16(n, 0xC6)).await));
    }
    for space in SPACES {
        seen.push(format!("{:?}", store.scan_records(space, &RecordScan::all(usize::MAX)).await));
        for key in record_keys() {
            seen.push(format!("{:?}", store.get_record(space, &key).await));
        }
    }
    for _ in 0..4 {
        let scan = random_scan(rng);
        seen.push(format!("{scan:?}: {:?}", store.scan_records("s1", &scan).await));
    }
    seen
}

/// A random run of durable-handle and record operations (colliding file
/// ids and create GUIDs, ids that sort differently as bytes and as text,
/// keys at the byte edges, invalid input now and then), alone, in
/// transactions and in a caller's transaction, gives on PostgreSQL exactly
/// the outcomes, errors (variant and fields) and listings of the state
/// machine.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handles_and_records_match_the_state_machine() {
    const STEPS: usize = 300;
    let Some(scratch) = Scratch::new() else { return };
    let pg = scratch.open().await;
    let memory = MemoryLockStore::new();
    let mut caller = caller_client(&scratch).await;
    let mut rng = Rng(0x5EED_1234_ABCD_0042);
    let (mut errors, mut most_handles) = (BTreeSet::new(), 0);
    for step in 0..STEPS {
        let len = if rng.chance(65) { 1 } else { 2 + rng.below(3) };
        let ops: Vec<Op> = (0..len).map(|_| random_op(&mut rng)).collect();
        let want = memory.transaction(ops.clone()).await;
        let got = if rng.chance(25) {
            let tx = caller.transaction().await.unwrap();
            let result = pg.transaction_in(&tx, ops.clone()).await;
            if result.is_ok() {
                tx.commit().await.unwrap()
            } else {
                tx.rollback().await.unwrap()
            }
            result
        } else {
            pg.transaction(ops.clone()).await
        };
        assert_eq!(format!("{got:?}"), format!("{want:?}"), "step {step}: {ops:?}");
        if let Err(e) = &want {
            errors.insert(format!("{e:?}").split([' ', '(']).next().unwrap().to_owned());
        }
        let seed = rng.next();
        let (want, got) = (observe(&memory, &mut Rng(seed)).await, observe(&pg, &mut Rng(seed)).await);
        for (w, g) in want.iter().zip(&got) {
            assert_eq!(g, w, "step {step}, after {ops:?}");
        }
        most_handles = most_handles.max(memory.list_handles(&HandleQuery::All).await.unwrap().len());
    }
    // The run went where it should: every refusal happened, and the
    // handles collided.
    let wanted = ["ConditionFailed", "HandleConflict", "InvalidInput", "NotFound"];
    assert_eq!(errors.iter().map(String::as_str).collect::<Vec<_>>(), wanted);
    assert!(most_handles >= 3, "at most {most_handles} handles at once");
}
