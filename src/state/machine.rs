use super::index::{Index, SlotId};
use crate::error::{Error, ReclaimRefusal, Result};
use crate::model::{ClientRecord, Lease, LockKind, LockQuery, PersistedLock, Timestamp};
use crate::op::{Op, Outcome};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The input of the state machine: what the WAL logs, one per record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// User operations, applied all or nothing.
    Txn(Vec<Op>),
    /// A new incarnation opened the store: set the epoch, mark the shutdown
    /// unclean until [`Command::CleanShutdown`].
    Open {
        /// The new epoch; must be greater than the current one.
        epoch: u64,
    },
    /// The incarnation closed cleanly.
    CleanShutdown,
}

/// A lock as the state keeps it: shared strings are interned through the
/// indexes, and the large lease variant is boxed so the common byte-range
/// lock stays small.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub(crate) id: Arc<str>,
    pub(crate) share: Arc<str>,
    pub(crate) file: Arc<str>,
    pub(crate) owner: Arc<str>,
    pub(crate) client: Arc<str>,
    pub(crate) kind: StoredKind,
    pub(crate) acquired_at: Timestamp,
    pub(crate) epoch: u64,
}

#[derive(Debug, Clone)]
pub(crate) enum StoredKind {
    Small(LockKind),
    Lease(Box<Lease>),
}

impl From<LockKind> for StoredKind {
    fn from(kind: LockKind) -> Self {
        match kind {
            LockKind::Lease(lease) => StoredKind::Lease(Box::new(lease)),
            other => StoredKind::Small(other),
        }
    }
}

impl StoredKind {
    pub(crate) fn to_kind(&self) -> LockKind {
        match self {
            StoredKind::Small(kind) => kind.clone(),
            StoredKind::Lease(lease) => LockKind::Lease(**lease),
        }
    }

    fn filter(&self) -> crate::model::KindFilter {
        match self {
            StoredKind::Small(kind) => kind.filter(),
            StoredKind::Lease(_) => crate::model::KindFilter::Lease,
        }
    }
}

impl Slot {
    fn to_lock(&self) -> PersistedLock {
        PersistedLock {
            id: self.id.to_string(),
            share: self.share.to_string(),
            file_id: self.file.to_string(),
            owner_id: self.owner.to_string(),
            client_id: self.client.to_string(),
            kind: self.kind.to_kind(),
            acquired_at: self.acquired_at,
            server_epoch: self.epoch,
        }
    }

    fn matches(&self, q: &LockQuery) -> bool {
        fn eq(filter: &Option<String>, value: &str) -> bool {
            filter.as_deref().is_none_or(|f| f == value)
        }
        eq(&q.file_id, &self.file)
            && eq(&q.owner_id, &self.owner)
            && eq(&q.client_id, &self.client)
            && eq(&q.share, &self.share)
            && q.kind.is_none_or(|k| k == self.kind.filter())
    }
}

enum UndoStep {
    /// Restore the lock `id` to `prev` (absent when `None`).
    Lock { id: Arc<str>, prev: Option<Slot> },
    /// Restore the client `id` to `prev`.
    Client { id: String, prev: Option<ClientRecord> },
    /// Restore epoch and clean flag.
    Meta { epoch: u64, clean: bool },
}

/// The steps that undo applied commands, newest last.
///
/// The WAL writer applies a batch with recording on to learn each command's
/// outcome, rolls it back, makes the log durable, then applies it for real;
/// see `wal::writer`.
pub struct Undo {
    recording: bool,
    steps: Vec<UndoStep>,
}

impl Undo {
    /// An undo log that records every step.
    pub fn recording() -> Self {
        Self { recording: true, steps: Vec::new() }
    }

    fn disabled() -> Self {
        Self { recording: false, steps: Vec::new() }
    }

    fn push(&mut self, step: UndoStep) {
        if self.recording {
            self.steps.push(step);
        }
    }
}

/// A point-in-time copy of the state for a snapshot. The strings are shared
/// with the live state (`Arc`), so the copy costs one slot per lock and no
/// string bytes.
pub(crate) struct StateView {
    pub(crate) slots: Vec<Slot>,
    pub(crate) clients: Vec<ClientRecord>,
    pub(crate) epoch: u64,
    pub(crate) clean: bool,
}

/// The complete lock state with its indexes.
///
/// Invariants (checked by [`State::check_invariants`] in tests): every lock
/// in `slots` is in `by_id` and in exactly the index sets of its own keys;
/// nothing else is in any index.
#[derive(Debug, Clone)]
pub struct State {
    slots: Vec<Option<Slot>>,
    free: Vec<SlotId>,
    by_id: HashMap<Arc<str>, SlotId>,
    by_file: Index,
    by_owner: Index,
    by_client: Index,
    by_share: Index,
    clients: BTreeMap<String, ClientRecord>,
    epoch: u64,
    clean: bool,
}

impl Default for State {
    fn default() -> Self {
        Self::new()
    }
}

impl State {
    /// The empty state: epoch 0, shutdown not clean, no locks, no clients.
    pub fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            by_id: HashMap::new(),
            by_file: Index::default(),
            by_owner: Index::default(),
            by_client: Index::default(),
            by_share: Index::default(),
            clients: BTreeMap::new(),
            epoch: 0,
            clean: false,
        }
    }

    /// Applies one command atomically: on error the state is unchanged.
    pub fn apply(&mut self, cmd: &Command) -> Result<Vec<Outcome>> {
        // A one-op transaction either fails before it mutates or succeeds,
        // so it needs no undo log; a longer one may fail half way.
        let needs_undo = matches!(cmd, Command::Txn(ops) if ops.len() > 1);
        let mut undo = if needs_undo { Undo::recording() } else { Undo::disabled() };
        self.apply_undoable(cmd, &mut undo)
    }

    /// Applies one command atomically and records how to undo it in `undo`.
    /// On error the command's own steps are already undone and `undo` is as
    /// it was.
    pub fn apply_undoable(&mut self, cmd: &Command, undo: &mut Undo) -> Result<Vec<Outcome>> {
        let mark = undo.steps.len();
        let result = self.apply_inner(cmd, undo);
        if result.is_err() {
            self.rollback_to(undo, mark);
        }
        result
    }

    /// Undoes every step recorded in `undo`, newest first.
    pub fn rollback(&mut self, mut undo: Undo) {
        self.rollback_to(&mut undo, 0);
    }

    fn rollback_to(&mut self, undo: &mut Undo, mark: usize) {
        while undo.steps.len() > mark {
            match undo.steps.pop().expect("len > mark") {
                UndoStep::Lock { id, prev } => {
                    self.remove_slot(&id);
                    if let Some(slot) = prev {
                        self.insert_slot(slot);
                    }
                }
                UndoStep::Client { id, prev } => match prev {
                    Some(record) => {
                        self.clients.insert(id, record);
                    }
                    None => {
                        self.clients.remove(&id);
                    }
                },
                UndoStep::Meta { epoch, clean } => {
                    self.epoch = epoch;
                    self.clean = clean;
                }
            }
        }
    }

    fn apply_inner(&mut self, cmd: &Command, undo: &mut Undo) -> Result<Vec<Outcome>> {
        match cmd {
            Command::Txn(ops) => {
                crate::op::validate_batch(ops)?;
                ops.iter().map(|op| self.apply_op(op, undo)).collect()
            }
            Command::Open { epoch } => {
                if *epoch <= self.epoch {
                    return Err(Error::Internal(format!(
                        "open with epoch {epoch}, not above the current epoch {}",
                        self.epoch
                    )));
                }
                undo.push(UndoStep::Meta { epoch: self.epoch, clean: self.clean });
                self.epoch = *epoch;
                self.clean = false;
                Ok(Vec::new())
            }
            Command::CleanShutdown => {
                undo.push(UndoStep::Meta { epoch: self.epoch, clean: self.clean });
                self.clean = true;
                Ok(Vec::new())
            }
        }
    }

    fn apply_op(&mut self, op: &Op, undo: &mut Undo) -> Result<Outcome> {
        match op {
            Op::PutLock(lock) => {
                let prev = self.remove_slot(&lock.id);
                let id = prev.as_ref().map(|s| Arc::clone(&s.id));
                undo.push(UndoStep::Lock { id: id.clone().unwrap_or_else(|| Arc::from(lock.id.as_str())), prev });
                self.insert_lock(lock, id);
                Ok(Outcome::Done)
            }
            Op::DeleteLock { id } => {
                let prev = self.remove_slot(id).ok_or_else(|| Error::lock_not_found(id))?;
                undo.push(UndoStep::Lock { id: Arc::clone(&prev.id), prev: Some(prev) });
                Ok(Outcome::Done)
            }
            Op::DeleteLocksByClient { client_id } => {
                let slots = self.by_client.get(client_id).map(|s| s.iter().copied().collect());
                Ok(Outcome::Count(self.remove_slots(slots.unwrap_or_default(), undo)))
            }
            Op::DeleteLocksByFile { file_id } => {
                let slots = self.by_file.get(file_id).map(|s| s.iter().copied().collect());
                Ok(Outcome::Count(self.remove_slots(slots.unwrap_or_default(), undo)))
            }
            Op::PutClient(record) => {
                let prev = self.clients.insert(record.client_id.clone(), record.clone());
                undo.push(UndoStep::Client { id: record.client_id.clone(), prev });
                Ok(Outcome::Done)
            }
            Op::DeleteClient { client_id } => {
                let prev = self.clients.remove(client_id).ok_or_else(|| Error::client_not_found(client_id))?;
                undo.push(UndoStep::Client { id: client_id.clone(), prev: Some(prev) });
                Ok(Outcome::Done)
            }
            Op::Reclaim { id, client_id } => self.reclaim(id, client_id, undo),
            Op::EndGrace => {
                let epoch = self.epoch;
                let stale: Vec<SlotId> = self.live_slots().filter(|(_, s)| s.epoch < epoch).map(|(i, _)| i).collect();
                let mut removed: Vec<Slot> = Vec::with_capacity(stale.len());
                for slot in stale {
                    let s = self.take_slot(slot);
                    undo.push(UndoStep::Lock { id: Arc::clone(&s.id), prev: Some(s.clone()) });
                    removed.push(s);
                }
                removed.sort_unstable_by(|a, b| a.id.cmp(&b.id));
                Ok(Outcome::Locks(removed.iter().map(Slot::to_lock).collect()))
            }
        }
    }

    fn reclaim(&mut self, id: &str, client_id: &str, undo: &mut Undo) -> Result<Outcome> {
        let slot_id = *self.by_id.get(id).ok_or_else(|| Error::lock_not_found(id))?;
        let current = self.epoch;
        let slot = self.slots[slot_id as usize].as_mut().expect("indexed slot is live");
        let refuse = |reason| Error::ReclaimRefused { id: id.to_owned(), client_id: client_id.to_owned(), reason };
        if &*slot.client != client_id {
            return Err(refuse(ReclaimRefusal::WrongClient));
        }
        if slot.epoch >= current {
            return Err(refuse(ReclaimRefusal::CurrentEpoch));
        }
        undo.push(UndoStep::Lock { id: Arc::clone(&slot.id), prev: Some(slot.clone()) });
        slot.epoch = current;
        Ok(Outcome::Lock(slot.to_lock()))
    }

    fn remove_slots(&mut self, slots: Vec<SlotId>, undo: &mut Undo) -> u64 {
        let n = slots.len() as u64;
        for slot in slots {
            let s = self.take_slot(slot);
            undo.push(UndoStep::Lock { id: Arc::clone(&s.id), prev: Some(s) });
        }
        n
    }

    /// Inserts `lock`, stamped with the current epoch. `id` is the interned
    /// id when the lock replaced one with the same id.
    fn insert_lock(&mut self, lock: &PersistedLock, id: Option<Arc<str>>) {
        let slot_id = self.alloc_slot();
        let slot = Slot {
            id: id.unwrap_or_else(|| Arc::from(lock.id.as_str())),
            share: self.by_share.insert(&lock.share, slot_id),
            file: self.by_file.insert(&lock.file_id, slot_id),
            owner: self.by_owner.insert(&lock.owner_id, slot_id),
            client: self.by_client.insert(&lock.client_id, slot_id),
            kind: StoredKind::from(lock.kind.clone()),
            acquired_at: lock.acquired_at,
            epoch: self.epoch,
        };
        self.by_id.insert(Arc::clone(&slot.id), slot_id);
        self.slots[slot_id as usize] = Some(slot);
    }

    /// Re-inserts a slot taken out earlier (undo), keys and epoch unchanged.
    fn insert_slot(&mut self, slot: Slot) {
        let slot_id = self.alloc_slot();
        self.by_share.insert(&slot.share, slot_id);
        self.by_file.insert(&slot.file, slot_id);
        self.by_owner.insert(&slot.owner, slot_id);
        self.by_client.insert(&slot.client, slot_id);
        self.by_id.insert(Arc::clone(&slot.id), slot_id);
        self.slots[slot_id as usize] = Some(slot);
    }

    fn alloc_slot(&mut self) -> SlotId {
        if let Some(slot) = self.free.pop() {
            return slot;
        }
        let slot = SlotId::try_from(self.slots.len()).expect("fewer than 2^32 live locks");
        self.slots.push(None);
        slot
    }

    /// Removes the lock `id` with all its index entries; `None` when absent.
    fn remove_slot(&mut self, id: &str) -> Option<Slot> {
        let slot_id = *self.by_id.get(id)?;
        Some(self.take_slot(slot_id))
    }

    fn take_slot(&mut self, slot_id: SlotId) -> Slot {
        let slot = self.slots[slot_id as usize].take().expect("indexed slot is live");
        self.by_id.remove(&*slot.id);
        self.by_share.remove(&slot.share, slot_id);
        self.by_file.remove(&slot.file, slot_id);
        self.by_owner.remove(&slot.owner, slot_id);
        self.by_client.remove(&slot.client, slot_id);
        self.free.push(slot_id);
        slot
    }

    fn live_slots(&self) -> impl Iterator<Item = (SlotId, &Slot)> {
        self.slots.iter().enumerate().filter_map(|(i, s)| s.as_ref().map(|s| (i as SlotId, s)))
    }

    // ---- snapshots --------------------------------------------------------

    /// A point-in-time copy for a snapshot (see [`StateView`]).
    pub(crate) fn view(&self) -> StateView {
        StateView {
            slots: self.live_slots().map(|(_, s)| s.clone()).collect(),
            clients: self.clients.values().cloned().collect(),
            epoch: self.epoch,
            clean: self.clean,
        }
    }

    /// An empty state to restore a snapshot into, sized for `locks`.
    pub(crate) fn restoring(epoch: u64, clean: bool, locks: usize) -> Self {
        let mut state = Self::new();
        state.epoch = epoch;
        state.clean = clean;
        state.slots.reserve_exact(locks);
        state.by_id.reserve(locks);
        state
    }

    /// Adds a lock from a snapshot, reusing the snapshot's interned strings.
    /// `Err` names the duplicated id.
    pub(crate) fn restore_lock(&mut self, slot: Slot) -> std::result::Result<(), Arc<str>> {
        if self.by_id.contains_key(&*slot.id) {
            return Err(slot.id);
        }
        let slot_id = self.alloc_slot();
        let slot = Slot {
            share: self.by_share.insert_shared(&slot.share, slot_id),
            file: self.by_file.insert_shared(&slot.file, slot_id),
            owner: self.by_owner.insert_shared(&slot.owner, slot_id),
            client: self.by_client.insert_shared(&slot.client, slot_id),
            ..slot
        };
        self.by_id.insert(Arc::clone(&slot.id), slot_id);
        self.slots[slot_id as usize] = Some(slot);
        Ok(())
    }

    /// Adds a client record from a snapshot. `false` if it was a duplicate.
    pub(crate) fn restore_client(&mut self, record: ClientRecord) -> bool {
        self.clients.insert(record.client_id.clone(), record).is_none()
    }

    // ---- reads ------------------------------------------------------------

    /// The lock with this id.
    pub fn get(&self, id: &str) -> Option<PersistedLock> {
        let slot = *self.by_id.get(id)?;
        self.slots[slot as usize].as_ref().map(Slot::to_lock)
    }

    /// Locks matching `query`, sorted by id. The candidates come from the
    /// smallest index that the query names, so the cost follows the answer.
    pub fn list(&self, query: &LockQuery) -> Vec<PersistedLock> {
        // The smallest slot set among the indexed filters the query names;
        // `None` when it names none (then every lock is a candidate).
        let narrowest = [
            (query.file_id.as_deref(), &self.by_file),
            (query.owner_id.as_deref(), &self.by_owner),
            (query.client_id.as_deref(), &self.by_client),
            (query.share.as_deref(), &self.by_share),
        ]
        .into_iter()
        .filter_map(|(key, index)| key.map(|k| index.get(k)))
        .min_by_key(|set| set.map_or(0, |s| s.len()));
        let mut hits: Vec<&Slot> = match narrowest {
            Some(set) => set
                .into_iter()
                .flatten()
                .filter_map(|&i| self.slots[i as usize].as_ref())
                .filter(|s| s.matches(query))
                .collect(),
            None => self.live_slots().map(|(_, s)| s).filter(|s| s.matches(query)).collect(),
        };
        hits.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        hits.into_iter().map(Slot::to_lock).collect()
    }

    /// Locks of `client_id` from an earlier epoch, sorted by id.
    pub fn reclaimable(&self, client_id: &str) -> Vec<PersistedLock> {
        let mut locks = self.list(&LockQuery::by_client(client_id));
        locks.retain(|l| l.server_epoch < self.epoch);
        locks
    }

    /// Every lock, in slot order (not sorted): for snapshots and exports.
    pub fn locks(&self) -> impl Iterator<Item = PersistedLock> + '_ {
        self.live_slots().map(|(_, s)| s.to_lock())
    }

    /// Number of locks.
    pub fn lock_count(&self) -> usize {
        self.by_id.len()
    }

    /// The client record with this id.
    pub fn client(&self, client_id: &str) -> Option<ClientRecord> {
        self.clients.get(client_id).cloned()
    }

    /// Every client record, sorted by client id.
    pub fn clients(&self) -> impl Iterator<Item = &ClientRecord> {
        self.clients.values()
    }

    /// Number of client records.
    pub fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// The current epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// Whether the last recorded shutdown was clean (no `Open` since).
    pub fn clean(&self) -> bool {
        self.clean
    }

    /// Checks every index invariant; panics with a description when one is
    /// broken. For tests and fuzzing.
    pub fn check_invariants(&self) {
        let live: Vec<(SlotId, &Slot)> = self.live_slots().collect();
        assert_eq!(live.len(), self.by_id.len(), "by_id size differs from live slots");
        assert_eq!(live.len() + self.free.len(), self.slots.len(), "free list out of step");
        for (i, slot) in &live {
            assert_eq!(self.by_id.get(&*slot.id), Some(i), "by_id entry of {:?}", slot.id);
            for (index, key) in [
                (&self.by_file, &slot.file),
                (&self.by_owner, &slot.owner),
                (&self.by_client, &slot.client),
                (&self.by_share, &slot.share),
            ] {
                assert!(index.get(key).is_some_and(|s| s.contains(i)), "index misses {:?}", slot.id);
            }
        }
        for index in [&self.by_file, &self.by_owner, &self.by_client, &self.by_share] {
            assert_eq!(index.entries(), live.len(), "an index holds stale entries");
        }
    }
}
