//! The server's own records: per keyspace, keys in byte order, so a get is
//! a lookup and a scan walks only the range it returns.
//!
//! Each keyspace is a persistent ordered map (`imbl::OrdMap`, nodes shared
//! between copies) of shared byte strings, so the copy a snapshot takes is
//! one pointer per keyspace, not one per record, and a write while that
//! copy is alive copies only the nodes on its path (Why:
//! docs/decisions/0040-handles-and-records-format-4.md).

use crate::model::{Record, RecordScan};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Bytes of a key or value, shared between the state and snapshot views.
pub(crate) type Bytes = Arc<[u8]>;

/// The records of one keyspace.
pub(crate) type Space = imbl::OrdMap<Bytes, Bytes>;

/// Every keyspace's records.
#[derive(Debug, Clone, Default)]
pub(crate) struct Records {
    spaces: BTreeMap<String, Space>,
    count: usize,
}

impl Records {
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    pub(crate) fn get(&self, space: &str, key: &[u8]) -> Option<&Bytes> {
        self.spaces.get(space)?.get(key)
    }

    /// Sets `space`/`key` to `value` (`None`: removes it); returns the value
    /// it held.
    pub(crate) fn set(&mut self, space: &str, key: &[u8], value: Option<Bytes>) -> Option<Bytes> {
        match value {
            Some(value) => {
                let records = match self.spaces.get_mut(space) {
                    Some(records) => records,
                    None => self.spaces.entry(space.to_owned()).or_default(),
                };
                let prev = records.insert(Bytes::from(key), value);
                self.count += usize::from(prev.is_none());
                prev
            }
            None => {
                let records = self.spaces.get_mut(space)?;
                let prev = records.remove(key)?;
                if records.is_empty() {
                    self.spaces.remove(space);
                }
                self.count -= 1;
                Some(prev)
            }
        }
    }

    /// The records of `space` that `scan` selects, in key order.
    pub(crate) fn scan(&self, space: &str, scan: &RecordScan) -> Vec<Record> {
        let Some(records) = self.spaces.get(space) else { return Vec::new() };
        // Start at the larger of the prefix and `start`: every key before
        // it fails one of the two.
        let from: Bytes = match &scan.start {
            Some(start) if *start > scan.prefix => Bytes::from(start.as_slice()),
            _ => Bytes::from(scan.prefix.as_slice()),
        };
        records
            .range(from..)
            .take_while(|(key, _)| key.starts_with(&scan.prefix) && scan.end.as_deref().is_none_or(|e| &key[..] < e))
            .take(scan.limit)
            .map(|(key, value)| Record { key: key.to_vec(), value: value.to_vec() })
            .collect()
    }

    /// Every keyspace with its record count, in name order.
    pub(crate) fn spaces(&self) -> impl Iterator<Item = (&str, usize)> {
        self.spaces.iter().map(|(name, records)| (name.as_str(), records.len()))
    }

    /// Every keyspace as a shared copy (a snapshot's view: O(1) each).
    pub(crate) fn shared(&self) -> Vec<(String, Space)> {
        self.spaces.iter().map(|(name, records)| (name.clone(), records.clone())).collect()
    }

    /// Every record, by keyspace then key.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &[u8], &[u8])> {
        self.spaces
            .iter()
            .flat_map(|(space, records)| records.iter().map(move |(key, value)| (space.as_str(), &key[..], &value[..])))
    }

    /// Checks the count and that no keyspace is kept empty (tests).
    pub(crate) fn check_invariants(&self) {
        assert!(self.spaces.values().all(|r| !r.is_empty()), "an empty keyspace is kept");
        assert_eq!(self.spaces.values().map(Space::len).sum::<usize>(), self.count, "record count out of step");
    }
}
