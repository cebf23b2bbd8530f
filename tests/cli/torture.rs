//! `lockwal torture`: a short kill -9 run that loses nothing, and the
//! read-only commands working on the store while it runs.

use crate::support::{fails, ok, p};
use serde_json::Value;
use std::process::Command;

#[test]
fn torture_kills_a_writer_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("t");
    let run = ok(&["torture", p(&store), "--seconds", "3", "--json", "--tasks", "4"]);
    let summary = run.json();
    for field in ["kills", "acked", "lost", "recoveries", "max_recovery_ms"] {
        assert!(summary.get(field).is_some(), "{field} missing in {summary}");
    }
    assert!(summary["kills"].as_u64().unwrap() >= 1, "{summary}");
    assert_eq!(summary["lost"], 0, "{summary}");
    assert_eq!(summary["torn_transactions"], 0, "{summary}");
    assert_eq!(summary["ok"], true);
    assert_eq!(summary["recoveries"], summary["kills"]);
    assert_eq!(summary["verified"], summary["acked"]);
    assert_eq!(ok(&["verify", p(&store), "--json"]).json()["intact"], true);
    let run = fails(&["torture", p(&store), "--seconds", "1"], 2);
    assert!(run.stderr.contains("already holds a store"), "{}", run.stderr);
}

/// Read-only commands on a store that writers keep opening, appending to,
/// compacting and crashing: every run succeeds on a consistent prefix (no
/// false corruption, no death by SIGBUS when a starting writer truncates the
/// newest segment under a reader).
#[test]
fn read_only_commands_work_while_torture_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("live");
    let d = p(&store);
    let mut torture = Command::new(env!("CARGO_BIN_EXE_lockwal"))
        .args(["torture", d, "--seconds", "4", "--tasks", "4", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut runs = 0;
    while torture.try_wait().unwrap().is_none() || runs < 3 {
        if !store.exists() || !std::fs::read_dir(&store).unwrap().any(|e| e.unwrap().file_name() != "LOCK") {
            std::thread::sleep(std::time::Duration::from_millis(10));
            continue;
        }
        let report = ok(&["verify", d, "--json"]).json();
        assert_eq!(report["intact"], true, "{report}");
        ok(&["stat", d, "--json"]);
        ok(&["list", d, "--json"]);
        ok(&["dump", d, "--json"]);
        runs += 1;
    }
    let summary: Value = serde_json::from_reader(torture.stdout.take().unwrap()).unwrap();
    assert_eq!(torture.wait().unwrap().code(), Some(0), "{summary}");
    assert_eq!(summary["lost"], 0);
    assert!(runs >= 3);
}
