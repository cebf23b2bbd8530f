//! Cases about the test query (`test_lock`): one per row of DESIGN's
//! "Conflict rules" table, each checking the holders and the leases and
//! delegations to break that every backend reports, and that a test
//! writes nothing.

use super::super::Harness;
use super::support::{all, ids, stamped};
use lockwal::model::*;
use lockwal::testing::sample;
use lockwal::{Error, LockStore, Op};
use std::sync::Arc;

const EOF: u64 = 0;
const MAX: u64 = u64::MAX;

fn lock(id: &str, owner: &str, client: &str, kind: LockKind) -> PersistedLock {
    PersistedLock {
        id: id.into(),
        share: "s".into(),
        file_id: "f".into(),
        owner_id: owner.into(),
        client_id: client.into(),
        kind,
        acquired_at: Timestamp::from_unix_micros(1),
        server_epoch: 0,
    }
}

fn posix(exclusive: bool, offset: u64, length: u64) -> LockKind {
    let lock_type = if exclusive { LockType::Exclusive } else { LockType::Shared };
    LockKind::ByteRange(ByteRange { lock_type, offset, length, zero_byte: false, flavor: RangeFlavor::Posix })
}

fn smb(exclusive: bool, offset: u64, length: u64) -> LockKind {
    let lock_type = if exclusive { LockType::Exclusive } else { LockType::Shared };
    let flavor = RangeFlavor::Smb { share_deny: ShareDeny::None };
    LockKind::ByteRange(ByteRange { lock_type, offset, length, zero_byte: false, flavor })
}

fn smb_zero(exclusive: bool, offset: u64) -> LockKind {
    match smb(exclusive, offset, 0) {
        LockKind::ByteRange(r) => LockKind::ByteRange(ByteRange { zero_byte: true, ..r }),
        _ => unreachable!(),
    }
}

fn share(access: ShareAccess, deny: ShareDeny) -> LockKind {
    LockKind::Share(ShareReservation { access, deny })
}

fn lease(state: LeaseState) -> LockKind {
    LockKind::Lease(sample::lease(9, state))
}

fn delegation(delegation_type: DelegationType, revoked: bool) -> LockKind {
    LockKind::Delegation(Delegation {
        delegation_id: vec![4, 2],
        delegation_type,
        breaking: false,
        recalled: false,
        revoked,
        notification_mask: 0,
        is_directory: false,
    })
}

async fn store_with(h: &mut impl Harness, held: &[PersistedLock]) -> Arc<dyn LockStore> {
    let store = h.open().await;
    for lock in held {
        store.put_lock(lock.clone()).await.expect("put");
    }
    store
}

/// Asserts the ids `test_lock` reports for `candidate`: (holders, to_break),
/// and that a checked grant of it decides the same: refused with those
/// locks, or accepted (seen by a later operation of the same transaction
/// failing, so that nothing is written either way).
async fn expect(store: &Arc<dyn LockStore>, candidate: PersistedLock, holders: &[&str], to_break: &[&str]) {
    let before = all(store).await;
    let got = store.test_lock(&candidate).await.expect("test_lock");
    let want = (holders.iter().map(|s| s.to_string()).collect(), to_break.iter().map(|s| s.to_string()).collect());
    assert_eq!((ids(&got.holders), ids(&got.to_break)), want, "candidate {candidate:?}");
    assert_eq!(all(store).await, before, "a test writes nothing");
    let grant = store.transaction(vec![Op::Grant(candidate.clone()), Op::DeleteLock { id: "never-held".into() }]).await;
    match grant {
        Err(Error::Conflict { id, conflicts }) => {
            assert_eq!(id, *candidate.id);
            assert_eq!(*conflicts, got, "the grant reports what the test does: {candidate:?}");
        }
        Err(Error::NotFound { id, .. }) if id == "never-held" => {
            assert!(got.is_clear(), "granted despite {got:?}: {candidate:?}")
        }
        other => panic!("grant of {candidate:?}: {other:?}"),
    }
    assert_eq!(all(store).await, before, "a failed transaction writes nothing");
}

/// Row "POSIX/NLM/NFSv4 ranges": overlap, one exclusive and another owner
/// conflict; shared with shared, adjacent ranges and the owner's own locks
/// do not; "to end of file" (length 0 or 2^64-1) reaches byte 2^64-1.
pub async fn posix_ranges_conflict_on_overlap_exclusive_other_owner(mut h: impl Harness) {
    let held = [
        lock("a", "o1", "c1", posix(true, 10, 10)),    // bytes 10..=19
        lock("b", "o1", "c1", posix(false, 100, EOF)), // 100..=2^64-1
        lock("c", "o2", "c2", posix(false, MAX, 1)),   // the last byte alone
    ];
    let store = store_with(&mut h, &held).await;
    expect(&store, lock("x", "o2", "c2", posix(false, 19, 1)), &["a"], &[]).await;
    expect(&store, lock("x", "o2", "c2", posix(true, 20, 80)), &[], &[]).await; // 20..=99: adjacent to both
    expect(&store, lock("x", "o2", "c2", posix(false, 200, 5)), &[], &[]).await; // shared over shared
    expect(&store, lock("x", "o2", "c2", posix(true, 200, 5)), &["b"], &[]).await;
    expect(&store, lock("x", "o3", "c3", posix(true, MAX - 1, MAX)), &["b", "c"], &[]).await;
    expect(&store, lock("x", "o3", "c3", posix(true, 0, EOF)), &["a", "b", "c"], &[]).await;
    expect(&store, lock("x", "o1", "c1", posix(true, 0, EOF)), &["c"], &[]).await; // own locks never conflict
    expect(&store, lock("a", "o2", "c2", posix(true, 10, 10)), &[], &[]).await; // its own id is skipped
    let mut elsewhere = lock("x", "o3", "c3", posix(true, 0, EOF));
    elsewhere.file_id = "other".into();
    expect(&store, elsewhere, &[], &[]).await;
}

/// Row "SMB ranges" (MS-FSA 2.1.4.10): another open conflicts like POSIX;
/// the same open stacks shared locks over its own locks but an exclusive
/// request over its own overlapping lock fails; a zero-byte lock at x
/// overlaps only a range holding bytes x - 1 and x, and never at offset 0.
pub async fn smb_ranges_follow_ms_fsa(mut h: impl Harness) {
    let held = [lock("a", "open1", "c1", smb(true, 10, 10)), lock("z", "open3", "c3", smb_zero(true, 50))];
    let store = store_with(&mut h, &held).await;
    expect(&store, lock("x", "open2", "c2", smb(false, 0, 11)), &["a"], &[]).await;
    expect(&store, lock("x", "open1", "c1", smb(false, 12, 2)), &[], &[]).await; // own: shared stacks
    expect(&store, lock("x", "open1", "c1", smb(true, 12, 2)), &["a"], &[]).await; // own: exclusive fails
    expect(&store, lock("x", "open2", "c2", smb_zero(false, 15)), &["a"], &[]).await; // 14 and 15 locked
    expect(&store, lock("x", "open2", "c2", smb_zero(true, 10)), &[], &[]).await; // byte 9 is not
    expect(&store, lock("x", "open2", "c2", smb_zero(true, 20)), &[], &[]).await; // byte 20 is not
    expect(&store, lock("x", "open2", "c2", smb(true, 49, 2)), &["z"], &[]).await; // holds 49 and 50
    expect(&store, lock("x", "open2", "c2", smb(true, 50, 5)), &[], &[]).await;
    expect(&store, lock("x", "open2", "c2", smb_zero(true, 50)), &[], &[]).await; // zero vs zero
    expect(&store, lock("x", "open2", "c2", smb_zero(true, 0)), &[], &[]).await; // {0, 0}
}

/// Row "POSIX against SMB" (multi-protocol): overlap with one exclusive
/// conflicts, whichever side is SMB; shared with shared does not.
pub async fn posix_against_smb_conflicts_with_one_exclusive(mut h: impl Harness) {
    let held = [lock("p", "nlm1", "c1", posix(false, 0, 100)), lock("s", "open1", "c2", smb(true, 200, 10))];
    let store = store_with(&mut h, &held).await;
    expect(&store, lock("x", "open2", "c3", smb(true, 50, 1)), &["p"], &[]).await;
    expect(&store, lock("x", "open2", "c3", smb(false, 50, 1)), &[], &[]).await;
    expect(&store, lock("x", "nlm2", "c3", posix(false, 205, EOF)), &["s"], &[]).await;
}

/// Row "share reservations": access meets deny or deny meets access, for
/// another owner; the same owner's opens never conflict.
pub async fn share_reservations_conflict_on_access_and_deny(mut h: impl Harness) {
    let held = [lock("r", "o1", "c1", share(ShareAccess::Read, ShareDeny::Write))];
    let store = store_with(&mut h, &held).await;
    expect(&store, lock("x", "o2", "c2", share(ShareAccess::Read, ShareDeny::None)), &[], &[]).await;
    expect(&store, lock("x", "o2", "c2", share(ShareAccess::Write, ShareDeny::None)), &["r"], &[]).await;
    expect(&store, lock("x", "o2", "c2", share(ShareAccess::Read, ShareDeny::Read)), &["r"], &[]).await;
    expect(&store, lock("x", "o2", "c2", share(ShareAccess::ReadWrite, ShareDeny::All)), &["r"], &[]).await;
    expect(&store, lock("x", "o1", "c1", share(ShareAccess::Write, ShareDeny::All)), &[], &[]).await;
    expect(&store, lock("x", "o2", "c2", posix(true, 0, EOF)), &[], &[]).await; // ranges ignore opens
}

/// Row "leases and delegations": never refuse; another client's candidate
/// must break a write-caching one, and a read-caching one when it writes or
/// denies reading; the holder's own client and a revoked delegation need
/// nothing.
pub async fn leases_and_delegations_are_reported_to_break(mut h: impl Harness) {
    let held = [
        lock("lr", "o1", "c1", lease(LeaseState::READ | LeaseState::HANDLE)),
        lock("lw", "o1", "c1", lease(LeaseState::READ | LeaseState::WRITE)),
        lock("dr", "o2", "c2", delegation(DelegationType::Read, false)),
        lock("dx", "o2", "c2", delegation(DelegationType::Write, true)),
    ];
    let store = store_with(&mut h, &held).await;
    expect(&store, lock("x", "o3", "c3", share(ShareAccess::Read, ShareDeny::None)), &[], &["lw"]).await;
    expect(&store, lock("x", "o3", "c3", share(ShareAccess::Write, ShareDeny::None)), &[], &["dr", "lr", "lw"]).await;
    expect(&store, lock("x", "o3", "c3", posix(false, 0, 1)), &[], &["lw"]).await;
    expect(&store, lock("x", "o3", "c3", posix(true, 0, 1)), &[], &["dr", "lr", "lw"]).await;
    expect(&store, lock("x", "o3", "c1", posix(true, 0, 1)), &[], &["dr"]).await; // c1's own leases stay
    expect(&store, lock("x", "o3", "c3", lease(LeaseState::READ)), &[], &["lw"]).await;
    expect(&store, lock("x", "o3", "c3", delegation(DelegationType::Write, false)), &[], &["dr", "lr", "lw"]).await;
}

/// A candidate that fails validation is refused with the put's error.
pub async fn test_lock_validates_the_candidate(mut h: impl Harness) {
    let store = h.open().await;
    let bad = lock("x", "o", "c", posix(true, MAX, 2));
    assert!(matches!(store.test_lock(&bad).await, Err(lockwal::Error::InvalidInput { .. })), "overflowing range");
}

/// A checked grant that nothing refuses is a put: stored with the current
/// epoch, there after a restart; one that is refused leaves no trace.
pub async fn checked_grant_is_a_put_when_clear(mut h: impl Harness) {
    let store = store_with(&mut h, &[lock("a", "o1", "c1", posix(true, 0, 10))]).await;
    let epoch = store.epoch().await.unwrap();
    let clear = lock("b", "o2", "c2", posix(true, 10, 10));
    store.grant(clear.clone()).await.expect("nothing refuses it");
    let refused = store.grant(lock("c", "o2", "c2", posix(false, 5, 1))).await;
    assert!(matches!(&refused, Err(Error::Conflict { id, .. }) if id == "c"), "{refused:?}");
    let store = h.reopen(store).await;
    assert_eq!(store.get_lock("b").await.unwrap(), stamped(clear, epoch));
    assert_eq!(ids(&all(&store).await), ["a", "b"]);
}

/// In one transaction the owner changes its own locks first and the check
/// sees the result: an unlock of a middle range (split in two) lets another
/// owner in between, and a grant over what the split kept is refused by the
/// lock put earlier in the same transaction, the whole transaction with it.
pub async fn checked_grant_sees_the_transaction_so_far(mut h: impl Harness) {
    let store = store_with(&mut h, &[lock("a", "o1", "c1", posix(true, 0, 100))]).await;
    let split = |grant: PersistedLock| {
        vec![
            Op::DeleteLock { id: "a".into() },
            Op::PutLock(lock("a-left", "o1", "c1", posix(true, 0, 40))),
            Op::PutLock(lock("a-right", "o1", "c1", posix(true, 60, 40))),
            Op::Grant(grant),
        ]
    };
    let before = all(&store).await;
    let refused = store.transaction(split(lock("x", "o2", "c2", posix(true, 30, 20)))).await;
    match refused {
        Err(Error::Conflict { conflicts, .. }) => assert_eq!(ids(&conflicts.holders), ["a-left"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(all(&store).await, before, "nothing of the transaction applied");
    store.transaction(split(lock("x", "o2", "c2", posix(true, 40, 20)))).await.expect("the middle is free");
    assert_eq!(ids(&all(&store).await), ["a-left", "a-right", "x"]);
    // A POSIX upgrade: the owner's shared lock becomes exclusive in place.
    store.put_lock(lock("s", "o3", "c3", posix(false, 500, 10))).await.unwrap();
    store.grant(lock("s", "o3", "c3", posix(true, 500, 10))).await.expect("its own lock does not refuse it");
    store.put_lock(lock("t", "o4", "c4", posix(false, 505, 1))).await.unwrap();
    let upgrade = store.grant(lock("t", "o4", "c4", posix(true, 505, 1))).await;
    assert!(matches!(&upgrade, Err(Error::Conflict { conflicts, .. }) if ids(&conflicts.holders) == ["s"]));
}

/// Of many tasks racing to grant overlapping exclusive ranges of one file,
/// each for another owner, exactly one succeeds; every other gets
/// `Conflict` naming the winner.
pub async fn racing_checked_grants_grant_exactly_one(mut h: impl Harness) {
    const TASKS: usize = 64;
    let store = h.open().await;
    let start = Arc::new(tokio::sync::Barrier::new(TASKS));
    let racers = (0..TASKS).map(|i| {
        let (store, start) = (Arc::clone(&store), Arc::clone(&start));
        tokio::spawn(async move {
            let candidate = lock(&format!("r{i:02}"), &format!("o{i}"), &format!("c{i}"), posix(true, i as u64, 100));
            start.wait().await;
            store.grant(candidate).await
        })
    });
    let mut results = Vec::new();
    for racer in racers.collect::<Vec<_>>() {
        results.push(racer.await.expect("task"));
    }
    let held = all(&store).await;
    assert_eq!(held.len(), 1, "exactly one granted: {:?}", ids(&held));
    let winner = &held[0].id;
    for (i, result) in results.iter().enumerate() {
        match result {
            Ok(()) => assert_eq!(format!("r{i:02}"), **winner),
            Err(Error::Conflict { conflicts, .. }) => {
                assert_eq!(ids(&conflicts.holders), [winner.to_string()], "task {i}")
            }
            Err(e) => panic!("task {i}: {e}"),
        }
    }
}
