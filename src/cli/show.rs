//! How records look on the command line: the JSON shapes (stable, documented
//! in the README) and the human-readable lines.

use lockwal::model::{
    ClientDetails, ClientKind, ClientRecord, ClientSelector, DelegationType, DurableHandle, DurableVersion, LeaseState,
    LockKind, LockType, PersistedLock, RangeFlavor, Record, ShareAccess, ShareDeny, Timestamp,
};
use lockwal::op::Op;
use lockwal::state::Command;
use serde_json::{Value, json};

/// `2025-11-24T16:00:00.123456Z`: RFC 3339, UTC, always six fractional
/// digits (the store keeps microseconds).
pub fn rfc3339(t: Timestamp) -> String {
    let micros = t.unix_micros;
    let secs = micros.div_euclid(1_000_000);
    let frac = micros.rem_euclid(1_000_000);
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{frac:06}Z", sod / 3600, sod % 3600 / 60, sod % 60)
}

/// Year, month, day of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`, proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // [0, 146096]
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // [0, 399]
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // [0, 365]
    let mp = (5 * doy + 2) / 153; // [0, 11], March first
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// Lower-case hex of opaque bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `kind` field: `byte-range`, `share`, `lease` or `delegation`.
pub fn kind_name(kind: &LockKind) -> &'static str {
    match kind {
        LockKind::ByteRange(_) => "byte-range",
        LockKind::Share(_) => "share",
        LockKind::Lease(_) => "lease",
        LockKind::Delegation(_) => "delegation",
    }
}

fn lock_type_name(t: LockType) -> &'static str {
    match t {
        LockType::Shared => "shared",
        LockType::Exclusive => "exclusive",
    }
}

/// A lease state as the SMB documents write it (`R`, `W`, `H` in that
/// order), with any other bits appended in hex: `RWH`, `R+0x80000000`.
fn lease_bits(s: LeaseState) -> String {
    let mut out = String::new();
    for (bit, c) in [(LeaseState::READ, 'R'), (LeaseState::WRITE, 'W'), (LeaseState::HANDLE, 'H')] {
        if s.contains(bit) {
            out.push(c);
        }
    }
    let other = s.0 & !(LeaseState::READ | LeaseState::WRITE | LeaseState::HANDLE).0;
    if other != 0 {
        out.push_str(&format!("+{other:#x}"));
    }
    out
}

fn deny_name(d: ShareDeny) -> &'static str {
    match d {
        ShareDeny::None => "none",
        ShareDeny::Read => "read",
        ShareDeny::Write => "write",
        ShareDeny::All => "all",
    }
}

/// A delegation id: as text when it is printable UTF-8 (a UUID string),
/// else `0x` and hex (a stateid's bytes).
fn delegation_id_text(id: &[u8]) -> String {
    match std::str::from_utf8(id) {
        Ok(s) if !s.is_empty() && s.chars().all(|c| c.is_ascii_graphic()) => s.to_owned(),
        _ => format!("0x{}", hex(id)),
    }
}

/// A lock as JSON: the fields every kind has (byte-range fields `null` for
/// other kinds), then the kind's own fields.
pub fn lock_json(l: &PersistedLock) -> Value {
    let mut v = json!({
        "id": l.id,
        "share": l.share,
        "file_id": l.file_id,
        "owner_id": l.owner_id,
        "client_id": l.client_id,
        "kind": kind_name(&l.kind),
        "lock_type": null,
        "offset": null,
        "length": null,
        "server_epoch": l.server_epoch,
        "acquired_at": rfc3339(l.acquired_at),
        "acquired_at_micros": l.acquired_at.unix_micros,
    });
    let extra = match &l.kind {
        LockKind::ByteRange(r) => json!({
            "lock_type": lock_type_name(r.lock_type),
            "offset": r.offset,
            "length": r.length,
            "zero_byte": r.zero_byte,
            "flavor": match r.flavor {
                RangeFlavor::Posix => "posix",
                RangeFlavor::Smb { .. } => "smb",
            },
            "share_deny": match r.flavor {
                RangeFlavor::Posix => None,
                RangeFlavor::Smb { share_deny } => Some(deny_name(share_deny)),
            },
        }),
        LockKind::Share(s) => json!({
            "access": match s.access {
                ShareAccess::Read => "read",
                ShareAccess::Write => "write",
                ShareAccess::ReadWrite => "read-write",
            },
            "deny": deny_name(s.deny),
        }),
        LockKind::Lease(l) => json!({
            "lease_key": hex(&l.key),
            "lease_state": lease_bits(l.state),
            "lease_state_bits": l.state.0,
            "lease_epoch": l.epoch,
            "parent_lease_key": l.parent_key.map(|k| hex(&k)),
            "is_directory": l.is_directory,
            "is_traditional_oplock": l.is_traditional_oplock,
            "breaking": l.breaking,
            "break_to": lease_bits(l.break_to),
            "break_to_bits": l.break_to.0,
            "break_required": lease_bits(l.break_required),
            "break_required_bits": l.break_required.0,
            "break_started_at": l.break_started_at.map(rfc3339),
        }),
        LockKind::Delegation(d) => json!({
            "delegation_id": hex(&d.delegation_id),
            "delegation_type": match d.delegation_type {
                DelegationType::Read => "read",
                DelegationType::Write => "write",
            },
            "breaking": d.breaking,
            "recalled": d.recalled,
            "revoked": d.revoked,
            "notification_mask": d.notification_mask,
            "is_directory": d.is_directory,
        }),
    };
    if let (Value::Object(base), Value::Object(more)) = (&mut v, extra) {
        base.extend(more);
    }
    v
}

/// The `kind` field of a client record: `nsm`, `nfs4` or `smb`.
pub fn client_kind_name(kind: ClientKind) -> &'static str {
    match kind {
        ClientKind::Nsm => "nsm",
        ClientKind::Nfs4 => "nfs4",
        ClientKind::Smb => "smb",
    }
}

/// A client record as JSON (opaque byte fields in hex); the NSM callback
/// fields are `null` for other kinds, and so is the NFSv4 short id.
pub fn client_json(c: &ClientRecord) -> Value {
    let nsm = match &c.details {
        ClientDetails::Nsm(n) => Some(n),
        _ => None,
    };
    let short_id = match &c.details {
        ClientDetails::Nfs4(n) => Some(n.short_id),
        _ => None,
    };
    json!({
        "client_id": c.client_id,
        "kind": client_kind_name(c.kind()),
        "name": c.name,
        "verifier": hex(&c.verifier),
        "principal": c.principal,
        "callback": hex(&c.callback),
        "registered_at": rfc3339(c.registered_at),
        "registered_at_micros": c.registered_at.unix_micros,
        "epoch": c.epoch,
        "reclaim_complete": c.reclaim_complete,
        "nsm_callback_host": nsm.map(|n| &n.callback_host),
        "nsm_program": nsm.map(|n| n.program),
        "nsm_version": nsm.map(|n| n.version),
        "nsm_procedure": nsm.map(|n| n.procedure),
        "nfs4_short_id": short_id,
    })
}

/// A durable handle as JSON: every field, byte fields in hex, times as
/// RFC 3339 and microseconds.
pub fn handle_json(h: &DurableHandle) -> Value {
    json!({
        "id": h.id,
        "file_id": hex(&h.file_id),
        "original_file_id": hex(&h.original_file_id),
        "path": h.path,
        "share": h.share,
        "file_handle": hex(&h.file_handle),
        "desired_access": h.desired_access,
        "granted_access": h.granted_access,
        "share_access": h.share_access,
        "create_options": h.create_options,
        "oplock_level": h.oplock_level,
        "lease_key": h.lease.map(|l| hex(&l.key)),
        "lease_state": h.lease.map(|l| l.state.0),
        "lease_epoch": h.lease.map(|l| l.epoch),
        "create_guid": h.create_guid.map(|g| hex(&g)),
        "app_instance_id": h.app_instance_id.map(|g| hex(&g)),
        "persistent": h.persistent,
        "durable_version": match h.version { DurableVersion::V1 => 1, DurableVersion::V2 => 2 },
        "user": h.user,
        "session_key_hash": hex(&h.session_key_hash),
        "client_guid": hex(&h.client_guid),
        "created_at": rfc3339(h.created_at),
        "created_at_micros": h.created_at.unix_micros,
        "disconnected_at": rfc3339(h.disconnected_at),
        "disconnected_at_micros": h.disconnected_at.unix_micros,
        "timeout_ms": h.timeout_ms,
        "server_start_time": rfc3339(h.server_start_time),
        "server_start_time_micros": h.server_start_time.unix_micros,
        "delete_pending": h.delete_pending.is_some(),
        "parent_handle": h.delete_pending.as_ref().map(|p| hex(&p.parent_handle)),
        "file_name": h.delete_pending.as_ref().map(|p| &p.file_name),
        "is_directory": h.is_directory,
        "position": h.position,
        "allocation_size": h.allocation_size,
    })
}

/// A record of a keyspace as JSON: the `put_record` op's fields, key and
/// value in hex.
pub fn record_json(space: &str, r: &Record) -> Value {
    json!({"space": space, "key": hex(&r.key), "value": hex(&r.value)})
}

fn selector_json(s: &ClientSelector) -> Value {
    json!({"kind": s.kind.map(client_kind_name), "client_id": s.client_id, "name": s.name})
}

fn op_json(op: &Op) -> Value {
    match op {
        Op::PutLock(lock) => json!({"op": "put_lock", "lock": lock_json(lock)}),
        Op::Grant(lock) => json!({"op": "grant", "lock": lock_json(lock)}),
        Op::DeleteLock { id } => json!({"op": "delete_lock", "id": id}),
        Op::DeleteLocksByClient { client_id } => json!({"op": "delete_locks_by_client", "client_id": client_id}),
        Op::DeleteLocksByFile { file_id } => json!({"op": "delete_locks_by_file", "file_id": file_id}),
        Op::PutClient(c) => json!({"op": "put_client", "client": client_json(c)}),
        Op::UpdateLock(lock) => json!({"op": "update_lock", "lock": lock_json(lock)}),
        Op::DeleteClient { kind, client_id } => {
            json!({"op": "delete_client", "kind": client_kind_name(*kind), "client_id": client_id})
        }
        Op::DeleteClients(s) => json!({"op": "delete_clients", "selector": selector_json(s)}),
        Op::MarkReclaimComplete { kind, client_id } => {
            json!({"op": "mark_reclaim_complete", "kind": client_kind_name(*kind), "client_id": client_id})
        }
        Op::Reclaim { id, client_id } => json!({"op": "reclaim", "id": id, "client_id": client_id}),
        Op::EndGrace { share } => json!({"op": "end_grace", "share": share}),
        Op::PutHandle(h) => json!({"op": "put_handle", "handle": handle_json(h)}),
        Op::DeleteHandle { id } => json!({"op": "delete_handle", "id": id}),
        Op::ConsumeHandleByFileId { file_id } => json!({"op": "consume_handle_by_file_id", "file_id": hex(file_id)}),
        Op::ConsumeHandleByCreateGuid { create_guid } => {
            json!({"op": "consume_handle_by_create_guid", "create_guid": hex(create_guid)})
        }
        Op::ExpireHandles { now } => {
            json!({"op": "expire_handles", "now": rfc3339(*now), "now_micros": now.unix_micros})
        }
        Op::PutRecord { space, key, value } => {
            json!({"op": "put_record", "space": space, "key": hex(key), "value": hex(value)})
        }
        Op::DeleteRecord { space, key } => json!({"op": "delete_record", "space": space, "key": hex(key)}),
        Op::SwapRecord { space, key, expected, value } => json!({
            "op": "swap_record", "space": space, "key": hex(key),
            "expected": expected.as_deref().map(hex), "value": value.as_deref().map(hex),
        }),
    }
}

/// A logged command as JSON.
pub fn command_json(c: &Command) -> Value {
    match c {
        Command::Txn(ops) => json!({"command": "txn", "ops": ops.iter().map(op_json).collect::<Vec<_>>()}),
        Command::Open { epoch } => json!({"command": "open", "epoch": epoch}),
        Command::CleanShutdown => json!({"command": "clean_shutdown"}),
    }
}

/// A string as it appears in human output: as is when plain, quoted and
/// escaped when it holds spaces, quotes or control characters (ids are
/// opaque and may hold anything).
pub fn plain(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| !c.is_whitespace() && !c.is_control() && c != '"' && c != '\\') {
        s.to_owned()
    } else {
        format!("{s:?}")
    }
}

/// The kind-specific part of a lock in human output.
pub fn kind_text(kind: &LockKind) -> String {
    match kind {
        LockKind::ByteRange(r) => {
            let range = if r.zero_byte {
                format!("{}+0 (zero-byte)", r.offset)
            } else if r.length == 0 || r.length == u64::MAX {
                format!("{}..EOF", r.offset)
            } else {
                format!("{}+{}", r.offset, r.length)
            };
            let flavor = match r.flavor {
                RangeFlavor::Posix => "posix".to_owned(),
                RangeFlavor::Smb { share_deny } => format!("smb deny={}", deny_name(share_deny)),
            };
            format!("byte-range {} {range} {flavor}", lock_type_name(r.lock_type))
        }
        LockKind::Share(s) => format!("share access={:?} deny={:?}", s.access, s.deny).to_lowercase(),
        LockKind::Lease(l) => {
            let mut text = format!("lease {} key={} epoch={}", lease_bits(l.state), hex(&l.key), l.epoch);
            if let Some(parent) = l.parent_key {
                text.push_str(&format!(" parent={}", hex(&parent)));
            }
            for (on, flag) in [(l.is_directory, " directory"), (l.is_traditional_oplock, " oplock")] {
                if on {
                    text.push_str(flag);
                }
            }
            if l.breaking {
                text.push_str(" breaking");
            }
            if l.breaking || l.break_to != LeaseState::NONE || l.break_required != LeaseState::NONE {
                text.push_str(&format!(" to={} required={}", lease_bits(l.break_to), lease_bits(l.break_required)));
            }
            if let Some(t) = l.break_started_at {
                text.push_str(&format!(" break_started={}", rfc3339(t)));
            }
            text
        }
        LockKind::Delegation(d) => format!(
            "delegation {} id={}{}{}{}{}",
            match d.delegation_type {
                DelegationType::Read => "read",
                DelegationType::Write => "write",
            },
            delegation_id_text(&d.delegation_id),
            if d.is_directory { format!(" directory mask={:#x}", d.notification_mask) } else { String::new() },
            if d.breaking { " breaking" } else { "" },
            if d.recalled { " recalled" } else { "" },
            if d.revoked { " revoked" } else { "" },
        ),
    }
}

/// One lock on one line.
pub fn lock_line(l: &PersistedLock) -> String {
    format!(
        "{}  {}  file={} owner={} client={} share={} epoch={} acquired={}",
        plain(&l.id),
        kind_text(&l.kind),
        plain(&l.file_id),
        plain(&l.owner_id),
        plain(&l.client_id),
        plain(&l.share),
        l.server_epoch,
        rfc3339(l.acquired_at)
    )
}

/// One client record on one line.
pub fn client_line(c: &ClientRecord) -> String {
    let details = match &c.details {
        ClientDetails::Nsm(n) => format!(
            "  callback_host={} program={} version={} procedure={}",
            plain(&n.callback_host),
            n.program,
            n.version,
            n.procedure
        ),
        ClientDetails::Nfs4(n) => format!("  short_id={:#018x}", n.short_id),
        ClientDetails::Smb => String::new(),
    };
    format!(
        "{}  {}  name={} principal={} epoch={} registered={} reclaim_complete={} verifier={} callback={}{details}",
        plain(&c.client_id),
        client_kind_name(c.kind()),
        plain(&c.name),
        plain(&c.principal),
        c.epoch,
        rfc3339(c.registered_at),
        c.reclaim_complete,
        hex(&c.verifier),
        hex(&c.callback)
    )
}

/// One durable handle on one line: id, version, the reconnect keys, where
/// and whose the open is, its lease, and when it expires.
pub fn handle_text(h: &DurableHandle) -> String {
    let mut text = format!(
        "{}  v{}{}  share={} path={} file_id={} create_guid={} user={} granted_access={:#010x} oplock={:#04x}",
        plain(&h.id),
        match h.version {
            DurableVersion::V1 => 1,
            DurableVersion::V2 => 2,
        },
        if h.persistent { " persistent" } else { "" },
        plain(&h.share),
        plain(&h.path),
        hex(&h.file_id),
        h.create_guid.map_or_else(|| "none".to_owned(), |g| hex(&g)),
        plain(&h.user),
        h.granted_access,
        h.oplock_level,
    );
    if let Some(l) = h.lease {
        text.push_str(&format!(" lease={} key={} epoch={}", lease_bits(l.state), hex(&l.key), l.epoch));
    }
    if let Some(app) = h.app_instance_id {
        text.push_str(&format!(" app_instance={}", hex(&app)));
    }
    text.push_str(&format!(" disconnected={} timeout_ms={}", rfc3339(h.disconnected_at), h.timeout_ms));
    if let Some(at) = h.expires_at() {
        text.push_str(&format!(" expires={}", rfc3339(at)));
    }
    if let Some(p) = &h.delete_pending {
        text.push_str(&format!(" delete_pending={}", plain(&p.file_name)));
    }
    if h.is_directory {
        text.push_str(" directory");
    }
    text
}

/// One record of a keyspace on one line: key and value in hex.
pub fn record_line(r: &Record) -> String {
    format!("key={} value={}", hex(&r.key), hex(&r.value))
}

fn op_text(op: &Op) -> String {
    match op {
        Op::PutLock(l) | Op::Grant(l) => format!(
            "{} {} {} file={} owner={} client={} share={}",
            if matches!(op, Op::Grant(_)) { "grant" } else { "put_lock" },
            plain(&l.id),
            kind_text(&l.kind),
            plain(&l.file_id),
            plain(&l.owner_id),
            plain(&l.client_id),
            plain(&l.share)
        ),
        Op::DeleteLock { id } => format!("delete_lock {}", plain(id)),
        Op::DeleteLocksByClient { client_id } => format!("delete_locks_by_client {}", plain(client_id)),
        Op::DeleteLocksByFile { file_id } => format!("delete_locks_by_file {}", plain(file_id)),
        Op::UpdateLock(l) => format!("update_lock {} {}", plain(&l.id), kind_text(&l.kind)),
        Op::PutClient(c) => format!("put_client {} {}", plain(&c.client_id), client_kind_name(c.kind())),
        Op::DeleteClient { kind, client_id } => {
            format!("delete_client {} {}", plain(client_id), client_kind_name(*kind))
        }
        Op::DeleteClients(s) => format!(
            "delete_clients kind={} client_id={} name={}",
            s.kind.map_or("any", client_kind_name),
            s.client_id.as_deref().map_or("any".to_owned(), plain),
            s.name.as_deref().map_or("any".to_owned(), plain)
        ),
        Op::MarkReclaimComplete { kind, client_id } => {
            format!("mark_reclaim_complete {} {}", plain(client_id), client_kind_name(*kind))
        }
        Op::Reclaim { id, client_id } => format!("reclaim {} by {}", plain(id), plain(client_id)),
        Op::EndGrace { share: None } => "end_grace".to_owned(),
        Op::EndGrace { share: Some(share) } => format!("end_grace share={}", plain(share)),
        Op::PutHandle(h) => format!(
            "put_handle {} file_id={} share={} path={}",
            plain(&h.id),
            hex(&h.file_id),
            plain(&h.share),
            plain(&h.path)
        ),
        Op::DeleteHandle { id } => format!("delete_handle {}", plain(id)),
        Op::ConsumeHandleByFileId { file_id } => format!("consume_handle file_id={}", hex(file_id)),
        Op::ConsumeHandleByCreateGuid { create_guid } => format!("consume_handle create_guid={}", hex(create_guid)),
        Op::ExpireHandles { now } => format!("expire_handles now={}", rfc3339(*now)),
        Op::PutRecord { space, key, value } => {
            format!("put_record {}/{} value={}", plain(space), hex(key), hex(value))
        }
        Op::DeleteRecord { space, key } => format!("delete_record {}/{}", plain(space), hex(key)),
        Op::SwapRecord { space, key, expected, value } => format!(
            "swap_record {}/{} expected={} value={}",
            plain(space),
            hex(key),
            expected.as_deref().map_or("absent".to_owned(), hex),
            value.as_deref().map_or("absent".to_owned(), hex)
        ),
    }
}

/// A logged command in human output.
pub fn command_text(c: &Command) -> String {
    match c {
        Command::Txn(ops) if ops.len() == 1 => op_text(&ops[0]),
        Command::Txn(ops) => format!("txn [{}]", ops.iter().map(op_text).collect::<Vec<_>>().join("; ")),
        Command::Open { epoch } => format!("open epoch={epoch}"),
        Command::CleanShutdown => "clean_shutdown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_matches_known_instants() {
        let cases = [
            (0, "1970-01-01T00:00:00.000000Z"),
            (1_764_000_000_123_456, "2025-11-24T16:00:00.123456Z"),
            (951_782_400_000_000, "2000-02-29T00:00:00.000000Z"),
            (-86_401_000_000, "1969-12-30T23:59:59.000000Z"),
            (-1, "1969-12-31T23:59:59.999999Z"),
        ];
        for (micros, want) in cases {
            assert_eq!(rfc3339(Timestamp::from_unix_micros(micros)), want, "{micros}");
        }
    }

    #[test]
    fn every_day_of_four_centuries_round_trips_through_the_calendar() {
        // Independent check: count days forward with month lengths.
        let (mut y, mut m, mut d) = (1970i64, 1u32, 1u32);
        let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        for days in 0..146_097 {
            assert_eq!(civil_from_days(days), (y, m, d), "day {days}");
            let len = match m {
                2 if leap(y) => 29,
                2 => 28,
                4 | 6 | 9 | 11 => 30,
                _ => 31,
            };
            d += 1;
            if d > len {
                d = 1;
                m += 1;
                if m > 12 {
                    m = 1;
                    y += 1;
                }
            }
        }
    }

    #[test]
    fn byte_range_json_has_the_documented_fields() {
        let lock = lockwal::testing::sample::byte_range("a", "s", "f", "o", "c");
        let v = lock_json(&lock);
        for field in [
            "id",
            "share",
            "file_id",
            "owner_id",
            "client_id",
            "kind",
            "lock_type",
            "offset",
            "length",
            "server_epoch",
            "acquired_at",
        ] {
            assert!(v.get(field).is_some(), "missing {field} in {v}");
        }
        assert_eq!(v["lock_type"], "exclusive");
        assert_eq!(v["offset"], 4096);
        assert_eq!(v["length"], 512);
        assert_eq!(v["acquired_at_micros"], 1_764_000_000_123_456i64);
    }

    #[test]
    fn every_kind_renders_with_null_byte_range_fields_except_byte_ranges() {
        for lock in lockwal::testing::sample::every_kind() {
            let v = lock_json(&lock);
            assert_eq!(v["kind"], kind_name(&lock.kind));
            let is_range = matches!(lock.kind, LockKind::ByteRange(_));
            assert_eq!(!v["lock_type"].is_null(), is_range, "{v}");
            assert!(!lock_line(&lock).contains('\0'), "control characters are escaped");
        }
    }

    #[test]
    fn plain_quotes_only_what_needs_it() {
        assert_eq!(plain("nlm:host:1"), "nlm:host:1");
        assert_eq!(plain("a b"), "\"a b\"");
        assert_eq!(plain("x\u{0}y"), "\"x\\0y\"");
        assert_eq!(plain(""), "\"\"");
    }
}
