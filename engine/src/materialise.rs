//! Materialise: the document in, file actions out. Pure: the agent performs the actions, checking
//! before each destructive one that the disk still matches what this plan expected.
//!
//! Order of a plan: moves out to a staging area (so swaps and nested moves never collide), removals
//! (files first, then directories deepest first), then parents before children: directories made
//! or moved back from staging, files written, modes set. A file is only ever replaced or removed
//! when its index entry is passed along as `expect`: the agent re-checks it against the disk and
//! skips the action if the file changed since it was last scanned.

use std::collections::{BTreeMap, HashMap};

use crate::ids::NodeId;
use crate::scan::{Known, RemoteEntry, split_path};
use crate::tree::{Content, NodeKind};

/// Where moved entries wait between the two halves of a move (inside the agent's state dir).
pub const STAGING_DIR: &str = ".cloud3/staging";

/// Whether an indexed path is parked in [`STAGING_DIR`]: in flight between two places, never
/// seen by a scan, and never to be taken for deleted.
pub fn is_staged(path: &str) -> bool {
    path.strip_prefix(STAGING_DIR)
        .is_some_and(|rest| rest.starts_with('/'))
}

/// One step for the agent to perform, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FileAction {
    /// Move a file or directory (and all under it) on disk.
    Move {
        /// Current path (may be inside [`STAGING_DIR`]).
        from: String,
        /// New path (may be inside [`STAGING_DIR`]).
        to: String,
        /// What the index says is at `from`.
        expect: Known,
    },
    /// Move a file or symlink to the local trash.
    Remove {
        /// Its path.
        path: String,
        /// What the index says is there.
        expect: Known,
    },
    /// Remove a directory if it is empty (a non-empty one holds files this plan does not know).
    RemoveDir {
        /// Its path.
        path: String,
        /// Its node.
        node: NodeId,
    },
    /// Create a directory.
    MakeDir {
        /// Its path.
        path: String,
        /// Its node.
        node: NodeId,
        /// Mode bits.
        mode: u32,
    },
    /// Write a file or symlink (atomically: temp file, fsync, rename).
    Write {
        /// Its path.
        path: String,
        /// Its node.
        node: NodeId,
        /// What to write.
        content: Content,
        /// Mode bits.
        mode: u32,
        /// What the index says is there now, if anything (the agent checks it is unchanged).
        replaces: Option<Known>,
    },
    /// Change mode bits.
    SetMode {
        /// Its path.
        path: String,
        /// Its node.
        node: NodeId,
        /// New mode.
        mode: u32,
    },
}

/// Plans the actions that turn the disk as the index knows it into the document's tree.
pub fn plan(
    remote: &HashMap<NodeId, RemoteEntry>,
    known: &BTreeMap<String, Known>,
) -> Vec<FileAction> {
    let mut actions = Vec::new();
    let mut disk = Disk::new(known);

    // 1. Entries whose parent or name changed go to staging, outermost first. (An entry whose
    //    path changed only because an ancestor moved travels with that ancestor.)
    for (path, k) in known {
        let (parent_path, name) = split_path(path);
        let parent = parent_path
            .and_then(|p| known.get(p))
            .map_or(NodeId::ROOT, |p| p.node);
        let moves = remote.get(&k.node).is_some_and(|r| {
            r.kind == k.kind && (r.parent != parent || split_path(&r.path).1 != name)
        });
        if !moves {
            continue;
        }
        let Some(from) = disk.path_of(k.node) else {
            continue;
        };
        let to = format!("{STAGING_DIR}/{}", k.node.to_key());
        if from == to {
            // Parked by an earlier plan whose move back could not be done.
            continue;
        }
        disk.move_subtree(&from, &to);
        actions.push(FileAction::Move {
            from,
            to,
            expect: k.clone(),
        });
    }

    // 2. Removals: entries whose node is gone from the tree or changed kind.
    let removed: Vec<(String, Known)> = disk
        .by_path
        .iter()
        .filter(|(_, k)| remote.get(&k.node).is_none_or(|r| r.kind != k.kind))
        .map(|(path, k)| (path.clone(), k.clone()))
        .collect();
    for (path, k) in removed.iter().filter(|(_, k)| k.kind != NodeKind::Dir) {
        actions.push(FileAction::Remove {
            path: path.clone(),
            expect: k.clone(),
        });
    }
    for (path, k) in removed
        .iter()
        .rev()
        .filter(|(_, k)| k.kind == NodeKind::Dir)
    {
        actions.push(FileAction::RemoveDir {
            path: path.clone(),
            node: k.node,
        });
    }
    for (path, _) in &removed {
        disk.remove(path);
    }

    // 3. Parents before children: bring back from staging, make directories, write files.
    let mut wanted: Vec<(&NodeId, &RemoteEntry)> = remote.iter().collect();
    wanted.sort_by(|a, b| a.1.path.cmp(&b.1.path));
    for (&node, entry) in wanted {
        if let Some(current) = disk.path_of(node).filter(|current| *current != entry.path) {
            disk.move_subtree(&current, &entry.path);
            let expect = disk.by_path[&entry.path].clone();
            actions.push(FileAction::Move {
                from: current,
                to: entry.path.clone(),
                expect,
            });
        }
        let here = disk.by_path.get(&entry.path).cloned();
        let mode_differs = here
            .as_ref()
            .is_some_and(|k| k.node == node && k.mode != entry.mode);
        let set_mode = FileAction::SetMode {
            path: entry.path.clone(),
            node,
            mode: entry.mode,
        };
        if entry.kind == NodeKind::Dir {
            match here {
                None => actions.push(FileAction::MakeDir {
                    path: entry.path.clone(),
                    node,
                    mode: entry.mode,
                }),
                Some(_) if mode_differs => actions.push(set_mode),
                Some(_) => {}
            }
            continue;
        }
        let Some(content) = &entry.content else {
            continue;
        };
        let up_to_date = here
            .as_ref()
            .is_some_and(|k| k.node == node && k.content == Some(content.hash()));
        if !up_to_date {
            actions.push(FileAction::Write {
                path: entry.path.clone(),
                node,
                content: content.clone(),
                mode: entry.mode,
                replaces: here,
            });
        } else if mode_differs && entry.kind == NodeKind::File {
            actions.push(set_mode);
        }
    }
    actions
}

/// The disk as the plan expects it at each step: path -> entry and node -> path.
struct Disk {
    by_path: BTreeMap<String, Known>,
    by_node: HashMap<NodeId, String>,
}

impl Disk {
    fn new(known: &BTreeMap<String, Known>) -> Disk {
        Disk {
            by_path: known.clone(),
            by_node: known.iter().map(|(p, k)| (k.node, p.clone())).collect(),
        }
    }

    fn path_of(&self, node: NodeId) -> Option<String> {
        self.by_node.get(&node).cloned()
    }

    fn remove(&mut self, path: &str) {
        if let Some(k) = self.by_path.remove(path)
            && self.by_node.get(&k.node).is_some_and(|p| p == path)
        {
            self.by_node.remove(&k.node);
        }
    }

    /// Rewrites `from` and everything under it to live under `to`.
    fn move_subtree(&mut self, from: &str, to: &str) {
        let prefix = format!("{from}/");
        let mut moved = vec![from.to_owned()];
        moved.extend(
            self.by_path
                .range(prefix.clone()..)
                .take_while(|(path, _)| path.starts_with(&prefix))
                .map(|(path, _)| path.clone()),
        );
        for path in moved {
            if let Some(k) = self.by_path.remove(&path) {
                let new_path = format!("{to}{}", &path[from.len()..]);
                self.by_node.insert(k.node, new_path.clone());
                self.by_path.insert(new_path, k);
            }
        }
    }
}

#[cfg(test)]
mod tests;
