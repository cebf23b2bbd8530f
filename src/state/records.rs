//! The server's own records: per keyspace, keys in byte order, so a get is
//! a lookup and a scan walks only the range it returns.

use crate::model::{Record, RecordScan};
use std::collections::BTreeMap;

/// Every keyspace's records.
#[derive(Debug, Clone, Default)]
pub(crate) struct Records {
    spaces: BTreeMap<String, BTreeMap<Vec<u8>, Vec<u8>>>,
    count: usize,
}

impl Records {
    pub(crate) fn len(&self) -> usize {
        self.count
    }

    pub(crate) fn get(&self, space: &str, key: &[u8]) -> Option<&Vec<u8>> {
        self.spaces.get(space)?.get(key)
    }

    /// Sets `space`/`key` to `value` (`None`: removes it); returns the value
    /// it held.
    pub(crate) fn set(&mut self, space: &str, key: &[u8], value: Option<Vec<u8>>) -> Option<Vec<u8>> {
        match value {
            Some(value) => {
                let prev = self.spaces.entry(space.to_owned()).or_default().insert(key.to_vec(), value);
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
        let from = match &scan.start {
            Some(start) if *start > scan.prefix => start.clone(),
            _ => scan.prefix.clone(),
        };
        records
            .range(from..)
            .take_while(|(key, _)| {
                key.starts_with(&scan.prefix) && scan.end.as_deref().is_none_or(|e| key.as_slice() < e)
            })
            .take(scan.limit)
            .map(|(key, value)| Record { key: key.clone(), value: value.clone() })
            .collect()
    }

    /// Every keyspace with its record count, in name order.
    pub(crate) fn spaces(&self) -> impl Iterator<Item = (&str, usize)> {
        self.spaces.iter().map(|(name, records)| (name.as_str(), records.len()))
    }

    /// Every record, by keyspace then key.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, &[u8], &[u8])> {
        self.spaces.iter().flat_map(|(space, records)| {
            records.iter().map(move |(key, value)| (space.as_str(), key.as_slice(), value.as_slice()))
        })
    }

    /// Checks the count and that no keyspace is kept empty (tests).
    pub(crate) fn check_invariants(&self) {
        assert!(self.spaces.values().all(|r| !r.is_empty()), "an empty keyspace is kept");
        assert_eq!(self.spaces.values().map(BTreeMap::len).sum::<usize>(), self.count, "record count out of step");
    }
}
