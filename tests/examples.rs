//! The runnable examples do what their documentation says.

#[path = "../examples/file_server.rs"]
mod file_server;

/// The file-server core: a create and a remove are atomic with their locks,
/// a crash is followed by grace, alice's reclaim keeps her locks, and the
/// end of grace drops bob's; the directory tree survives the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_server_example_tells_its_story() {
    let dir = tempfile::tempdir().unwrap();
    let report = file_server::run(dir.path()).await.unwrap();
    let names = |n: &[&str]| n.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        report,
        file_server::Report {
            names: names(&["a.txt", "b.txt"]),
            locks_before_crash: names(&["open-2-alice", "open-3-bob", "range-2-alice-0", "range-3-bob-0"]),
            removed_with_file: 2,
            clean_after_crash: false,
            reclaimed: 2,
            purged: names(&["open-3-bob", "range-3-bob-0"]),
            locks_after_grace: names(&["open-2-alice", "range-2-alice-0"]),
            names_after_restart: names(&["a.txt", "b.txt"]),
        }
    );
    // Opened again after the clean close: no grace needed, tree intact.
    let (server, clean) = file_server::FileServer::open(dir.path()).await.unwrap();
    assert!(clean);
    assert_eq!(server.list(1).await.unwrap(), names(&["a.txt", "b.txt"]));
}
