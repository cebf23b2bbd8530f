use super::PersistedLock;
use serde::{Deserialize, Serialize};

/// Selects one kind of lock in a [`LockQuery`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KindFilter {
    /// Byte-range locks.
    ByteRange,
    /// Share reservations.
    Share,
    /// Leases.
    Lease,
    /// Delegations.
    Delegation,
}

/// Which locks to list. Filters AND together; the empty query matches every
/// lock. Results always come back sorted by lock id.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockQuery {
    /// Only locks on this file.
    pub file_id: Option<String>,
    /// Only locks of this owner.
    pub owner_id: Option<String>,
    /// Only locks of this client.
    pub client_id: Option<String>,
    /// Only locks on this share.
    pub share: Option<String>,
    /// Only locks of this kind.
    pub kind: Option<KindFilter>,
}

impl LockQuery {
    /// The query that matches every lock.
    pub fn all() -> Self {
        Self::default()
    }

    /// Locks on one file.
    pub fn by_file(file_id: impl Into<String>) -> Self {
        Self { file_id: Some(file_id.into()), ..Self::default() }
    }

    /// Locks of one owner.
    pub fn by_owner(owner_id: impl Into<String>) -> Self {
        Self { owner_id: Some(owner_id.into()), ..Self::default() }
    }

    /// Locks of one client.
    pub fn by_client(client_id: impl Into<String>) -> Self {
        Self { client_id: Some(client_id.into()), ..Self::default() }
    }

    /// Locks on one share.
    pub fn by_share(share: impl Into<String>) -> Self {
        Self { share: Some(share.into()), ..Self::default() }
    }

    /// Restricts the query to one kind.
    pub fn with_kind(mut self, kind: KindFilter) -> Self {
        self.kind = Some(kind);
        self
    }

    /// Does `lock` match every filter of this query?
    pub fn matches(&self, lock: &PersistedLock) -> bool {
        fn eq(filter: &Option<String>, value: &str) -> bool {
            filter.as_deref().is_none_or(|f| f == value)
        }
        eq(&self.file_id, &lock.file_id)
            && eq(&self.owner_id, &lock.owner_id)
            && eq(&self.client_id, &lock.client_id)
            && eq(&self.share, &lock.share)
            && self.kind.is_none_or(|k| k == lock.kind.filter())
    }
}
