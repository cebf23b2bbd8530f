//! Stores written by earlier versions open under this one (promise 7).

use lockwal::LockStore;
use lockwal::model::{DurableHandle, HandleQuery, Record, RecordScan};
use lockwal::testing::sample;
use lockwal::testing::workload::SPACES;
use lockwal::wal::format::{SegmentHeader, parse_segment_name};
use lockwal::wal::snapshot::{decode_header, parse_snapshot_name};
use lockwal::wal::{WalLockStore, WalOptions};
use std::path::Path;
use std::process::Command;

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn lockwal(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lockwal")).args(args).output().unwrap();
    assert!(out.status.success(), "lockwal {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// Checks that `now` (what this code lists) is `then` (what f3bbd43 listed)
/// converted as DESIGN.md "Upgrading from formats 1 and 2" says: every field
/// `then` had keeps its value, but for the two whose representation
/// changed: a delegation id `u64` is now its 8 bytes little-endian (hex),
/// and a lease's `breaking` object is now the flag and the `break_*`
/// fields (none: not breaking, states empty, no start time). Fields
/// only this code has must be there with their defaults.
fn assert_converted(then: &str, now: &str, defaults: &[(&str, serde_json::Value)]) {
    use serde_json::{Value, json};
    let then: Vec<Value> = serde_json::from_str(then).unwrap();
    let now: Vec<Value> = serde_json::from_str(now).unwrap();
    assert_eq!(then.len(), now.len());
    for (old, new) in then.iter().zip(&now) {
        let (old, new) = (old.as_object().unwrap(), new.as_object().unwrap());
        for (key, value) in old {
            let kind = old.get("kind").and_then(Value::as_str);
            match (kind, key.as_str()) {
                (Some("delegation"), "delegation_id") => {
                    let id = value.as_u64().unwrap();
                    let hex: String = id.to_le_bytes().iter().map(|b| format!("{b:02x}")).collect();
                    assert_eq!(new[key], json!(hex), "{old:?}");
                }
                (Some("lease"), "breaking") => match value {
                    Value::Null => {
                        assert_eq!(new[key], json!(false));
                        assert_eq!((&new["break_to"], &new["break_required"]), (&json!(""), &json!("")));
                        assert_eq!(new["break_started_at"], Value::Null);
                    }
                    b => {
                        assert_eq!(new[key], json!(true));
                        assert_eq!((&new["break_to"], &new["break_required"]), (&b["to"], &b["required"]));
                        assert_eq!(new["break_started_at"], b["started_at"]);
                    }
                },
                _ => assert_eq!(new.get(key), Some(value), "field {key} of {old:?}"),
            }
        }
        for (key, default) in defaults {
            let applies = match *key {
                "flavor" | "share_deny" => old["kind"] == "byte-range",
                "is_directory" => old["kind"] == "delegation",
                "nsm_callback_host" | "nsm_program" => old["kind"] == "nsm",
                "nfs4_short_id" => old["kind"] == "nfs4",
                _ => true,
            };
            if applies {
                assert_eq!(new.get(*key), Some(default), "new field {key} of {new:?}");
            }
        }
    }
}

/// The format-1 fixture (tests/fixtures/README.md: written by f3bbd43, a
/// snapshot and three segments) lists what that version listed, converted
/// as specified, read-only and after a read-write open under this code.
#[test]
fn a_format_1_store_opens_with_every_record_intact() {
    use serde_json::json;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures.join("format-1-store"), dir.path());
    let d = dir.path().to_str().unwrap();
    let then_locks = std::fs::read_to_string(fixtures.join("format-1-store.locks.json")).unwrap();
    let then_clients = std::fs::read_to_string(fixtures.join("format-1-store.clients.json")).unwrap();
    let lock_defaults = [("flavor", json!("posix")), ("share_deny", json!(null)), ("is_directory", json!(false))];
    let client_defaults = [("nfs4_short_id", json!(0)), ("nsm_callback_host", json!("")), ("nsm_program", json!(0))];
    let locks = lockwal(&["list", d, "--json"]);
    assert_converted(&then_locks, &locks, &lock_defaults);
    let clients = lockwal(&["clients", d, "--json"]);
    assert_converted(&then_clients, &clients, &client_defaults);
    // A read-write open (a new incarnation) keeps every record.
    lockwal(&["grant", d, "--id", "new", "--share", "s", "--file", "f", "--owner", "o", "--client", "c"]);
    lockwal(&["release", d, "--id", "new"]);
    assert_eq!(lockwal(&["list", d, "--json"]), locks);
    assert_eq!(lockwal(&["clients", d, "--json"]), clients);
    // A compaction writes a version-3 snapshot of the same records.
    lockwal(&["compact", d]);
    assert_eq!(lockwal(&["list", d, "--json"]), locks);
    assert_eq!(lockwal(&["clients", d, "--json"]), clients);
    // ... and retires every format-1 file: what is left is this code's.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        if lockwal::wal::format::parse_segment_name(name).is_some() {
            assert_eq!(lockwal::wal::format::SegmentHeader::decode(&bytes).unwrap().version, 4, "{name}");
        } else if lockwal::wal::snapshot::parse_snapshot_name(name).is_some() {
            assert_eq!(lockwal::wal::snapshot::decode_header(&bytes).unwrap().version, 3, "{name}");
        }
    }
}

/// The same fixture, before any compaction: the format-1 segments are
/// kept as written next to the format-4 segments that new incarnations
/// created.
#[test]
fn an_upgraded_store_keeps_its_format_1_segments_until_compaction() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures.join("format-1-store"), dir.path());
    let d = dir.path().to_str().unwrap();
    lockwal(&["grant", d, "--id", "new", "--share", "s", "--file", "f", "--owner", "o", "--client", "c"]);
    // The upgrade rewrites nothing: the format-1 segments stay as they were
    // written (but for the zero tail), next to the format-4 segments the new incarnations created,
    // whose headers carry their epochs.
    let mut versions = Vec::new();
    let mut names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    for name in names {
        let name = name.to_str().unwrap();
        if lockwal::wal::format::parse_segment_name(name).is_none() {
            continue;
        }
        let bytes = std::fs::read(dir.path().join(name)).unwrap();
        if let Ok(written) = std::fs::read(fixtures.join("format-1-store").join(name)) {
            // Open truncates the newest segment's zero tail, and changes nothing else.
            let kept = written.starts_with(&bytes) && written[bytes.len()..].iter().all(|&b| b == 0);
            assert!(kept, "{name} was rewritten");
        }
        let header = lockwal::wal::format::SegmentHeader::decode(&bytes).unwrap();
        versions.push((header.version, header.epoch));
    }
    let epoch: u64 =
        serde_json::from_str::<serde_json::Value>(&lockwal(&["stat", d, "--json"])).unwrap()["epoch"].as_u64().unwrap();
    assert_eq!(versions.first(), Some(&(1, None)), "the oldest segment is still format 1: {versions:?}");
    assert_eq!(versions.last(), Some(&(4, Some(epoch))), "the newest is format 4, with the epoch of its incarnation");
}

/// A store of a newer format than this code knows is refused with
/// `UnsupportedVersion` naming the file and the version, and nothing in
/// it changes: a segment of format 5, then a snapshot of version 4 (the
/// store holds a durable handle and a record too).
#[test]
fn a_newer_format_is_refused_by_name_and_changes_nothing() {
    use lockwal::wal::format::SegmentHeader;
    use lockwal::wal::snapshot::{SnapshotHeader, decode_header};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    lockwal(&["init", d]);
    lockwal(&["grant", d, "--id", "a", "--share", "s", "--file", "f", "--owner", "o", "--client", "c"]);
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = lockwal::wal::WalLockStore::open(dir.path(), lockwal::wal::WalOptions::default()).await.unwrap();
        store.put_handle(lockwal::testing::sample::handle(1)).await.unwrap();
        store.put_record("dirents", b"a", b"b").await.unwrap();
        store.close().await.unwrap();
    });
    lockwal(&["compact", d]);
    lockwal(&["grant", d, "--id", "b", "--share", "s", "--file", "f", "--owner", "o", "--client", "c"]);
    let rewrite = |name: &str, header: &[u8]| {
        let path = dir.path().join(name);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[..header.len()].copy_from_slice(header);
        std::fs::write(&path, bytes).unwrap();
    };
    let named =
        |suffix: &str| files_of(dir.path()).into_iter().map(|(n, _)| n).filter(|n| n.ends_with(suffix)).max().unwrap();
    let open = || runtime.block_on(lockwal::wal::WalLockStore::open(dir.path(), lockwal::wal::WalOptions::default()));
    let segment = named(".wal");
    let header = SegmentHeader::decode(&std::fs::read(dir.path().join(&segment)).unwrap()).unwrap();
    rewrite(&segment, &SegmentHeader { version: 5, ..header }.encode());
    let before = files_of(dir.path());
    match open() {
        Err(lockwal::Error::UnsupportedVersion { file, found, supported }) => {
            assert_eq!((file, found, supported), (dir.path().join(&segment), 5, 4));
        }
        other => panic!("expected UnsupportedVersion, got {:?}", other.map(drop)),
    }
    assert_eq!(files_of(dir.path()), before, "a refused open changes nothing");
    rewrite(&segment, &header.encode());
    let snapshot = named(".snap");
    let header = decode_header(&std::fs::read(dir.path().join(&snapshot)).unwrap()).unwrap();
    assert_eq!((header.version, header.handles, header.records), (3, 1, 1));
    rewrite(&snapshot, &SnapshotHeader { version: 4, ..header }.encode());
    let before = files_of(dir.path());
    match open() {
        Err(lockwal::Error::UnsupportedVersion { file, found, supported }) => {
            assert_eq!((file, found, supported), (dir.path().join(&snapshot), 4, 3));
        }
        other => panic!("expected UnsupportedVersion, got {:?}", other.map(drop)),
    }
    assert_eq!(files_of(dir.path()), before, "a refused open changes nothing");
}

/// The files of a store directory (the lock file aside), sorted by name.
fn files_of(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "LOCK")
        .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
        .collect();
    v.sort();
    v
}

/// A copy of the format-3 fixture (tests/fixtures/README.md: written by
/// 76b9634, a version-2 snapshot and four format-3 segments after it, the
/// last incarnation stopped without close), and what 76b9634 listed for it.
fn format_3_store() -> (tempfile::TempDir, serde_json::Value, serde_json::Value) {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures.join("format-3-store"), dir.path());
    let read = |name: &str| serde_json::from_str(&std::fs::read_to_string(fixtures.join(name)).unwrap()).unwrap();
    (dir, read("format-3-store.locks.json"), read("format-3-store.clients.json"))
}

fn listed(d: &str) -> (serde_json::Value, serde_json::Value) {
    let parse = |out: String| serde_json::from_str(&out).unwrap();
    (parse(lockwal(&["list", d, "--json"])), parse(lockwal(&["clients", d, "--json"])))
}

/// Files by name, each with its format version.
type Versions = Vec<(String, u32)>;

/// The segments' (name, format) and the snapshots' (name, version) of a
/// store directory.
fn versions(dir: &Path) -> (Versions, Versions) {
    let (mut segments, mut snapshots) = (Vec::new(), Vec::new());
    for (name, bytes) in files_of(dir) {
        if parse_segment_name(&name).is_some() {
            segments.push((name, SegmentHeader::decode(&bytes).unwrap().version));
        } else if parse_snapshot_name(&name).is_some() {
            snapshots.push((name, decode_header(&bytes).unwrap().version));
        }
    }
    (segments, snapshots)
}

/// The format-3 fixture lists, under this code, exactly what 76b9634
/// listed (format 3 and snapshot version 2 hold today's lock and client
/// model: nothing converts), read-only and after read-write opens; it
/// holds no handle and no record, and its segments are kept as written.
#[test]
fn a_format_3_store_opens_with_every_record_intact() {
    let (dir, then_locks, then_clients) = format_3_store();
    let d = dir.path().to_str().unwrap();
    let fixture = files_of(dir.path());
    let (locks, clients) = listed(d);
    assert_eq!((&locks, &clients), (&then_locks, &then_clients));
    assert_eq!(then_locks.as_array().unwrap().len(), 96);
    assert_eq!(files_of(dir.path()), fixture, "a read-only open changes nothing");
    // A read-write open (a new incarnation) keeps every record.
    lockwal(&["grant", d, "--id", "new", "--share", "s", "--file", "f", "--owner", "o", "--client", "c"]);
    lockwal(&["release", d, "--id", "new"]);
    assert_eq!(listed(d), (then_locks, then_clients));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let store = WalLockStore::open(dir.path(), WalOptions::default()).await.unwrap();
        assert_eq!(store.list_handles(&HandleQuery::All).await.unwrap(), []);
        for space in SPACES {
            assert_eq!(store.scan_records(space, &RecordScan::all(10)).await.unwrap(), []);
        }
    });
    // The fixture's files are kept as written, but for the newest
    // segment's zero tail, which the first open truncates.
    let now = files_of(dir.path());
    for (name, bytes) in &fixture {
        let (_, kept) = now.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("{name} was removed"));
        assert!(bytes.starts_with(kept) && bytes[kept.len()..].iter().all(|&b| b == 0), "{name} was rewritten");
    }
}

/// Handles (every field set) and records of several keyspaces, with a
/// transaction mixing them with a lock and a consume, written to a copy of
/// the format-3 fixture by this code.
async fn write_handles_and_records(dir: &Path) -> (Vec<DurableHandle>, Vec<(String, Vec<Record>)>) {
    let store = WalLockStore::open(dir, WalOptions { segment_size: 4096, ..WalOptions::default() }).await.unwrap();
    let handles: Vec<DurableHandle> = (1..=6).map(sample::handle).collect();
    for h in &handles {
        store.put_handle(h.clone()).await.unwrap();
    }
    for (i, space) in SPACES.iter().enumerate() {
        for key in [&b"a"[..], b"ab", b"ab/c", b"b\0"] {
            store.put_record(space, key, &[i as u8; 300]).await.unwrap();
        }
    }
    let lock = sample::byte_range("upgraded", "share-b", "g1", "owner-u", "client-u");
    let consumed = handles[2].clone();
    let ops = vec![
        lockwal::Op::ConsumeHandleByCreateGuid { create_guid: consumed.create_guid.unwrap() },
        lockwal::Op::PutLock(lock),
        lockwal::Op::SwapRecord {
            space: SPACES[0].into(),
            key: b"ab".to_vec(),
            expected: Some(vec![0; 300]),
            value: None,
        },
    ];
    store.transaction(ops).await.unwrap();
    store.close().await.unwrap();
    let handles: Vec<DurableHandle> = handles.into_iter().filter(|h| h.id != consumed.id).collect();
    let mut records = Vec::new();
    for space in SPACES {
        records.push((space.to_owned(), store_records(dir, space).await));
    }
    assert_eq!(records.iter().map(|(_, r)| r.len()).sum::<usize>(), 11);
    (handles, records)
}

async fn store_records(dir: &Path, space: &str) -> Vec<Record> {
    let store = WalLockStore::open(dir, WalOptions { read_only: true, ..WalOptions::default() }).await.unwrap();
    store.scan_records(space, &RecordScan::all(usize::MAX)).await.unwrap()
}

/// Reopens `dir` read-only and checks its handles and records.
async fn assert_holds(dir: &Path, handles: &[DurableHandle], records: &[(String, Vec<Record>)]) {
    let store = WalLockStore::open(dir, WalOptions { read_only: true, ..WalOptions::default() }).await.unwrap();
    assert_eq!(store.list_handles(&HandleQuery::All).await.unwrap(), handles);
    for h in handles {
        assert_eq!(&store.get_handle_by_file_id(&h.file_id).await.unwrap(), h);
    }
    for (space, want) in records {
        assert_eq!(&store.scan_records(space, &RecordScan::all(usize::MAX)).await.unwrap(), want, "{space}");
    }
}

/// On an upgraded format-3 store, new durable handles and records go to
/// format-4 segments only (the first open starts one; a format-3 segment
/// never holds a format-4 operation, which would be damage), the format-3
/// segments stay as written, and the store reopens with every lock, client,
/// handle and record.
#[test]
fn handles_and_records_written_to_an_upgraded_format_3_store_go_to_format_4_segments() {
    let (dir, then_locks, then_clients) = format_3_store();
    let fixture = files_of(dir.path());
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (handles, records) = runtime.block_on(write_handles_and_records(dir.path()));
    let (segments, snapshots) = versions(dir.path());
    assert_eq!(snapshots, [("snap-00000000000000000054.snap".to_owned(), 2)], "no compaction yet");
    let mut new_ops = 0;
    for (name, version) in &segments {
        let bytes = std::fs::read(dir.path().join(name)).unwrap();
        match fixture.iter().find(|(n, _)| n == name) {
            Some((_, written)) => {
                assert_eq!(*version, 3, "{name}");
                assert!(
                    written.starts_with(&bytes) && written[bytes.len()..].iter().all(|&b| b == 0),
                    "{name} rewritten"
                );
            }
            None => assert_eq!(*version, 4, "{name}: a segment this code created"),
        }
        lockwal::wal::scan::scan_segment::<()>(&bytes, None, false, |_, _, payload| {
            let commands = payload.commands().expect("every payload decodes with its segment's format");
            let format_4 = commands.iter().flat_map(|c| c.ops()).filter(|op| !op.in_format_3()).count();
            assert!(
                format_4 == 0 || payload.version == 4,
                "{name} of format {} holds a format-4 operation",
                payload.version
            );
            new_ops += format_4;
            Ok(())
        })
        .unwrap()
        .unwrap();
    }
    assert!(new_ops >= 6 + 12 + 2, "the handle and record operations are in the log: {new_ops}");
    assert!(segments.iter().filter(|(_, v)| *v == 4).count() >= 2, "{segments:?}");
    let d = dir.path().to_str().unwrap();
    let (locks, clients) = listed(d);
    assert_eq!(clients, then_clients);
    let mut want = then_locks.as_array().unwrap().clone();
    want.push(locks.as_array().unwrap().iter().find(|l| l["id"] == "upgraded").expect("the new lock").clone());
    want.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    assert_eq!(locks.as_array().unwrap(), &want);
    runtime.block_on(assert_holds(dir.path(), &handles, &records));
}

/// The first compaction of an upgraded format-3 store writes a version-3
/// snapshot (counting the handles and records) and retires every format-3
/// segment and the version-2 snapshot; the store reopens from it intact.
#[test]
fn the_first_compaction_of_an_upgraded_format_3_store_writes_a_version_3_snapshot() {
    let (dir, then_locks, then_clients) = format_3_store();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (handles, records) = runtime.block_on(write_handles_and_records(dir.path()));
    let d = dir.path().to_str().unwrap();
    let before = listed(d);
    lockwal(&["compact", d]);
    let (segments, snapshots) = versions(dir.path());
    assert!(segments.iter().all(|(_, v)| *v == 4), "{segments:?}");
    assert!(matches!(&snapshots[..], [(_, 3)]), "{snapshots:?}");
    let snapshot = std::fs::read(dir.path().join(&snapshots[0].0)).unwrap();
    let header = decode_header(&snapshot).unwrap();
    assert_eq!((header.handles, header.records), (handles.len() as u64, 11));
    assert_eq!(listed(d), before);
    assert_eq!(before.1, then_clients);
    assert_eq!(before.0.as_array().unwrap().len(), then_locks.as_array().unwrap().len() + 1);
    runtime.block_on(async {
        assert_holds(dir.path(), &handles, &records).await;
        let store = WalLockStore::open(dir.path(), WalOptions::default()).await.unwrap();
        // Everything came from the snapshot but the clean-shutdown record
        // the compacting command's close wrote after it.
        assert_eq!(store.stats().records_replayed, 1);
    });
}
