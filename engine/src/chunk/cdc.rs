//! Content-defined chunking with FastCDC (2020): boundaries depend on the bytes around them, so an
//! insert moves only the chunks it touches. Parameters: 16 KiB minimum, 64 KiB average, 256 KiB
//! maximum (a chunk always fits one wire message; see BENCHMARKS.md for the measurement).

use std::io::Read;
use std::ops::Range;

use fastcdc::v2020::FastCDC;

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

/// Bytes read at once by [`for_each_chunk`] from a large stream.
const READ_BLOCK: usize = 4 << 20;

/// Calls `each` with every chunk of a stream, in order (the boundaries [`cut`] finds in the
/// whole), each seen in place in a read buffer: no copy per chunk. The buffer starts at
/// `size_hint + 1` bytes (a small file is read in one call), at most 4 MiB, and grows
/// when it cannot hold a whole chunk.
pub fn for_each_chunk<R: Read>(
    mut reader: R,
    size_hint: u64,
    mut each: impl FnMut(&[u8]),
) -> std::io::Result<()> {
    let start_len = usize::try_from(size_hint)
        .map_or(READ_BLOCK, |hint| hint.saturating_add(1).min(READ_BLOCK));
    let mut buffer = vec![0u8; start_len];
    let mut filled = 0;
    loop {
        let mut end_of_stream = false;
        while filled < buffer.len() {
            match reader.read(&mut buffer[filled..]) {
                Ok(0) => {
                    end_of_stream = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // A chunk that ends where the bytes read so far end may only be cut short by the
        // buffer: unless the stream ended, it is cut again once more bytes are in.
        let mut done = 0;
        for range in cut(&buffer[..filled]) {
            if range.end == filled && !end_of_stream {
                break;
            }
            each(&buffer[range.clone()]);
            done = range.end;
        }
        if end_of_stream {
            return Ok(());
        }
        buffer.copy_within(done..filled, 0);
        filled -= done;
        if filled == buffer.len() {
            let grown = (buffer.len() * 2).max(2 * MAX_SIZE as usize);
            buffer.resize(grown, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, RngExt, SeedableRng};
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

    /// A reader handing out at most `step` bytes per call, as pipes and some file systems do.
    struct Dribble<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Read for Dribble<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn streaming_matches_in_memory_cuts() {
        let seed = std::env::var("CLOUD3_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        for round in 0..40 {
            let len = match round % 4 {
                0 => rng.random_range(0..64 << 10),
                1 => rng.random_range(0..(2 * MAX_SIZE) as usize),
                _ => rng.random_range(0..(3 * READ_BLOCK)),
            };
            // Half random, half repetitive, so both forced and found cuts occur.
            let mut data = random_bytes(rng.random(), len);
            data[len / 2..].iter_mut().for_each(|b| *b &= 0x3);
            let step = rng.random_range(1..(1 << 20));
            let hint = [0, len as u64, rng.random_range(0..(8 << 20))][rng.random_range(0..3)];
            let mut streamed: Vec<Vec<u8>> = Vec::new();
            for_each_chunk(Dribble { data: &data, step }, hint, |c| {
                streamed.push(c.to_vec())
            })
            .unwrap();
            let cut_up: Vec<Vec<u8>> = cut(&data).map(|r| data[r].to_vec()).collect();
            assert!(
                streamed == cut_up,
                "seed {seed} round {round}: {len} bytes read {step} at a time, hint {hint}"
            );
        }
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
