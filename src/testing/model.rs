//! A deliberately naive model of a lock store: two `BTreeMap`s and a linear
//! scan for everything. It shares no code with [`crate::state`], so it is an
//! independent oracle for the state machine and for every backend.

use crate::error::{Error, ReclaimRefusal};
use crate::model::{
    ClientKind, ClientQuery, ClientRecord, Conflicts, DurableHandle, HandleQuery, LockQuery, PersistedLock, Record,
    RecordScan,
};
use crate::op::{Op, Outcome, validate_batch};
use std::collections::BTreeMap;

/// The whole observable state of a store.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Model {
    /// Locks by id.
    pub locks: BTreeMap<String, PersistedLock>,
    /// Client records by kind and id.
    pub clients: BTreeMap<(ClientKind, String), ClientRecord>,
    /// Durable handles by id.
    pub handles: BTreeMap<String, DurableHandle>,
    /// Records by keyspace and key.
    pub records: BTreeMap<(String, Vec<u8>), Vec<u8>>,
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
            Op::Grant(lock) => {
                let answer = super::conflict::answer(lock, &self.locks);
                if !answer.holders.is_empty() || !answer.to_break.is_empty() {
                    let pick = |ids: &[String]| ids.iter().map(|id| self.locks[id].clone()).collect();
                    let conflicts = Conflicts { holders: pick(&answer.holders), to_break: pick(&answer.to_break) };
                    return Err(Error::Conflict { id: lock.id.to_string(), conflicts: Box::new(conflicts) });
                }
                self.apply_op(&Op::PutLock(lock.clone()))?
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
            Op::PutHandle(handle) => {
                // The file id is checked first, across every handle, then
                // the create GUID.
                let others = || self.handles.values().filter(|h| h.id != handle.id);
                let same_file = others().find(|h| h.file_id == handle.file_id).map(|h| ("file_id", h));
                let same_guid = || others().find(|h| h.create_guid.is_some() && h.create_guid == handle.create_guid);
                if let Some((field, other)) = same_file.or_else(|| same_guid().map(|h| ("create_guid", h))) {
                    return Err(Error::HandleConflict { id: handle.id.clone(), field, holder: other.id.clone() });
                }
                self.handles.insert(handle.id.clone(), handle.clone());
                Outcome::Done
            }
            Op::DeleteHandle { id } => {
                self.handles.remove(id).ok_or_else(|| Error::handle_not_found(id))?;
                Outcome::Done
            }
            Op::ConsumeHandleByFileId { file_id } => {
                let id = self.handles.values().find(|h| h.file_id == *file_id).map(|h| h.id.clone());
                let handle = id
                    .and_then(|id| self.handles.remove(&id))
                    .ok_or_else(|| Error::handle_not_found_by_file_id(file_id))?;
                Outcome::Handle(Box::new(handle))
            }
            Op::ConsumeHandleByCreateGuid { create_guid } => {
                let id = self.handles.values().find(|h| h.create_guid == Some(*create_guid)).map(|h| h.id.clone());
                let handle = id
                    .and_then(|id| self.handles.remove(&id))
                    .ok_or_else(|| Error::handle_not_found_by_create_guid(create_guid))?;
                Outcome::Handle(Box::new(handle))
            }
            Op::ExpireHandles { now } => {
                // Straight from the definition: disconnected + timeout < now.
                let expired = |h: &DurableHandle| {
                    i128::from(h.disconnected_at.unix_micros) + i128::from(h.timeout_ms) * 1000
                        < i128::from(now.unix_micros)
                };
                let (gone, keep): (BTreeMap<_, _>, BTreeMap<_, _>) =
                    std::mem::take(&mut self.handles).into_iter().partition(|(_, h)| expired(h));
                self.handles = keep;
                Outcome::Handles(gone.into_values().collect())
            }
            Op::PutRecord { space, key, value } => {
                self.records.insert((space.clone(), key.clone()), value.clone());
                Outcome::Done
            }
            Op::DeleteRecord { space, key } => {
                self.records
                    .remove(&(space.clone(), key.clone()))
                    .ok_or_else(|| Error::record_not_found(space, key))?;
                Outcome::Done
            }
            Op::SwapRecord { space, key, expected, value } => {
                let slot = (space.clone(), key.clone());
                if self.records.get(&slot) != expected.as_ref() {
                    return Err(Error::ConditionFailed { space: space.clone(), key: key.clone(), reason: "differs" });
                }
                match value {
                    Some(v) => self.records.insert(slot, v.clone()),
                    None => self.records.remove(&slot),
                };
                Outcome::Done
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

    /// Durable handles matching `query`, sorted by id.
    pub fn list_handles(&self, query: &HandleQuery) -> Vec<DurableHandle> {
        let matches = |h: &DurableHandle| match query {
            HandleQuery::All => true,
            HandleQuery::AppInstance(guid) => h.app_instance_id == Some(*guid),
            HandleQuery::FileHandle(fh) => h.file_handle == *fh,
            HandleQuery::Share(share) => h.share == *share,
        };
        self.handles.values().filter(|h| matches(h)).cloned().collect()
    }

    /// Records of `space` that `scan` selects, in key order.
    pub fn scan_records(&self, space: &str, scan: &RecordScan) -> Vec<Record> {
        let hits = self.records.iter().filter(|((s, key), _)| s == space && scan.matches(key));
        hits.take(scan.limit).map(|((_, key), value)| Record { key: key.clone(), value: value.clone() }).collect()
    }

    /// Client records matching `query`, sorted by kind, then id.
    pub fn list_clients(&self, query: &ClientQuery) -> Vec<ClientRecord> {
        self.clients.values().filter(|r| query.matches(r)).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::{Command, State};
    use crate::testing::sample;

    /// Regression (review of issue 18): with one handle holding the create
    /// GUID and another the file id of a new handle, the model named the
    /// GUID's holder and the state machine the file id's; the property
    /// tests compared only the error's variant. Both name the file id.
    #[test]
    fn a_handle_conflict_names_the_same_field_and_holder_as_the_state_machine() {
        let (a, b) = (sample::handle(1), sample::handle(2));
        let clash = DurableHandle { create_guid: a.create_guid, file_id: b.file_id, ..sample::handle(3) };
        let setup = vec![Op::PutHandle(a), Op::PutHandle(b)];
        let mut state = State::new();
        state.apply(&Command::Open { epoch: 1 }).unwrap();
        state.apply(&Command::Txn(setup.clone())).unwrap();
        let mut model = Model::new(1);
        model.apply(&setup).unwrap();
        let from_state = state.apply(&Command::Txn(vec![Op::PutHandle(clash.clone())])).unwrap_err();
        let from_model = model.apply(&[Op::PutHandle(clash)]).unwrap_err();
        assert_eq!(format!("{from_state:?}"), format!("{from_model:?}"));
        assert!(matches!(from_state, Error::HandleConflict { field: "file_id", ref holder, .. } if holder == "open-2"));
    }
}
