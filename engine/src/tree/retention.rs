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
use super::document::{FolderDoc, NodeRecord};
use super::refs::BlobRefs;
use crate::time::WallTime;

/// One content put into a node object.
pub(super) struct Put {
    /// The node object (Automerge's id, as text).
    pub object: String,
    /// What was put.
    pub content: Content,
    /// When: the time of the change that put it.
    pub at: WallTime,
    /// That change's hash.
    pub change: [u8; 32],
}

impl FolderDoc {
    /// The blobs of every version restorable at `cutoff` (now less the retention window):
    /// see the module docs. A rare operation: it decodes every change of the document.
    pub fn retained_refs(&mut self, cutoff: WallTime) -> BlobRefs {
        let mut refs = BlobRefs::default();
        for record in self.records() {
            if current_kept(&record, cutoff) {
                for content in &record.contents {
                    add_content(&mut refs, content);
                }
            }
        }
        let puts = self.content_puts(None);
        for content in replaced_since(&puts, cutoff) {
            add_content(&mut refs, content);
        }
        refs
    }

    /// Every content put into a node object (only into `objects` when given), in the changes'
    /// causal order. A rare operation: it decodes every change of the document.
    pub(super) fn content_puts(&mut self, objects: Option<&[String]>) -> Vec<Put> {
        let mut puts = Vec::new();
        for change in self.all_changes() {
            let at = WallTime(change.timestamp().saturating_mul(1000));
            let hash = change.hash().0;
            // Automerge's decoder unwraps on malformed actor indices: such a change wrote
            // nothing this reads.
            let Ok(expanded) =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| change.decode()))
            else {
                continue;
            };
            for op in expanded.operations {
                let is_content = matches!(&op.key, Key::Map(key) if key == "c");
                let OpType::Put(ScalarValue::Bytes(bytes)) = &op.action else {
                    continue;
                };
                if !is_content {
                    continue;
                }
                let object = op.obj.to_string();
                if objects.is_some_and(|wanted| !wanted.contains(&object)) {
                    continue;
                }
                if let Ok(content) = Content::decode(bytes) {
                    puts.push(Put {
                        object,
                        content,
                        at,
                        change: hash,
                    });
                }
            }
        }
        puts
    }
}

/// Whether a node's current contents are restorable at `cutoff`: it is live (forever), or it
/// was deleted at or after `cutoff`.
pub(super) fn current_kept(record: &NodeRecord, cutoff: WallTime) -> bool {
    record.tombstones.is_empty() || record.tombstones.iter().any(|t| t.at >= cutoff)
}

/// The contents among `puts` replaced at or after `cutoff`: a put is replaced by the next put
/// into the same node object.
pub(super) fn replaced_since(puts: &[Put], cutoff: WallTime) -> Vec<&Content> {
    let mut last: HashMap<&str, &Content> = HashMap::new();
    let mut replaced = Vec::new();
    for put in puts {
        if let Some(previous) = last.insert(put.object.as_str(), &put.content)
            && put.at >= cutoff
        {
            replaced.push(previous);
        }
    }
    replaced
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

    /// A node's history as (chunk, restorable) pairs.
    fn listed(doc: &mut FolderDoc, id: NodeId, cutoff: Option<WallTime>) -> Vec<(u8, bool)> {
        doc.node_history(id, cutoff)
            .iter()
            .map(|v| match &v.content.body {
                ContentBody::Inline(manifest) => (manifest.entries[0].id.0[0], v.restorable),
                other => panic!("an inline manifest, not {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_version_equal_to_a_kept_one_stays_restorable() {
        let mut doc = FolderDoc::new(&[1; 16]);
        let file = NodeId([1; 16]);
        let day = |n: i64| WallTime(n * DAY);
        // A on day 0, B on day 1, A again on day 2: seen on day 100 with a 30-day window,
        // the first A is the current content's bytes, B is gone.
        doc.create_node(
            file,
            NodeId::ROOT,
            "f",
            NodeKind::File,
            0o644,
            Some(content(1, day(0))),
            AUTHOR,
            day(0),
        )
        .unwrap();
        doc.commit(day(0));
        doc.set_content(file, content(2, day(1))).unwrap();
        doc.commit(day(1));
        let again = content(1, day(0));
        doc.set_content(file, again).unwrap();
        doc.commit(day(2));
        assert_eq!(
            listed(&mut doc, file, Some(day(70))),
            [(1, true), (2, false), (1, true)]
        );
        assert_eq!(chunks(&doc.retained_refs(day(70))), vec![1]);
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

        // History lists the same: day 60 with a 30-day window, then day 45.
        assert_eq!(
            listed(&mut doc, kept, Some(day(30))),
            [(1, false), (2, true), (3, true), (4, true)]
        );
        assert_eq!(listed(&mut doc, gone, Some(day(30))), [(9, false)]);
        assert_eq!(listed(&mut doc, gone, Some(day(15))), [(9, true)]);
        assert_eq!(
            listed(&mut doc, kept, Some(day(1000))),
            [(1, false), (2, false), (3, false), (4, true)]
        );
        // No window known: everything counts as restorable.
        assert!(doc.node_history(kept, None).iter().all(|v| v.restorable));
        // At every cutoff, a version history offers is one whose blobs the collector keeps,
        // and one it does not offer is not kept (each version here has a chunk of its own).
        for n in (0..=70).step_by(5) {
            let refs = doc.retained_refs(day(n));
            for node in [kept, gone] {
                for (chunk, restorable) in listed(&mut doc, node, Some(day(n))) {
                    let id = ChunkId([chunk; 32]);
                    assert_eq!(
                        refs.chunks.contains(&id),
                        restorable,
                        "day {n} chunk {chunk}"
                    );
                }
            }
        }

        // A restored node is live again: its current version is kept forever.
        doc.restore(gone).unwrap();
        doc.commit(day(70));
        assert_eq!(chunks(&doc.retained_refs(day(1000))), vec![4, 9]);
    }
}
