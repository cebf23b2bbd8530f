//! Fuzz target `replay_bytes`; the body is `lockwal::testing::fuzz::replay_bytes` (also run
//! by `cargo test` over `fuzz/corpus/replay_bytes`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lockwal::testing::fuzz::replay_bytes(data));
