//! The server's own small records: named keyspaces of opaque key to value
//! bytes, held with the locks so that one transaction covers both.

use serde::{Deserialize, Serialize};

/// One stored record: its key and value within a keyspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The key.
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The value.
    #[serde(with = "serde_bytes")]
    pub value: Vec<u8>,
}

/// Which records of a keyspace to scan, in key order (bytewise). Filters
/// AND together: keys that start with `prefix`, at or after `start`, before
/// `end`; at most `limit` of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordScan {
    /// Only keys that start with these bytes (empty: every key).
    pub prefix: Vec<u8>,
    /// Only keys at or after this one (inclusive).
    pub start: Option<Vec<u8>>,
    /// Only keys before this one (exclusive).
    pub end: Option<Vec<u8>>,
    /// At most this many records.
    pub limit: usize,
}

impl RecordScan {
    /// Every record of the keyspace, up to `limit`.
    pub fn all(limit: usize) -> Self {
        Self { prefix: Vec::new(), start: None, end: None, limit }
    }

    /// The records whose key starts with `prefix`, up to `limit`.
    pub fn prefix(prefix: impl Into<Vec<u8>>, limit: usize) -> Self {
        Self { prefix: prefix.into(), ..Self::all(limit) }
    }

    /// The next page: the same scan from just after `last` (the last key of
    /// the previous page).
    pub fn after(&self, last: &[u8]) -> Self {
        let mut start = last.to_vec();
        start.push(0);
        Self { start: Some(start), ..self.clone() }
    }

    /// Whether `key` passes the filters (the limit aside).
    pub fn matches(&self, key: &[u8]) -> bool {
        key.starts_with(&self.prefix)
            && self.start.as_deref().is_none_or(|s| key >= s)
            && self.end.as_deref().is_none_or(|e| key < e)
    }
}
