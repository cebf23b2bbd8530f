//! Guards the comparison's fairness: every adapter really keeps its
//! indexes in step with the records (upserts move index entries, deletes
//! remove them), answers queries sorted by id, and reads back after a
//! reopen exactly what was acknowledged.

use lockwal::model::PersistedLock;
use lockwal_compare::data::Shape;
use lockwal_compare::{Dataset, engines};
use std::path::PathBuf;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lockwal-compare-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn sorted(mut locks: Vec<PersistedLock>) -> Vec<PersistedLock> {
    locks.sort_by(|a, b| a.id.cmp(&b.id));
    locks
}

/// The store stamps `server_epoch`; compare everything else.
fn unstamped(locks: Vec<PersistedLock>) -> Vec<PersistedLock> {
    locks.into_iter().map(|l| PersistedLock { server_epoch: 0, ..l }).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_store_keeps_its_indexes_and_reads_back_what_it_acknowledged() {
    let data = Dataset::new(Shape::default());
    for peer in engines::all() {
        let caps = peer.caps();
        if !caps.queries {
            continue;
        }
        let name = peer.name();
        let dir = scratch(name);
        let store = peer.open(&dir).await.unwrap();
        let mut live: Vec<PersistedLock> = data.locks(0..300);
        store.load(live[..200].to_vec()).await.unwrap();
        for lock in &live[200..] {
            store.put(lock.clone()).await.unwrap();
        }
        // A release, and an upsert that moves a lock to another file and client.
        store.delete(&live[10]).await.unwrap();
        live.remove(10);
        let moved =
            PersistedLock { file_id: live[0].file_id.clone(), client_id: "moved-client".into(), ..live[5].clone() };
        let old = std::mem::replace(&mut live[5], moved.clone());
        store.put(moved.clone()).await.unwrap();

        let expect = |pick: &dyn Fn(&PersistedLock) -> bool| sorted(live.iter().filter(|l| pick(l)).cloned().collect());
        let got = unstamped(store.by_file(&moved.file_id).await.unwrap());
        assert_eq!(got, expect(&|l| l.file_id == moved.file_id), "{name}: by file");
        let got = unstamped(store.by_client(&old.client_id).await.unwrap());
        assert_eq!(got, expect(&|l| l.client_id == old.client_id), "{name}: old client lost the moved lock");
        let got = unstamped(store.by_client("moved-client").await.unwrap());
        assert_eq!(got, vec![moved.clone()], "{name}: new client");
        let got = unstamped(store.by_file(&old.file_id).await.unwrap());
        assert_eq!(got, expect(&|l| l.file_id == old.file_id), "{name}: old file lost the moved lock");
        store.close().await.unwrap();
        drop(store);

        if caps.restore {
            let store = peer.open(&dir).await.unwrap();
            // The data set's clients plus the one added above.
            let restored = store.read_all(&data).await.unwrap();
            if let Some(locks) = restored.resident.downcast_ref::<Vec<PersistedLock>>() {
                assert_eq!(unstamped(sorted(locks.clone())), sorted(live.clone()), "{name}: read back");
            } else {
                assert_eq!(restored.locks, live.len() as u64 - 1, "{name}: all but the moved client's lock");
            }
            store.close().await.unwrap();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_raw_log_reads_back_what_it_was_given() {
    let data = Dataset::new(Shape::default());
    let peer = engines::by_name("raw-log").unwrap();
    let dir = scratch("raw-log");
    lockwal_compare::workload::build(&*peer, &dir, &data, 5000).await.unwrap();
    let store = peer.open(&dir).await.unwrap();
    let restored = store.read_all(&data).await.unwrap();
    assert_eq!(restored.resident.downcast_ref::<Vec<PersistedLock>>().unwrap(), &data.locks(0..5000));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_group_commit_floor_acknowledges_every_writer() {
    let data = std::sync::Arc::new(Dataset::new(Shape::default()));
    let peer = engines::by_name("raw-group").unwrap();
    let dir = scratch("raw-group");
    let store = peer.open(&dir).await.unwrap();
    let tasks: Vec<_> = (0..64u64)
        .map(|t| {
            let (store, data) = (store.clone(), data.clone());
            tokio::spawn(async move {
                for i in 0..20 {
                    store.put(data.lock(t * 100 + i)).await.unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        tokio::time::timeout(std::time::Duration::from_secs(60), task).await.unwrap().unwrap();
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// lockwal's PostgreSQL backend: each open is a fresh, empty store (W2
/// reopens the same directory for every task count), and a grant and a
/// release go through. Skipped without `LOCKWAL_TEST_PG_URL`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_peer_opens_a_fresh_store_each_time() {
    let Some(peer) = engines::by_name("lockwal-postgres") else {
        assert!(
            engines::postgres::Postgres::from_env().is_none(),
            "LOCKWAL_TEST_PG_URL is set but engines::all() has no lockwal-postgres"
        );
        eprintln!("skipped: LOCKWAL_TEST_PG_URL is not set (scripts/pg-throwaway run cargo test -p lockwal-compare)");
        return;
    };
    let data = Dataset::new(Shape::default());
    let dir = scratch("postgres");
    let lock = data.lock(1);
    let first = peer.open(&dir).await.unwrap();
    first.put(lock.clone()).await.unwrap();
    assert_eq!(unstamped(first.by_client(&lock.client_id).await.unwrap()), vec![lock.clone()]);
    first.close().await.unwrap();
    let second = peer.open(&dir).await.unwrap();
    assert_eq!(second.by_client(&lock.client_id).await.unwrap(), vec![], "a reopen must be empty");
    second.put(lock.clone()).await.unwrap();
    second.delete(&lock).await.unwrap();
    assert_eq!(second.by_file(&lock.file_id).await.unwrap(), vec![]);
    second.close().await.unwrap();
    assert!(peer.config().contains("PostgreSQL "), "{}", peer.config());
    std::fs::remove_dir_all(&dir).unwrap();
}
