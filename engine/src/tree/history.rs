//! A node's history: every content it has had, found in the document's changes.

use super::content::Content;
use super::document::FolderDoc;
use crate::ids::NodeId;

/// One version of a node's content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Version {
    /// The content.
    pub content: Content,
    /// The change that wrote it.
    pub change: [u8; 32],
}

impl FolderDoc {
    /// The contents `id` has had, oldest first (in the changes' causal order). A rare operation:
    /// it decodes every change of the document.
    pub fn node_history(&mut self, id: NodeId) -> Vec<Version> {
        let objects: Vec<String> = self.objects(id).iter().map(|o| o.to_string()).collect();
        let mut versions: Vec<Version> = Vec::new();
        for change in self.all_changes() {
            let hash = change.hash().0;
            for op in change.decode().operations {
                let touches_node = objects.contains(&op.obj.to_string());
                let is_content = matches!(&op.key, automerge::legacy::Key::Map(key) if key == "c");
                if !(touches_node && is_content) {
                    continue;
                }
                if let Some(automerge::ScalarValue::Bytes(bytes)) = op.primitive_value()
                    && let Ok(content) = Content::decode(&bytes)
                    && versions.last().is_none_or(|v| v.content != content)
                {
                    versions.push(Version {
                        content,
                        change: hash,
                    });
                }
            }
        }
        versions
    }
}
