//! Fuzz target `ops_crash`; the body is `lockwal::testing::fuzz::ops_crash` (also run
//! by `cargo test` over `fuzz/corpus/ops_crash`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lockwal::testing::fuzz::ops_crash(data));
