//! The closing summary of a torture run: recovery and replay times (median
//! and maximum), the totals and the verdict, printed as text or as one
//! JSON object (`--json`, field names in the README). Builds on
//! [`super::verify`]'s [`Totals`].

use super::verify::Totals;
use crate::cli::{CliError, out, out_json};
use serde_json::json;
use std::time::Duration;

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1e3
}

/// Prints the summary of a run that took `elapsed` with `tasks` writer tasks
/// from `seed`, and tells whether it passed: no check failed and the run
/// did not end with `failure`.
pub(super) fn print(
    totals: &Totals,
    failure: Option<&str>,
    elapsed: Duration,
    tasks: u32,
    seed: u64,
    json: bool,
) -> Result<bool, CliError> {
    let mut sorted = totals.recoveries.clone();
    sorted.sort();
    let median = percentile_ms(&sorted, 0.5);
    let max = sorted.last().map_or(0.0, |d| d.as_secs_f64() * 1e3);
    let mut replays = totals.replays.clone();
    replays.sort();
    let replay_median = percentile_ms(&replays, 0.5);
    let replay_max = replays.last().map_or(0.0, |d| d.as_secs_f64() * 1e3);
    let ok = totals.ok() && failure.is_none();
    if json {
        out_json(&json!({
            "ok": ok,
            "kills": totals.kills,
            "acked": totals.acked,
            "verified": totals.verified,
            "lost": totals.lost,
            "torn_transactions": totals.torn_transactions,
            "unexpected": totals.unexpected,
            "epoch_violations": totals.epoch_violations,
            "protocol_errors": totals.protocol_errors,
            "in_flight_applied": totals.in_flight_applied,
            "in_flight_absent": totals.in_flight_absent,
            "recoveries": totals.recoveries.len(),
            "recovery_median_ms": median,
            "max_recovery_ms": max,
            "replay_median_ms": replay_median,
            "max_replay_ms": replay_max,
            "epochs_seen": totals.epochs_seen,
            "first_epoch": totals.first_epoch,
            "last_epoch": totals.last_epoch,
            "seconds": elapsed.as_secs_f64(),
            "tasks": tasks,
            "seed": seed,
            "failure": failure,
        }))?;
    } else {
        let lines = [
            format!(
                "torture: {} kills in {:.1} s ({} writer tasks, seed {seed})",
                totals.kills,
                elapsed.as_secs_f64(),
                tasks
            ),
            format!(
                "  acknowledged  {} transactions; verified {}; lost {}",
                totals.acked, totals.verified, totals.lost
            ),
            format!(
                "  in flight     {} applied, {} absent at the kill (either is correct); torn transactions {}; unexpected records {}",
                totals.in_flight_applied, totals.in_flight_absent, totals.torn_transactions, totals.unexpected
            ),
            format!(
                "  epochs        {} seen, {}..={}, {}",
                totals.epochs_seen,
                totals.first_epoch,
                totals.last_epoch,
                if totals.epoch_violations == 0 {
                    "strictly increasing".to_owned()
                } else {
                    format!("{} violation(s)", totals.epoch_violations)
                }
            ),
            format!(
                "  recovery      median {median:.1} ms, max {max:.1} ms over {} reopens (whole open: replay, repairs, new segment, epoch record)",
                totals.recoveries.len()
            ),
            format!(
                "  replay        median {replay_median:.1} ms, max {replay_max:.1} ms (snapshot load and log replay alone)"
            ),
            format!(
                "  verdict       {}",
                if ok {
                    "OK: every acknowledged write survived every kill".to_owned()
                } else {
                    format!("FAILED{}", failure.map(|f| format!(": {f}")).unwrap_or_default())
                }
            ),
        ];
        for line in lines {
            out(line)?;
        }
    }
    Ok(ok)
}
