//! `cargo fuzz run manifest`: see `cloud3_engine::fuzz::manifest`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cloud3_engine::fuzz::manifest(data));
