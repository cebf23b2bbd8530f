//! Workloads generated from a seed.

use super::records::client_kind;
use super::{
    Expected, NEVER_HELD, Rng, SPACES, Step, client, create_guid, expires_at, file_id, handle, lock, record_key,
    record_value, update,
};
use crate::model::{
    ClientKind, ClientSelector, DurableHandle, LockKind, LockType, PersistedLock, ShareAccess, ShareDeny, Timestamp,
};
use crate::op::Op;

/// Generates a workload of about `ops` operations from `seed`: opens and
/// restarts (one clean, one not) each followed by a grace period of
/// reclaims (some refused, some in one transaction with the reconnect of a
/// durable handle) and `end_grace`, puts and overwrites, deletes (some of
/// missing locks, which fail), transactions (some failing as a whole),
/// bulk deletes by client and by file, client records, durable handles and
/// records (see the [module documentation](super)), transactions that mix them with
/// locks (some failing half way), a compaction every `compact_every`
/// operations (0: none), and a final clean close.
pub fn generate(seed: u64, ops: usize, compact_every: usize) -> Vec<Step> {
    let mut g = Generator {
        rng: Rng::new(seed),
        now: Expected::initial(),
        steps: Vec::new(),
        next_id: 0,
        next_key: 1 << 20,
        ops: 0,
    };
    g.push(Step::Open);
    let restarts = [ops / 3, 2 * ops / 3];
    let mut next_compaction = compact_every;
    let mut grace_left = 0;
    while g.ops < ops {
        let done = g.now.model.epoch as usize - 1;
        if let Some(&at) = restarts.get(done)
            && g.ops >= at
        {
            let i = done;
            g.push(if i == 0 { Step::Close } else { Step::Drop });
            g.push(Step::Open);
            grace_left = 12;
        }
        if grace_left > 0 {
            grace_left -= 1;
            let step = match grace_left {
                0 => Step::Txn(vec![Op::EndGrace { share: None }]),
                // One share's grace ends first.
                4 => Step::Txn(vec![Op::EndGrace { share: Some(format!("s{}", g.rng.below(3))) }]),
                _ => g.reclaim(),
            };
            g.push(step);
        } else {
            let step = g.normal();
            g.push(step);
        }
        if compact_every > 0 && g.ops >= next_compaction {
            g.push(Step::Compact);
            next_compaction += compact_every;
        }
    }
    g.push(Step::Close);
    g.steps
}

struct Generator {
    rng: Rng,
    now: Expected,
    steps: Vec<Step>,
    next_id: u64,
    /// The next fresh handle number, file id and create GUID.
    next_key: u64,
    ops: usize,
}

impl Generator {
    fn push(&mut self, step: Step) {
        self.now.apply(&step);
        self.ops += if let Step::Txn(ops) = &step { ops.len() } else { 1 };
        self.steps.push(step);
    }

    fn new_lock(&mut self) -> PersistedLock {
        self.next_id += 1;
        let variant = self.rng.below(1 << 20);
        lock(self.next_id, variant)
    }

    /// A new lock over an existing one, as strong as its kind allows (an
    /// exclusive range, an open denying everything), of another owner
    /// unless the generator picks the same: a checked grant of it is
    /// mostly refused.
    fn contested_lock(&mut self) -> PersistedLock {
        let mut lock = self.new_lock();
        let n = self.now.model.locks.len() as u64;
        let Some(held) = (n > 0).then(|| self.now.model.locks.values().nth(self.rng.below(n) as usize)).flatten()
        else {
            return lock;
        };
        lock.file_id = held.file_id.clone();
        lock.kind = held.kind.clone();
        match &mut lock.kind {
            LockKind::ByteRange(range) => range.lock_type = LockType::Exclusive,
            LockKind::Share(share) => (share.access, share.deny) = (ShareAccess::ReadWrite, ShareDeny::All),
            LockKind::Lease(_) | LockKind::Delegation(_) => {}
        }
        lock
    }

    /// An existing lock id, if any.
    fn existing(&mut self) -> Option<String> {
        let n = self.now.model.locks.len() as u64;
        (n > 0).then(|| self.now.model.locks.keys().nth(self.rng.below(n) as usize).cloned()).flatten()
    }

    fn existing_client(&mut self) -> Option<(ClientKind, String)> {
        let n = self.now.model.clients.len() as u64;
        (n > 0).then(|| self.now.model.clients.keys().nth(self.rng.below(n) as usize).cloned()).flatten()
    }

    /// An existing durable handle, if any.
    fn existing_handle(&mut self) -> Option<DurableHandle> {
        let n = self.now.model.handles.len() as u64;
        (n > 0).then(|| self.now.model.handles.values().nth(self.rng.below(n) as usize).cloned()).flatten()
    }

    /// The create GUID of an existing v2 handle, if any.
    fn existing_handle_with_guid(&mut self) -> Option<[u8; 16]> {
        let guids: Vec<[u8; 16]> = self.now.model.handles.values().filter_map(|h| h.create_guid).collect();
        (!guids.is_empty()).then(|| guids[self.rng.below(guids.len() as u64) as usize])
    }

    /// An existing record (space, key, value), if any.
    fn existing_record(&mut self) -> Option<(String, Vec<u8>, Vec<u8>)> {
        let n = self.now.model.records.len() as u64;
        let pick = (n > 0).then(|| self.now.model.records.iter().nth(self.rng.below(n) as usize)).flatten();
        pick.map(|((space, key), value)| (space.clone(), key.clone(), value.clone()))
    }

    /// A keyspace and a key drawn from the small sets.
    fn record_slot(&mut self) -> (String, Vec<u8>) {
        (SPACES[self.rng.below(SPACES.len() as u64) as usize].to_owned(), record_key(self.rng.below(24)))
    }

    /// A keyspace and key that holds no record now.
    fn absent_record(&mut self) -> (String, Vec<u8>) {
        for _ in 0..8 {
            let slot = self.record_slot();
            if !self.now.model.records.contains_key(&slot) {
                return slot;
            }
        }
        self.next_key += 1;
        (SPACES[0].to_owned(), format!("fresh-{}", self.next_key).into_bytes())
    }

    fn fresh(&mut self) -> u64 {
        self.next_key += 1;
        self.next_key
    }

    /// A handle whose id, file id and create GUID (if any) no handle has.
    fn fresh_handle(&mut self) -> DurableHandle {
        let (n, file, guid) = (self.fresh(), self.fresh(), self.fresh());
        let v2 = self.rng.chance(75);
        handle(n, file, v2.then_some(guid), self.rng.below(1 << 20))
    }

    /// A durable-handle operation: puts with fresh keys, overwrites (new
    /// keys, or the same), puts that collide with another handle's file id
    /// or create GUID (refused), deletes and consumes by file id and by
    /// create GUID of present and absent handles, and expiries at, just
    /// after and just before an expiry instant.
    fn handle_op(&mut self) -> Op {
        let crowded = self.now.model.handles.len() > 30;
        let r = self.rng.below(if crowded { 10 } else { 18 });
        let Some(other) = self.existing_handle() else { return Op::PutHandle(self.fresh_handle()) };
        match r {
            // Shrinking ops first, so that a crowded store drains.
            0..2 => Op::ConsumeHandleByFileId { file_id: other.file_id },
            2 | 3 => match self.existing_handle_with_guid() {
                Some(create_guid) => Op::ConsumeHandleByCreateGuid { create_guid },
                // A v1 handle has none: its file id as a GUID finds nothing.
                None => Op::ConsumeHandleByCreateGuid { create_guid: other.file_id },
            },
            4 => Op::DeleteHandle { id: other.id },
            5..7 => {
                let e = expires_at(&other);
                // At the instant itself the handle is still valid.
                let now = match self.rng.below(4) {
                    0 => e,
                    1 => e - 1,
                    _ => e + 1,
                };
                Op::ExpireHandles { now: Timestamp::from_unix_micros(now) }
            }
            7 => Op::ConsumeHandleByFileId { file_id: file_id(self.fresh()) },
            8 => Op::ConsumeHandleByCreateGuid { create_guid: create_guid(self.fresh()) },
            9 => Op::DeleteHandle { id: format!("h{}", self.fresh()) },
            10 | 11 => {
                // Collides: another handle's file id, or its create GUID.
                let mut h = self.fresh_handle();
                match other.create_guid {
                    Some(guid) if r == 11 => h.create_guid = Some(guid),
                    _ => h.file_id = other.file_id,
                }
                if self.rng.chance(30) {
                    // Also when the put overwrites a third handle.
                    if let Some(third) = self.existing_handle().filter(|t| t.id != other.id) {
                        h.id = third.id;
                    }
                }
                Op::PutHandle(h)
            }
            12 => {
                // The same handle again, its keys kept, other fields changed.
                let mut h = handle(0, 0, None, self.rng.below(1 << 20));
                (h.id, h.file_id, h.create_guid, h.version) =
                    (other.id, other.file_id, other.create_guid, other.version);
                Op::PutHandle(h)
            }
            13 => {
                // An overwrite that moves the handle to fresh keys.
                let mut h = self.fresh_handle();
                h.id = other.id;
                Op::PutHandle(h)
            }
            _ => Op::PutHandle(self.fresh_handle()),
        }
    }

    /// A record operation: puts (new keys and overwrites), deletes of
    /// present and absent records, swaps that succeed (set, remove, create)
    /// and that fail (another value expected, absent expected, present
    /// expected).
    fn record_op(&mut self) -> Op {
        let crowded = self.now.model.records.len() > 50;
        let r = self.rng.below(16);
        let existing = self.existing_record();
        let value = record_value(self.rng.below(64));
        match (r, existing) {
            (0..5, _) if !crowded => {
                let (space, key) = self.record_slot();
                Op::PutRecord { space, key, value }
            }
            (0..3, Some((space, key, _))) => Op::PutRecord { space, key, value },
            (0..7, Some((space, key, _))) => Op::DeleteRecord { space, key },
            (7, _) => {
                let (space, key) = self.absent_record();
                Op::DeleteRecord { space, key }
            }
            (8..11, Some((space, key, current))) => {
                let value = (!self.rng.chance(30)).then_some(value);
                Op::SwapRecord { space, key, expected: Some(current), value }
            }
            (11..13, _) => {
                let (space, key) = self.absent_record();
                Op::SwapRecord { space, key, expected: None, value: Some(value) }
            }
            (13, Some((space, key, _))) => {
                Op::SwapRecord { space, key, expected: Some(NEVER_HELD.to_vec()), value: Some(value) }
            }
            (14, Some((space, key, _))) => Op::SwapRecord { space, key, expected: None, value: Some(value) },
            (15, _) => {
                let (space, key) = self.absent_record();
                Op::SwapRecord { space, key, expected: Some(value), value: None }
            }
            _ => {
                let (space, key) = self.record_slot();
                Op::PutRecord { space, key, value }
            }
        }
    }

    /// An operation that fails now (and so fails its transaction), unless
    /// an earlier operation of the same transaction changed its target.
    fn failing_op(&mut self) -> Op {
        match (self.rng.below(5), self.existing_handle(), self.existing_record()) {
            (0, _, Some((space, key, _))) => {
                Op::SwapRecord { space, key, expected: Some(NEVER_HELD.to_vec()), value: None }
            }
            (1, Some(other), _) => {
                let mut h = self.fresh_handle();
                h.file_id = other.file_id;
                Op::PutHandle(h)
            }
            (2, _, _) => Op::ConsumeHandleByCreateGuid { create_guid: create_guid(self.fresh()) },
            (3, _, _) => {
                let (space, key) = self.absent_record();
                Op::DeleteRecord { space, key }
            }
            _ => Op::DeleteLock { id: "never-granted".into() },
        }
    }

    /// Transactions that mix records and handles with locks: a file created
    /// with its directory entry and a lock, a file removed with its locks
    /// and its entry, a reconnect that consumes a handle and restores the
    /// open's locks, random mixes, and mixes that fail half way (every
    /// kind changed before the failing operation, more after it).
    fn mixed(&mut self) -> Vec<Op> {
        match self.rng.below(10) {
            0..2 => {
                let lock = self.new_lock();
                let key = format!("d{}/{}", self.rng.below(3), lock.file_id).into_bytes();
                let value = lock.id.as_bytes().to_vec();
                vec![Op::PutRecord { space: SPACES[0].into(), key, value }, Op::PutLock(lock)]
            }
            2 => match (self.existing(), self.existing_record()) {
                (Some(id), Some((space, key, _))) => {
                    let file_id = self.now.model.locks[&id].file_id.to_string();
                    vec![Op::DeleteLocksByFile { file_id }, Op::DeleteRecord { space, key }]
                }
                _ => vec![self.record_op(), Op::PutLock(self.new_lock())],
            },
            3..5 => match self.existing_handle() {
                Some(h) => {
                    let consume = match h.create_guid {
                        Some(create_guid) if self.rng.chance(70) => Op::ConsumeHandleByCreateGuid { create_guid },
                        _ => Op::ConsumeHandleByFileId { file_id: h.file_id },
                    };
                    let mut lock = self.new_lock();
                    lock.share = h.share.clone().into();
                    let slot = (SPACES[2].to_owned(), h.id.into_bytes());
                    vec![
                        consume,
                        Op::PutLock(lock),
                        Op::PutRecord { space: slot.0, key: slot.1, value: record_value(self.rng.below(64)) },
                    ]
                }
                None => vec![Op::PutHandle(self.fresh_handle()), Op::PutLock(self.new_lock())],
            },
            5..7 => (0..2 + self.rng.below(5)).map(|_| self.any_op()).collect(),
            _ => {
                // Fails half way: nothing of it may be applied.
                let mut ops = vec![Op::PutLock(self.new_lock()), self.record_op(), self.handle_op()];
                if let Some((space, key, _)) = self.existing_record() {
                    ops.push(Op::DeleteRecord { space, key });
                }
                if let Some(h) = self.existing_handle() {
                    ops.push(Op::ConsumeHandleByFileId { file_id: h.file_id });
                }
                ops.push(self.failing_op());
                ops.extend((0..self.rng.below(3)).map(|_| self.any_op()));
                ops
            }
        }
    }

    /// One operation of any kind.
    fn any_op(&mut self) -> Op {
        match self.rng.below(4) {
            0 => self.put_or_delete(),
            1 => self.record_op(),
            2 => self.handle_op(),
            _ => match self.existing_client() {
                Some((kind, client_id)) if self.rng.chance(30) => Op::DeleteClient { kind, client_id },
                _ => Op::PutClient(client(self.rng.below(9), self.rng.below(1000))),
            },
        }
    }

    /// An update of an existing lock (kind fields changed, keys kept), or
    /// now and then of a missing one (fails).
    fn update(&mut self) -> Op {
        let variant = self.rng.below(1 << 20);
        match self.existing() {
            Some(id) if self.rng.chance(90) => {
                let old = self.now.model.locks.get(&id);
                let mut op = update(0, variant, old);
                if let Op::UpdateLock(lock) = &mut op {
                    lock.id = id.into();
                }
                op
            }
            _ => update(1 << 40, variant, None),
        }
    }

    fn put_or_delete(&mut self) -> Op {
        match self.existing() {
            Some(id) if self.rng.chance(40) => Op::DeleteLock { id },
            _ => Op::PutLock(self.new_lock()),
        }
    }

    fn reclaim(&mut self) -> Step {
        let epoch = self.now.model.epoch;
        let old: Vec<PersistedLock> =
            self.now.model.locks.values().filter(|l| l.server_epoch < epoch).cloned().collect();
        if old.is_empty() {
            return Step::Txn(vec![Op::PutLock(self.new_lock())]);
        }
        let lock = &old[self.rng.below(old.len() as u64) as usize];
        let client_id =
            if self.rng.chance(20) { format!("{}-thief", lock.client_id) } else { lock.client_id.to_string() };
        let reclaim = Op::Reclaim { id: lock.id.to_string(), client_id };
        // A durable handle's reconnect after the restart, with its lock: a
        // refused reclaim leaves the handle in place.
        match self.existing_handle_with_guid() {
            Some(create_guid) if self.rng.chance(30) => {
                Step::Txn(vec![Op::ConsumeHandleByCreateGuid { create_guid }, reclaim])
            }
            _ => Step::Txn(vec![reclaim]),
        }
    }

    fn normal(&mut self) -> Step {
        match self.rng.below(100) {
            0..52 => self.lock_step(),
            52..70 => Step::Txn(vec![self.handle_op()]),
            70..86 => Step::Txn(vec![self.record_op()]),
            _ => Step::Txn(self.mixed()),
        }
    }

    /// A step of lock and client operations.
    fn lock_step(&mut self) -> Step {
        let crowded = self.now.model.locks.len() > 80;
        let r = self.rng.below(100);
        let ops = match r {
            0..30 if !crowded => vec![Op::PutLock(self.new_lock())],
            0..45 => match self.existing() {
                // Overwrite: same id, other keys (every index must follow).
                Some(id) if r < 38 => {
                    let mut lock = self.new_lock();
                    lock.id = id.into();
                    vec![Op::PutLock(lock)]
                }
                Some(id) => vec![Op::DeleteLock { id }],
                None => vec![Op::PutLock(self.new_lock())],
            },
            45..47 => vec![Op::DeleteLock { id: "never-granted".into() }],
            47..60 => (0..2 + self.rng.below(5)).map(|_| self.put_or_delete()).collect(),
            60..62 => {
                // Fails as a whole on its last op: nothing may be applied.
                let mut ops: Vec<Op> = (0..1 + self.rng.below(4)).map(|_| Op::PutLock(self.new_lock())).collect();
                ops.push(Op::DeleteLock { id: "never-granted".into() });
                ops
            }
            62..67 => vec![Op::DeleteLocksByClient { client_id: format!("c{}", self.rng.below(7)) }],
            67..71 => vec![Op::DeleteLocksByFile { file_id: format!("f{}", self.rng.below(13)) }],
            71..80 => {
                let (n, variant) = (self.rng.below(9), self.rng.below(1000));
                vec![Op::PutClient(client(n, variant))]
            }
            80..85 => match self.existing_client() {
                Some((kind, client_id)) if r <= 81 => vec![Op::MarkReclaimComplete { kind, client_id }],
                Some((kind, client_id)) => vec![Op::DeleteClient { kind, client_id }],
                None => vec![Op::DeleteClient { kind: ClientKind::Nsm, client_id: "c-missing".into() }],
            },
            85..87 => {
                let kind = client_kind(self.rng.below(3));
                let selector = match self.rng.below(4) {
                    0 => ClientSelector::all(kind),
                    1 => ClientSelector::named(kind, format!("name{}", self.rng.below(3))),
                    2 => ClientSelector { kind: None, client_id: Some(format!("c{}", self.rng.below(9))), name: None },
                    _ => ClientSelector::id(kind, format!("c{}", self.rng.below(9))),
                };
                vec![Op::DeleteClients(selector)]
            }
            87..90 => {
                // A lock and its client record together.
                let lock = self.new_lock();
                let n = lock.client_id[1..].parse().unwrap_or(0);
                vec![Op::PutClient(client(n, self.rng.below(1000))), Op::PutLock(lock)]
            }
            90..93 => vec![self.update()],
            // Checked grants: refused when another owner's lock on the file
            // conflicts; after a put in one transaction, all or nothing.
            93..95 => vec![Op::Grant(self.new_lock())],
            95..98 => vec![Op::Grant(self.contested_lock())],
            98 => vec![Op::PutLock(self.new_lock()), Op::Grant(self.new_lock())],
            _ => (0..5 + self.rng.below(16)).map(|_| Op::PutLock(self.new_lock())).collect(),
        };
        Step::Txn(ops)
    }
}
