//! A file's ordered chunk list and its content hash.
//!
//! Encoding: `count: u32 LE` then per chunk `id: [u8; 32] || len: u32 LE`. The content hash of a
//! file is `SHA-256(encoding)`, so equal bytes chunked the same way always have one hash, and a
//! manifest stored as a blob is named by that same hash. Small manifests are inlined in the
//! document ([`Manifest::INLINE_MAX_CHUNKS`]); larger ones are stored as blobs so a file's cost in
//! the document does not grow with its size.

use crate::ids::ChunkId;

/// One chunk of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ManifestEntry {
    /// The chunk's id.
    pub id: ChunkId,
    /// Its raw length in bytes.
    pub len: u32,
}

/// A file's chunks in order.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Manifest {
    /// The chunks, in file order.
    pub entries: Vec<ManifestEntry>,
}

/// Why manifest bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// The bytes are not a manifest encoding.
    #[error("malformed manifest of {len} bytes")]
    Malformed {
        /// Length of the refused bytes.
        len: usize,
    },
}

const ENTRY_BYTES: usize = 36;

impl Manifest {
    /// Manifests with at most this many chunks live inside the document.
    pub const INLINE_MAX_CHUNKS: usize = 4;

    /// The file's total size.
    pub fn size(&self) -> u64 {
        self.entries.iter().map(|e| u64::from(e.len)).sum()
    }

    /// Whether this manifest is stored inline in the document rather than as a blob.
    pub fn is_inline(&self) -> bool {
        self.entries.len() <= Self::INLINE_MAX_CHUNKS
    }

    /// The encoding hashed into the content hash and stored as a blob.
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(4 + self.entries.len() * ENTRY_BYTES);
        bytes.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for entry in &self.entries {
            bytes.extend_from_slice(&entry.id.0);
            bytes.extend_from_slice(&entry.len.to_le_bytes());
        }
        bytes
    }

    /// Decodes [`Manifest::encode`]'s output; the length is checked before allocating.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let malformed = ManifestError::Malformed { len: bytes.len() };
        let (count, rest) = bytes.split_first_chunk::<4>().ok_or(malformed.clone())?;
        let count = u32::from_le_bytes(*count) as usize;
        if rest.len() != count.checked_mul(ENTRY_BYTES).ok_or(malformed.clone())? {
            return Err(malformed);
        }
        let entries = rest
            .chunks_exact(ENTRY_BYTES)
            .map(|raw| {
                let (id, len) = raw.split_at(32);
                let mut id_bytes = [0u8; 32];
                id_bytes.copy_from_slice(id);
                let mut len_bytes = [0u8; 4];
                len_bytes.copy_from_slice(len);
                ManifestEntry {
                    id: ChunkId(id_bytes),
                    len: u32::from_le_bytes(len_bytes),
                }
            })
            .collect();
        Ok(Manifest { entries })
    }

    /// The content hash of the file: SHA-256 of the encoding.
    pub fn content_hash(&self) -> ChunkId {
        ChunkId::of(&self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_roundtrips_and_is_byte_exact() {
        let manifest = Manifest {
            entries: vec![ManifestEntry {
                id: ChunkId([1; 32]),
                len: 5,
            }],
        };
        let bytes = manifest.encode();
        let mut expected = vec![1, 0, 0, 0];
        expected.extend([1; 32]);
        expected.extend([5, 0, 0, 0]);
        assert_eq!(bytes, expected);
        assert_eq!(Manifest::decode(&bytes), Ok(manifest.clone()));
        assert_eq!(manifest.size(), 5);
    }

    #[test]
    fn empty_file_has_a_fixed_hash() {
        let empty = Manifest::default();
        assert_eq!(empty.encode(), vec![0, 0, 0, 0]);
        assert_eq!(empty.content_hash(), ChunkId::of(&[0, 0, 0, 0]));
    }

    #[test]
    fn lying_counts_are_refused() {
        assert!(Manifest::decode(&[]).is_err());
        assert!(Manifest::decode(&[0xff, 0xff, 0xff, 0xff]).is_err());
        assert!(Manifest::decode(&[1, 0, 0, 0, 1, 2]).is_err());
    }
}
