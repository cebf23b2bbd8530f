use super::*;
use crate::testing::workload::{Expected, SPACES, Step};
use crate::testing::workload::{handle, record_value};

/// An expected state with two handles and two records, and what a
/// store holding exactly it shows.
fn state() -> (Expected, Observed) {
    let mut expected = Expected::initial();
    expected.apply(&Step::Open);
    let ops = vec![
        crate::op::Op::PutHandle(handle(1, 1, Some(1), 7)),
        crate::op::Op::PutHandle(handle(2, 2, None, 8)),
        crate::op::Op::PutRecord { space: SPACES[0].into(), key: b"a".to_vec(), value: record_value(3) },
        crate::op::Op::PutRecord { space: SPACES[2].into(), key: b"ab".to_vec(), value: record_value(0) },
    ];
    expected.apply(&Step::Txn(ops)).expect("a transaction").expect("applies");
    let observed = Observed {
        locks: Vec::new(),
        clients: Vec::new(),
        handles: expected.model.handles.values().cloned().collect(),
        records: expected.model.records.iter().map(|((s, k), v)| (s.clone(), k.clone(), v.clone())).collect(),
        epoch: expected.model.epoch + 1,
        clean: false,
    };
    (expected, observed)
}

/// The crash check sees a handle or record lost, resurrected, or with
/// one field changed, and says which.
#[test]
fn verify_catches_a_lost_resurrected_or_changed_handle_or_record() {
    let (expected, observed) = state();
    assert_eq!(verify(&observed, std::slice::from_ref(&expected)), Ok(0));
    let refused = |o: &Observed| verify(o, std::slice::from_ref(&expected)).expect_err("a difference");
    let mut lost = observed.clone();
    lost.handles.pop();
    assert!(refused(&lost).contains(r#"durable handles missing: ["h2"]"#), "{}", refused(&lost));
    let mut resurrected = observed.clone();
    resurrected.handles.push(handle(3, 3, Some(3), 9));
    assert!(refused(&resurrected).contains("durable handles that should not be there"));
    let mut changed = observed.clone();
    changed.handles[0].position += 1;
    assert!(refused(&changed).contains(r#"durable handles with other contents: ["h1"]"#));
    let mut record_lost = observed.clone();
    record_lost.records.remove(0);
    assert!(refused(&record_lost).contains(r#"records missing: ["dirents/61"]"#), "{}", refused(&record_lost));
    let mut record_back = observed.clone();
    record_back.records.push((SPACES[2].into(), b"b".to_vec(), Vec::new()));
    assert!(refused(&record_back).contains("records that should not be there"));
    let mut value = observed.clone();
    value.records[1].2.push(0);
    assert!(refused(&value).contains("records with other values"));
}

/// A WAL store's observation holds the records of every keyspace, not
/// only those of the workloads.
#[test]
fn observe_wal_sees_records_of_every_keyspace() {
    let fs = SimFs::lossless();
    prepare_dir(&fs, &store_dir()).unwrap();
    let put = |space: &str| crate::op::Op::PutRecord { space: space.into(), key: b"k".to_vec(), value: vec![1] };
    let steps = [Step::Open, Step::Txn(vec![put("elsewhere"), put(SPACES[1])]), Step::Close];
    run(&fs, &store_dir(), &crash_options(), &steps).unwrap();
    let observed = open_and_observe(&fs, &store_dir(), &crash_options()).unwrap();
    let spaces: Vec<&str> = observed.records.iter().map(|(s, _, _)| s.as_str()).collect();
    assert_eq!(spaces, [SPACES[1], "elsewhere"]);
    let (expected, _) = crate::testing::workload::expected_states(&steps);
    assert_eq!(verify(&observed, &expected[3..]), Ok(0));
}
