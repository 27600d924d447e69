//! One entry point per decoder that takes bytes from the network (feature `test-support`), for
//! fuzzers and for the property tests in `engine/tests/hostile_bytes.rs`, which run them in
//! `cargo test`. Each must return without panicking whatever it is given; a decoder that accepts
//! its input must round-trip it.

use sha2::{Digest, Sha256};

use crate::chunk::{self, Manifest};
use crate::ids::ChunkId;
use crate::tree::{Content, FolderDoc, TreeError};
use crate::wire::{ChunkCodec, decode_client, decode_server, encode_client, encode_server};

/// A WebSocket frame as the relay (client messages) and a device (server messages) decode it.
pub fn frame(bytes: &[u8]) {
    if let Ok(message) = decode_client(bytes) {
        assert_eq!(decode_client(&encode_client(&message)), Ok(message));
    }
    if let Ok(message) = decode_server(bytes) {
        assert_eq!(decode_server(&encode_server(&message)), Ok(message));
    }
}

/// A blob as received in chunk pieces: the first byte picks the codec, the next two the declared
/// raw length, the rest is the encoded bytes. Nothing larger than declared is ever produced.
pub fn blob(bytes: &[u8]) {
    let [codec, a, b, rest @ ..] = bytes else {
        return;
    };
    let codec = if codec & 1 == 0 {
        ChunkCodec::Raw
    } else {
        ChunkCodec::Zstd
    };
    let raw_len = u32::from(u16::from_le_bytes([*a, *b]));
    // Any id: decoding runs before the hash check, which then must refuse a wrong one.
    let id = ChunkId::of(rest);
    if let Ok(raw) = chunk::open(id, codec, rest, raw_len) {
        assert_eq!(raw.len(), raw_len as usize);
        assert_eq!(ChunkId::of(&raw), id);
    }
}

/// A manifest blob's bytes.
pub fn manifest(bytes: &[u8]) {
    if let Ok(manifest) = Manifest::decode(bytes) {
        assert_eq!(manifest.encode(), bytes);
    }
}

/// A content value read from the document.
pub fn content(bytes: &[u8]) {
    if let Ok(content) = Content::decode(bytes) {
        assert_eq!(Content::decode(&content.encode()), Ok(content));
    }
}

/// Automerge change bytes as a device or the relay applies them, then derives the tree and
/// reads the blob references from them (as the relay does).
pub fn changes(bytes: &[u8]) {
    let changes = vec![bytes.to_vec()];
    let mut doc = FolderDoc::new(&[0xfe; 16]);
    doc.record_refs();
    match doc.apply_changes(changes) {
        Ok(_) => {
            assert!(!doc.is_broken());
            doc.derive();
            doc.take_refs();
        }
        Err(TreeError::Broken) => assert!(doc.is_broken()),
        Err(_) => assert!(!doc.is_broken()),
    }
}

/// Wraps `body` as an uncompressed Automerge change chunk with a correct checksum, so fuzzed
/// bytes get past the header to Automerge's column decoders (as a hostile device's would).
pub fn change_chunk(body: &[u8]) -> Vec<u8> {
    const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
    let mut header = vec![1u8];
    let mut len = body.len() as u64;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            header.push(byte);
            break;
        }
        header.push(byte | 0x80);
    }
    let checksum = Sha256::new()
        .chain_update(&header)
        .chain_update(body)
        .finalize();
    let mut out = MAGIC.to_vec();
    out.extend_from_slice(&checksum[..4]);
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
    out
}
