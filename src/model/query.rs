use super::{LeaseKey, PersistedLock};
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
    /// Never locks of this kind (`Some(Lease)`: every kind but leases).
    pub exclude_kind: Option<KindFilter>,
    /// Only leases with this lease key (with `file_id`: the lease an SMB
    /// client reclaims by file and key).
    pub lease_key: Option<LeaseKey>,
    /// Only locks whose `server_epoch` is below this: locks granted by an
    /// earlier incarnation when it is the store's current epoch.
    pub granted_before_epoch: Option<u64>,
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

    /// Restricts the query to every kind but `kind`.
    pub fn without_kind(mut self, kind: KindFilter) -> Self {
        self.exclude_kind = Some(kind);
        self
    }

    /// Restricts the query to locks granted before `epoch`.
    pub fn granted_before(mut self, epoch: u64) -> Self {
        self.granted_before_epoch = Some(epoch);
        self
    }

    /// The leases with key `key` on `file_id`.
    pub fn lease(file_id: impl Into<String>, key: LeaseKey) -> Self {
        Self { file_id: Some(file_id.into()), lease_key: Some(key), ..Self::default() }
    }

    /// Does a lock of kind `filter` (with `lease_key` when it is a lease)
    /// granted in `server_epoch` pass the filters that are not keys (kind,
    /// excluded kind, lease key, epoch)?
    pub fn matches_fields(&self, filter: KindFilter, lease_key: Option<&LeaseKey>, server_epoch: u64) -> bool {
        self.kind.is_none_or(|k| k == filter)
            && self.exclude_kind != Some(filter)
            && self.lease_key.is_none_or(|key| lease_key == Some(&key))
            && self.granted_before_epoch.is_none_or(|e| server_epoch < e)
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
            && self.matches_fields(lock.kind.filter(), lock.kind.lease_key(), lock.server_epoch)
    }
}
