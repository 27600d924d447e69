//! `cargo fuzz run frame`: see `cloud3_engine::fuzz::frame`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cloud3_engine::fuzz::frame(data));
