//! The conflict rules: whether a candidate lock conflicts with a lock
//! already held on the same file, or needs a lease or delegation broken
//! first. Pure functions of two locks; DESIGN ("Conflict rules") has the
//! table with the specification each row follows.
//!
//! Two locks are on the same file when their `file_id`s are equal; a lock
//! never conflicts with itself (same `id`: the candidate replaces it).

use super::lock::{
    ByteRange, Delegation, DelegationType, Lease, LeaseState, LockKind, LockType, PersistedLock, RangeFlavor,
    ShareAccess, ShareDeny, ShareReservation,
};

/// What an existing lock means for a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The two can be held together.
    Compatible,
    /// The existing lock refuses the candidate.
    Conflict,
    /// The existing lease or delegation must be broken or recalled before
    /// the candidate can be granted; it does not refuse it.
    Break,
}

/// The answer of a test: who refuses a candidate, and what must be broken
/// first. Both sorted by id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conflicts {
    /// Locks held by others that refuse the candidate.
    pub holders: Vec<PersistedLock>,
    /// Leases and delegations of other clients to break or recall first.
    pub to_break: Vec<PersistedLock>,
}

impl Conflicts {
    /// No holder refuses and nothing needs breaking: the grant can proceed.
    pub fn is_clear(&self) -> bool {
        self.holders.is_empty() && self.to_break.is_empty()
    }

    /// Adds `existing` where its verdict against `candidate` puts it.
    pub fn add(&mut self, candidate: &PersistedLock, existing: &PersistedLock) {
        match verdict(candidate, existing) {
            Verdict::Compatible => {}
            Verdict::Conflict => self.holders.push(existing.clone()),
            Verdict::Break => self.to_break.push(existing.clone()),
        }
    }

    /// Sorts both lists by id (the order every backend answers in).
    pub fn sort(&mut self) {
        self.holders.sort_by(|a, b| a.id.cmp(&b.id));
        self.to_break.sort_by(|a, b| a.id.cmp(&b.id));
    }
}

/// The answer of a test over `existing` (any locks; those on other files
/// and the candidate itself are skipped), sorted by id.
pub fn conflicts<'a>(candidate: &PersistedLock, existing: impl IntoIterator<Item = &'a PersistedLock>) -> Conflicts {
    let mut out = Conflicts::default();
    for lock in existing {
        out.add(candidate, lock);
    }
    out.sort();
    out
}

/// What `existing` means for `candidate`.
pub fn verdict(candidate: &PersistedLock, existing: &PersistedLock) -> Verdict {
    if candidate.file_id != existing.file_id {
        return Verdict::Compatible;
    }
    let held =
        Held { id: &existing.id, owner_id: &existing.owner_id, client_id: &existing.client_id, kind: &existing.kind };
    judge(candidate, &held)
}

/// The fields of a held lock the rules read, borrowed from wherever the
/// backend keeps them (the state judges its slots without building a
/// [`PersistedLock`] for each).
#[derive(Debug, Clone, Copy)]
pub struct Held<'a> {
    /// The held lock's id.
    pub id: &'a str,
    /// Its owner.
    pub owner_id: &'a str,
    /// Its client.
    pub client_id: &'a str,
    /// Its kind.
    pub kind: &'a LockKind,
}

/// What a lock `held` on the candidate's file (the caller checked that)
/// means for `candidate`.
pub fn judge(candidate: &PersistedLock, held: &Held<'_>) -> Verdict {
    if *candidate.id == *held.id {
        return Verdict::Compatible;
    }
    let same_owner = *candidate.owner_id == *held.owner_id;
    match (&candidate.kind, held.kind) {
        (LockKind::ByteRange(c), LockKind::ByteRange(e)) => refuse(ranges_conflict(c, e, same_owner)),
        (LockKind::Share(c), LockKind::Share(e)) => refuse(!same_owner && shares_conflict(c, e)),
        (_, LockKind::Lease(_) | LockKind::Delegation(_)) => {
            let other_client = *candidate.client_id != *held.client_id;
            if other_client && must_break(&candidate.kind, held.kind) { Verdict::Break } else { Verdict::Compatible }
        }
        _ => Verdict::Compatible,
    }
}

fn refuse(conflict: bool) -> Verdict {
    if conflict { Verdict::Conflict } else { Verdict::Compatible }
}

/// The bytes a range covers, inclusive, or `None` for a zero-byte lock.
/// "To end of file" (length 0 without `zero_byte`, or `u64::MAX`) runs to
/// byte `u64::MAX`.
pub fn covered(range: &ByteRange) -> Option<(u64, u64)> {
    if range.zero_byte {
        return None;
    }
    Some((range.offset, range.last_byte().unwrap_or(u64::MAX)))
}

/// Whether two byte-range locks overlap. A zero-byte lock at `x` covers no
/// byte but, as MS-FSA 2.1.4.10 computes it (last byte `x - 1`), overlaps a
/// range that holds both byte `x - 1` and byte `x`; at offset 0 it overlaps
/// nothing, and two zero-byte locks never overlap.
pub fn overlap(a: &ByteRange, b: &ByteRange) -> bool {
    match (covered(a), covered(b)) {
        (Some((a0, a1)), Some((b0, b1))) => a0 <= b1 && b0 <= a1,
        (None, Some((first, last))) => straddles(a.offset, first, last),
        (Some((first, last)), None) => straddles(b.offset, first, last),
        (None, None) => false,
    }
}

fn straddles(zero_at: u64, first: u64, last: u64) -> bool {
    first < zero_at && zero_at <= last
}

fn ranges_conflict(candidate: &ByteRange, existing: &ByteRange, same_owner: bool) -> bool {
    if !overlap(candidate, existing) {
        return false;
    }
    let smb = |r: &ByteRange| matches!(r.flavor, RangeFlavor::Smb { .. });
    if same_owner {
        // An SMB open's own locks stack; only an exclusive request over the
        // same open's overlapping lock fails. POSIX owners (and a mixed pair
        // with one owner) merge and split their own ranges: never a conflict.
        return smb(candidate) && smb(existing) && candidate.lock_type == LockType::Exclusive;
    }
    candidate.lock_type == LockType::Exclusive || existing.lock_type == LockType::Exclusive
}

fn reads(access: ShareAccess) -> bool {
    matches!(access, ShareAccess::Read | ShareAccess::ReadWrite)
}

fn writes(access: ShareAccess) -> bool {
    matches!(access, ShareAccess::Write | ShareAccess::ReadWrite)
}

fn denies_read(deny: ShareDeny) -> bool {
    matches!(deny, ShareDeny::Read | ShareDeny::All)
}

fn denies_write(deny: ShareDeny) -> bool {
    matches!(deny, ShareDeny::Write | ShareDeny::All)
}

/// Access meets deny, either way round.
fn shares_conflict(c: &ShareReservation, e: &ShareReservation) -> bool {
    let meets = |access: ShareAccess, deny: ShareDeny| {
        (reads(access) && denies_read(deny)) || (writes(access) && denies_write(deny))
    };
    meets(c.access, e.deny) || meets(e.access, c.deny)
}

/// Whether a candidate of another client needs `existing` (a lease or a
/// delegation) broken: a write-caching one by anything, a read-caching one
/// by a candidate that writes or denies reading.
fn must_break(candidate: &LockKind, existing: &LockKind) -> bool {
    let caching = match existing {
        LockKind::Lease(lease) => lease_caching(lease),
        LockKind::Delegation(d) => delegation_caching(d),
        _ => Caching::None,
    };
    match caching {
        Caching::None => false,
        Caching::Write => true,
        Caching::Read => writes_or_denies_read(candidate),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caching {
    None,
    Read,
    Write,
}

fn lease_caching(lease: &Lease) -> Caching {
    if lease.state.contains(LeaseState::WRITE) {
        Caching::Write
    } else if lease.state.contains(LeaseState::READ) || lease.state.contains(LeaseState::HANDLE) {
        Caching::Read
    } else {
        Caching::None
    }
}

fn delegation_caching(d: &Delegation) -> Caching {
    match (d.revoked, d.delegation_type) {
        (true, _) => Caching::None,
        (false, DelegationType::Write) => Caching::Write,
        (false, DelegationType::Read) => Caching::Read,
    }
}

fn writes_or_denies_read(candidate: &LockKind) -> bool {
    match candidate {
        LockKind::ByteRange(r) => r.lock_type == LockType::Exclusive,
        LockKind::Share(s) => writes(s.access) || denies_read(s.deny),
        LockKind::Lease(l) => l.state.contains(LeaseState::WRITE),
        LockKind::Delegation(d) => d.delegation_type == DelegationType::Write,
    }
}
