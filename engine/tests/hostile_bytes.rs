//! Every decoder that takes bytes from the network, fed arbitrary and mangled bytes: no panic,
//! and what is accepted round-trips. The same entry points (`cloud3_engine::fuzz`) serve the
//! coverage-guided fuzz targets in `fuzz/`. `PROPTEST_RNG_SEED=N` replays a run; a failure prints
//! the smallest input that fails.

use cloud3_engine::chunk::compress;
use cloud3_engine::fuzz;
use cloud3_engine::ids::{ChunkId, FolderId, NodeId, ShortDeviceId};
use cloud3_engine::time::WallTime;
use cloud3_engine::tree::changes::change_body;
use cloud3_engine::tree::{Content, ContentBody, FolderDoc, NodeKind};
use cloud3_engine::wire::{ChunkCodec, ClientMessage, encode_client};
use proptest::prelude::*;

/// The body (after the header) of real change chunks: a node created, then its content set.
fn real_change_bodies() -> Vec<Vec<u8>> {
    let mut doc = FolderDoc::new(&[3; 16]);
    let id = NodeId([3; 16]);
    doc.create_node(
        id,
        NodeId::ROOT,
        "report.txt",
        NodeKind::File,
        0o644,
        None,
        ShortDeviceId([3; 8]),
        WallTime(5),
    )
    .expect("create");
    doc.commit(WallTime(5));
    doc.set_content(
        id,
        Content {
            size: 3,
            mtime: WallTime(6),
            written_at: WallTime(6),
            author: ShortDeviceId([3; 8]),
            body: ContentBody::Blob(ChunkId([4; 32])),
        },
    )
    .expect("content");
    doc.commit(WallTime(6));
    doc.changes_since(&[])
        .into_iter()
        .map(|change| change_body(&change).expect("a real change").to_vec())
        .collect()
}

/// 2,000 cases each in `cargo test`; `PROPTEST_CASES` raises it.
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2000)
}

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..max)
}

#[test]
fn real_changes_survive_the_rewrapping() {
    for body in real_change_bodies() {
        let mut doc = FolderDoc::new(&[9; 16]);
        let change = fuzz::change_chunk(&body);
        assert!(doc.apply_changes(vec![change]).is_ok());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn frames(input in bytes(600)) {
        fuzz::frame(&input);
    }

    #[test]
    fn mangled_frames(flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let mut frame = encode_client(&ClientMessage::DocChanges {
            folder: FolderId::default_folder(),
            changes: vec![vec![1, 2, 3], vec![4; 40]],
        });
        for (at, byte) in flips {
            let at = at % frame.len();
            frame[at] = byte;
        }
        fuzz::frame(&frame);
    }

    #[test]
    fn blobs(input in bytes(300)) {
        fuzz::blob(&input);
    }

    #[test]
    fn mangled_zstd_blobs(at in any::<usize>(), byte in any::<u8>(), declared in 0u16..8192) {
        let raw = b"some text that zstd will shrink, some text that zstd will shrink".repeat(40);
        let encoded = compress(&raw);
        prop_assert_eq!(encoded.codec, ChunkCodec::Zstd);
        let mut input = vec![1];
        input.extend_from_slice(&declared.to_le_bytes());
        input.extend_from_slice(&encoded.bytes);
        let at = 3 + at % encoded.bytes.len();
        input[at] = byte;
        fuzz::blob(&input);
    }

    #[test]
    fn manifests(input in bytes(200)) {
        fuzz::manifest(&input);
    }

    #[test]
    fn contents(input in bytes(200)) {
        fuzz::content(&input);
    }

    #[test]
    fn change_bytes(input in bytes(300)) {
        fuzz::changes(&input);
        fuzz::changes(&fuzz::change_chunk(&input));
    }

    #[test]
    fn mangled_real_changes(
        pick in any::<usize>(),
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
    ) {
        let bodies = real_change_bodies();
        let mut body = bodies[pick % bodies.len()].clone();
        for (at, byte) in flips {
            let at = at % body.len();
            body[at] = byte;
        }
        fuzz::changes(&fuzz::change_chunk(&body));
    }
}
