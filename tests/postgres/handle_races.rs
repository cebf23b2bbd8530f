//! Durable handles and records on PostgreSQL under races: racing
//! consumers of one handle, and consumes, puts and swaps waiting for an
//! uncommitted one in a caller's transaction.

use super::*;
use lockwal::Outcome;
use lockwal::error::Entity;
use tokio::sync::Barrier;

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
