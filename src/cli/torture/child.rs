//! The child writer (`lockwal torture-child`, hidden): opens the store,
//! runs the writer tasks and a compactor until it is killed, and reports
//! each step on stdout in the line protocol that `torture`'s module doc
//! describes (`E`, `I`, `A`, `X`), each line written whole before the next
//! step. Builds on [`super::workload`] only.

use super::workload::{Rng, SLOTS, TaskView, client_id, lock_id, options};
use crate::cli::CliResult;
use clap::Args;
use lockwal::LockStore;
use lockwal::model::ClientKind;
use lockwal::wal::WalLockStore;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

/// Arguments of the hidden child writer.
#[derive(Args, Debug)]
pub struct ChildArgs {
    dir: PathBuf,
    #[arg(long)]
    tasks: u32,
    #[arg(long)]
    seed: u64,
}

/// Writes one protocol line with one `write` (pipe writes up to 4 KiB are
/// atomic, and the lines are shorter), under the stdout lock.
pub(in crate::cli) fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let mut buf = String::with_capacity(line.len() + 1);
    buf.push_str(line);
    buf.push('\n');
    if out.write_all(buf.as_bytes()).and_then(|()| out.flush()).is_err() {
        // The parent is gone: nobody is left to report to.
        std::process::exit(4);
    }
}

pub(in crate::cli) fn fatal(message: String) -> ! {
    say(&format!("X {}", message.replace('\n', " ")));
    std::process::exit(3);
}

async fn run_task(store: Arc<WalLockStore>, task: u32, seed: u64, epoch: u64) {
    let mut rng = Rng::new(seed ^ (u64::from(task) + 1).wrapping_mul(0xA076_1D64_78BD_642F));
    let mut view = TaskView { task, held: BTreeMap::new(), has_client: false, epoch };
    for slot in 0..SLOTS {
        if let Ok(lock) = store.get_lock(&lock_id(task, slot)).await {
            view.held.insert(slot, lock.server_epoch);
        }
    }
    view.has_client = store.get_client(ClientKind::Nfs4, &client_id(task)).await.is_ok();
    for seq in 1.. {
        let ops = view.choose(&mut rng, seq);
        let encoded = serde_json::to_string(&ops).unwrap_or_else(|e| fatal(format!("encoding: {e}")));
        say(&format!("I {task} {seq} {encoded}"));
        match store.transaction(ops.clone()).await {
            Ok(_) => {
                say(&format!("A {task} {seq}"));
                view.applied(&ops);
            }
            Err(e) => fatal(format!("task {task} transaction {seq}: {e}")),
        }
    }
}

/// Compacts every 10 to 60 ms, so kills also land in compactions (snapshot
/// writes, installs, retiring segments) and the log stays short.
async fn compact_now_and_then(store: Arc<WalLockStore>, seed: u64) {
    let mut rng = Rng::new(seed ^ 0xC0FF_EE00);
    loop {
        tokio::time::sleep(Duration::from_millis(10 + rng.below(50))).await;
        if let Err(e) = store.compact().await {
            fatal(format!("compaction: {e}"));
        }
    }
}

/// The child writer: open, report the epoch, write until killed.
pub(crate) fn child(a: ChildArgs) -> CliResult {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fatal(format!("runtime: {e}")));
    runtime.block_on(async move {
        let store = WalLockStore::open(&a.dir, options()).await.unwrap_or_else(|e| fatal(format!("open: {e}")));
        let epoch = store.epoch().await.unwrap_or_else(|e| fatal(format!("epoch: {e}")));
        say(&format!("E {epoch}"));
        let store = Arc::new(store);
        let mut tasks: Vec<_> =
            (0..a.tasks).map(|task| tokio::spawn(run_task(Arc::clone(&store), task, a.seed, epoch))).collect();
        tasks.push(tokio::spawn(compact_now_and_then(Arc::clone(&store), a.seed)));
        for t in tasks {
            if let Err(e) = t.await {
                fatal(format!("task failed: {e}"));
            }
        }
    });
    Ok(ExitCode::SUCCESS)
}
