//! The read-only commands: `stat`, `list`, `clients`, `handles`, `records`,
//! `dump`, `verify`.
//!
//! They open the store with `WalOptions { read_only: true }`: no writer lock,
//! no byte changed, no epoch bump. On a store that a live server holds they
//! read its acknowledged prefix (a write in flight looks like a torn tail and
//! is ignored); when a rotation or compaction renames files under them they
//! read again (`inspect::retry_while_changing`). They read files by copying,
//! not mapping them (`lockwal::io::CopyingReads`): a server starting meanwhile truncates the
//! newest segment, which would kill a mapping reader with SIGBUS.

use super::fs::copying;
use super::show::{
    client_json, client_line, command_json, command_text, handle_json, handle_text, lock_json, lock_line, plain,
    record_json, record_line,
};
use super::{CliError, CliResult, ListArgs, RecordsArgs, SourceArgs, out, out_json, runtime};
use lockwal::LockStore;
#[cfg(feature = "postgres")]
use lockwal::backend::postgres::{PostgresConfig, PostgresLockStore};
use lockwal::io::FileSystem;
use lockwal::model::{ClientQuery, HandleQuery, LockQuery, RecordScan, validate};
use lockwal::wal::inspect::{self, DumpRecord, ProblemKind, SegmentCheck, SegmentStatus, VerifyReport};
use lockwal::wal::{WalLockStore, WalOptions};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use tokio::runtime::Runtime;

/// Refuses a directory that holds no store (a typo must not look like an
/// empty store).
pub(super) fn require_store(dir: &Path) -> Result<(), CliError> {
    if inspect::is_store(&copying(), dir)? {
        Ok(())
    } else {
        Err(CliError::unusable(format!(
            "{} is not a lockwal store (no seg-*.wal or snap-*.snap file); create one with `lockwal init`",
            dir.display()
        )))
    }
}

/// Opens the store read-only, reading again if a live writer renames files
/// meanwhile.
fn open_read_only(dir: &Path) -> Result<WalLockStore, CliError> {
    require_store(dir)?;
    let fs: Arc<dyn FileSystem> = Arc::new(copying());
    let options = WalOptions { read_only: true, ..WalOptions::default() };
    Ok(inspect::retry_while_changing(&*fs, dir, || {
        WalLockStore::open_blocking(Arc::clone(&fs), dir.to_owned(), options.clone())
    })?)
}

fn name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// A store opened for reading by `stat`, `list` or `clients`.
enum Source {
    /// Boxed: a WAL handle is large, a PostgreSQL one a pointer.
    Dir(PathBuf, Box<WalLockStore>),
    #[cfg(feature = "postgres")]
    Postgres(String, PostgresLockStore),
}

impl Source {
    fn open(args: &SourceArgs, rt: &Runtime) -> Result<Self, CliError> {
        match (&args.dir, &args.url) {
            // clap does not enforce `requires` next to a present DIR.
            (Some(_), None) if args.schema.is_some() => Err(CliError::unusable("--schema needs --url")),
            (Some(dir), None) => Ok(Self::Dir(dir.clone(), Box::new(open_read_only(dir)?))),
            (None, Some(url)) => Self::open_postgres(url, args.schema.as_deref().unwrap_or("public"), rt),
            // clap refuses both and neither.
            _ => Err(CliError::unusable("give either DIR or --url")),
        }
    }

    #[cfg(feature = "postgres")]
    fn open_postgres(url: &str, schema: &str, rt: &Runtime) -> Result<Self, CliError> {
        let config = PostgresConfig::new(url).with_schema(schema).with_pool_size(1);
        let store = rt.block_on(PostgresLockStore::open_read_only(config))?;
        Ok(Self::Postgres(schema.to_owned(), store))
    }

    #[cfg(not(feature = "postgres"))]
    fn open_postgres(_url: &str, _schema: &str, _rt: &Runtime) -> Result<Self, CliError> {
        Err(CliError::unusable(
            "--url needs the PostgreSQL backend, and this lockwal was built without it: \
             build with `cargo build --release --features postgres`",
        ))
    }

    fn store(&self) -> &dyn LockStore {
        match self {
            Self::Dir(_, store) => &**store,
            #[cfg(feature = "postgres")]
            Self::Postgres(_, store) => store,
        }
    }

    /// Lets go of the store (a read-only close records nothing).
    fn close(self, rt: &Runtime) -> Result<(), CliError> {
        Ok(rt.block_on(self.store().close())?)
    }
}

pub(super) fn stat(source: &SourceArgs, json: bool) -> CliResult {
    let rt = runtime()?;
    let (dir, store) = match Source::open(source, &rt)? {
        Source::Dir(dir, store) => (dir, store),
        #[cfg(feature = "postgres")]
        Source::Postgres(schema, store) => return stat_postgres(&schema, store, json, &rt),
    };
    let dir = dir.as_path();
    let s = store.stats();
    let (handles, records) = (s.handles, s.keyspace_records);
    let spaces: BTreeMap<String, u64> = store.record_spaces().into_iter().collect();
    rt.block_on(store.close())?;
    if json {
        out_json(&json!({
            "dir": dir,
            "epoch": s.epoch,
            "locks": s.locks,
            "clients": s.clients,
            "handles": handles,
            "records": records,
            "record_spaces": spaces,
            "log_bytes": s.log_bytes,
            "segments": s.segments,
            "snapshot_lsn": s.snapshot_lsn,
            "snapshot_bytes": s.snapshot_bytes,
            "last_lsn": s.last_lsn,
            "clean_shutdown": s.previous_shutdown_clean,
            "records_replayed": s.records_replayed,
            "torn_tail": s.torn_tail.as_ref().map(|t| json!({"file": t.file, "offset": t.offset, "bytes": t.discarded})),
        }))?;
    } else {
        out(format_args!("store           {}", dir.display()))?;
        out(format_args!("epoch           {}", s.epoch))?;
        out(format_args!("locks           {}", s.locks))?;
        out(format_args!("clients         {}", s.clients))?;
        out(format_args!("handles         {handles}"))?;
        out(format_args!("records         {records} in {} keyspace(s)", spaces.len()))?;
        out(format_args!("log             {} bytes in {} segment(s)", s.log_bytes, s.segments))?;
        match s.snapshot_lsn {
            Some(lsn) => out(format_args!("snapshot        LSN {lsn} ({} bytes)", s.snapshot_bytes))?,
            None => out("snapshot        none")?,
        }
        out(format_args!("last LSN        {}", s.last_lsn))?;
        out(format_args!("clean shutdown  {}", if s.previous_shutdown_clean { "yes" } else { "no" }))?;
        if let Some(t) = &s.torn_tail {
            out(format_args!(
                "torn tail       {} at byte offset {} ({} bytes; a write in flight at a crash or now, not acknowledged)",
                name(&t.file),
                t.offset,
                t.discarded
            ))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `stat DIR --watch SECONDS [--count N]`: reads the store again every
/// `every` seconds, read-only like `stat` (so it works while a server holds
/// the store; each reading replays the acknowledged prefix), and shows the
/// figures with what changed since the previous reading. On a terminal the
/// screen is redrawn in place; otherwise each reading is a block followed by
/// a blank line, or with `json` one JSON line.
pub(super) fn watch(source: &SourceArgs, json: bool, every: f64, count: Option<u64>) -> CliResult {
    use std::io::IsTerminal;
    let Some(dir) = source.dir.as_deref().filter(|_| source.url.is_none()) else {
        return Err(CliError::unusable("--watch reads a store directory (DIR), not --url"));
    };
    if !(every.is_finite() && every > 0.0 && every <= 86_400.0) {
        return Err(CliError::unusable(format!("--watch {every}: give seconds between 0 and 86400")));
    }
    let redraw = !json && std::io::stdout().is_terminal();
    let started = std::time::Instant::now();
    let mut previous: Option<(std::time::Instant, lockwal::wal::WalStats)> = None;
    for reading in 1.. {
        let store = open_read_only(dir)?;
        let (s, spaces) = (store.stats(), store.record_spaces().len());
        drop(store); // read-only: closing records nothing
        let now = std::time::Instant::now();
        let since = previous.as_ref().map(|(at, p)| {
            let secs = now.duration_since(*at).as_secs_f64().max(f64::MIN_POSITIVE);
            let lsns = s.last_lsn.saturating_sub(p.last_lsn);
            (lsns, lsns as f64 / secs, s.locks as i64 - p.locks as i64, s.log_bytes as i64 - p.log_bytes as i64)
        });
        let at = now.duration_since(started).as_secs_f64();
        if json {
            out_json(&json!({
                "at_seconds": at,
                "epoch": s.epoch,
                "locks": s.locks,
                "clients": s.clients,
                "handles": s.handles,
                "records": s.keyspace_records,
                "log_bytes": s.log_bytes,
                "segments": s.segments,
                "snapshot_lsn": s.snapshot_lsn,
                "snapshot_bytes": s.snapshot_bytes,
                "last_lsn": s.last_lsn,
                "frames_since": since.map(|d| d.0),
                "frames_per_second": since.map(|d| d.1),
                "locks_change": since.map(|d| d.2),
                "log_bytes_change": since.map(|d| d.3),
            }))?;
        } else {
            if redraw {
                // Cursor home, clear the screen: the reading replaces the last.
                out(format_args!(
                    "\x1b[H\x1b[2J{} every {every} s, reading {reading} at +{at:.1} s (Ctrl-C stops)",
                    dir.display()
                ))?;
            } else {
                out(format_args!("{} reading {reading} at +{at:.1} s", dir.display()))?;
            }
            out(format_args!("epoch           {}", s.epoch))?;
            out(format_args!("locks           {}{}", s.locks, change(since.map(|d| d.2))))?;
            out(format_args!("clients         {}", s.clients))?;
            out(format_args!("handles         {}", s.handles))?;
            out(format_args!("records         {} in {spaces} keyspace(s)", s.keyspace_records))?;
            out(format_args!(
                "log             {} bytes in {} segment(s){}",
                s.log_bytes,
                s.segments,
                change(since.map(|d| d.3))
            ))?;
            match s.snapshot_lsn {
                Some(lsn) => out(format_args!("snapshot        LSN {lsn} ({} bytes)", s.snapshot_bytes))?,
                None => out("snapshot        none")?,
            }
            match since {
                Some((lsns, rate, ..)) => {
                    out(format_args!("last LSN        {} (+{lsns}, {rate:.1} frames/s)", s.last_lsn))?
                }
                None => out(format_args!("last LSN        {}", s.last_lsn))?,
            }
            if !redraw {
                out("")?;
            }
        }
        if count.is_some_and(|n| reading >= n) {
            break;
        }
        previous = Some((now, s));
        std::thread::sleep(std::time::Duration::from_secs_f64(every));
    }
    Ok(ExitCode::SUCCESS)
}

/// " (+3)", " (-1)" or nothing: what changed since the previous reading.
fn change(delta: Option<i64>) -> String {
    match delta {
        Some(d) if d != 0 => format!(" ({d:+})"),
        _ => String::new(),
    }
}

/// `stat --url`: what a PostgreSQL store has (no log, segments or LSNs).
#[cfg(feature = "postgres")]
fn stat_postgres(schema: &str, store: PostgresLockStore, json: bool, rt: &Runtime) -> CliResult {
    let (epoch, clean, locks, clients) = rt.block_on(async {
        let epoch = store.epoch().await?;
        let clean = store.previous_shutdown_was_clean().await?;
        let locks = store.count().await?;
        let clients = store.list_clients(&ClientQuery::all()).await?.len();
        store.close().await?;
        Ok::<_, lockwal::Error>((epoch, clean, locks, clients))
    })?;
    if json {
        out_json(&json!({
            "backend": "postgres",
            "schema": schema,
            "epoch": epoch,
            "locks": locks,
            "clients": clients,
            "clean_shutdown": clean,
        }))?;
    } else {
        out(format_args!("store           PostgreSQL schema {schema}"))?;
        out(format_args!("epoch           {epoch}"))?;
        out(format_args!("locks           {locks}"))?;
        out(format_args!("clients         {clients}"))?;
        out(format_args!("clean shutdown  {}", if clean { "yes" } else { "no (or still open)" }))?;
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn list(a: ListArgs) -> CliResult {
    let rt = runtime()?;
    let source = Source::open(&a.source, &rt)?;
    let query = LockQuery {
        file_id: a.file,
        owner_id: a.owner,
        client_id: a.client,
        share: a.share,
        kind: a.kind.map(Into::into),
        exclude_kind: a.not_kind.map(Into::into),
        lease_key: a.lease_key,
        granted_before_epoch: None,
    };
    let locks = rt.block_on(source.store().list_locks(&query))?;
    source.close(&rt)?;
    if a.json {
        out_json(&Value::Array(locks.iter().map(lock_json).collect()))?;
    } else {
        for lock in &locks {
            out(lock_line(lock))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn clients(args: &SourceArgs, json: bool) -> CliResult {
    let rt = runtime()?;
    let source = Source::open(args, &rt)?;
    let clients = rt.block_on(source.store().list_clients(&ClientQuery::all()))?;
    source.close(&rt)?;
    if json {
        out_json(&Value::Array(clients.iter().map(client_json).collect()))?;
    } else {
        for c in &clients {
            out(client_line(c))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn handles(args: &SourceArgs, share: Option<String>, json: bool) -> CliResult {
    let rt = runtime()?;
    let source = Source::open(args, &rt)?;
    let query = share.map_or(HandleQuery::All, HandleQuery::Share);
    let handles = rt.block_on(source.store().list_handles(&query))?;
    source.close(&rt)?;
    if json {
        out_json(&Value::Array(handles.iter().map(handle_json).collect()))?;
    } else {
        for h in &handles {
            out(handle_text(h))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

pub(super) fn records(a: RecordsArgs) -> CliResult {
    // A bad name is a usage error, before the store is even looked at.
    validate::space(&a.space).map_err(|e| CliError::unusable(e.to_string()))?;
    let prefix = a.prefix_hex.or(a.prefix.map(String::into_bytes)).unwrap_or_default();
    let rt = runtime()?;
    let store = open_read_only(&a.dir)?;
    let records = rt.block_on(store.scan_records(&a.space, &RecordScan::prefix(prefix, usize::MAX)))?;
    rt.block_on(store.close())?;
    if a.json {
        out_json(&Value::Array(records.iter().map(|r| record_json(&a.space, r)).collect()))?;
    } else {
        for r in &records {
            out(record_line(r))?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn status_text(s: &SegmentCheck) -> String {
    match &s.status {
        SegmentStatus::Clean => "clean".to_owned(),
        SegmentStatus::TornTail { offset } => format!(
            "torn tail at byte offset {offset} ({} bytes; the write in flight at a crash, never acknowledged: open truncates it)",
            s.file_len - offset
        ),
        SegmentStatus::Incomplete => "creation interrupted, holds no record (open removes it)".to_owned(),
        SegmentStatus::Damaged { offset, reason, valid_after } => {
            format!("DAMAGED at byte offset {offset}: {reason}; {valid_after} valid record(s) follow it")
        }
    }
}

fn status_json(s: &SegmentCheck) -> Value {
    let (status, damage) = match &s.status {
        SegmentStatus::Clean => ("clean", Value::Null),
        SegmentStatus::TornTail { .. } => ("torn-tail", Value::Null),
        SegmentStatus::Incomplete => ("incomplete", Value::Null),
        SegmentStatus::Damaged { offset, reason, valid_after } => {
            ("damaged", json!({"offset": offset, "reason": reason, "valid_records_after": valid_after}))
        }
    };
    json!({
        "file": s.path,
        "number": s.number,
        "bytes": s.file_len,
        "first_lsn": s.first_lsn,
        "last_lsn": s.last_lsn,
        "records": s.records,
        "valid_end": s.valid_end,
        "status": status,
        "torn_tail_offset": match s.status { SegmentStatus::TornTail { offset } => Some(offset), _ => None },
        "damage": damage,
        "covered_by_snapshot": s.covered,
    })
}

fn segment_text(s: &SegmentCheck) -> String {
    let lsns = match s.first_lsn {
        Some(first) if s.records > 0 => format!("LSN {first}..={}", s.last_lsn),
        _ => "no LSN".to_owned(),
    };
    format!(
        "segment  {}  {} record(s), {lsns}, {} bytes: {}{}",
        name(&s.path),
        s.records,
        s.file_len,
        status_text(s),
        if s.covered { " [covered by the snapshot: open removes it]" } else { "" }
    )
}

fn verify_json(r: &VerifyReport) -> Value {
    json!({
        "dir": r.dir,
        "intact": r.is_intact(),
        "problem": r.problem.as_ref().map(|p| json!({
            "kind": match p.kind { ProblemKind::Corruption => "corruption", ProblemKind::UnsupportedVersion => "unsupported-version" },
            "file": p.file,
            "offset": p.offset,
            "reason": p.reason,
            "valid_records_after": p.valid_records_after,
        })),
        "torn_tail": r.torn_tail.as_ref().map(|t| json!({"file": t.file, "offset": t.offset, "bytes": t.discarded})),
        "last_lsn": r.replayed.as_ref().map(|x| x.last_lsn),
        "records": r.replayed.as_ref().map(|x| x.records),
        "epoch": r.replayed.as_ref().map(|x| x.epoch),
        "locks": r.replayed.as_ref().map(|x| x.locks),
        "clients": r.replayed.as_ref().map(|x| x.clients),
        "handles": r.replayed.as_ref().map(|x| x.handles),
        "keyspace_records": r.replayed.as_ref().map(|x| x.keyspace_records),
        "clean_shutdown": r.replayed.as_ref().map(|x| x.clean_shutdown),
        "snapshots": r.snapshots.iter().map(|s| json!({
            "file": s.path,
            "bytes": s.bytes,
            "lsn": s.header.map(|h| h.lsn),
            "in_use": s.in_use,
            "ok": s.damage.is_none(),
            "damage": s.damage.as_ref().map(|(offset, reason)| json!({"offset": offset, "reason": reason})),
        })).collect::<Vec<_>>(),
        "segments": r.segments.iter().map(status_json).collect::<Vec<_>>(),
        "temporary_files": r.temporaries,
        "recoverable": r.repair.as_ref().map(|plan| json!({
            "last_lsn": plan.after.as_ref().map(|a| a.last_lsn),
            "locks": plan.after.as_ref().map(|a| a.locks),
            "clients": plan.after.as_ref().map(|a| a.clients),
            "handles": plan.after.as_ref().map(|a| a.handles),
            "keyspace_records": plan.after.as_ref().map(|a| a.keyspace_records),
            "records_dropped": plan.records_dropped(),
            "snapshots_dropped": plan.snapshots_dropped(),
            "loss": plan.loss(),
        })),
    })
}

pub(super) fn verify(dir: &Path, json: bool) -> CliResult {
    require_store(dir)?;
    let report = inspect::retry_while_changing(&copying(), dir, || inspect::verify(&copying(), dir))?;
    if json {
        out_json(&verify_json(&report))?;
    } else {
        for s in &report.snapshots {
            let what = match (&s.header, &s.damage) {
                (Some(h), _) => format!(
                    "LSN {}, epoch {}, {} lock(s), {} client(s), {} handle(s), {} record(s): ok{}",
                    h.lsn,
                    h.epoch,
                    h.locks,
                    h.clients,
                    h.handles,
                    h.records,
                    if s.in_use { "" } else { " [older snapshot: open removes it]" }
                ),
                (None, Some((offset, reason))) => format!("DAMAGED at byte offset {offset}: {reason}"),
                (None, None) => "unreadable".to_owned(),
            };
            out(format_args!("snapshot {}  {} bytes, {what}", name(&s.path), s.bytes))?;
        }
        for s in &report.segments {
            out(segment_text(s))?;
        }
        for t in &report.temporaries {
            out(format_args!("temporary {}  (an interrupted write; open removes it)", name(t)))?;
        }
        if let Some(r) = &report.replayed {
            out(format_args!(
                "intact: replays {} log record(s) to LSN {}: epoch {}, {} lock(s), {} client(s), {} handle(s), {} record(s), clean shutdown: {}",
                r.records,
                r.last_lsn,
                r.epoch,
                r.locks,
                r.clients,
                r.handles,
                r.keyspace_records,
                if r.clean_shutdown { "yes" } else { "no" }
            ))?;
        }
        if let Some(plan) = &report.repair
            && let Some(after) = &plan.after
        {
            out(format_args!(
                "recoverable: `lockwal repair` would keep the log to LSN {}: {} lock(s), {} client(s), {} handle(s), {} record(s); {}",
                after.last_lsn,
                after.locks,
                after.clients,
                after.handles,
                after.keyspace_records,
                plan.loss().unwrap_or_else(|| "it drops only the damaged bytes".into())
            ))?;
        }
    }
    match &report.problem {
        None => Ok(ExitCode::SUCCESS),
        Some(p) => Err(CliError::refused(format!(
            "{}: {} at byte offset {}: {}; {} valid record(s) cannot be replayed past it",
            match p.kind {
                ProblemKind::Corruption => "corruption",
                ProblemKind::UnsupportedVersion => "unsupported format",
            },
            p.file.display(),
            p.offset,
            p.reason,
            p.valid_records_after
        ))),
    }
}

pub(super) fn dump(dir: &Path, from: u64, json: bool) -> CliResult {
    require_store(dir)?;
    let mut stdout = std::io::stdout().lock();
    let summary = inspect::dump(&copying(), dir, from, |r: DumpRecord<'_>| -> Result<(), CliError> {
        use std::io::Write;
        let line = match (&r.commands, json) {
            (Ok(commands), true) => json!({
                "lsn": r.lsn,
                "segment": name(r.segment),
                "offset": r.offset,
                "commands": commands.iter().map(command_json).collect::<Vec<_>>(),
            })
            .to_string(),
            (Err(e), true) => {
                json!({"lsn": r.lsn, "segment": name(r.segment), "offset": r.offset, "error": e}).to_string()
            }
            (Ok(commands), false) => format!(
                "LSN {:<8} {} @{:<10} {}",
                r.lsn,
                name(r.segment),
                r.offset,
                commands.iter().map(command_text).collect::<Vec<_>>().join(" | ")
            ),
            (Err(e), false) => format!("LSN {:<8} {} @{:<10} UNDECODABLE: {e}", r.lsn, name(r.segment), r.offset),
        };
        writeln!(stdout, "{line}")?;
        Ok(())
    })?;
    drop(stdout);
    let mut damaged = None;
    for s in &summary.segments {
        match &s.status {
            SegmentStatus::Damaged { offset, reason, valid_after } => {
                damaged.get_or_insert_with(|| {
                    format!(
                        "damage in {} at byte offset {offset}: {reason}; {valid_after} valid record(s) after it not dumped",
                        s.path.display()
                    )
                });
            }
            SegmentStatus::TornTail { offset } => eprintln!(
                "lockwal: note: {} ends in a torn tail at byte offset {offset} (a write in flight, not a record)",
                plain(&name(&s.path))
            ),
            _ => {}
        }
    }
    match damaged {
        Some(message) => Err(CliError::refused(message)),
        None => Ok(ExitCode::SUCCESS),
    }
}
