//! Serves the metrics of a running store to Prometheus.
//!
//! ```text
//! cargo run --release --features metrics --example prometheus -- [DIR] [--port PORT] [--seconds N] [--print]
//! curl -s http://127.0.0.1:9464/metrics
//! ```
//!
//! Opens (or creates) the WAL store in DIR (default: a temporary directory),
//! installs `metrics-exporter-prometheus` as the process's recorder with an
//! HTTP listener on 127.0.0.1:PORT (default 9464), and runs a small lock
//! workload for N seconds (default 30): grants and releases from 4 tasks,
//! lookups, and a compaction every 5 seconds. `--print` fetches its own
//! `/metrics` page once at the end and prints it (the README's sample).

use lockwal::LockStore;
use lockwal::model::{ByteRange, LockKind, LockQuery, LockType, PersistedLock, RangeFlavor, Timestamp};
use lockwal::wal::{WalLockStore, WalOptions};
use metrics_exporter_prometheus::PrometheusBuilder;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Args {
    dir: Option<std::path::PathBuf>,
    port: u16,
    seconds: u64,
    print: bool,
}

fn args() -> Args {
    let mut args = Args { dir: None, port: 9464, seconds: 30, print: false };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().unwrap_or_else(|| panic!("{name} needs a value"));
        match arg.as_str() {
            "--port" => args.port = value("--port").parse().expect("--port: a port number"),
            "--seconds" => args.seconds = value("--seconds").parse().expect("--seconds: a whole number"),
            "--print" => args.print = true,
            dir => args.dir = Some(dir.into()),
        }
    }
    args
}

fn lock(task: usize, i: u64) -> PersistedLock {
    PersistedLock {
        id: format!("t{task}-l{}", i % 64).into(),
        share: "export".into(),
        file_id: format!("fh-{}", i % 16).into(),
        owner_id: format!("nlm:host{task}:{i}").into(),
        client_id: format!("host{task}").into(),
        kind: LockKind::ByteRange(ByteRange {
            lock_type: LockType::Exclusive,
            offset: i * 4096,
            length: 4096,
            zero_byte: false,
            flavor: RangeFlavor::Posix,
        }),
        acquired_at: Timestamp::now(),
        server_epoch: 0,
    }
}

/// `GET /metrics` from our own listener.
fn scrape(port: u16) -> std::io::Result<String> {
    let mut stream = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    Ok(response.split_once("\r\n\r\n").map_or(response.clone(), |(_, body)| body.to_owned()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = args();
    let temp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| temp.path().to_owned());
    PrometheusBuilder::new().with_http_listener(SocketAddr::from((Ipv4Addr::LOCALHOST, args.port))).install()?;
    lockwal::metrics::describe();
    let store = Arc::new(WalLockStore::open(&dir, WalOptions::default()).await?);
    eprintln!("store {}; metrics on http://127.0.0.1:{}/metrics for {} s", dir.display(), args.port, args.seconds);

    let until = Instant::now() + Duration::from_secs(args.seconds);
    let tasks: Vec<_> = (0..4)
        .map(|task| {
            let store = Arc::clone(&store);
            tokio::spawn(async move {
                let mut i = 0u64;
                while Instant::now() < until {
                    let l = lock(task, i);
                    let id = l.id.clone();
                    store.put_lock(l).await?;
                    store.get_lock(&id).await?;
                    if i.is_multiple_of(3) {
                        store.delete_lock(&id).await?;
                    }
                    if i.is_multiple_of(50) {
                        store.list_locks(&LockQuery::by_file("fh-1")).await?;
                    }
                    i += 1;
                }
                Ok::<u64, lockwal::Error>(i)
            })
        })
        .collect();
    let compactions = {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            while Instant::now() + Duration::from_secs(5) < until {
                tokio::time::sleep(Duration::from_secs(5)).await;
                store.compact().await?;
            }
            Ok::<(), lockwal::Error>(())
        })
    };
    let mut writes = 0;
    for task in tasks {
        writes += task.await??;
    }
    compactions.await??;
    eprintln!("{writes} grants from 4 tasks");
    if args.print {
        print!("{}", scrape(args.port)?);
    }
    store.close().await?;
    Ok(())
}
