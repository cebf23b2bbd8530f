//! Secondary indexes: for each key (a file id, owner, client or share), a
//! doubly-linked list threaded through the slots that hold it.
//!
//! The map holds one entry per distinct key: the key itself (the one
//! `Arc<str>` every lock with that key shares, so a string repeated across a
//! million locks costs one allocation) and the head and length of its list.
//! Each slot carries a `prev`/`next` link per index, so adding or removing a
//! lock is O(1) with no per-key set to grow, and listing one key's locks
//! costs the length of its list. A key disappears with its last lock.

use std::collections::HashMap;
use std::sync::Arc;

/// Slot number of a lock in the state's slab.
pub(crate) type SlotId = u32;
/// "No slot": the end of a list.
pub(crate) const NIL: SlotId = SlotId::MAX;

/// The hasher of every map in the state: fast, randomly seeded per map.
pub(crate) type Hasher = foldhash::fast::RandomState;

/// One slot's place in one index's list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) prev: SlotId,
    pub(crate) next: SlotId,
}

impl Link {
    pub(crate) const DETACHED: Link = Link { prev: NIL, next: NIL };
}

/// The head and length of one key's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Posting {
    /// The key (the same allocation as the map's key): found with the list
    /// in one lookup.
    pub(crate) key: Arc<str>,
    pub(crate) head: SlotId,
    pub(crate) len: u32,
}

/// Access to the links of slots, implemented by the state's slab.
pub(crate) trait Links {
    /// The link of `slot` in index `which`.
    fn link(&mut self, slot: SlotId, which: usize) -> &mut Link;
}

#[derive(Debug, Clone)]
pub(crate) struct Index {
    /// Which of a slot's links this index uses.
    which: usize,
    map: HashMap<Arc<str>, Posting, Hasher>,
}

impl Index {
    pub(crate) fn new(which: usize) -> Self {
        Self { which, map: HashMap::default() }
    }

    /// Puts `slot` at the head of `key`'s list; a new key is interned as
    /// `key` itself (no copy). Returns the interned key (an existing key's
    /// allocation when there is one, so equal strings share one) and the
    /// new slot's link; the old head's `prev` is updated through `links`
    /// (the new slot need not be in the slab yet).
    pub(crate) fn attach(&mut self, key: &Arc<str>, slot: SlotId, links: &mut impl Links) -> (Arc<str>, Link) {
        if let Some(posting) = self.map.get_mut(&**key) {
            let link = Link { prev: NIL, next: posting.head };
            links.link(posting.head, self.which).prev = slot;
            posting.head = slot;
            posting.len += 1;
            return (Arc::clone(&posting.key), link);
        }
        self.map.insert(Arc::clone(key), Posting { key: Arc::clone(key), head: slot, len: 1 });
        (Arc::clone(key), Link::DETACHED)
    }

    /// Removes a slot whose link was `link` from `key`'s list; drops the key
    /// with its last slot. The slot itself need no longer be in the slab.
    pub(crate) fn detach(&mut self, key: &str, slot: SlotId, link: Link, links: &mut impl Links) {
        let posting = self.map.get_mut(key).expect("a linked slot's key is indexed");
        if link.prev == NIL {
            debug_assert_eq!(posting.head, slot);
            posting.head = link.next;
        } else {
            links.link(link.prev, self.which).next = link.next;
        }
        if link.next != NIL {
            links.link(link.next, self.which).prev = link.prev;
        }
        posting.len -= 1;
        if posting.len == 0 {
            self.map.remove(key);
        }
    }

    /// The list of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&Posting> {
        self.map.get(key)
    }

    /// Every list.
    pub(crate) fn postings(&self) -> impl Iterator<Item = &Posting> {
        self.map.values()
    }

    /// Installs a list built elsewhere (snapshot restore).
    pub(crate) fn install(&mut self, posting: Posting) {
        debug_assert!(posting.len > 0);
        let previous = self.map.insert(Arc::clone(&posting.key), posting);
        debug_assert!(previous.is_none(), "a key is installed once");
    }

    /// Reserves room for `keys` more keys.
    pub(crate) fn reserve(&mut self, keys: usize) {
        self.map.reserve(keys);
    }

    /// Number of (key, slot) entries, for invariant checks.
    pub(crate) fn entries(&self) -> usize {
        self.map.values().map(|p| p.len as usize).sum()
    }

    /// Which of a slot's links this index uses.
    pub(crate) fn which(&self) -> usize {
        self.which
    }
}
