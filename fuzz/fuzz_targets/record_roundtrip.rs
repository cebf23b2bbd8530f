//! Fuzz target `record_roundtrip`; the body is `lockwal::testing::fuzz::record_roundtrip` (also run
//! by `cargo test` over `fuzz/corpus/record_roundtrip`).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| lockwal::testing::fuzz::record_roundtrip(data));
