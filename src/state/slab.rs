//! Slot storage: how the state keeps its locks. A [`Slot`] is one lock
//! with its strings interned through the indexes; the [`Slab`] holds the
//! slots in copy-on-write [`Chunks`] (which a snapshot view shares) and, in
//! compact arrays beside them, each slot's position in the key arrays of
//! its file, owner, client and share. Also the order slots are listed in:
//! by id, sorted on an inline prefix.

use super::index::{NIL, Positions, SlotId};
use crate::model::{ByteRange, Delegation, KindFilter, Lease, LockKind, PersistedLock, ShareReservation, Timestamp};
use std::sync::Arc;

/// Index numbers: which of a slot's positions each secondary index uses.
pub(super) const FILE: usize = 0;
pub(super) const OWNER: usize = 1;
pub(super) const CLIENT: usize = 2;
pub(super) const SHARE: usize = 3;

/// A lock as the state keeps it: shared strings are interned through the
/// indexes, the slot is in one key array per index, and the large lease
/// variant is boxed so the common byte-range lock stays small.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub(crate) id: Arc<str>,
    pub(crate) share: Arc<str>,
    pub(crate) file: Arc<str>,
    pub(crate) owner: Arc<str>,
    pub(crate) client: Arc<str>,
    pub(crate) kind: StoredKind,
    pub(crate) acquired_at: Timestamp,
    pub(crate) epoch: u64,
}

/// [`LockKind`] with the lease and the delegation boxed: 32 bytes instead
/// of their size.
#[derive(Debug, Clone)]
pub(crate) enum StoredKind {
    ByteRange(ByteRange),
    Share(ShareReservation),
    Lease(Box<Lease>),
    Delegation(Box<Delegation>),
}

const _: () = assert!(std::mem::size_of::<StoredKind>() <= 32);

impl From<&LockKind> for StoredKind {
    fn from(kind: &LockKind) -> Self {
        match kind {
            LockKind::ByteRange(r) => StoredKind::ByteRange(*r),
            LockKind::Share(s) => StoredKind::Share(*s),
            LockKind::Lease(l) => StoredKind::Lease(Box::new(*l)),
            LockKind::Delegation(d) => StoredKind::Delegation(Box::new(d.clone())),
        }
    }
}

impl StoredKind {
    #[inline]
    pub(crate) fn to_kind(&self) -> LockKind {
        match self {
            StoredKind::ByteRange(r) => LockKind::ByteRange(*r),
            StoredKind::Share(s) => LockKind::Share(*s),
            StoredKind::Lease(l) => LockKind::Lease(**l),
            StoredKind::Delegation(d) => LockKind::Delegation((**d).clone()),
        }
    }

    pub(super) fn lease_key(&self) -> Option<&crate::model::LeaseKey> {
        match self {
            StoredKind::Lease(l) => Some(&l.key),
            _ => None,
        }
    }

    pub(super) fn filter(&self) -> KindFilter {
        match self {
            StoredKind::ByteRange(_) => KindFilter::ByteRange,
            StoredKind::Share(_) => KindFilter::Share,
            StoredKind::Lease(_) => KindFilter::Lease,
            StoredKind::Delegation(_) => KindFilter::Delegation,
        }
    }
}

impl Slot {
    #[inline]
    pub(super) fn to_lock(&self) -> PersistedLock {
        PersistedLock {
            id: Arc::clone(&self.id),
            share: Arc::clone(&self.share),
            file_id: Arc::clone(&self.file),
            owner_id: Arc::clone(&self.owner),
            client_id: Arc::clone(&self.client),
            kind: self.kind.to_kind(),
            acquired_at: self.acquired_at,
            server_epoch: self.epoch,
        }
    }

    pub(super) fn key(&self, which: usize) -> &Arc<str> {
        match which {
            FILE => &self.file,
            OWNER => &self.owner,
            CLIENT => &self.client,
            _ => &self.share,
        }
    }

    pub(super) fn key_mut(&mut self, which: usize) -> &mut Arc<str> {
        match which {
            FILE => &mut self.file,
            OWNER => &mut self.owner,
            CLIENT => &mut self.client,
            _ => &mut self.share,
        }
    }
}

/// The number of the slot at `index` of the slab.
pub(super) fn slot_number(index: usize) -> SlotId {
    SlotId::try_from(index).ok().filter(|&s| s != NIL).expect("fewer than 2^32-1 live locks")
}

/// The slab of slots, and beside it each slot's position in the arrays of
/// its file, owner, client and share. The positions live in four compact
/// arrays rather than in the slots: fixing the position of a slot moved by a
/// removal touches a 4-byte entry, not the slot.
#[derive(Debug, Clone, Default)]
pub(super) struct Slab {
    pub(super) slots: Chunks,
    pub(super) positions: [Vec<u32>; 4],
}

/// Slots per chunk of [`Chunks`].
pub(super) const CHUNK: usize = 256;

/// The slots, in chunks of [`CHUNK`] that a [`StateView`] shares with the
/// live state: taking a view clones one `Arc` per chunk instead of every
/// slot, and the first write to a chunk while a view holds it copies that
/// chunk (copy on write). So compaction pauses the writer for microseconds,
/// not for a copy of the whole state, and the copies it causes are bounded
/// by the state's own size.
///
/// [`StateView`]: super::StateView
#[derive(Debug, Clone, Default)]
pub(super) struct Chunks {
    pub(super) chunks: Vec<Arc<Vec<Option<Slot>>>>,
    pub(super) len: usize,
}

impl Chunks {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    fn get(&self, i: usize) -> &Option<Slot> {
        &self.chunks[i / CHUNK][i % CHUNK]
    }

    /// The id of the live slot `slot` (what [`ById`] compares and hashes).
    ///
    /// [`ById`]: super::index::ById
    pub(super) fn id(&self, slot: SlotId) -> &str {
        &self.get(slot as usize).as_ref().expect("an indexed slot is live").id
    }

    /// The slot `i`, writable: copies its chunk first if a view shares it.
    pub(super) fn get_mut(&mut self, i: usize) -> &mut Option<Slot> {
        &mut Arc::make_mut(&mut self.chunks[i / CHUNK])[i % CHUNK]
    }

    pub(super) fn push(&mut self, slot: Option<Slot>) {
        if self.len.is_multiple_of(CHUNK) {
            self.chunks.push(Arc::new(Vec::with_capacity(CHUNK)));
        }
        let last = self.chunks.last_mut().expect("a chunk with room");
        Arc::make_mut(last).push(slot);
        self.len += 1;
    }

    /// Appends a chunk built elsewhere (restore): every chunk before it is
    /// full, and it has room for [`CHUNK`] slots.
    pub(super) fn push_chunk(&mut self, chunk: Vec<Option<Slot>>) {
        debug_assert!(self.len.is_multiple_of(CHUNK) && chunk.len() <= CHUNK && chunk.capacity() >= CHUNK);
        self.len += chunk.len();
        self.chunks.push(Arc::new(chunk));
    }

    pub(super) fn reserve_exact(&mut self, slots: usize) {
        self.chunks.reserve_exact(slots.div_ceil(CHUNK));
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &Option<Slot>> {
        self.chunks.iter().flat_map(|chunk| chunk.iter())
    }
}

impl Positions for Slab {
    fn position(&mut self, slot: SlotId, which: usize) -> &mut u32 {
        &mut self.positions[which][slot as usize]
    }
}

impl Slab {
    /// Puts a live slot (allocated before) in place with its positions.
    pub(super) fn set(&mut self, slot_id: SlotId, slot: Slot, positions: [u32; 4]) {
        for (which, position) in positions.into_iter().enumerate() {
            self.positions[which][slot_id as usize] = position;
        }
        *self.slots.get_mut(slot_id as usize) = Some(slot);
    }

    pub(super) fn get(&self, slot: SlotId) -> Option<&Slot> {
        self.slots.get(slot as usize).as_ref()
    }

    /// The id of the live slot `slot`.
    pub(super) fn id(&self, slot: SlotId) -> &str {
        self.slots.id(slot)
    }
}

/// 8 bytes of `id` from byte `from`, big-endian, zero-padded. Among ids
/// that share their first `from` bytes, comparing these and then, on a tie,
/// the whole ids gives exactly the byte-lexicographic order of `str` (a
/// shorter id pads with zeros, below every byte that a longer one holds
/// there or equal to a NUL, which the tie-break settles).
fn id_key(id: &str, from: usize) -> u64 {
    let mut b = [0u8; 8];
    let tail = id.as_bytes().get(from..).unwrap_or_default();
    let n = tail.len().min(8);
    b[..n].copy_from_slice(&tail[..n]);
    u64::from_be_bytes(b)
}

/// How many leading bytes every id of `slots` shares.
fn common_prefix(slots: &[&Slot]) -> usize {
    let Some(first) = slots.first() else { return 0 };
    let first = first.id.as_bytes();
    slots[1..]
        .iter()
        .fold(first.len(), |len, s| first[..len].iter().zip(s.id.as_bytes()).take_while(|(a, b)| a == b).count())
}

/// Sorts slots by id. The ids of one answer often share a long prefix (a
/// client's name, a protocol tag), so the sort compares 8 inline bytes
/// taken after the prefix they all share, and whole ids only on a tie: most
/// comparisons stay inside the array instead of chasing two slots and two
/// string heaps (figures: docs/decisions/0003-id-prefix-sort.md, 0046-read-path.md).
pub(super) fn sort_by_id(slots: &mut Vec<&Slot>) {
    let from = common_prefix(slots);
    let mut keyed: Vec<(u64, &Slot)> = slots.iter().map(|s| (id_key(&s.id, from), *s)).collect();
    keyed.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.id.cmp(&b.1.id)));
    slots.clear();
    slots.extend(keyed.into_iter().map(|(_, s)| s));
}

#[cfg(test)]
mod tests {
    use crate::model::LockQuery;
    use crate::state::{Command, State};

    /// The prefix sort must order exactly like `str`'s `Ord`, including ids
    /// that share long prefixes, are prefixes of each other, or hold NULs
    /// and bytes above 0x7f.
    #[test]
    fn prefix_sort_orders_like_str() {
        let ids = [
            "",
            "a",
            "ab",
            "ab\0",
            "ab\0c",
            "abcdefgh",
            "abcdefgh\0",
            "abcdefghi",
            "abcdefgg~",
            "é",
            "zz",
            "\u{7f}",
            "abcdefgha",
        ];
        let mut state = State::new();
        let ops = ids
            .iter()
            .filter(|id| !id.is_empty())
            .map(|id| crate::op::Op::PutLock(crate::testing::sample::byte_range(id, "s", "f", "o", "c")))
            .collect();
        state.apply(&Command::Txn(ops)).unwrap();
        let got: Vec<String> = state.list(&LockQuery::all()).into_iter().map(|l| l.id.to_string()).collect();
        let mut want: Vec<String> = ids.iter().filter(|id| !id.is_empty()).map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want);
    }

    proptest::proptest! {
        /// Ids that share a long prefix (a client name, say) and then differ
        /// anywhere, NULs and multi-byte characters included, in every
        /// listing shape: the sort after the shared prefix orders exactly
        /// like `str`'s `Ord`.
        #[test]
        fn sort_after_the_shared_prefix_orders_like_str(
            prefix in "(nlm:host0012\\.lab\\.net:|x|)",
            tails in proptest::collection::vec("[a\\x00é~]{0,20}", 1..60),
        ) {
            let mut state = State::new();
            let mut want: Vec<String> = tails.iter().map(|t| format!("{prefix}{t}")).filter(|id| !id.is_empty()).collect();
            want.sort();
            want.dedup();
            let ops = want
                .iter()
                .enumerate()
                .map(|(i, id)| {
                    let file = if i % 2 == 0 { "f-even" } else { "f-odd" };
                    crate::op::Op::PutLock(crate::testing::sample::byte_range(id, "s", file, "o", "c"))
                })
                .collect();
            state.apply(&Command::Txn(ops)).unwrap();
            let ids = |q: &LockQuery| -> Vec<String> { state.list(q).into_iter().map(|l| l.id.to_string()).collect() };
            proptest::prop_assert_eq!(ids(&LockQuery::all()), want.clone());
            proptest::prop_assert_eq!(ids(&LockQuery::by_client("c")), want.clone());
            let odd: Vec<String> = want.iter().skip(1).step_by(2).cloned().collect();
            proptest::prop_assert_eq!(ids(&LockQuery::by_file("f-odd")), odd);
        }
    }
}
