//! The conflict rules again, written from DESIGN's table with no code in
//! common with [`crate::model::conflict`] or the state: ranges as signed
//! 128-bit first/last bytes exactly as MS-FSA 2.1.4.10 computes them,
//! share modes and caching levels as bit masks, and a linear scan of every
//! lock. The oracle of the random test-query comparisons.

use crate::model::{DelegationType, LockKind, LockType, PersistedLock, RangeFlavor, ShareAccess, ShareDeny};
use std::collections::BTreeMap;

/// What the model answers for one candidate: the ids of the refusing
/// holders and of the leases/delegations to break, each sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// Ids of the locks that refuse the candidate.
    pub holders: Vec<String>,
    /// Ids of the leases and delegations to break first.
    pub to_break: Vec<String>,
}

/// The model's answer for `candidate` against every lock in `locks`.
pub fn answer(candidate: &PersistedLock, locks: &BTreeMap<String, PersistedLock>) -> Answer {
    let mut out = Answer::default();
    for (id, lock) in locks {
        if *id == *candidate.id || lock.file_id != candidate.file_id {
            continue;
        }
        if refuses(candidate, lock) {
            out.holders.push(id.clone());
        } else if breaks(candidate, lock) {
            out.to_break.push(id.clone());
        }
    }
    out
}

/// First and last byte (inclusive, signed so that a zero-length lock at x
/// ends at x - 1), or `None` for the {0, 0} lock that overlaps nothing.
fn span(offset: u64, length: u64, zero_byte: bool) -> Option<(i128, i128)> {
    let first = offset as i128;
    let last = if zero_byte {
        first - 1
    } else if length == 0 || length == u64::MAX {
        u64::MAX as i128
    } else {
        first + length as i128 - 1
    };
    if zero_byte && offset == 0 { None } else { Some((first, last)) }
}

fn refuses(candidate: &PersistedLock, held: &PersistedLock) -> bool {
    let one_owner = candidate.owner_id == held.owner_id;
    match (&candidate.kind, &held.kind) {
        (LockKind::ByteRange(c), LockKind::ByteRange(h)) => {
            let (Some((c0, c1)), Some((h0, h1))) =
                (span(c.offset, c.length, c.zero_byte), span(h.offset, h.length, h.zero_byte))
            else {
                return false;
            };
            if !(c0 <= h1 && c1 >= h0) {
                return false;
            }
            let c_excl = c.lock_type == LockType::Exclusive;
            let h_excl = h.lock_type == LockType::Exclusive;
            let both_smb = matches!(c.flavor, RangeFlavor::Smb { .. }) && matches!(h.flavor, RangeFlavor::Smb { .. });
            if one_owner { both_smb && c_excl } else { c_excl || h_excl }
        }
        (LockKind::Share(c), LockKind::Share(h)) => {
            !one_owner
                && ((access_bits(c.access) & deny_bits(h.deny)) | (access_bits(h.access) & deny_bits(c.deny))) != 0
        }
        _ => false,
    }
}

const R: u8 = 1;
const W: u8 = 2;

fn access_bits(a: ShareAccess) -> u8 {
    match a {
        ShareAccess::Read => R,
        ShareAccess::Write => W,
        ShareAccess::ReadWrite => R | W,
    }
}

fn deny_bits(d: ShareDeny) -> u8 {
    match d {
        ShareDeny::None => 0,
        ShareDeny::Read => R,
        ShareDeny::Write => W,
        ShareDeny::All => R | W,
    }
}

/// 0: caches nothing; 1: caches reads (or handles); 2: caches writes.
fn caching_level(kind: &LockKind) -> u8 {
    match kind {
        LockKind::Lease(l) if l.state.0 & 0x04 != 0 => 2,
        LockKind::Lease(l) if l.state.0 & 0x03 != 0 => 1,
        LockKind::Delegation(d) if !d.revoked => match d.delegation_type {
            DelegationType::Write => 2,
            DelegationType::Read => 1,
        },
        _ => 0,
    }
}

/// Whether the candidate writes, or denies others reading.
fn intrudes_on_reads(kind: &LockKind) -> bool {
    match kind {
        LockKind::ByteRange(r) => r.lock_type == LockType::Exclusive,
        LockKind::Share(s) => access_bits(s.access) & W != 0 || deny_bits(s.deny) & R != 0,
        LockKind::Lease(l) => l.state.0 & 0x04 != 0,
        LockKind::Delegation(d) => d.delegation_type == DelegationType::Write,
    }
}

fn breaks(candidate: &PersistedLock, held: &PersistedLock) -> bool {
    if candidate.client_id == held.client_id {
        return false;
    }
    match caching_level(&held.kind) {
        2 => true,
        1 => intrudes_on_reads(&candidate.kind),
        _ => false,
    }
}
