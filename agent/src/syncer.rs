//! The folder's sync state on this device: the document, the file index and the relay's known
//! heads, and the two local halves of syncing: recording what changed on disk into the document
//! ([`Syncer::scan`]) and planning what the document wants on disk ([`Syncer::plan`]).
//!
//! Network transfer lives in `transfer`, performing file actions in `apply`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cloud3_engine::chunk::{Manifest, ManifestEntry};
use cloud3_engine::ids::{ChunkId, DeviceId, NodeId, ShortDeviceId};
use cloud3_engine::materialise::{self, FileAction};
use cloud3_engine::scan::{DiskEntry, DocOp, Known, RemoteEntry, Scanner};
use cloud3_engine::session::PeerSync;
use cloud3_engine::time::WallTime;
use cloud3_engine::tree::{Content, ContentBody, DiskNames, FolderDoc, NodeKind};
use cloud3_engine::wire::Verdict;
use cloud3_engine::wire::limits::MAX_OPS_PER_CHANGE;

use crate::db::{Batch, IndexEntry, LocalDb};
use crate::error::AgentError;
use crate::hasher::{self, Hashed};
use crate::root::FolderRoot;
use crate::state::{Config, StateDir};
use crate::versions::Window;
use crate::walk::{self, Stat};

/// Files whose mtime is within this many nanoseconds of when they were indexed are re-read on the
/// next scan (git's "racy" rule: a same-size rewrite within the timestamp granularity).
const RACY_NS: i128 = 2_000_000_000;

/// Metadata key set once this device has joined the folder's document.
const JOINED: &str = "joined";

/// Metadata key: `[1]` while the mass-delete guard holds deletions back (see
/// [`cloud3_engine::guard`]), so a restart keeps holding them.
const DELETES_PAUSED: &str = "deletes_paused";

/// `meta` key: the relay's retention window as last learnt ([`Window`], postcard).
const RETENTION_WINDOW: &str = "retention_window";

/// A blob this device must upload before the document changes that reference it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BlobSource {
    /// `len` bytes at `offset` of a local file (re-verified when read).
    File {
        /// Relative path.
        path: String,
        /// Byte offset.
        offset: u64,
        /// Length.
        len: u32,
    },
    /// Bytes held in memory (manifest blobs).
    Bytes(Vec<u8>),
}

/// Where each chunk can be read locally: chunk -> (path, offset, length).
pub type LocalChunks = HashMap<ChunkId, (String, u64, u32)>;

/// The derived tree as scan and materialise take it, shared while the document is unchanged.
pub type Remote = Arc<HashMap<NodeId, RemoteEntry>>;

/// The sync state of one folder.
pub struct Syncer {
    /// The folder's root.
    pub root: PathBuf,
    /// `.cloud3/`.
    pub state: StateDir,
    /// Configuration.
    pub config: Config,
    /// This device.
    pub device: DeviceId,
    /// The folder document.
    pub doc: FolderDoc,
    /// What this device last saw at each path.
    pub index: BTreeMap<String, IndexEntry>,
    /// Sync state with the relay.
    pub relay: PeerSync,
    /// Blobs the relay may lack, referenced by local changes not yet acknowledged.
    pub pending: HashMap<ChunkId, BlobSource>,
    /// xxh3-64 of pending chunks this process's scans read (see [`hasher::Hashed::checks`]):
    /// an upload checks a chunk read back against it instead of its SHA-256. Not persisted:
    /// pending chunks from before a restart are checked by their id.
    pub pending_checks: HashMap<ChunkId, u64>,
    /// Pending blobs added or uploaded since the last commit (persisted with the next batch).
    pending_added: Vec<ChunkId>,
    pending_done: Vec<ChunkId>,
    /// Manifest blobs known locally (created here or fetched).
    pub manifests: HashMap<ChunkId, Manifest>,
    /// Tree warnings already logged.
    warned: HashSet<String>,
    /// The last derived tree and the heads it was derived at.
    remote_cache: Option<(Vec<[u8; 32]>, Remote)>,
    /// Files being written now (from the watcher): a scan keeps their last recorded version
    /// and does not read them, so a copy in progress is not published in parts.
    pub hold: HashSet<String>,
    /// Files the last scan found changing while it read them: not recorded yet; a later scan
    /// (the watcher reports their next write) records them once they are still.
    pub unsettled: HashSet<String>,
    /// The last materialise left actions undone because the disk kept changing under them:
    /// the next local scan plans again.
    pub skipped_actions: bool,
    /// Whether this device has once held everything the relay had of the folder. Until then it
    /// does not scan: a folder that already holds files (a copy made before the device joined)
    /// is scanned against the relay's document, so what it shares with it is not duplicated.
    pub joined: bool,
    /// The relay's scan verdicts on versions that are not plainly clean (flagged, held while
    /// pending, too large), by content hash; told on connect and on every change.
    pub verdicts: HashMap<ChunkId, Verdict>,
    /// Versions whose blobs the relay refuses (flagged, or held): not fetched until a verdict
    /// says they are clean.
    pub refused: HashSet<ChunkId>,
    /// Paths whose deletion the mass-delete guard holds back (from the last scan): their index
    /// entries stay, so nothing is deleted elsewhere and nothing is written back here.
    pub paused_deletes: Vec<String>,
    /// Whether the guard holds deletions back (persisted: a restart keeps holding them, and
    /// while paused every deletion waits).
    deletes_paused: bool,
    /// The relay's retention window as last learnt (persisted, so `history` offline offers
    /// only what the relay keeps); `None` until this device has connected.
    pub window: Option<Window>,
    /// The user confirmed the held deletions (`cloud3 confirm-deletes`): the next scan sends
    /// them.
    pub confirm_deletes: bool,
    /// Deletions the last scan recorded in the document.
    pub last_scan_deletes: usize,
    /// The root as it was when the folder was opened (device and inode): another directory
    /// there (a disk not mounted, a folder replaced) stops syncing.
    root_check: FolderRoot,
    /// How this folder's file system compares names (probed once when the folder is opened).
    pub disk_names: DiskNames,
    /// Entries whose names another device cannot hold, or that this device holds under a
    /// name of its own (`PATH: why`), from the last derived tree.
    pub name_notes: Vec<String>,
    /// Files the last materialise had no room for on the folder's disk (see `room`): planned
    /// again by every scan, so they land once there is room, and forgotten once the document
    /// no longer wants them.
    pub no_room: Vec<crate::status::NoRoom>,
    db: LocalDb,
}

impl Syncer {
    /// Opens the folder's state.
    pub fn open(root: &Path, config: Config, device: DeviceId) -> Result<Syncer, AgentError> {
        let state = StateDir::of(root);
        let db = LocalDb::open(&state.database_path())?;
        let index = db.load_index()?;
        let doc_bytes = db.load_doc()?;
        let actor = actor_for(device)?;
        let doc = if doc_bytes.is_empty() {
            FolderDoc::new(&actor)
        } else {
            FolderDoc::load(&doc_bytes, &actor).map_err(|e| AgentError::Database {
                path: state.database_path(),
                message: format!("cannot load the folder document: {e}"),
            })?
        };
        let relay_heads: Vec<[u8; 32]> = match db.meta("relay_heads")? {
            Some(bytes) => postcard::from_bytes(&bytes).unwrap_or_default(),
            None => Vec::new(),
        };
        let pending = db.load_pending()?;
        // A device indexed before this flag existed has joined.
        let joined = db.meta(JOINED)?.is_some() || !index.is_empty();
        let deletes_paused = db.meta(DELETES_PAUSED)?.is_some_and(|v| v == [1]);
        let window = db
            .meta(RETENTION_WINDOW)?
            .and_then(|bytes| postcard::from_bytes(&bytes).ok());
        let root_check = FolderRoot::open(root, state.clone())?;
        let disk_names = probe_names(&state)?;
        if disk_names == DiskNames::CaseInsensitive {
            tracing::info!(
                "this folder's file system does not tell names differing only in case apart: \
                 such names are kept as \"(case clash N)\" copies here"
            );
        }
        clean_dir(&state.tmp_dir())?;
        let syncer = Syncer {
            root: root.to_owned(),
            state,
            config,
            device,
            doc,
            index,
            relay: PeerSync::with_their_heads(relay_heads),
            pending,
            pending_checks: HashMap::new(),
            pending_added: Vec::new(),
            pending_done: Vec::new(),
            manifests: HashMap::new(),
            warned: HashSet::new(),
            remote_cache: None,
            hold: HashSet::new(),
            unsettled: HashSet::new(),
            skipped_actions: false,
            no_room: Vec::new(),
            joined,
            verdicts: HashMap::new(),
            refused: HashSet::new(),
            deletes_paused,
            window,
            paused_deletes: Vec::new(),
            confirm_deletes: false,
            last_scan_deletes: 0,
            root_check,
            disk_names,
            name_notes: Vec::new(),
            db,
        };
        // Before any download: a partial file being written is never pruned.
        syncer.prune(syncer.state.partial_dir(), syncer.config.partial_limit())?;
        syncer.prune_trash()?;
        Ok(syncer)
    }

    /// Prunes `.cloud3/trash/` to its limits (see [`crate::keep`]).
    pub fn prune_trash(&self) -> Result<(), AgentError> {
        self.prune(self.state.trash_dir(), self.config.trash_limit())
    }

    fn prune(&self, dir: PathBuf, limit: crate::keep::Limit) -> Result<(), AgentError> {
        let now = SystemTime::now();
        {
            let pruned = crate::keep::prune(&dir, limit, now)?;
            if pruned.entries > 0 {
                tracing::info!(
                    dir = %dir.display(),
                    entries = pruned.entries,
                    bytes = pruned.bytes,
                    "pruned to the configured limits"
                );
            }
        }
        Ok(())
    }

    /// Refuses to go on with a folder that is no longer the one this device synced: its root
    /// gone, another directory in its place (an unmounted disk's empty mount point), or its
    /// marker `.cloud3/` (config and key) missing. Scanning such a folder would delete
    /// everything elsewhere; materialising into it would fill the wrong disk.
    pub fn check_root(&self) -> Result<(), AgentError> {
        self.root_check.check()
    }

    /// The folder's root as opened, to tell after an error whether the folder went away.
    pub fn root_check(&self) -> &FolderRoot {
        &self.root_check
    }

    /// Whether the mass-delete guard holds deletions back.
    pub fn deletes_paused(&self) -> bool {
        self.deletes_paused
    }

    /// Cancels the held deletions by bringing the entries back: a fresh scan finds what is
    /// held now, then their index entries go, so the next plan writes them again like any
    /// entry of the document this device lacks (from local chunks or the relay). Returns how
    /// many entries come back.
    pub fn undo_deletes(&mut self) -> Result<usize, AgentError> {
        self.scan(&HashSet::new())?;
        let held = std::mem::take(&mut self.paused_deletes);
        let batch = Batch {
            remove: held.clone(),
            meta: vec![(DELETES_PAUSED, vec![0])],
            ..Batch::default()
        };
        self.deletes_paused = false;
        self.commit_batch(batch, false)?;
        Ok(held.len())
    }

    /// Records the retention window the relay announced (stored only when it changed).
    pub fn learn_window(&mut self, window: Window) -> Result<(), AgentError> {
        if self.window.is_some_and(|known| !known.differs(&window)) {
            return Ok(());
        }
        self.window = Some(window);
        let bytes = postcard::to_allocvec(&window).map_err(|e| AgentError::Database {
            path: self.state.database_path(),
            message: format!("cannot encode the retention window: {e}"),
        })?;
        let batch = Batch {
            meta: vec![(RETENTION_WINDOW, bytes)],
            ..Batch::default()
        };
        self.commit_batch(batch, false)
    }

    /// This device's short id.
    pub fn short(&self) -> ShortDeviceId {
        self.device.short()
    }

    /// The document's tree as scan and materialise see it, derived once per document version
    /// (a sync scans and plans several times over an unchanged document). Nodes the tree skips
    /// (invalid names from a hostile or broken peer) are logged once each.
    pub fn remote(&mut self) -> Remote {
        // Reading the heads would commit pending operations: only a committed document is
        // looked up or cached.
        let heads = (!self.doc.has_uncommitted()).then(|| self.doc.heads());
        if let (Some(heads), Some((cached, tree))) = (&heads, &self.remote_cache)
            && heads == cached
        {
            return tree.clone();
        }
        // A stale tree is not kept alive while the new one is derived.
        self.remote_cache = None;
        let tree = self.doc.derive_for(self.disk_names);
        for warning in tree.warnings() {
            if self.warned.insert(warning.clone()) {
                tracing::warn!("{warning}");
            }
        }
        self.name_notes = tree
            .name_notes()
            .iter()
            .map(|note| format!("{}: {}", note.path, note.problem))
            .collect();
        let remote = Arc::new(tree.into_remote_entries());
        self.remote_cache = heads.map(|heads| (heads, remote.clone()));
        remote
    }

    /// The index as scan and materialise see it.
    pub fn known(&self) -> BTreeMap<String, Known> {
        self.index
            .iter()
            .map(|(path, entry)| (path.clone(), known_of(entry)))
            .collect()
    }

    /// Scans the folder: every path is stat'ed; files are read only when they changed (or when
    /// listed in `reread`, e.g. because the watcher reported them). Records changes in the
    /// document and the index; returns whether anything changed.
    pub fn scan(&mut self, reread: &HashSet<String>) -> Result<bool, AgentError> {
        if !self.joined {
            tracing::debug!("not scanning before the folder's document arrives");
            return Ok(false);
        }
        self.check_root()?;
        // Derived first: deriving a large document needs several times the memory of its
        // result, which is better spent before the walk and the scan's own maps exist.
        let remote = self.remote();
        let found = walk::walk(&self.root)?;
        let now_ns = now_ns();
        let mut disk = BTreeMap::new();
        // Files read by this scan: their manifests and chunk checksums.
        let mut read: HashMap<String, Hashed> = HashMap::new();
        // Files whose bytes must be read, hashed on every core at once.
        let to_hash: Vec<&str> = found
            .iter()
            .filter(|(path, stat)| {
                stat.kind == NodeKind::File
                    && !self.hold.contains(*path)
                    && !self
                        .index
                        .get(*path)
                        .is_some_and(|entry| !reread.contains(*path) && clean(entry, stat))
            })
            .map(|(path, _)| path.as_str())
            .collect();
        let mut hashed = hasher::hash_files(&self.root, &to_hash);
        // Files this scan leaves as they were last recorded (being written, or changing under
        // the read): their index entries stay too, so the next scan looks at them again.
        let mut deferred: HashSet<String> = HashSet::new();
        self.unsettled.clear();
        for (path, stat) in &found {
            let content = match stat.kind {
                NodeKind::Dir => None,
                NodeKind::Symlink => {
                    let target = std::fs::read_link(self.root.join(path))
                        .map_err(|e| AgentError::io("read link", &self.root.join(path), e))?;
                    let Some(target) = target.to_str() else {
                        tracing::warn!(path, "skipping a symlink whose target is not UTF-8");
                        continue;
                    };
                    Some(self.new_content(stat, ContentBody::Symlink(target.to_owned())))
                }
                NodeKind::File if self.hold.contains(path) => {
                    tracing::debug!(path, "being written: keeping its last recorded version");
                    deferred.insert(path.clone());
                    let Some(content) = self.last_recorded(path, &remote) else {
                        continue;
                    };
                    Some(content)
                }
                NodeKind::File => {
                    let reuse = self
                        .index
                        .get(path)
                        .filter(|entry| !reread.contains(path) && clean(entry, stat));
                    match reuse {
                        Some(entry) => Some(self.content_of_entry(entry, stat, &remote)),
                        None => match hashed.remove(path) {
                            Some(Ok(file)) => {
                                let body = self.body_for(&file.manifest);
                                let content = self.new_content(&file.stat, body);
                                read.insert(path.clone(), file);
                                Some(content)
                            }
                            Some(Err(hasher::ReadError::Changing)) => {
                                tracing::debug!(path, "changed while read: not recorded yet");
                                deferred.insert(path.clone());
                                self.unsettled.insert(path.clone());
                                let Some(content) = self.last_recorded(path, &remote) else {
                                    continue;
                                };
                                Some(content)
                            }
                            // Vanished or unreadable mid-scan: the next scan sees it.
                            Some(Err(error)) => {
                                tracing::warn!(path, %error, "cannot read file, skipping");
                                continue;
                            }
                            None => continue,
                        },
                    }
                }
            };
            disk.insert(
                path.clone(),
                DiskEntry {
                    kind: stat.kind,
                    mode: stat.mode,
                    inode: stat.inode,
                    content,
                },
            );
        }
        let known = self.known();
        let device_name = self.config.device_name.clone();
        let scanner = Scanner {
            device_name: &device_name,
            now: wall_now(),
        };
        let mut result = scanner.scan(&disk, &known, &remote, random_node_id);
        let was_paused = self.deletes_paused();
        let held: HashSet<NodeId> = self
            .config
            .delete_guard()
            .apply(&mut result, known.len(), was_paused, self.confirm_deletes)
            .into_iter()
            .collect();
        if self.confirm_deletes {
            tracing::info!("sending the deletions the user confirmed");
        }
        self.confirm_deletes = false;
        self.last_scan_deletes = result
            .ops
            .iter()
            .filter(|op| matches!(op, DocOp::Delete { .. }))
            .count();
        let held_paths: HashSet<&str> = known
            .iter()
            .filter(|(_, k)| held.contains(&k.node))
            .map(|(path, _)| path.as_str())
            .collect();
        if !held.is_empty() && !was_paused {
            tracing::warn!(
                deletions = held.len(),
                "holding back a mass deletion: `cloud3 confirm-deletes` sends it, \
                 `cloud3 confirm-deletes --undo` or putting the files back cancels it"
            );
        }
        self.paused_deletes = held_paths.iter().map(|p| (*p).to_owned()).collect();
        self.paused_deletes.sort();
        self.deletes_paused = !held.is_empty();
        if !result.ops.is_empty() {
            tracing::debug!(ops = ?crate::logging::Head(&result.ops), "scan found changes");
        }
        let mut found = found;
        for (from, to) in &result.conflict_copies {
            let (from_abs, to_abs) = (self.root.join(from), self.root.join(to));
            std::fs::rename(&from_abs, &to_abs)
                .map_err(|e| AgentError::io("rename", &from_abs, e))?;
            if let Some(stat) = found.remove(from) {
                found.insert(to.clone(), stat);
            }
            if let Some(file) = read.remove(from) {
                read.insert(to.clone(), file);
            }
            if let Some(entry) = disk.remove(from) {
                disk.insert(to.clone(), entry);
            }
        }
        self.apply_ops(&result.ops)?;
        // Queue uploads for content this scan recorded (not for files merely re-read).
        let recorded: HashSet<ChunkId> = result
            .ops
            .iter()
            .filter_map(|op| match op {
                DocOp::Create {
                    content: Some(content),
                    ..
                }
                | DocOp::SetContent { content, .. } => Some(content.hash()),
                _ => None,
            })
            .collect();
        for (path, file) in &read {
            if recorded.contains(&file.manifest.content_hash()) {
                self.queue_upload(path, file);
            }
        }
        // The index now reflects the disk.
        let mut batch = Batch::default();
        for (path, node) in &result.nodes {
            if deferred.contains(path) {
                continue;
            }
            // A file read by this scan is indexed with the facts of that read.
            let stat = read
                .get(path)
                .map(|file| &file.stat)
                .or_else(|| found.get(path));
            let (Some(stat), Some(entry)) = (stat, disk.get(path)) else {
                continue;
            };
            let chunks = match read.get(path) {
                Some(file) => chunk_list(&file.manifest),
                None => self
                    .index
                    .get(path)
                    .map(|e| e.chunks.clone())
                    .unwrap_or_default(),
            };
            let index_entry = IndexEntry {
                node: *node,
                kind: kind_byte(stat.kind),
                size: stat.size,
                mtime_ns: stat.mtime_ns,
                inode: stat.inode,
                ctime_ns: stat.ctime_ns,
                mode: stat.mode,
                content: entry.content.as_ref().map(Content::hash),
                chunks,
                indexed_ns: now_ns,
            };
            if !self
                .index
                .get(path)
                .is_some_and(|old| settled(old, &index_entry))
            {
                batch.put.push((path.clone(), index_entry));
            }
        }
        for path in self.index.keys() {
            // A held deletion keeps its entry: the document still has the node, and the index
            // says the disk does too, so materialising neither deletes nor rewrites it.
            if !result.nodes.contains_key(path)
                && !found.contains_key(path)
                && !held_paths.contains(path.as_str())
            {
                batch.remove.push(path.clone());
            }
        }
        if was_paused != self.deletes_paused() {
            batch
                .meta
                .push((DELETES_PAUSED, vec![u8::from(self.deletes_paused())]));
        }
        let changed = !result.ops.is_empty();
        // Committing saves the document (the whole of it when the log is folded): the walk, the
        // derived tree and the scan's own maps, each as large as the folder, go first.
        drop((found, disk, read, hashed, known, remote, result));
        self.commit_batch(batch, changed)?;
        Ok(changed)
    }

    fn queue_upload(&mut self, path: &str, file: &Hashed) {
        let Hashed {
            manifest, checks, ..
        } = file;
        let mut offset = 0u64;
        for (entry, &check) in manifest.entries.iter().zip(checks) {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.pending.entry(entry.id) {
                slot.insert(BlobSource::File {
                    path: path.to_owned(),
                    offset,
                    len: entry.len,
                });
                self.pending_added.push(entry.id);
                self.pending_checks.insert(entry.id, check);
            }
            offset += u64::from(entry.len);
        }
        if !manifest.is_inline() {
            let id = manifest.content_hash();
            if let std::collections::hash_map::Entry::Vacant(slot) = self.pending.entry(id) {
                slot.insert(BlobSource::Bytes(manifest.encode()));
                self.pending_added.push(id);
            }
            self.manifests.insert(id, manifest.clone());
        }
    }

    /// Plans what the document wants on disk.
    /// Versions the relay refuses to serve (flagged by its scan, or held until scanned clean)
    /// are not planned: the file stays as it is here until a verdict clears them.
    pub fn plan(&mut self) -> Vec<FileAction> {
        let remote = self.remote();
        let mut actions = materialise::plan(&remote, &self.known());
        if !self.refused.is_empty() {
            actions.retain(|action| match action {
                FileAction::Write { content, .. } => !self.refused.contains(&content.hash()),
                _ => true,
            });
        }
        actions
    }

    /// Commits the document (if `doc_changed`) and the index batch in one transaction.
    pub fn commit_batch(&mut self, mut batch: Batch, doc_changed: bool) -> Result<(), AgentError> {
        if doc_changed {
            self.doc.commit(wall_now());
        }
        if self.db.doc_log_is_long() {
            tracing::debug!("folding the document log into one snapshot");
            // Saving a whole large document needs several times its size for a moment (80 MiB
            // at 100k files): the cached tree goes first and is derived again when next needed
            // (folds are rare).
            self.remote_cache = None;
            // The snapshot holds everything an increment would.
            batch.doc_snapshot = self.doc.save();
        } else {
            batch.doc_append = self.doc.save_incremental();
        }
        for id in self.pending_added.drain(..) {
            if let Some(source) = self.pending.get(&id) {
                batch.pending_put.push((id, source.clone()));
            }
        }
        batch.pending_done.append(&mut self.pending_done);
        batch.meta.push((
            "relay_heads",
            postcard::to_allocvec(&self.relay.confirmed_heads()).unwrap_or_default(),
        ));
        self.db.commit(&batch)?;
        for path in &batch.remove {
            self.index.remove(path);
        }
        // Moved, not copied: at 100k files the index is the agent's largest structure.
        self.index.extend(batch.put);
        Ok(())
    }

    fn apply_ops(&mut self, ops: &[DocOp]) -> Result<(), AgentError> {
        let author = self.short();
        let now = wall_now();
        if !ops.is_empty() {
            // The cached tree is of the document before these operations.
            self.remote_cache = None;
            self.doc
                .set_device_name(author, &self.config.device_name)
                .map_err(doc_error)?;
        }
        for (done, op) in ops.iter().enumerate() {
            // Bounded changes: each must fit one `DocChanges` message (see `MAX_OPS_PER_CHANGE`).
            if done > 0 && done % MAX_OPS_PER_CHANGE == 0 {
                self.doc.commit(now);
            }
            let result = op.apply(&mut self.doc, author, now);
            result.map_err(doc_error)?;
        }
        Ok(())
    }

    fn new_content(&self, stat: &Stat, body: ContentBody) -> Content {
        Content {
            size: stat.size,
            mtime: WallTime((stat.mtime_ns / 1_000_000) as i64),
            written_at: wall_now(),
            author: self.short(),
            body,
        }
    }

    fn body_for(&self, manifest: &Manifest) -> ContentBody {
        if manifest.is_inline() {
            ContentBody::Inline(manifest.clone())
        } else {
            ContentBody::Blob(manifest.content_hash())
        }
    }

    /// The content of an unchanged indexed file: the document's version when it matches, else
    /// rebuilt from the index's chunk list.
    ///
    /// The derived tree answers for nodes in it (a lookup per file in Automerge itself made an
    /// unchanged 100k-file rescan spend most of its time there).
    fn content_of_entry(&self, entry: &IndexEntry, stat: &Stat, remote: &Remote) -> Content {
        let current = match remote.get(&entry.node) {
            Some(node) => node.content.clone(),
            None => self.doc.content_of(entry.node),
        };
        if let Some(current) = current
            && Some(current.hash()) == entry.content
        {
            return current;
        }
        let manifest = Manifest {
            entries: entry
                .chunks
                .iter()
                .map(|(id, len)| ManifestEntry { id: *id, len: *len })
                .collect(),
        };
        self.new_content(stat, self.body_for(&manifest))
    }

    /// The content the index last recorded at `path` (with the facts of that recording), for a
    /// file a scan leaves as it was: being written, or changing under the read.
    fn last_recorded(&self, path: &str, remote: &Remote) -> Option<Content> {
        let entry = self.index.get(path)?;
        Some(self.content_of_entry(entry, &stat_of(entry), remote))
    }

    /// After a rescan: pending blobs whose file changed or moved are pointed at wherever the
    /// index now has their bytes (a file renamed between scan and upload still uploads); those
    /// no local file holds any more are dropped (the rescan recorded what replaced them).
    pub fn repoint_pending(&mut self) {
        let local = self.local_chunks();
        let mut gone = Vec::new();
        for (id, source) in &mut self.pending {
            if let BlobSource::File { path, offset, len } = source {
                match local.get(id) {
                    Some((at, at_offset, at_len)) => {
                        if (at, at_offset, at_len) != (&*path, &*offset, &*len) {
                            (*path, *offset, *len) = (at.clone(), *at_offset, *at_len);
                            self.pending_added.push(*id);
                        }
                    }
                    None => gone.push(*id),
                }
            }
        }
        self.uploaded(&gone);
    }

    /// The relay committed these blobs: they are no longer pending.
    pub fn uploaded(&mut self, ids: &[ChunkId]) {
        for id in ids {
            if self.pending.remove(id).is_some() {
                self.pending_done.push(*id);
            }
            self.pending_checks.remove(id);
        }
        if self.pending.is_empty() {
            // After an initial upload the emptied tables would keep room for every blob.
            self.pending.shrink_to_fit();
            self.pending_checks = HashMap::new();
        }
    }

    /// Saves state and the relay heads (after sync progress).
    pub fn persist(&mut self) -> Result<(), AgentError> {
        self.commit_batch(Batch::default(), false)
    }

    /// Records that this device holds everything the relay had of the folder: from now on it
    /// scans.
    pub fn join(&mut self) -> Result<(), AgentError> {
        self.joined = true;
        let batch = Batch {
            meta: vec![(JOINED, vec![1])],
            ..Batch::default()
        };
        self.commit_batch(batch, false)
    }

    /// A fresh copy of what is stored, for when the in-memory document broke on a change
    /// Automerge could not apply ([`FolderDoc::is_broken`]).
    pub fn reload(self) -> Result<Syncer, AgentError> {
        let (root, config, device) = (self.root.clone(), self.config.clone(), self.device);
        // The database is closed before it is opened again.
        drop(self);
        Syncer::open(&root, config, device)
    }

    /// The manifest of a content, if known locally without the network.
    pub fn manifest_of(&self, content: &Content) -> Option<Manifest> {
        match &content.body {
            ContentBody::Inline(manifest) => Some(manifest.clone()),
            ContentBody::Blob(id) => self.manifests.get(id).cloned(),
            ContentBody::Symlink(_) => Some(Manifest::default()),
        }
    }

    /// Where each chunk can be read locally: chunk -> (path, offset, len).
    pub fn local_chunks(&self) -> LocalChunks {
        let mut chunks = HashMap::new();
        for (path, entry) in &self.index {
            add_local_chunks(&mut chunks, path, &entry.chunks);
        }
        chunks
    }
}

/// Records where the chunks of the file at `path` lie (the first place found for a chunk stays).
pub fn add_local_chunks(local: &mut LocalChunks, path: &str, chunks: &[(ChunkId, u32)]) {
    let mut offset = 0u64;
    for (id, len) in chunks {
        local.entry(*id).or_insert((path.to_owned(), offset, *len));
        offset += u64::from(*len);
    }
}

/// Whether an indexed file is known unchanged without reading it: same size, mtime, inode and
/// ctime, and its mtime safely older than the index entry (else it may have changed within the
/// timestamp granularity). The ctime catches a file replaced by a copy that kept size and mtime
/// (`cp -a`, unpacked archives) and got the old file's inode back.
fn clean(entry: &IndexEntry, stat: &Stat) -> bool {
    entry.size == stat.size
        && entry.mtime_ns == stat.mtime_ns
        && entry.inode == stat.inode
        && entry.ctime_ns == stat.ctime_ns
        && entry.content.is_some()
        && stat.mtime_ns + RACY_NS < entry.indexed_ns
}

/// The facts an index entry recorded, as a stat.
fn stat_of(entry: &IndexEntry) -> Stat {
    Stat {
        kind: kind_of_byte(entry.kind),
        size: entry.size,
        mtime_ns: entry.mtime_ns,
        inode: entry.inode,
        ctime_ns: entry.ctime_ns,
        mode: entry.mode,
    }
}

/// Whether `old` can stay in the index for a scan that found `new`: the same facts, and old
/// enough that the racy rule no longer applies (a racy entry is rewritten with the newer
/// indexing time, so a later scan can trust it without reading the file). Without this, every
/// scan rewrote every entry for its new indexing time alone.
fn settled(old: &IndexEntry, new: &IndexEntry) -> bool {
    let IndexEntry {
        node,
        kind,
        size,
        mtime_ns,
        inode,
        ctime_ns,
        mode,
        content,
        chunks,
        indexed_ns: _,
    } = new;
    old.mtime_ns + RACY_NS < old.indexed_ns
        && (
            old.node,
            old.kind,
            old.size,
            old.mtime_ns,
            old.inode,
            old.ctime_ns,
            old.mode,
        ) == (*node, *kind, *size, *mtime_ns, *inode, *ctime_ns, *mode)
        && old.content == *content
        && old.chunks == *chunks
}

/// The index's view of an entry.
pub fn known_of(entry: &IndexEntry) -> Known {
    Known {
        node: entry.node,
        kind: kind_of_byte(entry.kind),
        mode: entry.mode,
        inode: entry.inode,
        content: entry.content,
    }
}

/// Kind as stored in the index.
pub fn kind_byte(kind: NodeKind) -> u8 {
    match kind {
        NodeKind::File => 0,
        NodeKind::Dir => 1,
        NodeKind::Symlink => 2,
    }
}

fn kind_of_byte(byte: u8) -> NodeKind {
    match byte {
        1 => NodeKind::Dir,
        2 => NodeKind::Symlink,
        _ => NodeKind::File,
    }
}

/// A manifest as the index stores it.
pub fn chunk_list(manifest: &Manifest) -> Vec<(ChunkId, u32)> {
    manifest.entries.iter().map(|e| (e.id, e.len)).collect()
}

fn doc_error(error: impl std::fmt::Display) -> AgentError {
    AgentError::Protocol(format!("folder document: {error}"))
}

/// The Automerge actor for this process: the device id plus random bytes, so a restarted agent
/// never reuses sequence numbers of changes it lost in a crash.
fn actor_for(device: DeviceId) -> Result<Vec<u8>, AgentError> {
    let mut actor = device.0[..16].to_vec();
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).map_err(|e| AgentError::Random(e.to_string()))?;
    actor.extend_from_slice(&suffix);
    Ok(actor)
}

/// A fresh random node id.
pub fn random_node_id() -> NodeId {
    let mut id = [0u8; 16];
    // The OS's randomness failing is unrecoverable for a process that must mint unique ids.
    getrandom::fill(&mut id).expect("the operating system provides randomness");
    NodeId(id)
}

/// Wall time now.
pub fn wall_now() -> WallTime {
    WallTime((now_ns() / 1_000_000) as i64)
}

/// Nanoseconds since the epoch.
pub fn now_ns() -> i128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// Name of the probe file in `.cloud3/` whose other-case name tells whether the folder's file
/// system compares names without case.
const CASE_PROBE: &str = "case-probe-A";

/// Whether the file system holding `state` tells names differing only in case apart: a probe
/// file is made in `.cloud3/` (created inside the folder, so it shares the folder's settings,
/// as an ext4 directory with casefold passes them on) and its lower-case name looked up.
fn probe_names(state: &StateDir) -> Result<DiskNames, AgentError> {
    let probe = state.root().join(CASE_PROBE);
    std::fs::write(&probe, b"").map_err(|e| AgentError::io("write", &probe, e))?;
    let other = state.root().join(CASE_PROBE.to_lowercase());
    let insensitive = std::fs::symlink_metadata(&other).is_ok();
    std::fs::remove_file(&probe).map_err(|e| AgentError::io("remove", &probe, e))?;
    Ok(if insensitive {
        DiskNames::CaseInsensitive
    } else {
        DiskNames::Exact
    })
}

/// A directory's device and inode.
/// Removes leftovers of an interrupted run (temp files, staging) and recreates the directory.
fn clean_dir(dir: &Path) -> Result<(), AgentError> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| AgentError::io("clean", dir, e))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| AgentError::io("create", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(mtime_ns: i128, indexed_ns: i128) -> IndexEntry {
        IndexEntry {
            node: NodeId([1; 16]),
            kind: 0,
            size: 3,
            mtime_ns,
            inode: 2,
            ctime_ns: mtime_ns,
            mode: 0o644,
            content: Some(ChunkId([1; 32])),
            chunks: vec![(ChunkId([1; 32]), 3)],
            indexed_ns,
        }
    }

    #[test]
    fn the_case_probe_tells_a_case_sensitive_folder_and_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::of(dir.path());
        state.create().unwrap();
        let before = std::fs::read_dir(state.root()).unwrap().count();
        assert_eq!(probe_names(&state).unwrap(), DiskNames::Exact);
        let after = std::fs::read_dir(state.root()).unwrap().count();
        assert_eq!(before, after, "the probe file is removed");
    }

    #[test]
    fn an_unchanged_entry_is_rewritten_only_while_racy() {
        let now = 100 * RACY_NS;
        let settled_entry = entry(10, 20 * RACY_NS);
        assert!(settled(&settled_entry, &entry(10, now)), "nothing to write");
        let racy = entry(10, 10 + RACY_NS / 2);
        assert!(
            !settled(&racy, &entry(10, now)),
            "racy: write the later time"
        );
        let mut grown = entry(10, now);
        grown.size = 4;
        assert!(!settled(&settled_entry, &grown), "changed: write it");
    }
}
