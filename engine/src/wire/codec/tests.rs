//! Codec tests: byte-exact snapshots, roundtrips, limits and hostile bytes.

use proptest::prelude::*;

use super::*;
use crate::ids::{ChunkId, DeviceId, FolderId};
use crate::wire::message::{
    ChunkCodec, ChunkPiece, ContentVerdict, ErrorCode, UnscannedReason, Verdict,
};

#[test]
fn ping_frame_is_byte_exact() {
    // version 1, variant index 9 (Ping), varint 300.
    assert_eq!(
        encode_client(&ClientMessage::Ping(300)),
        vec![0, 1, 9, 0xac, 0x02]
    );
}

#[test]
fn doc_heads_frame_is_byte_exact() {
    let frame = encode_server(&ServerMessage::DocHeads {
        folder: FolderId("f".into()),
        heads: vec![[0xab; 32]],
    });
    let mut expected = vec![0, 1, 2, 1, b'f', 1];
    expected.extend([0xab; 32]);
    assert_eq!(frame, expected);
}

#[test]
fn chunk_piece_frame_is_byte_exact() {
    // The piece's bytes travel as one length-prefixed run (postcard's layout for a byte
    // sequence either way: serialising them as bytes rather than element by element keeps the
    // wire format).
    let frame = encode_client(&ClientMessage::ChunkPut(ChunkPiece {
        id: ChunkId([7; 32]),
        raw_len: 300,
        codec: ChunkCodec::Zstd,
        encoded_len: 3,
        offset: 0,
        data: vec![1, 2, 3],
    }));
    let mut expected = vec![0, 1, 4];
    expected.extend([7; 32]);
    expected.extend([0xac, 0x02, 1, 3, 0, 3, 1, 2, 3]);
    assert_eq!(frame, expected);
    assert_eq!(
        decode_client(&frame).map(|m| encode_client(&m)),
        Ok(frame.clone())
    );
}

#[test]
fn a_blob_splits_into_pieces_that_cover_it_in_order() {
    use crate::wire::limits::MAX_PIECE_BYTES;
    let id = ChunkId([3; 32]);
    let small: Vec<ChunkPiece> = ChunkPiece::split(id, 9, ChunkCodec::Raw, vec![1; 9]).collect();
    assert_eq!(small.len(), 1);
    assert_eq!((small[0].offset, small[0].encoded_len), (0, 9));
    assert_eq!(small[0].data, vec![1; 9]);

    let len = 2 * MAX_PIECE_BYTES + 5;
    let bytes: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
    let pieces: Vec<ChunkPiece> =
        ChunkPiece::split(id, 7, ChunkCodec::Zstd, bytes.clone()).collect();
    assert_eq!(pieces.len(), 3);
    let mut joined = Vec::new();
    for piece in &pieces {
        assert_eq!(piece.offset as usize, joined.len());
        assert_eq!(
            (piece.id, piece.raw_len, piece.codec, piece.encoded_len),
            (id, 7, ChunkCodec::Zstd, len as u32)
        );
        assert!(piece.data.len() <= MAX_PIECE_BYTES);
        joined.extend_from_slice(&piece.data);
    }
    assert_eq!(joined, bytes);
}

#[test]
fn unknown_version_is_refused_before_decoding() {
    let mut frame = encode_client(&ClientMessage::Ping(1));
    frame[1] = 99;
    assert_eq!(
        decode_client(&frame),
        Err(DecodeError::UnsupportedVersion(99))
    );
}

#[test]
fn oversized_and_truncated_frames_are_refused() {
    let big = vec![0u8; MAX_MESSAGE_BYTES + 1];
    assert_eq!(
        decode_client(&big),
        Err(DecodeError::TooLarge(MAX_MESSAGE_BYTES + 1))
    );
    assert_eq!(decode_client(&[0]), Err(DecodeError::Truncated));
    assert!(matches!(
        decode_client(&[0, 1]),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn trailing_bytes_are_refused() {
    let mut frame = encode_client(&ClientMessage::Ping(1));
    frame.push(0);
    assert!(matches!(
        decode_client(&frame),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn huge_length_prefix_does_not_allocate() {
    // DocChanges with a claimed vector length of 2^63: must fail fast, not allocate.
    let mut frame = vec![0, 1, 2, 1, b'f'];
    frame.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
    assert!(matches!(
        decode_client(&frame),
        Err(DecodeError::Malformed(_))
    ));
}

fn arb_client() -> impl Strategy<Value = ClientMessage> {
    prop_oneof![
        any::<u64>().prop_map(ClientMessage::Ping),
        (
            any::<String>(),
            proptest::collection::vec(any::<[u8; 32]>(), 0..4)
        )
            .prop_map(|(folder, heads)| ClientMessage::DocHeads {
                folder: FolderId(folder),
                heads
            }),
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..4).prop_map(
            |changes| ClientMessage::DocChanges {
                folder: FolderId::default_folder(),
                changes
            }
        ),
        (
            any::<u32>(),
            proptest::collection::vec(any::<[u8; 32]>(), 0..4)
        )
            .prop_map(|(request, ids)| ClientMessage::ChunkQuery {
                request,
                ids: ids.into_iter().map(ChunkId).collect()
            }),
        (
            any::<[u8; 32]>(),
            any::<u32>(),
            any::<bool>(),
            proptest::collection::vec(any::<u8>(), 0..64)
        )
            .prop_map(
                |(id, raw_len, zstd, data)| ClientMessage::ChunkPut(ChunkPiece {
                    id: ChunkId(id),
                    raw_len,
                    codec: if zstd {
                        ChunkCodec::Zstd
                    } else {
                        ChunkCodec::Raw
                    },
                    encoded_len: data.len() as u32,
                    offset: 0,
                    data,
                })
            ),
        any::<[u8; 32]>().prop_map(|d| ClientMessage::Revoke {
            device: DeviceId(d)
        }),
        any::<bool>().prop_map(|read_only| ClientMessage::PairRequest { read_only }),
    ]
}

proptest! {
    #[test]
    fn client_messages_roundtrip(message in arb_client()) {
        let frame = encode_client(&message);
        prop_assert_eq!(decode_client(&frame), Ok(message));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let _ = decode_client(&bytes);
        let _ = decode_server(&bytes);
        let mut versioned = vec![0, 1];
        versioned.extend(&bytes);
        let _ = decode_client(&versioned);
        let _ = decode_server(&versioned);
    }

    #[test]
    fn mangled_frames_never_panic(message in arb_client(), idx in any::<usize>(), byte in any::<u8>()) {
        let mut frame = encode_client(&message);
        let idx = idx % frame.len();
        frame[idx] = byte;
        let _ = decode_client(&frame);
    }
}

#[test]
fn error_message_roundtrips() {
    let message = ServerMessage::Error {
        code: ErrorCode::Quota,
        message: "quota full".into(),
    };
    assert_eq!(decode_server(&encode_server(&message)), Ok(message));
}

#[test]
fn scan_messages_roundtrip() {
    let flagged = Verdict::Flagged {
        engine: "clamav".into(),
        signature: "Eicar-Test-Signature".into(),
    };
    let messages = [
        ServerMessage::Verdicts(vec![
            ContentVerdict {
                content: ChunkId([1; 32]),
                verdict: flagged.clone(),
            },
            ContentVerdict {
                content: ChunkId([2; 32]),
                verdict: Verdict::Unscanned {
                    reason: UnscannedReason::TooLarge,
                },
            },
        ]),
        ServerMessage::ChunkRefused {
            id: ChunkId([3; 32]),
            content: ChunkId([1; 32]),
            verdict: flagged.clone(),
        },
    ];
    for message in messages {
        assert_eq!(decode_server(&encode_server(&message)), Ok(message));
    }
    assert_eq!(
        flagged.to_string(),
        "Flagged { engine: clamav, signature: Eicar-Test-Signature }"
    );
    assert_eq!(
        Verdict::Unscanned {
            reason: UnscannedReason::TooLarge
        }
        .to_string(),
        "Unscanned { too large }"
    );
}

#[test]
fn chunk_refused_frame_is_byte_exact() {
    let frame = encode_server(&ServerMessage::ChunkRefused {
        id: ChunkId([3; 32]),
        content: ChunkId([1; 32]),
        verdict: Verdict::Flagged {
            engine: "e".into(),
            signature: "s".into(),
        },
    });
    // Variant 15 of `ServerMessage` (after `Pong`), the two ids, `Flagged` (variant 1) and its
    // two strings.
    let mut expected = vec![0, 1, 15];
    expected.extend([3; 32]);
    expected.extend([1; 32]);
    expected.extend([1, 1, b'e', 1, b's']);
    assert_eq!(frame, expected);
    let pending = encode_server(&ServerMessage::Verdicts(vec![ContentVerdict {
        content: ChunkId([2; 32]),
        verdict: Verdict::Unscanned {
            reason: UnscannedReason::Pending,
        },
    }]));
    let mut expected = vec![0, 1, 14, 1];
    expected.extend([2; 32]);
    expected.extend([2, 0]);
    assert_eq!(pending, expected);
}

#[test]
fn storage_full_frame_is_byte_exact() {
    // version 1, variant index 12 (Error), code index 7 (StorageFull), then the message.
    let message = ServerMessage::Error {
        code: ErrorCode::StorageFull,
        message: "full".into(),
    };
    let frame = encode_server(&message);
    assert_eq!(frame, vec![0, 1, 12, 7, 4, b'f', b'u', b'l', b'l']);
    assert_eq!(decode_server(&frame), Ok(message));
}
