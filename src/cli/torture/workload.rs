//! The workload both processes agree on: the store options, the ids each
//! writer task owns (`t<task>-<slot>` and `torture-client-<task>`), the
//! seeded random numbers, and [`TaskView`], which picks each task's next
//! transaction so that it is valid for the records the task holds. Names
//! nothing else of `torture`.

use lockwal::model::{
    ByteRange, ClientDetails, ClientKind, ClientRecord, LockKind, LockType, Nfs4Details, PersistedLock, RangeFlavor,
    ShareDeny, Timestamp, validate::MAX_TXN_OPS,
};
use lockwal::op::Op;
use lockwal::testing::sample;
use lockwal::wal::WalOptions;
use std::collections::{BTreeMap, BTreeSet};

/// Lock ids per task.
pub(super) const SLOTS: u32 = 8;

/// The store options of parent and child: small segments and a low
/// compaction threshold, so kills also land in rotations and compactions.
pub(super) fn options() -> WalOptions {
    WalOptions { segment_size: 256 << 10, compact_after_bytes: Some(512 << 10), ..WalOptions::default() }
}

/// xorshift64*: enough randomness for a workload, no dependency.
pub(in crate::cli) struct Rng(u64);

impl Rng {
    pub(in crate::cli) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(in crate::cli) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(in crate::cli) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

pub(in crate::cli) fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

pub(super) fn lock_id(task: u32, slot: u32) -> String {
    format!("t{task}-{slot}")
}

pub(super) fn client_id(task: u32) -> String {
    format!("torture-client-{task}")
}

/// The task a lock id or client id belongs to.
pub(super) fn owner_task(id: &str) -> Option<u32> {
    if let Some(rest) = id.strip_prefix("torture-client-") {
        return rest.parse().ok();
    }
    let (task, slot) = id.strip_prefix('t')?.split_once('-')?;
    let slot: u32 = slot.parse().ok()?;
    (slot < SLOTS).then_some(())?;
    task.parse().ok()
}

/// What a task knows about its own records.
pub(super) struct TaskView {
    pub(super) task: u32,
    /// Held slots and the epoch each was stamped with.
    pub(super) held: BTreeMap<u32, u64>,
    pub(super) has_client: bool,
    pub(super) epoch: u64,
}

impl TaskView {
    fn lock(&self, rng: &mut Rng, slot: u32) -> PersistedLock {
        let kind = if rng.below(10) < 7 {
            LockKind::ByteRange(ByteRange {
                lock_type: if rng.below(2) == 0 { LockType::Shared } else { LockType::Exclusive },
                offset: rng.below(1 << 40),
                length: rng.below(1 << 20),
                zero_byte: false,
                flavor: if rng.below(2) == 0 {
                    RangeFlavor::Posix
                } else {
                    RangeFlavor::Smb { share_deny: ShareDeny::Write }
                },
            })
        } else {
            let templates = sample::every_kind();
            templates[rng.below(templates.len() as u64) as usize].kind.clone()
        };
        PersistedLock {
            id: lock_id(self.task, slot).into(),
            share: format!("share-{}", rng.below(3)).into(),
            file_id: format!("file-{}", rng.below(16)).into(),
            owner_id: format!("owner-{}-{}", self.task, rng.below(4)).into(),
            client_id: client_id(self.task).into(),
            kind,
            acquired_at: Timestamp::now(),
            server_epoch: 0,
        }
    }

    fn client(&self, seq: u64) -> ClientRecord {
        ClientRecord {
            client_id: client_id(self.task),
            name: format!("torture client {}", self.task),
            verifier: seq.to_le_bytes().to_vec(),
            principal: String::new(),
            callback: vec![self.task as u8; 4],
            registered_at: Timestamp::now(),
            epoch: self.epoch,
            reclaim_complete: seq.is_multiple_of(2),
            details: ClientDetails::Nfs4(Nfs4Details { short_id: seq }),
        }
    }

    /// One transaction, valid for the task's current records.
    pub(super) fn choose(&self, rng: &mut Rng, seq: u64) -> Vec<Op> {
        let held: Vec<u32> = self.held.keys().copied().collect();
        let any_slot = |rng: &mut Rng| rng.below(u64::from(SLOTS)) as u32;
        let slot = any_slot(rng);
        match rng.below(100) {
            0..40 => vec![Op::PutLock(self.lock(rng, slot))],
            40..62 if !held.is_empty() => {
                vec![Op::DeleteLock { id: lock_id(self.task, held[rng.below(held.len() as u64) as usize]) }]
            }
            62..67 => {
                let stale: Vec<u32> = self.held.iter().filter(|(_, e)| **e < self.epoch).map(|(s, _)| *s).collect();
                match stale.get(rng.below(stale.len() as u64) as usize) {
                    Some(&slot) => vec![Op::Reclaim { id: lock_id(self.task, slot), client_id: client_id(self.task) }],
                    None => vec![Op::PutLock(self.lock(rng, slot))],
                }
            }
            67..70 => vec![Op::DeleteLocksByClient { client_id: client_id(self.task) }],
            70..78 if self.has_client && rng.below(3) == 0 => {
                vec![Op::DeleteClient { kind: ClientKind::Nfs4, client_id: client_id(self.task) }]
            }
            70..78 => vec![Op::PutClient(self.client(seq))],
            _ => {
                // A transaction over 2..=4 distinct slots, sometimes with the
                // client record.
                let n = 2 + rng.below(3) as usize;
                let mut slots = BTreeSet::new();
                while slots.len() < n {
                    slots.insert(any_slot(rng));
                }
                let mut ops: Vec<Op> = slots
                    .into_iter()
                    .map(|slot| {
                        if self.held.contains_key(&slot) && rng.below(2) == 0 {
                            Op::DeleteLock { id: lock_id(self.task, slot) }
                        } else {
                            Op::PutLock(self.lock(rng, slot))
                        }
                    })
                    .collect();
                if rng.below(3) == 0 {
                    ops.push(Op::PutClient(self.client(seq)));
                }
                debug_assert!(ops.len() <= MAX_TXN_OPS);
                ops
            }
        }
    }

    pub(super) fn applied(&mut self, ops: &[Op]) {
        for op in ops {
            match op {
                Op::PutLock(l) | Op::Grant(l) => {
                    let slot = l.id.rsplit_once('-').and_then(|(_, s)| s.parse().ok()).expect("own id");
                    self.held.insert(slot, self.epoch);
                }
                Op::DeleteLock { id } => {
                    let slot = id.rsplit_once('-').and_then(|(_, s)| s.parse().ok()).expect("own id");
                    self.held.remove(&slot);
                }
                Op::Reclaim { id, .. } => {
                    let slot = id.rsplit_once('-').and_then(|(_, s)| s.parse().ok()).expect("own id");
                    self.held.insert(slot, self.epoch);
                }
                Op::DeleteLocksByClient { .. } => self.held.clear(),
                Op::PutClient(_) => self.has_client = true,
                Op::DeleteClient { .. } => self.has_client = false,
                Op::DeleteLocksByFile { .. }
                | Op::EndGrace { .. }
                | Op::UpdateLock(_)
                | Op::DeleteClients(_)
                | Op::MarkReclaimComplete { .. }
                | Op::PutHandle(_)
                | Op::DeleteHandle { .. }
                | Op::ConsumeHandleByFileId { .. }
                | Op::ConsumeHandleByCreateGuid { .. }
                | Op::ExpireHandles { .. }
                | Op::PutRecord { .. }
                | Op::DeleteRecord { .. }
                | Op::SwapRecord { .. } => unreachable!("not in the workload"),
            }
        }
    }
}
