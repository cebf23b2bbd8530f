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
        // SAFETY: `Mmap::map` is unsafe because another process could change
        // or truncate the file while it is mapped, which would be undefined
        // behaviour for a `&[u8]` view. Segment and snapshot files are only
        // written by the process holding the store's exclusive lock file, and
        // that process never truncates a file it has mapped: replay maps and
        // drops the map before truncating a torn tail, and read-only openers
        // map files that the writer only appends to (the prefix they read
        // does not change). Every byte read through the map is checked
        // against a checksum before it is trusted.
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
