//! Read-only memory maps: the only unsafe code in the crate.

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
}

impl Deref for FileBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            FileBytes::Mapped(map) => map,
            FileBytes::Owned(bytes) => bytes,
        }
    }
}
