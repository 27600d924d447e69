//! `FolderDoc`: one synced folder as an Automerge document.
//!
//! Schema (one scalar per field, so a node costs the same whatever its file's size):
//! ```text
//! ROOT "v": 1, "nodes": { NodeId key: { "p": parent id bytes, "n": name, "k": kind,
//!                                       "m": mode, "c": Content bytes (files, symlinks),
//!                                       "a": creator (dirs), "t": created ms (dirs),
//!                                       "d": Tombstone bytes while deleted } },
//!      "devices": { short device hex: name }
//! ```
//! Every replica starts from the same genesis change (fixed actor, time 0), so the `nodes` and
//! `devices` maps are one object everywhere. A node key is never removed (Automerge would drop
//! concurrent edits inside a removed object): deletion is the "d" field. When two devices create
//! the same node id concurrently (a conflict copy), every write goes into every object at that
//! key and reads merge them, so nothing written into a losing object is lost.

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{ActorId, AutoCommit, Change, ChangeHash, ObjId, ObjType, ROOT, ReadDoc, Value};

use super::changes::check_change;
use super::content::Content;
use super::derive::{DerivedTree, content_winner_and_copies};
use super::refs::BlobRefs;
use super::{NodeKind, Tombstone, TreeError, validate_name};
use crate::ids::{NodeId, ShortDeviceId};
use crate::session::{ChangeHash as Hash, SyncDoc, SyncDocError};
use crate::time::WallTime;

/// A field's values: almost always exactly one, kept inline.
pub type Values<T> = smallvec::SmallVec<[T; 1]>;

/// Every value each field of a node has (several when devices wrote concurrently), in
/// Automerge's order, which every replica shares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeRecord {
    /// The node.
    pub id: NodeId,
    /// "p" values.
    pub parents: Values<NodeId>,
    /// "n" values.
    pub names: Values<String>,
    /// "k" values.
    pub kinds: Values<NodeKind>,
    /// "m" values.
    pub modes: Values<u32>,
    /// "c" values, decoded (undecodable ones are skipped).
    pub contents: Values<Content>,
    /// "a" values.
    pub creators: Values<ShortDeviceId>,
    /// "t" values.
    pub created: Values<WallTime>,
    /// "d" values.
    pub tombstones: Values<Tombstone>,
}

impl NodeRecord {
    /// The deterministic pick of a multi-valued field: the last in Automerge's order.
    pub fn pick<T: Clone>(values: &[T]) -> Option<T> {
        values.last().cloned()
    }
}

/// A folder document.
pub struct FolderDoc {
    doc: AutoCommit,
    nodes: ObjId,
    devices: ObjId,
    saved_heads: Vec<ChangeHash>,
    broken: bool,
    /// Blobs referenced by the changes `apply_changes` accepted, when asked to record them.
    applied_refs: Option<BlobRefs>,
}

impl std::fmt::Debug for FolderDoc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FolderDoc").finish_non_exhaustive()
    }
}

impl FolderDoc {
    /// A new, empty folder. `actor` must be unique per writer process: the device id plus a
    /// random per-process suffix, so a restarted agent never reuses sequence numbers.
    pub fn new(actor: &[u8]) -> FolderDoc {
        let mut doc = AutoCommit::new().with_actor(ActorId::from(vec![0u8; 16]));
        // The genesis change is byte-identical on every replica (fixed actor and time), so
        // every replica shares one `nodes` and one `devices` object. These puts on a fresh
        // document cannot fail.
        let nodes = doc
            .put_object(ROOT, "nodes", ObjType::Map)
            .expect("fresh document accepts puts");
        let devices = doc
            .put_object(ROOT, "devices", ObjType::Map)
            .expect("fresh document accepts puts");
        doc.put(ROOT, "v", 1u64)
            .expect("fresh document accepts puts");
        doc.commit_with(CommitOptions::default().with_time(0));
        doc.set_actor(ActorId::from(actor.to_vec()));
        let saved_heads = Vec::new();
        FolderDoc {
            doc,
            nodes,
            devices,
            saved_heads,
            broken: false,
            applied_refs: None,
        }
    }

    /// Loads saved bytes (a snapshot, increments, or both concatenated).
    pub fn load(bytes: &[u8], actor: &[u8]) -> Result<FolderDoc, TreeError> {
        let mut doc = AutoCommit::load(bytes)
            .map_err(|e| TreeError::Load(e.to_string()))?
            .with_actor(ActorId::from(actor.to_vec()));
        let object = |doc: &AutoCommit, key: &str| -> Result<ObjId, TreeError> {
            match doc.get(ROOT, key) {
                Ok(Some((Value::Object(ObjType::Map), id))) => Ok(id),
                _ => Err(TreeError::Load(format!("document has no {key} map"))),
            }
        };
        let nodes = object(&doc, "nodes")?;
        let devices = object(&doc, "devices")?;
        let saved_heads = doc.get_heads();
        Ok(FolderDoc {
            doc,
            nodes,
            devices,
            saved_heads,
            broken: false,
            applied_refs: None,
        })
    }

    /// Creates a node. For directories, `author` and `now` record who made it and when.
    #[allow(clippy::too_many_arguments)]
    pub fn create_node(
        &mut self,
        id: NodeId,
        parent: NodeId,
        name: &str,
        kind: NodeKind,
        mode: u32,
        content: Option<Content>,
        author: ShortDeviceId,
        now: WallTime,
    ) -> Result<(), TreeError> {
        validate_name(name).map_err(|e| TreeError::Name(e.to_string()))?;
        if id == NodeId::ROOT {
            return Err(TreeError::Root);
        }
        let mut fields: Vec<(&str, automerge::ScalarValue)> = vec![
            ("p", parent.0.to_vec().into()),
            ("n", name.into()),
            ("k", u64::from(kind.code()).into()),
            ("m", u64::from(mode).into()),
        ];
        if let Some(content) = &content {
            fields.push(("c", content.encode().into()));
        }
        if kind == NodeKind::Dir {
            fields.push(("a", author.0.to_vec().into()));
            fields.push(("t", now.0.into()));
        }
        let existing = self.objects(id);
        if existing.is_empty() {
            let map: std::collections::HashMap<&str, automerge::hydrate::Value> = fields
                .into_iter()
                .map(|(key, value)| (key, automerge::hydrate::Value::Scalar(value)))
                .collect();
            self.doc
                .batch_create_object(
                    &self.nodes,
                    id.to_key(),
                    &automerge::hydrate::Value::from(map),
                    false,
                )
                .map_err(am)?;
        } else {
            for (key, value) in fields {
                self.put_all(&existing, key, value)?;
            }
        }
        Ok(())
    }

    /// Replaces a node's content. Concurrent versions it supersedes become conflict copies
    /// first, so they survive.
    pub fn set_content(&mut self, id: NodeId, content: Content) -> Result<(), TreeError> {
        let objects = self.ensure_real(id)?;
        let record = self.record(id).ok_or(TreeError::NoSuchNode(id))?;
        if record.contents.len() > 1 {
            let names = |short: ShortDeviceId| self.device_name(short);
            let (_, copies) = content_winner_and_copies(&record, &names);
            for copy in copies {
                if self.objects(copy.id).is_empty() {
                    let parent = NodeRecord::pick(&record.parents).unwrap_or(NodeId::ROOT);
                    let kind = NodeRecord::pick(&record.kinds).unwrap_or(NodeKind::File);
                    let mode = NodeRecord::pick(&record.modes).unwrap_or(0o644);
                    self.create_node(
                        copy.id,
                        parent,
                        &copy.name,
                        kind,
                        mode,
                        Some(copy.content.clone()),
                        copy.content.author,
                        copy.content.written_at,
                    )?;
                }
            }
        }
        self.put_all(&objects, "c", content.encode().into())
    }

    /// Renames and/or moves a node.
    pub fn rename(&mut self, id: NodeId, parent: NodeId, name: &str) -> Result<(), TreeError> {
        validate_name(name).map_err(|e| TreeError::Name(e.to_string()))?;
        let objects = self.ensure_real(id)?;
        self.put_all(&objects, "p", parent.0.to_vec().into())?;
        self.put_all(&objects, "n", name.into())
    }

    /// Changes a node's mode bits.
    pub fn set_mode(&mut self, id: NodeId, mode: u32) -> Result<(), TreeError> {
        let objects = self.ensure_real(id)?;
        self.put_all(&objects, "m", u64::from(mode).into())
    }

    /// Deletes a node (a tombstone recording who, when and which content it saw). Deleting a
    /// conflict copy that is still only derived resolves the conflict in favour of the winner.
    pub fn delete(&mut self, id: NodeId, by: ShortDeviceId, at: WallTime) -> Result<(), TreeError> {
        if self.objects(id).is_empty() {
            let tree = self.derive();
            if let Some(origin) = tree.get(id).and_then(|n| n.conflict_of) {
                let record = self.record(origin).ok_or(TreeError::NoSuchNode(origin))?;
                let names = |short: ShortDeviceId| self.device_name(short);
                let (winner, copies) = content_winner_and_copies(&record, &names);
                let objects = self.objects(origin);
                // Keep the other losers as real copies, then supersede every version.
                for copy in copies.into_iter().filter(|c| c.id != id) {
                    if self.objects(copy.id).is_empty() {
                        let parent = NodeRecord::pick(&record.parents).unwrap_or(NodeId::ROOT);
                        let mode = NodeRecord::pick(&record.modes).unwrap_or(0o644);
                        self.create_node(
                            copy.id,
                            parent,
                            &copy.name,
                            NodeKind::File,
                            mode,
                            Some(copy.content.clone()),
                            copy.content.author,
                            copy.content.written_at,
                        )?;
                    }
                }
                if let Some(winner) = winner {
                    self.put_all(&objects, "c", winner.encode().into())?;
                }
                return Ok(());
            }
            return Err(TreeError::NoSuchNode(id));
        }
        let record = self.record(id).ok_or(TreeError::NoSuchNode(id))?;
        let names = |short: ShortDeviceId| self.device_name(short);
        let seen = content_winner_and_copies(&record, &names)
            .0
            .map(|content| content.hash());
        let tombstone = Tombstone { by, at, seen };
        let objects = self.objects(id);
        self.put_all(&objects, "d", tombstone.encode().into())
    }

    /// Undeletes a node.
    pub fn restore(&mut self, id: NodeId) -> Result<(), TreeError> {
        let objects = self.objects(id);
        if objects.is_empty() {
            return Err(TreeError::NoSuchNode(id));
        }
        for object in &objects {
            self.doc.delete(object, "d").map_err(am)?;
        }
        Ok(())
    }

    /// Records a device's name for conflict copy names and history.
    pub fn set_device_name(&mut self, short: ShortDeviceId, name: &str) -> Result<(), TreeError> {
        if self.device_name_opt(short).as_deref() == Some(name) {
            return Ok(());
        }
        self.doc
            .put(&self.devices, short.to_string(), name)
            .map_err(am)
    }

    /// A device's name as recorded, else its short id.
    pub fn device_name(&self, short: ShortDeviceId) -> String {
        self.device_name_opt(short)
            .unwrap_or_else(|| short.to_string())
    }

    fn device_name_opt(&self, short: ShortDeviceId) -> Option<String> {
        match self.doc.get(&self.devices, short.to_string()) {
            Ok(Some((Value::Scalar(s), _))) => s.as_str().map(str::to_owned),
            _ => None,
        }
    }

    /// Commits pending operations as one change; returns its hash if there were any.
    pub fn commit(&mut self, now: WallTime) -> Option<Hash> {
        self.doc
            .commit_with(CommitOptions::default().with_time(now.0 / 1000))
            .map(|h| h.0)
    }

    /// Whether operations were made since the last commit (reading the heads would commit them).
    pub fn has_uncommitted(&self) -> bool {
        self.doc.pending_ops() > 0
    }

    /// The current heads (commits pending operations first).
    pub fn heads(&mut self) -> Vec<Hash> {
        self.doc.get_heads().into_iter().map(|h| h.0).collect()
    }

    /// Whether the document has this change.
    pub fn has_change(&mut self, hash: &Hash) -> bool {
        self.doc
            .get_change_meta_by_hash(&ChangeHash(*hash))
            .is_some()
    }

    /// Raw bytes of the changes a holder of `heads` lacks, in causal order.
    pub fn changes_since(&mut self, heads: &[Hash]) -> Vec<Vec<u8>> {
        let heads: Vec<ChangeHash> = heads.iter().map(|h| ChangeHash(*h)).collect();
        self.doc
            .get_changes(&heads)
            .into_iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect()
    }

    /// Checks and applies changes from a peer; returns their hashes. Nothing is applied if any
    /// is refused.
    pub fn apply_changes(&mut self, changes: Vec<Vec<u8>>) -> Result<Vec<Hash>, TreeError> {
        let mut parsed = Vec::with_capacity(changes.len());
        for bytes in changes {
            check_change(&bytes).map_err(|e| TreeError::Change(e.to_string()))?;
            parsed.push(Change::from_bytes(bytes).map_err(|e| TreeError::Change(e.to_string()))?);
        }
        let hashes = parsed.iter().map(|c| c.hash().0).collect();
        // Read while the changes are parsed anyway (parsing checks every op: a second parse
        // for the references took a seventh of the relay's time in a 100k-file upload).
        let refs = self.applied_refs.is_some().then(|| {
            let mut refs = BlobRefs::default();
            for change in &parsed {
                refs.add_change(change);
            }
            refs
        });
        // Automerge unwraps on some malformed (checksummed, hence deliberate) changes. The panic
        // is contained so a hostile device cannot take the relay down; what Automerge had
        // half-applied cannot be trusted, so the owner reloads the document from storage.
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.doc.apply_changes(parsed)
        }));
        // Automerge 0.12 records a patch event for every applied map entry even into its
        // inactive patch log, and `AutoCommit` never clears that log: a 100k-node catch-up kept
        // 160 MiB of events, and a long-running relay would grow without bound. Nothing here
        // reads patches, so the log is dropped after every apply.
        self.doc.reset_diff_cursor();
        match applied {
            Ok(result) => result.map_err(am)?,
            Err(_) => {
                self.broken = true;
                return Err(TreeError::Broken);
            }
        }
        if let (Some(applied), Some(refs)) = (&mut self.applied_refs, refs) {
            applied.extend(refs);
        }
        Ok(hashes)
    }

    /// From now on, remember the blobs referenced by every change [`Self::apply_changes`]
    /// accepts (the relay indexes them as devices' changes arrive).
    pub fn record_refs(&mut self) {
        self.applied_refs.get_or_insert_with(BlobRefs::default);
    }

    /// The blob references recorded since the last call (none unless [`Self::record_refs`]).
    pub fn take_refs(&mut self) -> BlobRefs {
        self.applied_refs
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Whether applying changes failed inside Automerge: the document must not be used or saved
    /// again; reload it from what was stored.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    /// Everything, compacted.
    pub fn save(&mut self) -> Vec<u8> {
        let bytes = self.doc.save();
        self.saved_heads = self.doc.get_heads();
        bytes
    }

    /// Only what changed since the last save or load (never the whole history again).
    pub fn save_incremental(&mut self) -> Vec<u8> {
        let heads = self.doc.get_heads();
        if heads == self.saved_heads {
            return Vec::new();
        }
        let bytes = self.doc.save_after(&self.saved_heads);
        self.saved_heads = heads;
        bytes
    }

    /// The tree every replica with the same changes derives identically.
    pub fn derive(&self) -> DerivedTree {
        DerivedTree::build(self)
    }

    /// The tree as a device whose file system compares names as `disk` says holds it (see
    /// [`DerivedTree::build_for`]).
    pub fn derive_for(&self, disk: super::DiskNames) -> DerivedTree {
        DerivedTree::build_for(self, disk)
    }

    /// The content a node shows now (the winner among concurrent versions).
    pub fn content_of(&self, id: NodeId) -> Option<Content> {
        let record = self.record(id)?;
        let names = |short: ShortDeviceId| self.device_name(short);
        content_winner_and_copies(&record, &names).0
    }

    /// Finds the node at `path`: live in the derived tree, else a deleted node whose parent
    /// chain spells that path. Returns (node, deleted).
    pub fn find_path(&self, path: &str) -> Option<(NodeId, bool)> {
        let tree = self.derive();
        if let Some(id) = tree.lookup(path) {
            return Some((id, false));
        }
        let (parent, name) = match path.rsplit_once('/') {
            Some((parent, name)) => (tree.lookup(parent)?, name),
            None => (NodeId::ROOT, path),
        };
        self.records()
            .into_iter()
            .filter(|r| {
                !r.tombstones.is_empty()
                    && NodeRecord::pick(&r.parents) == Some(parent)
                    && NodeRecord::pick(&r.names).as_deref() == Some(name)
            })
            .map(|r| r.id)
            .max()
            .map(|id| (id, true))
    }

    /// Number of node keys in the document (live and deleted).
    pub fn node_count(&self) -> usize {
        self.doc.length(&self.nodes)
    }

    /// The merged fields of one node.
    pub fn record(&self, id: NodeId) -> Option<NodeRecord> {
        let objects = self.objects(id);
        if objects.is_empty() {
            return None;
        }
        Some(self.read_record(id, &objects))
    }

    /// Every node's merged fields, ordered by node id.
    ///
    /// One sequential pass over the whole document: reading node by node costs a seek into
    /// Automerge's columns per object (10 µs a node, seconds at 100k nodes).
    pub fn records(&self) -> Vec<Box<NodeRecord>> {
        use foldhash::HashMapExt;
        let mut node_of: foldhash::HashMap<ObjId, NodeId> = foldhash::HashMap::new();
        let mut conflicted: Vec<NodeId> = Vec::new();
        // Fields absorbed per object as they stream by (an object's keys come together); the
        // node ids are attached at the end.
        // Boxed: the map's table stays small when it grows, and the records are handed out
        // without being copied again (a 100k-node derivation peaked at 94 MiB, now 77 MiB).
        let mut partial: foldhash::HashMap<ObjId, Box<NodeRecord>> = foldhash::HashMap::new();
        let mut current: Option<(std::sync::Arc<ObjId>, NodeRecord)> = None;
        for entry in self.doc.iter() {
            let automerge::iter::DocItem::Map(item) = entry.item else {
                continue;
            };
            if *entry.obj == self.nodes {
                let Ok(id) = NodeId::from_key(&item.key) else {
                    continue;
                };
                if item.conflict {
                    // Created concurrently: the pass visits only the winning object, so this
                    // node is read object by object below (rare).
                    conflicted.push(id);
                } else {
                    node_of.insert(item.id(), id);
                }
                continue;
            }
            let same = current.as_ref().is_some_and(|(object, _)| {
                std::sync::Arc::ptr_eq(object, &entry.obj) || **object == *entry.obj
            });
            if !same
                && let Some((object, record)) =
                    current.replace((entry.obj.clone(), NodeRecord::default()))
            {
                partial.entry((*object).clone()).or_default().merge(record);
            }
            let Some((object, record)) = current.as_mut() else {
                continue;
            };
            if item.conflict {
                for value in self.values(object, &item.key) {
                    record.absorb(&item.key, &value);
                }
            } else if let automerge::ValueRef::Scalar(value) = &item.value {
                record.absorb(&item.key, value);
            }
        }
        if let Some((object, record)) = current {
            partial.entry((*object).clone()).or_default().merge(record);
        }
        let mut records: Vec<Box<NodeRecord>> =
            Vec::with_capacity(node_of.len() + conflicted.len());
        for (object, id) in node_of {
            let mut record = partial.remove(&object).unwrap_or_default();
            record.id = id;
            records.push(record);
        }
        for id in conflicted {
            records.push(Box::new(self.read_record(id, &self.objects(id))));
        }
        // A conflicted key is never also in `node_of`: ids are unique.
        records.sort_unstable_by_key(|r| r.id);
        records
    }

    /// Every scalar value at `key` of `object` (several after concurrent writes).
    fn values(&self, object: &ObjId, key: &str) -> Vec<automerge::ScalarValueRef<'static>> {
        self.doc
            .get_all(object, key)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|(value, _)| match value {
                Value::Scalar(s) => Some(s.into_owned().into()),
                Value::Object(_) => None,
            })
            .collect()
    }

    /// Every change in the document's history.
    pub(crate) fn all_changes(&mut self) -> Vec<Change> {
        self.doc.get_changes(&[])
    }

    /// The objects at a node's key (several after concurrent creation of the same id).
    pub(crate) fn objects(&self, id: NodeId) -> Vec<ObjId> {
        match self.doc.get_all(&self.nodes, id.to_key()) {
            Ok(values) => values
                .into_iter()
                .filter(|(value, _)| matches!(value, Value::Object(ObjType::Map)))
                .map(|(_, obj)| obj)
                .collect(),
            Err(_) => Vec::new(),
        }
    }

    /// Writes a name without validation, as a hostile peer could.
    #[cfg(any(test, feature = "test-support"))]
    pub fn force_name_for_test(&mut self, id: NodeId, name: &str) {
        let objects = self.objects(id);
        self.put_all(&objects, "n", name.into())
            .expect("node exists");
    }

    /// A node that so far exists only as a derived conflict copy becomes real.
    fn ensure_real(&mut self, id: NodeId) -> Result<Vec<ObjId>, TreeError> {
        let objects = self.objects(id);
        if !objects.is_empty() {
            return Ok(objects);
        }
        let tree = self.derive();
        let node = tree.get(id).ok_or(TreeError::NoSuchNode(id))?.clone();
        let content = node.content.clone().ok_or(TreeError::NoSuchNode(id))?;
        self.create_node(
            id,
            node.parent,
            &node.name,
            node.kind,
            node.mode,
            Some(content.clone()),
            content.author,
            content.written_at,
        )?;
        Ok(self.objects(id))
    }

    fn put_all(
        &mut self,
        objects: &[ObjId],
        key: &str,
        value: automerge::ScalarValue,
    ) -> Result<(), TreeError> {
        if objects.is_empty() {
            return Err(TreeError::Corrupt("node has no object".into()));
        }
        for object in objects {
            self.doc.put(object, key, value.clone()).map_err(am)?;
        }
        Ok(())
    }

    fn read_record(&self, id: NodeId, objects: &[ObjId]) -> NodeRecord {
        let mut record = NodeRecord {
            id,
            ..NodeRecord::default()
        };
        for object in objects {
            for item in self.doc.map_range(object, ..) {
                for value in self.values(object, &item.key) {
                    record.absorb(&item.key, &value);
                }
            }
        }
        record
    }
}

fn push<T: PartialEq>(values: &mut Values<T>, value: T) {
    if !values.contains(&value) {
        values.push(value);
    }
}

impl NodeRecord {
    fn absorb(&mut self, key: &str, value: &automerge::ScalarValueRef<'_>) {
        use automerge::ScalarValueRef as S;
        match (key, value) {
            ("p", S::Bytes(bytes)) => {
                if let Ok(id) = <[u8; 16]>::try_from(bytes.as_ref()) {
                    push(&mut self.parents, NodeId(id));
                }
            }
            ("n", S::Str(name)) if !self.names.iter().any(|n| n == name.as_ref()) => {
                self.names.push(name.to_string());
            }
            ("k", S::Uint(code)) => {
                if let Some(kind) = u8::try_from(*code).ok().and_then(NodeKind::from_code) {
                    push(&mut self.kinds, kind);
                }
            }
            ("m", S::Uint(mode)) => push(&mut self.modes, (mode & 0o7777) as u32),
            ("c", S::Bytes(bytes)) => {
                if let Ok(content) = Content::decode(bytes) {
                    push(&mut self.contents, content);
                }
            }
            ("a", S::Bytes(bytes)) => {
                if let Ok(short) = <[u8; 8]>::try_from(bytes.as_ref()) {
                    push(&mut self.creators, ShortDeviceId(short));
                }
            }
            ("t", S::Int(ms)) => push(&mut self.created, WallTime(*ms)),
            ("d", S::Bytes(bytes)) => {
                if let Some(tombstone) = Tombstone::decode(bytes) {
                    push(&mut self.tombstones, tombstone);
                }
            }
            _ => {}
        }
    }

    /// Adds the values of `other` (fields of the same object read in two runs).
    fn merge(&mut self, other: NodeRecord) {
        fn all<T: PartialEq>(values: &mut Values<T>, more: Values<T>) {
            for value in more {
                push(values, value);
            }
        }
        all(&mut self.parents, other.parents);
        all(&mut self.names, other.names);
        all(&mut self.kinds, other.kinds);
        all(&mut self.modes, other.modes);
        all(&mut self.contents, other.contents);
        all(&mut self.creators, other.creators);
        all(&mut self.created, other.created);
        all(&mut self.tombstones, other.tombstones);
    }
}

impl SyncDoc for FolderDoc {
    fn heads(&mut self) -> Vec<Hash> {
        FolderDoc::heads(self)
    }

    fn has_change(&mut self, hash: &Hash) -> bool {
        FolderDoc::has_change(self, hash)
    }

    fn changes_since(&mut self, heads: &[Hash]) -> Vec<Vec<u8>> {
        FolderDoc::changes_since(self, heads)
    }

    fn apply_changes(&mut self, changes: Vec<Vec<u8>>) -> Result<Vec<Hash>, SyncDocError> {
        FolderDoc::apply_changes(self, changes).map_err(|e| SyncDocError(e.to_string()))
    }
}

fn am(error: automerge::AutomergeError) -> TreeError {
    TreeError::Automerge(error.to_string())
}
