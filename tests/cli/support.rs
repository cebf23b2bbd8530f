//! What every test here shares: running the binary (`lockwal`, `ok`,
//! `fails`) and reading its output, listing a store directory, and
//! building the stores the tests start from (`rich_store`,
//! `many_segments`, `handle_store`).

use lockwal::LockStore;
use lockwal::model::{ClientDetails, ClientRecord, DurableHandle, DurableVersion, NsmDetails, Timestamp};
use lockwal::op::Op;
use lockwal::testing::sample;
use lockwal::wal::{WalLockStore, WalOptions};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// How a run of the binary ended.
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

impl Run {
    pub(crate) fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

pub(crate) fn lockwal(args: &[&str]) -> Run {
    let Output { status, stdout, stderr } =
        Command::new(env!("CARGO_BIN_EXE_lockwal")).args(args).output().expect("run lockwal");
    Run {
        code: status.code().expect("exited, not killed"),
        stdout: String::from_utf8(stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(stderr).expect("UTF-8 stderr"),
    }
}

pub(crate) fn ok(args: &[&str]) -> Run {
    let run = lockwal(args);
    assert_eq!(run.code, 0, "lockwal {args:?} failed: {}", run.stderr);
    run
}

/// Every error is one line on stderr, prefixed with the program name.
pub(crate) fn fails(args: &[&str], code: i32) -> Run {
    let run = lockwal(args);
    assert_eq!(run.code, code, "lockwal {args:?}: stdout {} stderr {}", run.stdout, run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "one line: {:?}", run.stderr);
    assert!(run.stderr.starts_with("lockwal: ") || run.stderr.starts_with("error: "), "{}", run.stderr);
    run
}

pub(crate) fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Names and bytes of every file in `dir`.
pub(crate) fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap()))
        .collect()
}

pub(crate) fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| lockwal::wal::format::parse_segment_name(p.file_name().unwrap().to_str().unwrap()).is_some())
        .collect();
    v.sort();
    v
}

fn client(id: &str) -> ClientRecord {
    ClientRecord {
        client_id: id.into(),
        name: format!("host of {id}"),
        verifier: vec![0xAB, 0xCD],
        principal: "nfs@host".into(),
        callback: vec![1, 2, 3],
        registered_at: Timestamp::from_unix_micros(1_764_000_000_000_001),
        epoch: 1,
        reclaim_complete: true,
        details: ClientDetails::Nsm(NsmDetails {
            callback_host: "statd.local".into(),
            program: 100_024,
            version: 1,
            procedure: 6,
        }),
    }
}

/// A store with one lock of every kind, a few byte-range locks and two
/// clients, closed cleanly.
pub(crate) fn rich_store(dir: &Path) {
    runtime().block_on(async {
        let store = WalLockStore::open(dir, WalOptions::default()).await.unwrap();
        for lock in sample::every_kind() {
            store.put_lock(lock).await.unwrap();
        }
        store.put_lock(sample::byte_range("r1", "export", "fileA", "ownerA", "hostA")).await.unwrap();
        store.put_lock(sample::byte_range("r2", "export", "fileB", "ownerB", "hostB")).await.unwrap();
        store.put_lock(sample::byte_range("r3", "other", "fileA", "ownerA", "hostA")).await.unwrap();
        store.put_client(client("hostA")).await.unwrap();
        store.put_client(client("hostB")).await.unwrap();
        store.close().await.unwrap();
    });
}

/// A store whose lock `lNNN` was put by LSN NNN + 2 (LSN 1 is the first
/// open), one record per put, in small segments; dropped without `close`.
pub(crate) fn many_segments(dir: &Path, puts: usize) {
    runtime().block_on(async {
        let options = WalOptions { segment_size: 4096, compact_after_bytes: None, ..WalOptions::default() };
        let store = WalLockStore::open(dir, options).await.unwrap();
        for i in 0..puts {
            store.put_lock(sample::byte_range(&format!("l{i:03}"), "s", "f", "o", "c")).await.unwrap();
        }
    });
}

pub(crate) fn ids(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap().to_owned()).collect()
}

/// A plain SMB 2.x durable handle: v1, no create GUID, lease, app
/// instance or delete-on-close, not persistent.
pub(crate) fn v1_handle() -> DurableHandle {
    DurableHandle {
        id: "v1-open".into(),
        file_id: [0x11; 16],
        original_file_id: [0x11; 16],
        path: "report.doc".into(),
        share: "public".into(),
        file_handle: vec![0xFE, 0xED],
        desired_access: 0x0012_0089,
        granted_access: 0x0012_0089,
        share_access: 0x1,
        create_options: 0,
        oplock_level: 0x08,
        lease: None,
        create_guid: None,
        app_instance_id: None,
        persistent: false,
        version: DurableVersion::V1,
        user: "bob".into(),
        session_key_hash: [0; 32],
        client_guid: [0x22; 16],
        created_at: Timestamp::from_unix_micros(1_764_000_000_000_000),
        disconnected_at: Timestamp::from_unix_micros(1_764_000_001_000_000),
        timeout_ms: 16_000,
        server_start_time: Timestamp::from_unix_micros(1_763_999_000_000_000),
        delete_pending: None,
        is_directory: false,
        position: 0,
        allocation_size: 0,
    }
}

/// A store with durable handles and records, every record op in its log,
/// closed cleanly: handles `open-1`, `open-2` (share `projects`, the
/// sample shape) and `v1-open` (share `public`; `open-3` was put and
/// consumed by its create GUID); keyspace `dirents` holds `a/1` = `x`,
/// `a/2` = `yy` and `b/1` = `z` (`a/3` was put and deleted, `b/1` swapped
/// from `old`), keyspace `meta` holds `00ff` = empty, keyspace `gone` was
/// emptied; and one lock `l1`, put in one transaction with `a/2`.
pub(crate) fn handle_store(dir: &Path) {
    runtime().block_on(async {
        let store = WalLockStore::open(dir, WalOptions::default()).await.unwrap();
        for n in [1, 2, 3] {
            store.put_handle(sample::handle(n)).await.unwrap();
        }
        store.put_handle(v1_handle()).await.unwrap();
        store.consume_handle_by_create_guid(&sample::handle(3).create_guid.unwrap()).await.unwrap();
        store.put_record("dirents", b"a/1", b"x").await.unwrap();
        store
            .transaction(vec![
                Op::PutRecord { space: "dirents".into(), key: b"a/2".to_vec(), value: b"yy".to_vec() },
                Op::PutLock(sample::byte_range("l1", "projects", "f", "o", "c")),
            ])
            .await
            .unwrap();
        store.put_record("dirents", b"a/3", b"gone").await.unwrap();
        store.delete_record("dirents", b"a/3").await.unwrap();
        store.put_record("dirents", b"b/1", b"old").await.unwrap();
        store.swap_record("dirents", b"b/1", Some(b"old"), Some(b"z")).await.unwrap();
        store.put_record("meta", &[0x00, 0xFF], b"").await.unwrap();
        store.put_record("gone", b"k", b"v").await.unwrap();
        store.delete_record("gone", b"k").await.unwrap();
        store.close().await.unwrap();
    });
}
