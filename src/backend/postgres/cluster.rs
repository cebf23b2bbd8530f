//! The nodes that share one database: what each is ([`NodeStatus`]) and
//! what it owns, for operators (`lockwal cluster status`) and tests.
//!
//! A node is a row of `lockwal_nodes` (migration 5): its incarnation's
//! epoch, which fences the previous handle of that node and no other, and
//! whether that incarnation shut down cleanly. Every lock, client record
//! and durable handle carries the node that last wrote it (`node_id`, the
//! connection's `lockwal.node`: see `config.rs`).

use super::error::pg_error;
use super::{PostgresLockStore, epoch_from_sql, sql};
use crate::error::Result;
use crate::model::Timestamp;

/// One node of the cluster as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeStatus {
    /// The node id (`""`: a store opened without one).
    pub node: String,
    /// The epoch of the node's newest incarnation.
    pub epoch: u64,
    /// That incarnation called `close` (false while it is open, and after a
    /// crash).
    pub clean: bool,
    /// When that incarnation opened, by the database's clock.
    pub opened_at: Timestamp,
    /// The node's clients must reclaim: the cluster stays in grace until
    /// it ends its grace.
    pub need_grace: bool,
    /// The locks, client records and durable handles the node owns.
    pub locks: u64,
    /// See [`locks`](Self::locks).
    pub clients: u64,
    /// See [`locks`](Self::locks).
    pub handles: u64,
}

/// Every node of the cluster, by node id, and the cluster's newest epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    /// The newest epoch any node has opened with.
    pub epoch: u64,
    /// 0 when no grace period is in force; else the epoch of the open that
    /// started it. While it is not 0 every checked grant is refused.
    pub recovery_epoch: u64,
    /// The nodes in node id order.
    pub nodes: Vec<NodeStatus>,
}

impl PostgresLockStore {
    /// The nodes sharing this store's database and what each owns. Works on
    /// a read-only handle.
    pub async fn cluster_status(&self) -> Result<ClusterStatus> {
        let core = &*self.core;
        core.check_open()?;
        let during = "reading the cluster's nodes";
        let conn = core.conn(during).await?;
        let meta = conn.query_one(sql::CLUSTER_EPOCH, &[]).await.map_err(pg_error(during))?;
        let rows = conn.query(sql::CLUSTER_NODES, &[]).await.map_err(pg_error(during))?;
        let count = |v: i64| v.max(0) as u64;
        let nodes = rows
            .iter()
            .map(|row| {
                Ok(NodeStatus {
                    node: row.get(0),
                    epoch: epoch_from_sql(row.get(1), during)?,
                    clean: row.get(2),
                    opened_at: Timestamp::from_unix_micros(row.get(3)),
                    need_grace: row.get(4),
                    locks: count(row.get(5)),
                    clients: count(row.get(6)),
                    handles: count(row.get(7)),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(ClusterStatus {
            epoch: epoch_from_sql(meta.get(0), during)?,
            recovery_epoch: epoch_from_sql(meta.get(1), during)?,
            nodes,
        })
    }
}
