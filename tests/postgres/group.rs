//! Group commit: concurrent writers share SQL transactions, and inside a
//! group each request keeps its own outcome, its atomicity and the fence.
//!
//! To make a group of known members, a plain connection holds the epoch
//! row `FOR UPDATE`, which every write's fence waits for: two writes block
//! there (the one running alone and the driver's first), every later one
//! queues, and once `group_stats().waiting` counts them all, releasing the
//! row lets the driver commit them as one group.

use super::*;
use lockwal::Outcome;
use lockwal::error::Entity;

/// Waits until `n` requests of `store` wait for a group.
async fn wait_queued(store: &PostgresLockStore, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while store.group_stats().waiting < n {
        assert!(Instant::now() < deadline, "{:?}: {n} requests did not queue within 30 s", store.group_stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

type Answer = tokio::task::JoinHandle<Result<Vec<Outcome>, Error>>;

/// A held row lock on the node rows and the two writes blocked behind it;
/// every write of `store` submitted after `hold` returns queues for a group.
struct Held {
    holder: tokio_postgres::Client,
    pid: i32,
    blocked: Vec<Answer>,
}

async fn hold(scratch: &Scratch, store: &Arc<PostgresLockStore>) -> Held {
    let holder = scratch.sql().await;
    let pid = backend_pid(&holder).await;
    holder.batch_execute("BEGIN; SELECT epoch FROM lockwal_nodes FOR UPDATE").await.expect("hold the node rows");
    let mut blocked = Vec::new();
    for (n, id) in ["blocker-1", "blocker-2"].into_iter().enumerate() {
        blocked.push(spawn(store, vec![Op::PutLock(lock(id))]));
        wait_blocked(scratch, pid, n as i64 + 1).await;
    }
    Held { holder, pid, blocked }
}

fn spawn(store: &Arc<PostgresLockStore>, ops: Vec<Op>) -> Answer {
    let store = Arc::clone(store);
    tokio::spawn(async move { store.transaction(ops).await })
}

/// Submits every request while the epoch row is held, waits until they all
/// queue, releases the row and returns each answer (the blockers' first).
async fn grouped(
    scratch: &Scratch,
    store: &Arc<PostgresLockStore>,
    requests: Vec<Vec<Op>>,
) -> Vec<Result<Vec<Outcome>, Error>> {
    let held = hold(scratch, store).await;
    let n = requests.len();
    let answers: Vec<Answer> = requests.into_iter().map(|ops| spawn(store, ops)).collect();
    // The second blocker is the driver's and counts as waiting.
    wait_queued(store, n + 1).await;
    held.holder.batch_execute("ROLLBACK").await.expect("release the epoch row");
    let mut out = Vec::new();
    for answer in held.blocked.into_iter().chain(answers) {
        out.push(answer.await.expect("writer task"));
    }
    out
}

/// 64 writers at once, 20 puts each: every put acknowledged, every lock
/// there, and the writes shared transactions (fewer group commits than
/// grouped requests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_writers_are_all_acknowledged_and_present() {
    let Some(scratch) = Scratch::new() else { return };
    let store = Arc::new(scratch.open().await);
    let writers: Vec<_> = (0..64)
        .map(|w| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                for i in 0..20 {
                    store.put_lock(lock(&format!("w{w:02}-{i:02}"))).await.expect("put acknowledged");
                }
            })
        })
        .collect();
    for writer in writers {
        writer.await.expect("writer");
    }
    let mut expected: Vec<String> = (0..64).flat_map(|w| (0..20).map(move |i| format!("w{w:02}-{i:02}"))).collect();
    expected.sort();
    assert_eq!(all_ids(&*store).await, expected);
    assert_eq!(store.count().await.unwrap(), 64 * 20);
    let stats = store.group_stats();
    assert!(stats.groups > 0 && stats.grouped > stats.groups, "writes shared transactions: {stats:?}");
    assert_eq!(stats.waiting, 0);

    // A group of known size: one transaction for all of it.
    let before = store.group_stats();
    let requests: Vec<Vec<Op>> = (0..32).map(|i| vec![Op::PutLock(lock(&format!("g{i:02}")))]).collect();
    for answer in grouped(&scratch, &store, requests).await {
        assert_eq!(answer.expect("put acknowledged"), vec![Outcome::Done]);
    }
    let after = store.group_stats();
    assert_eq!((after.groups - before.groups, after.grouped - before.grouped), (1, 32), "{after:?}");
    assert_eq!(store.count().await.unwrap(), 64 * 20 + 2 + 32);
}

/// In one group, each refused request (not found, a refused reclaim, a
/// handle conflict, a failed condition, a multi-operation transaction whose
/// last operation is refused) fails with exactly the error it gets alone
/// and leaves no effect, and every other request commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_request_fails_alone_with_its_own_error_and_the_others_commit() {
    let Some(scratch) = Scratch::new() else { return };
    let store = Arc::new(scratch.open().await);
    store.put_lock(lock("mine")).await.unwrap();
    store.put_handle(sample::handle(1)).await.unwrap();
    store.put_record("space", b"k", b"v1").await.unwrap();
    let conflicting = DurableHandle { id: "other-open".into(), ..sample::handle(1) };
    let swap = |expected: &[u8], value: &[u8]| Op::SwapRecord {
        space: "space".into(),
        key: b"k".to_vec(),
        expected: Some(expected.to_vec()),
        value: Some(value.to_vec()),
    };
    let refused: Vec<Vec<Op>> = vec![
        vec![Op::DeleteLock { id: "absent".into() }],
        vec![Op::Reclaim { id: "mine".into(), client_id: "c".into() }],
        vec![Op::PutHandle(conflicting.clone())],
        vec![swap(b"not v1", b"v2")],
        vec![Op::PutLock(lock("half")), Op::DeleteLock { id: "absent".into() }],
        vec![Op::DeleteHandle { id: "absent".into() }],
    ];
    // Alone (nothing else in flight), as a write always ran before groups.
    let mut alone = Vec::new();
    for ops in &refused {
        alone.push(format!("{:?}", store.transaction(ops.clone()).await.expect_err("refused alone")));
    }
    let committed: Vec<Vec<Op>> = vec![
        vec![Op::PutLock(lock("a"))],
        vec![
            Op::PutLock(lock("b")),
            Op::PutRecord { space: "space".into(), key: b"k2".to_vec(), value: b"x".to_vec() },
        ],
        vec![swap(b"v1", b"v3")],
        vec![Op::PutHandle(sample::handle(2))],
    ];
    let mut requests = Vec::new();
    for (r, c) in refused.iter().zip(committed.iter().chain(std::iter::repeat(&Vec::new()))) {
        requests.push(r.clone());
        if !c.is_empty() {
            requests.push(c.clone());
        }
    }
    let before = store.group_stats();
    let answers = grouped(&scratch, &store, requests.clone()).await;
    assert_eq!(store.group_stats().groups - before.groups, 1, "one group: {:?}", store.group_stats());
    let (blockers, answers) = answers.split_at(2);
    assert!(blockers.iter().all(|b| b.is_ok()), "{blockers:?}");
    let mut refused_answers = Vec::new();
    for (ops, answer) in requests.iter().zip(answers) {
        if refused.contains(ops) {
            refused_answers.push(format!("{:?}", answer.as_ref().expect_err("refused in the group")));
        } else {
            let outcomes = answer.as_ref().unwrap_or_else(|e| panic!("{ops:?} failed in the group: {e:?}"));
            assert_eq!(outcomes.len(), ops.len());
        }
    }
    assert_eq!(refused_answers, alone, "the same errors in a group as alone");
    assert!(matches!(&refused_answers[..], [a, ..] if a.contains("NotFound")), "{refused_answers:?}");

    let ids = all_ids(&*store).await;
    assert_eq!(ids, ["a", "b", "blocker-1", "blocker-2", "mine"], "'half' rolled back, the rest committed");
    assert_eq!(store.get_record("space", b"k").await.unwrap(), Some(b"v3".to_vec()));
    assert_eq!(store.get_record("space", b"k2").await.unwrap(), Some(b"x".to_vec()));
    assert_eq!(store.get_handle("open-1").await.unwrap(), sample::handle(1));
    assert!(matches!(store.get_handle("other-open").await, Err(Error::NotFound { .. })));
    assert_eq!(store.get_handle("open-2").await.unwrap(), sample::handle(2));
    assert_eq!(store.get_lock("mine").await.unwrap().server_epoch, store.epoch().await.unwrap());
}

/// A multi-operation request inside a group is all or nothing: the ones
/// that apply whole are there, and the one refused at its last operation
/// left none of its earlier operations.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_operation_requests_stay_atomic_inside_a_group() {
    let Some(scratch) = Scratch::new() else { return };
    let store = Arc::new(scratch.open().await);
    store.put_lock(lock("old")).await.unwrap();
    let requests: Vec<Vec<Op>> = vec![
        vec![Op::PutLock(lock("x1")), Op::PutLock(lock("x2")), Op::PutLock(lock("x3"))],
        vec![Op::PutLock(lock("y1")), Op::PutLock(lock("y2")), Op::DeleteLock { id: "gone".into() }],
        vec![Op::DeleteLock { id: "old".into() }, Op::PutLock(lock("z1"))],
        vec![Op::PutLock(lock("p"))],
    ];
    let answers = grouped(&scratch, &store, requests).await;
    let answers = &answers[2..];
    assert_eq!(answers[0].as_ref().unwrap(), &vec![Outcome::Done; 3]);
    assert!(matches!(&answers[1], Err(Error::NotFound { id, .. }) if id == "gone"), "{:?}", answers[1]);
    assert_eq!(answers[2].as_ref().unwrap(), &vec![Outcome::Done; 2]);
    assert_eq!(answers[3].as_ref().unwrap(), &vec![Outcome::Done]);
    assert_eq!(all_ids(&*store).await, ["blocker-1", "blocker-2", "p", "x1", "x2", "x3", "z1"]);
}

/// A node fenced while its writes wait in a group: the fence is checked in
/// the group's own transaction, so every grouped write fails with `Fenced`
/// and none of them is visible; the writes that committed before the new
/// node's open stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_nodes_grouped_writes_all_fail_and_change_nothing() {
    let Some(scratch) = Scratch::new() else { return };
    let a = Arc::new(scratch.open().await);
    let ea = a.epoch().await.unwrap();
    a.put_record("space", b"k", b"v").await.unwrap();
    let held = hold(&scratch, &a).await;
    let requests: Vec<Vec<Op>> = vec![
        vec![Op::PutLock(lock("f1"))],
        vec![Op::DeleteLock { id: "blocker-1".into() }],
        vec![Op::PutLock(lock("f2")), Op::PutLock(lock("f3"))],
        vec![Op::PutRecord { space: "space".into(), key: b"k".to_vec(), value: b"w".to_vec() }],
        vec![Op::PutHandle(sample::handle(3))],
    ];
    let n = requests.len();
    let answers: Vec<Answer> = requests.into_iter().map(|ops| spawn(&a, ops)).collect();
    wait_queued(&a, n + 1).await;
    // The open queues behind the blockers, the group behind the open.
    let b = {
        let scratch_config = scratch.config();
        tokio::spawn(async move { PostgresLockStore::open(scratch_config).await.expect("open B") })
    };
    wait_blocked(&scratch, held.pid, 3).await;
    held.holder.batch_execute("ROLLBACK").await.expect("release the epoch row");
    for blocker in held.blocked {
        blocker.await.unwrap().expect("a blocker committed before B opened");
    }
    let b = b.await.unwrap();
    let eb = b.epoch().await.unwrap();
    assert_eq!(eb, ea + 1);
    for answer in answers {
        assert_fenced(answer.await.unwrap(), ea, eb);
    }
    assert_eq!(a.group_stats().waiting, 0);
    assert_eq!(all_ids(&b).await, ["blocker-1", "blocker-2"], "no grouped write of A landed");
    assert_eq!(b.get_record("space", b"k").await.unwrap(), Some(b"v".to_vec()));
    assert!(matches!(b.get_handle("open-3").await, Err(Error::NotFound { .. })));
    assert_fenced(a.put_lock(lock("later")).await, ea, eb);
}

/// The upserts and deletes of locks in a group (one statement each for the
/// group): two puts of one id both succeed and one of them is what remains,
/// two deletes of one id find it once, a delete of an absent lock fails
/// with `NotFound`, and every other put lands with this node's epoch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_puts_and_deletes_answer_each_request() {
    let Some(scratch) = Scratch::new() else { return };
    let store = Arc::new(scratch.open().await);
    store.put_lock(lock("e")).await.unwrap();
    let twin = |owner: &str| sample::byte_range("d", "s", "f-d", owner, "c");
    let mut requests: Vec<Vec<Op>> = vec![
        vec![Op::PutLock(twin("first"))],
        vec![Op::PutLock(twin("second"))],
        vec![Op::DeleteLock { id: "e".into() }],
        vec![Op::DeleteLock { id: "e".into() }],
        vec![Op::DeleteLock { id: "absent".into() }],
    ];
    requests.extend((0..20).map(|i| vec![Op::PutLock(lock(&format!("p{i:02}")))]));
    let answers = grouped(&scratch, &store, requests).await;
    let answers = &answers[2..];
    assert_eq!(answers[0].as_ref().unwrap(), &vec![Outcome::Done]);
    assert_eq!(answers[1].as_ref().unwrap(), &vec![Outcome::Done]);
    let deleted: Vec<bool> = answers[2..4].iter().map(|a| a.is_ok()).collect();
    assert!(deleted == [true, false] || deleted == [false, true], "{:?}", &answers[2..4]);
    for refused in answers[2..5].iter().filter(|a| a.is_err()) {
        assert!(matches!(refused, Err(Error::NotFound { entity: Entity::Lock, .. })), "{refused:?}");
    }
    assert!(answers[5..].iter().all(|a| a.as_ref().is_ok_and(|o| o == &vec![Outcome::Done])));
    let epoch = store.epoch().await.unwrap();
    let stamped = |mut l: PersistedLock| {
        l.server_epoch = epoch;
        l
    };
    let d = store.get_lock("d").await.unwrap();
    assert!(d == stamped(twin("first")) || d == stamped(twin("second")), "{d:?}");
    assert_eq!(d.server_epoch, epoch);
    let all = store.list_locks(&LockQuery::all()).await.unwrap();
    assert_eq!(all.len(), 2 + 1 + 20, "blockers, d and the 20 puts; e deleted");
    assert!(all.iter().all(|l| l.server_epoch == epoch));
    for (i, l) in all.iter().filter(|l| l.id.starts_with('p')).enumerate() {
        assert_eq!(*l, stamped(lock(&format!("p{i:02}"))));
    }
}

/// A database error inside a group (here a durable-handle put that loses
/// the race for a file id to a concurrent transaction: a unique violation,
/// reported as a serialization failure) rolls the group back and each
/// request runs alone: the put retries and gets `HandleConflict`, the
/// others commit, and no group transaction is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_error_in_a_group_splits_it_and_each_request_runs_alone() {
    let Some(scratch) = Scratch::new() else { return };
    let store = Arc::new(scratch.open().await);
    store.put_lock(lock("r1")).await.unwrap();
    store.put_lock(lock("r2")).await.unwrap();
    // The blockers wait on rows r1 and r2 (past the fence), so the group
    // forms.
    let holder = scratch.sql().await;
    let holder_pid = backend_pid(&holder).await;
    holder
        .batch_execute("BEGIN; SELECT id FROM lockwal_locks WHERE id IN ('r1'::bytea, 'r2'::bytea) FOR UPDATE")
        .await
        .unwrap();
    let mut blockers = Vec::new();
    for n in 1..=2 {
        blockers.push(spawn(&store, vec![Op::PutLock(lock(&format!("r{n}")))]));
        wait_blocked(&scratch, holder_pid, n).await;
    }
    let y = DurableHandle { id: "y".into(), ..sample::handle(5) };
    let requests = vec![vec![Op::PutHandle(y.clone())], vec![Op::PutLock(lock("g1"))], vec![Op::PutLock(lock("g2"))]];
    let answers: Vec<Answer> = requests.into_iter().map(|ops| spawn(&store, ops)).collect();
    wait_queued(&store, 4).await;
    // A caller's transaction puts handle x with the same file id, uncommitted.
    let mut caller = caller_client(&scratch).await;
    let caller_pid = backend_pid(&caller).await;
    let tx = caller.transaction().await.unwrap();
    let x = DurableHandle { id: "x".into(), ..sample::handle(5) };
    store.transaction_in(&tx, vec![Op::PutHandle(x.clone())]).await.unwrap();
    let before = store.group_stats();
    holder.batch_execute("ROLLBACK").await.unwrap();
    for blocker in blockers {
        blocker.await.unwrap().expect("blocker");
    }
    // The group's put of y waits for x's transaction; x commits first.
    wait_blocked(&scratch, caller_pid, 1).await;
    tx.commit().await.unwrap();
    let answers: Vec<_> = {
        let mut out = Vec::new();
        for answer in answers {
            out.push(answer.await.unwrap());
        }
        out
    };
    match &answers[0] {
        Err(Error::HandleConflict { id, field, holder }) => {
            assert_eq!((&**id, *field, &**holder), ("y", "file_id", "x"))
        }
        other => panic!("expected HandleConflict, got {other:?}"),
    }
    assert!(answers[1..].iter().all(|a| a.as_ref().is_ok_and(|o| o == &vec![Outcome::Done])), "{answers:?}");
    let after = store.group_stats();
    assert_eq!((after.groups, after.grouped), (before.groups, before.grouped), "the group did not commit");
    assert_eq!(all_ids(&*store).await, ["g1", "g2", "r1", "r2"]);
    assert_eq!(store.get_handle("x").await.unwrap(), x);
    assert!(matches!(store.get_handle("y").await, Err(Error::NotFound { .. })));
}

/// Checked grants in one group are judged in the group's order, each
/// against the rows read and the group's grants accepted before it, after
/// the group's plain puts: refused by a stored lock, by an earlier grant of
/// the group, or by a put of the group; granted over the owner's own lock,
/// and over a lock that an earlier grant of the group moved away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checked_grants_in_a_group_see_the_group_before_them() {
    let Some(scratch) = Scratch::new() else { return };
    let store = Arc::new(scratch.open().await);
    let on = |id: &str, owner: &str, page: u64, exclusive: bool| {
        let mut lock = sample::byte_range(id, "s", "f", owner, "c");
        lock.kind = LockKind::ByteRange(ByteRange {
            lock_type: if exclusive { LockType::Exclusive } else { LockType::Shared },
            offset: page * 4096,
            length: 4096,
            zero_byte: false,
            flavor: RangeFlavor::Posix,
        });
        lock
    };
    store.put_lock(on("held", "o1", 0, true)).await.unwrap();
    let requests = vec![
        vec![Op::PutLock(on("put", "o6", 3, true))],
        vec![Op::Grant(on("g1", "o2", 0, false))],  // refused by "held"
        vec![Op::Grant(on("g2", "o2", 1, true))],   // granted
        vec![Op::Grant(on("g3", "o3", 1, false))],  // refused by g2, of this group
        vec![Op::Grant(on("g4", "o2", 1, false))],  // granted: g2 is its owner's
        vec![Op::Grant(on("held", "o4", 2, true))], // moves "held" to page 2
        vec![Op::Grant(on("g6", "o5", 0, true))],   // granted: page 0 is free now
        vec![Op::Grant(on("g7", "o7", 3, false))],  // refused by the group's put
    ];
    let held = hold(&scratch, &store).await;
    let mut answers = Vec::new();
    for (n, ops) in requests.into_iter().enumerate() {
        answers.push(spawn(&store, ops));
        // One at a time into the queue, so the group holds them in order.
        wait_queued(&store, n + 2).await;
    }
    let groups_before = store.group_stats().groups;
    held.holder.batch_execute("ROLLBACK").await.unwrap();
    for blocked in held.blocked {
        blocked.await.unwrap().unwrap();
    }
    let mut refused_by = Vec::new();
    for answer in answers {
        refused_by.push(match answer.await.unwrap() {
            Ok(_) => None,
            Err(Error::Conflict { conflicts, .. }) => Some(ids(&conflicts.holders).join(",")),
            Err(e) => panic!("{e}"),
        });
    }
    let refused_by: Vec<Option<&str>> = refused_by.iter().map(Option::as_deref).collect();
    assert_eq!(refused_by, [None, Some("held"), None, Some("g2"), None, None, None, Some("put")]);
    assert!(store.group_stats().groups > groups_before, "they were committed as a group");
    assert_eq!(all_ids(&*store).await, ["blocker-1", "blocker-2", "g2", "g4", "g6", "held", "put"]);
    assert_eq!(store.get_lock("held").await.unwrap().owner_id.as_ref(), "o4");
}
