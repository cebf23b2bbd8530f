//! A deliberately naive model of a lock store: two `BTreeMap`s and a linear
//! scan for everything. It shares no code with [`crate::state`], so it is an
//! independent oracle for the state machine and for every backend.

use crate::error::{Error, ReclaimRefusal};
use crate::model::{ClientKind, ClientQuery, ClientRecord, LockQuery, PersistedLock};
use crate::op::{Op, Outcome, validate_batch};
use std::collections::BTreeMap;

/// The whole observable state of a store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    /// Locks by id.
    pub locks: BTreeMap<String, PersistedLock>,
    /// Client records by kind and id.
    pub clients: BTreeMap<(ClientKind, String), ClientRecord>,
    /// Current epoch.
    pub epoch: u64,
}

/// The kind of an error, for comparing a backend's error with the model's.
pub fn error_kind(e: &Error) -> std::mem::Discriminant<Error> {
    std::mem::discriminant(e)
}

impl Model {
    /// A model of a freshly opened store at `epoch`.
    pub fn new(epoch: u64) -> Self {
        Self { epoch, ..Self::default() }
    }

    /// Applies a transaction all or nothing.
    pub fn apply(&mut self, ops: &[Op]) -> Result<Vec<Outcome>, Error> {
        validate_batch(ops)?;
        let mut next = self.clone();
        let outcomes = ops.iter().map(|op| next.apply_op(op)).collect::<Result<Vec<_>, _>>()?;
        *self = next;
        Ok(outcomes)
    }

    fn apply_op(&mut self, op: &Op) -> Result<Outcome, Error> {
        Ok(match op {
            Op::PutLock(lock) => {
                let mut lock = lock.clone();
                lock.server_epoch = self.epoch;
                self.locks.insert(lock.id.to_string(), lock);
                Outcome::Done
            }
            Op::UpdateLock(lock) => {
                let old = self.locks.get(&*lock.id).ok_or_else(|| Error::lock_not_found(&*lock.id))?;
                let mut lock = lock.clone();
                lock.server_epoch = old.server_epoch;
                self.locks.insert(lock.id.to_string(), lock);
                Outcome::Done
            }
            Op::DeleteLock { id } => {
                self.locks.remove(id).ok_or_else(|| Error::lock_not_found(id))?;
                Outcome::Done
            }
            Op::DeleteLocksByClient { client_id } => {
                let before = self.locks.len();
                self.locks.retain(|_, l| *l.client_id != **client_id);
                Outcome::Count((before - self.locks.len()) as u64)
            }
            Op::DeleteLocksByFile { file_id } => {
                let before = self.locks.len();
                self.locks.retain(|_, l| *l.file_id != **file_id);
                Outcome::Count((before - self.locks.len()) as u64)
            }
            Op::PutClient(record) => {
                self.clients.insert((record.kind(), record.client_id.clone()), record.clone());
                Outcome::Done
            }
            Op::DeleteClient { kind, client_id } => {
                self.clients
                    .remove(&(*kind, client_id.clone()))
                    .ok_or_else(|| Error::client_not_found(*kind, client_id))?;
                Outcome::Done
            }
            Op::DeleteClients(selector) => {
                let before = self.clients.len();
                self.clients.retain(|_, r| !selector.matches(r));
                Outcome::Count((before - self.clients.len()) as u64)
            }
            Op::MarkReclaimComplete { kind, client_id } => {
                let record = self
                    .clients
                    .get_mut(&(*kind, client_id.clone()))
                    .ok_or_else(|| Error::client_not_found(*kind, client_id))?;
                record.reclaim_complete = true;
                Outcome::Done
            }
            Op::Reclaim { id, client_id } => {
                let epoch = self.epoch;
                let lock = self.locks.get_mut(id).ok_or_else(|| Error::lock_not_found(id))?;
                let refuse = |reason| Error::ReclaimRefused { id: id.clone(), client_id: client_id.clone(), reason };
                if *lock.client_id != **client_id {
                    return Err(refuse(ReclaimRefusal::WrongClient));
                }
                if lock.server_epoch >= epoch {
                    return Err(refuse(ReclaimRefusal::CurrentEpoch));
                }
                lock.server_epoch = epoch;
                Outcome::Lock(lock.clone())
            }
            Op::EndGrace { share } => {
                let ends =
                    |l: &PersistedLock| l.server_epoch < self.epoch && share.as_deref().is_none_or(|s| s == &*l.share);
                let (stale, keep): (BTreeMap<_, _>, BTreeMap<_, _>) =
                    std::mem::take(&mut self.locks).into_iter().partition(|(_, l)| ends(l));
                self.locks = keep;
                Outcome::Locks(stale.into_values().collect())
            }
        })
    }

    /// A restart: the next epoch, everything else kept.
    pub fn restart(&mut self) {
        self.epoch += 1;
    }

    /// Locks matching `query`, sorted by id.
    pub fn list(&self, query: &LockQuery) -> Vec<PersistedLock> {
        self.locks.values().filter(|l| query.matches(l)).cloned().collect()
    }

    /// Client records matching `query`, sorted by kind, then id.
    pub fn list_clients(&self, query: &ClientQuery) -> Vec<ClientRecord> {
        self.clients.values().filter(|r| query.matches(r)).cloned().collect()
    }
}
