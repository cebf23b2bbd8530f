//! The nodes that share one database: what each is ([`NodeStatus`]) and
//! what it owns, for operators (`lockwal cluster status`) and tests.
//!
//! A node is a row of `lockwal_nodes` (migration 5): its incarnation's
//! epoch, which fences the previous handle of that node and no other, and
//! whether that incarnation shut down cleanly. Every lock, client record
//! and durable handle carries the node that last wrote it (`node_id`, the
//! connection's `lockwal.node`: see `config.rs`).

use super::error::pg_error;
use super::{Core, PostgresConfig, PostgresLockStore, epoch_from_sql, sql};
use crate::error::{Entity, Error, Result};
use crate::model::Timestamp;
use std::sync::{Arc, Weak};
use std::time::Duration;

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
    /// The node's lease (zero: none, node `''`).
    pub lease: Duration,
    /// How long ago the lease was last renewed, by the database's clock.
    pub renewed_ago: Duration,
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
                    lease: Duration::from_millis(count(row.get(5))),
                    renewed_ago: Duration::from_micros(count(row.get(6))),
                    locks: count(row.get(7)),
                    clients: count(row.get(8)),
                    handles: count(row.get(9)),
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

/// What a takeover moved to the surviving node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Takeover {
    /// The node taken over.
    pub node: String,
    /// The fresh epoch its row now holds (its old handle is fenced).
    pub fenced_with: u64,
    /// The locks, client records and durable handles now the survivor's.
    pub locks: u64,
    /// See [`locks`](Self::locks).
    pub clients: u64,
    /// See [`locks`](Self::locks).
    pub handles: u64,
    /// The cluster's recovery epoch after the takeover (0: no grace).
    pub recovery_epoch: u64,
}

impl PostgresLockStore {
    /// Takes over `node` (IP failover): this node fences it and becomes the
    /// owner of its locks, client records and durable handles, so that its
    /// clients reclaim here under a grace period this node then needs (it
    /// ends it with `end_grace`, which removes what they did not reclaim).
    /// Refused with [`Error::NodeLive`] while the node's incarnation is open
    /// and its lease has not expired, and with `NotFound` for a node that
    /// never opened; nothing changes then. One transaction: a crash at any
    /// point leaves the node whole or taken over. If the node comes back, its
    /// old handle is fenced and its next open is a new incarnation that owns
    /// nothing and reports a clean previous shutdown.
    pub async fn take_over(&self, node: &str) -> Result<Takeover> {
        let core = &*self.core;
        core.check_writable()?;
        if node == core.node {
            return Err(Error::InvalidInput { field: "node", reason: format!("{node:?} is this node") });
        }
        // Node '' never takes part in the cluster's grace: it could not end
        // one it needed after taking a node over (regression
        // `node_without_an_id_cannot_take_over`).
        if core.node.is_empty() {
            return Err(Error::InvalidInput {
                field: "node",
                reason: "taking over needs a node id: a store opened without one does not take part in the \
                         cluster's grace"
                    .into(),
            });
        }
        super::config::validate_node(node)?;
        let during = "taking over a node";
        let mut conn = core.conn(during).await?;
        let tx = conn.transaction().await.map_err(pg_error(during))?;
        let e = pg_error(during);
        tx.batch_execute(sql::OPEN_LOCK).await.map_err(e)?;
        core.check_fence(&tx.query_one(sql::FENCE, &[]).await.map_err(pg_error(during))?)?;
        require_gone(&tx, node, during).await?;
        let fenced_with: i64 = tx.query_one(sql::OPEN_BUMP, &[]).await.map_err(pg_error(during))?.get(0);
        tx.execute(sql::TAKEOVER_FENCE, &[&node, &fenced_with]).await.map_err(pg_error(during))?;
        let before_ours = core.epoch_sql - 1;
        let locks = tx.execute(sql::TAKEOVER_LOCKS, &[&node, &before_ours]).await.map_err(pg_error(during))?;
        let clients = tx.execute(sql::TAKEOVER_CLIENTS, &[&node]).await.map_err(pg_error(during))?;
        let handles = tx.execute(sql::TAKEOVER_HANDLES, &[&node]).await.map_err(pg_error(during))?;
        let needed: bool = tx.query_one(sql::NEEDS_GRACE, &[]).await.map_err(pg_error(during))?.get(0);
        let need = needed || locks + clients + handles > 0;
        let recovery_epoch = super::write::set_need_grace(&tx, need, fenced_with, during).await?;
        tx.commit().await.map_err(pg_error(during))?;
        let takeover = Takeover {
            node: node.to_owned(),
            fenced_with: epoch_from_sql(fenced_with, during)?,
            locks,
            clients,
            handles,
            recovery_epoch: epoch_from_sql(recovery_epoch, during)?,
        };
        tracing::warn!(schema = %core.schema, by = %core.node, ?takeover, "lockwal: took over a node");
        Ok(takeover)
    }
}

impl PostgresLockStore {
    /// The locks `node` owns (the node that last wrote each), by id: what a
    /// node's clients may reclaim after it restarted or took another node
    /// over. Works on a read-only handle.
    pub async fn node_locks(&self, node: &str) -> Result<Vec<crate::model::PersistedLock>> {
        self.core.check_open()?;
        let during = "listing a node's locks";
        let conn = self.core.conn(during).await?;
        let rows = conn.query(&*sql::NODE_LOCKS, &[&node]).await.map_err(pg_error(during))?;
        rows.iter().map(super::codec::decode_lock).collect()
    }

    /// Removes `node` from the cluster (an operator's `lockwal cluster
    /// remove`): only a node that is not open (closed, taken over, or its
    /// lease expired: else [`Error::NodeLive`]) and owns nothing (else
    /// `InvalidInput`: take it over first); a grace period it alone needed
    /// ends. Fences no one. A removed node may open again later, as a node
    /// that never opened.
    pub async fn remove_node(config: &PostgresConfig, node: &str) -> Result<()> {
        super::config::validate_node(node)?;
        let during = "removing a node";
        let mut client = config.connect().await?;
        super::migrate::require_current(&client, &config.schema).await?;
        let tx = client.transaction().await.map_err(pg_error(during))?;
        tx.batch_execute(sql::OPEN_LOCK).await.map_err(pg_error(during))?;
        require_gone(&tx, node, during).await?;
        let owns = tx.query_one(sql::NODE_OWNS, &[&node]).await.map_err(pg_error(during))?;
        let (locks, clients, handles): (i64, i64, i64) = (owns.get(0), owns.get(1), owns.get(2));
        if locks + clients + handles > 0 {
            return Err(Error::InvalidInput {
                field: "node",
                reason: format!(
                    "{node:?} owns {locks} locks, {clients} client records and {handles} durable handles: \
                     a live node must take it over first"
                ),
            });
        }
        tx.execute(sql::REMOVE_NODE, &[&node]).await.map_err(pg_error(during))?;
        tx.execute(sql::LIFT_IF_UNNEEDED, &[]).await.map_err(pg_error(during))?;
        tx.commit().await.map_err(pg_error(during))?;
        tracing::warn!(schema = %config.schema, node, "lockwal: removed a node");
        Ok(())
    }
}

/// Refuses, inside a transaction holding the `lockwal_nodes` table lock, a
/// node that never opened (`NotFound`), one whose incarnation is open with
/// an unexpired lease (`NodeLive`), and node '' unless it closed cleanly:
/// it has no lease, so nothing tells a live one from a dead one
/// (`InvalidInput`; regression `an_open_node_without_an_id_is_not_taken_over`).
/// What a takeover and a removal need.
async fn require_gone(tx: &tokio_postgres::Transaction<'_>, node: &str, during: &'static str) -> Result<()> {
    let row = tx
        .query_opt(sql::TAKEOVER_READ, &[&node])
        .await
        .map_err(pg_error(during))?
        .ok_or_else(|| Error::NotFound { entity: Entity::Node, id: node.to_owned() })?;
    let (clean, left_us): (bool, i64) = (row.get(1), row.get(2));
    if !clean && node.is_empty() {
        return Err(Error::InvalidInput {
            field: "node",
            reason: "node \"\" (a store opened without a node id) has no lease and did not close cleanly: it may \
                     still be serving; close it, or open it once more and close it"
                .into(),
        });
    }
    if !clean && left_us > 0 {
        return Err(Error::NodeLive { node: node.to_owned(), expires_in_ms: (left_us as u64).div_ceil(1000) });
    }
    Ok(())
}

/// How often [`PostgresLockStore::watch_grace`] reads the recovery epoch
/// even without a notification: the bound on how late a change is seen if
/// a notification is lost with its connection.
pub const GRACE_POLL: Duration = Duration::from_secs(1);

impl PostgresLockStore {
    /// The cluster's recovery epoch as it changes (0: no grace period),
    /// for a server that must answer "in grace" (NFS4ERR_GRACE,
    /// NLM4_DENIED_GRACE_PERIOD) to requests the store does not see. Fed by
    /// a connection of its own that LISTENs on `lockwal_grace` (each change
    /// is notified by the transaction that makes it, when it commits) and
    /// reads the epoch again every [`GRACE_POLL`] and after each reconnect.
    /// The checked grants never depend on it: the database refuses them in
    /// grace whether or not this node has heard. Starts on the first call;
    /// stops when the handle closes or is dropped.
    pub async fn watch_grace(&self) -> Result<tokio::sync::watch::Receiver<u64>> {
        let core = &*self.core;
        core.check_open()?;
        let mut watcher = core.grace_watch.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((rx, _)) = &*watcher {
            return Ok(rx.clone());
        }
        let (tx, rx) = tokio::sync::watch::channel(0);
        let (config, schema) = (core.listen.clone(), core.schema.clone());
        let task = tokio::spawn(async move { watch(config, schema, tx).await });
        *watcher = Some((rx.clone(), task.abort_handle()));
        Ok(rx)
    }
}

/// Keeps `tx` at the schema's recovery epoch until every receiver is gone.
async fn watch(config: tokio_postgres::Config, schema: String, tx: tokio::sync::watch::Sender<u64>) {
    use tokio_postgres::AsyncMessage;
    let mut backoff = Duration::from_millis(50);
    while !tx.is_closed() {
        let Ok((client, mut connection)) = config.connect(tokio_postgres::NoTls).await else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(GRACE_POLL);
            continue;
        };
        backoff = Duration::from_millis(50);
        let (heard, mut hear) = tokio::sync::mpsc::unbounded_channel();
        let driver = tokio::spawn(async move {
            while let Some(Ok(message)) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                if let AsyncMessage::Notification(n) = message
                    && heard.send(n.payload().to_owned()).is_err()
                {
                    return;
                }
            }
        });
        let read = async |client: &tokio_postgres::Client| {
            let row = client.query_one("SELECT recovery_epoch FROM lockwal_meta", &[]).await?;
            Ok::<u64, tokio_postgres::Error>(row.get::<_, i64>(0).max(0) as u64)
        };
        let set = |r: u64| {
            tx.send_if_modified(|now| std::mem::replace(now, r) != r);
        };
        if client.batch_execute("LISTEN lockwal_grace").await.is_ok() {
            loop {
                match read(&client).await {
                    Ok(r) => set(r),
                    Err(_) => break,
                }
                tokio::select! {
                    payload = hear.recv() => match payload {
                        Some(payload) => {
                            if let Some((s, r)) = payload.split_once(' ')
                                && s == schema
                                && let Ok(r) = r.parse()
                            {
                                set(r);
                            }
                        }
                        None => break,
                    },
                    () = tokio::time::sleep(GRACE_POLL) => {}
                    () = tx.closed() => break,
                }
            }
        }
        driver.abort();
    }
}

impl Core {
    /// Renews the lease every third of `lease_ms` until the handle closes,
    /// is dropped or is fenced (the renewal then finds no row and latches
    /// the fence). A failed renewal is logged and tried again.
    pub(super) fn start_renewing(self: &Arc<Self>, lease_ms: i64) {
        let every = Duration::from_millis((lease_ms as u64 / 3).max(1));
        let core: Weak<Core> = Arc::downgrade(self);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick.tick().await; // the open renewed it
            loop {
                tick.tick().await;
                let Some(core) = core.upgrade() else { return };
                if core.check_writable().is_err() {
                    return;
                }
                match core.renew().await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => tracing::warn!(schema = %core.schema, node = %core.node, error = %e,
                        "lockwal: could not renew the node's lease"),
                }
            }
        });
        *self.renewer.lock().unwrap_or_else(|p| p.into_inner()) = Some(task.abort_handle());
    }

    /// Stops the lease's renewal and the grace watch.
    pub(super) fn stop_renewing(&self) {
        if let Some(task) = self.renewer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
        if let Some((_, task)) = self.grace_watch.lock().unwrap_or_else(|p| p.into_inner()).take() {
            task.abort();
        }
    }

    /// One renewal: false when the incarnation was fenced or closed (the
    /// fence is latched then).
    async fn renew(&self) -> Result<bool> {
        let during = "renewing the lease";
        let conn = self.conn(during).await?;
        match conn.execute(sql::RENEW_LEASE, &[&self.epoch_sql]).await.map_err(pg_error(during))? {
            0 => {
                let _ = self.fenced(&conn).await;
                Ok(false)
            }
            _ => Ok(true),
        }
    }
}
