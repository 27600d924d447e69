//! Which blobs a document references: the chunk ids of inline chunk lists and the ids of manifest
//! blobs, read from the "c" puts of its changes. The relay serves a device only blobs its user's
//! document references (directly, or as a chunk listed in a referenced manifest blob); every
//! version counts, so history stays restorable.

use std::collections::{BTreeMap, BTreeSet};

use automerge::legacy::{Key, OpType};
use automerge::{Change, ScalarValue};

use super::content::{Content, ContentBody};
use super::document::FolderDoc;
use crate::ids::ChunkId;

/// Blob ids referenced by some content version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BlobRefs {
    /// Chunks listed inline in the document.
    pub chunks: BTreeSet<ChunkId>,
    /// Manifest blobs (each lists further chunks).
    pub manifests: BTreeSet<ChunkId>,
    /// The file versions named, by content hash (what the relay's malware scan reads).
    pub files: BTreeMap<ChunkId, FileVersion>,
}

/// A file version as the scan reads it: its size and where its chunk list is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileVersion {
    /// Size in bytes.
    pub size: u64,
    /// Its chunks in order, or the manifest blob that lists them.
    pub body: ContentBody,
}

impl BlobRefs {
    /// Every blob id, chunks and manifests alike.
    pub fn all(&self) -> impl Iterator<Item = &ChunkId> {
        self.chunks.iter().chain(&self.manifests)
    }

    /// Adds what `other` references.
    pub(super) fn extend(&mut self, other: BlobRefs) {
        self.chunks.extend(other.chunks);
        self.manifests.extend(other.manifests);
        self.files.extend(other.files);
    }

    /// Adds what one change references (the "c" puts of its operations).
    pub(super) fn add_change(&mut self, change: &Change) {
        // Automerge's decoder unwraps on malformed actor indices: such a change counts as
        // referencing nothing.
        let Ok(expanded) =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| change.decode()))
        else {
            return;
        };
        for op in expanded.operations {
            let is_content = matches!(&op.key, Key::Map(key) if key == "c");
            if let (true, OpType::Put(ScalarValue::Bytes(bytes))) = (is_content, &op.action)
                && let Ok(content) = Content::decode(bytes)
            {
                if !matches!(content.body, ContentBody::Symlink(_)) {
                    self.files.insert(
                        content.hash(),
                        FileVersion {
                            size: content.size,
                            body: content.body.clone(),
                        },
                    );
                }
                match content.body {
                    ContentBody::Inline(manifest) => {
                        self.chunks.extend(manifest.entries.iter().map(|e| e.id));
                    }
                    ContentBody::Blob(id) => {
                        self.manifests.insert(id);
                    }
                    ContentBody::Symlink(_) => {}
                }
            }
        }
    }
}

impl FolderDoc {
    /// The blobs every version in the document's history references.
    pub fn blob_refs(&mut self) -> BlobRefs {
        let mut refs = BlobRefs::default();
        for change in self.all_changes() {
            refs.add_change(&change);
        }
        refs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{Manifest, ManifestEntry};
    use crate::ids::{NodeId, ShortDeviceId};
    use crate::time::WallTime;
    use crate::tree::NodeKind;

    fn content(body: ContentBody) -> Content {
        Content {
            size: 1,
            mtime: WallTime(1),
            written_at: WallTime(1),
            author: ShortDeviceId([1; 8]),
            body,
        }
    }

    fn inline(ids: &[u8]) -> ContentBody {
        ContentBody::Inline(Manifest {
            entries: ids
                .iter()
                .map(|&n| ManifestEntry {
                    id: ChunkId([n; 32]),
                    len: 1,
                })
                .collect(),
        })
    }

    #[test]
    fn every_version_and_both_kinds_of_body_are_referenced() {
        let mut doc = FolderDoc::new(&[1; 16]);
        let file = NodeId([1; 16]);
        let author = ShortDeviceId([1; 8]);
        doc.create_node(
            file,
            NodeId::ROOT,
            "a",
            NodeKind::File,
            0o644,
            Some(content(inline(&[1, 2]))),
            author,
            WallTime(1),
        )
        .unwrap();
        doc.commit(WallTime(1));
        let first = doc.changes_since(&[]);
        doc.set_content(file, content(ContentBody::Blob(ChunkId([9; 32]))))
            .unwrap();
        doc.create_node(
            NodeId([2; 16]),
            NodeId::ROOT,
            "link",
            NodeKind::Symlink,
            0o777,
            Some(content(ContentBody::Symlink("a".into()))),
            author,
            WallTime(2),
        )
        .unwrap();
        doc.commit(WallTime(2));

        let refs = doc.blob_refs();
        assert_eq!(
            refs.chunks,
            [ChunkId([1; 32]), ChunkId([2; 32])].into_iter().collect()
        );
        assert_eq!(refs.manifests, [ChunkId([9; 32])].into_iter().collect());
        // Both file versions are named for the scan, the symlink is not.
        let blob = content(ContentBody::Blob(ChunkId([9; 32])));
        assert_eq!(refs.files.len(), 2);
        assert_eq!(
            refs.files.get(&blob.hash()).map(|f| &f.body),
            Some(&blob.body)
        );
        // A peer recording what it applies: the first change alone references only the first
        // version; refused bytes reference nothing; each take starts afresh.
        let mut peer = FolderDoc::new(&[2; 16]);
        peer.record_refs();
        assert!(peer.apply_changes(vec![vec![1, 2, 3]]).is_err());
        assert_eq!(peer.take_refs(), BlobRefs::default());
        peer.apply_changes(first).unwrap();
        let early = peer.take_refs();
        assert_eq!(early.chunks, refs.chunks);
        assert!(early.manifests.is_empty());
        peer.apply_changes(doc.changes_since(&[])).unwrap();
        let rest = peer.take_refs();
        assert_eq!(rest.manifests, refs.manifests);
        // A document not asked to record keeps nothing.
        let mut plain = FolderDoc::new(&[3; 16]);
        plain.apply_changes(doc.changes_since(&[])).unwrap();
        assert_eq!(plain.take_refs(), BlobRefs::default());
    }
}
