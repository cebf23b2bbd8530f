//! The recovery rules: epochs, the writer lock, torn tails, damage, and
//! which files open removes or refuses.

use super::*;

/// The epoch rises strictly on every open, clean or not.
#[tokio::test]
async fn epoch_strictly_increases_across_reopens() {
    let dir = tempfile::tempdir().unwrap();
    let mut last = 0;
    for i in 0..5 {
        let store = WalLockStore::open(dir.path(), options()).await.unwrap();
        let epoch = store.epoch().await.unwrap();
        assert!(epoch > last, "epoch {epoch} after {last}");
        assert_eq!(store.stats().epoch, epoch);
        last = epoch;
        if i % 2 == 0 {
            store.close().await.unwrap();
        }
    }
}

/// A second opener, in this process, gets `Locked` naming the directory,
/// and can open once the first is gone.
#[tokio::test]
async fn second_opener_gets_locked() {
    let dir = tempfile::tempdir().unwrap();
    let first = WalLockStore::open(dir.path(), options()).await.unwrap();
    match WalLockStore::open(dir.path(), options()).await {
        Err(Error::Locked { dir: d }) => assert_eq!(d, dir.path()),
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("expected Locked, got a second writer"),
    }
    drop(first);
    WalLockStore::open(dir.path(), options()).await.unwrap();
}

/// Writes a store with `n` locks (one per frame, the last written alone)
/// and returns the newest segment and the start and end of its last frame.
async fn store_with_frames(dir: &Path, n: usize) -> (PathBuf, u64, u64) {
    let store = WalLockStore::open(dir, options()).await.unwrap();
    for i in 0..n {
        store.put_lock(sample::byte_range(&format!("l{i}"), "s", "f", "o", "c")).await.unwrap();
    }
    let before_last = store.stats().bytes_appended;
    store.put_lock(sample::byte_range("last", "s", "f", "o", "c")).await.unwrap();
    let after_last = store.stats().bytes_appended;
    drop(store);
    let seg = segments(dir).pop().unwrap();
    (seg, 48 + before_last, 48 + after_last)
}

/// A torn last record, cut at every byte offset, is truncated at open and
/// reported; the store holds exactly the acknowledged records before it.
#[tokio::test]
async fn torn_tail_at_every_byte_of_the_last_record() {
    let template = tempfile::tempdir().unwrap();
    let (seg, last_offset, frame_end) = store_with_frames(template.path(), 3).await;
    let full = std::fs::read(&seg).unwrap();
    assert!(frame_end > last_offset + 16);
    for cut in last_offset + 1..frame_end {
        let dir = tempfile::tempdir().unwrap();
        for (path, bytes) in snapshot_dir(template.path()) {
            std::fs::write(dir.path().join(path.file_name().unwrap()), bytes).unwrap();
        }
        let seg = dir.path().join(seg.file_name().unwrap());
        let mut bytes = full.clone();
        // Torn at `cut`: the rest of the frame is zeros or garbage; a
        // zero-filled cut inside the zero padding changes nothing, skip it.
        let fill = if cut % 2 == 0 { 0 } else { 0xA5 };
        if bytes[cut as usize..frame_end as usize].iter().all(|&b| b == fill) {
            continue;
        }
        for b in &mut bytes[cut as usize..frame_end as usize] {
            *b = fill;
        }
        std::fs::write(&seg, &bytes).unwrap();
        let store = WalLockStore::open(dir.path(), options()).await.unwrap();
        assert_eq!(ids(&store).await, ["l0", "l1", "l2"], "cut at {cut}");
        let torn = store.stats().torn_tail.expect("torn tail reported");
        assert_eq!((torn.file, torn.offset), (seg.clone(), last_offset), "cut at {cut}");
        assert_eq!(std::fs::metadata(&seg).unwrap().len(), last_offset, "truncated at the end of the valid log");
        drop(store);
        // The repair is durable and final: the next open finds nothing torn.
        let store = WalLockStore::open(dir.path(), options()).await.unwrap();
        assert_eq!(store.stats().torn_tail, None);
        assert_eq!(ids(&store).await, ["l0", "l1", "l2"]);
    }
}

/// A flipped bit in a record that valid records follow is corruption: open
/// fails naming the file and offset, and no file changes.
#[tokio::test]
async fn flipped_bit_in_an_older_record_is_corruption_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = WalLockStore::open(dir.path(), options()).await.unwrap();
        for i in 0..10 {
            store.put_lock(sample::byte_range(&format!("l{i}"), "s", "f", "o", "c")).await.unwrap();
        }
        store.close().await.unwrap();
    }
    // Reopen once so the damaged segment is an older one, too.
    drop(WalLockStore::open(dir.path(), options()).await.unwrap());
    let seg = segments(dir.path()).into_iter().next().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let offset = 48 + 200;
    bytes[offset] ^= 0x04;
    std::fs::write(&seg, &bytes).unwrap();
    let before = snapshot_dir(dir.path());
    for read_only in [false, true] {
        let opts = WalOptions { read_only, ..options() };
        match WalLockStore::open(dir.path(), opts).await {
            Err(Error::Corruption { file, offset: at, reason }) => {
                assert_eq!(file, seg);
                assert!(at <= offset as u64 && at >= 48, "offset {at} should be the damaged frame's start");
                assert!(reason.contains("valid record"), "{reason}");
            }
            Err(other) => panic!("expected Corruption, got {other}"),
            Ok(_) => panic!("opened a corrupt store"),
        }
        assert_eq!(snapshot_dir(dir.path()), before, "files changed (read_only = {read_only})");
    }
}

/// Regression (issue 15, item 7): open deleted every `*.tmp` file in the
/// directory (an operator's notes too) and ignored a misnamed segment that
/// held acknowledged records. Only the store's own temporaries are removed;
/// a file named like a segment or snapshot but not as the store names them
/// is a `Corruption` error naming it, and nothing is changed.
#[tokio::test]
async fn open_removes_only_its_own_temporaries_and_refuses_misnamed_store_files() {
    let dir = tempfile::tempdir().unwrap();
    let store = WalLockStore::open(dir.path(), options()).await.unwrap();
    store.put_lock(sample::byte_range("L", "s", "f", "o", "c")).await.unwrap();
    drop(store);
    std::fs::write(dir.path().join("notes.tmp"), b"an operator's notes").unwrap();
    std::fs::write(dir.path().join("snap-00000000000000000001.snap.tmp"), b"half a snapshot").unwrap();
    let store = WalLockStore::open(dir.path(), options()).await.unwrap();
    assert!(dir.path().join("notes.tmp").exists(), "not the store's file");
    assert!(!dir.path().join("snap-00000000000000000001.snap.tmp").exists(), "the store's own temporary");
    drop(store);
    let misnamed = dir.path().join("seg-2.wal");
    std::fs::copy(&segments(dir.path())[0], &misnamed).unwrap();
    let before = snapshot_dir(dir.path());
    match WalLockStore::open(dir.path(), options()).await {
        Err(Error::Corruption { file, .. }) => assert_eq!(file, misnamed),
        other => panic!("expected Corruption naming seg-2.wal, got {:?}", other.map(|_| ())),
    }
    assert_eq!(snapshot_dir(dir.path()), before, "a refused open changes nothing");
}

/// Regression (issue 15, item 4): a correctly checksummed `Open { epoch:
/// u64::MAX }` record panicked open at `epoch + 1` (and wrapped in release
/// builds); it is `Corruption` naming the segment, and nothing changes.
#[tokio::test]
async fn an_open_record_with_the_largest_epoch_is_corruption_not_a_panic() {
    use lockwal::state::Command;
    use lockwal::wal::format::{SegmentHeader, append_frame, encode_commands, segment_name};
    let dir = tempfile::tempdir().unwrap();
    let salt = 0x5A17;
    let mut bytes = SegmentHeader::new(1, salt, 1, 1).encode().to_vec();
    append_frame(&mut bytes, salt, 1, |out| encode_commands(out, &[&Command::Open { epoch: u64::MAX }]));
    let path = dir.path().join(segment_name(1));
    std::fs::write(&path, &bytes).unwrap();
    match WalLockStore::open(dir.path(), options()).await {
        Err(Error::Corruption { file, .. }) => assert_eq!(file, path),
        other => panic!("expected Corruption, got {:?}", other.map(|_| ())),
    }
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "nothing changed");
    let report = lockwal::wal::inspect::verify(&lockwal::io::RealFs, dir.path()).unwrap();
    assert!(!report.is_intact());
}
