//! Loading a snapshot back into a state: the [`Restorer`] takes entries in
//! file order (or in two [`Part`]s filled at once on two threads) and, at
//! the end, builds each index's key arrays at their exact sizes and
//! installs them once per distinct key, and gives each file of many locks
//! its range index, unbuilt (its tree is made at the file's first test
//! query).
//!
//! A restore followed by a long log may leave the key indexes to be built
//! after the log is replayed ([`PendingKeys`]): replay then keeps only the
//! ids and the slab up to date, and the key arrays are built once, from the
//! final slab, instead of being built and then changed lock by lock.

use super::index::{Hasher, Index, NIL, Posting, ShardedIds, SlotId, Slots};
use super::machine::State;
use super::ranges::{BUILD_AT, RangeIndexes};
use super::slab::{CHUNK, Chunks, FILE, Slab, Slot, StoredKind, slot_number};
use crate::model::{ClientKind, ClientRecord, DurableHandle, LockKind, Timestamp};
use hashbrown::hash_table::{Entry, HashTable};
use std::hash::BuildHasher;
use std::sync::Arc;

impl State {
    /// A restorer that rebuilds a state from a snapshot (see [`Restorer`]).
    ///
    /// With [`Keys::Defer`], [`Restorer::finish`] indexes the ids only and
    /// leaves the key indexes pending (see [`PendingKeys`]) when it can.
    pub(crate) fn restorer(epoch: u64, clean: bool, locks: usize, keys: Keys) -> Restorer {
        let mut state = Self::new();
        state.epoch = epoch;
        state.clean = clean;
        state.by_id.reserve(locks, |s| state.slots.id(s));
        // Room for the free slots a join may add (one chunk at most).
        let part = Part::new(locks + CHUNK);
        Restorer {
            state,
            strings: Vec::new(),
            string_at: Vec::new(),
            part,
            other_ids: None,
            defer_keys: keys == Keys::Defer,
        }
    }
}

/// When a restore builds the key indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keys {
    /// At [`Restorer::finish`].
    Index,
    /// After the log is replayed, when the caller calls
    /// [`State::index_pending_keys`] (see [`PendingKeys`]).
    Defer,
}

/// Rebuilds a state from a snapshot's entries without hashing the keys of
/// each lock: the string-table entries each lock names are recorded as it
/// is added; at the end the key arrays are counted, built at their exact
/// sizes, and installed in the indexes once per distinct key.
///
/// Entries arrive in file order. Once the string table is complete, the
/// rest of the file may be restored in two [`Part`]s at once (see
/// [`Restorer::fork`]): then each part hashes its ids as they arrive and
/// sorts them by shard of the id table ([`ShardedIds`]), and
/// [`Restorer::finish`] fills the table from them, in parallel with the key
/// arrays, instead of inserting each id as it arrives.
pub(crate) struct Restorer {
    state: State,
    strings: Vec<Arc<str>>,
    /// Where each string-table entry is in the snapshot, for errors.
    string_at: Vec<usize>,
    /// The locks in file order (all of them, once a fork is joined).
    part: Part,
    /// The ids of the part forked off, once joined, with the number of its
    /// first slot.
    other_ids: Option<(ShardedIds, SlotId)>,
    /// Leave the key indexes pending at [`Restorer::finish`].
    defer_keys: bool,
}

/// The string table of a restore whose key indexes are not built yet: while
/// they are pending, each slot's positions are the string-table entries of
/// its keys (as a restore records them, [`NIL`] for a free slot), and a lock
/// added meanwhile interns its keys here, a new text as a new entry. Every
/// text is in the table once, so the arrays built at the end hold each key
/// once ([`State::index_pending_keys`] cannot fail).
#[derive(Debug, Clone)]
pub(crate) struct PendingKeys {
    strings: Vec<Arc<str>>,
    /// Entry numbers, found by the entry's text.
    lookup: HashTable<u32>,
    hasher: Hasher,
}

impl PendingKeys {
    /// The table of `strings`; gives them back when a text repeats (a
    /// snapshot may name keys of different indexes with two entries of one
    /// text; a lock added now could not say which).
    fn new(strings: Vec<Arc<str>>) -> std::result::Result<Self, Vec<Arc<str>>> {
        let (mut lookup, hasher) = (HashTable::with_capacity(strings.len()), Hasher::default());
        for (entry, text) in strings.iter().enumerate() {
            let rehash = |&e: &u32| hasher.hash_one(&*strings[e as usize]);
            match lookup.entry(hasher.hash_one(&**text), |&e| strings[e as usize] == *text, rehash) {
                Entry::Occupied(_) => return Err(strings),
                Entry::Vacant(vacant) => {
                    vacant.insert(entry_number(entry));
                }
            }
        }
        Ok(PendingKeys { strings, lookup, hasher })
    }

    /// The table's own copy of `key` with its entry, added when new.
    pub(super) fn intern(&mut self, key: &Arc<str>) -> (Arc<str>, u32) {
        let PendingKeys { strings, lookup, hasher } = self;
        let rehash = |&e: &u32| hasher.hash_one(&*strings[e as usize]);
        match lookup.entry(hasher.hash_one(&**key), |&e| strings[e as usize] == *key, rehash) {
            Entry::Occupied(found) => {
                let entry = *found.get();
                (Arc::clone(&strings[entry as usize]), entry)
            }
            Entry::Vacant(vacant) => {
                let entry = entry_number(strings.len());
                vacant.insert(entry);
                strings.push(Arc::clone(key));
                (Arc::clone(key), entry)
            }
        }
    }
}

/// String-table entry number `n` ([`NO_KEY`] is not one).
fn entry_number(n: usize) -> u32 {
    u32::try_from(n).ok().filter(|&e| e != NO_KEY).expect("fewer than 2^32-1 string-table entries")
}

impl State {
    /// The empty state with its key indexes pending, for a replay of a log
    /// without a snapshot (see [`PendingKeys`]).
    pub(crate) fn new_with_keys_pending() -> State {
        let mut state = State::new();
        let table = PendingKeys::new(Vec::new()).unwrap_or_else(|_| unreachable!("no text repeats in no table"));
        state.pending_keys = Some(Box::new(table));
        state
    }

    /// Builds the key arrays a restore left pending (see [`PendingKeys`]);
    /// nothing when none are. Files of [`BUILD_AT`] locks get range
    /// indexes, unbuilt, as in a restore.
    pub(crate) fn index_pending_keys(&mut self) {
        let Some(pending) = self.pending_keys.take() else { return };
        let strings = &pending.strings;
        let State { slots, by_file, by_owner, by_client, by_share, ranges, .. } = self;
        let Slab { slots, positions } = slots;
        let [file_refs, owner_refs, client_refs, share_refs] = std::mem::take(positions);
        let slots = &*slots;
        let files = || index_key(by_file, file_refs, strings, Some(ranges));
        let others = || {
            [(by_owner, owner_refs), (by_client, client_refs), (by_share, share_refs)]
                .map(|(index, refs)| index_key(index, refs, strings, None))
        };
        let (files, [owners, clients, shares]) = if slots.len() < PARALLEL_IDS {
            (files(), others())
        } else {
            std::thread::scope(|scope| {
                let files = scope.spawn(files);
                let others = others();
                (files.join().expect("indexing files does not panic"), others)
            })
        };
        let built = [files, owners, clients, shares].map(|p| p.expect("every text is one entry: no key repeats"));
        *positions = built;
    }
}

/// Locks restored in file order: their slots, filled a chunk at a time
/// (handed to the slab whole, so restoring does not go through the
/// copy-on-write check per slot), and per index the string-table entry of
/// each lock's key (file, owner, client, share), which becomes that index's
/// positions.
pub(crate) struct Part {
    slots: Chunks,
    chunk: Vec<Option<Slot>>,
    refs: [Vec<u32>; 4],
    clients: Vec<ClientRecord>,
    /// The durable handles with their offsets, in file order (indexed at
    /// once in [`Restorer::finish`]).
    handles: Vec<(usize, DurableHandle)>,
    records: Vec<(String, Vec<u8>, Vec<u8>)>,
    /// After a fork, the ids of the locks added since, by slot of this part
    /// (see [`Restorer::fork`]); before it, none (each id goes into the
    /// state's table as it arrives).
    ids: Option<ShardedIds>,
}

/// A lock entry of a snapshot; `refs` are the string-table entries of its
/// file, owner, client and share.
pub(crate) struct LockEntry<'a> {
    pub(crate) id: &'a str,
    pub(crate) refs: [u32; 4],
    pub(crate) acquired_at: Timestamp,
    pub(crate) epoch: u64,
    pub(crate) kind: LockKind,
}

/// The string-table entry recorded for a padding slot (see
/// [`Restorer::join`]): names no key.
const NO_KEY: u32 = u32::MAX;

/// Why a snapshot entry does not restore.
pub(crate) enum RestoreError {
    /// A string index not yet defined.
    UnknownString(u32),
    /// A second lock with this id.
    DuplicateId(Arc<str>),
    /// A second client of this kind with this id.
    DuplicateClient(ClientKind, String),
    /// A second durable handle with this id.
    DuplicateHandle(String),
    /// A durable handle with the file id or create GUID of another.
    HandleConflict {
        /// The handle.
        id: String,
        /// `file_id` or `create_guid`.
        field: &'static str,
        /// The handle that has it too.
        holder: String,
    },
    /// A second record with this key in this keyspace.
    DuplicateRecord(String, Vec<u8>),
}

/// Why the restored entries do not make a state.
pub(crate) enum FinishError {
    /// Two string-table entries hold the same text and both name a key of
    /// one index (a writer never does that: it would split the key's
    /// locks). `at` is the offset of the second entry.
    RepeatedString { text: Arc<str>, at: usize },
    /// Two locks of a forked restore have the same id; which entry came
    /// second is found by restoring again without forking.
    DuplicateId,
    /// Two client records of a forked restore have the same client id.
    DuplicateClient,
    /// Two records of a forked restore clash.
    DuplicateExtra,
    /// The entry at `at` does not restore.
    Entry {
        /// Its offset.
        at: usize,
        /// Why.
        error: RestoreError,
    },
}

impl Part {
    fn new(locks: usize) -> Self {
        let mut slots = Chunks::default();
        slots.reserve_exact(locks);
        Part {
            slots,
            chunk: Vec::with_capacity(CHUNK),
            refs: std::array::from_fn(|_| Vec::with_capacity(locks)),
            clients: Vec::new(),
            handles: Vec::new(),
            records: Vec::new(),
            ids: None,
        }
    }

    fn len(&self) -> usize {
        self.slots.len() + self.chunk.len()
    }

    /// The id of slot `s` of this part (what [`ById`] compares and hashes).
    ///
    /// [`ById`]: super::index::ById
    fn id(&self, s: SlotId) -> &str {
        match (s as usize).checked_sub(self.slots.len()) {
            None => self.slots.id(s),
            Some(i) => &self.chunk[i].as_ref().expect("a restored slot is live").id,
        }
    }

    fn push(&mut self, slot: Option<Slot>) {
        self.chunk.push(slot);
        if self.chunk.len() == CHUNK {
            let full = std::mem::replace(&mut self.chunk, Vec::with_capacity(CHUNK));
            self.slots.push_chunk(full);
        }
    }

    /// Adds a lock whose keys are entries of `strings`.
    pub(crate) fn add_lock(
        &mut self,
        strings: &[Arc<str>],
        lock: LockEntry<'_>,
    ) -> std::result::Result<(), RestoreError> {
        let LockEntry { id, refs, acquired_at, epoch, kind } = lock;
        let [file, owner, client, share] = refs.map(|r| strings.get(r as usize).cloned());
        let (Some(file), Some(owner), Some(client), Some(share)) = (file, owner, client, share) else {
            return Err(RestoreError::UnknownString(*refs.iter().max().expect("four refs")));
        };
        let slot = slot_number(self.len()); // panics past the last slot number
        if let Some(ids) = &mut self.ids {
            ids.push(id, slot);
        }
        for (list, r) in self.refs.iter_mut().zip(refs) {
            list.push(r);
        }
        let kind = StoredKind::from(&kind);
        self.push(Some(Slot { id: Arc::from(id), share, file, owner, client, kind, acquired_at, epoch }));
        Ok(())
    }

    /// Adds a client record (checked against the others in
    /// [`Restorer::join`]).
    pub(crate) fn add_client(&mut self, record: ClientRecord) {
        self.clients.push(record);
    }

    /// Adds a durable handle found at offset `at` (checked against the
    /// others in [`Restorer::finish`]).
    pub(crate) fn add_handle(&mut self, at: usize, handle: DurableHandle) {
        self.handles.push((at, handle));
    }

    /// Adds a record (checked against the others in [`Restorer::finish`]).
    pub(crate) fn add_record(&mut self, space: &str, key: &[u8], value: &[u8]) {
        self.records.push((space.to_owned(), key.to_vec(), value.to_vec()));
    }

    /// Hands the chunk being filled to the slab.
    fn close(&mut self) {
        if !self.chunk.is_empty() {
            self.slots.push_chunk(std::mem::take(&mut self.chunk));
        }
    }
}

impl Restorer {
    /// Defines the next string-table entry, found at offset `at`.
    pub(crate) fn add_string(&mut self, s: &str, at: usize) {
        self.strings.push(Arc::from(s));
        self.string_at.push(at);
    }

    /// Adds a lock whose keys are string-table entries.
    pub(crate) fn add_lock(&mut self, lock: LockEntry<'_>) -> std::result::Result<(), RestoreError> {
        let slot_id = slot_number(self.part.len());
        let id = lock.id;
        self.part.add_lock(&self.strings, lock)?;
        if self.part.ids.is_none() {
            let part = &self.part;
            if self.state.by_id.insert(id, slot_id, |s| part.id(s)).is_err() {
                return Err(RestoreError::DuplicateId(Arc::from(id)));
            }
        }
        Ok(())
    }

    /// Adds a client record.
    pub(crate) fn add_client(&mut self, record: ClientRecord) -> std::result::Result<(), RestoreError> {
        let key = (record.kind(), record.client_id.clone());
        match self.state.clients.insert(key, record) {
            None => Ok(()),
            Some(record) => Err(RestoreError::DuplicateClient(record.kind(), record.client_id)),
        }
    }

    /// Adds a durable handle found at offset `at` (checked in
    /// [`Restorer::finish`], where every handle is indexed at once).
    pub(crate) fn add_handle(&mut self, at: usize, handle: DurableHandle) {
        self.part.add_handle(at, handle);
    }

    /// Adds a record.
    pub(crate) fn add_record(
        &mut self,
        space: &str,
        key: &[u8],
        value: &[u8],
    ) -> std::result::Result<(), RestoreError> {
        insert_record(&mut self.state, space, key, value.to_vec())
    }

    /// Number of durable handles so far.
    pub(crate) fn handles(&self) -> usize {
        self.part.handles.len()
    }

    /// Number of records so far.
    pub(crate) fn records(&self) -> usize {
        self.state.records.len() + self.part.records.len()
    }

    /// Number of string-table entries so far.
    pub(crate) fn strings(&self) -> usize {
        self.strings.len()
    }

    /// Number of locks so far (free slots a join added are not locks).
    pub(crate) fn locks(&self) -> usize {
        self.part.len() - self.state.free.len()
    }

    /// Number of client records so far.
    pub(crate) fn clients(&self) -> usize {
        self.state.clients.len() + self.part.clients.len()
    }

    /// From here on, locks are added to two parts that may be filled at
    /// once (on two threads): [`Restorer::parts`] gives this restorer's own
    /// part, which continues the file, and the returned one (room for
    /// `locks`) takes the entries after it; [`Restorer::join`] puts them
    /// together. The string table must be complete: a part cannot add to
    /// it. Both parts sort their ids for the id table from here on
    /// ([`ShardedIds`]); `finish` fills it from them.
    pub(crate) fn fork(&mut self, locks: usize) -> Part {
        self.part.ids = Some(self.state.by_id.sorter(locks));
        let mut other = Part::new(locks);
        other.ids = Some(self.state.by_id.sorter(locks));
        other
    }

    /// The string table and this restorer's own part, for filling the part
    /// on one thread while `other` (from [`Restorer::fork`]) is filled on
    /// another.
    pub(crate) fn parts(&mut self) -> (&[Arc<str>], &mut Part) {
        (&self.strings, &mut self.part)
    }

    /// Appends the locks of `other` after this restorer's own. The own
    /// part's last chunk is filled up with free slots first, so that every
    /// chunk of the slab but the last stays full (slot `i` is in chunk
    /// `i / CHUNK`); a free slot names no key and is in no index.
    pub(crate) fn join(&mut self, mut other: Part) {
        let padding = self.part.len().next_multiple_of(CHUNK) - self.part.len();
        for _ in 0..padding {
            self.state.free.push(slot_number(self.part.len()));
            self.part.push(None);
            for refs in &mut self.part.refs {
                refs.push(NO_KEY);
            }
        }
        other.close();
        let Part { slots, chunk: _, refs, clients, handles, records, ids } = other;
        self.other_ids = ids.map(|ids| (ids, slot_number(self.part.len())));
        self.part.handles.extend(handles);
        self.part.records.extend(records);
        self.part.slots.chunks.extend(slots.chunks);
        self.part.slots.len += slots.len;
        slot_number(self.part.slots.len.saturating_sub(1)); // panics past the last slot number
        for (mine, theirs) in self.part.refs.iter_mut().zip(refs) {
            mine.extend_from_slice(&theirs);
        }
        self.part.clients.extend(clients);
    }

    /// Builds the key arrays, installs them in the indexes, gives the files
    /// of many locks their range indexes (unbuilt), indexes the ids not yet
    /// indexed (in parallel with the rest when there are many), and returns
    /// the state.
    pub(crate) fn finish(mut self) -> std::result::Result<State, FinishError> {
        self.part.close();
        let Restorer { mut state, strings, string_at, part, other_ids, defer_keys } = self;
        let Part { slots, chunk: _, refs, clients, handles, records, ids } = part;
        for record in clients {
            let key = (record.kind(), record.client_id.clone());
            if state.clients.insert(key, record).is_some() {
                return Err(FinishError::DuplicateClient);
            }
        }
        let (offsets, handles): (Vec<usize>, Vec<DurableHandle>) = handles.into_iter().unzip();
        state.handles = super::handles::Handles::build(handles).map_err(|(i, e)| {
            let error = match e {
                super::handles::BuildError::DuplicateId(id) => RestoreError::DuplicateHandle(id),
                super::handles::BuildError::Conflict(id, c) => {
                    RestoreError::HandleConflict { id, field: c.field, holder: c.holder }
                }
            };
            FinishError::Entry { at: offsets[i], error }
        })?;
        for (space, key, value) in records {
            insert_record(&mut state, &space, &key, value).map_err(|_| FinishError::DuplicateExtra)?;
        }
        state.slots.slots = slots;
        let State { slots, by_id, by_file, by_owner, by_client, by_share, ranges, pending_keys, .. } = &mut state;
        let Slab { slots, positions } = slots;
        let slots = &*slots;
        // The ids sorted since a fork (the others are in the table already).
        let sorted: Vec<_> = ids.map(|ids| (ids, 0)).into_iter().chain(other_ids).collect();
        let parallel = sorted.iter().map(|(ids, _)| ids.len()).sum::<usize>() >= PARALLEL_IDS;
        let index_ids = move || by_id.fill(sorted, |s| slots.id(s)).map_err(|_| FinishError::DuplicateId);
        let strings = if defer_keys {
            // The ids beside the string table's lookup; the keys wait.
            let table = move || PendingKeys::new(strings);
            let table = if parallel {
                std::thread::scope(|scope| {
                    let table = scope.spawn(table);
                    let ids = index_ids();
                    ids.map(|()| table.join().expect("a string lookup does not panic"))
                })?
            } else {
                index_ids()?;
                table()
            };
            match table {
                Ok(table) => {
                    *positions = refs;
                    *pending_keys = Some(Box::new(table));
                    return Ok(state);
                }
                // A repeated text: the keys are indexed now, as without
                // deferring (the ids are indexed already).
                Err(strings) => {
                    index_keys([by_file, by_owner, by_client, by_share], refs, positions, ranges, &strings)
                        .map_err(|e| e.at(&string_at))?;
                    return Ok(state);
                }
            }
        } else {
            strings
        };
        let indexes = [by_file, by_owner, by_client, by_share];
        let keys = move || index_keys(indexes, refs, positions, ranges, &strings).map_err(|e| e.at(&string_at));
        if parallel {
            std::thread::scope(|scope| {
                let ids = scope.spawn(index_ids);
                let keys = keys();
                ids.join().expect("indexing ids does not panic").and(keys)
            })?;
        } else {
            index_ids()?;
            keys()?;
        }
        Ok(state)
    }
}

/// A string-table entry that repeats the text of an earlier one naming a
/// key of the same index.
#[derive(Debug)]
struct Repeated {
    text: Arc<str>,
    entry: usize,
}

impl Repeated {
    /// The restore's error: the repeated entry at its offset in the file.
    fn at(self, string_at: &[usize]) -> FinishError {
        FinishError::RepeatedString { text: self.text, at: string_at[self.entry] }
    }
}

/// Builds the four key indexes (file, owner, client, share) from `refs`
/// (per index, each slot's string-table entry) into `positions`, and the
/// range indexes (unbuilt) of the files with many locks.
fn index_keys(
    indexes: [&mut Index; 4],
    refs: [Vec<u32>; 4],
    positions: &mut [Vec<u32>; 4],
    ranges: &mut RangeIndexes,
    strings: &[Arc<str>],
) -> std::result::Result<(), Repeated> {
    let mut ranges = Some(ranges);
    for (which, ((index, refs), positions)) in indexes.into_iter().zip(refs).zip(positions.iter_mut()).enumerate() {
        let ranges = if which == FILE { ranges.take() } else { None };
        *positions = index_key(index, refs, strings, ranges)?;
    }
    Ok(())
}

/// Builds one key index from `refs` (each slot's string-table entry, [`NO_KEY`]
/// for a free slot) and returns the slots' positions in its arrays; for the
/// file index, also gives each file of [`BUILD_AT`] locks or more its range
/// index in `ranges`, unbuilt (its tree is made at the file's first test
/// query).
fn index_key(
    index: &mut Index,
    refs: Vec<u32>,
    strings: &[Arc<str>],
    ranges: Option<&mut RangeIndexes>,
) -> std::result::Result<Vec<u32>, Repeated> {
    let counts = key_counts(&refs, strings.len());
    if let Some(ranges) = ranges {
        let crowded = counts.iter().zip(strings).filter(|&(&count, _)| count as usize >= BUILD_AT);
        *ranges = RangeIndexes::unbuilt(crowded.map(|(_, file)| Arc::clone(file)));
    }
    install_arrays(index, refs, &counts, strings)
}

/// How many slots name each of `keys` string-table entries in `refs` (one
/// entry per slot, [`NO_KEY`] for a free slot).
fn key_counts(refs: &[u32], keys: usize) -> Vec<u32> {
    let mut counts = vec![0u32; keys];
    for &r in refs.iter().filter(|&&r| r != NO_KEY) {
        counts[r as usize] += 1;
    }
    counts
}

fn insert_record(state: &mut State, space: &str, key: &[u8], value: Vec<u8>) -> std::result::Result<(), RestoreError> {
    if state.records.get(space, key).is_some() {
        return Err(RestoreError::DuplicateRecord(space.to_owned(), key.to_vec()));
    }
    state.records.set(space, key, Some(value.into()));
    Ok(())
}

/// Below this many ids left to index, `finish` does not start a thread.
const PARALLEL_IDS: usize = 1 << 14;

/// Installs in `index` the key arrays of the locks whose keys are the
/// string-table entries `refs` (one per slot, [`NO_KEY`] for a free slot;
/// `counts` from [`key_counts`]) and returns the slots' positions in them.
/// Each entry of `refs` is overwritten with the position: no second array of
/// that size exists while it is built.
fn install_arrays(
    index: &mut Index,
    mut refs: Vec<u32>,
    counts: &[u32],
    strings: &[Arc<str>],
) -> std::result::Result<Vec<u32>, Repeated> {
    let mut lists: Vec<Option<Slots>> =
        counts.iter().map(|&n| (n > 1).then(|| Slots::Many(Vec::with_capacity(n as usize)))).collect();
    for (slot, entry) in refs.iter_mut().enumerate() {
        if *entry == NO_KEY {
            *entry = NIL;
            continue;
        }
        let list = &mut lists[*entry as usize];
        *entry = match list {
            Some(slots) => slots.push(slot as SlotId),
            None => {
                *list = Some(Slots::One(slot as SlotId));
                0
            }
        };
    }
    index.reserve(lists.iter().filter(|l| l.is_some()).count());
    for (r, slots) in lists.into_iter().enumerate() {
        let Some(slots) = slots else { continue };
        if index.install(Posting { key: Arc::clone(&strings[r]), slots }).is_err() {
            return Err(Repeated { text: Arc::clone(&strings[r]), entry: r });
        }
    }
    Ok(refs)
}
