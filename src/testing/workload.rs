//! Workloads for the crash tests and fuzz targets: what a store goes
//! through (opens, transactions, compactions, closes), generated from a seed
//! or decoded from arbitrary bytes, and what must be durable after every
//! prefix of it.
//!
//! The operations cover every record kind: locks and client records,
//! durable handles (puts with fresh and with colliding file ids and create
//! GUIDs, deletes, consumes by file id and by create GUID of present and
//! absent handles, expiries at the exact boundary `disconnected_at +
//! timeout`) and the server's records (puts, deletes, swaps that succeed
//! and that fail, in [`SPACES`], with keys that share prefixes), alone and
//! mixed in one transaction, some of which fail half way.

use crate::error::Error;
use crate::model::{
    ByteRange, ClientKind, ClientRecord, ClientSelector, DurableHandle, DurableVersion, HandleLease, LeaseState,
    LockKind, LockType, PersistedLock, RangeFlavor, ShareDeny, Timestamp,
};
use crate::op::{Op, Outcome};
use crate::testing::model::Model;
use crate::testing::sample;

/// One step of a workload, applied in order, each finished before the next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Open the store: the first step, and the one after every `Close` or
    /// `Drop`.
    Open,
    /// One transaction (a single operation is a one-operation transaction).
    Txn(Vec<Op>),
    /// A compaction, awaited.
    Compact,
    /// `close()`, then drop the handle: a clean shutdown.
    Close,
    /// Drop the handle without `close()`: an unclean stop.
    Drop,
}

/// What must be durable after a prefix of a workload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Locks, clients, durable handles, records, and the epoch of the last
    /// open.
    pub model: Model,
    /// Whether the last incarnation closed cleanly.
    pub clean: bool,
    /// Whether the store is open after the prefix (bookkeeping of the
    /// runner; not part of the durable state).
    pub open: bool,
}

impl Expected {
    /// Before the first open: nothing, epoch 0.
    pub fn initial() -> Self {
        Self { model: Model::new(0), clean: false, open: false }
    }

    /// Applies one step; returns what a transaction answers.
    pub fn apply(&mut self, step: &Step) -> Option<Result<Vec<Outcome>, Error>> {
        match step {
            Step::Open => {
                self.model.restart();
                self.clean = false;
                self.open = true;
                None
            }
            Step::Txn(ops) => Some(self.model.apply(ops)),
            Step::Compact => None,
            Step::Close => {
                self.clean = true;
                self.open = false;
                None
            }
            Step::Drop => {
                self.open = false;
                None
            }
        }
    }

    /// The same durable state after a recovery that was itself interrupted
    /// once its epoch record was durable: one epoch later, not clean.
    pub fn reopened(&self) -> Self {
        let mut next = self.clone();
        next.model.restart();
        next.clean = false;
        next
    }
}

/// What a step answers: a transaction's outcomes or error; `None` for the
/// other steps.
pub type Answer = Option<Result<Vec<Outcome>, Error>>;

/// The expected state after every prefix: `result[j]` after the first `j`
/// steps (so `result.len() == steps.len() + 1`), and each step's answer.
pub fn expected_states(steps: &[Step]) -> (Vec<Expected>, Vec<Answer>) {
    expected_states_from(Expected::initial(), steps)
}

/// [`expected_states`] of a workload run on a store that held `initial`
/// (a store written earlier, by this or an older version).
pub fn expected_states_from(initial: Expected, steps: &[Step]) -> (Vec<Expected>, Vec<Answer>) {
    let mut now = initial;
    let mut states = vec![now.clone()];
    let mut answers = Vec::with_capacity(steps.len());
    for step in steps {
        answers.push(now.apply(step));
        states.push(now.clone());
    }
    (states, answers)
}

/// Number of operations in a workload (each op of a transaction counts).
pub fn op_count(steps: &[Step]) -> usize {
    steps.iter().map(|s| if let Step::Txn(ops) = s { ops.len() } else { 1 }).sum()
}

/// SplitMix64: a tiny deterministic generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0xA076_1D64_78BD_642F)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A lock whose keys come from small spaces, so that bulk deletes, queries
/// and overwrites hit several locks.
pub fn lock(n: u64, variant: u64) -> PersistedLock {
    let id = format!("l{n}");
    let kinds = sample::every_kind();
    let mut lock = sample::byte_range(
        &id,
        &format!("s{}", variant % 3),
        &format!("f{}", variant % 13),
        &format!("o{}", variant % 11),
        &format!("c{}", variant % 7),
    );
    match variant % 9 {
        0..4 => lock.kind = kinds[(variant / 9) as usize % kinds.len()].kind.clone(),
        _ => {
            lock.kind = LockKind::ByteRange(ByteRange {
                lock_type: if variant.is_multiple_of(2) { LockType::Shared } else { LockType::Exclusive },
                offset: variant * 4096,
                length: variant % 5000,
                zero_byte: false,
                flavor: if variant.is_multiple_of(3) {
                    RangeFlavor::Smb { share_deny: [ShareDeny::None, ShareDeny::Read][(variant % 2) as usize] }
                } else {
                    RangeFlavor::Posix
                },
            })
        }
    }
    lock.acquired_at = Timestamp::from_unix_micros(1_764_000_000_000_000 + variant as i64);
    lock
}

/// A client record `c<n>`, of a kind that `variant` picks.
pub fn client(n: u64, variant: u64) -> ClientRecord {
    let mut records = sample::every_client(&format!("c{n}"));
    let mut record = records.swap_remove((variant % records.len() as u64) as usize);
    record.epoch = variant;
    record.verifier = variant.to_le_bytes().to_vec();
    record.name = format!("name{}", variant % 3);
    record.reclaim_complete = variant.is_multiple_of(2);
    record
}

/// The kind a small number picks.
fn client_kind(n: u64) -> ClientKind {
    ClientKind::ALL[(n % 3) as usize]
}

/// An update of lock `l<n>`: its keys kept, its kind fields from
/// `variant` (fails as not found when there is no such lock).
pub fn update(n: u64, variant: u64, existing: Option<&PersistedLock>) -> Op {
    let mut lock = lock(n, variant);
    if let Some(old) = existing {
        lock.share = old.share.clone();
        lock.file_id = old.file_id.clone();
        lock.owner_id = old.owner_id.clone();
        lock.client_id = old.client_id.clone();
    }
    Op::UpdateLock(lock)
}

/// The keyspaces workloads write records in (two of them share a prefix).
/// [`crate::testing::crash::observe`] reads these, so a record anywhere
/// else would not be seen: every workload keeps to them.
pub const SPACES: [&str; 3] = ["dirents", "dirents.v2", "xattr"];

/// Record keys: a few that share prefixes (one is a prefix of the others,
/// one continues with a NUL), the empty-prefix extremes, and paths.
const KEYS: [&[u8]; 8] = [b"a", b"a\0", b"ab", b"ab/c", b"abc", b"b", b"\0", b"\xff\xfe"];

/// The instant handles disconnect from: `disconnected_at` is this plus a
/// whole number of seconds, so that expiry instants coincide.
pub const DISCONNECTED_FROM: i64 = 1_764_000_060_000_000;

/// The timeouts handles get, in milliseconds (0: expired right after the
/// disconnect; 1000 and 2000 land on other handles' disconnect instants).
const TIMEOUTS_MS: [u64; 5] = [0, 1, 1000, 2000, 60_000];

/// Record key `n`: one of eight keys that share prefixes (`a`, `a\0`,
/// `ab`, `ab/c`, `abc`, `b`, `\0`, `\xff\xfe`), or a path `d<i>/f<j>`.
pub fn record_key(n: u64) -> Vec<u8> {
    match KEYS.get(n as usize % 12) {
        Some(key) => key.to_vec(),
        None => format!("d{}/f{}", n % 3, n / 12 % 4).into_bytes(),
    }
}

/// Record value `variant`: empty, a few bytes, or (one in eight) 700
/// bytes; never [`NEVER_HELD`].
pub fn record_value(variant: u64) -> Vec<u8> {
    match variant % 8 {
        0 => Vec::new(),
        7 => (0..700u32).map(|i| (i as u64 ^ variant) as u8).collect(),
        n => [&variant.to_le_bytes()[..n as usize], b"v"].concat(),
    }
}

/// A value no record holds: a swap that expects it fails.
pub const NEVER_HELD: &[u8] = b"never held";

/// A 16-byte key (file id, create GUID) numbered `n`.
pub fn key16(tag: u8, n: u64) -> [u8; 16] {
    let mut key = [tag; 16];
    key[8..].copy_from_slice(&n.to_le_bytes());
    key
}

/// The file id numbered `n`.
pub fn file_id(n: u64) -> [u8; 16] {
    key16(0xF1, n)
}

/// The create GUID numbered `n`.
pub fn create_guid(n: u64) -> [u8; 16] {
    key16(0xC6, n)
}

/// Durable handle `h<n>` with file id `file` and create GUID `guid`
/// (`None`: a v1 handle, reconnected by file id only), every other field
/// non-default ([`sample::handle`]) and varied by `variant`: share, file
/// handle, app instance, lease, delete-pending, and the disconnect time
/// and timeout, from small sets so that expiry instants coincide.
pub fn handle(n: u64, file: u64, guid: Option<u64>, variant: u64) -> DurableHandle {
    let mut h = sample::handle(n as u32);
    h.id = format!("h{n}");
    h.file_id = file_id(file);
    h.original_file_id = key16(0x0F, variant % 5);
    h.create_guid = guid.map(create_guid);
    h.version = if guid.is_some() { DurableVersion::V2 } else { DurableVersion::V1 };
    h.persistent = guid.is_some() && variant.is_multiple_of(2);
    h.share = format!("s{}", variant % 3);
    h.file_handle = format!("f{}", variant % 13).into_bytes();
    h.app_instance_id = (!variant.is_multiple_of(4)).then_some([0xA0 | (variant % 3) as u8; 16]);
    h.lease = (!variant.is_multiple_of(5)).then(|| HandleLease {
        key: key16(0x1E, variant % 7),
        state: LeaseState(1 + (variant % 7) as u32),
        epoch: (variant % 11) as u16 + 1,
    });
    if variant.is_multiple_of(3) {
        h.delete_pending = None;
    }
    h.desired_access ^= (variant as u32) << 8;
    h.position = variant;
    h.disconnected_at = Timestamp::from_unix_micros(DISCONNECTED_FROM + (variant % 6) as i64 * 1_000_000);
    h.timeout_ms = TIMEOUTS_MS[(variant / 6) as usize % TIMEOUTS_MS.len()];
    h
}

/// The instant `handle` expires from (validated handles have one).
pub fn expires_at(handle: &DurableHandle) -> i64 {
    handle.expires_at().map_or(i64::MAX, |t| t.unix_micros)
}

/// Generates a workload of about `ops` operations from `seed`: opens and
/// restarts (one clean, one not) each followed by a grace period of
/// reclaims (some refused, some in one transaction with the reconnect of a
/// durable handle) and `end_grace`, puts and overwrites, deletes (some of
/// missing locks, which fail), transactions (some failing as a whole),
/// bulk deletes by client and by file, client records, durable handles and
/// records (see the module documentation), transactions that mix them with
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
            90..94 => vec![self.update()],
            _ => (0..5 + self.rng.below(16)).map(|_| Op::PutLock(self.new_lock())).collect(),
        };
        Step::Txn(ops)
    }
}

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

/// A durable-handle (`code` 12, 14) or record (13, 15) operation decoded
/// from `arg`. Most target what `model` holds (the `n`-th handle or record,
/// `n` from `arg`), so that consumes, deletes, collisions, expiries and
/// swaps meet what earlier steps made; the rest draw keys from tiny sets:
/// six handle ids, four file ids and four create GUIDs (one handle in five
/// is v1, without one), expiry instants and the microsecond after them;
/// two keyspaces that share a prefix, four keys that do, six values.
fn decoded_extra(code: u8, arg: u64, model: &Model) -> Op {
    let nth_handle = |n: u64| {
        let count = model.handles.len() as u64;
        (count > 0).then(|| model.handles.values().nth((n % count) as usize)).flatten()
    };
    let nth_record = |n: u64| {
        let count = model.records.len() as u64;
        (count > 0).then(|| model.records.iter().nth((n % count) as usize)).flatten()
    };
    let guid = |x: u64| (x % 5 != 4).then_some(x % 4);
    let small_handle = |arg: u64| handle(arg % 6, arg / 6 % 4, guid(arg / 24), arg / 8);
    let slot = (SPACES[(arg / 4 % 2) as usize].to_owned(), record_key(arg / 8 % 4));
    let value = |v: u64| record_value(v % 6);
    let existing = arg & 0x80 == 0;
    match (code, arg % 8, nth_handle(arg / 8), nth_record(arg / 8)) {
        (12, 0..3, ..) => Op::PutHandle(small_handle(arg)),
        (12, 3, Some(other), _) => {
            // Collides with a present handle's file id or create GUID.
            let mut h = small_handle(arg.wrapping_add(1));
            match other.create_guid {
                Some(g) if arg & 0x40 != 0 => h.create_guid = Some(g),
                _ => h.file_id = other.file_id,
            }
            Op::PutHandle(h)
        }
        (12, 4 | 5, Some(h), _) if existing => Op::ConsumeHandleByFileId { file_id: h.file_id },
        (12, 3..6, ..) => Op::ConsumeHandleByFileId { file_id: file_id(arg / 8 % 4) },
        (12, 6, Some(h), _) if existing => Op::DeleteHandle { id: h.id.clone() },
        (12, ..) => Op::DeleteHandle { id: format!("h{}", arg / 8 % 6) },
        (14, 0 | 1, Some(h), _) => {
            // At, just before or just after a present handle's expiry.
            let at = expires_at(h) + [0, 0, 1, -1][(arg / 64 % 4) as usize];
            Op::ExpireHandles { now: Timestamp::from_unix_micros(at) }
        }
        (14, 0 | 1, ..) => {
            let micros = DISCONNECTED_FROM + (arg / 16 % 8) as i64 * 1_000_000 + (arg / 128 % 2) as i64;
            Op::ExpireHandles { now: Timestamp::from_unix_micros(micros) }
        }
        (14, 2..5, Some(h), _) if existing && h.create_guid.is_some() => {
            Op::ConsumeHandleByCreateGuid { create_guid: h.create_guid.expect("checked") }
        }
        (14, 2..5, ..) => Op::ConsumeHandleByCreateGuid { create_guid: create_guid(arg / 8 % 4) },
        (14, ..) => Op::PutHandle(handle(arg / 8 % 6, arg / 48 % 4, None, arg)),
        (13, 0..3, ..) => Op::PutRecord { space: slot.0, key: slot.1, value: value(arg / 3) },
        (13, 3 | 4, _, Some(((space, key), _))) if existing => {
            Op::DeleteRecord { space: space.clone(), key: key.clone() }
        }
        (13, 3 | 4, ..) => Op::DeleteRecord { space: slot.0, key: slot.1 },
        (13, ..) => Op::SwapRecord { space: slot.0, key: slot.1, expected: None, value: Some(value(arg / 3)) },
        (_, sel, _, Some(((space, key), current))) if existing && sel < 6 => {
            // Expects what the record holds: succeeds (sets or removes).
            let value = (sel % 3 != 0).then(|| value(arg / 3));
            Op::SwapRecord { space: space.clone(), key: key.clone(), expected: Some(current.clone()), value }
        }
        (_, sel, ..) => {
            let expected = (sel % 2 == 1).then(|| value(arg / 3));
            let value = (!(arg / 36).is_multiple_of(3)).then(|| value(arg / 5));
            Op::SwapRecord { space: slot.0, key: slot.1, expected, value }
        }
    }
}

/// Decodes arbitrary bytes into a short workload (for fuzzing): at most
/// `max_steps` steps, keys from tiny spaces so operations collide. Always
/// starts with `Open`; a `Close` or `Drop` is followed by `Open`. One
/// operation code in four is a durable-handle or record operation
/// (`decoded_extra`, which follows the model of the steps decoded so far
/// to target what they made); multi-operation transactions mix them with
/// the lock and client operations.
pub fn decode_steps(bytes: &[u8], max_steps: usize) -> Vec<Step> {
    let mut steps = vec![Step::Open];
    let mut now = Expected::initial();
    now.apply(&Step::Open);
    let mut it = bytes.iter().copied();
    let mut next = || it.next();
    while steps.len() < max_steps {
        let Some(b) = next() else { break };
        let arg = u64::from(next().unwrap_or(0));
        let model = &now.model;
        let op = |code: u8, arg: u64| match code % 12 {
            _ if code % 16 >= 12 => decoded_extra(code % 16, arg, model),
            0..3 => Op::PutLock(lock(arg % 12, arg / 12)),
            3 => Op::DeleteLock { id: format!("l{}", arg % 12) },
            4 => Op::DeleteLocksByClient { client_id: format!("c{}", arg % 7) },
            5 => Op::DeleteLocksByFile { file_id: format!("f{}", arg % 13) },
            6 => Op::PutClient(client(arg % 4, arg)),
            7 => Op::Reclaim { id: format!("l{}", arg % 12), client_id: format!("c{}", arg % 7) },
            8 => update(arg % 12, arg / 12, None),
            9 => Op::MarkReclaimComplete { kind: client_kind(arg), client_id: format!("c{}", arg % 4) },
            10 => Op::DeleteClients(ClientSelector::named(client_kind(arg), format!("name{}", arg % 3))),
            _ => Op::EndGrace { share: Some(format!("s{}", arg % 3)) },
        };
        let first = steps.len();
        match b % 16 {
            0..8 => steps.push(Step::Txn(vec![op(b / 16, arg)])),
            8 => steps.push(Step::Txn(vec![Op::DeleteClient {
                kind: client_kind(arg / 4),
                client_id: format!("c{}", arg % 4),
            }])),
            9 => steps.push(Step::Txn(vec![Op::EndGrace { share: None }])),
            10..12 => {
                let n = 2 + arg % 4;
                let ops = (0..n).map(|i| op((arg + i) as u8 ^ b, arg.wrapping_mul(31).wrapping_add(i))).collect();
                steps.push(Step::Txn(ops));
            }
            12 => steps.push(Step::Compact),
            13 | 14 => {
                steps.push(if b % 16 == 13 { Step::Close } else { Step::Drop });
                steps.push(Step::Open);
            }
            _ => {
                let ops = (0..4 + arg % 12).map(|i| Op::PutLock(lock(i % 12, arg + i))).collect();
                steps.push(Step::Txn(ops));
            }
        }
        for step in &steps[first..] {
            now.apply(step);
        }
    }
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_workload_has_every_kind_of_step() {
        let steps = generate(7, 1000, 150);
        assert!(op_count(&steps) >= 1000);
        assert_eq!(steps, generate(7, 1000, 150), "deterministic from the seed");
        assert_ne!(steps, generate(8, 1000, 150));
        let has = |f: &dyn Fn(&Step) -> bool| steps.iter().filter(|s| f(s)).count();
        let has_op =
            |f: &dyn Fn(&Op) -> bool| steps.iter().filter(|s| matches!(s, Step::Txn(ops) if ops.iter().any(f))).count();
        assert_eq!(has(&|s| *s == Step::Open), 3);
        assert_eq!((has(&|s| *s == Step::Close), has(&|s| *s == Step::Drop)), (2, 1));
        assert!(has(&|s| *s == Step::Compact) >= 5);
        assert!(has(&|s| matches!(s, Step::Txn(ops) if ops.len() > 1)) >= 50);
        assert!(has_op(&|o| matches!(o, Op::DeleteLocksByClient { .. })) >= 10);
        assert!(has_op(&|o| matches!(o, Op::DeleteLocksByFile { .. })) >= 10);
        assert!(has_op(&|o| matches!(o, Op::PutClient(_))) >= 30);
        assert!(has_op(&|o| matches!(o, Op::DeleteClient { .. })) >= 6);
        assert!(has_op(&|o| matches!(o, Op::EndGrace { share: None })) >= 2);
        assert!(has_op(&|o| matches!(o, Op::EndGrace { share: Some(_) })) >= 2);
        assert!(has_op(&|o| matches!(o, Op::UpdateLock(_))) >= 4);
        assert!(has_op(&|o| matches!(o, Op::DeleteClients(_))) >= 5);
        assert!(has_op(&|o| matches!(o, Op::MarkReclaimComplete { .. })) >= 2);
        let kinds: std::collections::BTreeSet<ClientKind> = steps
            .iter()
            .flat_map(|s| match s {
                Step::Txn(ops) => ops.clone(),
                _ => Vec::new(),
            })
            .filter_map(|o| match o {
                Op::PutClient(r) => Some(r.kind()),
                _ => None,
            })
            .collect();
        assert_eq!(kinds.len(), 3, "records of every kind");
        // Some reclaims succeed, some are refused; some transactions fail.
        let (_, answers) = expected_states(&steps);
        let reclaims: Vec<bool> = steps
            .iter()
            .zip(&answers)
            .filter(|(s, _)| matches!(s, Step::Txn(ops) if matches!(ops[..], [Op::Reclaim { .. }])))
            .map(|(_, a)| matches!(a, Some(Ok(_))))
            .collect();
        assert!(reclaims.iter().filter(|ok| **ok).count() >= 5, "{reclaims:?}");
        assert!(reclaims.iter().any(|ok| !ok), "{reclaims:?}");
        let failed_multi = steps
            .iter()
            .zip(&answers)
            .filter(|(s, a)| matches!(s, Step::Txn(ops) if ops.len() > 1) && matches!(a, Some(Err(_))))
            .count();
        assert!(failed_multi >= 5);
        // Durable handles and records, alone and mixed with locks.
        let t = tally(&steps);
        println!("{t:#?}");
        for (what, at_least) in [
            ("put handle", 15),
            ("put handle overwriting", 2),
            ("put handle: file id conflict", 2),
            ("put handle: create GUID conflict", 2),
            ("delete handle", 2),
            ("delete absent handle", 2),
            ("consume by file id", 4),
            ("consume by absent file id", 2),
            ("consume by create GUID", 3),
            ("consume by absent create GUID", 2),
            ("expire removing some", 2),
            ("expire at an expiry instant, keeping that handle", 2),
            ("put v1 handle", 5),
            ("put record", 10),
            ("put record overwriting", 4),
            ("delete record", 5),
            ("delete absent record", 3),
            ("swap setting", 3),
            ("swap removing", 2),
            ("swap creating", 6),
            ("swap refused", 6),
            ("txn: records and locks", 15),
            ("txn: consume and locks", 3),
            ("txn: consume and reclaim", 1),
            ("txn: failed half way, changing every kind before", 6),
            ("keyspaces", 3),
            ("keys that are a prefix of another in the same keyspace", 3),
        ] {
            assert!(t.get(what).copied().unwrap_or(0) >= at_least, "{what}: {t:#?}");
        }
    }

    /// Fuzz inputs reach every outcome of the durable-handle and record
    /// operations: decoded from random bytes, workloads put, collide,
    /// consume, expire at the boundary, swap and fail, alone and mixed with
    /// locks.
    #[test]
    fn decoded_workloads_reach_every_handle_and_record_outcome() {
        let mut rng = Rng::new(11);
        let mut total: std::collections::BTreeMap<&'static str, usize> = Default::default();
        let mut variants = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let bytes: Vec<u8> = (0..128).map(|_| rng.next_u64() as u8).collect();
            let steps = decode_steps(&bytes, 64);
            for op in steps.iter().filter_map(|s| if let Step::Txn(ops) = s { Some(ops) } else { None }).flatten() {
                op.validate().unwrap();
                variants.insert(op.name());
            }
            for (what, n) in tally(&steps) {
                *total.entry(what).or_default() += n;
            }
        }
        let every = [
            "PutHandle",
            "DeleteHandle",
            "ConsumeHandleByFileId",
            "ConsumeHandleByCreateGuid",
            "ExpireHandles",
            "PutRecord",
            "DeleteRecord",
            "SwapRecord",
        ];
        assert!(every.iter().all(|v| variants.contains(v)), "{variants:?}");
        for what in [
            "put handle",
            "put handle overwriting",
            "put handle: file id conflict",
            "put handle: create GUID conflict",
            "delete handle",
            "consume by file id",
            "consume by absent file id",
            "consume by create GUID",
            "consume by absent create GUID",
            "expire removing some",
            "expire at an expiry instant, keeping that handle",
            "put record",
            "put record overwriting",
            "delete record",
            "delete absent record",
            "swap setting",
            "swap removing",
            "swap creating",
            "swap refused",
            "txn: records and locks",
        ] {
            assert!(total.get(what).copied().unwrap_or(0) >= 3, "{what}: {total:#?}");
        }
    }

    /// The targeted workload does what its comments say, and its checks
    /// hold on every prefix of it (and fail on a torn state).
    #[test]
    fn the_targeted_workload_does_what_it_says() {
        let t = targeted();
        let (states, answers) = expected_states(&t.steps);
        let failed: Vec<usize> =
            answers.iter().enumerate().filter(|(_, a)| matches!(a, Some(Err(_)))).map(|(i, _)| i).collect();
        assert_eq!(failed, [7], "{answers:?}");
        assert!(matches!(&answers[12], Some(Ok(o)) if o[..] == [Outcome::Handles(Vec::new())]), "kept at the instant");
        assert!(
            matches!(&answers[13], Some(Ok(o)) if matches!(&o[..], [Outcome::Handles(h)] if h.len() == 1 && h[0].id == "h4"))
        );
        assert!(matches!(&answers[11], Some(Ok(o)) if matches!(o[1], Outcome::Lock(_))), "the reclaim succeeds");
        for (j, state) in states.iter().enumerate() {
            let m = &state.model;
            let check = t.check(
                &|id| m.locks.contains_key(id),
                &|s, k| m.records.contains_key(&(s.to_owned(), k.to_vec())),
                &|id| m.handles.contains_key(id),
                j,
            );
            assert_eq!(check, Ok(()), "after {j} steps");
        }
        let end = &states.last().expect("states").model;
        assert_eq!(end.handles.keys().collect::<Vec<_>>(), ["h7"]);
        assert_eq!(end.locks.keys().collect::<Vec<_>>(), ["t4", "t7"]);
        // Torn: t2 without its records.
        let m = &states[4].model;
        let torn = t.check(&|id| m.locks.contains_key(id), &|_, _| false, &|id| m.handles.contains_key(id), 4);
        assert!(torn.is_err_and(|e| e.contains("torn apart")));
        // A consumed handle back.
        let m = &states[6].model;
        let back = t.check(
            &|id| m.locks.contains_key(id),
            &|s, k| m.records.contains_key(&(s.to_owned(), k.to_vec())),
            &|id| id == "h1" || m.handles.contains_key(id),
            6,
        );
        assert!(back.is_err());
    }

    /// Counts what a workload's transactions do, as the model answers them.
    fn tally(steps: &[Step]) -> std::collections::BTreeMap<&'static str, usize> {
        use std::collections::{BTreeMap, BTreeSet};
        let (states, answers) = expected_states(steps);
        let mut t: BTreeMap<&'static str, usize> = BTreeMap::new();
        let mut bump = |what: &'static str| *t.entry(what).or_default() += 1;
        let mut keys: BTreeSet<(String, Vec<u8>)> = BTreeSet::new();
        for (i, step) in steps.iter().enumerate() {
            let Step::Txn(ops) = step else { continue };
            let before = &states[i].model;
            let answer = answers[i].as_ref().expect("a transaction has an answer");
            for op in ops {
                if let Op::PutRecord { space, key, .. } | Op::SwapRecord { space, key, value: Some(_), .. } = op {
                    keys.insert((space.clone(), key.clone()));
                }
            }
            if let [op] = &ops[..] {
                let what = match (op, answer) {
                    (Op::PutHandle(h), Ok(_)) if before.handles.contains_key(&h.id) => "put handle overwriting",
                    (Op::PutHandle(_), Ok(_)) => "put handle",
                    (Op::PutHandle(_), Err(Error::HandleConflict { field: "file_id", .. })) => {
                        "put handle: file id conflict"
                    }
                    (Op::PutHandle(_), Err(Error::HandleConflict { .. })) => "put handle: create GUID conflict",
                    (Op::DeleteHandle { .. }, Ok(_)) => "delete handle",
                    (Op::DeleteHandle { .. }, Err(_)) => "delete absent handle",
                    (Op::ConsumeHandleByFileId { .. }, Ok(_)) => "consume by file id",
                    (Op::ConsumeHandleByFileId { .. }, Err(_)) => "consume by absent file id",
                    (Op::ConsumeHandleByCreateGuid { .. }, Ok(_)) => "consume by create GUID",
                    (Op::ConsumeHandleByCreateGuid { .. }, Err(_)) => "consume by absent create GUID",
                    (Op::ExpireHandles { now }, Ok(out)) => {
                        if before.handles.values().any(|h| expires_at(h) == now.unix_micros) {
                            bump("expire at an expiry instant, keeping that handle");
                        }
                        if matches!(&out[..], [Outcome::Handles(gone)] if !gone.is_empty()) {
                            "expire removing some"
                        } else {
                            "expire removing none"
                        }
                    }
                    (Op::PutRecord { space, key, .. }, Ok(_))
                        if before.records.contains_key(&(space.clone(), key.clone())) =>
                    {
                        "put record overwriting"
                    }
                    (Op::PutRecord { .. }, Ok(_)) => "put record",
                    (Op::DeleteRecord { .. }, Ok(_)) => "delete record",
                    (Op::DeleteRecord { .. }, Err(_)) => "delete absent record",
                    (Op::SwapRecord { expected: None, .. }, Ok(_)) => "swap creating",
                    (Op::SwapRecord { value: None, .. }, Ok(_)) => "swap removing",
                    (Op::SwapRecord { .. }, Ok(_)) => "swap setting",
                    (Op::SwapRecord { .. }, Err(Error::ConditionFailed { .. })) => "swap refused",
                    _ => "other",
                };
                bump(what);
                if let Op::PutHandle(h) = op
                    && h.create_guid.is_none()
                    && answer.is_ok()
                {
                    bump("put v1 handle");
                }
                continue;
            }
            let has = |f: fn(&Op) -> bool| ops.iter().any(f);
            let locks = has(|o| matches!(o, Op::PutLock(_) | Op::DeleteLock { .. } | Op::DeleteLocksByFile { .. }));
            let records = has(|o| matches!(o, Op::PutRecord { .. } | Op::DeleteRecord { .. } | Op::SwapRecord { .. }));
            let consumes =
                has(|o| matches!(o, Op::ConsumeHandleByFileId { .. } | Op::ConsumeHandleByCreateGuid { .. }));
            let handles = consumes || has(|o| matches!(o, Op::PutHandle(_) | Op::DeleteHandle { .. }));
            match answer {
                Ok(_) if consumes && has(|o| matches!(o, Op::Reclaim { .. })) => bump("txn: consume and reclaim"),
                Ok(_) if consumes && locks => bump("txn: consume and locks"),
                Ok(_) if locks && records => bump("txn: records and locks"),
                Err(_) if locks && records && handles => {
                    // Where it failed: the shortest prefix the model refuses.
                    let fails_at = (1..=ops.len()).find(|&k| before.clone().apply(&ops[..k]).is_err());
                    if fails_at.is_some_and(|k| k > 3) {
                        bump("txn: failed half way, changing every kind before");
                    }
                }
                _ => {}
            }
        }
        t.insert("keyspaces", keys.iter().map(|(s, _)| s).collect::<BTreeSet<_>>().len());
        let prefixed =
            keys.iter().filter(|(s, k)| keys.iter().any(|(s2, k2)| s2 == s && k2 != k && k2.starts_with(k))).count();
        t.insert("keys that are a prefix of another in the same keyspace", prefixed);
        t
    }

    #[test]
    fn decoded_workloads_are_bounded_and_well_formed() {
        let bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        let steps = decode_steps(&bytes, 40);
        assert!(steps.len() <= 41);
        assert_eq!(steps[0], Step::Open);
        for pair in steps.windows(2) {
            if matches!(pair[0], Step::Close | Step::Drop) {
                assert_eq!(pair[1], Step::Open);
            }
        }
        assert_eq!(decode_steps(&[], 40), vec![Step::Open]);
        for op in steps.iter().filter_map(|s| if let Step::Txn(ops) = s { Some(ops) } else { None }).flatten() {
            op.validate().unwrap();
        }
    }
}
