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

/// The unique constraints a durable-handle put can violate under a race:
/// another transaction put a handle with the same file id or create GUID
/// after this one checked for it.
const HANDLE_KEYS: [(&str, &str); 2] =
    [("lockwal_handles_file_id_key", "file id"), ("lockwal_handles_create_guid_key", "create GUID")];

/// Like [`pg_error`], for the statement of a durable-handle put: a unique
/// violation of [`HANDLE_KEYS`] is a race lost to a concurrent put, reported
/// as the serialization failure it is (SQLSTATE `40001`, so [`retryable`]):
/// the check that runs again sees the other handle and refuses with
/// `HandleConflict`.
pub(crate) fn put_handle_error(during: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Error {
    move |e| {
        let raced = e
            .as_db_error()
            .filter(|db| db.code() == &tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
            .and_then(|db| HANDLE_KEYS.iter().find(|(name, _)| db.constraint() == Some(name)).map(|(_, what)| *what));
        match raced {
            Some(what) => Error::Postgres {
                during,
                sqlstate: Some("40001".into()),
                message: format!(
                    "a concurrent transaction put a durable handle with the same {what} after this one checked; \
                     run the transaction again"
                ),
            },
            None => pg_error(during)(e),
        }
    }
}

/// Deadlock and serialization failures: the transaction was rolled back
/// whole and may simply be run again.
pub(crate) fn retryable(e: &Error) -> bool {
    matches!(e, Error::Postgres { sqlstate: Some(code), .. } if code == "40P01" || code == "40001")
}
