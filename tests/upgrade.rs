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
}
