//! The command line itself: `--help`, usage errors, and the exit code and
//! message for a directory that is missing or holds no store.

use crate::support::{fails, files, lockwal, ok, p};

#[test]
fn help_lists_every_subcommand_but_not_the_hidden_child() {
    let run = ok(&["--help"]);
    for cmd in [
        "stat", "list", "clients", "handles", "records", "dump", "verify", "init", "grant", "release", "compact",
        "repair", "torture",
    ] {
        assert!(run.stdout.contains(cmd), "{cmd} missing from --help");
    }
    assert!(!run.stdout.contains("torture-child"));
}

#[test]
fn usage_errors_and_missing_stores_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(lockwal(&[]).code, 2);
    assert_eq!(lockwal(&["stat"]).code, 2, "DIR is required");
    let both = lockwal(&["stat", p(dir.path()), "--url", "postgres://127.0.0.1:1/x"]);
    assert_eq!(both.code, 2);
    assert!(both.stderr.contains("cannot be used with"), "DIR or --url, not both: {}", both.stderr);
    let schema = lockwal(&["list", p(dir.path()), "--schema", "s"]);
    assert_eq!(schema.code, 2);
    assert!(schema.stderr.contains("--url"), "--schema needs --url: {}", schema.stderr);
    // Nothing listens on port 1: a clear error, exit 2 (with the PostgreSQL
    // backend built in: a connection error; without it: how to build it).
    for cmd in ["clients", "handles"] {
        let unreachable = fails(&[cmd, "--url", "postgres://lockwal@127.0.0.1:1/x"], 2);
        assert!(
            unreachable.stderr.contains("connect") || unreachable.stderr.contains("--features postgres"),
            "{cmd}: {}",
            unreachable.stderr
        );
    }
    assert_eq!(lockwal(&["list", p(dir.path()), "--kind", "spaceship"]).code, 2);
    assert_eq!(lockwal(&["grant", p(dir.path()), "--id", "x"]).code, 2, "missing required options");
    let run = fails(&["stat", p(dir.path())], 2);
    assert!(run.stderr.contains("not a lockwal store"), "{}", run.stderr);
    let missing = dir.path().join("nope");
    let run = fails(&["verify", p(&missing)], 2);
    assert!(run.stderr.contains("nope"), "names the directory: {}", run.stderr);
    fails(&["grant", p(dir.path()), "--id", "a", "--share", "s", "--file", "f", "--owner", "o", "--client", "c"], 2);
    assert!(files(dir.path()).is_empty(), "nothing was created");
}

/// Every command that needs an existing store says "no such directory DIR"
/// (exit 2) for a directory that does not exist, not "I/O error during
/// list", and creates nothing; `init` still creates it.
#[test]
fn a_missing_directory_is_reported_as_no_such_directory() {
    let parent = tempfile::tempdir().unwrap();
    let missing = parent.path().join("nope");
    let d = p(&missing);
    let expected = format!("lockwal: no such directory {d}\n");
    let commands: [&[&str]; 11] = [
        &["stat", d],
        &["list", d],
        &["clients", d],
        &["handles", d],
        &["records", d, "space"],
        &["dump", d],
        &["verify", d],
        &["release", d, "--id", "x"],
        &["compact", d],
        &["repair", d],
        &["grant", d, "--id", "a", "--share", "s", "--file", "f", "--owner", "o", "--client", "c"],
    ];
    for args in commands {
        let run = fails(args, 2);
        assert_eq!(run.stderr, expected, "lockwal {args:?}");
        assert!(!missing.exists(), "lockwal {args:?} created the directory");
    }
    ok(&["init", d]);
    ok(&["stat", d]);
}
