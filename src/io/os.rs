//! What std does not offer: read-only memory maps and a thread's CPU
//! priority. The only unsafe code in the crate.

#![allow(unsafe_code)]

use std::fs::File;
use std::io;
use std::ops::Deref;

/// The bytes of a whole file: memory-mapped, or owned (empty files and
/// simulated file systems).
pub enum FileBytes {
    /// A read-only map of a real file.
    Mapped(memmap2::Mmap),
    /// Bytes in memory.
    Owned(Vec<u8>),
}

impl FileBytes {
    /// Maps `file` read-only.
    ///
    /// The store holds its directory's writer lock (or, read-only, reads a
    /// prefix it does not trust beyond checksums), and nothing in this crate
    /// truncates a file while a map of it is alive.
    pub fn map(file: &File) -> io::Result<Self> {
        if file.metadata()?.len() == 0 {
            // Mapping an empty file fails on Linux; there is nothing to map.
            return Ok(FileBytes::Owned(Vec::new()));
        }
        // SAFETY: `Mmap::map` is unsafe because the file could be changed or
        // truncated while it is mapped, which would change the bytes behind
        // a `&[u8]` or make reading a page past the new end SIGBUS. Only the
        // process holding the store's exclusive lock file maps store files
        // (`FileSystem::read`); it maps them during recovery, before its own
        // writer exists, and drops every map before it truncates or writes
        // anything. Another writer cannot exist while it holds the lock.
        // Readers without the lock (read-only opens, the CLI's inspection
        // commands) never map: they read through `read_copy`, which copies.
        // Every byte read through the map is checked against a checksum
        // before it is trusted.
        let map = unsafe { memmap2::Mmap::map(file)? };
        Ok(FileBytes::Mapped(map))
    }

    /// Tells the kernel that the bytes from `start` to `end` (the whole
    /// pages among them) will not be read again, so their pages leave this
    /// process's resident set at once (loading a snapshot: its blocks are
    /// decoded once and never revisited, and without this the whole mapped
    /// file stays resident on top of the state until the map is dropped;
    /// figures: docs/decisions/0013-release-snapshot-pages-while-loading.md).
    /// Owned bytes are kept as they are. A failure
    /// only means the pages stay resident, so it is ignored.
    pub fn release(&self, start: usize, end: usize) {
        let FileBytes::Mapped(map) = self else { return };
        let (start, end) = (start.next_multiple_of(PAGE), end.min(map.len()) / PAGE * PAGE);
        if start >= end {
            return;
        }
        // SAFETY: `MADV_DONTNEED` drops this process's page-table entries
        // for the range; it does not change the file. The map is a
        // read-only shared map (`PROT_READ`, `MAP_SHARED`) of a file that
        // nothing modifies while it is mapped (see `map`), so it holds no
        // private copies of pages: a later read of the range, through any
        // outstanding borrow of the map, faults the same bytes back in from
        // the file. The bytes behind every `&[u8]` therefore never change,
        // which is what memmap2's caution about `DontNeed` (written for
        // anonymous and written-to private pages, which would read back as
        // zeros or as the file) guards.
        let _ = unsafe { map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start) };
    }
}

/// The range released is rounded down to this. The kernel rounds the
/// length up to its own page size; where that is larger than 4 KiB, part of
/// a page still to be read may be dropped too and is simply read back.
const PAGE: usize = 4096;

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(map) => map,
            FileBytes::Owned(bytes) => bytes,
        }
    }
}

/// Lowers the calling thread's CPU priority to nice 19 (on Linux the nice
/// value belongs to the thread, not the process). Background work such as
/// compaction then gets a small share of the CPU while busy threads at the
/// default priority want it (weight 15 against 1024 each), and all of it
/// when they are idle. Best effort: `false` when the system refused or is
/// not Linux.
pub fn lower_this_thread_priority() -> bool {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    // SAFETY: two system calls that take and return plain integers (no
    // pointers, no memory shared with Rust); they change only the
    // scheduling weight of the calling thread.
    unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 19) == 0
    }
    // Elsewhere the nice value belongs to the whole process: leave it.
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Released pages read back the same bytes: the map's contents never
    /// change under a borrow (the safety argument of `release`).
    #[test]
    fn released_pages_read_back_the_same_bytes() {
        let pattern: Vec<u8> = (0..3 * PAGE + 100).map(|i| (i * 7 % 251) as u8).collect();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, &pattern).unwrap();
        let bytes = FileBytes::map(&File::open(&path).unwrap()).unwrap();
        assert!(matches!(bytes, FileBytes::Mapped(_)));
        let borrowed: &[u8] = &bytes;
        assert_eq!(borrowed, &pattern[..]);
        bytes.release(5, 2 * PAGE + 5);
        assert_eq!(borrowed, &pattern[..], "after releasing the second page");
        bytes.release(0, usize::MAX);
        assert_eq!(&*bytes, &pattern[..], "after releasing everything");
    }

    /// The nice value (field 19 of `/proc/thread-self/stat`) of the calling
    /// thread.
    #[cfg(target_os = "linux")]
    fn own_nice() -> i64 {
        let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
        // The command name (field 2) may hold spaces; fields after it are
        // plain numbers.
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        after_name.split(' ').nth(16).unwrap().parse().unwrap()
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_lowered_thread_runs_at_nice_19_and_only_that_thread() {
        let before = own_nice();
        let lowered = std::thread::spawn(|| (lower_this_thread_priority(), own_nice())).join().unwrap();
        assert_eq!(lowered, (true, 19));
        assert_eq!(own_nice(), before, "the calling thread is unchanged");
    }
}
