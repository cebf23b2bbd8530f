//! Crash testing of the WAL store on the power-loss simulator: run a
//! workload while taking the crash image of every I/O call, reopen each
//! image (crashing again during that recovery when asked), and check the
//! recovered store against what the workload acknowledged and issued.
//!
//! The check, for a crash while step `i` was in flight: the recovered locks,
//! clients, durable handles, records (every field of each) and
//! clean-shutdown flag equal those expected after the first `j`
//! steps for some `j` between the number acknowledged and the number issued
//! (every acknowledged grant and release is there, nothing never issued is,
//! an acknowledged consume of a handle stays consumed, a transaction is all
//! or nothing: its records and its locks both there or both absent), and
//! the epoch is the epoch of that
//! prefix plus one: strictly greater than any acknowledged before the crash.

use crate::io::FileSystem;
use crate::io::sim::{Fill, Loss, Pending, SimFs};
use crate::testing::workload::Rng;
use crate::wal::WalOptions;
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod image;
mod observe;
mod run;
#[cfg(test)]
mod tests;

pub use image::{Checked, CrashPoint, check_image, files, open_and_observe, run_and_capture, run_and_capture_from};
pub use observe::{Observed, check_targeted, describe_difference, observe, observe_wal, verify};
pub use run::{Trace, Window, run, run_from, run_with_reopen};

/// Chooses the loss patterns tried at a crash point: given the call's
/// number and the operations pending there.
pub type SelectLosses = Arc<dyn Fn(u64, &[Pending]) -> Vec<Loss> + Send + Sync>;

/// The store directory used by the crash tests.
pub fn store_dir() -> PathBuf {
    PathBuf::from("/srv/locks")
}

/// Options for crash tests: the smallest segments (so that rotations are
/// frequent) and no automatic compaction (compactions are workload steps,
/// so the I/O sequence is deterministic).
pub fn crash_options() -> WalOptions {
    WalOptions {
        segment_size: crate::wal::MIN_SEGMENT_SIZE,
        compact_after_bytes: None,
        compact_interval: None,
        ..WalOptions::default()
    }
}

/// Creates `dir` and makes its entry durable (syncing every new ancestor's
/// parent), as an installer would. The store itself does not sync the
/// parent of its directory (see `tests/crash_regressions.rs`).
pub fn prepare_dir(fs: &SimFs, dir: &Path) -> std::io::Result<()> {
    fs.create_dir_all(dir)?;
    for ancestor in dir.ancestors().skip(1) {
        fs.sync_dir(ancestor)?;
    }
    Ok(())
}

/// The loss patterns worth trying with these pending operations: drop all,
/// every prefix (at most `max_prefixes`, spread evenly, always including
/// all), and for each pending write (at most `max_torn`) one tear filled
/// with zeros and one with garbage, at cut points drawn from `seed`.
pub fn losses(pending: &[Pending], seed: u64, max_prefixes: usize, max_torn: usize) -> Vec<Loss> {
    let mut out = vec![Loss::DropUnsynced];
    let n = pending.len();
    let prefixes = n.min(max_prefixes);
    for i in 1..=prefixes {
        out.push(Loss::KeepPrefix(i * n / prefixes));
    }
    let mut rng = Rng::new(seed);
    let writes: Vec<(usize, usize)> = pending
        .iter()
        .enumerate()
        .filter_map(|(i, p)| match p {
            Pending::Write { len, .. } if *len > 1 => Some((i, *len)),
            _ => None,
        })
        .collect();
    let step = writes.len().div_ceil(max_torn.max(1)).max(1);
    for &(keep, len) in writes.iter().step_by(step) {
        let at = 1 + rng.below(len as u64 - 1) as usize;
        out.push(Loss::Torn { keep, at, fill: Fill::Zeros });
        let at = rng.below(len as u64) as usize;
        out.push(Loss::Torn { keep, at, fill: Fill::Garbage(rng.next_u64()) });
    }
    out
}

/// The default selection: [`losses`] with up to 4 prefixes and 2 tears.
pub fn default_losses() -> SelectLosses {
    Arc::new(|k, pending| losses(pending, k, 4, 2))
}
