//! A node's history: every content it has had, found in the document's changes, and which of
//! them a retention window still keeps.

use std::collections::HashSet;

use super::content::Content;
use super::document::FolderDoc;
use super::retention::{current_kept, replaced_since};
use crate::ids::NodeId;
use crate::time::WallTime;

/// One version of a node's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// The content.
    pub content: Content,
    /// The change that wrote it.
    pub change: [u8; 32],
    /// Whether it can still be restored (see [`FolderDoc::node_history`]).
    pub restorable: bool,
}

impl FolderDoc {
    /// The contents `id` has had, oldest first (in the changes' causal order). A rare operation:
    /// it decodes every change of the document.
    ///
    /// `cutoff` is now less the retention window: a version is restorable when a collection at
    /// that cutoff keeps it (the rule of [`FolderDoc::retained_refs`]: the node's current
    /// content while it is live or was deleted at or after the cutoff, and every content
    /// replaced at or after it, or equal to one of those). With `None` (no window known) every
    /// version counts as restorable.
    pub fn node_history(&mut self, id: NodeId, cutoff: Option<WallTime>) -> Vec<Version> {
        let objects: Vec<String> = self.objects(id).iter().map(|o| o.to_string()).collect();
        let puts = self.content_puts(Some(&objects));
        let mut kept: HashSet<&Content> = HashSet::new();
        let record = self.record(id);
        if let Some(cutoff) = cutoff {
            if let Some(record) = &record
                && current_kept(record, cutoff)
            {
                kept.extend(record.contents.iter());
            }
            kept.extend(replaced_since(&puts, cutoff));
        }
        let mut versions: Vec<Version> = Vec::new();
        for put in &puts {
            if versions.last().is_none_or(|v| v.content != put.content) {
                versions.push(Version {
                    content: put.content.clone(),
                    change: put.change,
                    restorable: cutoff.is_none() || kept.contains(&put.content),
                });
            }
        }
        versions
    }
}
