//! The mutating commands: `init`, `grant`, `release`, `compact`, `repair`.
//!
//! They take the writer lock like a server (a second writer gets `Locked`,
//! exit 1). Opening a store starts a new incarnation, so each of them bumps
//! the epoch. They keep the clean-shutdown marker as they found it: after an
//! unclean shutdown they exit without `close()`, so the server's next start
//! still runs the grace period its clients need.

use super::read::require_store;
use super::show::{lock_json, lock_line};
use super::{CliError, CliResult, GrantArgs, out, out_json, runtime};
use lockwal::LockStore;
use lockwal::io::{FileSystem, RealFs};
use lockwal::model::{ByteRange, LockKind, LockType, PersistedLock, RangeFlavor, Timestamp};
use lockwal::wal::inspect::{self, ProblemKind, RepairAction, RepairMode, RepairPlan};
use lockwal::wal::{WalLockStore, WalOptions};
use serde_json::{Value, json};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

/// Opens an existing store for writing.
async fn open(dir: &Path) -> Result<WalLockStore, CliError> {
    require_store(dir)?;
    Ok(WalLockStore::open(dir, WalOptions::default()).await?)
}

/// Ends the incarnation: cleanly when the previous one was clean, otherwise
/// like a crash (the marker stays "unclean").
async fn finish(store: WalLockStore) -> Result<(), CliError> {
    if store.previous_shutdown_was_clean().await? {
        store.close().await?;
    }
    Ok(())
}

pub(super) fn init(dir: &Path) -> CliResult {
    if let Ok(true) = inspect::is_store(&RealFs, dir) {
        return Err(CliError::refused(format!("{} already holds a lockwal store", dir.display())));
    }
    runtime()?.block_on(async {
        let store = WalLockStore::open(dir, WalOptions::default()).await?;
        let epoch = store.epoch().await?;
        // An empty store has nothing to reclaim: close it cleanly.
        store.close().await?;
        out(format_args!("initialized an empty store in {} (epoch {epoch})", dir.display()))?;
        Ok(ExitCode::SUCCESS)
    })
}

pub(super) fn grant(a: GrantArgs) -> CliResult {
    let lock = PersistedLock {
        id: a.id.into(),
        share: a.share.into(),
        file_id: a.file.into(),
        owner_id: a.owner.into(),
        client_id: a.client.into(),
        kind: LockKind::ByteRange(ByteRange {
            lock_type: if a.exclusive { LockType::Exclusive } else { LockType::Shared },
            offset: a.offset,
            length: a.length,
            zero_byte: false,
            flavor: RangeFlavor::Posix,
        }),
        acquired_at: Timestamp::now(),
        server_epoch: 0,
    };
    lockwal::model::validate::lock(&lock)?;
    runtime()?.block_on(async {
        let store = open(&a.dir).await?;
        store.put_lock(lock.clone()).await?;
        let stored = store.get_lock(&lock.id).await?;
        finish(store).await?;
        if a.json {
            out_json(&lock_json(&stored))?;
        } else {
            out(format_args!("granted {}", lock_line(&stored)))?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub(super) fn release(dir: &Path, id: &str, json: bool) -> CliResult {
    runtime()?.block_on(async {
        let store = open(dir).await?;
        let result = store.delete_lock(id).await;
        finish(store).await?;
        result?;
        if json {
            out_json(&json!({"released": id}))?;
        } else {
            out(format_args!("released {}", super::show::plain(id)))?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

pub(super) fn compact(dir: &Path, json: bool) -> CliResult {
    runtime()?.block_on(async {
        let store = open(dir).await?;
        let result = store.compact().await;
        finish(store).await?;
        let r = result?;
        if json {
            out_json(&json!({
                "snapshot_lsn": r.snapshot_lsn,
                "snapshot_bytes": r.snapshot_bytes,
                "bytes_before": r.bytes_before,
                "bytes_after": r.bytes_after,
                "files_removed": r.files_removed,
                "duration_ms": r.duration.as_secs_f64() * 1e3,
            }))?;
        } else {
            out(format_args!(
                "compacted: snapshot at LSN {} ({} bytes); log and snapshot files {} -> {} bytes, {} file(s) removed",
                r.snapshot_lsn, r.snapshot_bytes, r.bytes_before, r.bytes_after, r.files_removed
            ))?;
        }
        Ok(ExitCode::SUCCESS)
    })
}

fn action_json(a: &RepairAction) -> Value {
    match a {
        RepairAction::Truncate { file, offset, bytes, records, backup, reason } => json!({
            "action": "truncate", "file": file, "offset": offset, "bytes": bytes,
            "records_dropped": records, "backup": backup, "reason": reason,
        }),
        RepairAction::MoveAside { file, bytes, records, backup, reason } => json!({
            "action": "move", "file": file, "offset": 0, "bytes": bytes,
            "records_dropped": records, "backup": backup, "reason": reason,
        }),
    }
}

fn action_text(a: &RepairAction) -> String {
    match a {
        RepairAction::Truncate { file, offset, bytes, records, backup, reason } => format!(
            "truncate {} at byte offset {offset}: drops {records} valid record(s); {bytes} byte(s) go to {} ({reason})",
            file.display(),
            backup.display()
        ),
        RepairAction::MoveAside { file, bytes, records, backup, reason } => format!(
            "move {} ({bytes} bytes, {records} valid record(s)) to {} ({reason})",
            file.display(),
            backup.display()
        ),
    }
}

fn plan_json(p: &RepairPlan) -> Value {
    json!({
        "dir": p.dir,
        "problem": p.problem.as_ref().map(|x| json!({
            "kind": match x.kind { ProblemKind::Corruption => "corruption", ProblemKind::UnsupportedVersion => "unsupported-version" },
            "file": x.file, "offset": x.offset, "reason": x.reason, "valid_records_after": x.valid_records_after,
        })),
        "actions": p.actions.iter().map(action_json).collect::<Vec<_>>(),
        "records_dropped": p.records_dropped(),
        "snapshots_dropped": p.snapshots_dropped(),
        "loss": p.loss(),
        "applied": p.applied,
        "after": p.after.as_ref().map(|r| json!({
            "last_lsn": r.last_lsn, "epoch": r.epoch, "locks": r.locks, "clients": r.clients,
            "handles": r.handles, "keyspace_records": r.keyspace_records,
        })),
    })
}

pub(super) fn repair(dir: &Path, yes: bool, accept_loss: bool, json: bool) -> CliResult {
    require_store(dir)?;
    // Planning holds no lock: read by copying, like the read-only commands.
    let fs: Arc<dyn FileSystem> = Arc::new(super::fs::copying());
    let mode = match (yes, accept_loss) {
        (false, _) => RepairMode::Plan,
        (true, false) => RepairMode::Apply,
        (true, true) => RepairMode::ApplyAcceptingLoss,
    };
    let plan = match inspect::repair(Arc::clone(&fs), dir, mode) {
        // Show what it would do, then say why it did not.
        Err(lockwal::Error::RepairRefused { reason, .. }) => {
            let plan = inspect::repair(fs, dir, RepairMode::Plan)?;
            show_plan(&plan, json)?;
            return Err(CliError::refused(format!(
                "repair refused: {reason}; run again with --yes --accept-loss to make these cuts anyway"
            )));
        }
        other => other?,
    };
    if plan.actions.is_empty() {
        if json {
            out_json(&plan_json(&plan))?;
        }
        return Err(CliError::refused(format!(
            "nothing to repair: {} opens as it is (verify reports no corruption; a torn tail is truncated by open itself)",
            dir.display()
        )));
    }
    show_plan(&plan, json)?;
    Ok(ExitCode::SUCCESS)
}

fn show_plan(plan: &RepairPlan, json: bool) -> Result<(), CliError> {
    if json {
        out_json(&plan_json(plan))?;
    } else {
        if let Some(p) = &plan.problem {
            out(format_args!("problem: {} at byte offset {}: {}", p.file.display(), p.offset, p.reason))?;
        }
        for a in &plan.actions {
            out(format_args!("{}{}", if plan.applied { "done: " } else { "would " }, action_text(a)))?;
        }
        if let Some(r) = &plan.after {
            out(format_args!(
                "{}: the log ends at LSN {}; epoch {}, {} lock(s), {} client(s), {} handle(s), {} record(s), no clean-shutdown record (grace period at the next start); {} valid record(s) dropped",
                if plan.applied { "repaired" } else { "after the repair" },
                r.last_lsn,
                r.epoch,
                r.locks,
                r.clients,
                r.handles,
                r.keyspace_records,
                plan.records_dropped()
            ))?;
        }
        if !plan.applied {
            let flags = match plan.loss() {
                Some(loss) => {
                    out(format_args!("warning: beyond the damage itself, {loss}"))?;
                    "--yes --accept-loss"
                }
                None => "--yes",
            };
            out(format_args!(
                "nothing was changed; run again with {flags} to make these cuts (backups are kept in the store directory)"
            ))?;
        }
    }
    Ok(())
}
