//! The `lockwal` command line: argument parsing, exit codes and output. Each
//! subcommand is a thin layer over the library (`lockwal::wal::inspect` for
//! verify, dump and repair).
//!
//! Exit status: 0 success; 1 a failed check or a refused operation (not
//! found, corruption found by `verify`, store locked by another writer,
//! nothing to repair, torture lost an acknowledged write); 2 a usage error or
//! an unusable store (missing directory, corruption found while opening,
//! unsupported format version, I/O error).

mod bench;
mod cluster;
#[cfg(feature = "postgres")]
mod cluster_torture;
mod fs;
mod read;
mod show;
mod torture;
mod write;

use clap::{Args, Parser, Subcommand, ValueEnum};
use lockwal::Error;
use lockwal::model::KindFilter;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// Inspect, verify, repair, compact and script a lockwal store.
#[derive(Parser, Debug)]
#[command(name = "lockwal", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Summary of a store: epoch, counts, log size, snapshot, last LSN, clean shutdown (read-only);
    /// `--watch` refreshes it
    Stat(StatCmdArgs),
    /// Locks matching every given filter, sorted by id (read-only)
    List(ListArgs),
    /// Client records, sorted by client id (read-only)
    Clients(StatArgs),
    /// SMB durable handles, sorted by id (read-only)
    Handles(HandlesArgs),
    /// The records of one keyspace in key order, keys and values in hex (read-only)
    Records(RecordsArgs),
    /// Every log record with its LSN, segment and byte offset (read-only)
    Dump(DumpArgs),
    /// Check every segment and snapshot; exit 1 on corruption (read-only)
    Verify(JsonArgs),
    /// Create an empty store
    Init(DirArgs),
    /// Grant a byte-range lock; exits 0 once it is durable
    Grant(GrantArgs),
    /// Release a lock; exit 1 when there is no such lock
    Release(ReleaseArgs),
    /// Write a snapshot and retire the log it covers
    Compact(JsonArgs),
    /// Cut a corrupt store back to its longest replayable prefix, keeping backups
    Repair(RepairArgs),
    /// Kill -9 torture: kill a writer process at random moments and verify every acknowledged write
    Torture(torture::TortureArgs),
    /// Measure durable grant/release throughput and latency, or restore time, on this disk
    Bench(bench::BenchArgs),
    /// The nodes sharing one PostgreSQL store
    #[command(subcommand)]
    Cluster(cluster::ClusterCmd),
    /// Several node processes on one PostgreSQL store, SIGKILLed, taken over and disconnected at
    /// random, checked throughout (needs `--features postgres`)
    #[cfg(feature = "postgres")]
    ClusterTorture(cluster_torture::ClusterTortureArgs),
    /// A node process that `cluster-torture` spawns and kills
    #[cfg(feature = "postgres")]
    #[command(hide = true)]
    ClusterTortureChild(cluster_torture::ClusterChildArgs),
    /// The writer process that `torture` spawns and kills
    #[command(hide = true)]
    TortureChild(torture::ChildArgs),
}

#[derive(Args, Debug)]
struct DirArgs {
    /// The store directory
    dir: PathBuf,
}

/// Where a read-only command reads: a store directory, or (`--url`) a
/// PostgreSQL store.
#[derive(Args, Debug)]
struct SourceArgs {
    /// The store directory
    #[arg(required_unless_present = "url", conflicts_with = "url")]
    dir: Option<PathBuf>,
    /// Read the PostgreSQL store at this URL instead of a directory (without
    /// bumping its epoch; needs a build with `--features postgres`)
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// The PostgreSQL schema that holds the store [default: public]
    #[arg(long, value_name = "NAME", requires = "url")]
    schema: Option<String>,
}

#[derive(Args, Debug)]
struct StatArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Print JSON (field names are documented in the README)
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct StatCmdArgs {
    #[command(flatten)]
    stat: StatArgs,
    /// Read the store again every SECONDS (default 2) and show the live figures, refreshed in
    /// place on a terminal (one JSON line per reading with --json); works while a server has the
    /// store open. Needs DIR
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "2")]
    watch: Option<f64>,
    /// Stop after N readings (with --watch)
    #[arg(long, value_name = "N", requires = "watch")]
    count: Option<u64>,
}

#[derive(Args, Debug)]
struct JsonArgs {
    /// The store directory
    dir: PathBuf,
    /// Print JSON (field names are documented in the README)
    #[arg(long)]
    json: bool,
}

#[derive(Copy, Clone, Debug, ValueEnum)]
enum Kind {
    ByteRange,
    Share,
    Lease,
    Delegation,
}

impl From<Kind> for KindFilter {
    fn from(k: Kind) -> Self {
        match k {
            Kind::ByteRange => KindFilter::ByteRange,
            Kind::Share => KindFilter::Share,
            Kind::Lease => KindFilter::Lease,
            Kind::Delegation => KindFilter::Delegation,
        }
    }
}

#[derive(Args, Debug)]
struct ListArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Only locks on this file id
    #[arg(long)]
    file: Option<String>,
    /// Only locks of this owner id
    #[arg(long)]
    owner: Option<String>,
    /// Only locks of this client id
    #[arg(long)]
    client: Option<String>,
    /// Only locks on this share
    #[arg(long)]
    share: Option<String>,
    /// Only locks of this kind
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    /// Every kind but this one
    #[arg(long, value_enum)]
    not_kind: Option<Kind>,
    /// Only leases with this lease key (32 hex digits)
    #[arg(long, value_parser = parse_lease_key)]
    lease_key: Option<lockwal::model::LeaseKey>,
    /// Print one JSON array
    #[arg(long)]
    json: bool,
}

fn parse_lease_key(text: &str) -> Result<lockwal::model::LeaseKey, String> {
    let bytes: Option<Vec<u8>> = (text.len() == 32 && text.is_ascii())
        .then(|| (0..16).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()).collect())
        .flatten();
    bytes.and_then(|b| b.try_into().ok()).ok_or_else(|| format!("{text:?} is not 32 hex digits"))
}

#[derive(Args, Debug)]
struct HandlesArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Only handles on this share
    #[arg(long)]
    share: Option<String>,
    /// Print one JSON array
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct RecordsArgs {
    /// The store directory
    dir: PathBuf,
    /// The keyspace (ASCII letters, digits, '_', '-', '.'; starts with a letter or digit)
    space: String,
    /// Only keys that start with the UTF-8 bytes of this text
    #[arg(long, value_name = "TEXT", conflicts_with = "prefix_hex")]
    prefix: Option<String>,
    /// Only keys that start with these bytes, in hex (an even number of hex digits)
    #[arg(long, value_name = "HEX", value_parser = parse_hex)]
    prefix_hex: Option<Bytes>,
    /// Print one JSON array
    #[arg(long)]
    json: bool,
}

/// One option value of bytes (`Option<Vec<u8>>` would tell clap "many
/// values of `u8`").
type Bytes = Vec<u8>;

/// Bytes written as hex digits, two per byte, either case.
fn parse_hex(text: &str) -> Result<Bytes, String> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{text:?} is not an even number of hex digits"));
    }
    (0..text.len() / 2).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())).collect()
}

#[derive(Args, Debug)]
struct DumpArgs {
    /// The store directory
    dir: PathBuf,
    /// Start at this LSN
    #[arg(long, value_name = "LSN", default_value_t = 0)]
    from: u64,
    /// Print one JSON object per record, one per line
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct GrantArgs {
    /// The store directory
    dir: PathBuf,
    /// Lock id (the primary key; an existing lock with this id is replaced)
    #[arg(long)]
    id: String,
    /// Share (export)
    #[arg(long)]
    share: String,
    /// File id (opaque file handle)
    #[arg(long)]
    file: String,
    /// Owner id
    #[arg(long)]
    owner: String,
    /// Client id
    #[arg(long)]
    client: String,
    /// An exclusive (write) lock; shared (read) without it
    #[arg(long)]
    exclusive: bool,
    /// First byte of the range
    #[arg(long, default_value_t = 0)]
    offset: u64,
    /// Bytes in the range; 0 means to the end of the file
    #[arg(long, default_value_t = 0)]
    length: u64,
    /// Print the stored lock as JSON (the shape of `list --json` elements)
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct ReleaseArgs {
    /// The store directory
    dir: PathBuf,
    /// Lock id
    #[arg(long)]
    id: String,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct RepairArgs {
    /// The store directory
    dir: PathBuf,
    /// Make the cuts (without it, only show them)
    #[arg(long)]
    yes: bool,
    /// With --yes: also make cuts that drop more than the damage itself
    /// (valid records after it, or a snapshot with every lock it holds)
    #[arg(long, requires = "yes")]
    accept_loss: bool,
    /// Print JSON
    #[arg(long)]
    json: bool,
}

/// A failure of a command: its exit status and the one line to print (none
/// when the output simply went to a closed pipe).
#[derive(Debug)]
pub struct CliError {
    code: u8,
    message: Option<String>,
}

impl CliError {
    /// Exit status 1: a failed check or a refused operation.
    fn refused(message: impl Into<String>) -> Self {
        Self { code: 1, message: Some(message.into()) }
    }

    /// Exit status 2: a usage error or an unusable store.
    fn unusable(message: impl Into<String>) -> Self {
        Self { code: 2, message: Some(message.into()) }
    }
}

/// The exit status for a library error.
fn error_code(e: &Error) -> u8 {
    match e {
        Error::NotFound { .. }
        | Error::Locked { .. }
        | Error::ReclaimRefused { .. }
        | Error::InGrace { .. }
        | Error::NodeLive { .. }
        | Error::ReadOnly { .. }
        | Error::Fenced { .. }
        | Error::Poisoned { .. }
        | Error::RepairRefused { .. }
        | Error::Closed => 1,
        _ => 2,
    }
}

impl From<Error> for CliError {
    fn from(e: Error) -> Self {
        Self { code: error_code(&e), message: Some(one_line(&e.to_string())) }
    }
}

impl From<std::io::Error> for CliError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            // `lockwal dump DIR | head`: the reader has what it wanted.
            return Self { code: 0, message: None };
        }
        Self::unusable(format!("writing output: {e}"))
    }
}

/// Errors print as one line.
fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// What a command returns.
type CliResult = Result<ExitCode, CliError>;

/// Prints a line to stdout.
fn out(line: impl std::fmt::Display) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{line}")?;
    Ok(())
}

/// Prints a JSON value as one compact line.
fn out_json(value: &serde_json::Value) -> Result<(), CliError> {
    out(value)
}

/// A runtime for the async store API.
fn runtime() -> Result<tokio::runtime::Runtime, CliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CliError::unusable(format!("starting the runtime: {e}")))
}

/// Parses the arguments, runs the command, prints errors as one line on
/// stderr, and returns the exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Stat(StatCmdArgs { stat, watch: None, .. }) => read::stat(&stat.source, stat.json),
        Cmd::Stat(StatCmdArgs { stat, watch: Some(every), count }) => {
            read::watch(&stat.source, stat.json, every, count)
        }
        Cmd::List(a) => read::list(a),
        Cmd::Clients(a) => read::clients(&a.source, a.json),
        Cmd::Handles(a) => read::handles(&a.source, a.share, a.json),
        Cmd::Records(a) => read::records(a),
        Cmd::Dump(a) => read::dump(&a.dir, a.from, a.json),
        Cmd::Verify(a) => read::verify(&a.dir, a.json),
        Cmd::Init(a) => write::init(&a.dir),
        Cmd::Grant(a) => write::grant(a),
        Cmd::Release(a) => write::release(&a.dir, &a.id, a.json),
        Cmd::Compact(a) => write::compact(&a.dir, a.json),
        Cmd::Repair(a) => write::repair(&a.dir, a.yes, a.accept_loss, a.json),
        Cmd::Torture(a) => torture::run(a),
        Cmd::Bench(a) => bench::bench(a),
        Cmd::Cluster(c) => cluster::run(c),
        #[cfg(feature = "postgres")]
        Cmd::ClusterTorture(a) => cluster_torture::run(a),
        #[cfg(feature = "postgres")]
        Cmd::ClusterTortureChild(a) => cluster_torture::child(a),
        Cmd::TortureChild(a) => torture::child(a),
    };
    match result {
        Ok(code) => code,
        Err(CliError { code, message }) => {
            if let Some(message) = message {
                eprintln!("lockwal: {message}");
            }
            ExitCode::from(code)
        }
    }
}
