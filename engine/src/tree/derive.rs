//! The tree derived from a merged document: deterministic, so every replica that saw the same
//! changes shows byte-identical trees, whatever order the changes arrived in.
//!
//! Rules (shared/DESIGN.md section 3), applied in order:
//! 1. Multi-valued name, parent, kind or mode (concurrent renames, moves, chmods): the last value
//!    in Automerge's order wins, the same on every replica.
//! 2. Concurrent contents: the winner is the latest `written_at`, then the higher author id; each
//!    other version becomes a conflict copy beside it, with an id derived from the node and that
//!    version, named `NAME (conflict from DEVICE YYYY-MM-DD HHMMSS).EXT`. Versions with equal
//!    bytes (the same content hash) are one version: no copy for them.
//! 3. Edit beats delete: a file is deleted only if its tombstone saw the content it now has.
//! 4. Invalid names are skipped with a warning (and their subtree); a missing or non-directory
//!    parent means the root; move cycles are broken by moving the smallest id in the cycle to the
//!    root. A deleted directory that still holds a live node stays.
//! 5. Two live nodes with one name in a directory: real nodes before conflict copies, then the
//!    smaller id keeps the name; each other one gets a conflict name (made unique if needed).

use std::collections::BTreeMap;

// Faster than SipHash on the hot node-id maps, still randomly seeded.
use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use super::content::Content;
use super::document::{FolderDoc, NodeRecord};
use super::{NodeKind, clash_name, conflict_name, fold_key, portability_issue, validate_name};
use crate::ids::{NodeId, ShortDeviceId};
use crate::scan::RemoteEntry;
use crate::time::WallTime;

/// A node as the derived tree shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DerivedNode {
    /// Its id.
    pub id: NodeId,
    /// Its parent directory (the root is [`NodeId::ROOT`]).
    pub parent: NodeId,
    /// Its name in that directory (after conflict renaming).
    pub name: String,
    /// File, directory or symlink.
    pub kind: NodeKind,
    /// Mode bits.
    pub mode: u32,
    /// Content (files and symlinks).
    pub content: Option<Content>,
    /// For a conflict copy not yet written to the document: the node it came from.
    pub conflict_of: Option<NodeId>,
}

/// A derived conflict copy of a node's losing content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConflictCopy {
    /// Its deterministic id.
    pub id: NodeId,
    /// Its name.
    pub name: String,
    /// The losing content.
    pub content: Content,
}

/// The winner among a node's concurrent contents, and a conflict copy for each other one.
pub fn content_winner_and_copies(
    record: &NodeRecord,
    device_name: &dyn Fn(ShortDeviceId) -> String,
) -> (Option<Content>, Vec<ConflictCopy>) {
    let Some(winner) = record
        .contents
        .iter()
        .max_by_key(|c| (c.written_at, c.author))
        .cloned()
    else {
        return (None, Vec::new());
    };
    let name = NodeRecord::pick(&record.names).unwrap_or_default();
    // Equal bytes written concurrently are one version, not a conflict: a losing content whose
    // hash the winner (or a later loser) already has makes no copy.
    let mut losers: Vec<&Content> = record
        .contents
        .iter()
        .filter(|c| c.hash() != winner.hash())
        .collect();
    losers.sort_by_key(|c| std::cmp::Reverse((c.written_at, c.author)));
    let mut seen = std::collections::HashSet::new();
    losers.retain(|c| seen.insert(c.hash()));
    let copies = losers
        .into_iter()
        .map(|loser| ConflictCopy {
            id: NodeId::derived("cloud3 conflict", &[&record.id.0, &loser.encode()]),
            name: conflict_name(&name, &device_name(loser.author), loser.written_at),
            content: loser.clone(),
        })
        .collect();
    (Some(winner), copies)
}

/// The folder's tree.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DerivedTree {
    nodes: HashMap<NodeId, DerivedNode>,
    paths: BTreeMap<String, NodeId>,
    path_of: HashMap<NodeId, String>,
    warnings: Vec<String>,
    name_notes: Vec<NameNote>,
}

/// How a device's file system compares names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DiskNames {
    /// Every distinct name is a distinct entry (Linux file systems as usually set up).
    #[default]
    Exact,
    /// Names that differ only in case or Unicode normalisation are one entry (macOS, Windows,
    /// ext4 directories with casefold).
    CaseInsensitive,
}

/// A name some device cannot hold as it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameNote {
    /// The entry's path in this tree (on this device's disk).
    pub path: String,
    /// What is wrong, for people.
    pub problem: String,
}

struct Work {
    node: DerivedNode,
    deleted: bool,
    valid: bool,
    author: ShortDeviceId,
    time: WallTime,
}

impl DerivedTree {
    /// Derives the tree of `doc`, as a device that tells every name apart sees it.
    pub fn build(doc: &FolderDoc) -> DerivedTree {
        DerivedTree::build_for(doc, DiskNames::Exact)
    }

    /// Derives the tree of `doc` for a device whose file system compares names as `disk`
    /// says. On a case-insensitive one, of two names in a directory that differ only in case
    /// or normalisation the node with the smaller id (real nodes first) keeps its name and each
    /// other one is shown as `NAME (case clash N).EXT`: a path of this device only, never
    /// written to the document, so other devices keep the names as they are.
    pub fn build_for(doc: &FolderDoc, disk: DiskNames) -> DerivedTree {
        let names = |short: ShortDeviceId| doc.device_name(short);
        let records = doc.records();
        let real: HashSet<NodeId> = records.iter().map(|r| r.id).collect();
        let mut work: HashMap<NodeId, Work> = HashMap::with_capacity(records.len());
        let mut warnings = Vec::new();
        for record in &records {
            let Some(kind) = NodeRecord::pick(&record.kinds) else {
                warnings.push(format!("node {} has no kind, skipped", record.id));
                continue;
            };
            let name = NodeRecord::pick(&record.names).unwrap_or_default();
            let parent = NodeRecord::pick(&record.parents).unwrap_or(NodeId::ROOT);
            let mode = NodeRecord::pick(&record.modes).unwrap_or(match kind {
                NodeKind::Dir => 0o755,
                _ => 0o644,
            });
            let (content, copies) = content_winner_and_copies(record, &names);
            let deleted = match kind {
                NodeKind::Dir => !record.tombstones.is_empty(),
                _ => {
                    let hash = content.as_ref().map(Content::hash);
                    record.tombstones.iter().any(|t| t.seen == hash)
                }
            };
            let valid = validate_name(&name).is_ok();
            if !valid {
                warnings.push(format!(
                    "node {} has an invalid name {name:?}, skipped",
                    record.id
                ));
            }
            let (author, time) = match &content {
                Some(c) => (c.author, c.written_at),
                None => (
                    NodeRecord::pick(&record.creators).unwrap_or(ShortDeviceId([0; 8])),
                    NodeRecord::pick(&record.created).unwrap_or_default(),
                ),
            };
            for copy in copies.into_iter().filter(|c| !real.contains(&c.id)) {
                let copy_valid = validate_name(&copy.name).is_ok();
                work.insert(
                    copy.id,
                    Work {
                        node: DerivedNode {
                            id: copy.id,
                            parent,
                            name: copy.name,
                            kind,
                            mode,
                            conflict_of: Some(record.id),
                            content: Some(copy.content.clone()),
                        },
                        deleted: false,
                        valid: valid && copy_valid,
                        author: copy.content.author,
                        time: copy.content.written_at,
                    },
                );
            }
            work.insert(
                record.id,
                Work {
                    node: DerivedNode {
                        id: record.id,
                        parent,
                        name,
                        kind,
                        mode,
                        content,
                        conflict_of: None,
                    },
                    deleted,
                    valid,
                    author,
                    time,
                },
            );
        }
        // Everything needed is in `work` now: the records (a third of the peak memory of a
        // derivation) go before the tree is built.
        drop((records, real));
        // Parents that do not exist or are not directories mean the root.
        let is_dir: HashSet<NodeId> = work
            .iter()
            .filter(|(_, w)| w.node.kind == NodeKind::Dir)
            .map(|(id, _)| *id)
            .collect();
        for w in work.values_mut() {
            if w.node.parent != NodeId::ROOT && !is_dir.contains(&w.node.parent) {
                w.node.parent = NodeId::ROOT;
            }
        }
        break_cycles(&mut work);
        // Children lists, then liveness bottom-up from the root.
        let mut children: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
        for (id, w) in &work {
            if w.valid {
                children.entry(w.node.parent).or_default().push(*id);
            }
        }
        for list in children.values_mut() {
            list.sort();
        }
        let mut live: HashSet<NodeId> = HashSet::new();
        mark_live(NodeId::ROOT, &children, &work, &mut live);
        // Names per directory, conflicts resolved, then paths.
        let mut tree = DerivedTree {
            warnings,
            ..DerivedTree::default()
        };
        let mut stack = vec![(NodeId::ROOT, String::new())];
        while let Some((dir, dir_path)) = stack.pop() {
            let Some(kids) = children.get(&dir) else {
                continue;
            };
            // Each node has one parent, so each is taken out of `work` exactly once.
            let mut visible: Vec<Work> = kids
                .iter()
                .filter(|id| live.contains(id))
                .filter_map(|id| work.remove(id))
                .collect();
            // Real nodes before conflict copies, then by id.
            visible.sort_by_key(|w| (w.node.conflict_of.is_some(), w.node.id));
            // Names placed so far as written, and their fold keys: a name is taken when
            // either holds it, the fold keys counting only where the file system compares
            // names without case. On any device they also report the names another device
            // could not hold side by side.
            let mut exact: HashSet<String> = HashSet::new();
            let mut folded: HashSet<String> = HashSet::new();
            let fold_taken = |folded: &HashSet<String>, name: &str| {
                disk == DiskNames::CaseInsensitive && folded.contains(fold_key(name).as_ref())
            };
            let mut losers = Vec::new();
            let mut clashes = Vec::new();
            for w in visible {
                if exact.contains(&w.node.name) {
                    losers.push(w);
                } else if fold_taken(&folded, &w.node.name) {
                    clashes.push(w);
                } else {
                    exact.insert(w.node.name.clone());
                    tree.note_portability(&w.node.name, &dir_path, &mut folded);
                    tree.insert(w.node, &dir_path, &mut stack);
                }
            }
            for w in losers {
                let base = conflict_name(&w.node.name, &names(w.author), w.time);
                let mut name = base.clone();
                let mut counter = 2;
                while exact.contains(&name) || fold_taken(&folded, &name) {
                    name = numbered(&base, counter);
                    counter += 1;
                }
                exact.insert(name.clone());
                let mut node = w.node;
                node.name = name;
                tree.note_portability(&node.name, &dir_path, &mut folded);
                tree.insert(node, &dir_path, &mut stack);
            }
            // Only on a case-insensitive device: the second of two names it cannot tell apart
            // is kept under a name of its own, the same on every run (the order is by id).
            for w in clashes {
                let original = w.node.name.clone();
                let mut counter = 2;
                let mut name = clash_name(&original, counter);
                while exact.contains(&name) || fold_taken(&folded, &name) {
                    counter += 1;
                    name = clash_name(&original, counter);
                }
                exact.insert(name.clone());
                folded.insert(fold_key(&name).into_owned());
                let mut node = w.node;
                node.name = name;
                tree.name_notes.push(NameNote {
                    path: join(&dir_path, &node.name),
                    problem: format!(
                        "is {original:?} in the folder: this file system does not tell it \
                         apart from another name there"
                    ),
                });
                tree.insert(node, &dir_path, &mut stack);
            }
        }
        tree
    }

    fn insert(&mut self, node: DerivedNode, dir_path: &str, stack: &mut Vec<(NodeId, String)>) {
        let path = join(dir_path, &node.name);
        if node.kind == NodeKind::Dir {
            stack.push((node.id, path.clone()));
        }
        self.paths.insert(path.clone(), node.id);
        self.path_of.insert(node.id, path);
        self.nodes.insert(node.id, node);
    }

    /// A node by id.
    pub fn get(&self, id: NodeId) -> Option<&DerivedNode> {
        self.nodes.get(&id)
    }

    /// A node's '/'-separated path relative to the folder.
    pub fn path_of(&self, id: NodeId) -> Option<&str> {
        self.path_of.get(&id).map(String::as_str)
    }

    /// The node at a path.
    pub fn lookup(&self, path: &str) -> Option<NodeId> {
        self.paths.get(path).copied()
    }

    /// Every (path, node) in path order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &DerivedNode)> {
        self.paths
            .iter()
            .filter_map(|(path, id)| Some((path.as_str(), self.nodes.get(id)?)))
    }

    /// Number of visible nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the folder is empty.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Records why another device could not hold `name` in `dir_path`, if it could not:
    /// Windows refuses it, or another name placed there before differs only in case or
    /// normalisation (`folded` holds their keys).
    fn note_portability(&mut self, name: &str, dir_path: &str, folded: &mut HashSet<String>) {
        let problem = portability_issue(name).map(str::to_owned);
        let clash = !folded.insert(fold_key(name).into_owned());
        let problem = match (problem, clash) {
            (Some(issue), _) => issue,
            (None, true) => "differs from another name there only in case or Unicode \
                             normalisation: a case-insensitive device keeps it as a \
                             \"(case clash N)\" copy"
                .to_owned(),
            (None, false) => return,
        };
        self.name_notes.push(NameNote {
            path: join(dir_path, name),
            problem,
        });
    }

    /// Names another device cannot hold as they are, and names this device holds under a
    /// different name (see [`DerivedTree::build_for`]).
    pub fn name_notes(&self) -> &[NameNote] {
        &self.name_notes
    }

    /// What was skipped and why.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// A canonical listing (path, id, kind, mode, content hash) to compare replicas.
    pub fn canonical(&self) -> Vec<(String, NodeId, NodeKind, u32, Option<crate::ids::ChunkId>)> {
        self.iter()
            .map(|(path, n)| {
                (
                    path.to_owned(),
                    n.id,
                    n.kind,
                    n.mode,
                    n.content.as_ref().map(Content::hash),
                )
            })
            .collect()
    }

    /// The tree as scan and materialise take it (moving paths and contents, not copying them).
    pub fn into_remote_entries(self) -> std::collections::HashMap<NodeId, RemoteEntry> {
        let mut path_of = self.path_of;
        self.nodes
            .into_values()
            .filter_map(|n| {
                let path = path_of.remove(&n.id)?;
                let entry = RemoteEntry {
                    parent: n.parent,
                    path,
                    kind: n.kind,
                    mode: n.mode,
                    content: n.content,
                };
                Some((n.id, entry))
            })
            .collect()
    }
}

/// `dir/name`, or `name` in the root.
fn join(dir_path: &str, name: &str) -> String {
    if dir_path.is_empty() {
        name.to_owned()
    } else {
        format!("{dir_path}/{name}")
    }
}

/// `name (2).ext` style numbering of a conflict name that is taken too.
fn numbered(name: &str, counter: usize) -> String {
    match name.rfind('.') {
        Some(dot) if dot > 0 => format!("{} {counter}{}", &name[..dot], &name[dot..]),
        _ => format!("{name} {counter}"),
    }
}

/// Moves the smallest id of every parent cycle to the root, until none is left.
fn break_cycles(work: &mut HashMap<NodeId, Work>) {
    let mut done: HashSet<NodeId> = HashSet::with_capacity(work.len());
    let mut ids: Vec<NodeId> = work.keys().copied().collect();
    ids.sort();
    for start in ids {
        let mut chain: Vec<NodeId> = Vec::new();
        let mut on_chain: HashSet<NodeId> = HashSet::new();
        let mut current = start;
        loop {
            if current == NodeId::ROOT || done.contains(&current) {
                break;
            }
            if !on_chain.insert(current) {
                // `current` closes a cycle: the part of the chain from it onwards.
                let from = chain.iter().position(|id| *id == current).unwrap_or(0);
                let smallest = chain[from..].iter().min().copied().unwrap_or(current);
                if let Some(w) = work.get_mut(&smallest) {
                    w.node.parent = NodeId::ROOT;
                }
                break;
            }
            chain.push(current);
            current = match work.get(&current) {
                Some(w) => w.node.parent,
                None => NodeId::ROOT,
            };
        }
        done.extend(chain);
    }
}

/// A node is live if it is not deleted or anything under it is live.
fn mark_live(
    root: NodeId,
    children: &HashMap<NodeId, Vec<NodeId>>,
    work: &HashMap<NodeId, Work>,
    live: &mut HashSet<NodeId>,
) {
    // Iterative post-order: (node, children visited?).
    let mut stack = vec![(root, false)];
    while let Some((id, visited)) = stack.pop() {
        let kids = children.get(&id);
        if !visited {
            stack.push((id, true));
            for kid in kids.into_iter().flatten() {
                stack.push((*kid, false));
            }
            continue;
        }
        let any_live_kid = kids.into_iter().flatten().any(|kid| live.contains(kid));
        let deleted = work.get(&id).is_some_and(|w| w.deleted);
        if id != root && (!deleted || any_live_kid) {
            live.insert(id);
        }
    }
}
