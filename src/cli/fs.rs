//! The file system the read-only commands use.

use lockwal::io::{CopyingReads, RealFs};
use std::sync::Arc;

/// The real file system with whole-file reads copied instead of mapped
/// (`lockwal::io::CopyingReads`).
///
/// A read-only command does not hold the writer lock, so a server may start
/// while it runs, and a starting server truncates the newest segment (its
/// pre-sized zero tail or a torn write). A mapped page past the new end of
/// the file would kill the command with SIGBUS; a copy just sees the file as
/// it was (or shorter), and scanning treats what is missing at the end as a
/// torn tail. Under `lockwal torture` a mapping reader died this way within
/// seconds; the copying reader never did.
pub fn copying() -> CopyingReads {
    CopyingReads(Arc::new(RealFs))
}
