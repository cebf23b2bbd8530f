//! The memory a state holds per record or per durable handle: RSS before
//! and after applying `N` of them, divided by `N` (DESIGN.md, "Records").
//!
//! ```sh
//! cargo run --release --example memory_cost -- 1000000 record 64   # N, kind, value bytes
//! cargo run --release --example memory_cost -- 100000 handle
//! ```
//!
//! Records have 16-byte keys in one keyspace; handles are
//! `testing::sample::handle` with a unique id and file handle each. Linux
//! only (reads `/proc/self/statm`). It measures, and asserts nothing.

use lockwal::op::Op;
use lockwal::state::{Command, State};

fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("Linux /proc");
    statm.split_whitespace().nth(1).and_then(|p| p.parse::<usize>().ok()).expect("resident pages") * 4096
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(1_000_000);
    let kind = args.next().unwrap_or_else(|| "record".into());
    let value_len: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let mut state = State::new();
    state.apply(&Command::Open { epoch: 1 }).expect("open");
    let before = rss();
    let mut ops = Vec::with_capacity(1000);
    for i in 0..n {
        ops.push(match kind.as_str() {
            "record" => Op::PutRecord {
                space: "dirents".into(),
                key: format!("{i:016}").into_bytes(),
                value: vec![7; value_len],
            },
            "handle" => {
                let mut h = lockwal::testing::sample::handle(u32::try_from(i).expect("fewer than 2^32 handles"));
                (h.id, h.file_handle) = (format!("open-{i:08}"), format!("fh-{i}").into_bytes());
                Op::PutHandle(h)
            }
            other => panic!("kind {other:?}: record or handle"),
        });
        if ops.len() == 1000 || i + 1 == n {
            state.apply(&Command::Txn(std::mem::take(&mut ops))).expect("valid");
        }
    }
    let after = rss();
    println!(
        "{kind}: n={n} value_len={value_len}: {} bytes each (RSS {} -> {} MiB)",
        (after - before) / n.max(1),
        before >> 20,
        after >> 20
    );
}
