//! `cargo fuzz run content`: see `cloud3_engine::fuzz::content`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cloud3_engine::fuzz::content(data));
