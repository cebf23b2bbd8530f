//! How a store is opened: [`WalOptions`] with its [`SyncMode`], the valid
//! range of every field ([`WalOptions::validate`]) and the limits those
//! ranges are built from. Plain data: names no other part of the backend.

use crate::error::{Error, Result};
use std::time::Duration;

/// When a write is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMode {
    /// After `fdatasync` of the frame holding it: survives power loss.
    #[default]
    Always,
    /// After `write` only: survives a crash of the process, not of the
    /// machine. For tests and caches; not crash-safe.
    Never,
}

/// How to open a [`WalLockStore`](super::WalLockStore).
///
/// Every field has a valid range, given on it;
/// [`WalLockStore::open`](super::WalLockStore::open)
/// checks them all ([`validate`](Self::validate)) before it touches the
/// directory, read-only or not, and refuses a value outside with
/// [`Error::InvalidInput`] naming the field.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// When writes are acknowledged. Any value.
    pub sync: SyncMode,
    /// A segment is rotated when the next frame would take it past this
    /// size (a frame larger than this gets a segment of its own). Default
    /// 64 MiB; valid [`MIN_SEGMENT_SIZE`]`..=`[`MAX_SEGMENT_SIZE`].
    pub segment_size: u64,
    /// Open without the writer lock and without changing any byte: no epoch
    /// bump, no truncation; writes fail with `ReadOnly`. A torn tail is
    /// ignored, corruption reported as usual. A directory that does not
    /// exist is [`Error::NoSuchDirectory`] (nothing is created). Any value.
    /// The other fields
    /// are validated even when this is set, so that a bad configuration is
    /// caught by a read-only check too.
    pub read_only: bool,
    /// Compact automatically once this many bytes were logged since the last
    /// snapshot (and `compact_size_multiple` is also passed). `None`: only
    /// on demand or on the timer. Default 64 MiB; valid `None` or `Some(n)`
    /// with `n >= 1` (`Some(0)` is refused: it does not mean off).
    pub compact_after_bytes: Option<u64>,
    /// ... and once the log since the last snapshot is more than this many
    /// times the snapshot's size. Default 2.0; valid `0.0..=`
    /// [`MAX_COMPACT_SIZE_MULTIPLE`] (0: the byte threshold alone decides).
    /// NaN, infinite and negative values are refused: NaN and infinity
    /// would silently never compact.
    pub compact_size_multiple: f64,
    /// Also compact on this period. Default `None` (off); valid `None` or
    /// at least [`MIN_COMPACT_INTERVAL`] (a zero period would compact in a
    /// busy loop).
    pub compact_interval: Option<Duration>,
    /// An open that finds at least this many segments holding records
    /// compacts before it starts its own segment, so that repeated opens
    /// (every open starts a segment for its epoch) leave at most this many
    /// segments and one snapshot. Default `Some(8)`; valid `None` (opens
    /// never compact) or `Some(n)` with `n >= 1` (`Some(0)` is refused: it
    /// does not mean off).
    pub compact_at_open_segments: Option<u64>,
    /// Whether a write alone in flight commits on its caller's thread when
    /// the writer is idle (default `true`): it saves the two thread
    /// hand-offs of the writer thread, but blocks the caller's thread for
    /// the `fdatasync`, so a timeout around the write cannot fire before
    /// the sync returns. `false` sends every write to the writer thread.
    /// Never on a current-thread runtime, which has no other thread to run
    /// its tasks meanwhile (DESIGN, "Writing").
    pub lone_writes_on_caller_thread: bool,
}

impl Default for WalOptions {
    fn default() -> Self {
        Self {
            sync: SyncMode::Always,
            segment_size: 64 << 20,
            read_only: false,
            compact_after_bytes: Some(64 << 20),
            compact_size_multiple: 2.0,
            compact_interval: None,
            compact_at_open_segments: Some(8),
            lone_writes_on_caller_thread: true,
        }
    }
}

impl WalOptions {
    /// Checks every field against the range documented on it: `Ok` when
    /// [`WalLockStore::open`](super::WalLockStore::open) accepts these options, otherwise
    /// [`Error::InvalidInput`] naming the first field out of range.
    pub fn validate(&self) -> Result<()> {
        let invalid = |field, reason: String| Err(Error::InvalidInput { field, reason });
        let Self {
            sync: _,
            segment_size,
            read_only: _,
            compact_after_bytes,
            compact_size_multiple,
            compact_interval,
            compact_at_open_segments,
            lone_writes_on_caller_thread: _,
        } = self;
        if !(MIN_SEGMENT_SIZE..=MAX_SEGMENT_SIZE).contains(segment_size) {
            return invalid(
                "segment_size",
                format!("{segment_size} is outside {MIN_SEGMENT_SIZE}..={MAX_SEGMENT_SIZE} bytes"),
            );
        }
        if *compact_after_bytes == Some(0) {
            return invalid(
                "compact_after_bytes",
                "Some(0) is not accepted; use None to compact only on demand or on the timer".into(),
            );
        }
        if *compact_at_open_segments == Some(0) {
            return invalid(
                "compact_at_open_segments",
                "Some(0) is not accepted; use None for opens that never compact".into(),
            );
        }
        let multiple = *compact_size_multiple;
        if !(0.0..=MAX_COMPACT_SIZE_MULTIPLE).contains(&multiple) {
            // NaN fails `contains` too.
            return invalid(
                "compact_size_multiple",
                format!("{multiple} is outside 0..={MAX_COMPACT_SIZE_MULTIPLE} (it must be a finite number)"),
            );
        }
        if let Some(interval) = compact_interval
            && *interval < MIN_COMPACT_INTERVAL
        {
            return invalid(
                "compact_interval",
                format!("{interval:?} is below the minimum {MIN_COMPACT_INTERVAL:?}; use None to turn the timer off"),
            );
        }
        Ok(())
    }
}

/// Smallest segment size accepted.
pub const MIN_SEGMENT_SIZE: u64 = 4096;

/// Largest segment size accepted (4 GiB). Open reads each segment whole (a
/// read-only open copies it into memory), and compaction retires only whole
/// segments; a larger segment gains nothing and costs both.
pub const MAX_SEGMENT_SIZE: u64 = 4 << 30;

/// Largest [`WalOptions::compact_size_multiple`] accepted: a log a thousand
/// times its snapshot already replays a thousand times slower than the
/// snapshot loads; a larger multiple is a mistake (to turn automatic
/// compaction off, set `compact_after_bytes` to `None`).
pub const MAX_COMPACT_SIZE_MULTIPLE: f64 = 1000.0;

/// Shortest [`WalOptions::compact_interval`] accepted. A compaction rotates
/// a segment and writes a snapshot with several fsyncs; a shorter period
/// would keep the compactor (and the disk) busy compacting.
pub const MIN_COMPACT_INTERVAL: Duration = Duration::from_secs(1);
