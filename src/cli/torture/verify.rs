//! The parent's side of the check: reads the child's protocol lines into a
//! naive model per task ([`absorb`]), compares the reopened store with those
//! models ([`check`]), and keeps the running [`Totals`] of what was
//! verified, lost, torn or unexpected. Failure details go to stderr through
//! [`report`]. Builds on [`super::workload`] only.

use super::workload::owner_task;
use lockwal::model::{ClientKind, ClientRecord, PersistedLock};
use lockwal::op::Op;
use lockwal::testing::model::Model;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// One task's records.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
struct Records {
    locks: BTreeMap<String, PersistedLock>,
    clients: BTreeMap<(ClientKind, String), ClientRecord>,
}

impl From<&Model> for Records {
    fn from(m: &Model) -> Self {
        Self { locks: m.locks.clone(), clients: m.clients.clone() }
    }
}

/// What the parent knows about one task: the acknowledged state and the
/// transaction in flight, if any.
#[derive(Default)]
pub(super) struct TaskModel {
    pub(super) model: Model,
    pub(super) in_flight: Option<(u64, Vec<Op>)>,
    pub(super) acked_this_round: u64,
}

/// Running totals.
#[derive(Default, Debug)]
pub(super) struct Totals {
    pub(super) kills: u64,
    pub(super) acked: u64,
    pub(super) verified: u64,
    pub(super) lost: u64,
    pub(super) torn_transactions: u64,
    pub(super) unexpected: u64,
    pub(super) epoch_violations: u64,
    pub(super) protocol_errors: u64,
    pub(super) epochs_seen: u64,
    pub(super) first_epoch: u64,
    pub(super) last_epoch: u64,
    pub(super) in_flight_applied: u64,
    pub(super) in_flight_absent: u64,
    pub(super) recoveries: Vec<Duration>,
    pub(super) replays: Vec<Duration>,
}

impl Totals {
    pub(super) fn ok(&self) -> bool {
        self.lost == 0
            && self.torn_transactions == 0
            && self.unexpected == 0
            && self.epoch_violations == 0
            && self.protocol_errors == 0
    }

    pub(super) fn see_epoch(&mut self, epoch: u64, what: &str) {
        if self.epochs_seen > 0 && epoch <= self.last_epoch {
            self.epoch_violations += 1;
            report(format!("epoch did not increase: {what} has epoch {epoch} after {}", self.last_epoch));
        }
        if self.epochs_seen == 0 {
            self.first_epoch = epoch;
        }
        self.epochs_seen += 1;
        self.last_epoch = self.last_epoch.max(epoch);
    }
}

/// A failure detail, on stderr (at most a few dozen, then a count).
pub(super) fn report(message: String) {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    static SHOWN: AtomicU64 = AtomicU64::new(0);
    let n = SHOWN.fetch_add(1, Relaxed);
    if n < 40 {
        eprintln!("lockwal: torture: {message}");
    } else if n == 40 {
        eprintln!("lockwal: torture: (further details suppressed)");
    }
}

/// Feeds the child's complete lines into the task models.
pub(super) fn absorb(
    lines: &[u8],
    epoch: &mut Option<u64>,
    tasks: &mut [TaskModel],
    totals: &mut Totals,
) -> Option<String> {
    let mut fatal = None;
    let text = String::from_utf8_lossy(lines);
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    for line in complete.lines() {
        let mut parts = line.splitn(4, ' ');
        let tag = parts.next().unwrap_or_default();
        let mut num = || parts.next().and_then(|p| p.parse::<u64>().ok());
        match tag {
            "E" => {
                let Some(e) = num() else {
                    totals.protocol_errors += 1;
                    continue;
                };
                *epoch = Some(e);
                for t in tasks.iter_mut() {
                    t.model.epoch = e;
                }
            }
            "I" | "A" => {
                let (Some(task), Some(seq)) = (num(), num()) else {
                    totals.protocol_errors += 1;
                    report(format!("unreadable line from the child: {line}"));
                    continue;
                };
                let Some(t) = tasks.get_mut(task as usize) else {
                    totals.protocol_errors += 1;
                    continue;
                };
                if tag == "I" {
                    match serde_json::from_str::<Vec<Op>>(parts.next().unwrap_or_default()) {
                        Ok(ops) if t.in_flight.is_none() => t.in_flight = Some((seq, ops)),
                        _ => {
                            totals.protocol_errors += 1;
                            report(format!("task {task}: unexpected intent {seq}"));
                        }
                    }
                } else {
                    match t.in_flight.take() {
                        Some((s, ops)) if s == seq => {
                            if let Err(e) = t.model.apply(&ops) {
                                totals.protocol_errors += 1;
                                report(format!("task {task}: the model refuses acknowledged transaction {seq}: {e}"));
                            }
                            t.acked_this_round += 1;
                            totals.acked += 1;
                        }
                        _ => {
                            totals.protocol_errors += 1;
                            report(format!("task {task}: acknowledgement {seq} without its intent"));
                        }
                    }
                }
            }
            "X" => fatal = Some(line[1..].trim().to_owned()),
            _ => {
                totals.protocol_errors += 1;
                report(format!("unreadable line from the child: {line}"));
            }
        }
    }
    fatal
}

/// Compares the reopened store with the models, task by task; resets each
/// model to what the store holds.
pub(super) fn check(
    locks: Vec<PersistedLock>,
    clients: Vec<ClientRecord>,
    tasks: &mut [TaskModel],
    totals: &mut Totals,
    round: u64,
) {
    let mut actual: Vec<Records> = vec![Records::default(); tasks.len()];
    for lock in locks {
        match owner_task(&lock.id).and_then(|t| actual.get_mut(t as usize)) {
            Some(r) => {
                r.locks.insert(String::from(&*lock.id), lock);
            }
            None => {
                totals.unexpected += 1;
                report(format!("round {round}: a lock nobody wrote: {:?}", lock.id));
            }
        }
    }
    for client in clients {
        match owner_task(&client.client_id).and_then(|t| actual.get_mut(t as usize)) {
            Some(r) => {
                r.clients.insert((client.kind(), client.client_id.clone()), client);
            }
            None => {
                totals.unexpected += 1;
                report(format!("round {round}: a client record nobody wrote: {:?}", client.client_id));
            }
        }
    }
    for (task, (t, got)) in tasks.iter_mut().zip(actual).enumerate() {
        let before = Records::from(&t.model);
        let after = t.in_flight.take().and_then(|(_, ops)| {
            let mut m = t.model.clone();
            m.apply(&ops).ok().map(|_| m)
        });
        let acked = std::mem::take(&mut t.acked_this_round);
        if got == before {
            totals.verified += acked;
            if after.is_some() {
                totals.in_flight_absent += 1;
            }
            continue;
        }
        if let Some(m) = after.as_ref().filter(|m| got == Records::from(*m)) {
            totals.verified += acked;
            totals.in_flight_applied += 1;
            t.model = m.clone();
            continue;
        }
        // Neither: name every record that differs from both.
        let after_records = after.as_ref().map(Records::from);
        let mut differing = 0;
        let lock_ids: BTreeSet<&String> = before.locks.keys().chain(got.locks.keys()).collect();
        for id in lock_ids {
            let g = got.locks.get(id);
            if g != before.locks.get(id) && after_records.as_ref().is_none_or(|a| g != a.locks.get(id)) {
                differing += 1;
                report(format!(
                    "round {round}: task {task}: lock {id:?}: store has {g:?}, acknowledged {:?}",
                    before.locks.get(id)
                ));
            }
        }
        let client_ids: BTreeSet<&(ClientKind, String)> = before.clients.keys().chain(got.clients.keys()).collect();
        for id in client_ids {
            let g = got.clients.get(id);
            if g != before.clients.get(id) && after_records.as_ref().is_none_or(|a| g != a.clients.get(id)) {
                differing += 1;
                report(format!("round {round}: task {task}: client {id:?} differs from what was acknowledged"));
            }
        }
        if differing > 0 {
            totals.lost += differing;
        } else {
            totals.torn_transactions += 1;
            report(format!("round {round}: task {task}: a transaction was applied in part"));
        }
        t.model.locks = got.locks;
        t.model.clients = got.clients;
    }
}
