//! `cargo fuzz run change`: Automerge change bodies behind a valid header and checksum (as a
//! hostile device would send them), applied to a folder document; see `cloud3_engine::fuzz`.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: {
        // libfuzzer-sys aborts in its panic hook, before unwinding; `FolderDoc::apply_changes`
        // contains Automerge's internal panics on purpose. The default hook only prints, and a
        // panic that escapes the target still aborts the run.
        drop(std::panic::take_hook());
    },
    |data: &[u8]| cloud3_engine::fuzz::changes(&cloud3_engine::fuzz::change_chunk(data))
);
