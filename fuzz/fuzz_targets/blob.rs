//! `cargo fuzz run blob`: see `cloud3_engine::fuzz::blob`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cloud3_engine::fuzz::blob(data));
