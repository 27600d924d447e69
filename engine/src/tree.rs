//! The folder as an Automerge document ([`FolderDoc`]) and the tree every replica derives from it
//! ([`DerivedTree`]): stable node ids, names, parents, kinds, modes and content scalars; rename and
//! move touch only name and parent; deletion is a tombstone; conflicts resolve deterministically.

pub mod changes;
pub mod content;
pub mod derive;
pub mod document;
pub mod history;
pub mod name;
pub mod refs;
pub mod retention;

pub use content::{Content, ContentBody, ContentError};
pub use derive::{DerivedNode, DerivedTree, DiskNames, NameNote};
pub use document::{FolderDoc, NodeRecord};
pub use history::Version;
pub use name::{NameError, clash_name, conflict_name, fold_key, portability_issue, validate_name};
pub use refs::{BlobRefs, FileVersion};

use crate::ids::{ChunkId, NodeId, ShortDeviceId};
use crate::time::WallTime;

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link (stored as its target, never followed).
    Symlink,
}

impl NodeKind {
    /// The number stored in the document.
    pub fn code(self) -> u8 {
        match self {
            NodeKind::File => 0,
            NodeKind::Dir => 1,
            NodeKind::Symlink => 2,
        }
    }

    /// The kind for a stored number.
    pub fn from_code(code: u8) -> Option<NodeKind> {
        match code {
            0 => Some(NodeKind::File),
            1 => Some(NodeKind::Dir),
            2 => Some(NodeKind::Symlink),
            _ => None,
        }
    }
}

/// Why a document operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// The name cannot exist in a directory.
    #[error("invalid name: {0}")]
    Name(String),
    /// The root cannot be created, renamed or deleted.
    #[error("the root node cannot be changed")]
    Root,
    /// No node with this id.
    #[error("no node {0}")]
    NoSuchNode(NodeId),
    /// Saved bytes could not be loaded.
    #[error("cannot load document: {0}")]
    Load(String),
    /// A peer's change was refused.
    #[error("change refused: {0}")]
    Change(String),
    /// The document broke an invariant of the schema.
    #[error("document is corrupt: {0}")]
    Corrupt(String),
    /// Automerge refused an operation.
    #[error("automerge: {0}")]
    Automerge(String),
    /// Automerge failed inside while applying a peer's changes: the changes are refused and the
    /// in-memory document must be reloaded from storage ([`FolderDoc::is_broken`]).
    #[error("automerge failed on this change; the document must be reloaded")]
    Broken,
}

/// A deletion: who, when, and which content it saw (none for directories).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tombstone {
    /// The deleting device.
    pub by: ShortDeviceId,
    /// When.
    pub at: WallTime,
    /// The content hash the deleting device saw; a different one means an edit it did not see.
    pub seen: Option<ChunkId>,
}

impl Tombstone {
    /// `by[8] || at i64 LE || (0 | 1 || hash[32])`.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(49);
        out.extend_from_slice(&self.by.0);
        out.extend_from_slice(&self.at.0.to_le_bytes());
        match self.seen {
            None => out.push(0),
            Some(hash) => {
                out.push(1);
                out.extend_from_slice(&hash.0);
            }
        }
        out
    }

    /// Decodes [`Tombstone::encode`]'s output.
    pub fn decode(bytes: &[u8]) -> Option<Tombstone> {
        let by = ShortDeviceId(bytes.get(..8)?.try_into().ok()?);
        let at = WallTime(i64::from_le_bytes(bytes.get(8..16)?.try_into().ok()?));
        let seen = match bytes.get(16..)? {
            [0] => None,
            [1, hash @ ..] if hash.len() == 32 => Some(ChunkId(hash.try_into().ok()?)),
            _ => return None,
        };
        Some(Tombstone { by, at, seen })
    }
}

#[cfg(test)]
mod tests;
