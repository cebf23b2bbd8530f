//! Workloads decoded from arbitrary bytes (the fuzz targets').

use super::records::client_kind;
use super::{
    DISCONNECTED_FROM, Expected, SPACES, Step, client, create_guid, expires_at, file_id, handle, lock, record_key,
    record_value, update,
};
use crate::model::{ClientSelector, Timestamp};
use crate::op::Op;
use crate::testing::model::Model;

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
