//! A node process of `cluster-torture` (`cluster-torture-child`, hidden):
//! opens the store as its node and runs, until it is killed, `--tasks`
//! tasks of checked grants and releases and one recovery task (reclaims and
//! the end of grace when the node needs grace; takeovers of nodes whose
//! lease expired). Each step is reported on stdout in the line protocol of
//! the module documentation, a line written whole before the next step.

use crate::cli::torture::{Rng, fatal, say};
use lockwal::backend::postgres::{PostgresConfig, PostgresLockStore};
use lockwal::error::ReclaimRefusal;
use lockwal::model::{ByteRange, LockKind, LockType, PersistedLock, RangeFlavor, Timestamp};
use lockwal::{Error, LockStore};
use std::sync::Arc;
use std::time::Duration;

/// The files every node's tasks lock ranges of: few, so grants conflict.
pub(super) const FILES: u64 = 6;

pub(super) fn run(url: &str, schema: &str, node: &str, tasks: u32, seed: u64, lease_ms: u64) -> ! {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap_or_else(|e| fatal(format!("runtime: {e}")));
    rt.block_on(async move {
        let config = PostgresConfig::new(url)
            .with_schema(schema)
            .with_node(node)
            .with_pool_size(tasks as usize + 2)
            .with_lease(Duration::from_millis(lease_ms));
        // Opens until it works: the parent may have cut the connections.
        let store = loop {
            match PostgresLockStore::open(config.clone()).await {
                Ok(store) => break Arc::new(store),
                Err(e @ Error::Postgres { .. }) => {
                    tracing::debug!(error = %e, "retrying the open");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => fatal(format!("open: {e}")),
            }
        };
        let epoch = store.epoch().await.unwrap_or_else(|e| fatal(format!("epoch: {e}")));
        say(&format!("O {epoch} {node}"));
        for task in 0..tasks {
            let store = Arc::clone(&store);
            let node = node.to_owned();
            tokio::spawn(async move { grants(store, &node, epoch, task, seed).await });
        }
        recovery(store, node, epoch, seed).await
    })
}

fn exit_if_fenced(e: &Error) {
    if matches!(e, Error::Fenced { .. } | Error::Closed) {
        say(&format!("X {e}"));
        std::process::exit(3);
    }
}

/// One task: grants on random ranges of the shared files (owner and client
/// `node/task`), releases of its own, forever.
async fn grants(store: Arc<PostgresLockStore>, node: &str, epoch: u64, task: u32, seed: u64) {
    let mut rng = Rng::new(seed ^ (u64::from(task) + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ epoch);
    let owner = format!("{node}/{task}");
    let mut held: Vec<String> = Vec::new();
    for seq in 0u64.. {
        if held.len() >= 8 || (!held.is_empty() && rng.below(3) == 0) {
            let id = held.swap_remove(rng.below(held.len() as u64) as usize);
            say(&format!("r {id}"));
            match store.delete_lock(&id).await {
                Ok(()) => say(&format!("R {id}")),
                // Its own lock, granted in this incarnation: gone only if an
                // earlier try did it (the checker judges).
                Err(Error::NotFound { .. }) => say(&format!("F {id}")),
                Err(e) => {
                    exit_if_fenced(&e);
                    // Not acknowledged: the lock may still be there.
                    held.push(id);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            continue;
        }
        let id = format!("{node}.{epoch}.{task}.{seq}");
        let lock = PersistedLock {
            id: id.clone().into(),
            share: "s".into(),
            file_id: format!("f{}", rng.below(FILES)).into(),
            owner_id: owner.clone().into(),
            client_id: owner.clone().into(),
            kind: LockKind::ByteRange(ByteRange {
                offset: rng.below(64) * 8,
                length: 1 + rng.below(64),
                lock_type: if rng.below(2) == 0 { LockType::Exclusive } else { LockType::Shared },
                zero_byte: false,
                flavor: RangeFlavor::Posix,
            }),
            acquired_at: Timestamp::now(),
            server_epoch: 0,
        };
        say(&format!("g {id} {owner}"));
        match store.grant(lock).await {
            Ok(()) => {
                say(&format!("G {id} {owner}"));
                held.push(id);
            }
            Err(Error::Conflict { .. }) => say(&format!("N {id}")),
            Err(Error::InGrace { .. }) => {
                say(&format!("W {id}"));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => {
                exit_if_fenced(&e);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Every 100 ms: while the node needs grace, reclaim most of what it owns
/// from before its epoch (by the lock's own client) and end the grace;
/// take over, now and then, a node whose lease expired.
async fn recovery(store: Arc<PostgresLockStore>, node: &str, epoch: u64, seed: u64) -> ! {
    let mut rng = Rng::new(seed ^ epoch ^ 0x5851_F42D_4C95_7F2D);
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let status = match store.cluster_status().await {
            Ok(status) => status,
            Err(e) => {
                exit_if_fenced(&e);
                continue;
            }
        };
        let Some(me) = status.nodes.iter().find(|n| n.node == node) else { continue };
        if me.epoch != epoch {
            say(&format!("X fenced: node {node} is at epoch {} now", me.epoch));
            std::process::exit(3);
        }
        if me.need_grace {
            recover(&store, epoch, &mut rng).await;
        }
        for other in &status.nodes {
            let expired = !other.clean && other.renewed_ago > other.lease && !other.lease.is_zero();
            if other.node != node && expired && rng.below(2) == 0 {
                say(&format!("t {}", other.node));
                match store.take_over(&other.node).await {
                    Ok(t) => say(&format!("T {} {} {}", other.node, t.locks, t.fenced_with)),
                    Err(e) => exit_if_fenced(&e),
                }
            }
        }
    }
}

async fn recover(store: &PostgresLockStore, epoch: u64, rng: &mut Rng) {
    let owned = match store.node_locks(store.node()).await {
        Ok(owned) => owned,
        Err(e) => return exit_if_fenced(&e),
    };
    for lock in owned.iter().filter(|l| l.server_epoch < epoch) {
        // A fifth is left to the end of grace.
        if rng.below(5) == 0 {
            continue;
        }
        // Now and then a reclaim by a client that does not hold the lock
        // first: it must be refused.
        if rng.below(8) == 0 {
            say(&format!("c {} intruder", lock.id));
            match store.reclaim(&lock.id, "intruder").await {
                Ok(_) => say(&format!("C {} intruder", lock.id)),
                Err(Error::ReclaimRefused { reason: ReclaimRefusal::WrongClient, .. }) => {
                    say(&format!("V {}", lock.id))
                }
                Err(e) => exit_if_fenced(&e),
            }
        }
        say(&format!("c {}", lock.id));
        match store.reclaim(&lock.id, &lock.client_id).await {
            Ok(_) => say(&format!("C {} {}", lock.id, lock.client_id)),
            Err(e) => exit_if_fenced(&e),
        }
    }
    say("e");
    match store.end_grace().await {
        Ok(removed) => {
            let ids: Vec<&str> = removed.iter().map(|l| &*l.id).collect();
            say(format!("P {}", ids.join(" ")).trim_end());
        }
        Err(e) => exit_if_fenced(&e),
    }
}
