//! W6 on tiny stores: the consume loop keeps the number of stored handles,
//! consumes exactly the handle it asked for, and the restore reads back
//! every lock and handle of a compacted store from its snapshot.

use lockwal_compare::Dataset;
use lockwal_compare::data::Shape;
use lockwal_compare::workload::{self, Timing};
use std::path::PathBuf;
use std::time::Duration;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("lockwal-compare-w6-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_keeps_the_count_and_restore_reads_back_from_the_snapshot() {
    let dir = scratch("consume");
    let timing = Timing { warmup: Duration::from_millis(20), measure: Duration::from_millis(100) };
    // consume_by_create_guid itself fails unless every consume returns the
    // handle of the GUID asked for and 64 handles are stored at the end.
    let c = workload::consume_by_create_guid(&dir, 64, timing, 1).await.unwrap();
    assert_eq!(c.stored, 64);
    assert!(c.consume.samples > 0 && c.consume.samples == c.put_back.samples, "{c:?}");
    assert!(c.consume.p50_us > 0.0 && c.consume.p99_us >= c.consume.p50_us, "{c:?}");
    std::fs::remove_dir_all(&dir).unwrap();

    let dir = scratch("restore");
    let data = Dataset::new(Shape::default());
    workload::build_handle_store(&dir, &data, 5000, 1500).await.unwrap();
    let r = workload::restore_handles(&dir, 5000, 1500).await.unwrap();
    assert_eq!((r.locks, r.handles), (5000, 1500));
    assert!(r.from_snapshot, "{r:?}");
    assert_eq!(r.records_replayed, 1, "only the clean-shutdown record follows the snapshot: {r:?}");
    assert!(r.snapshot_bytes > 0 && r.open_s >= r.replay_s, "{r:?}");
    assert!(workload::restore_handles(&dir, 5000, 1501).await.is_err(), "a count that differs is an error");
    std::fs::remove_dir_all(&dir).unwrap();
}
