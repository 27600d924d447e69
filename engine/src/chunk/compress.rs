//! zstd compression of chunks (skipped when it does not shrink them), and opening a stored or
//! received blob: decompression bounded by the declared raw length, then a SHA-256 check against
//! its id. Every blob read from storage or the wire goes through [`open`].
//!
//! Natively the C zstd library compresses and decompresses; on wasm32 only decompression is
//! needed, done by the pure-Rust `ruzstd`.

use crate::ids::ChunkId;
use crate::wire::ChunkCodec;
use crate::wire::limits::MAX_BLOB_BYTES;

/// zstd level for chunks: fast, and most of the gain on mixed data.
pub const LEVEL: i32 = 1;

/// Blobs smaller than this (whole small files: a file under the minimum chunk size is one
/// chunk) are compressed harder: they are resent whole when edited, and their bytes are few.
pub const SMALL_BLOB: usize = 16 * 1024;

/// zstd level for small blobs. Level 6 (lazy2) keeps all but 0.4 % of level 9's gain on a real
/// source tree's edited files (W4) at under half its cost; level 9's binary-tree search took a
/// sixth of the agent's CPU time in W1's upload of 10,000 small files.
pub const SMALL_LEVEL: i32 = 6;

/// A blob as stored and sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Encoded {
    /// How `bytes` are encoded.
    pub codec: ChunkCodec,
    /// The encoded bytes.
    pub bytes: Vec<u8>,
}

/// Why a blob could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The declared size is larger than any blob may be.
    #[error("blob {id} declares {raw_len} bytes, over the limit")]
    TooLarge {
        /// The blob.
        id: ChunkId,
        /// Its declared raw length.
        raw_len: u64,
    },
    /// The bytes do not decompress to exactly the declared size.
    #[error("blob {id} does not decompress to its declared {raw_len} bytes")]
    BadEncoding {
        /// The blob.
        id: ChunkId,
        /// Its declared raw length.
        raw_len: u64,
    },
    /// The bytes do not hash to the id.
    #[error("blob {id} failed its hash check")]
    HashMismatch {
        /// The blob.
        id: ChunkId,
    },
}

/// Compresses `raw`, keeping it raw when zstd does not make it smaller. Each thread keeps one
/// zstd context rather than allocating one per chunk.
#[cfg(not(target_arch = "wasm32"))]
pub fn compress(raw: &[u8]) -> Encoded {
    use std::cell::RefCell;
    type Slot = RefCell<Option<zstd::bulk::Compressor<'static>>>;
    thread_local! {
        static COMPRESSOR: Slot = const { RefCell::new(None) };
        static SMALL_COMPRESSOR: Slot = const { RefCell::new(None) };
    }
    let (compressor, level) = if raw.len() < SMALL_BLOB {
        (&SMALL_COMPRESSOR, SMALL_LEVEL)
    } else {
        (&COMPRESSOR, LEVEL)
    };
    let compressed = compressor.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = zstd::bulk::Compressor::new(level).ok();
        }
        slot.as_mut().and_then(|c| c.compress(raw).ok())
    });
    match compressed {
        Some(bytes) if bytes.len() < raw.len() => Encoded {
            codec: ChunkCodec::Zstd,
            bytes,
        },
        _ => Encoded {
            codec: ChunkCodec::Raw,
            bytes: raw.to_vec(),
        },
    }
}

/// Decodes and verifies a blob: at most `raw_len` bytes are ever produced, and they must hash
/// to `id`.
pub fn open(
    id: ChunkId,
    codec: ChunkCodec,
    bytes: &[u8],
    raw_len: u32,
) -> Result<Vec<u8>, ChunkError> {
    let raw_len_usize = raw_len as usize;
    if raw_len_usize > MAX_BLOB_BYTES {
        return Err(ChunkError::TooLarge {
            id,
            raw_len: u64::from(raw_len),
        });
    }
    let bad = || ChunkError::BadEncoding {
        id,
        raw_len: u64::from(raw_len),
    };
    let raw = match codec {
        ChunkCodec::Raw => bytes.to_vec(),
        ChunkCodec::Zstd => decompress_bounded(bytes, raw_len_usize).ok_or_else(bad)?,
    };
    if raw.len() != raw_len_usize {
        return Err(bad());
    }
    if ChunkId::of(&raw) != id {
        return Err(ChunkError::HashMismatch { id });
    }
    Ok(raw)
}

#[cfg(not(target_arch = "wasm32"))]
fn decompress_bounded(bytes: &[u8], raw_len: usize) -> Option<Vec<u8>> {
    use std::cell::RefCell;
    // One context per thread: making one per blob showed in the relay's and agent's profiles.
    thread_local! {
        static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
            const { RefCell::new(None) };
    }
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = zstd::bulk::Decompressor::new().ok();
        }
        // The output buffer is exactly `raw_len`: a frame that would produce more fails.
        slot.as_mut()?.decompress(bytes, raw_len).ok()
    })
}

#[cfg(target_arch = "wasm32")]
fn decompress_bounded(bytes: &[u8], raw_len: usize) -> Option<Vec<u8>> {
    use std::io::Read;
    let mut source = bytes;
    let decoder = ruzstd::decoding::StreamingDecoder::new(&mut source).ok()?;
    let mut out = Vec::with_capacity(raw_len);
    // Read one byte more than allowed to detect an oversized frame without inflating it.
    decoder
        .take(raw_len as u64 + 1)
        .read_to_end(&mut out)
        .ok()?;
    (out.len() == raw_len).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressible_chunks_shrink_and_reopen() {
        let raw = b"hello hello hello hello hello hello hello hello".repeat(100);
        let encoded = compress(&raw);
        assert_eq!(encoded.codec, ChunkCodec::Zstd);
        assert!(encoded.bytes.len() < raw.len());
        let id = ChunkId::of(&raw);
        assert_eq!(
            open(id, encoded.codec, &encoded.bytes, raw.len() as u32),
            Ok(raw)
        );
    }

    #[test]
    fn incompressible_chunks_stay_raw() {
        let raw: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let encoded = compress(&raw);
        if encoded.codec == ChunkCodec::Raw {
            assert_eq!(encoded.bytes, raw);
        }
        assert_eq!(
            open(
                ChunkId::of(&raw),
                encoded.codec,
                &encoded.bytes,
                raw.len() as u32
            ),
            Ok(raw)
        );
    }

    #[test]
    fn a_decompression_bomb_is_refused_without_inflating() {
        // 512 MiB of zeros compress to a few KiB; declared as 1 KiB it must fail.
        let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 19).unwrap();
        let id = ChunkId([0; 32]);
        assert!(matches!(
            open(id, ChunkCodec::Zstd, &bomb, 1024),
            Err(ChunkError::BadEncoding { .. })
        ));
        assert!(matches!(
            open(id, ChunkCodec::Zstd, &bomb, u32::MAX),
            Err(ChunkError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_wrong_hash_is_detected() {
        let raw = b"data".to_vec();
        let encoded = compress(&raw);
        assert_eq!(
            open(ChunkId([1; 32]), encoded.codec, &encoded.bytes, 4),
            Err(ChunkError::HashMismatch {
                id: ChunkId([1; 32])
            })
        );
    }
}
