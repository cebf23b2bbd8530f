//! Operations in a caller's own PostgreSQL transaction
//! ([`PostgresLockStore::transaction_in`]): the fence, the store's
//! `search_path` around the operations, and the caller's restored after.

use super::PostgresLockStore;
use super::error::pg_error;
use super::sql;
use super::write::Txn;
use crate::error::{Error, Result};
use crate::op::{Op, Outcome};
use tokio_postgres::Transaction;

impl PostgresLockStore {
    /// Applies `ops` inside the caller's own PostgreSQL transaction, so that
    /// the caller's statements (a file server's metadata in the same
    /// database) and these operations commit in one `COMMIT`, or not at
    /// all. `tx` must be a transaction on the store's database (a savepoint
    /// of one will do); the caller commits it. Checked grants ([`Op::Grant`])
    /// need `READ COMMITTED` (PostgreSQL's default; else
    /// [`Error::InvalidInput`], `field: "transaction"`, nothing applied):
    /// other operations run at any level, but on a store opened with a node
    /// id a `REPEATABLE READ` or `SERIALIZABLE` transaction whose snapshot
    /// predates the node's last lease renewal fails with SQLSTATE `40001`
    /// (the renewal updated the row the fence locks): retry it.
    ///
    /// Fenced exactly like a multi-operation [`transaction`]: the first
    /// statement share-locks the epoch row in `tx` and checks that it still
    /// holds this handle's epoch, so another node's open waits until `tx`
    /// ends, and if another node has opened since this one, the call fails
    /// with [`Error::Fenced`] and writes nothing (and this handle refuses
    /// every later write). With no operations it only takes the fence: a
    /// transaction of the caller's own statements ordered before or after
    /// every open.
    ///
    /// The operations run with `search_path` set to the store's schema
    /// (`SET LOCAL search_path TO <schema>, pg_temp`): the very statements
    /// of the store's own connections, resolved the same way (tables,
    /// functions and operators alike), with a temporary table of the
    /// caller's session never standing in for one of the store's. The
    /// caller's `search_path` is restored before the call returns `Ok`, so
    /// its own statements after the call resolve as before.
    ///
    /// `tx` is a `tokio_postgres` transaction of the version this crate
    /// re-exports ([`super::tokio_postgres`]); a
    /// `deadpool_postgres::Transaction` derefs to one.
    ///
    /// # Errors
    ///
    /// **Roll `tx` back on any error.** Input that fails validation is
    /// refused with [`Error::InvalidInput`] before anything is sent, `tx` as
    /// it was. Any other error ([`Error::Fenced`], a refused operation such
    /// as [`Error::NotFound`] or [`Error::ConditionFailed`], a database
    /// error) leaves `tx` aborted: this call makes PostgreSQL refuse every
    /// later statement of it, so that neither the operations that did apply
    /// nor the caller's statements can commit (a `COMMIT` of an aborted
    /// transaction rolls it back, and `tokio_postgres` still reports it as
    /// `Ok`). A caller that wants to carry on after a refused operation runs
    /// this in a savepoint of its own and rolls back to it. A deadlock or
    /// serialization failure (`Error::Postgres` with SQLSTATE `40P01` or
    /// `40001`, the latter also for a durable-handle put that keeps losing
    /// races, or any under `REPEATABLE READ`) means: run the whole
    /// transaction again. A transaction on another database than the
    /// store's (told by the database name and the oid of its
    /// `lockwal_meta`) fails with [`Error::InvalidInput`] (`field:
    /// "transaction"`).
    ///
    /// [`transaction`]: crate::LockStore::transaction
    pub async fn transaction_in(&self, tx: &Transaction<'_>, ops: Vec<Op>) -> Result<Vec<Outcome>> {
        crate::op::validate_batch(&ops)?;
        let result = self.try_in(tx, &ops).await;
        if result.is_err() {
            // Fails (harmlessly) when a database error aborted it already.
            let _ = tx
                .batch_execute(
                    "DO $$BEGIN RAISE EXCEPTION 'lockwal: an operation of this transaction failed; roll it back'; \
                     END$$",
                )
                .await;
        }
        result
    }

    async fn try_in(&self, tx: &Transaction<'_>, ops: &[Op]) -> Result<Vec<Outcome>> {
        let core = &*self.core;
        core.check_writable()?;
        let during = "caller transaction";
        let txn = Txn::caller(tx, during);
        // The schema name is a plain identifier (config::validate_schema).
        // pg_temp last: a temporary table of the caller's session with the
        // name of one of the store's must not stand in for it.
        let shown = tx
            .simple_query(&format!("SHOW search_path; SET LOCAL search_path TO {}, pg_temp", core.schema))
            .await
            .map_err(pg_error(during))?;
        let caller_path = shown
            .iter()
            .find_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            })
            .ok_or_else(|| Error::Postgres {
                during,
                sqlstate: None,
                message: "SHOW search_path returned no row".into(),
            })?;
        // The caller's connection is of no node: the rows written here, and
        // the fence, are this handle's node's until the transaction ends.
        tx.query_typed(
            "SELECT set_config('lockwal.node', $1, true)",
            &[(&core.node, tokio_postgres::types::Type::TEXT)],
        )
        .await
        .map_err(pg_error(during))?;
        let row = tx.query_typed(sql::CALLER_FENCE, &[]).await.map_err(pg_error(during))?;
        let row = row.first().ok_or_else(|| Error::Postgres {
            during,
            sqlstate: None,
            message: "lockwal_nodes has no row for this node".into(),
        })?;
        let (database, meta, isolation): (String, u32, String) = (row.get(2), row.get(3), row.get(4));
        if (database.as_str(), meta) != (core.identity.0.as_str(), core.identity.1) {
            return Err(Error::InvalidInput {
                field: "transaction",
                reason: format!(
                    "it is on database {database:?} (lockwal_meta oid {meta}), the store on database {:?} \
                     (lockwal_meta oid {}) in schema {}",
                    core.identity.0, core.identity.1, core.schema
                ),
            });
        }
        // A checked grant judges the file's locks after taking the file's
        // advisory lock; under a snapshot older than that lock it would not
        // see a conflicting grant committed meanwhile (regression
        // `a_checked_grant_in_a_repeatable_read_transaction_is_refused`).
        if isolation != "read committed" && ops.iter().any(|op| matches!(op, Op::Grant(_))) {
            return Err(Error::InvalidInput {
                field: "transaction",
                reason: format!(
                    "checked grants need a READ COMMITTED transaction (this one is {}): under an older snapshot \
                     the conflict check could miss a grant committed meanwhile",
                    isolation.to_uppercase()
                ),
            });
        }
        core.check_fence(row)?;
        let outcomes = core.apply_all(&txn, ops).await?;
        tx.query_typed(
            "SELECT set_config('search_path', $1, true)",
            &[(&caller_path, tokio_postgres::types::Type::TEXT)],
        )
        .await
        .map_err(pg_error(during))?;
        Ok(outcomes)
    }
}
