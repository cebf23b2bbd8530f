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

/// The format-1 fixture (tests/fixtures/README.md: written by f3bbd43, a
/// snapshot and three segments) lists exactly what that version listed,
/// read-only and after a read-write open under this code.
#[test]
fn a_format_1_store_opens_with_every_record_intact() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&fixtures.join("format-1-store"), dir.path());
    let d = dir.path().to_str().unwrap();
    let expected_locks = std::fs::read_to_string(fixtures.join("format-1-store.locks.json")).unwrap();
    let expected_clients = std::fs::read_to_string(fixtures.join("format-1-store.clients.json")).unwrap();
    let locks = lockwal(&["list", d, "--json"]);
    assert_eq!(locks.trim_end(), expected_locks.trim_end());
    assert_eq!(lockwal(&["clients", d, "--json"]).trim_end(), expected_clients.trim_end());
    // A read-write open (a new incarnation) keeps every record.
    lockwal(&["grant", d, "--id", "new", "--share", "s", "--file", "f", "--owner", "o", "--client", "c"]);
    lockwal(&["release", d, "--id", "new"]);
    assert_eq!(lockwal(&["list", d, "--json"]).trim_end(), expected_locks.trim_end());
    assert_eq!(lockwal(&["clients", d, "--json"]).trim_end(), expected_clients.trim_end());
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
        versions.push(header.epoch);
    }
    let epoch: u64 =
        serde_json::from_str::<serde_json::Value>(&lockwal(&["stat", d, "--json"])).unwrap()["epoch"].as_u64().unwrap();
    assert_eq!(versions.first(), Some(&None), "the oldest segment is still format 1: {versions:?}");
    assert_eq!(versions.last(), Some(&Some(epoch)), "the newest is format 2, with the epoch of its incarnation");
}
