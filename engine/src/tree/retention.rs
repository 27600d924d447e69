//! What a retention window keeps: the blobs of every version that can still be restored.
//!
//! A version is restorable while it is the current content of a live node (forever), the
//! current content of a node deleted less than the window ago (the tombstone's time), or an
//! earlier content replaced less than the window ago. A version's replacement time is the time
//! of the change that wrote the next content of the same node object (changes in causal order;
//! the writing device's clock, in whole seconds as Automerge records it). Everything else is
//! outside the window: its blobs are garbage unless a retained version shares them.

use std::collections::HashMap;

use automerge::ScalarValue;
use automerge::legacy::{Key, OpType};

use super::content::{Content, ContentBody};
use super::document::FolderDoc;
use super::refs::BlobRefs;
use crate::time::WallTime;

impl FolderDoc {
    /// The blobs of every version restorable at `cutoff` (now less the retention window):
    /// see the module docs. A rare operation: it decodes every change of the document.
    pub fn retained_refs(&mut self, cutoff: WallTime) -> BlobRefs {
        let mut refs = BlobRefs::default();
        for record in self.records() {
            let kept =
                record.tombstones.is_empty() || record.tombstones.iter().any(|t| t.at >= cutoff);
            if kept {
                for content in &record.contents {
                    add_content(&mut refs, content);
                }
            }
        }
        // Every content put per node object, oldest first, with its change's time.
        let mut puts: HashMap<String, Vec<(Content, WallTime)>> = HashMap::new();
        for change in self.all_changes() {
            let at = WallTime(change.timestamp().saturating_mul(1000));
            // Automerge's decoder unwraps on malformed actor indices: such a change wrote
            // nothing this reads.
            let Ok(expanded) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| change.decode()))
            else {
                continue;
            };
            for op in expanded.operations {
                let is_content = matches!(&op.key, Key::Map(key) if key == "c");
                if let (true, OpType::Put(ScalarValue::Bytes(bytes))) = (is_content, &op.action)
                    && let Ok(content) = Content::decode(bytes)
                {
                    puts.entry(op.obj.to_string())
                        .or_default()
                        .push((content, at));
                }
            }
        }
        for versions in puts.values() {
            for pair in versions.windows(2) {
                let (replaced, (_, replaced_at)) = (&pair[0].0, &pair[1]);
                if *replaced_at >= cutoff {
                    add_content(&mut refs, replaced);
                }
            }
        }
        refs
    }
}

fn add_content(refs: &mut BlobRefs, content: &Content) {
    match &content.body {
        ContentBody::Inline(manifest) => refs.chunks.extend(manifest.entries.iter().map(|e| e.id)),
        ContentBody::Blob(id) => {
            refs.manifests.insert(*id);
        }
        ContentBody::Symlink(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::{Manifest, ManifestEntry};
    use crate::ids::{ChunkId, NodeId, ShortDeviceId};
    use crate::tree::NodeKind;

    const DAY: i64 = 86_400_000;
    const AUTHOR: ShortDeviceId = ShortDeviceId([1; 8]);

    fn content(chunk: u8, at: WallTime) -> Content {
        Content {
            size: 1,
            mtime: at,
            written_at: at,
            author: AUTHOR,
            body: ContentBody::Inline(Manifest {
                entries: vec![ManifestEntry {
                    id: ChunkId([chunk; 32]),
                    len: 1,
                }],
            }),
        }
    }

    fn chunks(refs: &BlobRefs) -> Vec<u8> {
        refs.chunks.iter().map(|id| id.0[0]).collect()
    }

    #[test]
    fn the_window_keeps_recent_versions_and_every_current_one() {
        let mut doc = FolderDoc::new(&[1; 16]);
        let (kept, gone) = (NodeId([1; 16]), NodeId([2; 16]));
        let day = |n: i64| WallTime(n * DAY);
        // Day 0: two files; `kept` is rewritten on days 10, 50 and 55; `gone` deleted on day 20.
        for (id, name, chunk) in [(kept, "kept", 1), (gone, "gone", 9)] {
            doc.create_node(
                id,
                NodeId::ROOT,
                name,
                NodeKind::File,
                0o644,
                Some(content(chunk, day(0))),
                AUTHOR,
                day(0),
            )
            .unwrap();
        }
        doc.commit(day(0));
        for (n, chunk) in [(10, 2), (50, 3), (55, 4)] {
            doc.set_content(kept, content(chunk, day(n))).unwrap();
            doc.commit(day(n));
        }
        doc.delete(gone, AUTHOR, day(20)).unwrap();
        doc.commit(day(20));

        // A 30-day window seen on day 60: version 2 (replaced on day 50) and 3 (replaced on
        // day 55) restore, 4 is current; 1 was replaced on day 10 and `gone` went on day 20.
        assert_eq!(chunks(&doc.retained_refs(day(30))), vec![2, 3, 4]);
        // Seen on day 45 (cutoff day 15): `gone` was deleted inside the window.
        assert_eq!(chunks(&doc.retained_refs(day(15))), vec![2, 3, 4, 9]);
        // Everything, from the start of time; only the current one, long after.
        assert_eq!(chunks(&doc.retained_refs(WallTime(0))), vec![1, 2, 3, 4, 9]);
        assert_eq!(chunks(&doc.retained_refs(day(1000))), vec![4]);
        // A restored node is live again: its current version is kept forever.
        doc.restore(gone).unwrap();
        doc.commit(day(70));
        assert_eq!(chunks(&doc.retained_refs(day(1000))), vec![4, 9]);
    }
}
