//! Unit tests of the protocol reader, the checks and the workload: a lost
//! acknowledged write, a torn transaction, records nobody wrote, a torn
//! last line, epochs, and the validity of every chosen transaction.

use super::verify::{TaskModel, Totals, absorb, check};
use super::workload::{Rng, TaskView, client_id, lock_id, owner_task};
use lockwal::model::{PersistedLock, Timestamp};
use lockwal::op::Op;
use lockwal::testing::{model::Model, sample};
use std::collections::{BTreeMap, BTreeSet};

fn task_models(n: usize) -> Vec<TaskModel> {
    (0..n).map(|_| TaskModel::default()).collect()
}

fn lines(text: &str) -> Vec<u8> {
    text.as_bytes().to_vec()
}

fn put(task: u32, slot: u32) -> Op {
    let mut l = sample::byte_range(&lock_id(task, slot), "s", "f", "o", &client_id(task));
    l.acquired_at = Timestamp::from_unix_micros(7);
    Op::PutLock(l)
}

fn intent(task: u32, seq: u64, ops: &[Op]) -> String {
    format!("I {task} {seq} {}\n", serde_json::to_string(ops).unwrap())
}

fn stamped(op: &Op, epoch: u64) -> PersistedLock {
    let Op::PutLock(l) = op else { panic!() };
    PersistedLock { server_epoch: epoch, ..l.clone() }
}

#[test]
fn owner_task_parses_only_workload_ids() {
    assert_eq!(owner_task(&lock_id(3, 7)), Some(3));
    assert_eq!(owner_task(&client_id(12)), Some(12));
    assert_eq!(owner_task("t3-8"), None, "slot out of range");
    assert_eq!(owner_task("x3-1"), None);
    assert_eq!(owner_task("t-1"), None);
}

#[test]
fn acknowledged_grants_must_survive_and_in_flight_ones_may_go_either_way() {
    let mut tasks = task_models(2);
    let mut totals = Totals::default();
    let mut epoch = None;
    let (a, b) = (put(0, 1), put(1, 2));
    let text =
        format!("E 5\n{}A 0 1\n{}", intent(0, 1, std::slice::from_ref(&a)), intent(1, 1, std::slice::from_ref(&b)));
    assert_eq!(absorb(&lines(&text), &mut epoch, &mut tasks, &mut totals), None);
    assert_eq!((epoch, totals.acked), (Some(5), 1));
    // The store has the acknowledged grant and the in-flight one: fine.
    check(vec![stamped(&a, 5), stamped(&b, 5)], vec![], &mut tasks, &mut totals, 1);
    assert!(totals.ok(), "{totals:?}");
    assert_eq!((totals.verified, totals.in_flight_applied), (1, 1));
    // Next round nothing happens, but the acknowledged grant vanished.
    check(vec![stamped(&b, 5)], vec![], &mut tasks, &mut totals, 2);
    assert_eq!(totals.lost, 1);
    assert!(!totals.ok());
}

#[test]
fn a_transaction_applied_in_part_is_torn() {
    let mut tasks = task_models(1);
    let mut totals = Totals::default();
    let (a, b) = (put(0, 0), put(0, 1));
    let text = format!("E 2\n{}", intent(0, 1, &[a.clone(), b]));
    absorb(&lines(&text), &mut None, &mut tasks, &mut totals);
    check(vec![stamped(&a, 2)], vec![], &mut tasks, &mut totals, 1);
    assert_eq!((totals.torn_transactions, totals.lost), (1, 0));
}

#[test]
fn records_nobody_wrote_and_content_changes_are_caught() {
    let mut tasks = task_models(1);
    let mut totals = Totals::default();
    let a = put(0, 0);
    let text = format!("E 2\n{}A 0 1\n", intent(0, 1, std::slice::from_ref(&a)));
    absorb(&lines(&text), &mut None, &mut tasks, &mut totals);
    let mut changed = stamped(&a, 2);
    changed.file_id = format!("{}!", changed.file_id).into();
    let stranger = sample::byte_range("zz", "s", "f", "o", "c");
    check(vec![changed, stranger], vec![], &mut tasks, &mut totals, 1);
    assert_eq!((totals.lost, totals.unexpected), (1, 1));
}

#[test]
fn an_incomplete_last_line_is_ignored_and_an_ack_without_intent_is_a_protocol_error() {
    let mut tasks = task_models(1);
    let mut totals = Totals::default();
    absorb(&lines("E 1\nA 0 1\nI 0 2 [{\"Dele"), &mut None, &mut tasks, &mut totals);
    assert_eq!(totals.protocol_errors, 1);
    assert!(tasks[0].in_flight.is_none(), "the torn intent line was not taken");
}

#[test]
fn epochs_must_increase_strictly() {
    let mut totals = Totals::default();
    totals.see_epoch(1, "a");
    totals.see_epoch(2, "b");
    assert_eq!(totals.epoch_violations, 0);
    totals.see_epoch(2, "c");
    assert_eq!(totals.epoch_violations, 1);
}

#[test]
fn every_chosen_transaction_is_valid_for_the_task() {
    let mut rng = Rng::new(42);
    let mut model = Model::new(3);
    let mut view = TaskView { task: 4, held: BTreeMap::new(), has_client: false, epoch: 3 };
    view.held.insert(0, 2); // a lock from an earlier epoch, for reclaim
    model.epoch = 2;
    model.apply(&[put(4, 0)]).unwrap();
    model.epoch = 3;
    for seq in 1..5000 {
        let ops = view.choose(&mut rng, seq);
        model.apply(&ops).unwrap_or_else(|e| panic!("transaction {seq} {ops:?} refused: {e}"));
        view.applied(&ops);
        let held: BTreeSet<u32> = model.locks.keys().map(|id| id[3..].parse().unwrap()).collect();
        assert_eq!(held, view.held.keys().copied().collect(), "after {seq}");
        assert!(model.locks.keys().chain(model.clients.keys().map(|(_, id)| id)).all(|id| owner_task(id) == Some(4)));
    }
}
