//! The viewer's device in a real browser (headless Chromium through wasm-bindgen-test-runner):
//! key handling, the handshake, document sync, and chunk verification, against frames a relay
//! would send.

#![cfg(target_arch = "wasm32")]

use cloud3_engine::chunk::{Manifest, ManifestEntry};
use cloud3_engine::ids::{ChunkId, FolderId, NodeId, ShortDeviceId};
use cloud3_engine::time::WallTime;
use cloud3_engine::tree::{Content, ContentBody, FolderDoc, NodeKind};
use cloud3_engine::wire::message::ChunkPiece;
use cloud3_engine::wire::{ClientMessage, ServerMessage, decode_client, encode_server};
use cloud3_wasm::Viewer;
use wasm_bindgen::JsCast;
use wasm_bindgen_test::{wasm_bindgen_test, wasm_bindgen_test_configure};

wasm_bindgen_test_configure!(run_in_browser);

fn sent(frames: js_sys::Array) -> Vec<ClientMessage> {
    frames
        .iter()
        .map(|f| {
            let bytes = f
                .dyn_into::<js_sys::Uint8Array>()
                .expect("a frame")
                .to_vec();
            decode_client(&bytes).expect("a valid client frame")
        })
        .collect()
}

fn feed(viewer: &mut Viewer, message: ServerMessage) -> Vec<ClientMessage> {
    sent(
        viewer
            .receive(&encode_server(&message))
            .expect("frame accepted"),
    )
}

fn welcomed(viewer: &mut Viewer) -> Vec<ClientMessage> {
    welcomed_at(viewer, WallTime(0), 30)
}

/// Handshake with a relay whose clock reads `now` and whose retention window is `days`.
fn welcomed_at(viewer: &mut Viewer, now: WallTime, days: u32) -> Vec<ClientMessage> {
    let hello = feed(
        viewer,
        ServerMessage::Challenge {
            version: 1,
            relay_id: [7; 32],
            nonce: [9; 32],
        },
    );
    assert!(matches!(hello[..], [ClientMessage::Hello(_)]));
    feed(
        viewer,
        ServerMessage::Welcome {
            device: cloud3_engine::ids::DeviceId([0; 32]),
            read_only: true,
            now,
            retention_days: days,
        },
    )
}

/// A document with `docs/readme.txt` whose single chunk is `text`.
fn folder_with(text: &[u8]) -> FolderDoc {
    let mut doc = FolderDoc::new(&[1; 16]);
    let author = ShortDeviceId([1; 8]);
    doc.create_node(
        NodeId([1; 16]),
        NodeId::ROOT,
        "docs",
        NodeKind::Dir,
        0o755,
        None,
        author,
        WallTime(1),
    )
    .expect("dir");
    let content = Content {
        size: text.len() as u64,
        mtime: WallTime(1),
        written_at: WallTime(1),
        author,
        body: ContentBody::Inline(Manifest {
            entries: vec![ManifestEntry {
                id: ChunkId::of(text),
                len: text.len() as u32,
            }],
        }),
    };
    doc.create_node(
        NodeId([2; 16]),
        NodeId([1; 16]),
        "readme.txt",
        NodeKind::File,
        0o644,
        Some(content),
        author,
        WallTime(1),
    )
    .expect("file");
    doc.commit(WallTime(1));
    doc
}

/// A welcomed viewer that has synced [`folder_with`]`(text)`.
fn synced_viewer(text: &[u8]) -> Viewer {
    let mut viewer = Viewer::new("", "alice").expect("viewer");
    welcomed(&mut viewer);
    let mut doc = folder_with(text);
    feed(
        &mut viewer,
        ServerMessage::DocChanges {
            folder: FolderId::default_folder(),
            changes: doc.changes_since(&[]),
        },
    );
    viewer
}

#[wasm_bindgen_test]
fn a_stored_key_comes_back_and_a_new_one_is_random() {
    let first = Viewer::new("", "alice").expect("new key");
    let second = Viewer::new("", "alice").expect("new key");
    assert_ne!(first.device_id(), second.device_id());
    let again = Viewer::new(&first.secret_hex(), "alice").expect("stored key");
    assert_eq!(again.device_id(), first.device_id());
    assert!(Viewer::new("not hex", "alice").is_err());
}

#[wasm_bindgen_test]
fn the_handshake_signs_an_enrolment_then_asks_for_the_document() {
    let mut viewer = Viewer::new("", "alice").expect("viewer");
    viewer.enrol_with("ABCD-EFGH-JKMN", "browser");
    let hello = feed(
        &mut viewer,
        ServerMessage::Challenge {
            version: 1,
            relay_id: [7; 32],
            nonce: [9; 32],
        },
    );
    let [ClientMessage::Hello(hello)] = &hello[..] else {
        panic!("expected a hello, got {hello:?}");
    };
    cloud3_engine::auth::challenge::verify_hello(&[7; 32], &[9; 32], hello).expect("signed");
    assert_eq!(hello.user, "alice");
    let after = feed(
        &mut viewer,
        ServerMessage::Welcome {
            device: hello.device,
            read_only: true,
            now: WallTime(0),
            retention_days: 30,
        },
    );
    assert!(matches!(after[..], [ClientMessage::DocHeads { .. }]));
    assert!(viewer.read_only());
}

#[wasm_bindgen_test]
fn synced_changes_list_the_tree_and_a_file_opens_verified() {
    let text = b"hello from the folder".repeat(20);
    let mut viewer = synced_viewer(&text);
    let tree: serde_json::Value = serde_json::from_str(&viewer.tree()).expect("json");
    let paths: Vec<&str> = tree
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["path"].as_str().expect("path"))
        .collect();
    assert_eq!(paths, ["docs", "docs/readme.txt"]);

    let opened = viewer.open(&NodeId([2; 16]).to_key(), -1).expect("open");
    let asked = sent(opened.frames());
    let id = ChunkId::of(&text);
    assert_eq!(asked, vec![ClientMessage::ChunkGet { ids: vec![id] }]);
    // A zstd frame made by the native `zstd` (as the relay stores chunks), in two pieces.
    let encoded = include_bytes!("hello.zst").to_vec();
    let half = encoded.len() / 2;
    for (offset, data) in [(0, &encoded[..half]), (half, &encoded[half..])] {
        feed(
            &mut viewer,
            ServerMessage::ChunkData(ChunkPiece {
                id,
                raw_len: text.len() as u32,
                codec: cloud3_engine::wire::ChunkCodec::Zstd,
                encoded_len: encoded.len() as u32,
                offset: offset as u32,
                data: data.to_vec(),
            }),
        );
    }
    assert!(viewer.events().contains(&opened.key()));
    assert_eq!(viewer.bytes(&opened.key()).expect("bytes"), text);
}

#[wasm_bindgen_test]
fn a_chunk_that_does_not_match_its_hash_is_refused() {
    let text = b"the real bytes".to_vec();
    let mut viewer = synced_viewer(&text);
    viewer.events();
    let opened = viewer.open(&NodeId([2; 16]).to_key(), -1).expect("open");
    let forged = b"forged bytes!!".to_vec();
    feed(
        &mut viewer,
        ServerMessage::ChunkData(ChunkPiece {
            id: ChunkId::of(&text),
            raw_len: forged.len() as u32,
            codec: cloud3_engine::wire::ChunkCodec::Raw,
            encoded_len: forged.len() as u32,
            offset: 0,
            data: forged,
        }),
    );
    assert!(viewer.events().contains("hash-mismatch"));
    assert!(viewer.bytes(&opened.key()).is_err());
}

#[wasm_bindgen_test]
fn history_lists_only_versions_inside_the_relays_window() {
    const DAY: i64 = 86_400_000;
    let mut doc = folder_with(b"first");
    // Rewritten on day 2 and day 80; the relay says it is day 100 and keeps 30 days.
    for (day, text) in [(2, &b"second"[..]), (80, &b"third"[..])] {
        let content = Content {
            size: text.len() as u64,
            mtime: WallTime(day * DAY),
            written_at: WallTime(day * DAY),
            author: ShortDeviceId([1; 8]),
            body: ContentBody::Inline(Manifest {
                entries: vec![ManifestEntry {
                    id: ChunkId::of(text),
                    len: text.len() as u32,
                }],
            }),
        };
        doc.set_content(NodeId([2; 16]), content).expect("set");
        doc.commit(WallTime(day * DAY));
    }
    let mut viewer = Viewer::new("", "alice").expect("viewer");
    welcomed_at(&mut viewer, WallTime(100 * DAY), 30);
    feed(
        &mut viewer,
        ServerMessage::DocChanges {
            folder: FolderId::default_folder(),
            changes: doc.changes_since(&[]),
        },
    );
    let node = NodeId([2; 16]).to_key();
    let history: serde_json::Value =
        serde_json::from_str(&viewer.history(&node).expect("history")).expect("json");
    let numbers: Vec<u64> = history["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| v["version"].as_u64().expect("number"))
        .collect();
    // Version 0 was replaced on day 2, before day 70: dropped; 1 was replaced on day 80.
    assert_eq!(numbers, [1, 2], "{history}");
    assert_eq!(history["dropped"], 1);
    assert_eq!(history["windowDays"], 30);
    // The cutoff is the relay's day 100 less 30 days (give or take the test's own run time).
    let cutoff = history["cutoff"].as_i64().expect("cutoff");
    assert!((cutoff - 70 * DAY).abs() < 60_000, "cutoff {cutoff}");
    assert!(
        viewer.open(&node, 0).is_err(),
        "a dropped version does not open"
    );
    assert!(viewer.open(&node, 1).is_ok());
}
