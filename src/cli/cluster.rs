//! `lockwal cluster status`: the nodes sharing one PostgreSQL store, read
//! without bumping any epoch (a read-only open fences no one).

use super::CliResult;
#[cfg(feature = "postgres")]
use super::{out, out_json, runtime};
use clap::{Args, Subcommand};

#[derive(Subcommand, Debug)]
pub(super) enum ClusterCmd {
    /// The grace state, and every node: its epoch, whether it shut down cleanly, whether it needs
    /// grace, when it opened, what it owns (read-only)
    Status(StoreArgs),
    /// End the cluster's grace period for every node now, removing nothing (for a node that needs
    /// grace and will not come back); fences no one
    Lift(StoreArgs),
    /// Remove a node that is not open and owns nothing (a live node takes over a dead one's state
    /// first); ends a grace period only it needed; fences no one
    Remove(RemoveArgs),
}

#[derive(Args, Debug)]
pub(super) struct RemoveArgs {
    /// The node id
    node: String,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args, Debug)]
pub(super) struct StoreArgs {
    /// The PostgreSQL store (needs a build with `--features postgres`)
    #[arg(long, value_name = "URL")]
    url: String,
    /// The PostgreSQL schema that holds the store
    #[arg(long, value_name = "NAME", default_value = "public")]
    schema: String,
    /// Print JSON (field names are documented in the README)
    #[arg(long)]
    json: bool,
}

pub(super) fn run(cmd: ClusterCmd) -> CliResult {
    match cmd {
        ClusterCmd::Status(a) => status(a),
        ClusterCmd::Lift(a) => lift(a),
        ClusterCmd::Remove(a) => remove(a),
    }
}

#[cfg(feature = "postgres")]
fn lift(a: StoreArgs) -> CliResult {
    use lockwal::backend::postgres::{PostgresConfig, PostgresLockStore};
    let rt = runtime()?;
    let config = PostgresConfig::new(&a.url).with_schema(&a.schema).with_pool_size(1);
    let ended = rt.block_on(PostgresLockStore::lift_cluster_grace(&config))?;
    if a.json {
        out_json(&serde_json::json!({ "schema": a.schema, "ended_recovery_epoch": ended }))?;
    } else if ended == 0 {
        out(format_args!("no grace period was in force"))?;
    } else {
        out(format_args!("lifted the grace period of recovery epoch {ended}"))?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(not(feature = "postgres"))]
fn lift(_a: StoreArgs) -> CliResult {
    Err(no_postgres())
}

#[cfg(feature = "postgres")]
fn remove(a: RemoveArgs) -> CliResult {
    use lockwal::backend::postgres::{PostgresConfig, PostgresLockStore};
    let rt = runtime()?;
    let config = PostgresConfig::new(&a.store.url).with_schema(&a.store.schema).with_pool_size(1);
    rt.block_on(PostgresLockStore::remove_node(&config, &a.node))?;
    if a.store.json {
        out_json(&serde_json::json!({ "schema": a.store.schema, "removed": a.node }))?;
    } else {
        out(format_args!("removed node {}", a.node))?;
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(not(feature = "postgres"))]
fn remove(_a: RemoveArgs) -> CliResult {
    Err(no_postgres())
}

#[cfg(feature = "postgres")]
fn status(a: StoreArgs) -> CliResult {
    use lockwal::LockStore;
    use lockwal::backend::postgres::{PostgresConfig, PostgresLockStore};
    use serde_json::json;
    let rt = runtime()?;
    let config = PostgresConfig::new(&a.url).with_schema(&a.schema).with_pool_size(1);
    let status = rt.block_on(async {
        let store = PostgresLockStore::open_read_only(config).await?;
        let status = store.cluster_status().await;
        store.close().await?;
        status
    })?;
    let now = lockwal::model::Timestamp::now().unix_micros;
    let age = |opened: i64| (now - opened).max(0) as f64 / 1e6;
    if a.json {
        let nodes: Vec<_> = status
            .nodes
            .iter()
            .map(|n| {
                json!({
                    "node": n.node,
                    "epoch": n.epoch,
                    "clean_shutdown": n.clean,
                    "need_grace": n.need_grace,
                    "lease_ms": n.lease.as_millis() as u64,
                    "renewed_ms_ago": n.renewed_ago.as_millis() as u64,
                    "opened_at_unix_micros": n.opened_at.unix_micros,
                    "locks": n.locks,
                    "clients": n.clients,
                    "handles": n.handles,
                })
            })
            .collect();
        out_json(&json!({
            "schema": a.schema,
            "epoch": status.epoch,
            "recovery_epoch": status.recovery_epoch,
            "nodes": nodes,
        }))?;
    } else {
        out(format_args!("store   PostgreSQL schema {}", a.schema))?;
        out(format_args!("epoch   {} (the newest any node opened with)", status.epoch))?;
        match status.recovery_epoch {
            0 => out(format_args!("grace   none"))?,
            r => out(format_args!("grace   in force since epoch {r}: checked grants are refused"))?,
        }
        out(format_args!(
            "{:<16} {:>8} {:<14} {:>12} {:>16} {:>10} {:>8} {:>8}",
            "node", "epoch", "state", "opened", "lease renewed", "locks", "clients", "handles"
        ))?;
        for n in &status.nodes {
            let name = if n.node.is_empty() { "(none)" } else { &n.node };
            let state = match (n.clean, n.need_grace) {
                (true, false) => "closed",
                (true, true) => "closed, grace",
                (false, false) => "open/unclean",
                (false, true) => "open, grace",
            };
            let opened = format!("{:.0} s ago", age(n.opened_at.unix_micros));
            let lease = match n.lease.as_millis() {
                0 => "-".to_owned(),
                ms => format!("{:.1}/{:.1} s", n.renewed_ago.as_secs_f64(), ms as f64 / 1e3),
            };
            out(format_args!(
                "{name:<16} {:>8} {state:<14} {opened:>12} {lease:>16} {:>10} {:>8} {:>8}",
                n.epoch, n.locks, n.clients, n.handles
            ))?;
        }
    }
    Ok(std::process::ExitCode::SUCCESS)
}

#[cfg(not(feature = "postgres"))]
fn status(_a: StoreArgs) -> CliResult {
    Err(no_postgres())
}

#[cfg(not(feature = "postgres"))]
fn no_postgres() -> super::CliError {
    super::CliError::unusable(
        "cluster needs the PostgreSQL backend, and this lockwal was built without it: \
         build with `cargo build --release --features postgres`",
    )
}
