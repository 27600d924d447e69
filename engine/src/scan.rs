//! Scan: facts about the files on disk in, document operations out. Pure: the agent stats and
//! hashes files, this module decides what changed.
//!
//! Inputs are the folder as it is now ([`DiskEntry`] per path), what this device last saw
//! ([`Known`] per path, the agent's index) and the current document ([`RemoteEntry`] per node).
//! Rules:
//! - a path that vanished while another appeared with the same inode and kind is a move
//!   (a renamed directory is one operation, not one per file);
//! - a changed file whose node the document changed since this device last saw it (a remote edit
//!   not yet materialised) becomes a conflict copy instead of silently winning;
//! - a vanished file whose node was edited remotely is not deleted (edit beats delete);
//! - a path this device never indexed that the document already has, as a directory or as a
//!   file or symlink with the same content, is that node (a folder that already held a copy,
//!   joined to the document; a materialised entry whose index write a crash lost): no duplicate;
//! - new nodes get ids from the caller, parents before children.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::ids::{ChunkId, NodeId, ShortDeviceId};
use crate::materialise::is_staged;
use crate::time::WallTime;
use crate::tree::{Content, FolderDoc, NodeKind, TreeError, conflict_name};

/// A path on disk as the agent found it now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskEntry {
    /// Kind of entry.
    pub kind: NodeKind,
    /// Mode bits.
    pub mode: u32,
    /// Inode, to recognise moves.
    pub inode: u64,
    /// Content (files and symlinks), with this device as author if it changed.
    pub content: Option<Content>,
}

/// What this device last saw at a path (from its index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Known {
    /// The node at that path.
    pub node: NodeId,
    /// Its kind.
    pub kind: NodeKind,
    /// Mode bits.
    pub mode: u32,
    /// Inode.
    pub inode: u64,
    /// Content hash (files and symlinks).
    pub content: Option<ChunkId>,
}

/// A node of the current document as the derived tree shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteEntry {
    /// Its parent directory node.
    pub parent: NodeId,
    /// Its path in the derived tree.
    pub path: String,
    /// Kind.
    pub kind: NodeKind,
    /// Mode bits.
    pub mode: u32,
    /// Content (files and symlinks).
    pub content: Option<Content>,
}

/// An operation on the document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DocOp {
    /// A new node.
    Create {
        /// Its new id.
        id: NodeId,
        /// Parent directory node.
        parent: NodeId,
        /// Name.
        name: String,
        /// Kind.
        kind: NodeKind,
        /// Mode bits.
        mode: u32,
        /// Content (files and symlinks).
        content: Option<Content>,
    },
    /// New content for a node.
    SetContent {
        /// The node.
        id: NodeId,
        /// Its content.
        content: Content,
    },
    /// New mode bits.
    SetMode {
        /// The node.
        id: NodeId,
        /// The mode.
        mode: u32,
    },
    /// Rename and/or move.
    Move {
        /// The node.
        id: NodeId,
        /// New parent.
        parent: NodeId,
        /// New name.
        name: String,
    },
    /// Tombstone.
    Delete {
        /// The node.
        id: NodeId,
    },
}

impl DocOp {
    /// Records the operation in `doc`, as written by `author` at `now`.
    pub fn apply(
        &self,
        doc: &mut FolderDoc,
        author: ShortDeviceId,
        now: WallTime,
    ) -> Result<(), TreeError> {
        match self {
            DocOp::Create {
                id,
                parent,
                name,
                kind,
                mode,
                content,
            } => doc.create_node(
                *id,
                *parent,
                name,
                *kind,
                *mode,
                content.clone(),
                author,
                now,
            ),
            DocOp::SetContent { id, content } => doc.set_content(*id, content.clone()),
            DocOp::SetMode { id, mode } => doc.set_mode(*id, *mode),
            DocOp::Move { id, parent, name } => doc.rename(*id, *parent, name),
            DocOp::Delete { id } => doc.delete(*id, author, now),
        }
    }
}

/// What a scan decided.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanResult {
    /// Operations to apply to the document, parents before children.
    pub ops: Vec<DocOp>,
    /// The node now at each scanned path (for the index).
    pub nodes: BTreeMap<String, NodeId>,
    /// Files the agent must rename on disk before anything else, `(from, to)`: local edits made
    /// on top of a version the document has since replaced. Each `to` is a new node in `ops`.
    pub conflict_copies: Vec<(String, String)>,
}

/// Who is scanning and when, for conflict names.
#[derive(Clone, Debug)]
pub struct Scanner<'a> {
    /// This device's name.
    pub device_name: &'a str,
    /// Now.
    pub now: WallTime,
}

impl Scanner<'_> {
    /// Compares disk with the index and the document.
    pub fn scan(
        &self,
        disk: &BTreeMap<String, DiskEntry>,
        known: &BTreeMap<String, Known>,
        remote: &HashMap<NodeId, RemoteEntry>,
        mut new_id: impl FnMut() -> NodeId,
    ) -> ScanResult {
        let mut result = ScanResult::default();
        let mut vanished_by_inode: HashMap<u64, &Known> = known
            .iter()
            .filter(|(path, k)| {
                !disk.contains_key(*path) && !is_staged(path) && remote.contains_key(&k.node)
            })
            .map(|(_, k)| (k.inode, k))
            .collect();
        let mut seen: HashSet<NodeId> = HashSet::new();
        // Built on the first path this device never indexed (none in a usual scan).
        let mut unclaimed: Option<HashMap<&str, NodeId>> = None;
        // Directories deleted remotely and untouched here, by path: what this device added or
        // changed inside one keeps it (a deleted directory that holds a live node stays).
        let mut deleted_dirs: HashMap<&str, NodeId> = HashMap::new();
        // BTreeMap order puts a parent before its children.
        for (path, entry) in disk {
            let (parent_path, name) = split_path(path);
            let parent = match parent_path {
                None => NodeId::ROOT,
                Some(parent_path) => match result.nodes.get(parent_path) {
                    Some(id) => *id,
                    None => match deleted_dirs.get(parent_path) {
                        // A new or changed entry in a directory deleted elsewhere: recorded
                        // under that directory, which it keeps alive (else removing the
                        // directory would wait for this entry, and this entry for the removal).
                        Some(&dir)
                            if known
                                .get(path)
                                .is_none_or(|k| k.kind != entry.kind || !unchanged(k, entry)) =>
                        {
                            result.nodes.insert(parent_path.to_owned(), dir);
                            dir
                        }
                        // The parent is not part of the document (deleted remotely, untouched
                        // here): its children go with it when it is materialised.
                        _ => continue,
                    },
                },
            };
            let node = match known.get(path) {
                Some(k) if k.kind == entry.kind && remote.contains_key(&k.node) => {
                    self.update(path, k, entry, &remote[&k.node], &mut result, &mut new_id);
                    k.node
                }
                Some(k) if k.kind == entry.kind && unchanged(k, entry) => {
                    // Deleted remotely and untouched here: materialising will remove it. A file
                    // keeps its index entry current (a touch changes its mtime, not its
                    // content), or the removal would never match the disk again.
                    if entry.kind == NodeKind::Dir {
                        deleted_dirs.insert(path, k.node);
                    } else {
                        result.nodes.insert(path.clone(), k.node);
                    }
                    continue;
                }
                indexed => match vanished_by_inode.remove(&entry.inode) {
                    Some(k) if k.kind == entry.kind && !seen.contains(&k.node) => {
                        let remote_entry = &remote[&k.node];
                        if remote_entry.parent != parent || split_path(&remote_entry.path).1 != name
                        {
                            result.ops.push(DocOp::Move {
                                id: k.node,
                                parent,
                                name: name.to_owned(),
                            });
                        }
                        self.update(path, k, entry, remote_entry, &mut result, &mut new_id);
                        k.node
                    }
                    _ => match indexed
                        .is_none()
                        .then(|| {
                            adoptable(path, parent, entry, known, remote, &seen, &mut unclaimed)
                        })
                        .flatten()
                    {
                        Some(node) => node,
                        None => {
                            let id = new_id();
                            result.ops.push(DocOp::Create {
                                id,
                                parent,
                                name: name.to_owned(),
                                kind: entry.kind,
                                mode: entry.mode,
                                content: entry.content.clone(),
                            });
                            id
                        }
                    },
                },
            };
            seen.insert(node);
            result.nodes.insert(path.clone(), node);
        }
        // What vanished and did not move is deleted, unless the document changed it since
        // this device last saw it (edit beats delete: materialising brings it back).
        for (path, k) in known {
            if disk.contains_key(path) || is_staged(path) || seen.contains(&k.node) {
                continue;
            }
            let Some(remote_entry) = remote.get(&k.node) else {
                continue;
            };
            if remote_entry.content.as_ref().map(Content::hash) == k.content {
                seen.insert(k.node);
                result.ops.push(DocOp::Delete { id: k.node });
            }
        }
        result
    }

    fn update(
        &self,
        path: &str,
        known: &Known,
        entry: &DiskEntry,
        remote: &RemoteEntry,
        result: &mut ScanResult,
        new_id: &mut impl FnMut() -> NodeId,
    ) {
        if entry.mode != known.mode && entry.mode != remote.mode {
            result.ops.push(DocOp::SetMode {
                id: known.node,
                mode: entry.mode,
            });
        }
        let Some(content) = &entry.content else {
            return;
        };
        let local_hash = content.hash();
        let remote_hash = remote.content.as_ref().map(Content::hash);
        if Some(local_hash) == known.content || Some(local_hash) == remote_hash {
            return;
        }
        if remote_hash == known.content {
            result.ops.push(DocOp::SetContent {
                id: known.node,
                content: content.clone(),
            });
            return;
        }
        // The document moved on since this device last saw the file, and the file changed too:
        // keep both. The document's version keeps the name; this device's becomes a copy.
        let (parent_path, name) = split_path(path);
        let parent = parent_path
            .and_then(|p| result.nodes.get(p).copied())
            .unwrap_or(NodeId::ROOT);
        let copy_name = conflict_name(name, self.device_name, self.now);
        let copy_path = match parent_path {
            Some(p) => format!("{p}/{copy_name}"),
            None => copy_name.clone(),
        };
        let id = new_id();
        result.ops.push(DocOp::Create {
            id,
            parent,
            name: copy_name,
            kind: entry.kind,
            mode: entry.mode,
            content: Some(content.clone()),
        });
        result.nodes.insert(copy_path.clone(), id);
        result.conflict_copies.push((path.to_owned(), copy_path));
    }
}

/// The document's node at `path` if this device can take it for the unindexed entry there: a
/// node of the same kind under the same parent that no index entry claims and this scan has not
/// matched, and, unless a directory, with the same content. `unclaimed` (the document's paths
/// whose nodes the index does not hold) is built on first use.
fn adoptable<'r>(
    path: &str,
    parent: NodeId,
    entry: &DiskEntry,
    known: &BTreeMap<String, Known>,
    remote: &'r HashMap<NodeId, RemoteEntry>,
    seen: &HashSet<NodeId>,
    unclaimed: &mut Option<HashMap<&'r str, NodeId>>,
) -> Option<NodeId> {
    let unclaimed = unclaimed.get_or_insert_with(|| {
        let claimed: HashSet<NodeId> = known.values().map(|k| k.node).collect();
        remote
            .iter()
            .filter(|(node, _)| !claimed.contains(node))
            .map(|(node, r)| (r.path.as_str(), *node))
            .collect()
    });
    let node = *unclaimed.get(path)?;
    let theirs = &remote[&node];
    let same = theirs.kind == entry.kind
        && theirs.parent == parent
        && (entry.kind == NodeKind::Dir
            || theirs.content.as_ref().map(Content::hash)
                == entry.content.as_ref().map(Content::hash));
    (same && !seen.contains(&node)).then_some(node)
}

fn unchanged(known: &Known, entry: &DiskEntry) -> bool {
    entry.content.as_ref().map(Content::hash) == known.content
}

/// Splits `a/b/c` into (`Some("a/b")`, `"c"`) and `c` into (`None`, `"c"`).
pub fn split_path(path: &str) -> (Option<&str>, &str) {
    match path.rsplit_once('/') {
        Some((parent, name)) => (Some(parent), name),
        None => (None, path),
    }
}

#[cfg(test)]
mod tests;
