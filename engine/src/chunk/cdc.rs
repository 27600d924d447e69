//! Content-defined chunking with FastCDC (2020): boundaries depend on the bytes around them, so an
//! insert moves only the chunks it touches. Parameters: 16 KiB minimum, 64 KiB average, 256 KiB
//! maximum (a chunk always fits one wire message; see BENCHMARKS.md for the measurement).

use std::io::Read;
use std::ops::Range;

use fastcdc::v2020::{FastCDC, StreamCDC};

/// Smallest chunk (except a file's last).
pub const MIN_SIZE: u32 = 16 * 1024;
/// Target average chunk.
pub const AVG_SIZE: u32 = 64 * 1024;
/// Largest chunk.
pub const MAX_SIZE: u32 = 256 * 1024;

/// Chunk boundaries of in-memory bytes, in order.
pub fn cut(data: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    FastCDC::new(data, MIN_SIZE, AVG_SIZE, MAX_SIZE).map(|c| c.offset..c.offset + c.length)
}

/// Chunks of a stream, read with a buffer of at most [`MAX_SIZE`] bytes.
pub fn stream<R: Read>(reader: R) -> impl Iterator<Item = std::io::Result<Vec<u8>>> {
    StreamCDC::new(reader, MIN_SIZE, AVG_SIZE, MAX_SIZE).map(|chunk| match chunk {
        Ok(chunk) => Ok(chunk.data),
        Err(fastcdc::v2020::Error::IoError(error)) => Err(error),
        Err(other) => Err(std::io::Error::other(other.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;
    use crate::ids::ChunkId;

    fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
        bytes
    }

    #[test]
    fn chunks_cover_the_input_within_bounds() {
        let data = random_bytes(1, 3 << 20);
        let ranges: Vec<_> = cut(&data).collect();
        assert_eq!(ranges.first().map(|r| r.start), Some(0));
        assert_eq!(ranges.last().map(|r| r.end), Some(data.len()));
        for pair in ranges.windows(2) {
            assert_eq!(pair[0].end, pair[1].start);
        }
        for range in &ranges[..ranges.len() - 1] {
            assert!(range.len() >= MIN_SIZE as usize && range.len() <= MAX_SIZE as usize);
        }
    }

    #[test]
    fn streaming_matches_in_memory_cuts() {
        let data = random_bytes(2, 1 << 20);
        let streamed: Vec<Vec<u8>> = stream(&data[..]).map(Result::unwrap).collect();
        let cut_up: Vec<Vec<u8>> = cut(&data).map(|r| data[r].to_vec()).collect();
        assert_eq!(streamed, cut_up);
    }

    #[test]
    fn a_one_byte_insert_changes_few_chunks() {
        let seed = std::env::var("CLOUD3_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(3);
        let data = random_bytes(seed, 8 << 20);
        let mut edited = data.clone();
        edited.insert(data.len() / 2, 0x42);
        let ids = |bytes: &[u8]| -> std::collections::HashSet<ChunkId> {
            cut(bytes).map(|r| ChunkId::of(&bytes[r])).collect()
        };
        let before = ids(&data);
        let changed = ids(&edited).difference(&before).count();
        assert!(changed <= 2, "seed {seed}: {changed} chunks changed");
    }
}
