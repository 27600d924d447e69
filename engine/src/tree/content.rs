//! A file's content as one scalar in the document: size, times, author and either its chunk list
//! (small files), the hash of its manifest blob (large files) or a symlink target.
//!
//! One scalar, replaced whole: concurrent edits then conflict on one key, which the derivation
//! turns into conflict copies (editing a list in place on two devices would merge into a list
//! matching neither). Encoding: `1 || body tag || varint size || zigzag mtime || zigzag
//! written_at || author[8] || body`.

use crate::chunk::{Manifest, ManifestEntry};
use crate::ids::{ChunkId, ShortDeviceId};
use crate::time::WallTime;

/// A version of a file's (or symlink's) content.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Content {
    /// Size in bytes.
    pub size: u64,
    /// The file's modification time on the device that wrote it.
    pub mtime: WallTime,
    /// When the writing device recorded this version (orders concurrent versions).
    pub written_at: WallTime,
    /// The device that wrote it.
    pub author: ShortDeviceId,
    /// The bytes, by reference.
    pub body: ContentBody,
}

/// Where a content's bytes are.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ContentBody {
    /// The chunk list itself (at most [`Manifest::INLINE_MAX_CHUNKS`] chunks).
    Inline(Manifest),
    /// The id of a manifest blob, which is also the content hash.
    Blob(ChunkId),
    /// A symlink's target, stored as text and never followed.
    Symlink(String),
}

/// Why content bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    /// The bytes are not a content encoding this build understands.
    #[error("malformed content value: {0}")]
    Malformed(&'static str),
}

const FORMAT: u8 = 1;
const TAG_INLINE: u8 = 0;
const TAG_BLOB: u8 = 1;
const TAG_SYMLINK: u8 = 2;
/// Longest symlink target accepted (PATH_MAX on Linux).
const MAX_TARGET: usize = 4096;

impl Content {
    /// The content hash: equal for equal bytes chunked the same way.
    pub fn hash(&self) -> ChunkId {
        match &self.body {
            ContentBody::Inline(manifest) => manifest.content_hash(),
            ContentBody::Blob(id) => *id,
            ContentBody::Symlink(target) => {
                let mut bytes = b"symlink\0".to_vec();
                bytes.extend_from_slice(target.as_bytes());
                ChunkId::of(&bytes)
            }
        }
    }

    /// The scalar stored in the document.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(FORMAT);
        out.push(match self.body {
            ContentBody::Inline(_) => TAG_INLINE,
            ContentBody::Blob(_) => TAG_BLOB,
            ContentBody::Symlink(_) => TAG_SYMLINK,
        });
        put_varint(&mut out, self.size);
        put_varint(&mut out, zigzag(self.mtime.0));
        put_varint(&mut out, zigzag(self.written_at.0));
        out.extend_from_slice(&self.author.0);
        match &self.body {
            ContentBody::Inline(manifest) => {
                put_varint(&mut out, manifest.entries.len() as u64);
                for entry in &manifest.entries {
                    out.extend_from_slice(&entry.id.0);
                    put_varint(&mut out, u64::from(entry.len));
                }
            }
            ContentBody::Blob(id) => out.extend_from_slice(&id.0),
            ContentBody::Symlink(target) => {
                put_varint(&mut out, target.len() as u64);
                out.extend_from_slice(target.as_bytes());
            }
        }
        out
    }

    /// Decodes [`Content::encode`]'s output; lengths are checked before allocating.
    pub fn decode(bytes: &[u8]) -> Result<Content, ContentError> {
        let mut input = Reader(bytes);
        if input.byte()? != FORMAT {
            return Err(ContentError::Malformed("unknown format"));
        }
        let tag = input.byte()?;
        let size = input.varint()?;
        let mtime = WallTime(unzigzag(input.varint()?));
        let written_at = WallTime(unzigzag(input.varint()?));
        let author = ShortDeviceId(input.array::<8>()?);
        let body = match tag {
            TAG_INLINE => {
                let count = input.varint()? as usize;
                if count > Manifest::INLINE_MAX_CHUNKS {
                    return Err(ContentError::Malformed("too many inline chunks"));
                }
                let mut entries = Vec::with_capacity(count);
                for _ in 0..count {
                    let id = ChunkId(input.array::<32>()?);
                    let len = u32::try_from(input.varint()?)
                        .map_err(|_| ContentError::Malformed("chunk length"))?;
                    entries.push(ManifestEntry { id, len });
                }
                ContentBody::Inline(Manifest { entries })
            }
            TAG_BLOB => ContentBody::Blob(ChunkId(input.array::<32>()?)),
            TAG_SYMLINK => {
                let len = input.varint()? as usize;
                if len > MAX_TARGET {
                    return Err(ContentError::Malformed("symlink target too long"));
                }
                let raw = input.take(len)?;
                let target = std::str::from_utf8(raw)
                    .map_err(|_| ContentError::Malformed("symlink target not utf-8"))?;
                ContentBody::Symlink(target.to_owned())
            }
            _ => return Err(ContentError::Malformed("unknown body")),
        };
        if !input.0.is_empty() {
            return Err(ContentError::Malformed("trailing bytes"));
        }
        Ok(Content {
            size,
            mtime,
            written_at,
            author,
            body,
        })
    }
}

fn zigzag(value: i64) -> u64 {
    ((value << 1) ^ (value >> 63)) as u64
}

fn unzigzag(value: u64) -> i64 {
    ((value >> 1) as i64) ^ -((value & 1) as i64)
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, ContentError> {
        let (&first, rest) = self
            .0
            .split_first()
            .ok_or(ContentError::Malformed("truncated"))?;
        self.0 = rest;
        Ok(first)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], ContentError> {
        if self.0.len() < len {
            return Err(ContentError::Malformed("truncated"));
        }
        let (taken, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(taken)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ContentError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn varint(&mut self) -> Result<u64, ContentError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ContentError::Malformed("varint too long"))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample() -> Content {
        Content {
            size: 5,
            mtime: WallTime(1_000),
            written_at: WallTime(-3),
            author: ShortDeviceId([7; 8]),
            body: ContentBody::Inline(Manifest {
                entries: vec![ManifestEntry {
                    id: ChunkId([9; 32]),
                    len: 5,
                }],
            }),
        }
    }

    #[test]
    fn encoding_is_byte_exact() {
        let mut expected = vec![1, 0, 5, 0xd0, 0x0f, 5];
        expected.extend([7; 8]);
        expected.push(1);
        expected.extend([9; 32]);
        expected.push(5);
        assert_eq!(sample().encode(), expected);
    }

    #[test]
    fn a_one_chunk_file_costs_under_60_bytes() {
        assert!(sample().encode().len() < 60);
    }

    #[test]
    fn hashes_distinguish_bodies() {
        let mut symlink = sample();
        symlink.body = ContentBody::Symlink("a".into());
        let mut blob = sample();
        blob.body = ContentBody::Blob(ChunkId([1; 32]));
        assert_ne!(symlink.hash(), sample().hash());
        assert_eq!(blob.hash(), ChunkId([1; 32]));
    }

    fn arb_content() -> impl Strategy<Value = Content> {
        let body = prop_oneof![
            proptest::collection::vec((any::<[u8; 32]>(), any::<u32>()), 0..=4).prop_map(|e| {
                ContentBody::Inline(Manifest {
                    entries: e
                        .into_iter()
                        .map(|(id, len)| ManifestEntry {
                            id: ChunkId(id),
                            len,
                        })
                        .collect(),
                })
            }),
            any::<[u8; 32]>().prop_map(|id| ContentBody::Blob(ChunkId(id))),
            "[a-z/.]{0,40}".prop_map(ContentBody::Symlink),
        ];
        (
            any::<u64>(),
            any::<i64>(),
            any::<i64>(),
            any::<[u8; 8]>(),
            body,
        )
            .prop_map(|(size, mtime, written_at, author, body)| Content {
                size,
                mtime: WallTime(mtime),
                written_at: WallTime(written_at),
                author: ShortDeviceId(author),
                body,
            })
    }

    proptest! {
        #[test]
        fn roundtrips(content in arb_content()) {
            prop_assert_eq!(Content::decode(&content.encode()), Ok(content));
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = Content::decode(&bytes);
        }
    }
}
