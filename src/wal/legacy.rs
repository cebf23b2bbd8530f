//! The record payload of segment formats 1 and 2, read, never written: the
//! model as it was before record fidelity (format 3), frozen here with the
//! same `serde` shape, so its MessagePack decodes exactly as it was
//! written, and converted losslessly into today's model.
//!
//! Conversions (DESIGN.md, "Upgrading from formats 1 and 2"):
//! - a byte-range lock becomes [`RangeFlavor::Posix`];
//! - a lease state's three flags become the MS-SMB2 bits (R 0x01, H 0x02,
//!   W 0x04); a break in progress becomes `breaking` with its fields, no
//!   break becomes `breaking: false`, states `NONE`, no start time;
//! - a delegation id `u64` becomes its 8 bytes, little-endian;
//! - a client record's kind becomes its [`ClientDetails`], the new fields
//!   zero; `DeleteClient { client_id }`, which named one record in the
//!   single namespace of format 1, becomes a delete by id in every
//!   namespace (format-1 client ids are unique across kinds);
//! - `EndGrace` becomes `EndGrace { share: None }`.

use crate::model::{self, ClientDetails, ClientSelector, LockKind, RangeFlavor, Timestamp};
use crate::op::Op;
use crate::state::Command;
use serde::Deserialize;
use std::sync::Arc;

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
enum Command1 {
    Txn(Vec<Op1>),
    Open { epoch: u64 },
    CleanShutdown,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
enum Op1 {
    PutLock(Lock1),
    DeleteLock { id: String },
    DeleteLocksByClient { client_id: String },
    DeleteLocksByFile { file_id: String },
    PutClient(Client1),
    DeleteClient { client_id: String },
    Reclaim { id: String, client_id: String },
    EndGrace,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct Lock1 {
    id: Arc<str>,
    share: Arc<str>,
    file_id: Arc<str>,
    owner_id: Arc<str>,
    client_id: Arc<str>,
    kind: Kind1,
    acquired_at: Timestamp,
    server_epoch: u64,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
enum Kind1 {
    ByteRange(Range1),
    Share(model::ShareReservation),
    Lease(Lease1),
    Delegation(Delegation1),
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct Range1 {
    lock_type: model::LockType,
    offset: u64,
    length: u64,
    zero_byte: bool,
}

#[derive(Deserialize, Clone, Copy)]
#[cfg_attr(test, derive(serde::Serialize))]
struct LeaseState1 {
    read: bool,
    write: bool,
    handle: bool,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct LeaseBreak1 {
    to: LeaseState1,
    required: LeaseState1,
    started_at: Timestamp,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct Lease1 {
    key: model::LeaseKey,
    state: LeaseState1,
    epoch: u16,
    parent_key: Option<model::LeaseKey>,
    is_directory: bool,
    is_traditional_oplock: bool,
    breaking: Option<LeaseBreak1>,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct Delegation1 {
    delegation_id: u64,
    delegation_type: model::DelegationType,
    breaking: bool,
    recalled: bool,
    revoked: bool,
    notification_mask: u32,
}

#[derive(Deserialize, Clone, Copy)]
#[cfg_attr(test, derive(serde::Serialize))]
enum ClientKind1 {
    Nsm,
    Nfs4,
    Smb,
}

#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
struct Client1 {
    client_id: String,
    kind: ClientKind1,
    name: String,
    verifier: Vec<u8>,
    principal: String,
    callback: Vec<u8>,
    registered_at: Timestamp,
    epoch: u64,
    reclaim_complete: bool,
}

/// Decodes a format-1 or format-2 payload into today's commands.
pub(crate) fn decode_commands(payload: &[u8]) -> Result<Vec<Command>, String> {
    let commands: Vec<Command1> = rmp_serde::from_slice(payload).map_err(|e| e.to_string())?;
    Ok(commands.into_iter().map(command).collect())
}

/// Decodes a client entry of a format-1 snapshot.
pub(crate) fn decode_client(bytes: &[u8]) -> Result<model::ClientRecord, String> {
    rmp_serde::from_slice::<Client1>(bytes).map(client).map_err(|e| e.to_string())
}

fn command(c: Command1) -> Command {
    match c {
        Command1::Txn(ops) => Command::Txn(ops.into_iter().map(op).collect()),
        Command1::Open { epoch } => Command::Open { epoch },
        Command1::CleanShutdown => Command::CleanShutdown,
    }
}

fn op(o: Op1) -> Op {
    match o {
        Op1::PutLock(l) => Op::PutLock(lock(l)),
        Op1::DeleteLock { id } => Op::DeleteLock { id },
        Op1::DeleteLocksByClient { client_id } => Op::DeleteLocksByClient { client_id },
        Op1::DeleteLocksByFile { file_id } => Op::DeleteLocksByFile { file_id },
        Op1::PutClient(c) => Op::PutClient(client(c)),
        Op1::DeleteClient { client_id } => {
            Op::DeleteClients(ClientSelector { kind: None, client_id: Some(client_id), name: None })
        }
        Op1::Reclaim { id, client_id } => Op::Reclaim { id, client_id },
        Op1::EndGrace => Op::EndGrace { share: None },
    }
}

fn lock(l: Lock1) -> model::PersistedLock {
    let kind = match l.kind {
        Kind1::ByteRange(r) => LockKind::ByteRange(model::ByteRange {
            lock_type: r.lock_type,
            offset: r.offset,
            length: r.length,
            zero_byte: r.zero_byte,
            flavor: RangeFlavor::Posix,
        }),
        Kind1::Share(s) => LockKind::Share(s),
        Kind1::Lease(l) => LockKind::Lease(lease(l)),
        Kind1::Delegation(d) => LockKind::Delegation(model::Delegation {
            delegation_id: d.delegation_id.to_le_bytes().to_vec(),
            delegation_type: d.delegation_type,
            breaking: d.breaking,
            recalled: d.recalled,
            revoked: d.revoked,
            notification_mask: d.notification_mask,
            is_directory: false,
        }),
    };
    model::PersistedLock {
        id: l.id,
        share: l.share,
        file_id: l.file_id,
        owner_id: l.owner_id,
        client_id: l.client_id,
        kind,
        acquired_at: l.acquired_at,
        server_epoch: l.server_epoch,
    }
}

/// A format-1 lease state as MS-SMB2 bits.
pub(crate) fn lease_state(read: bool, write: bool, handle: bool) -> model::LeaseState {
    let bit = |set: bool, state: model::LeaseState| if set { state.0 } else { 0 };
    model::LeaseState(
        bit(read, model::LeaseState::READ)
            | bit(write, model::LeaseState::WRITE)
            | bit(handle, model::LeaseState::HANDLE),
    )
}

fn lease(l: Lease1) -> model::Lease {
    let state = |s: LeaseState1| lease_state(s.read, s.write, s.handle);
    model::Lease {
        key: l.key,
        state: state(l.state),
        epoch: l.epoch,
        parent_key: l.parent_key,
        is_directory: l.is_directory,
        is_traditional_oplock: l.is_traditional_oplock,
        breaking: l.breaking.is_some(),
        break_to: l.breaking.as_ref().map_or(model::LeaseState::NONE, |b| state(b.to)),
        break_required: l.breaking.as_ref().map_or(model::LeaseState::NONE, |b| state(b.required)),
        break_started_at: l.breaking.map(|b| b.started_at),
    }
}

fn client(c: Client1) -> model::ClientRecord {
    model::ClientRecord {
        client_id: c.client_id,
        name: c.name,
        verifier: c.verifier,
        principal: c.principal,
        callback: c.callback,
        registered_at: c.registered_at,
        epoch: c.epoch,
        reclaim_complete: c.reclaim_complete,
        details: match c.kind {
            ClientKind1::Nsm => ClientDetails::Nsm(model::NsmDetails::default()),
            ClientKind1::Nfs4 => ClientDetails::Nfs4(model::Nfs4Details::default()),
            ClientKind1::Smb => ClientDetails::Smb,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{
        ClientKind, DelegationType, LeaseState, LockType, Nfs4Details, NsmDetails, ShareAccess, ShareDeny,
        ShareReservation,
    };

    fn lock1(id: &str, kind: Kind1) -> Lock1 {
        Lock1 {
            id: id.into(),
            share: "s".into(),
            file_id: "f".into(),
            owner_id: "o".into(),
            client_id: "c".into(),
            kind,
            acquired_at: Timestamp::from_unix_micros(5),
            server_epoch: 2,
        }
    }

    fn client1(kind: ClientKind1) -> Client1 {
        Client1 {
            client_id: "c".into(),
            kind,
            name: "n".into(),
            verifier: vec![1],
            principal: "p".into(),
            callback: vec![2],
            registered_at: Timestamp::from_unix_micros(6),
            epoch: 3,
            reclaim_complete: true,
        }
    }

    /// A format-1 payload of every operation and every kind decodes into
    /// today's commands as the module doc says (the fixture store of
    /// tests/upgrade.rs has these kinds only in its snapshot).
    #[test]
    fn every_format_1_operation_converts_as_specified() {
        let state = |read, write, handle| LeaseState1 { read, write, handle };
        let lease = |breaking| {
            Kind1::Lease(Lease1 {
                key: [7; 16],
                state: state(true, true, false),
                epoch: 9,
                parent_key: Some([8; 16]),
                is_directory: true,
                is_traditional_oplock: false,
                breaking,
            })
        };
        let ops = vec![
            Op1::PutLock(lock1(
                "r",
                Kind1::ByteRange(Range1 { lock_type: LockType::Shared, offset: 1, length: 2, zero_byte: true }),
            )),
            Op1::PutLock(lock1(
                "s",
                Kind1::Share(ShareReservation { access: ShareAccess::Read, deny: ShareDeny::All }),
            )),
            Op1::PutLock(lock1("l", lease(None))),
            Op1::PutLock(lock1(
                "b",
                lease(Some(LeaseBreak1 {
                    to: state(true, false, false),
                    required: state(false, false, true),
                    started_at: Timestamp::from_unix_micros(-5),
                })),
            )),
            Op1::PutLock(lock1(
                "d",
                Kind1::Delegation(Delegation1 {
                    delegation_id: 0x0102_0304_0506_0708,
                    delegation_type: DelegationType::Write,
                    breaking: true,
                    recalled: false,
                    revoked: true,
                    notification_mask: 77,
                }),
            )),
            Op1::DeleteLock { id: "x".into() },
            Op1::DeleteLocksByClient { client_id: "c".into() },
            Op1::DeleteLocksByFile { file_id: "f".into() },
            Op1::PutClient(client1(ClientKind1::Nsm)),
            Op1::PutClient(client1(ClientKind1::Nfs4)),
            Op1::PutClient(client1(ClientKind1::Smb)),
            Op1::DeleteClient { client_id: "c".into() },
            Op1::Reclaim { id: "r".into(), client_id: "c".into() },
            Op1::EndGrace,
        ];
        let payload =
            rmp_serde::to_vec(&vec![Command1::Open { epoch: 4 }, Command1::Txn(ops), Command1::CleanShutdown]).unwrap();
        let commands = decode_commands(&payload).unwrap();
        let [Command::Open { epoch: 4 }, Command::Txn(ops), Command::CleanShutdown] = &commands[..] else {
            panic!("{commands:?}")
        };
        let kind = |i: usize| match &ops[i] {
            Op::PutLock(l) => {
                assert_eq!((&*l.share, &*l.client_id, l.acquired_at.unix_micros, l.server_epoch), ("s", "c", 5, 2));
                l.kind.clone()
            }
            other => panic!("{other:?}"),
        };
        let flavor = RangeFlavor::Posix;
        assert_eq!(
            kind(0),
            LockKind::ByteRange(model::ByteRange {
                lock_type: LockType::Shared,
                offset: 1,
                length: 2,
                zero_byte: true,
                flavor
            })
        );
        assert_eq!(kind(1), LockKind::Share(ShareReservation { access: ShareAccess::Read, deny: ShareDeny::All }));
        let mut want = model::Lease {
            key: [7; 16],
            state: LeaseState::READ | LeaseState::WRITE,
            epoch: 9,
            parent_key: Some([8; 16]),
            is_directory: true,
            is_traditional_oplock: false,
            breaking: false,
            break_to: LeaseState::NONE,
            break_required: LeaseState::NONE,
            break_started_at: None,
        };
        assert_eq!(kind(2), LockKind::Lease(want));
        want.breaking = true;
        want.break_to = LeaseState::READ;
        want.break_required = LeaseState::HANDLE;
        want.break_started_at = Some(Timestamp::from_unix_micros(-5));
        assert_eq!(kind(3), LockKind::Lease(want));
        assert_eq!(
            kind(4),
            LockKind::Delegation(model::Delegation {
                delegation_id: vec![8, 7, 6, 5, 4, 3, 2, 1],
                delegation_type: DelegationType::Write,
                breaking: true,
                recalled: false,
                revoked: true,
                notification_mask: 77,
                is_directory: false,
            })
        );
        assert_eq!(ops[5], Op::DeleteLock { id: "x".into() });
        assert_eq!(ops[6], Op::DeleteLocksByClient { client_id: "c".into() });
        assert_eq!(ops[7], Op::DeleteLocksByFile { file_id: "f".into() });
        let details = [
            ClientDetails::Nsm(NsmDetails::default()),
            ClientDetails::Nfs4(Nfs4Details { short_id: 0 }),
            ClientDetails::Smb,
        ];
        for (i, details) in details.into_iter().enumerate() {
            let Op::PutClient(record) = &ops[8 + i] else { panic!("{:?}", ops[8 + i]) };
            let expected = model::ClientRecord {
                client_id: "c".into(),
                name: "n".into(),
                verifier: vec![1],
                principal: "p".into(),
                callback: vec![2],
                registered_at: Timestamp::from_unix_micros(6),
                epoch: 3,
                reclaim_complete: true,
                details,
            };
            assert_eq!(record, &expected);
        }
        let any_kind = ClientSelector { kind: None, client_id: Some("c".into()), name: None };
        assert_eq!(ops[11], Op::DeleteClients(any_kind));
        assert_eq!(ops[12], Op::Reclaim { id: "r".into(), client_id: "c".into() });
        assert_eq!(ops[13], Op::EndGrace { share: None });
        assert_eq!(ops.len(), 14);
        let _ = ClientKind::Nsm;
    }
}
