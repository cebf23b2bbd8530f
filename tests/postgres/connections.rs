//! Transactions and the connection pool, and typed configuration errors.

use super::*;

/// A transaction whose future is dropped part way leaves nothing behind, and
/// the connection it used goes back to the pool outside any transaction: the
/// next write on it (the pool has one) is committed and seen by others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_transaction_is_all_or_nothing_and_frees_its_connection() {
    const OPS: usize = 200;
    let Some(scratch) = Scratch::new() else { return };
    let store = PostgresLockStore::open(scratch.config().with_pool_size(1)).await.unwrap();
    let observer = scratch.sql().await;
    let count = |file: String| {
        let observer = &observer;
        async move {
            let n: i64 = observer
                .query_one("SELECT count(*) FROM lockwal_locks WHERE file_id = $1", &[&file.as_bytes()])
                .await
                .unwrap()
                .get(0);
            n as usize
        }
    };
    let mut cut = 0;
    for round in 0..20u64 {
        let file = format!("batch-{round}");
        let ops = (0..OPS).map(|i| Op::PutLock(sample::byte_range(&format!("{round}-{i}"), "s", &file, "o", "c")));
        let write = store.transaction(ops.collect());
        let finished = tokio::time::timeout(Duration::from_micros(500 + 700 * round), write).await.is_ok();
        let marker = format!("marker-{round}");
        store.put_lock(sample::byte_range(&marker, "s", &marker, "o", "c")).await.unwrap();
        assert_eq!(count(marker).await, 1, "round {round}: the next write on the connection committed");
        let n = count(file).await;
        assert!(n == 0 || n == OPS, "round {round}: {n} of {OPS} operations visible");
        if !finished {
            cut += 1;
        }
    }
    assert!(cut > 0, "no transaction was cut part way");
}

/// Configuration and connection failures are typed errors with context.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn configuration_and_connection_errors_are_typed() {
    // Port 1 on loopback: nothing listens; no server needed for this test.
    let refused = PostgresLockStore::open(PostgresConfig::new("postgres://lockwal@127.0.0.1:1/none")).await;
    assert!(matches!(refused, Err(Error::Postgres { during: "connect", sqlstate: None, .. })), "{refused:?}");
    let bad_schema =
        PostgresLockStore::open(PostgresConfig::new("postgres://h/db").with_schema("Robert'); DROP")).await;
    assert!(matches!(bad_schema, Err(Error::InvalidInput { field: "schema", .. })), "{bad_schema:?}");
    let no_pool = PostgresLockStore::open(PostgresConfig::new("postgres://h/db").with_pool_size(0)).await;
    assert!(matches!(no_pool, Err(Error::InvalidInput { field: "pool_size", .. })), "{no_pool:?}");
}
