//! Sample locks and client records with every field set to a non-default
//! value, for round-trip tests: one of every shape a file server persists
//! (the "port fidelity" set).

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
            flavor: RangeFlavor::Posix,
        }),
        acquired_at: Timestamp::from_unix_micros(1_764_000_000_123_456),
        server_epoch: 0,
    }
}

fn range(lock_type: LockType, offset: u64, length: u64, flavor: RangeFlavor) -> LockKind {
    LockKind::ByteRange(ByteRange { lock_type, offset, length, zero_byte: false, flavor })
}

/// A quiet SMB lease with key `[key; 16]` in `state` (no parent, not
/// breaking).
pub fn lease(key: u8, state: LeaseState) -> Lease {
    Lease {
        key: [key; 16],
        state,
        epoch: 0,
        parent_key: None,
        is_directory: false,
        is_traditional_oplock: false,
        breaking: false,
        break_to: LeaseState::NONE,
        break_required: LeaseState::NONE,
        break_started_at: None,
    }
}

fn delegation(id: &[u8], delegation_type: DelegationType) -> Delegation {
    Delegation {
        delegation_id: id.to_vec(),
        delegation_type,
        breaking: false,
        recalled: false,
        revoked: false,
        notification_mask: 0,
        is_directory: false,
    }
}

/// One lock of every shape a file server persists, every kind-specific
/// field that shape uses non-default (ids `kind-*`): NLM shared and
/// exclusive, NFSv4 ranges at the 2^64-1 bounds, SMB byte-range locks with
/// each deny mode and a zero-byte one not at end of file, a share
/// reservation, v1 and v2 leases, a breaking lease, a traditional oplock,
/// read and write delegations recalled and revoked, a directory delegation.
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
    let smb = |share_deny| RangeFlavor::Smb { share_deny };
    let rwh = LeaseState::READ | LeaseState::WRITE | LeaseState::HANDLE;
    let mut v1_lease = lease(0xA1, LeaseState::READ | LeaseState::HANDLE);
    v1_lease.epoch = 3;
    let mut v2_lease = lease(0xA2, rwh | LeaseState(0x8000_0000));
    v2_lease.epoch = u16::MAX;
    v2_lease.parent_key = Some([0xCD; 16]);
    v2_lease.is_directory = true;
    let mut breaking = lease(0xA3, rwh);
    breaking.epoch = 9;
    breaking.breaking = true;
    breaking.break_to = LeaseState::READ;
    breaking.break_required = LeaseState::READ | LeaseState::HANDLE;
    breaking.break_started_at = Some(Timestamp::from_unix_micros(-5));
    let mut broken = lease(0xA4, LeaseState::READ);
    broken.break_to = LeaseState::READ;
    broken.break_required = LeaseState::HANDLE;
    broken.break_started_at = Some(Timestamp::from_unix_micros(1_764_000_000_000_002));
    let mut oplock = lease(0xA5, LeaseState::READ | LeaseState::WRITE);
    oplock.is_traditional_oplock = true;
    let mut recalled = delegation(&[0x0C; 12], DelegationType::Read);
    recalled.breaking = true;
    recalled.recalled = true;
    let mut revoked = delegation(b"6f1c2a9e-0d2b-4f7e-9a51-3c4d5e6f7a8b", DelegationType::Write);
    revoked.recalled = true;
    revoked.revoked = true;
    let mut directory = delegation(&[0xFF; 12], DelegationType::Read);
    directory.is_directory = true;
    directory.notification_mask = 0xDEAD_BEEF;
    vec![
        base("kind-nlm-shared", range(LockType::Shared, 0, 0, RangeFlavor::Posix)),
        base("kind-nlm-exclusive", range(LockType::Exclusive, 100, 50, RangeFlavor::Posix)),
        base("kind-nfs4-last-bytes", range(LockType::Shared, u64::MAX - 9, 10, RangeFlavor::Posix)),
        base("kind-nfs4-all-ones", range(LockType::Exclusive, 4096, u64::MAX, RangeFlavor::Posix)),
        base("kind-smb-deny-none", range(LockType::Exclusive, 8, 8, smb(ShareDeny::None))),
        base("kind-smb-deny-read", range(LockType::Shared, 16, 8, smb(ShareDeny::Read))),
        base("kind-smb-deny-write", range(LockType::Exclusive, 24, 8, smb(ShareDeny::Write))),
        base("kind-smb-deny-all", range(LockType::Shared, u64::MAX, 1, smb(ShareDeny::All))),
        base(
            "kind-smb-zero-byte",
            LockKind::ByteRange(ByteRange {
                lock_type: LockType::Exclusive,
                offset: 77,
                length: 0,
                zero_byte: true,
                flavor: smb(ShareDeny::Write),
            }),
        ),
        base(
            "kind-share",
            LockKind::Share(ShareReservation { access: ShareAccess::ReadWrite, deny: ShareDeny::Write }),
        ),
        base("kind-lease-v1", LockKind::Lease(v1_lease)),
        base("kind-lease-v2", LockKind::Lease(v2_lease)),
        base("kind-lease-breaking", LockKind::Lease(breaking)),
        base("kind-lease-broken", LockKind::Lease(broken)),
        base("kind-oplock", LockKind::Lease(oplock)),
        base("kind-delegation-recalled", LockKind::Delegation(recalled)),
        base("kind-delegation-revoked", LockKind::Delegation(revoked)),
        base("kind-delegation-directory", LockKind::Delegation(directory)),
    ]
}

/// An NFSv4 client record with every field non-default.
pub fn client(client_id: &str) -> ClientRecord {
    ClientRecord {
        client_id: client_id.into(),
        name: format!("Linux NFSv4.2 {client_id}"),
        verifier: vec![1, 2, 3, 4, 5, 6, 7, 8],
        principal: "nfs/host@REALM".into(),
        callback: vec![0xFF; 24],
        registered_at: Timestamp::from_unix_micros(1_764_000_000_000_001),
        epoch: 7,
        reclaim_complete: true,
        details: ClientDetails::Nfs4(Nfs4Details { short_id: 0x5F00_0001_0000_002A }),
    }
}

/// One client record of every kind, every field non-default, all with the
/// same id (they live in separate namespaces).
pub fn every_client(client_id: &str) -> Vec<ClientRecord> {
    let nsm = ClientRecord {
        client_id: client_id.into(),
        name: format!("monitored.{client_id}"),
        verifier: (0..16).collect(),
        principal: String::new(),
        callback: Vec::new(),
        registered_at: Timestamp::from_unix_micros(1_764_000_000_000_003),
        epoch: 4,
        reclaim_complete: false,
        details: ClientDetails::Nsm(NsmDetails {
            callback_host: "nfs-server.local".into(),
            program: 100_021,
            version: 4,
            procedure: 16,
        }),
    };
    let smb = ClientRecord {
        client_id: client_id.into(),
        name: "WORKSTATION-7".into(),
        verifier: vec![9; 16],
        principal: "DOMAIN\\user".into(),
        callback: vec![1],
        registered_at: Timestamp::from_unix_micros(-1),
        epoch: u64::MAX >> 1,
        reclaim_complete: true,
        details: ClientDetails::Smb,
    };
    vec![nsm, client(client_id), smb]
}

/// A durable handle with every field non-default, its unique keys (file id,
/// create GUID) derived from `n`.
pub fn handle(n: u32) -> DurableHandle {
    let key = |tag: u8| -> [u8; 16] {
        let mut k = [tag; 16];
        k[..4].copy_from_slice(&n.to_le_bytes());
        k
    };
    DurableHandle {
        id: format!("open-{n}"),
        file_id: key(0xF1),
        original_file_id: key(0x0F),
        path: format!("dir/sub dir/file-{n}.txt"),
        share: "projects".into(),
        file_handle: format!("fh-{}", n % 7).into_bytes(),
        desired_access: 0x0012_019F,
        granted_access: 0x0012_0089,
        share_access: 0x7,
        create_options: 0x0000_0040,
        oplock_level: 0xFF,
        lease: Some(HandleLease { key: key(0x1E), state: LeaseState(0x7), epoch: 9 }),
        create_guid: Some(key(0xC6)),
        app_instance_id: Some([0xA1 ^ (n % 3) as u8; 16]),
        persistent: true,
        version: DurableVersion::V2,
        user: "DOMAIN\\alice".into(),
        session_key_hash: [0x5A; 32],
        client_guid: [0xC1; 16],
        created_at: Timestamp::from_unix_micros(1_764_000_000_000_007),
        disconnected_at: Timestamp::from_unix_micros(1_764_000_060_000_009),
        timeout_ms: 60_000 + u64::from(n),
        server_start_time: Timestamp::from_unix_micros(1_763_999_000_000_011),
        delete_pending: Some(DeletePending {
            parent_handle: vec![0xD0, 0xD1, 0xD2],
            file_name: format!("file-{n}.txt"),
        }),
        is_directory: true,
        position: 0x1_0000_0001,
        allocation_size: 1 << 40,
    }
}

/// One operation of each kind that carries data, every string and byte
/// field at its limit: a lock (a delegation), an NSM client, a durable
/// handle, a record swap.
pub fn largest_ops() -> Vec<crate::op::Op> {
    use crate::model::validate::{MAX_ID_LEN, MAX_KEY_LEN, MAX_OPAQUE_LEN, MAX_SPACE_LEN, MAX_VALUE_LEN};
    use crate::op::Op;
    let s = |c: char| c.to_string().repeat(MAX_ID_LEN);
    let opaque = || vec![0xFF; MAX_OPAQUE_LEN];
    let lock = PersistedLock {
        id: s('i').into(),
        share: s('s').into(),
        file_id: s('f').into(),
        owner_id: s('o').into(),
        client_id: s('c').into(),
        kind: LockKind::Delegation(Delegation {
            delegation_id: opaque(),
            delegation_type: DelegationType::Write,
            breaking: true,
            recalled: true,
            revoked: true,
            is_directory: true,
            notification_mask: u32::MAX,
        }),
        acquired_at: Timestamp::from_unix_micros(i64::MIN),
        server_epoch: u64::MAX,
    };
    let client = ClientRecord {
        client_id: s('c'),
        name: s('n'),
        verifier: opaque(),
        principal: s('p'),
        callback: opaque(),
        registered_at: Timestamp::from_unix_micros(i64::MIN),
        epoch: u64::MAX,
        reclaim_complete: true,
        details: ClientDetails::Nsm(NsmDetails {
            callback_host: s('h'),
            program: u32::MAX,
            version: u32::MAX,
            procedure: u32::MAX,
        }),
    };
    let handle = DurableHandle {
        id: s('i'),
        share: s('s'),
        path: s('p'),
        user: s('u'),
        file_handle: opaque(),
        delete_pending: Some(DeletePending { parent_handle: opaque(), file_name: s('n') }),
        ..handle(u32::MAX)
    };
    let swap = Op::SwapRecord {
        space: "s".repeat(MAX_SPACE_LEN),
        key: vec![0xFF; MAX_KEY_LEN],
        expected: Some(vec![0xFF; MAX_VALUE_LEN]),
        value: Some(vec![0xFF; MAX_VALUE_LEN]),
    };
    vec![Op::PutLock(lock), Op::PutClient(client), Op::PutHandle(handle), swap]
}
