//! An in-memory folder for the simulation: paths, kinds, bytes, inodes and a write counter that
//! plays the role of mtime, plus the index of what the device last saw. Applying a materialise
//! plan follows the agent's rules: nothing changed since the last scan is ever overwritten, moved
//! or removed.

use std::collections::{BTreeMap, HashMap};

use crate::chunk::{Manifest, ManifestEntry};
use crate::ids::{ChunkId, NodeId, ShortDeviceId};
use crate::materialise::FileAction;
use crate::scan::{DiskEntry, Known};
use crate::time::WallTime;
use crate::tree::{Content, ContentBody, NodeKind};

/// One entry of the in-memory folder.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemEntry {
    /// Kind.
    pub kind: NodeKind,
    /// Inode.
    pub inode: u64,
    /// Bytes (files).
    pub bytes: Vec<u8>,
    /// Bumped on every write: the simulated mtime.
    pub version: u64,
}

/// The index entry of a path: what the device last saw there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexEntry {
    /// For scan and materialise.
    pub known: Known,
    /// The entry's version when indexed.
    pub version: u64,
}

/// A device's folder and index.
#[derive(Clone, Debug, Default)]
pub struct MemDisk {
    /// Path → entry.
    pub entries: BTreeMap<String, MemEntry>,
    /// Path → what was last seen there.
    pub index: BTreeMap<String, IndexEntry>,
    next: u64,
}

/// The content of some bytes as a device records it.
pub fn content_of(bytes: &[u8], author: ShortDeviceId, now: WallTime) -> Content {
    Content {
        size: bytes.len() as u64,
        mtime: now,
        written_at: now,
        author,
        body: ContentBody::Inline(Manifest {
            entries: vec![ManifestEntry {
                id: ChunkId::of(bytes),
                len: bytes.len() as u32,
            }],
        }),
    }
}

impl MemDisk {
    fn stamp(&mut self) -> u64 {
        self.next += 1;
        self.next
    }

    /// Writes a file (new inode if new).
    pub fn write(&mut self, path: &str, bytes: Vec<u8>) {
        let version = self.stamp();
        let inode = match self.entries.get(path) {
            Some(entry) => entry.inode,
            None => self.stamp(),
        };
        self.entries.insert(
            path.to_owned(),
            MemEntry {
                kind: NodeKind::File,
                inode,
                bytes,
                version,
            },
        );
    }

    /// Makes a directory.
    pub fn mkdir(&mut self, path: &str) {
        let inode = self.stamp();
        self.entries.insert(
            path.to_owned(),
            MemEntry {
                kind: NodeKind::Dir,
                inode,
                bytes: Vec::new(),
                version: inode,
            },
        );
    }

    /// Whether `path` exists and is a directory (or is the root).
    pub fn is_dir(&self, path: &str) -> bool {
        path.is_empty()
            || self
                .entries
                .get(path)
                .is_some_and(|e| e.kind == NodeKind::Dir)
    }

    /// Removes a path and everything under it.
    pub fn remove_tree(&mut self, path: &str) {
        let prefix = format!("{path}/");
        self.entries
            .retain(|p, _| p != path && !p.starts_with(&prefix));
    }

    /// Renames a path and everything under it.
    pub fn rename(&mut self, from: &str, to: &str) {
        move_subtree(&mut self.entries, from, to);
    }

    /// What the user sees: everything but the agent's state directory.
    pub fn visible(&self) -> impl Iterator<Item = (&String, &MemEntry)> {
        self.entries.iter().filter(|(path, _)| !is_state(path))
    }

    /// What a scan sees (the agent's walk skips its state directory).
    pub fn scan_view(&self, author: ShortDeviceId, now: WallTime) -> BTreeMap<String, DiskEntry> {
        self.visible()
            .map(|(path, e)| {
                let content = (e.kind == NodeKind::File).then(|| content_of(&e.bytes, author, now));
                (
                    path.clone(),
                    DiskEntry {
                        kind: e.kind,
                        mode: 0o644,
                        inode: e.inode,
                        content,
                    },
                )
            })
            .collect()
    }

    /// The index as scan and materialise take it.
    pub fn known(&self) -> BTreeMap<String, Known> {
        self.index
            .iter()
            .map(|(p, e)| (p.clone(), e.known.clone()))
            .collect()
    }

    /// Records what a scan saw: `nodes` maps every scanned path to its node.
    pub fn reindex(&mut self, nodes: &BTreeMap<String, NodeId>) {
        // Entries a scan passed over (deleted remotely, untouched here) stay known until
        // materialising removes them.
        let entries = &self.entries;
        self.index
            .retain(|path, _| !nodes.contains_key(path) && entries.contains_key(path));
        for (path, node) in nodes {
            if let Some(entry) = self.entries.get(path) {
                let known = Known {
                    node: *node,
                    kind: entry.kind,
                    mode: 0o644,
                    inode: entry.inode,
                    content: (entry.kind == NodeKind::File).then(|| content_hash(&entry.bytes)),
                };
                self.index.insert(
                    path.clone(),
                    IndexEntry {
                        known,
                        version: entry.version,
                    },
                );
            }
        }
    }

    fn unchanged(&self, path: &str, expect: &Known) -> bool {
        match (self.entries.get(path), self.index.get(path)) {
            (Some(entry), Some(indexed)) => {
                indexed.known.node == expect.node
                    && entry.inode == indexed.known.inode
                    && entry.version == indexed.version
                    && entry.kind == indexed.known.kind
            }
            _ => false,
        }
    }

    /// Performs a plan; writes take their bytes from `blobs` by content hash. Returns how many
    /// actions were skipped.
    pub fn apply(&mut self, actions: Vec<FileAction>, blobs: &HashMap<ChunkId, Vec<u8>>) -> usize {
        let mut skipped = 0;
        for action in actions {
            let done = match action {
                FileAction::Move { from, to, expect } => {
                    if self.unchanged(&from, &expect) && !self.entries.contains_key(&to) {
                        self.rename(&from, &to);
                        move_subtree(&mut self.index, &from, &to);
                        true
                    } else {
                        false
                    }
                }
                FileAction::Remove { path, expect } => {
                    if self.unchanged(&path, &expect) {
                        self.entries.remove(&path);
                        self.index.remove(&path);
                        true
                    } else {
                        false
                    }
                }
                FileAction::RemoveDir { path, .. } => {
                    let prefix = format!("{path}/");
                    if self.entries.keys().any(|p| p.starts_with(&prefix)) {
                        false
                    } else {
                        self.entries.remove(&path);
                        self.index.remove(&path);
                        true
                    }
                }
                FileAction::MakeDir { path, node, .. } => {
                    if self.entries.contains_key(&path) {
                        self.is_dir(&path)
                    } else {
                        self.mkdir(&path);
                        self.index_path(&path, node, None);
                        true
                    }
                }
                FileAction::Write {
                    path,
                    node,
                    content,
                    replaces,
                    ..
                } => {
                    let target_ok = match &replaces {
                        None => !self.entries.contains_key(&path),
                        Some(expect) => self.unchanged(&path, expect),
                    };
                    let (parent, _) = crate::scan::split_path(&path);
                    let parent_ok = self.is_dir(parent.unwrap_or(""));
                    match blobs.get(&content.hash()) {
                        Some(bytes) if target_ok && parent_ok => {
                            self.write(&path, bytes.clone());
                            self.index_path(&path, node, Some(content.hash()));
                            true
                        }
                        _ => false,
                    }
                }
                FileAction::SetMode { .. } => true,
            };
            if !done {
                skipped += 1;
            }
        }
        skipped
    }

    fn index_path(&mut self, path: &str, node: NodeId, content: Option<ChunkId>) {
        if let Some(entry) = self.entries.get(path) {
            self.index.insert(
                path.to_owned(),
                IndexEntry {
                    known: Known {
                        node,
                        kind: entry.kind,
                        mode: 0o644,
                        inode: entry.inode,
                        content,
                    },
                    version: entry.version,
                },
            );
        }
    }
}

/// Whether a path is in the agent's state directory (where staging lives).
pub fn is_state(path: &str) -> bool {
    path == ".cloud3" || path.starts_with(".cloud3/")
}

/// The content hash of a small file's bytes (one chunk).
pub fn content_hash(bytes: &[u8]) -> ChunkId {
    content_of(bytes, ShortDeviceId([0; 8]), WallTime(0)).hash()
}

/// Moves the entry at `from` and everything under it to `to`.
fn move_subtree<V>(map: &mut BTreeMap<String, V>, from: &str, to: &str) {
    let prefix = format!("{from}/");
    let moving: Vec<String> = map
        .keys()
        .filter(|p| *p == from || p.starts_with(&prefix))
        .cloned()
        .collect();
    for path in moving {
        if let Some(value) = map.remove(&path) {
            map.insert(format!("{to}{}", &path[from.len()..]), value);
        }
    }
}
