//! `handles`, `records`, the handle and record counts of `stat`, and how
//! `dump` and `verify` show the handle and record ops and a snapshot that
//! holds them (see `support::handle_store` for the store).

use crate::support::{fails, handle_store, ids, lockwal, ok, p, runtime};
use lockwal::LockStore;
use lockwal::wal::{WalLockStore, WalOptions};
use serde_json::{Value, json};

/// `sample::handle(1)` as `handles --json` prints it: every field.
fn open_1_json() -> Value {
    json!({
        "id": "open-1",
        "file_id": "01000000f1f1f1f1f1f1f1f1f1f1f1f1",
        "original_file_id": "010000000f0f0f0f0f0f0f0f0f0f0f0f",
        "path": "dir/sub dir/file-1.txt",
        "share": "projects",
        "file_handle": "66682d31",
        "desired_access": 0x0012_019F,
        "granted_access": 0x0012_0089,
        "share_access": 7,
        "create_options": 0x40,
        "oplock_level": 0xFF,
        "lease_key": "010000001e1e1e1e1e1e1e1e1e1e1e1e",
        "lease_state": 7,
        "lease_epoch": 9,
        "create_guid": "01000000c6c6c6c6c6c6c6c6c6c6c6c6",
        "app_instance_id": "a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0",
        "persistent": true,
        "durable_version": 2,
        "user": "DOMAIN\\alice",
        "session_key_hash": "5a".repeat(32),
        "client_guid": "c1".repeat(16),
        "created_at": "2025-11-24T16:00:00.000007Z",
        "created_at_micros": 1_764_000_000_000_007i64,
        "disconnected_at": "2025-11-24T16:01:00.000009Z",
        "disconnected_at_micros": 1_764_000_060_000_009i64,
        "timeout_ms": 60_001,
        "server_start_time": "2025-11-24T15:43:20.000011Z",
        "server_start_time_micros": 1_763_999_000_000_011i64,
        "delete_pending": true,
        "parent_handle": "d0d1d2",
        "file_name": "file-1.txt",
        "is_directory": true,
        "position": 0x1_0000_0001u64,
        "allocation_size": 1u64 << 40,
    })
}

#[test]
fn handles_lists_every_field_sorted_by_id_and_filters_by_share() {
    let dir = tempfile::tempdir().unwrap();
    let d = p(dir.path());
    handle_store(dir.path());

    let all = ok(&["handles", d, "--json"]).json();
    assert_eq!(ids(&all), ["open-1", "open-2", "v1-open"], "sorted by id; open-3 was consumed");
    assert_eq!(all[0], open_1_json());
    let v1 = &all[2];
    for field in
        ["lease_key", "lease_state", "lease_epoch", "create_guid", "app_instance_id", "parent_handle", "file_name"]
    {
        assert_eq!(v1[field], Value::Null, "{field} of a v1 handle without it");
    }
    assert_eq!((v1["durable_version"].as_u64(), v1["delete_pending"].as_bool()), (Some(1), Some(false)));
    assert_eq!(all[0].as_object().unwrap().len(), v1.as_object().unwrap().len(), "one shape for every handle");

    assert_eq!(ids(&ok(&["handles", d, "--json", "--share", "projects"]).json()), ["open-1", "open-2"]);
    assert_eq!(ids(&ok(&["handles", d, "--json", "--share", "public"]).json()), ["v1-open"]);
    assert_eq!(ok(&["handles", d, "--json", "--share", "nothing"]).json(), json!([]));

    let human = ok(&["handles", d]).stdout;
    let lines: Vec<&str> = human.lines().collect();
    assert_eq!(
        lines,
        [
            "open-1  v2 persistent  share=projects path=\"dir/sub dir/file-1.txt\" \
             file_id=01000000f1f1f1f1f1f1f1f1f1f1f1f1 create_guid=01000000c6c6c6c6c6c6c6c6c6c6c6c6 \
             user=\"DOMAIN\\\\alice\" granted_access=0x00120089 oplock=0xff \
             lease=RWH key=010000001e1e1e1e1e1e1e1e1e1e1e1e epoch=9 app_instance=a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0a0 \
             disconnected=2025-11-24T16:01:00.000009Z timeout_ms=60001 expires=2025-11-24T16:02:00.001009Z \
             delete_pending=file-1.txt directory",
            "open-2  v2 persistent  share=projects path=\"dir/sub dir/file-2.txt\" \
             file_id=02000000f1f1f1f1f1f1f1f1f1f1f1f1 create_guid=02000000c6c6c6c6c6c6c6c6c6c6c6c6 \
             user=\"DOMAIN\\\\alice\" granted_access=0x00120089 oplock=0xff \
             lease=RWH key=020000001e1e1e1e1e1e1e1e1e1e1e1e epoch=9 app_instance=a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3a3 \
             disconnected=2025-11-24T16:01:00.000009Z timeout_ms=60002 expires=2025-11-24T16:02:00.002009Z \
             delete_pending=file-2.txt directory",
            "v1-open  v1  share=public path=report.doc file_id=11111111111111111111111111111111 create_guid=none \
             user=bob granted_access=0x00120089 oplock=0x08 disconnected=2025-11-24T16:00:01.000000Z \
             timeout_ms=16000 expires=2025-11-24T16:00:17.000000Z",
        ]
    );
    assert_eq!(ok(&["handles", d, "--share", "public"]).stdout, format!("{}\n", lines[2]));
}

#[test]
fn records_lists_one_keyspace_in_key_order_with_a_text_or_hex_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let d = p(dir.path());
    handle_store(dir.path());

    assert_eq!(
        ok(&["records", d, "dirents", "--json"]).json(),
        json!([
            {"space": "dirents", "key": "612f31", "value": "78"},
            {"space": "dirents", "key": "612f32", "value": "7979"},
            {"space": "dirents", "key": "622f31", "value": "7a"},
        ]),
        "a/3 was deleted, b/1 swapped to z"
    );
    assert_eq!(
        ok(&["records", d, "dirents"]).stdout,
        "key=612f31 value=78\nkey=612f32 value=7979\nkey=622f31 value=7a\n"
    );
    assert_eq!(ok(&["records", d, "meta"]).stdout, "key=00ff value=\n", "an empty value");

    let a = ok(&["records", d, "dirents", "--prefix", "a/", "--json"]).json();
    let keys: Vec<&str> = a.as_array().unwrap().iter().map(|r| r["key"].as_str().unwrap()).collect();
    assert_eq!(keys, ["612f31", "612f32"]);
    assert_eq!(ok(&["records", d, "dirents", "--prefix-hex", "612F", "--json"]).json(), a, "either case");
    assert_eq!(ok(&["records", d, "dirents", "--prefix-hex", "622f31"]).stdout, "key=622f31 value=7a\n");
    assert_eq!(ok(&["records", d, "meta", "--prefix-hex", "00", "--json"]).json()[0]["key"], "00ff");
    assert_eq!(ok(&["records", d, "dirents", "--prefix", "c"]).stdout, "");
    assert_eq!(ok(&["records", d, "gone", "--json"]).json(), json!([]), "an emptied keyspace");
    assert_eq!(ok(&["records", d, "never", "--json"]).json(), json!([]), "an unknown keyspace");

    // Usage errors exit 2 with one line.
    let run = fails(&["records", d, "bad space"], 2);
    assert_eq!(
        run.stderr,
        "lockwal: invalid space: \"bad space\" must be ASCII letters, digits, '_', '-' or '.', starting with a letter or digit\n"
    );
    let run = fails(&["records", d, &"s".repeat(65)], 2);
    assert!(run.stderr.contains("must be 1 to 64 bytes long, is 65"), "{}", run.stderr);
    let run = fails(&["records", p(&dir.path().join("nope")), "bad/space"], 2);
    assert!(run.stderr.contains("invalid space"), "the name is checked first: {}", run.stderr);
    for bad in ["abc", "zz", "0x61"] {
        let run = lockwal(&["records", d, "dirents", "--prefix-hex", bad]);
        assert_eq!(run.code, 2, "--prefix-hex {bad}");
        assert!(run.stderr.contains("is not an even number of hex digits"), "{}", run.stderr);
    }
    let both = lockwal(&["records", d, "dirents", "--prefix", "a", "--prefix-hex", "61"]);
    assert_eq!(both.code, 2);
    assert!(both.stderr.contains("cannot be used with"), "{}", both.stderr);
    assert_eq!(lockwal(&["records", d]).code, 2, "SPACE is required");
}

#[test]
fn stat_counts_handles_and_records_from_the_log_and_from_a_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let d = p(dir.path());
    handle_store(dir.path());
    let counts = |stat: &Value| (stat["handles"].clone(), stat["records"].clone(), stat["record_spaces"].clone());

    // Everything in the log.
    let stat = ok(&["stat", d, "--json"]).json();
    assert_eq!(counts(&stat), (json!(3), json!(4), json!({"dirents": 3, "meta": 1})), "{stat}");
    assert_eq!(stat["locks"], 1);
    let human = ok(&["stat", d]).stdout;
    assert!(human.contains("\nhandles         3\nrecords         4 in 2 keyspace(s)\n"), "{human}");

    // Everything in the snapshot, the log after it holding no record op.
    ok(&["compact", d]);
    let stat = ok(&["stat", d, "--json"]).json();
    assert!(stat["snapshot_lsn"].is_u64());
    assert_eq!(counts(&stat), (json!(3), json!(4), json!({"dirents": 3, "meta": 1})), "{stat}");

    // The log after the snapshot empties one keyspace and starts another.
    runtime().block_on(async {
        let store = WalLockStore::open(dir.path(), WalOptions::default()).await.unwrap();
        store.delete_record("meta", &[0x00, 0xFF]).await.unwrap();
        store.put_record("later", b"k", b"v").await.unwrap();
        store.delete_handle("open-2").await.unwrap();
        store.close().await.unwrap();
    });
    let stat = ok(&["stat", d, "--json"]).json();
    assert_eq!(counts(&stat), (json!(2), json!(4), json!({"dirents": 3, "later": 1})), "{stat}");
    assert!(ok(&["stat", d]).stdout.contains("\nhandles         2\nrecords         4 in 2 keyspace(s)\n"));

    // An empty store.
    let empty = tempfile::tempdir().unwrap();
    ok(&["init", p(empty.path())]);
    let stat = ok(&["stat", p(empty.path()), "--json"]).json();
    assert_eq!(counts(&stat), (json!(0), json!(0), json!({})));
}

#[test]
fn dump_and_verify_show_handle_and_record_ops_and_snapshot_counts() {
    let dir = tempfile::tempdir().unwrap();
    let d = p(dir.path());
    handle_store(dir.path());

    let human = ok(&["dump", d]).stdout;
    let ops: Vec<&str> =
        human.lines().map(|l| l.split_once(".wal @").unwrap().1.split_once(' ').unwrap().1.trim()).collect();
    assert_eq!(
        ops,
        [
            "open epoch=1",
            "put_handle open-1 file_id=01000000f1f1f1f1f1f1f1f1f1f1f1f1 share=projects path=\"dir/sub dir/file-1.txt\"",
            "put_handle open-2 file_id=02000000f1f1f1f1f1f1f1f1f1f1f1f1 share=projects path=\"dir/sub dir/file-2.txt\"",
            "put_handle open-3 file_id=03000000f1f1f1f1f1f1f1f1f1f1f1f1 share=projects path=\"dir/sub dir/file-3.txt\"",
            "put_handle v1-open file_id=11111111111111111111111111111111 share=public path=report.doc",
            "consume_handle create_guid=03000000c6c6c6c6c6c6c6c6c6c6c6c6",
            "put_record dirents/612f31 value=78",
            "txn [put_record dirents/612f32 value=7979; put_lock l1 byte-range exclusive 4096+512 posix file=f owner=o client=c share=projects]",
            "put_record dirents/612f33 value=676f6e65",
            "delete_record dirents/612f33",
            "put_record dirents/622f31 value=6f6c64",
            "swap_record dirents/622f31 expected=6f6c64 value=7a",
            "put_record meta/00ff value=",
            "put_record gone/6b value=76",
            "delete_record gone/6b",
            "clean_shutdown",
        ]
    );

    let lines: Vec<Value> =
        ok(&["dump", d, "--json"]).stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let op = |lsn: usize, i: usize| lines[lsn - 1]["commands"][0]["ops"][i].clone();
    assert_eq!(op(2, 0), json!({"op": "put_handle", "handle": open_1_json()}));
    assert_eq!(
        op(6, 0),
        json!({"op": "consume_handle_by_create_guid", "create_guid": "03000000c6c6c6c6c6c6c6c6c6c6c6c6"})
    );
    assert_eq!(op(8, 0), json!({"op": "put_record", "space": "dirents", "key": "612f32", "value": "7979"}));
    assert_eq!(op(8, 1)["op"], "put_lock");
    assert_eq!(op(10, 0), json!({"op": "delete_record", "space": "dirents", "key": "612f33"}));
    assert_eq!(
        op(12, 0),
        json!({"op": "swap_record", "space": "dirents", "key": "622f31", "expected": "6f6c64", "value": "7a"})
    );
    assert_eq!(op(13, 0), json!({"op": "put_record", "space": "meta", "key": "00ff", "value": ""}));

    // dump shows log records only: after a compaction the handles and
    // records are in the snapshot, whose counts verify shows.
    ok(&["compact", d]);
    assert!(!ok(&["dump", d]).stdout.contains("put_handle"));
    let verify = ok(&["verify", d]).stdout;
    let snapshot = verify.lines().find(|l| l.starts_with("snapshot ")).unwrap();
    assert!(snapshot.ends_with(", epoch 2, 1 lock(s), 0 client(s), 3 handle(s), 4 record(s): ok"), "{snapshot}");
}
