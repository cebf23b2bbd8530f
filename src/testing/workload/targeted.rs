//! A short workload aimed at the promises about durable handles and
//! records.

use super::{DISCONNECTED_FROM, NEVER_HELD, SPACES, Step, expires_at, handle, lock, record_value};
use crate::model::{DurableHandle, Timestamp};
use crate::op::Op;

/// What a transaction writes together: after any crash, either every
/// lock, record and handle of `locks`, `records` and `handles` is present
/// and every handle of `consumed` absent, or the reverse (once the
/// consumed handles were put: [`Targeted::handles_put_at`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Group {
    /// Lock ids.
    pub locks: Vec<String>,
    /// Records (keyspace, key).
    pub records: Vec<(String, Vec<u8>)>,
    /// Durable handle ids it puts.
    pub handles: Vec<String>,
    /// Durable handle ids it consumes.
    pub consumed: Vec<String>,
}

/// A short workload aimed at the promises about durable handles and
/// records, with what it must keep: see [`targeted`].
#[derive(Debug, Clone)]
pub struct Targeted {
    /// The steps.
    pub steps: Vec<Step>,
    /// What its transactions write together (no other step touches a
    /// group's members, but one that removes a whole group at once).
    pub groups: Vec<Group>,
    /// `(step, handle id)`: the handle is consumed (or expired) by that
    /// step, and no later step puts it again: once the step is
    /// acknowledged, it never comes back.
    pub gone: Vec<(usize, String)>,
    /// What transactions that fail half way would have written: never
    /// present.
    pub never: Group,
    /// The step that puts the handles the groups consume.
    pub handles_put_at: usize,
}

impl Targeted {
    /// Checks a state (the ids of its locks and handles, its record slots)
    /// reached after `acked` steps were acknowledged: every group wholly
    /// there or wholly absent, nothing of a failed transaction, and no
    /// handle back whose consume or expiry was acknowledged.
    pub fn check(
        &self,
        locks: &dyn Fn(&str) -> bool,
        records: &dyn Fn(&str, &[u8]) -> bool,
        handles: &dyn Fn(&str) -> bool,
        acked: usize,
    ) -> Result<(), String> {
        for group in &self.groups {
            let members: Vec<(String, bool)> = group
                .locks
                .iter()
                .map(|id| (format!("lock {id}"), locks(id)))
                .chain(group.records.iter().map(|(s, k)| (format!("record {s}/{k:?}"), records(s, k))))
                .chain(group.handles.iter().map(|id| (format!("handle {id}"), handles(id))))
                .chain(
                    group
                        .consumed
                        .iter()
                        .filter(|_| acked > self.handles_put_at)
                        .map(|id| (format!("handle {id} consumed"), !handles(id))),
                )
                .collect();
            if members.iter().any(|(_, p)| *p) && !members.iter().all(|(_, p)| *p) {
                return Err(format!("a transaction is torn apart: {members:?}"));
            }
        }
        let never = &self.never;
        if let Some(id) = never.locks.iter().find(|id| locks(id)) {
            return Err(format!("lock {id} of a failed transaction is present"));
        }
        if let Some((s, k)) = never.records.iter().find(|(s, k)| records(s, k)) {
            return Err(format!("record {s}/{k:?} of a failed transaction is present"));
        }
        if let Some(id) = never.handles.iter().find(|id| handles(id)) {
            return Err(format!("handle {id} of a failed transaction is present"));
        }
        if let Some((step, id)) = self.gone.iter().find(|(step, id)| *step < acked && handles(id)) {
            return Err(format!("handle {id} is back, although its consume (step {step}) was acknowledged"));
        }
        Ok(())
    }
}

/// A workload of transactions that mix durable handles, records and locks,
/// across a compaction, an unclean restart and a second compaction:
/// handles put together; a file created with its directory entry and lock,
/// another with two locks and two records; a reconnect that consumes a
/// handle by create GUID and restores its lock and a record; the first file
/// removed with its locks and entry; a transaction changing every kind that
/// fails half way (a swap expecting another value); a v1 reconnect by file
/// id; after the restart, a reconnect consuming with a reclaim; expiries at
/// a handle's expiry instant (kept) and the microsecond after (gone); the
/// second file removed through a swap; a handle, records with keys that
/// share a prefix (one of the largest value) and a lock put together.
pub fn targeted() -> Targeted {
    let long = |mut h: DurableHandle| {
        h.disconnected_at = Timestamp::from_unix_micros(DISCONNECTED_FROM);
        h.timeout_ms = 60_000;
        h
    };
    let (h1, h2, h3) = (long(handle(1, 1, Some(1), 7)), long(handle(2, 2, Some(2), 8)), long(handle(3, 3, None, 9)));
    let mut h4 = handle(4, 4, Some(4), 10);
    (h4.disconnected_at, h4.timeout_ms) = (Timestamp::from_unix_micros(DISCONNECTED_FROM), 1000);
    let e4 = expires_at(&h4);
    let (h6, h7) = (long(handle(6, 6, Some(6), 11)), long(handle(7, 7, None, 12)));
    let lock_on = |n: u64, file: &str| {
        let mut l = lock(n, n * 7 + 5);
        l.id = format!("t{n}").into();
        l.file_id = file.into();
        l
    };
    let t2 = lock_on(2, "file-2");
    let slot = |space: usize, key: &str| (SPACES[space].to_owned(), key.as_bytes().to_vec());
    let put = |(space, key): (String, Vec<u8>), value: u64| Op::PutRecord { space, key, value: record_value(value) };
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let steps = vec![
        Step::Open,
        Step::Txn(vec![
            Op::PutHandle(h1.clone()),
            Op::PutHandle(h2.clone()),
            Op::PutHandle(h3.clone()),
            Op::PutHandle(h4.clone()),
        ]),
        // 2: a file created with its directory entry and lock.
        Step::Txn(vec![put(slot(0, "d0/file-1"), 1), Op::PutLock(lock_on(1, "file-1"))]),
        // 3: another, with two locks and two records.
        Step::Txn(vec![
            put(slot(0, "d0/file-2"), 2),
            put(slot(2, "file-2"), 7),
            Op::PutLock(t2.clone()),
            Op::PutLock(lock_on(3, "file-2")),
        ]),
        Step::Compact,
        // 5: a reconnect: the handle consumed, its lock and a record back.
        Step::Txn(vec![
            Op::ConsumeHandleByCreateGuid { create_guid: h1.create_guid.expect("v2") },
            Op::PutLock(lock_on(4, "file-4")),
            put(slot(2, "h1"), 3),
        ]),
        // 6: the first file removed with its lock and entry.
        Step::Txn(vec![
            Op::DeleteRecord { space: SPACES[0].into(), key: b"d0/file-1".to_vec() },
            Op::DeleteLocksByFile { file_id: "file-1".into() },
        ]),
        // 7: fails half way, at the swap: nothing of it is applied.
        Step::Txn(vec![
            put(slot(0, "d0/file-5"), 4),
            Op::PutLock(lock_on(5, "file-5")),
            Op::PutHandle(h6),
            Op::ConsumeHandleByFileId { file_id: h3.file_id },
            Op::SwapRecord {
                space: SPACES[0].into(),
                key: b"d0/file-2".to_vec(),
                expected: Some(NEVER_HELD.to_vec()),
                value: None,
            },
            Op::PutLock(lock_on(6, "file-5")),
        ]),
        // 8: a v1 reconnect, by file id, with a record.
        Step::Txn(vec![Op::ConsumeHandleByFileId { file_id: h3.file_id }, put(slot(2, "h3"), 5)]),
        Step::Drop,
        Step::Open,
        // 11: a reconnect after the restart, with the reclaim of its lock.
        Step::Txn(vec![
            Op::ConsumeHandleByCreateGuid { create_guid: h2.create_guid.expect("v2") },
            Op::Reclaim { id: "t2".into(), client_id: t2.client_id.to_string() },
        ]),
        // 12: at h4's expiry instant it is still valid; 13: after it, gone.
        Step::Txn(vec![Op::ExpireHandles { now: Timestamp::from_unix_micros(e4) }]),
        Step::Txn(vec![Op::ExpireHandles { now: Timestamp::from_unix_micros(e4 + 1) }]),
        // 14: the second file removed, its entry through a swap.
        Step::Txn(vec![
            Op::SwapRecord {
                space: SPACES[0].into(),
                key: b"d0/file-2".to_vec(),
                expected: Some(record_value(2)),
                value: None,
            },
            Op::DeleteLocksByFile { file_id: "file-2".into() },
            Op::DeleteRecord { space: SPACES[2].into(), key: b"file-2".to_vec() },
        ]),
        // 15: a handle, records whose keys share a prefix (one of the
        // largest value: a frame far larger than a segment), and a lock.
        Step::Txn(vec![
            Op::PutHandle(h7),
            put(slot(1, "ab"), 6),
            put(slot(1, "abc"), 0),
            put(slot(1, "ab/c"), 7),
            Op::PutRecord {
                space: SPACES[1].into(),
                key: b"ab/big".to_vec(),
                value: vec![0xB1; crate::model::validate::MAX_VALUE_LEN],
            },
            Op::PutLock(lock_on(7, "file-7")),
        ]),
        Step::Compact,
        Step::Close,
    ];
    let records = |v: &[(usize, &str)]| v.iter().map(|&(s, k)| slot(s, k)).collect::<Vec<_>>();
    let groups = vec![
        Group { locks: strings(&["t1"]), records: records(&[(0, "d0/file-1")]), ..Group::default() },
        Group {
            locks: strings(&["t2", "t3"]),
            records: records(&[(0, "d0/file-2"), (2, "file-2")]),
            ..Group::default()
        },
        Group {
            locks: strings(&["t4"]),
            records: records(&[(2, "h1")]),
            consumed: strings(&["h1"]),
            ..Group::default()
        },
        Group { records: records(&[(2, "h3")]), consumed: strings(&["h3"]), ..Group::default() },
        Group {
            locks: strings(&["t7"]),
            records: records(&[(1, "ab"), (1, "abc"), (1, "ab/c"), (1, "ab/big")]),
            handles: strings(&["h7"]),
            ..Group::default()
        },
    ];
    let gone = vec![(5, "h1".into()), (8, "h3".into()), (11, "h2".into()), (13, "h4".into())];
    let never = Group {
        locks: strings(&["t5", "t6"]),
        records: records(&[(0, "d0/file-5")]),
        handles: strings(&["h6"]),
        consumed: Vec::new(),
    };
    Targeted { steps, groups, gone, never, handles_put_at: 1 }
}
