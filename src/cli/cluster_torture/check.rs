//! What `cluster-torture` checks: the model of acknowledged steps built
//! from the node processes' lines, and the checks of the database's state
//! against it. Shares no code with the store but the conflict rules'
//! public verdict (`model::conflict`), which `tests/conflict_model.rs`
//! holds to a naive model.

use lockwal::model::PersistedLock;
use lockwal::model::conflict::conflicts;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Everything the node processes said, across every incarnation.
#[derive(Default, Debug)]
pub(super) struct Model {
    /// Acknowledged grants: id to client.
    pub granted: HashMap<String, String>,
    /// Grants attempted (acknowledged or not): id to client.
    pub attempted: HashMap<String, String>,
    /// Acknowledged releases.
    pub released: HashSet<String>,
    /// Releases attempted and not acknowledged.
    pub release_in_doubt: HashSet<String>,
    /// Locks an acknowledged end of grace removed.
    pub purged: HashSet<String>,
    /// Ends of grace attempted and not acknowledged (by incarnation).
    pub end_in_doubt: u64,
    /// Counts for the report.
    pub reclaims: u64,
    pub refused_conflict: u64,
    pub refused_in_grace: u64,
    pub takeovers: u64,
    pub opens: u64,
    pub violations: Vec<String>,
}

/// One incarnation's unfinished steps, settled when its stream ends.
#[derive(Default)]
pub(super) struct Stream {
    release_pending: HashSet<String>,
    end_pending: bool,
}

impl Model {
    /// Absorbs one line of one incarnation.
    pub(super) fn line(&mut self, stream: &mut Stream, line: &str) {
        let mut words = line.split(' ');
        let (tag, id) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
        match tag {
            "O" => self.opens += 1,
            "g" => {
                self.attempted.insert(id.to_owned(), words.next().unwrap_or("").to_owned());
            }
            "G" => {
                self.granted.insert(id.to_owned(), words.next().unwrap_or("").to_owned());
            }
            "N" => self.refused_conflict += 1,
            "W" => self.refused_in_grace += 1,
            "r" => {
                stream.release_pending.insert(id.to_owned());
            }
            "R" => {
                stream.release_pending.remove(id);
                self.released.insert(id.to_owned());
            }
            "c" => {}
            "C" => {
                self.reclaims += 1;
                let client = words.next().unwrap_or("");
                // A grant whose acknowledgement was lost with its process
                // may have committed: it is the attempt's client.
                match self.attempted.get(id) {
                    Some(holder) if holder == client => {}
                    holder => self.violations.push(format!("lock {id} reclaimed by {client:?}, held by {holder:?}")),
                }
            }
            "e" => stream.end_pending = true,
            "P" => {
                stream.end_pending = false;
                self.purged.extend(line.split(' ').skip(1).map(str::to_owned));
            }
            "t" => {}
            "T" => self.takeovers += 1,
            "X" => {}
            other => self.violations.push(format!("unknown line {other:?}: {line:?}")),
        }
    }

    /// The stream of an incarnation ended (killed or exited): what it left
    /// unacknowledged may or may not have happened.
    pub(super) fn ended(&mut self, stream: Stream) {
        self.release_in_doubt.extend(stream.release_pending);
        self.end_in_doubt += u64::from(stream.end_pending);
    }

    /// The final state against the model: every acknowledged grant not
    /// released or purged is held (unless a release of it, or some end of
    /// grace, is in doubt); no acknowledged release or purge came back;
    /// nothing is held that nobody tried to grant.
    pub(super) fn check_final(&mut self, held: &[PersistedLock]) {
        let present: HashSet<&str> = held.iter().map(|l| &*l.id).collect();
        for id in self.granted.keys() {
            let gone = self.released.contains(id) || self.purged.contains(id);
            let may_be_gone = self.release_in_doubt.contains(id) || self.end_in_doubt > 0;
            if !gone && !may_be_gone && !present.contains(id.as_str()) {
                self.violations.push(format!("acknowledged grant {id} was lost"));
            }
        }
        for id in self.released.iter().chain(&self.purged) {
            if present.contains(id.as_str()) {
                self.violations.push(format!("lock {id} came back after its acknowledged release or purge"));
            }
        }
        for id in &present {
            if !self.attempted.contains_key(*id) {
                self.violations.push(format!("lock {id} is held but no node tried to grant it"));
            }
        }
    }
}

/// Pairs of held locks that conflict (every grant was checked, so any is a
/// bug), at most a few named.
pub(super) fn conflicting_pairs(held: &[PersistedLock]) -> Vec<String> {
    let mut by_file: BTreeMap<&str, Vec<&PersistedLock>> = BTreeMap::new();
    for lock in held {
        by_file.entry(&lock.file_id).or_default().push(lock);
    }
    let mut found = Vec::new();
    for locks in by_file.values() {
        for (i, lock) in locks.iter().enumerate() {
            let others = locks[i + 1..].iter().copied();
            let c = conflicts(lock, others);
            for holder in &c.holders {
                found.push(format!("{} conflicts with {}", lock.id, holder.id));
            }
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockwal::testing::sample;

    #[test]
    fn a_lost_grant_a_returning_release_and_a_phantom_are_caught() {
        let mut model = Model::default();
        let mut stream = Stream::default();
        for line in ["O 3", "g a c1", "G a c1", "g b c1", "G b c1", "r b", "R b", "g c c2", "G c c2", "r c"] {
            model.line(&mut stream, line);
        }
        model.ended(stream);
        let held = [sample::byte_range("b", "s", "f", "o", "c1"), sample::byte_range("z", "s", "f2", "o", "c1")];
        model.check_final(&held);
        assert_eq!(
            model.violations,
            [
                "acknowledged grant a was lost",
                "lock b came back after its acknowledged release or purge",
                "lock z is held but no node tried to grant it"
            ],
            "c was being released when the node died: its absence is allowed"
        );
    }

    #[test]
    fn a_reclaim_by_another_client_and_conflicts_are_caught() {
        let mut model = Model::default();
        let mut stream = Stream::default();
        for line in ["g a c1", "G a c1", "C a c2", "g b c3", "C b c3"] {
            model.line(&mut stream, line);
        }
        assert_eq!(model.violations.len(), 1, "b's grant was in doubt, its reclaim is fine: {:?}", model.violations);
        let mut x = sample::byte_range("x", "s", "f", "o1", "c1");
        let mut y = sample::byte_range("y", "s", "f", "o2", "c2");
        for lock in [&mut x, &mut y] {
            if let lockwal::model::LockKind::ByteRange(r) = &mut lock.kind {
                r.lock_type = lockwal::model::LockType::Exclusive;
            }
        }
        assert_eq!(conflicting_pairs(&[x.clone(), y]), ["x conflicts with y"]);
        assert!(conflicting_pairs(&[x]).is_empty());
    }
}
