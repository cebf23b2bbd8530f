//! Every subcommand on an intact store: init, grant, list with its filters,
//! release, clients, stat, dump and compact, their JSON shapes, read-only
//! commands leaving the directory byte-identical, a second writer refused
//! while readers see the live store, and the clean-shutdown marker.

use crate::support::{fails, files, handle_store, ids, lockwal, many_segments, ok, p, rich_store, runtime, segments};
use lockwal::LockStore;
use lockwal::testing::sample;
use lockwal::wal::{WalLockStore, WalOptions};
use serde_json::Value;

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
    for build in [rich_store, handle_store] {
        let dir = tempfile::tempdir().unwrap();
        let d = p(dir.path());
        build(dir.path());
        std::fs::remove_file(dir.path().join("LOCK")).unwrap(); // they must not even create it
        let before = files(dir.path());
        ok(&["stat", d]);
        ok(&["stat", d, "--json"]);
        ok(&["list", d, "--json", "--kind", "lease"]);
        ok(&["clients", d]);
        ok(&["handles", d]);
        ok(&["handles", d, "--json", "--share", "projects"]);
        ok(&["records", d, "dirents"]);
        ok(&["records", d, "dirents", "--json", "--prefix", "a"]);
        ok(&["dump", d, "--json"]);
        ok(&["verify", d, "--json"]);
        fails(&["repair", d], 1); // nothing to repair, and the dry run changes nothing anyway
        assert_eq!(files(dir.path()), before, "a read-only command changed the directory");
        assert_eq!(ok(&["stat", d, "--json"]).json()["epoch"], 1, "no epoch bump");
    }
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
    rt.block_on(store.put_handle(sample::handle(7))).unwrap();
    rt.block_on(store.put_record("live", b"k", b"v")).unwrap();
    assert_eq!(ids(&ok(&["handles", d, "--json"]).json()), ["open-7"]);
    assert_eq!(ok(&["records", d, "live"]).stdout, "key=6b value=76\n");
    let stat = ok(&["stat", d, "--json"]).json();
    assert_eq!((stat["handles"].as_u64(), stat["record_spaces"]["live"].as_u64()), (Some(1), Some(1)));
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

/// `stat --watch` reads a store that a live writer holds, read-only, once
/// per interval: `--count` bounds it; each reading says what changed since
/// the last; without a terminal it never writes screen-control codes.
#[test]
fn stat_watch_reads_a_live_store_and_stops_after_count() {
    let dir = tempfile::tempdir().unwrap();
    let d = p(dir.path());
    let rt = runtime();
    let store = rt.block_on(WalLockStore::open(dir.path(), WalOptions::default())).unwrap();
    for i in 0..5 {
        rt.block_on(store.put_lock(sample::byte_range(&format!("l{i}"), "s", "f", "o", "c"))).unwrap();
    }
    let last_lsn = store.stats().last_lsn;
    let readings: Vec<Value> = ok(&["stat", d, "--watch", "0.05", "--count", "3", "--json"])
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(readings.len(), 3);
    for (i, r) in readings.iter().enumerate() {
        assert_eq!((r["locks"].as_u64(), r["last_lsn"].as_u64()), (Some(5), Some(last_lsn)), "reading {i}");
        let expected_change = if i == 0 { Value::Null } else { Value::from(0) };
        assert_eq!(r["frames_since"], expected_change, "reading {i}: nothing was written between readings");
    }
    // The reader changed nothing: the writer goes on, and the next reading
    // sees its write and the change.
    rt.block_on(store.put_lock(sample::byte_range("l5", "s", "f", "o", "c"))).unwrap();
    let text = ok(&["stat", d, "--watch", "0.05", "--count", "2"]).stdout;
    assert!(!text.contains('\u{1b}'), "no screen control codes without a terminal: {text:?}");
    let blocks: Vec<&str> = text.split("\n\n").filter(|b| !b.trim().is_empty()).collect();
    assert_eq!(blocks.len(), 2, "{text}");
    assert!(blocks.iter().all(|b| b.contains("locks           6")), "{text}");
    assert!(blocks[1].contains("(+0, 0.0 frames/s)"), "{text}");
    rt.block_on(store.close()).unwrap();
    assert_eq!(lockwal(&["stat", d, "--count", "2"]).code, 2, "--count needs --watch");
    fails(&["stat", d, "--watch", "0"], 2);
}
