//! Workloads for the crash tests and fuzz targets: what a store goes
//! through (opens, transactions, compactions, closes), generated from a seed
//! or decoded from arbitrary bytes, and what must be durable after every
//! prefix of it.

use crate::error::Error;
use crate::model::{
    ByteRange, ClientKind, ClientRecord, ClientSelector, LockKind, LockType, PersistedLock, RangeFlavor, ShareDeny,
    Timestamp,
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
    /// Locks, clients, and the epoch of the last open.
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

/// Generates a workload of about `ops` operations from `seed`: opens and
/// restarts (one clean, one not) each followed by a grace period of
/// reclaims (some refused) and `end_grace`, puts and overwrites, deletes
/// (some of missing locks, which fail), transactions (some failing as a
/// whole), bulk deletes by client and by file, client records, a
/// compaction every `compact_every` operations (0: none), and a final
/// clean close.
pub fn generate(seed: u64, ops: usize, compact_every: usize) -> Vec<Step> {
    let mut g = Generator { rng: Rng::new(seed), now: Expected::initial(), steps: Vec::new(), next_id: 0, ops: 0 };
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
        Step::Txn(vec![Op::Reclaim { id: lock.id.to_string(), client_id }])
    }

    fn normal(&mut self) -> Step {
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
                Some((kind, client_id)) if r == 80 => vec![Op::MarkReclaimComplete { kind, client_id }],
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

/// Decodes arbitrary bytes into a short workload (for fuzzing): at most
/// `max_steps` steps, keys from tiny spaces so operations collide. Always
/// starts with `Open`; a `Close` or `Drop` is followed by `Open`.
pub fn decode_steps(bytes: &[u8], max_steps: usize) -> Vec<Step> {
    let mut steps = vec![Step::Open];
    let mut it = bytes.iter().copied();
    let mut next = || it.next();
    while steps.len() < max_steps {
        let Some(b) = next() else { break };
        let arg = u64::from(next().unwrap_or(0));
        let op = |code: u8, arg: u64| match code % 12 {
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
        assert!(has_op(&|o| matches!(o, Op::DeleteClient { .. })) >= 10);
        assert!(has_op(&|o| matches!(o, Op::EndGrace { share: None })) >= 2);
        assert!(has_op(&|o| matches!(o, Op::EndGrace { share: Some(_) })) >= 2);
        assert!(has_op(&|o| matches!(o, Op::UpdateLock(_))) >= 10);
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
