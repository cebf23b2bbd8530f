//! Errors of the client library and the pool as [`Error::Postgres`], and
//! which of them a transaction may simply be run again after.

use crate::error::Error;
use deadpool_postgres::PoolError;

/// Wraps a client-library error with what the store was doing.
pub(crate) fn pg_error(during: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |e| {
        let sqlstate = e.code().map(|c| c.code().to_owned());
        let message = match e.as_db_error() {
            Some(db) => {
                let mut message = db.message().to_owned();
                if let Some(detail) = db.detail() {
                    message.push_str(" (");
                    message.push_str(detail);
                    message.push(')');
                }
                message
            }
            None => e.to_string(),
        };
        Error::Postgres { during, sqlstate, message }
    }
}

pub(crate) fn pool_error(during: &'static str) -> impl FnOnce(PoolError) -> Error {
    move |e| match e {
        PoolError::Backend(e) => pg_error(during)(e),
        other => Error::Postgres { during, sqlstate: None, message: other.to_string() },
    }
}

/// Deadlock and serialization failures: the transaction was rolled back
/// whole and may simply be run again.
pub(crate) fn retryable(e: &Error) -> bool {
    matches!(e, Error::Postgres { sqlstate: Some(code), .. } if code == "40P01" || code == "40001")
}
