//! The `lockwal` binary, driven as an operator or a script would: every
//! subcommand, the JSON shapes, exit codes, read-only commands leaving the
//! directory byte-identical, a second writer refused, verify and repair on
//! damaged stores, and a short kill -9 torture run.

#![cfg(feature = "cli")]

use lockwal::LockStore;
use lockwal::model::{ClientDetails, ClientRecord, NsmDetails, Timestamp};
use lockwal::testing::sample;
use lockwal::wal::{WalLockStore, WalOptions};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.stdout))
    }
}

fn lockwal(args: &[&str]) -> Run {
    let Output { status, stdout, stderr } =
        Command::new(env!("CARGO_BIN_EXE_lockwal")).args(args).output().expect("run lockwal");
    Run {
        code: status.code().expect("exited, not killed"),
        stdout: String::from_utf8(stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(stderr).expect("UTF-8 stderr"),
    }
}

fn ok(args: &[&str]) -> Run {
    let run = lockwal(args);
    assert_eq!(run.code, 0, "lockwal {args:?} failed: {}", run.stderr);
    run
}

/// Every error is one line on stderr, prefixed with the program name.
fn fails(args: &[&str], code: i32) -> Run {
    let run = lockwal(args);
    assert_eq!(run.code, code, "lockwal {args:?}: stdout {} stderr {}", run.stdout, run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "one line: {:?}", run.stderr);
    assert!(run.stderr.starts_with("lockwal: ") || run.stderr.starts_with("error: "), "{}", run.stderr);
    run
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// Names and bytes of every file in `dir`.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .map(|e| (e.file_name().into_string().unwrap(), std::fs::read(e.path()).unwrap()))
        .collect()
}

fn segments(dir: &Path) -> Vec<PathBuf> {
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
fn rich_store(dir: &Path) {
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
fn many_segments(dir: &Path, puts: usize) {
    runtime().block_on(async {
        let options = WalOptions { segment_size: 4096, compact_after_bytes: None, ..WalOptions::default() };
        let store = WalLockStore::open(dir, options).await.unwrap();
        for i in 0..puts {
            store.put_lock(sample::byte_range(&format!("l{i:03}"), "s", "f", "o", "c")).await.unwrap();
        }
    });
}

fn ids(list: &Value) -> Vec<String> {
    list.as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap().to_owned()).collect()
}

#[test]
fn help_lists_every_subcommand_but_not_the_hidden_child() {
    let run = ok(&["--help"]);
    for cmd in ["stat", "list", "clients", "dump", "verify", "init", "grant", "release", "compact", "repair", "torture"]
    {
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
    let unreachable = fails(&["clients", "--url", "postgres://lockwal@127.0.0.1:1/x"], 2);
    assert!(
        unreachable.stderr.contains("connect") || unreachable.stderr.contains("--features postgres"),
        "{}",
        unreachable.stderr
    );
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
    let commands: [&[&str]; 9] = [
        &["stat", d],
        &["list", d],
        &["clients", d],
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

#[test]
fn init_grant_list_release_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let d = p(&store);
    assert!(ok(&["init", d]).stdout.contains("epoch 1"));
    fails(&["init", d], 1);

    let granted = ok(&[
        "grant",
        d,
        "--id",
        "lock-1",
        "--share",
        "export",
        "--file",
        "fh-42",
        "--owner",
        "nlm:host1:17",
        "--client",
        "host1",
        "--exclusive",
        "--offset",
        "100",
        "--length",
        "50",
        "--json",
    ])
    .json();
    assert_eq!(granted["id"], "lock-1");
    assert_eq!(granted["kind"], "byte-range");
    assert_eq!(granted["lock_type"], "exclusive");
    assert_eq!((granted["offset"].as_u64(), granted["length"].as_u64()), (Some(100), Some(50)));
    assert_eq!(granted["server_epoch"], 2, "init was epoch 1; grant opened epoch 2");
    let acquired = granted["acquired_at"].as_str().unwrap();
    assert!(acquired.ends_with('Z') && acquired.len() == "2025-11-24T16:00:00.123456Z".len(), "{acquired}");

    let human =
        ok(&["grant", d, "--id", "lock-2", "--share", "export", "--file", "fh 7", "--owner", "o", "--client", "h2"]);
    assert!(human.stdout.contains("lock-2") && human.stdout.contains("shared"), "{}", human.stdout);
    assert!(human.stdout.contains("\"fh 7\""), "a file id with a space is quoted: {}", human.stdout);

    let list = ok(&["list", d, "--json"]).json();
    assert_eq!(ids(&list), ["lock-1", "lock-2"]);
    assert_eq!(list[0], granted, "list shows the granted record exactly");
    assert_eq!(ids(&ok(&["list", d, "--json", "--client", "h2"]).json()), ["lock-2"]);

    assert!(ok(&["release", d, "--id", "lock-1"]).stdout.contains("released"));
    let run = fails(&["release", d, "--id", "lock-1"], 1);
    assert!(run.stderr.contains("not found") && run.stderr.contains("lock-1"), "{}", run.stderr);
    assert_eq!(ids(&ok(&["list", d, "--json"]).json()), ["lock-2"]);

    let stat = ok(&["stat", d, "--json"]).json();
    assert_eq!(stat["locks"], 1);
    assert_eq!(stat["epoch"], 5, "init, two grants and two releases each opened the store once");
    assert_eq!(stat["clean_shutdown"], true, "the commands kept the clean marker they found");
}

#[test]
fn list_filters_and_json_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let d = p(dir.path());
    rich_store(dir.path());
    let all = ok(&["list", d, "--json"]).json();
    assert_eq!(all.as_array().unwrap().len(), sample::every_kind().len() + 3);
    for lock in all.as_array().unwrap() {
        for field in [
            "id",
            "share",
            "file_id",
            "owner_id",
            "client_id",
            "kind",
            "lock_type",
            "offset",
            "length",
            "server_epoch",
            "acquired_at",
        ] {
            assert!(lock.get(field).is_some(), "{field} missing in {lock}");
        }
        let byte_range = lock["kind"] == "byte-range";
        assert_eq!(lock["lock_type"].is_string(), byte_range, "{lock}");
        assert_eq!(lock["offset"].is_u64(), byte_range, "{lock}");
        assert_eq!(lock["server_epoch"], 1);
    }
    let kinds: Vec<&str> = all.as_array().unwrap().iter().map(|l| l["kind"].as_str().unwrap()).collect();
    for kind in ["byte-range", "share", "lease", "delegation"] {
        assert!(kinds.contains(&kind), "{kind}");
        let only = ok(&["list", d, "--json", "--kind", kind]).json();
        assert!(only.as_array().unwrap().iter().all(|l| l["kind"] == kind));
        assert_eq!(only.as_array().unwrap().len(), kinds.iter().filter(|k| **k == kind).count());
    }
    assert_eq!(ids(&ok(&["list", d, "--json", "--file", "fileA"]).json()), ["r1", "r3"]);
    assert_eq!(ids(&ok(&["list", d, "--json", "--owner", "ownerB"]).json()), ["r2"]);
    assert_eq!(ids(&ok(&["list", d, "--json", "--client", "hostA", "--share", "other"]).json()), ["r3"]);
    assert_eq!(ok(&["list", d, "--json", "--file", "nothing"]).json(), Value::Array(vec![]));
    let human = ok(&["list", d, "--file", "fileA"]);
    assert_eq!(human.stdout.lines().count(), 2);
    assert!(human.stdout.lines().next().unwrap().starts_with("r1 "), "{}", human.stdout);

    let clients = ok(&["clients", d, "--json"]).json();
    let ids: Vec<&str> = clients.as_array().unwrap().iter().map(|c| c["client_id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["hostA", "hostB"]);
    assert_eq!(clients[0]["kind"], "nsm");
    assert_eq!(clients[0]["verifier"], "abcd");
    assert_eq!(clients[0]["registered_at"], "2025-11-24T16:00:00.000001Z");
    assert_eq!(ok(&["clients", d]).stdout.lines().count(), 2);

    let stat = ok(&["stat", d, "--json"]).json();
    for field in ["epoch", "locks", "clients", "log_bytes", "segments", "snapshot_lsn", "last_lsn", "clean_shutdown"] {
        assert!(stat.get(field).is_some(), "{field} missing in {stat}");
    }
    assert_eq!(stat["snapshot_lsn"], Value::Null);
    assert_eq!(
        (stat["locks"].as_u64(), stat["clients"].as_u64()),
        (Some(all.as_array().unwrap().len() as u64), Some(2))
    );
    assert_eq!(stat["clean_shutdown"], true);
    assert!(stat["log_bytes"].as_u64().unwrap() > 0);
    assert!(ok(&["stat", d]).stdout.contains("clean shutdown  yes"));
}

#[test]
fn read_only_commands_leave_the_directory_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let d = p(dir.path());
    rich_store(dir.path());
    std::fs::remove_file(dir.path().join("LOCK")).unwrap(); // they must not even create it
    let before = files(dir.path());
    ok(&["stat", d]);
    ok(&["stat", d, "--json"]);
    ok(&["list", d, "--json", "--kind", "lease"]);
    ok(&["clients", d]);
    ok(&["dump", d, "--json"]);
    ok(&["verify", d, "--json"]);
    fails(&["repair", d], 1); // nothing to repair, and the dry run changes nothing anyway
    assert_eq!(files(dir.path()), before, "a read-only command changed the directory");
    assert_eq!(ok(&["stat", d, "--json"]).json()["epoch"], 1, "no epoch bump");
}

#[test]
fn a_second_writer_is_refused_and_readers_see_the_live_store() {
    let dir = tempfile::tempdir().unwrap();
    let d = p(dir.path());
    let rt = runtime();
    let store = rt.block_on(WalLockStore::open(dir.path(), WalOptions::default())).unwrap();
    rt.block_on(store.put_lock(sample::byte_range("live", "s", "f", "o", "c"))).unwrap();
    for args in [
        vec!["grant", d, "--id", "x", "--share", "s", "--file", "f", "--owner", "o", "--client", "c"],
        vec!["release", d, "--id", "live"],
        vec!["compact", d],
    ] {
        let run = fails(&args, 1);
        assert!(run.stderr.contains("locked") && run.stderr.contains(d), "{args:?}: {}", run.stderr);
    }
    // Read-only commands work on the acknowledged prefix of the live store.
    assert_eq!(ids(&ok(&["list", d, "--json"]).json()), ["live"]);
    let stat = ok(&["stat", d, "--json"]).json();
    assert_eq!((stat["epoch"].as_u64(), stat["clean_shutdown"].as_bool()), (Some(1), Some(false)));
    rt.block_on(store.put_lock(sample::byte_range("later", "s", "f", "o", "c"))).unwrap();
    assert_eq!(ids(&ok(&["list", d, "--json"]).json()), ["later", "live"]);
    assert_eq!(ok(&["verify", d, "--json"]).json()["intact"], true);
    rt.block_on(store.close()).unwrap();
    ok(&["release", d, "--id", "live"]);
}

#[test]
fn mutating_commands_keep_an_unclean_shutdown_unclean() {
    let dir = tempfile::tempdir().unwrap();
    let d = p(dir.path());
    let rt = runtime();
    drop(rt.block_on(WalLockStore::open(dir.path(), WalOptions::default())).unwrap()); // a crash
    ok(&["grant", d, "--id", "a", "--share", "s", "--file", "f", "--owner", "o", "--client", "c"]);
    assert_eq!(ok(&["stat", d, "--json"]).json()["clean_shutdown"], false);
    let store = rt.block_on(WalLockStore::open(dir.path(), WalOptions::default())).unwrap();
    assert!(!rt.block_on(store.previous_shutdown_was_clean()).unwrap(), "the server still runs its grace period");
    assert_eq!(rt.block_on(store.epoch()).unwrap(), 3);
    rt.block_on(store.close()).unwrap();
    ok(&["release", d, "--id", "a"]);
    assert_eq!(ok(&["stat", d, "--json"]).json()["clean_shutdown"], true);
}

#[test]
fn dump_shows_every_record_with_lsn_segment_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let d = p(dir.path());
    many_segments(dir.path(), 120);
    let lines: Vec<Value> =
        ok(&["dump", d, "--json"]).stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 121, "the open record and 120 puts");
    for (i, line) in lines.iter().enumerate() {
        assert_eq!(line["lsn"], i as u64 + 1);
        assert!(line["segment"].as_str().unwrap().starts_with("seg-"));
        assert!(line["offset"].as_u64().unwrap() >= 48);
    }
    assert_eq!(lines[0]["commands"][0]["command"], "open");
    assert_eq!(lines[1]["commands"][0]["ops"][0]["op"], "put_lock");
    assert_eq!(lines[1]["commands"][0]["ops"][0]["lock"]["id"], "l000");
    let segs: std::collections::BTreeSet<&str> = lines.iter().map(|l| l["segment"].as_str().unwrap()).collect();
    assert!(segs.len() > 2, "small segments rotate: {segs:?}");
    let from = ok(&["dump", d, "--json", "--from", "50"]);
    assert_eq!(from.stdout.lines().count(), 72);
    let human = ok(&["dump", d]);
    assert_eq!(human.stdout.lines().count(), 121);
    assert!(human.stdout.lines().nth(1).unwrap().contains("put_lock l000"), "{}", human.stdout);
}

#[test]
fn compact_writes_a_snapshot_and_retires_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let d = p(dir.path());
    many_segments(dir.path(), 200);
    let before = segments(dir.path()).len();
    let report = ok(&["compact", d, "--json"]).json();
    assert!(report["snapshot_lsn"].as_u64().unwrap() > 200);
    assert!(report["files_removed"].as_u64().unwrap() >= before as u64, "{report}");
    assert!(report["bytes_after"].as_u64() < report["bytes_before"].as_u64(), "{report}");
    let stat = ok(&["stat", d, "--json"]).json();
    assert_eq!(stat["snapshot_lsn"], report["snapshot_lsn"]);
    assert_eq!(stat["locks"], 200);
    assert!(segments(dir.path()).len() < before);
    let human = ok(&["compact", d]);
    assert!(human.stdout.contains("snapshot at LSN"), "{}", human.stdout);
    assert_eq!(ok(&["verify", d, "--json"]).json()["intact"], true);
}

#[test]
fn verify_and_repair_a_flipped_byte_in_the_middle_of_an_older_segment() {
    let dir = tempfile::tempdir().unwrap();
    let d = p(dir.path());
    many_segments(dir.path(), 250);
    assert_eq!(ok(&["verify", d]).code, 0);
    let report = ok(&["verify", d, "--json"]).json();
    let segs = report["segments"].as_array().unwrap().clone();
    assert!(segs.len() >= 4, "{report}");
    let victim = &segs[1];
    let victim_path = PathBuf::from(victim["file"].as_str().unwrap());
    let flip_at = victim["valid_end"].as_u64().unwrap() / 2;
    assert!(flip_at > 48);
    let mut bytes = std::fs::read(&victim_path).unwrap();
    bytes[flip_at as usize] ^= 0x20;
    std::fs::write(&victim_path, &bytes).unwrap();
    let epoch_before: u64 = 1;

    // verify: exit 1, names the file and the offset of the bad record.
    let before = files(dir.path());
    let run = fails(&["verify", d], 1);
    assert!(run.stderr.contains(victim_path.file_name().unwrap().to_str().unwrap()), "{}", run.stderr);
    let report = lockwal(&["verify", d, "--json"]).json();
    assert_eq!(report["intact"], false);
    let problem = &report["problem"];
    assert_eq!(problem["kind"], "corruption");
    assert_eq!(problem["file"], victim["file"]);
    let offset = problem["offset"].as_u64().unwrap();
    assert!(offset <= flip_at && offset.is_multiple_of(8) && offset >= 48, "{problem}");
    assert!(run.stderr.contains(&format!("offset {offset}")), "{}", run.stderr);
    let later: u64 = segs[2..].iter().map(|s| s["records"].as_u64().unwrap()).sum();
    assert!(problem["valid_records_after"].as_u64().unwrap() >= later, "{problem}");
    let damaged = &report["segments"][1];
    assert_eq!(damaged["status"], "damaged");
    assert_eq!(damaged["damage"]["offset"], offset);
    // The records before the damage: LSN of the bad frame = first LSN + records before it.
    let bad_lsn = damaged["first_lsn"].as_u64().unwrap() + damaged["records"].as_u64().unwrap();

    // The store does not open: unusable for stat (exit 2), refused for writers.
    let run = fails(&["stat", d], 2);
    assert!(run.stderr.contains("corruption") && run.stderr.contains(&format!("offset {offset}")), "{}", run.stderr);

    // repair without --yes shows the plan and changes nothing.
    let plan = ok(&["repair", d, "--json"]).json();
    assert_eq!(plan["applied"], false);
    let actions = plan["actions"].as_array().unwrap();
    let truncate: Vec<&Value> = actions.iter().filter(|a| a["action"] == "truncate").collect();
    assert_eq!(truncate.len(), 1, "{plan}");
    assert_eq!((&truncate[0]["file"], truncate[0]["offset"].as_u64()), (&victim["file"], Some(offset)));
    let moved: Vec<&str> =
        actions.iter().filter(|a| a["action"] == "move").map(|a| a["file"].as_str().unwrap()).collect();
    assert_eq!(moved.len(), segs.len() - 2, "every later segment is moved aside: {plan}");
    assert!(plan["records_dropped"].as_u64().unwrap() >= later);
    assert!(ok(&["repair", d]).stdout.contains("--yes --accept-loss"));
    assert_eq!(files(dir.path()), before, "verify and a dry-run repair change nothing");
    // It drops valid records after the damage: refused without --accept-loss.
    let run = fails(&["repair", d, "--yes"], 1);
    assert!(run.stderr.contains("refused") && run.stderr.contains("valid log record"), "{}", run.stderr);
    assert_eq!(files(dir.path()), before, "a refused repair changes nothing");

    // repair --yes --accept-loss: backups kept, store opens with exactly the records before the damage.
    let done = ok(&["repair", d, "--yes", "--accept-loss", "--json"]).json();
    assert_eq!(done["applied"], true);
    let after = files(dir.path());
    for a in done["actions"].as_array().unwrap() {
        let backup = PathBuf::from(a["backup"].as_str().unwrap());
        let name = backup.file_name().unwrap().to_str().unwrap();
        assert!(name.contains(".corrupt-") && !name.ends_with(".tmp"), "{name}");
        assert!(lockwal::wal::format::parse_segment_name(name).is_none());
        assert!(after.contains_key(name), "backup {name} exists");
        if a["action"] == "move" {
            let original = PathBuf::from(a["file"].as_str().unwrap());
            let original = original.file_name().unwrap().to_str().unwrap();
            assert_eq!(after[name], before[original], "{name} holds the whole moved segment");
        }
    }
    // The backup names of the applied repair, not of the dry run: they hold
    // the time of the run (a second boundary between the two made this test
    // fail now and then when it read the dry run's name).
    let applied_truncate = done["actions"].as_array().unwrap().iter().find(|a| a["action"] == "truncate").unwrap();
    assert_eq!((&applied_truncate["file"], applied_truncate["offset"].as_u64()), (&victim["file"], Some(offset)));
    let tail_backup = applied_truncate["backup"].as_str().unwrap();
    let tail_name = Path::new(tail_backup).file_name().unwrap().to_str().unwrap();
    let kept = &after[tail_name];
    assert_eq!(kept[..], bytes[offset as usize..offset as usize + kept.len()], "the backup holds the cut bytes");
    assert!(kept.len() as u64 > flip_at - offset, "it includes the flipped byte");

    assert_eq!(ok(&["verify", d, "--json"]).json()["intact"], true);
    let list = ok(&["list", d, "--json"]).json();
    let expected: Vec<String> = (0..bad_lsn - 2).map(|i| format!("l{i:03}")).collect();
    assert_eq!(ids(&list), expected, "exactly the puts before the damaged record survive");
    let stat = ok(&["stat", d, "--json"]).json();
    assert!(stat["epoch"].as_u64().unwrap() > epoch_before);
    assert_eq!(stat["clean_shutdown"], false, "the next start runs a grace period");
    // The store is writable again, and there is nothing left to repair.
    ok(&["grant", d, "--id", "fresh", "--share", "s", "--file", "f", "--owner", "o", "--client", "c"]);
    let run = fails(&["repair", d, "--yes"], 1);
    assert!(run.stderr.contains("nothing to repair"), "{}", run.stderr);
}

#[test]
fn repair_keeps_epochs_increasing_past_dropped_incarnations() {
    let dir = tempfile::tempdir().unwrap();
    let d = p(dir.path());
    ok(&["init", d]);
    for i in 0..5 {
        ok(&["grant", d, "--id", &format!("g{i}"), "--share", "s", "--file", "f", "--owner", "o", "--client", "c"]);
    }
    let epoch = ok(&["stat", d, "--json"]).json()["epoch"].as_u64().unwrap();
    assert_eq!(epoch, 6);
    // Damage the grant record in segment 2: incarnations 3..=6 are dropped.
    let seg = &segments(dir.path())[1];
    let mut bytes = std::fs::read(seg).unwrap();
    bytes[100] ^= 1;
    std::fs::write(seg, bytes).unwrap();
    let plan = ok(&["repair", d, "--json"]).json();
    assert_eq!(plan["after"]["epoch"], epoch + 1);
    let done = ok(&["repair", d, "--yes", "--accept-loss", "--json"]).json();
    assert_eq!(done["after"]["epoch"], epoch + 1);
    let stat = ok(&["stat", d, "--json"]).json();
    assert_eq!(stat["epoch"], epoch + 1, "above every epoch ever used");
    assert_eq!(stat["locks"], 0);
}

#[test]
fn a_torn_tail_is_reported_but_is_not_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let d = p(dir.path());
    many_segments(dir.path(), 30);
    let newest = segments(dir.path()).pop().unwrap();
    let report = ok(&["verify", d, "--json"]).json();
    let valid_end = report["segments"].as_array().unwrap().last().unwrap()["valid_end"].as_u64().unwrap();
    let mut bytes = std::fs::read(&newest).unwrap();
    if bytes.len() < valid_end as usize + 40 {
        bytes.resize(valid_end as usize + 40, 0);
    }
    // Half a frame header and payload of garbage: a write torn by a crash.
    for b in &mut bytes[valid_end as usize..valid_end as usize + 40] {
        *b = 0x5A;
    }
    std::fs::write(&newest, &bytes).unwrap();
    let before = files(dir.path());

    let run = ok(&["verify", d]);
    assert!(run.stdout.contains("torn tail"), "{}", run.stdout);
    let report = ok(&["verify", d, "--json"]).json();
    assert_eq!(report["intact"], true);
    assert_eq!(report["problem"], Value::Null);
    assert_eq!(report["torn_tail"]["offset"], valid_end);
    assert_eq!(report["locks"], 30);
    let stat = ok(&["stat", d, "--json"]).json();
    assert_eq!(stat["torn_tail"]["offset"], valid_end);
    assert_eq!(stat["locks"], 30);
    let run = fails(&["repair", d, "--yes"], 1);
    assert!(run.stderr.contains("nothing to repair"), "{}", run.stderr);
    assert_eq!(files(dir.path()), before, "read-only commands and a refused repair leave the torn tail alone");
    // A writer's open truncates it.
    ok(&["grant", d, "--id", "after", "--share", "s", "--file", "f", "--owner", "o", "--client", "c"]);
    assert_eq!(ok(&["verify", d, "--json"]).json()["torn_tail"], Value::Null);
    assert_eq!(ok(&["stat", d, "--json"]).json()["locks"], 31);
}

#[test]
fn repair_of_a_damaged_snapshot_is_refused_unless_the_loss_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let d = p(dir.path());
    many_segments(dir.path(), 20);
    ok(&["compact", d]);
    ok(&["grant", d, "--id", "after", "--share", "s", "--file", "f", "--owner", "o", "--client", "c"]);
    let snap = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "snap"))
        .unwrap();
    let mut bytes = std::fs::read(&snap).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 4;
    std::fs::write(&snap, bytes).unwrap();
    let report = lockwal(&["verify", d, "--json"]).json();
    assert_eq!(report["problem"]["file"], snap.to_str().unwrap());
    assert_eq!(report["snapshots"][0]["ok"], false);
    fails(&["verify", d], 1);
    assert_eq!(report["recoverable"]["locks"], 0, "{report}");
    assert!(report["recoverable"]["loss"].as_str().unwrap().contains("snapshot"), "{report}");
    assert!(fails(&["verify", d], 1).stdout.contains("recoverable"), "verify says how much a repair keeps");
    let plan = ok(&["repair", d, "--json"]).json();
    assert!(plan["actions"].as_array().unwrap().iter().any(|a| a["file"] == snap.to_str().unwrap()), "{plan}");
    assert_eq!(plan["after"]["locks"], 0, "nothing older than the snapshot is left to rebuild it from");
    // Regression (issue 15, item 6): one flipped byte in the snapshot made
    // `repair --yes` empty the store. It is refused, naming the loss, and
    // nothing changes; only --accept-loss makes those cuts.
    let before = files(dir.path());
    let run = fails(&["repair", d, "--yes"], 1);
    assert!(run.stderr.contains("refused") && run.stderr.contains("snapshot"), "{}", run.stderr);
    assert!(run.stderr.contains("0 lock(s)"), "{}", run.stderr);
    assert!(run.stdout.contains("would"), "the refused plan is shown: {}", run.stdout);
    assert_eq!(files(dir.path()), before, "a refused repair changes nothing");
    assert_eq!(lockwal(&["repair", d, "--accept-loss"]).code, 2, "--accept-loss needs --yes");
    ok(&["repair", d, "--yes", "--accept-loss"]);
    assert_eq!(ok(&["stat", d, "--json"]).json()["locks"], 0);
    assert!(files(dir.path()).keys().any(|n| n.starts_with("snap-") && n.contains(".corrupt-")));
}

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
