//! Observing a store's durable state and comparing it with what a
//! workload allows.

use crate::error::Error;
use crate::model::{ClientKind, ClientRecord, DurableHandle, HandleQuery, LockQuery, PersistedLock, RecordScan};
use crate::store::LockStore;
use crate::testing::workload::{Expected, SPACES, Targeted};
use crate::wal::WalLockStore;
use std::future::Future;

/// Polls a future that is ready at once (the store's reads take no await).
fn now<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    match future.as_mut().poll(&mut cx) {
        std::task::Poll::Ready(output) => output,
        std::task::Poll::Pending => panic!("a read of the store was expected to complete at once"),
    }
}

/// Everything observable about a store's durable state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observed {
    /// Every lock, sorted by id.
    pub locks: Vec<PersistedLock>,
    /// Every client, sorted by kind, then id.
    pub clients: Vec<ClientRecord>,
    /// Every durable handle, sorted by id.
    pub handles: Vec<DurableHandle>,
    /// Every record of the keyspaces workloads use ([`SPACES`]), as
    /// (space, key, value), sorted by space, then key.
    pub records: Vec<(String, Vec<u8>, Vec<u8>)>,
    /// The epoch of this incarnation.
    pub epoch: u64,
    /// Whether the previous incarnation closed cleanly.
    pub clean: bool,
}

/// Reads everything observable from an open store: records of the
/// keyspaces in [`SPACES`], which the workloads keep to (a [`LockStore`]
/// has no call that lists keyspaces: [`observe_wal`] sees every one).
pub fn observe(store: &dyn LockStore) -> Result<Observed, Error> {
    let mut spaces = SPACES.map(str::to_owned);
    spaces.sort_unstable();
    observe_spaces(store, &spaces)
}

/// [`observe`] of a WAL store, with the records of every keyspace it holds
/// (so that a record anywhere else is seen too), each keyspace's scan
/// checked against the count the store gives for it.
pub fn observe_wal(store: &WalLockStore) -> Result<Observed, Error> {
    let spaces = store.record_spaces();
    let names: Vec<String> = spaces.iter().map(|(name, _)| name.clone()).collect();
    let observed = observe_spaces(store, &names)?;
    for (space, count) in spaces {
        let scanned = observed.records.iter().filter(|(s, _, _)| *s == space).count() as u64;
        if scanned != count {
            return Err(Error::Internal(format!("keyspace {space:?} counts {count} records, a scan finds {scanned}")));
        }
    }
    Ok(observed)
}

/// [`observe`] with the records of `spaces` (in name order).
fn observe_spaces(store: &dyn LockStore, spaces: &[String]) -> Result<Observed, Error> {
    let mut records = Vec::new();
    for space in spaces {
        for record in now(store.scan_records(space, &RecordScan::all(usize::MAX)))? {
            records.push((space.clone(), record.key, record.value));
        }
    }
    Ok(Observed {
        locks: now(store.list_locks(&LockQuery::all()))?,
        clients: now(store.list_clients(&crate::model::ClientQuery::all()))?,
        handles: now(store.list_handles(&HandleQuery::All))?,
        records,
        epoch: now(store.epoch())?,
        clean: now(store.previous_shutdown_was_clean())?,
    })
}

/// [`Targeted::check`] of an observed state, `acked` steps acknowledged.
pub fn check_targeted(observed: &Observed, targeted: &Targeted, acked: usize) -> Result<(), String> {
    targeted.check(
        &|id| observed.locks.iter().any(|l| &*l.id == id),
        &|space, key| observed.records.iter().any(|(s, k, _)| s == space && k == key),
        &|id| observed.handles.iter().any(|h| h.id == id),
        acked,
    )
}

fn matches(observed: &Observed, expected: &Expected) -> bool {
    observed.epoch == expected.model.epoch + 1
        && observed.clean == expected.clean
        && observed.locks.len() == expected.model.locks.len()
        && observed.locks.iter().eq(expected.model.locks.values())
        && observed.clients.iter().eq(expected.model.clients.values())
        && observed.handles.iter().eq(expected.model.handles.values())
        && observed.records.len() == expected.model.records.len()
        && observed
            .records
            .iter()
            .zip(&expected.model.records)
            .all(|((s, k, v), ((ms, mk), mv))| (s, k, v) == (ms, mk, mv))
}

/// Which entries of `want` are missing from `got`, which of `got` are not
/// in `want`, and which differ: each as its key's name.
fn diff<K: Ord + Clone, V: PartialEq>(
    want: &std::collections::BTreeMap<K, V>,
    got: &std::collections::BTreeMap<K, V>,
    name: impl Fn(&K) -> String,
) -> (Vec<String>, Vec<String>, Vec<String>) {
    let lost = want.keys().filter(|k| !got.contains_key(*k)).map(&name).collect();
    let extra = got.keys().filter(|k| !want.contains_key(*k)).map(&name).collect();
    let changed = want.iter().filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v)).map(|(k, _)| name(k)).collect();
    (lost, extra, changed)
}

/// What differs between an observed state and an expected one, for
/// failure messages.
pub fn describe_difference(observed: &Observed, expected: &Expected) -> String {
    let mut out = Vec::new();
    let got: std::collections::BTreeMap<&str, &PersistedLock> = observed.locks.iter().map(|l| (&*l.id, l)).collect();
    let lost: Vec<&str> =
        expected.model.locks.keys().filter(|id| !got.contains_key(id.as_str())).map(|s| s.as_str()).collect();
    let extra: Vec<&str> = got.keys().filter(|id| !expected.model.locks.contains_key(**id)).copied().collect();
    let changed: Vec<&str> = expected
        .model
        .locks
        .iter()
        .filter(|(id, l)| got.get(id.as_str()).is_some_and(|g| g != l))
        .map(|(id, _)| id.as_str())
        .collect();
    if !lost.is_empty() {
        out.push(format!("locks missing: {lost:?}"));
    }
    if !extra.is_empty() {
        out.push(format!("locks that should not be there: {extra:?}"));
    }
    if !changed.is_empty() {
        out.push(format!("locks with other contents: {changed:?}"));
    }
    let want_clients: Vec<(ClientKind, &str)> =
        expected.model.clients.keys().map(|(k, id)| (*k, id.as_str())).collect();
    let got_clients: Vec<(ClientKind, &str)> =
        observed.clients.iter().map(|c| (c.kind(), c.client_id.as_str())).collect();
    if want_clients != got_clients || !observed.clients.iter().eq(expected.model.clients.values()) {
        out.push(format!("clients {got_clients:?}, expected {want_clients:?}"));
    }
    let got_handles = observed.handles.iter().map(|h| (h.id.clone(), h.clone())).collect();
    let (lost, extra, changed) = diff(&expected.model.handles, &got_handles, String::clone);
    for (what, ids) in [("missing", lost), ("that should not be there", extra), ("with other contents", changed)] {
        if !ids.is_empty() {
            out.push(format!("durable handles {what}: {ids:?}"));
        }
    }
    let got_records = observed.records.iter().map(|(s, k, v)| ((s.clone(), k.clone()), v.clone())).collect();
    let (lost, extra, changed) =
        diff(&expected.model.records, &got_records, |(s, k)| format!("{s}/{}", crate::error::hex(k)));
    for (what, keys) in [("missing", lost), ("that should not be there", extra), ("with other values", changed)] {
        if !keys.is_empty() {
            out.push(format!("records {what}: {keys:?}"));
        }
    }
    if observed.epoch != expected.model.epoch + 1 {
        out.push(format!("epoch {}, expected {}", observed.epoch, expected.model.epoch + 1));
    }
    if observed.clean != expected.clean {
        out.push(format!("previous shutdown clean {}, expected {}", observed.clean, expected.clean));
    }
    if out.is_empty() { "no difference".into() } else { out.join("; ") }
}

/// Checks an observed state against the allowed ones (`allowed[0]` is the
/// acknowledged state); returns the index of the one it equals.
pub fn verify(observed: &Observed, allowed: &[Expected]) -> Result<usize, String> {
    let acked = &allowed[0];
    if observed.epoch <= acked.model.epoch {
        return Err(format!("epoch {} is not above the acknowledged epoch {}", observed.epoch, acked.model.epoch));
    }
    allowed.iter().position(|e| matches(observed, e)).ok_or_else(|| {
        let mut msg = format!(
            "recovered state matches none of the {} allowed; against the acknowledged state: {}",
            allowed.len(),
            describe_difference(observed, acked)
        );
        if allowed.len() > 1 {
            let last = allowed.last().expect("not empty");
            msg += &format!("; against the last issued: {}", describe_difference(observed, last));
        }
        msg
    })
}
