//! The snapshot file: the complete state as of an LSN, laid out for fast
//! loading. Pure encoding and decoding; the install sequence is in
//! `compact.rs`.
//!
//! ```text
//! snap-<lsn:020>.snap
//! header, 88 bytes (64 in versions 1 and 2, which end at byte 64)
//! | 0  magic "LWALSNP\0"  | 8  version u32 | 12 flags u32 (bit 0: clean shutdown) |
//! | 16 LSN u64            | 24 epoch u64   | 32 locks u64 | 40 clients u64       |
//! | 48 strings u64        | 56 blocks u32  | 60 crc32 of bytes 0..60             |
//! | 64 handles u64        | 72 records u64 | 80 crc32 of bytes 0..80 | 84 zero   |
//! blocks, each 8-aligned
//! | 0 payload length u32 (1..=MAX_BLOCK) | 4 crc32 over index, length, payload |
//! | 8 block index u32 (0, 1, 2, ...)     | 12 reserved, zero                   |
//! | 16 payload: whole entries, never split across blocks; zero padding to 8  |
//! entries
//! | 1 string: len u16, bytes (UTF-8)     -> the next string-table index      |
//! | 2 lock: id (len u16, bytes), share/file/owner/client string index u32 x4,|
//! |         acquired_at i64, server_epoch u64, kind (tag u8 + fields)         |
//! | 3 client: len u32, MessagePack ClientRecord                              |
//! | 4 handle: len u32, MessagePack DurableHandle                  (from v3)  |
//! | 5 record: space (len u16, bytes), key (len u16, bytes),                   |
//! |           value (len u32, bytes)                              (from v3)  |
//! ```
//! The file ends exactly after the last block. Shared strings (shares, file
//! ids, owners, clients) are written once, in the string table, and loaded
//! as one `Arc<str>` that every lock using them shares.
//!
//! The code: `format` (the layout: constants, names, the header, damage,
//! block checksums), `encode` (writing a snapshot from a state view),
//! `load` (checking and decoding blocks into a restorer, on one thread),
//! `parallel` (the entry points, and the load that splits the blocks after
//! the string table between two threads).

mod encode;
mod format;
mod load;
mod parallel;

pub(crate) use encode::{encode_snapshot, encode_snapshot_to_vec};
pub use format::{
    BASE_HEADER_LEN, BLOCK_HEADER_LEN, MAX_BLOCK, SNAPSHOT_HEADER_LEN, SNAPSHOT_MAGIC, SNAPSHOT_VERSION,
    SnapshotDamage, SnapshotHeader, decode_header, parse_snapshot_name, snapshot_name,
};
pub use parallel::decode_snapshot;
pub(crate) use parallel::{Threads, decode_snapshot_with};

#[cfg(test)]
mod tests;

/// Adversarial tests of the two-thread load (written in review).
#[cfg(test)]
mod adversarial;
