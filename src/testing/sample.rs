//! Sample locks and client records with every field set to a non-default
//! value, for round-trip tests.

use crate::model::*;

/// A byte-range lock with the given keys.
pub fn byte_range(id: &str, share: &str, file: &str, owner: &str, client: &str) -> PersistedLock {
    PersistedLock {
        id: id.into(),
        share: share.into(),
        file_id: file.into(),
        owner_id: owner.into(),
        client_id: client.into(),
        kind: LockKind::ByteRange(ByteRange {
            lock_type: LockType::Exclusive,
            offset: 4096,
            length: 512,
            zero_byte: false,
        }),
        acquired_at: Timestamp::from_unix_micros(1_764_000_000_123_456),
        server_epoch: 0,
    }
}

/// One lock of every kind, every field non-default (ids `kind-*`).
pub fn every_kind() -> Vec<PersistedLock> {
    let base = |id: &str, kind| PersistedLock {
        id: id.into(),
        share: "share:α".into(),
        file_id: "file\u{0}:handle".into(),
        owner_id: "nlm:host:1:ff:00".into(),
        client_id: "client:1".into(),
        kind,
        acquired_at: Timestamp::from_unix_micros(1_764_000_000_654_321),
        server_epoch: 0,
    };
    let state = LeaseState { read: true, write: true, handle: true };
    vec![
        base(
            "kind-byte-range",
            LockKind::ByteRange(ByteRange {
                lock_type: LockType::Shared,
                offset: u64::MAX - 9,
                length: 10,
                zero_byte: false,
            }),
        ),
        base(
            "kind-zero-byte",
            LockKind::ByteRange(ByteRange { lock_type: LockType::Exclusive, offset: 77, length: 0, zero_byte: true }),
        ),
        base(
            "kind-share",
            LockKind::Share(ShareReservation { access: ShareAccess::ReadWrite, deny: ShareDeny::Write }),
        ),
        base(
            "kind-lease",
            LockKind::Lease(Lease {
                key: [0xAB; 16],
                state,
                epoch: u16::MAX,
                parent_key: Some([0xCD; 16]),
                is_directory: true,
                is_traditional_oplock: true,
                breaking: Some(LeaseBreak {
                    to: LeaseState { read: true, write: false, handle: false },
                    required: LeaseState { read: false, write: false, handle: true },
                    started_at: Timestamp::from_unix_micros(-5),
                }),
            }),
        ),
        base(
            "kind-delegation",
            LockKind::Delegation(Delegation {
                delegation_id: u64::MAX,
                delegation_type: DelegationType::Write,
                breaking: true,
                recalled: true,
                revoked: true,
                notification_mask: 0xDEAD_BEEF,
            }),
        ),
    ]
}

/// A client record with every field non-default.
pub fn client(client_id: &str) -> ClientRecord {
    ClientRecord {
        client_id: client_id.into(),
        kind: ClientKind::Nfs4,
        name: format!("Linux NFSv4.2 {client_id}"),
        verifier: vec![1, 2, 3, 4, 5, 6, 7, 8],
        principal: "nfs/host@REALM".into(),
        callback: vec![0xFF; 24],
        registered_at: Timestamp::from_unix_micros(1_764_000_000_000_001),
        epoch: 7,
        reclaim_complete: true,
    }
}
