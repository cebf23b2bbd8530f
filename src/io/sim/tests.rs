//! Each rule of the model, with an assertion that fails when the rule is
//! broken.

use super::content::PAGE;
use super::fault::{EIO, ENOSPC};
use super::*;
use crate::io::{FileBytes, FileSystem, OpenMode, StoreFile};
use proptest::prelude::*;
use std::collections::BTreeSet;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

fn p(s: &str) -> PathBuf {
    PathBuf::from(s)
}

/// A file system with `/d` created and durable.
fn fs_with_dir() -> SimFs {
    let fs = SimFs::new();
    fs.create_dir_all(&p("/d")).unwrap();
    fs.sync_dir(&p("/")).unwrap();
    fs
}

/// Creates `/d/<name>` with `bytes`, data and entry durable.
fn durable_file(fs: &SimFs, name: &str, bytes: &[u8]) -> Box<dyn StoreFile> {
    let mut f = fs.open(&p("/d").join(name), OpenMode::CreateNew).unwrap();
    f.write_at(0, bytes).unwrap();
    f.sync_data().unwrap();
    fs.sync_dir(&p("/d")).unwrap();
    f
}

fn read(fs: &SimFs, path: &str) -> io::Result<Vec<u8>> {
    fs.read(&p(path)).map(|b| b.to_vec())
}

#[test]
fn an_unsynced_write_is_lost_and_a_synced_one_kept() {
    let fs = fs_with_dir();
    let mut f = durable_file(&fs, "a", b"durable");
    f.write_at(7, b"+pending").unwrap();
    assert_eq!(read(&fs, "/d/a").unwrap(), b"durable+pending", "reads see live bytes");
    let image = fs.crash(Loss::DropUnsynced);
    assert_eq!(read(&image, "/d/a").unwrap(), b"durable");
    let image = fs.crash(Loss::KeepPrefix(usize::MAX));
    assert_eq!(read(&image, "/d/a").unwrap(), b"durable+pending");
}

#[test]
fn an_unsynced_set_len_is_lost_and_a_synced_one_kept() {
    let fs = fs_with_dir();
    let mut f = durable_file(&fs, "a", b"0123456789");
    f.set_len(4).unwrap();
    assert_eq!(f.len().unwrap(), 4);
    assert_eq!(read(&fs.crash(Loss::DropUnsynced), "/d/a").unwrap(), b"0123456789");

    let fs = fs_with_dir();
    let mut f = durable_file(&fs, "a", b"0123456789");
    f.set_len(4).unwrap();
    f.sync_data().unwrap();
    assert_eq!(read(&fs.crash(Loss::DropUnsynced), "/d/a").unwrap(), b"0123");
}

#[test]
fn a_created_file_vanishes_unless_its_directory_was_synced() {
    let fs = fs_with_dir();
    let mut f = fs.open(&p("/d/new"), OpenMode::CreateNew).unwrap();
    f.write_at(0, b"synced data").unwrap();
    f.sync_data().unwrap();
    assert_eq!(fs.list(&p("/d")).unwrap(), vec!["new"]);
    let image = fs.crash(Loss::DropUnsynced);
    assert_eq!(image.list(&p("/d")).unwrap(), Vec::<String>::new(), "entry never made durable");
    assert_eq!(read(&image, "/d/new").unwrap_err().kind(), io::ErrorKind::NotFound);

    let fs = fs_with_dir();
    durable_file(&fs, "new", b"synced data");
    assert_eq!(read(&fs.crash(Loss::DropUnsynced), "/d/new").unwrap(), b"synced data");
}

#[test]
fn a_durable_entry_with_unsynced_data_survives_empty() {
    let fs = fs_with_dir();
    let mut f = fs.open(&p("/d/new"), OpenMode::CreateNew).unwrap();
    fs.sync_dir(&p("/d")).unwrap();
    f.write_at(0, b"never synced").unwrap();
    assert_eq!(read(&fs.crash(Loss::DropUnsynced), "/d/new").unwrap(), b"");
}

#[test]
fn an_unsynced_rename_is_undone_with_the_old_target_back() {
    let fs = fs_with_dir();
    durable_file(&fs, "target", b"old target");
    durable_file(&fs, "tmp", b"new content");
    fs.rename(&p("/d/tmp"), &p("/d/target")).unwrap();
    assert_eq!(read(&fs, "/d/target").unwrap(), b"new content");
    assert_eq!(fs.list(&p("/d")).unwrap(), vec!["target"]);

    let image = fs.crash(Loss::DropUnsynced);
    assert_eq!(image.list(&p("/d")).unwrap(), vec!["target", "tmp"]);
    assert_eq!(read(&image, "/d/target").unwrap(), b"old target");
    assert_eq!(read(&image, "/d/tmp").unwrap(), b"new content");
    let image = fs.crash(Loss::KeepPrefix(1));
    assert_eq!(image.list(&p("/d")).unwrap(), vec!["target"]);
    assert_eq!(read(&image, "/d/target").unwrap(), b"new content");
}

#[test]
fn a_synced_rename_and_remove_are_durable() {
    let fs = fs_with_dir();
    durable_file(&fs, "target", b"old target");
    durable_file(&fs, "tmp", b"new content");
    durable_file(&fs, "doomed", b"x");
    fs.rename(&p("/d/tmp"), &p("/d/target")).unwrap();
    fs.remove(&p("/d/doomed")).unwrap();
    fs.sync_dir(&p("/d")).unwrap();
    assert!(fs.pending().is_empty());
    let image = fs.crash(Loss::DropUnsynced);
    assert_eq!(image.list(&p("/d")).unwrap(), vec!["target"]);
    assert_eq!(read(&image, "/d/target").unwrap(), b"new content");
}

#[test]
fn an_unsynced_remove_is_undone() {
    let fs = fs_with_dir();
    durable_file(&fs, "a", b"still here");
    fs.remove(&p("/d/a")).unwrap();
    assert_eq!(read(&fs, "/d/a").unwrap_err().kind(), io::ErrorKind::NotFound);
    assert_eq!(read(&fs.crash(Loss::DropUnsynced), "/d/a").unwrap(), b"still here");
}

#[test]
fn an_unsynced_directory_vanishes_with_its_synced_files() {
    let fs = SimFs::new();
    fs.create_dir_all(&p("/x/y")).unwrap();
    let mut f = fs.open(&p("/x/y/f"), OpenMode::CreateNew).unwrap();
    f.write_at(0, b"data").unwrap();
    f.sync_data().unwrap();
    fs.sync_dir(&p("/x/y")).unwrap();
    fs.sync_dir(&p("/x")).unwrap(); // y's entry in x, but x's entry in / is pending
    let image = fs.crash(Loss::DropUnsynced);
    assert_eq!(image.list(&p("/x/y")).unwrap_err().kind(), io::ErrorKind::NotFound);
    assert_eq!(image.list(&p("/x")).unwrap_err().kind(), io::ErrorKind::NotFound);
    // Keeping the one pending operation (x in /) brings all of it back.
    assert_eq!(fs.pending(), vec![Pending::MkDir { path: p("/x") }]);
    let image = fs.crash(Loss::KeepPrefix(1));
    assert_eq!(read(&image, "/x/y/f").unwrap(), b"data");
}

#[test]
fn keep_prefix_keeps_exactly_the_first_n_pending_operations_in_call_order() {
    let fs = fs_with_dir();
    let mut a = durable_file(&fs, "a", b"");
    let mut b = durable_file(&fs, "b", b"");
    a.write_at(0, b"a1").unwrap();
    b.write_at(0, b"b1").unwrap();
    a.write_at(2, b"a2").unwrap();
    fs.rename(&p("/d/b"), &p("/d/c")).unwrap();
    // Pending, in call order: a1, b1, a2, rename b -> c.
    let expected: [(&[u8], &[u8], [&str; 2]); 5] = [
        (b"", b"", ["a", "b"]),
        (b"a1", b"", ["a", "b"]),
        (b"a1", b"b1", ["a", "b"]),
        (b"a1a2", b"b1", ["a", "b"]),
        (b"a1a2", b"b1", ["a", "c"]),
    ];
    for (n, (a_bytes, b_bytes, names)) in expected.into_iter().enumerate() {
        let image = fs.crash(Loss::KeepPrefix(n));
        assert_eq!(image.list(&p("/d")).unwrap(), names, "n={n}");
        assert_eq!(read(&image, "/d/a").unwrap(), a_bytes, "n={n}");
        assert_eq!(read(&image, &format!("/d/{}", names[1])).unwrap(), b_bytes, "n={n}");
    }
}

#[test]
fn a_sync_takes_its_operations_out_of_the_middle_of_the_pending_list() {
    let fs = fs_with_dir();
    let mut a = durable_file(&fs, "a", b"");
    let mut b = durable_file(&fs, "b", b"");
    a.write_at(0, b"A").unwrap();
    b.write_at(0, b"B").unwrap();
    a.sync_data().unwrap();
    assert_eq!(fs.pending(), vec![Pending::Write { file: 2, offset: 0, len: 1 }]);
    let image = fs.crash(Loss::DropUnsynced);
    assert_eq!((read(&image, "/d/a").unwrap(), read(&image, "/d/b").unwrap()), (b"A".to_vec(), vec![]));
}

#[test]
fn a_torn_write_lands_its_first_bytes_and_fills_the_rest() {
    let fs = fs_with_dir();
    let mut f = durable_file(&fs, "a", b"head:");
    f.write_at(5, b"ABCDEFGH").unwrap();
    let zeros = fs.crash(Loss::Torn { keep: 0, at: 3, fill: Fill::Zeros });
    assert_eq!(read(&zeros, "/d/a").unwrap(), b"head:ABC\0\0\0\0\0");
    let g1 = read(&fs.crash(Loss::Torn { keep: 0, at: 3, fill: Fill::Garbage(1) }), "/d/a").unwrap();
    let g1_again = read(&fs.crash(Loss::Torn { keep: 0, at: 3, fill: Fill::Garbage(1) }), "/d/a").unwrap();
    let g2 = read(&fs.crash(Loss::Torn { keep: 0, at: 3, fill: Fill::Garbage(2) }), "/d/a").unwrap();
    assert_eq!(&g1[..8], b"head:ABC");
    assert_eq!(g1.len(), 13);
    assert_eq!(g1, g1_again, "garbage is deterministic from the seed");
    assert_ne!(g1, g2, "another seed, other garbage");
    assert_ne!(&g1[8..], b"DEFGH");
    assert_ne!(&g1[8..], &[0; 5]);
    // `at` beyond the write's length: the whole write lands.
    let whole = fs.crash(Loss::Torn { keep: 0, at: 100, fill: Fill::Zeros });
    assert_eq!(read(&whole, "/d/a").unwrap(), b"head:ABCDEFGH");
}

#[test]
fn a_torn_non_write_is_just_a_prefix() {
    let fs = fs_with_dir();
    let mut f = durable_file(&fs, "a", b"abc");
    f.set_len(1).unwrap();
    f.write_at(1, b"Z").unwrap();
    let image = fs.crash(Loss::Torn { keep: 0, at: 0, fill: Fill::Garbage(9) });
    assert_eq!(read(&image, "/d/a").unwrap(), b"abc");
    let image = fs.crash(Loss::Torn { keep: 1, at: 0, fill: Fill::Zeros });
    assert_eq!(read(&image, "/d/a").unwrap(), b"a\0");
}

#[test]
fn contents_across_pages_shrink_and_grow_with_zeros() {
    let fs = fs_with_dir();
    let mut f = durable_file(&fs, "a", b"");
    let big: Vec<u8> = (0..3 * PAGE + 100).map(|i| (i % 251) as u8 + 1).collect();
    f.write_at(10, &big).unwrap();
    let mut expected = vec![0u8; 10];
    expected.extend_from_slice(&big);
    assert_eq!(read(&fs, "/d/a").unwrap(), expected);
    f.set_len(PAGE as u64 + 7).unwrap();
    f.set_len(3 * PAGE as u64).unwrap();
    expected.truncate(PAGE + 7);
    expected.resize(3 * PAGE, 0);
    assert_eq!(read(&fs, "/d/a").unwrap(), expected, "a shrink then grow shows zeros, not old bytes");
    f.sync_data().unwrap();
    assert_eq!(read(&fs.crash(Loss::DropUnsynced), "/d/a").unwrap(), expected);
}

#[test]
fn a_huge_pre_sized_file_costs_no_memory_until_written() {
    let fs = fs_with_dir();
    let mut f = durable_file(&fs, "a", b"");
    f.set_len(1 << 30).unwrap();
    f.write_at(5 << 20, b"x").unwrap();
    f.sync_data().unwrap();
    let st = fs.shared.lock();
    let content = &st.inodes[&1].live;
    assert_eq!(content.len, 1 << 30);
    assert_eq!(content.pages.iter().filter(|p| p.is_some()).count(), 1);
}

#[test]
fn file_sizes_are_bounded() {
    let fs = fs_with_dir();
    let mut f = durable_file(&fs, "a", b"");
    assert_eq!(f.set_len(MAX_FILE_LEN + 1).unwrap_err().kind(), io::ErrorKind::FileTooLarge);
    assert_eq!(f.write_at(MAX_FILE_LEN, b"x").unwrap_err().kind(), io::ErrorKind::FileTooLarge);
    assert_eq!(f.write_at(u64::MAX, b"x").unwrap_err().kind(), io::ErrorKind::InvalidInput);
    assert_eq!(f.len().unwrap(), 0);
}

#[test]
fn errors_are_those_of_a_real_file_system() {
    let fs = fs_with_dir();
    durable_file(&fs, "a", b"");
    let kind = |r: io::Result<()>| r.unwrap_err().kind();
    assert_eq!(kind(fs.open(&p("/d/a"), OpenMode::CreateNew).map(drop)), io::ErrorKind::AlreadyExists);
    assert_eq!(kind(fs.open(&p("/d/b"), OpenMode::Existing).map(drop)), io::ErrorKind::NotFound);
    assert_eq!(kind(fs.open(&p("/nodir/b"), OpenMode::CreateNew).map(drop)), io::ErrorKind::NotFound);
    assert_eq!(kind(fs.read(&p("/d/b")).map(drop)), io::ErrorKind::NotFound);
    assert_eq!(kind(fs.remove(&p("/d/b"))), io::ErrorKind::NotFound);
    assert_eq!(kind(fs.rename(&p("/d/b"), &p("/d/c"))), io::ErrorKind::NotFound);
    assert_eq!(kind(fs.rename(&p("/d/a"), &p("/nodir/c"))), io::ErrorKind::NotFound);
    assert_eq!(kind(fs.sync_dir(&p("/nodir"))), io::ErrorKind::NotFound);
    assert_eq!(kind(fs.list(&p("/nodir")).map(drop)), io::ErrorKind::NotFound);
    assert_eq!(kind(fs.create_dir_all(&p("/d/a/sub"))), io::ErrorKind::AlreadyExists);
    assert_eq!(fs.read(&p("/d/a")).unwrap().len(), 0, "an empty file reads as empty");
    assert!(matches!(fs.read(&p("/d/a")).unwrap(), FileBytes::Owned(_)));
    fs.create_dir_all(&p("/d")).unwrap(); // exists: fine
}

#[test]
fn list_returns_live_names_sorted_and_not_directories() {
    let fs = fs_with_dir();
    for name in ["zeta", "alpha", "mid"] {
        fs.open(&p("/d").join(name), OpenMode::CreateNew).unwrap();
    }
    fs.create_dir_all(&p("/d/sub")).unwrap();
    fs.remove(&p("/d/mid")).unwrap();
    assert_eq!(fs.list(&p("/d")).unwrap(), vec!["alpha", "zeta"]);
}

#[test]
fn every_call_is_counted_and_faults_start_at_call_k() {
    let fs = SimFs::new();
    assert_eq!(fs.calls(), 0);
    fs.create_dir_all(&p("/d")).unwrap(); // 0
    let mut f = fs.open(&p("/d/a"), OpenMode::CreateNew).unwrap(); // 1
    f.write_at(0, b"abc").unwrap(); // 2
    assert_eq!(f.len().unwrap(), 3); // 3
    assert!(!f.is_empty().unwrap()); // 4 (through len)
    assert_eq!(fs.calls(), 5);
    fs.fail_from(6, Fault::Eio);
    f.sync_data().unwrap(); // 5
    let err = f.write_at(3, b"d").unwrap_err(); // 6
    assert_eq!(err.raw_os_error(), Some(EIO));
    assert_eq!(fs.sync_dir(&p("/d")).unwrap_err().raw_os_error(), Some(EIO), "later calls fail too");
    assert_eq!(fs.list(&p("/d")).unwrap_err().raw_os_error(), Some(EIO), "reads too");
    assert_eq!(fs.calls(), 9, "failed calls are counted");
    assert_eq!(fs.peek(&p("/d/a")).unwrap(), b"abc", "a failed call has no effect");
    fs.clear_faults();
    fs.sync_dir(&p("/d")).unwrap();
}

#[test]
fn no_space_is_storage_full() {
    let fs = fs_with_dir();
    fs.fail_from(fs.calls(), Fault::NoSpace);
    let err = fs.open(&p("/d/a"), OpenMode::CreateNew).map(drop).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::StorageFull);
    assert_eq!(err.raw_os_error(), Some(ENOSPC));
    fs.fail_from(0, Fault::Kind(io::ErrorKind::PermissionDenied));
    assert_eq!(fs.sync_dir(&p("/d")).unwrap_err().kind(), io::ErrorKind::PermissionDenied);
}

#[test]
fn a_transient_fault_fails_one_call_and_a_failed_sync_loses_its_writes_for_good() {
    let fs = fs_with_dir();
    let mut f = durable_file(&fs, "a", b"old");
    f.write_at(0, b"new").unwrap();
    fs.fail_once(fs.calls(), Fault::Eio);
    assert_eq!(f.sync_data().unwrap_err().raw_os_error(), Some(EIO));
    assert_eq!(fs.peek(&p("/d/a")).unwrap(), b"new", "reads still see the unsynced bytes");
    f.write_at(3, b"+more").unwrap();
    f.sync_data().expect("later calls work");
    let image = fs.crash(Loss::KeepPrefix(usize::MAX));
    assert_eq!(read(&image, "/d/a").unwrap(), b"new+more", "the later sync wrote the whole live file");

    // ... unless nothing after the failure dirtied those pages again:
    let fs = fs_with_dir();
    let mut f = durable_file(&fs, "a", b"old");
    let mut g = durable_file(&fs, "b", b"");
    f.write_at(0, b"new").unwrap();
    g.write_at(0, b"other").unwrap();
    fs.fail_once(fs.calls(), Fault::Eio);
    f.sync_data().unwrap_err();
    f.sync_data().expect("the retry \"succeeds\"");
    assert_eq!(fs.pending(), vec![Pending::Write { file: 2, offset: 0, len: 5 }], "f's write is gone");
    let image = fs.crash(Loss::KeepPrefix(usize::MAX));
    assert_eq!(read(&image, "/d/a").unwrap(), b"old", "fsyncgate: the failed write never reached the disk");
    assert_eq!(read(&image, "/d/b").unwrap(), b"other");

    // A transient failure of another call has no effect.
    let fs = fs_with_dir();
    fs.fail_once(fs.calls() + 1, Fault::NoSpace);
    fs.open(&p("/d/x"), OpenMode::CreateNew).unwrap();
    assert!(fs.open(&p("/d/y"), OpenMode::CreateNew).is_err());
    fs.open(&p("/d/z"), OpenMode::CreateNew).unwrap();
    assert_eq!(fs.list(&p("/d")).unwrap(), vec!["x", "z"]);
}

#[test]
fn a_short_write_lands_its_first_bytes_then_fails() {
    let fs = fs_with_dir();
    let mut f = durable_file(&fs, "a", b"");
    fs.fail_from_with_short_write(fs.calls(), Fault::NoSpace, 2);
    assert_eq!(f.write_at(0, b"abcdef").unwrap_err().kind(), io::ErrorKind::StorageFull);
    assert_eq!(fs.peek(&p("/d/a")).unwrap(), b"ab");
    assert_eq!(fs.pending(), vec![Pending::Write { file: 1, offset: 0, len: 2 }]);
    assert!(f.write_at(2, b"cdef").is_err(), "the calls after it fail whole");
    assert_eq!(fs.peek(&p("/d/a")).unwrap(), b"ab");
}

#[test]
fn a_crashed_file_system_refuses_every_call_and_the_image_is_fresh() {
    let fs = fs_with_dir();
    let mut f = durable_file(&fs, "a", b"abc");
    let guard = fs.try_lock(&p("/d/LOCK")).unwrap();
    fs.sync_dir(&p("/d")).unwrap();
    f.write_at(0, b"x").unwrap();
    let calls = fs.calls();
    let image = fs.crash(Loss::DropUnsynced);
    assert!(fs.is_dead());
    assert!(fs.list(&p("/d")).is_err());
    assert!(fs.read(&p("/d/a")).is_err());
    assert!(fs.create_dir_all(&p("/e")).is_err());
    assert!(f.write_at(0, b"y").is_err());
    assert!(f.sync_data().is_err());
    assert!(f.len().is_err());
    assert_eq!(fs.calls(), calls, "calls after death are not counted");
    // The image: nothing pending, nothing locked, nothing counted.
    assert!(!image.is_dead());
    assert_eq!(image.calls(), 0);
    assert!(image.pending().is_empty());
    let _second = image.try_lock(&p("/d/LOCK")).expect("a crash releases every lock");
    drop(guard);
    assert_eq!(read(&image, "/d/a").unwrap(), b"abc");
    // An image of an image is the same image.
    assert_eq!(read(&image.crash(Loss::DropUnsynced), "/d/a").unwrap(), b"abc");
}

#[test]
fn a_copy_is_independent_and_holds_everything() {
    let fs = fs_with_dir();
    let mut f = durable_file(&fs, "a", b"one");
    f.write_at(3, b"+two").unwrap();
    let copy = fs.copy();
    assert!(!fs.is_dead());
    assert_eq!(read(&copy, "/d/a").unwrap(), b"one+two");
    assert!(copy.pending().is_empty());
    copy.open(&p("/d/a"), OpenMode::Existing).unwrap().write_at(0, b"ONE").unwrap();
    assert_eq!(read(&fs, "/d/a").unwrap(), b"one+two", "the copy does not share state");
    assert_eq!(read(&copy.crash(Loss::KeepPrefix(1)), "/d/a").unwrap(), b"ONE+two");
}

#[test]
fn try_lock_conflicts_while_the_guard_lives() {
    let fs = fs_with_dir();
    let guard = fs.try_lock(&p("/d/LOCK")).unwrap();
    assert_eq!(fs.list(&p("/d")).unwrap(), vec!["LOCK"], "try_lock creates the file");
    let err = fs.try_lock(&p("/d/LOCK")).map(drop).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
    let other = fs.try_lock(&p("/d/OTHER")).unwrap();
    drop(guard);
    let again = fs.try_lock(&p("/d/LOCK")).unwrap();
    assert_eq!(fs.try_lock(&p("/d/OTHER")).map(drop).unwrap_err().kind(), io::ErrorKind::WouldBlock);
    drop((again, other));
    assert_eq!(fs.try_lock(&p("/nodir/LOCK")).map(drop).unwrap_err().kind(), io::ErrorKind::NotFound);
}

#[test]
fn the_observer_sees_the_image_of_a_crash_at_each_call() {
    /// Runs a fixed script; returns the number of calls it made.
    fn script(fs: &SimFs) -> u64 {
        let _ = (|| -> io::Result<()> {
            fs.create_dir_all(&p("/d"))?;
            fs.sync_dir(&p("/"))?;
            let mut f = fs.open(&p("/d/a"), OpenMode::CreateNew)?;
            f.write_at(0, b"one")?;
            f.sync_data()?;
            fs.sync_dir(&p("/d"))?;
            f.write_at(3, b"two")?;
            let mut g = fs.open(&p("/d/b.tmp"), OpenMode::CreateNew)?;
            g.write_at(0, b"snapshot")?;
            g.sync_data()?;
            fs.rename(&p("/d/b.tmp"), &p("/d/b"))?;
            f.sync_data()?;
            fs.sync_dir(&p("/d"))?;
            Ok(())
        })();
        fs.calls()
    }
    fn describe(fs: &SimFs) -> Vec<(String, Vec<u8>)> {
        let names = fs.list(&p("/d")).unwrap_or_default();
        names.into_iter().map(|n| (n.clone(), fs.peek(&p("/d").join(&n)).unwrap())).collect()
    }
    let losses = [
        Loss::DropUnsynced,
        Loss::KeepPrefix(1),
        Loss::KeepPrefix(2),
        Loss::Torn { keep: 0, at: 1, fill: Fill::Garbage(3) },
    ];
    let observed = Arc::new(Mutex::new(Vec::new()));
    let fs = SimFs::new();
    let sink = Arc::clone(&observed);
    fs.set_observer(move |point| {
        let images: Vec<_> = losses.iter().map(|&l| describe(&point.image(l))).collect();
        sink.lock().unwrap().push((point.index(), images));
    });
    let total = script(&fs);
    let observed = observed.lock().unwrap();
    assert_eq!(observed.len() as u64, total);
    let mut distinct = BTreeSet::new();
    for (k, images) in observed.iter() {
        for (loss, image) in losses.iter().zip(images) {
            let fs = SimFs::new();
            fs.fail_from(*k, Fault::Eio);
            script(&fs);
            assert_eq!(&describe(&fs.crash(*loss)), image, "k={k} {loss:?}");
            distinct.insert(image.clone());
        }
    }
    assert!(distinct.len() >= 6, "the script passes through many states: {distinct:?}");
}

#[test]
fn a_lossless_file_system_keeps_everything() {
    let fs = SimFs::lossless();
    fs.create_dir_all(&p("/d")).unwrap();
    let mut f = fs.open(&p("/d/a"), OpenMode::CreateNew).unwrap();
    f.write_at(0, b"kept").unwrap();
    fs.open(&p("/d/b"), OpenMode::CreateNew).unwrap();
    fs.rename(&p("/d/b"), &p("/d/c")).unwrap();
    assert!(fs.pending().is_empty());
    let image = fs.crash(Loss::DropUnsynced);
    assert_eq!(image.list(&p("/d")).unwrap(), vec!["a", "c"]);
    assert_eq!(read(&image, "/d/a").unwrap(), b"kept");
    // The image is lossless too.
    let mut g = image.open(&p("/d/a"), OpenMode::Existing).unwrap();
    g.write_at(4, b"!").unwrap();
    assert_eq!(read(&image.crash(Loss::DropUnsynced), "/d/a").unwrap(), b"kept!");
}

#[test]
fn removed_files_are_forgotten_once_nothing_reaches_them() {
    let fs = fs_with_dir();
    for i in 0..10 {
        let name = format!("f{i}");
        drop(durable_file(&fs, &name, &[1; 100]));
        fs.remove(&p("/d").join(&name)).unwrap();
        fs.sync_dir(&p("/d")).unwrap();
    }
    assert_eq!(fs.shared.lock().inodes.len(), 0);
    // An open handle keeps its inode alive (POSIX: unlinked but open).
    let mut f = durable_file(&fs, "open", b"x");
    fs.remove(&p("/d/open")).unwrap();
    fs.sync_dir(&p("/d")).unwrap();
    f.write_at(1, b"y").unwrap();
    f.sync_data().unwrap();
    assert_eq!(fs.shared.lock().inodes.len(), 1);
}

#[test]
fn a_cross_directory_rename_is_a_create_and_a_remove() {
    let fs = fs_with_dir();
    fs.create_dir_all(&p("/e")).unwrap();
    fs.sync_dir(&p("/")).unwrap();
    durable_file(&fs, "a", b"moved");
    fs.rename(&p("/d/a"), &p("/e/a")).unwrap();
    fs.sync_dir(&p("/e")).unwrap();
    let image = fs.crash(Loss::DropUnsynced);
    assert_eq!(read(&image, "/e/a").unwrap(), b"moved");
    assert_eq!(read(&image, "/d/a").unwrap(), b"moved", "the removal from /d was not synced");
}

#[derive(Debug, Clone)]
enum FileOp {
    Write(u16, Vec<u8>),
    SetLen(u16),
    Sync,
}

fn file_op() -> impl Strategy<Value = FileOp> {
    prop_oneof![
        4 => (0u16..9000, proptest::collection::vec(any::<u8>(), 0..5000)).prop_map(|(o, b)| FileOp::Write(o, b)),
        1 => (0u16..12000).prop_map(FileOp::SetLen),
        1 => Just(FileOp::Sync),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Against a `Vec<u8>` per state: live bytes are what was written,
    /// a crash keeping everything gives the live bytes, a crash keeping
    /// nothing gives the bytes at the last sync, and every prefix of
    /// the pending operations gives the bytes after that many of the
    /// operations since the last sync.
    #[test]
    fn contents_match_a_naive_model(ops in proptest::collection::vec(file_op(), 1..40)) {
        let fs = fs_with_dir();
        let mut f = durable_file(&fs, "a", b"");
        let mut live: Vec<u8> = Vec::new();
        let mut at_sync = Vec::new();
        let mut since_sync = vec![Vec::new()];
        for op in &ops {
            match op {
                FileOp::Write(o, b) => {
                    f.write_at(u64::from(*o), b).unwrap();
                    let end = *o as usize + b.len();
                    if end > live.len() { live.resize(end, 0); }
                    live[*o as usize..end].copy_from_slice(b);
                    if !b.is_empty() { since_sync.push(live.clone()); }
                }
                FileOp::SetLen(n) => {
                    f.set_len(u64::from(*n)).unwrap();
                    live.resize(*n as usize, 0);
                    since_sync.push(live.clone());
                }
                FileOp::Sync => {
                    f.sync_data().unwrap();
                    at_sync = live.clone();
                    since_sync = vec![live.clone()];
                }
            }
        }
        prop_assert_eq!(read(&fs, "/d/a").unwrap(), live.clone());
        prop_assert_eq!(read(&fs.crash(Loss::KeepPrefix(usize::MAX)), "/d/a").unwrap(), live);
        prop_assert_eq!(read(&fs.crash(Loss::DropUnsynced), "/d/a").unwrap(), at_sync);
        for (n, expected) in since_sync.iter().enumerate() {
            prop_assert_eq!(&read(&fs.crash(Loss::KeepPrefix(n)), "/d/a").unwrap(), expected, "n={}", n);
        }
    }
}
