//! Stores written by earlier versions open under this one (promise 7).

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
    // A compaction writes a format-2 snapshot of the same records.
    lockwal(&["compact", d]);
    assert_eq!(lockwal(&["list", d, "--json"]), locks);
    assert_eq!(lockwal(&["clients", d, "--json"]), clients);
    // ... and retires every format-1 file: what is left is this code's.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let name = path.file_name().unwrap().to_str().unwrap();
        if lockwal::wal::format::parse_segment_name(name).is_some() {
            assert_eq!(lockwal::wal::format::SegmentHeader::decode(&bytes).unwrap().version, 3, "{name}");
        } else if lockwal::wal::snapshot::parse_snapshot_name(name).is_some() {
            assert_eq!(lockwal::wal::snapshot::decode_header(&bytes).unwrap().version, 2, "{name}");
        }
    }
}

/// The same fixture, before any compaction: the format-1 segments are
/// kept as written next to the format-3 segments that new incarnations
/// created.
#[test]
fn an_upgraded_store_keeps_its_format_1_segments_until_compaction() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures.join("format-1-store"), dir.path());
    let d = dir.path().to_str().unwrap();
    lockwal(&["grant", d, "--id", "new", "--share", "s", "--file", "f", "--owner", "o", "--client", "c"]);
    // The upgrade rewrites nothing: the format-1 segments stay as they were
    // written (but for the zero tail), next to the format-2 segments the new incarnations created,
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
    assert_eq!(versions.last(), Some(&(3, Some(epoch))), "the newest is format 3, with the epoch of its incarnation");
}

/// A store of a newer format than this code knows is refused with
/// `UnsupportedVersion` naming the file and the version, and nothing in
/// it changes: a segment of format 4, then a snapshot of format 3.
#[test]
fn a_newer_format_is_refused_by_name_and_changes_nothing() {
    use lockwal::wal::format::SegmentHeader;
    use lockwal::wal::snapshot::{SnapshotHeader, decode_header};
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    lockwal(&["init", d]);
    lockwal(&["grant", d, "--id", "a", "--share", "s", "--file", "f", "--owner", "o", "--client", "c"]);
    lockwal(&["compact", d]);
    lockwal(&["grant", d, "--id", "b", "--share", "s", "--file", "f", "--owner", "o", "--client", "c"]);
    let files = |dir: &Path| {
        let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.file_name() != "LOCK")
            .map(|e| (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap()))
            .collect();
        v.sort();
        v
    };
    let rewrite = |name: &str, header: &[u8]| {
        let path = dir.path().join(name);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[..header.len()].copy_from_slice(header);
        std::fs::write(&path, bytes).unwrap();
    };
    let named =
        |suffix: &str| files(dir.path()).into_iter().map(|(n, _)| n).filter(|n| n.ends_with(suffix)).max().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let open = || runtime.block_on(lockwal::wal::WalLockStore::open(dir.path(), lockwal::wal::WalOptions::default()));
    let segment = named(".wal");
    let header = SegmentHeader::decode(&std::fs::read(dir.path().join(&segment)).unwrap()).unwrap();
    rewrite(&segment, &SegmentHeader { version: 4, ..header }.encode());
    let before = files(dir.path());
    match open() {
        Err(lockwal::Error::UnsupportedVersion { file, found, supported }) => {
            assert_eq!((file, found, supported), (dir.path().join(&segment), 4, 3));
        }
        other => panic!("expected UnsupportedVersion, got {:?}", other.map(drop)),
    }
    assert_eq!(files(dir.path()), before, "a refused open changes nothing");
    rewrite(&segment, &header.encode());
    let snapshot = named(".snap");
    let header = decode_header(&std::fs::read(dir.path().join(&snapshot)).unwrap()).unwrap();
    rewrite(&snapshot, &SnapshotHeader { version: 3, ..header }.encode());
    let before = files(dir.path());
    match open() {
        Err(lockwal::Error::UnsupportedVersion { file, found, supported }) => {
            assert_eq!((file, found, supported), (dir.path().join(&snapshot), 3, 2));
        }
        other => panic!("expected UnsupportedVersion, got {:?}", other.map(drop)),
    }
    assert_eq!(files(dir.path()), before, "a refused open changes nothing");
}
