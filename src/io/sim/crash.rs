//! Crash patterns and images: what a power cut keeps of the pending
//! operations ([`Loss`], [`Fill`]), and the image it leaves, taken by a
//! crash, by a copy, or by an observer at any call.

use super::content::Content;
use super::model::{CallPoint, Dir, Ino, Inode, Op, SimFs, State, is_root};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// What a power cut keeps of the operations not yet durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loss {
    /// Only what was synced: every pending operation is lost.
    DropUnsynced,
    /// The first `n` pending operations (all of them when `n` is larger).
    KeepPrefix(usize),
    /// The first `keep` pending operations, then the next one torn: if it is
    /// a write, its first `at` bytes land and the rest of its range is
    /// filled with `fill`; if it is not a write (or there is none), nothing
    /// more lands, as with `KeepPrefix(keep)`.
    Torn {
        /// Pending operations kept whole.
        keep: usize,
        /// Bytes of the torn write that land (clamped to its length).
        at: usize,
        /// What the rest of the torn write's range holds.
        fill: Fill,
    },
}

/// What the unwritten part of a torn write holds after the crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fill {
    /// Zeros: the file size was updated, the data never written.
    Zeros,
    /// Pseudo-random bytes from this seed: stale or scrambled sectors.
    Garbage(u64),
}

/// SplitMix64: small, fast, and good enough for garbage.
fn garbage(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed ^ 0x6A09_E667_F3BC_C909;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

impl State {
    /// The state a crash with `loss` leaves: durable state plus the kept
    /// pending operations, with everything durable and nothing pending.
    fn image(&self, loss: Loss) -> State {
        let (keep, torn) = match loss {
            Loss::DropUnsynced => (0, None),
            Loss::KeepPrefix(n) => (n, None),
            Loss::Torn { keep, at, fill } => (keep, Some((at, fill))),
        };
        let keep = keep.min(self.pending.len());
        // Directories that exist durably, with their durable entries.
        let mut dirs: BTreeMap<PathBuf, BTreeMap<String, Ino>> =
            self.dirs.iter().filter(|(_, d)| d.durable_entry).map(|(p, d)| (p.clone(), d.durable.clone())).collect();
        // Contents touched by kept operations, copied (page table only) from
        // the durable contents on first touch.
        let mut files: HashMap<Ino, Content> = HashMap::new();
        let durable = |ino: Ino| self.inodes.get(&ino).map(|i| i.durable.clone()).unwrap_or_default();
        fn touch(files: &mut HashMap<Ino, Content>, ino: Ino, durable: impl Fn(Ino) -> Content) -> &mut Content {
            files.entry(ino).or_insert_with(|| durable(ino))
        }
        for op in &self.pending[..keep] {
            match op {
                Op::Write { ino, offset, data } => {
                    touch(&mut files, *ino, durable).write(*offset, data).expect("replaying a write");
                }
                Op::SetLen { ino, len } => {
                    touch(&mut files, *ino, durable).set_len(*len).expect("replaying a set_len");
                }
                Op::MkDir { path } => {
                    let entries = self.dirs.get(path).map(|d| d.durable.clone()).unwrap_or_default();
                    dirs.entry(path.clone()).or_insert(entries);
                }
                Op::Link { dir, name, ino } => {
                    if let Some(entries) = dirs.get_mut(dir) {
                        entries.insert(name.clone(), *ino);
                    }
                }
                Op::Unlink { dir, name } => {
                    if let Some(entries) = dirs.get_mut(dir) {
                        entries.remove(name);
                    }
                }
                Op::Rename { dir, from, to } => {
                    if let Some(entries) = dirs.get_mut(dir)
                        && let Some(ino) = entries.remove(from)
                    {
                        entries.insert(to.clone(), ino);
                    }
                }
            }
        }
        if let (Some((at, fill)), Some(Op::Write { ino, offset, data })) = (torn, self.pending.get(keep)) {
            let at = at.min(data.len());
            let mut bytes = data[..at].to_vec();
            match fill {
                Fill::Zeros => bytes.resize(data.len(), 0),
                Fill::Garbage(seed) => bytes.extend(garbage(seed, data.len() - at)),
            }
            touch(&mut files, *ino, durable).write(*offset, &bytes).expect("replaying a write");
        }
        // A directory survives only with every ancestor.
        let survives = |path: &Path| path.ancestors().skip(1).all(|a| is_root(a) || dirs.contains_key(a));
        let kept: Vec<PathBuf> = dirs.keys().filter(|p| survives(p)).cloned().collect();
        let mut image = State::empty();
        for path in kept {
            let entries = dirs.remove(&path).expect("listed above");
            for &ino in entries.values() {
                image.inodes.entry(ino).or_insert_with(|| {
                    let c = files.get(&ino).cloned().unwrap_or_else(|| durable(ino));
                    Inode { live: c.clone(), durable: c, handles: 0 }
                });
            }
            image.dirs.insert(path, Dir { durable_entry: true, live: entries.clone(), durable: entries });
        }
        image.next_ino = self.next_ino;
        image.lossless = self.lossless;
        image
    }
}

impl CallPoint<'_> {
    /// The image a crash right now (before this call) would leave: the
    /// same as `fail_from(self.index(), ..)` then `crash(loss)`.
    pub fn image(&self, loss: Loss) -> SimFs {
        SimFs::from_state(self.state.image(loss))
    }
}

impl SimFs {
    /// Cuts the power: this handle, its clones, and every file and lock
    /// they handed out fail every later call. Returns a new file system
    /// holding what survives under `loss`. May be called again (with the
    /// same or another loss) on the dead handle: its state no longer
    /// changes, so one crash point can be tried with every loss pattern.
    pub fn crash(&self, loss: Loss) -> SimFs {
        let mut st = self.shared.lock();
        st.dead = true;
        st.observer = None;
        Self::from_state(st.image(loss))
    }

    /// An independent copy of what this file system holds now, all of it
    /// durable (the image of a crash that loses nothing), without crashing
    /// this one. Faults, observer and locks are not copied.
    pub fn copy(&self) -> SimFs {
        Self::from_state(self.shared.lock().image(Loss::KeepPrefix(usize::MAX)))
    }

    /// Whether [`crash`](Self::crash) was called on this file system.
    pub fn is_dead(&self) -> bool {
        self.shared.lock().dead
    }
}
