use super::*;
use crate::model::ClientKind;

#[test]
fn a_generated_workload_has_every_kind_of_step() {
    let steps = generate(7, 1500, 150);
    assert!(op_count(&steps) >= 1000);
    assert_eq!(steps, generate(7, 1500, 150), "deterministic from the seed");
    assert_ne!(steps, generate(8, 1500, 150));
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
    // Checked grants: some granted, some refused with the holders named.
    let grants: Vec<&Option<crate::Result<Vec<Outcome>>>> = steps
        .iter()
        .zip(&answers)
        .filter(|(s, _)| matches!(s, Step::Txn(ops) if ops.iter().any(|o| matches!(o, Op::Grant(_)))))
        .map(|(_, a)| a)
        .collect();
    let granted = grants.iter().filter(|a| matches!(a, Some(Ok(_)))).count();
    let refused = grants
        .iter()
        .filter(|a| matches!(a, Some(Err(crate::Error::Conflict { conflicts, .. })) if !conflicts.is_clear()))
        .count();
    assert!(granted >= 5 && refused >= 5, "{granted} granted, {refused} refused of {}", grants.len());
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
        let consumes = has(|o| matches!(o, Op::ConsumeHandleByFileId { .. } | Op::ConsumeHandleByCreateGuid { .. }));
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
