//! Performing a materialise plan on disk, safely.
//!
//! - Files are assembled in `.cloud3/tmp/`, fsynced and renamed into place; a replaced file is
//!   hard-linked into `.cloud3/trash/` first, so its bytes survive and the swap stays atomic.
//! - Before replacing, moving or removing anything, the disk is checked against the index entry
//!   the plan expected: a file changed since it was last scanned is never touched (the next scan
//!   records the change, and the document's conflict rules keep both versions).
//! - No path is written through a symlink: every parent component must be a real directory.
//! - Chunks come from local files when present (verified), else from the relay.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use cloud3_engine::chunk::Manifest;
use cloud3_engine::ids::{ChunkId, NodeId};
use cloud3_engine::materialise::FileAction;
use cloud3_engine::scan::Known;
use cloud3_engine::tree::{Content, ContentBody, NodeKind};

use crate::activity::Transfer;
use crate::db::{Batch, IndexEntry};
use crate::error::AgentError;
use crate::hasher;
use crate::nofollow::{self, Renamed};
use crate::partial;
use crate::room::{self, Room};
use crate::syncer::{LocalChunks, Syncer, add_local_chunks, chunk_list, kind_byte, now_ns};
use crate::transfer::Link;
use crate::walk::{self, Stat};

/// Files at least this large are assembled where a cut-short download can resume them.
const RESUME_MIN_BYTES: u64 = 1 << 20;

/// Files assembled per batch (bounds open files and memory).
const WRITE_BATCH_FILES: usize = 256;

/// Directories made per index commit.
const DIR_BATCH: usize = 1024;

/// What applying a plan did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Actions performed.
    pub done: usize,
    /// Actions skipped because the disk changed since the last scan (a rescan is due).
    pub skipped: usize,
}

/// Performs `actions` in order; writes fetch what they need through `link` (none: offline, so
/// writes needing remote chunks are skipped until the next connection).
pub async fn apply(
    syncer: &mut Syncer,
    mut link: Option<&mut Link>,
    actions: Vec<FileAction>,
) -> Result<Applied, AgentError> {
    // Nothing is written into a folder that is no longer this device's (an unmounted disk's
    // mount point would fill the wrong disk).
    syncer.check_root()?;
    let mut applied = Applied::default();
    let mut writes = Vec::new();
    // Filled again by the writes below (see `room`).
    syncer.no_room.clear();
    // Directories made are indexed together, one commit per run of up to `DIR_BATCH` rather
    // than per directory (a folder of 10,000 directories paid 10,000 commits); a directory made
    // but not indexed when the agent stops is adopted by the next scan as the document's node at
    // its path. Any other action is committed on its own, after the directories before it.
    let mut batch = Batch::default();
    for action in actions {
        match action {
            FileAction::Write {
                path,
                node,
                content,
                mode,
                replaces,
            } => writes.push(PendingWrite {
                path,
                node,
                content,
                mode,
                replaces,
            }),
            other => {
                let dir = matches!(other, FileAction::MakeDir { .. });
                if !dir && !batch.put.is_empty() {
                    syncer.commit_batch(std::mem::take(&mut batch), false)?;
                }
                if skip_unsafe(perform(syncer, &other, &mut batch))?.unwrap_or(false) {
                    applied.done += 1;
                } else {
                    applied.skipped += 1;
                }
                if !dir || batch.put.len() >= DIR_BATCH {
                    syncer.commit_batch(std::mem::take(&mut batch), false)?;
                }
            }
        }
    }
    if !batch.put.is_empty() {
        syncer.commit_batch(batch, false)?;
    }
    // Where chunks can be copied from locally: built once, then extended with each group's
    // installed files (rebuilding it from the whole index per group was quadratic).
    let mut local = syncer.local_chunks();
    let groups: Vec<&[PendingWrite]> = writes.chunks(WRITE_BATCH_FILES).collect();
    let activity = link.as_deref().map(|link| link.activity.clone());
    let _reported = activity
        .as_ref()
        .filter(|_| !writes.is_empty())
        .map(|a| a.download(writes.len(), writes.iter().map(|w| w.content.size).sum()));
    for (n, group) in groups.iter().enumerate() {
        let next = groups.get(n + 1).copied();
        if let Some(activity) = &activity {
            activity.downloading(group.iter().map(PendingWrite::transfer).collect());
        }
        let (done, skipped) =
            write_files(syncer, link.as_deref_mut(), group, next, &mut local).await?;
        applied.done += done;
        applied.skipped += skipped;
        if let Some(activity) = &activity {
            activity.group_done(group.len(), group.iter().map(|w| w.content.size).sum());
        }
    }
    Ok(applied)
}

struct PendingWrite {
    path: String,
    node: NodeId,
    content: Content,
    mode: u32,
    replaces: Option<Known>,
}

impl PendingWrite {
    fn transfer(&self) -> Transfer {
        Transfer {
            path: self.path.clone(),
            size: self.content.size,
        }
    }
}

/// Performs one non-write action; false when skipped because the disk changed.
fn perform(
    syncer: &mut Syncer,
    action: &FileAction,
    batch: &mut Batch,
) -> Result<bool, AgentError> {
    let root = syncer.root.clone();
    match action {
        FileAction::Move { from, to, expect } => {
            let to_abs = safe_path(&root, to)?;
            safe_path(&root, from)?;
            if !matches_known(syncer, from, expect) || to_abs.symlink_metadata().is_ok() {
                return Ok(false);
            }
            let mut renamed = Renamed::default();
            nofollow::move_within(&root, from, to, &mut renamed)?;
            renamed.make_durable()?;
            let prefix = format!("{from}/");
            for (path, entry) in &syncer.index {
                if path == from || path.starts_with(&prefix) {
                    let mut entry = entry.clone();
                    if path == from {
                        // A rename changes the moved entry's ctime.
                        if let Some(stat) = walk::stat(&root, to) {
                            entry.ctime_ns = stat.ctime_ns;
                        }
                    }
                    batch.remove.push(path.clone());
                    batch
                        .put
                        .push((format!("{to}{}", &path[from.len()..]), entry));
                }
            }
        }
        FileAction::Remove { path, expect } => {
            if !matches_known(syncer, path, expect) {
                return Ok(false);
            }
            safe_path(&root, path)?;
            nofollow::move_out(&root, path, &trash_path(syncer, path))?;
            batch.remove.push(path.clone());
        }
        FileAction::RemoveDir { path, .. } => {
            let abs = safe_path(&root, path)?;
            match fs::remove_dir(&abs) {
                Ok(()) => batch.remove.push(path.clone()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    batch.remove.push(path.clone())
                }
                // Not empty: it holds files this device has not synced yet; keep it.
                Err(_) => return Ok(false),
            }
        }
        FileAction::MakeDir { path, node, mode } => {
            let abs = safe_path(&root, path)?;
            match fs::create_dir(&abs) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && abs.is_dir() => {}
                Err(_) => return Ok(false),
            }
            let _ = fs::set_permissions(&abs, fs::Permissions::from_mode(*mode));
            let Some(stat) = walk::stat(&root, path) else {
                return Ok(false);
            };
            batch
                .put
                .push((path.clone(), entry_for(*node, &stat, None, Vec::new())));
        }
        FileAction::SetMode { path, mode, .. } => {
            let abs = safe_path(&root, path)?;
            fs::set_permissions(&abs, fs::Permissions::from_mode(*mode))
                .map_err(|e| AgentError::io("chmod", &abs, e))?;
            if let Some(mut entry) = syncer.index.get(path).cloned() {
                entry.mode = *mode;
                if let Some(stat) = walk::stat(&root, path) {
                    entry.ctime_ns = stat.ctime_ns;
                }
                batch.put.push((path.clone(), entry));
            }
        }
        // Writes are batched by `apply` and never reach here.
        FileAction::Write { .. } => return Ok(false),
    }
    Ok(true)
}

/// Assembles and installs a group of files, asking the relay for the `next` group's chunks
/// while this one is installed. Returns (done, skipped).
async fn write_files(
    syncer: &mut Syncer,
    mut link: Option<&mut Link>,
    group: &[PendingWrite],
    next: Option<&[PendingWrite]>,
    local: &mut LocalChunks,
) -> Result<(usize, usize), AgentError> {
    let tmp_dir = syncer.state.tmp_dir();
    let reserve = syncer
        .config
        .min_free_mib
        .map(|mib| mib.saturating_mul(1 << 20));
    let mut room = Room::measure(&tmp_dir, reserve);
    // Files given up for want of room: before they start (`room`), or when a write finds the
    // disk full.
    let mut given_up: HashSet<usize> = HashSet::new();
    let mut full: HashSet<usize> = HashSet::new();
    // Resolve manifests (fetching blob manifests when needed).
    let mut manifests = Vec::with_capacity(group.len());
    for write in group {
        let manifest = match &write.content.body {
            ContentBody::Blob(id) => match syncer.manifests.get(id) {
                Some(m) => Some(m.clone()),
                None => match link.as_deref_mut() {
                    Some(link) => link.manifest(syncer, *id).await.ok(),
                    None => None,
                },
            },
            _ => syncer.manifest_of(&write.content),
        };
        manifests.push(manifest);
    }
    // Temp files and where each chunk goes.
    let mut temps: Vec<Option<(PathBuf, File)>> = Vec::with_capacity(group.len());
    let mut wanted: HashMap<ChunkId, Vec<(usize, u64)>> = HashMap::new();
    // Chunks in the order of the files they complete, so large files complete (and are flushed,
    // see `Flushing`) one after another while the rest arrive.
    let mut order: Vec<ChunkId> = Vec::new();
    let mut flushing = Flushing::default();
    for (idx, (write, manifest)) in group.iter().zip(&manifests).enumerate() {
        let Some(manifest) = manifest else {
            temps.push(None);
            continue;
        };
        if matches!(write.content.body, ContentBody::Symlink(_)) {
            temps.push(None);
            continue;
        }
        let resumable = manifest.size() >= RESUME_MIN_BYTES;
        let temp_path = if resumable {
            partial::path(&syncer.state, write.node, &write.content)
        } else {
            tmp_dir.join(format!("{}-{idx}", write.node.to_key()))
        };
        // Bytes a partial download already holds need no more room.
        let allocated = if resumable {
            fs::metadata(&temp_path).map_or(0, |m| (m.blocks() * 512).min(manifest.size()))
        } else {
            0
        };
        let needed = manifest.size() - allocated;
        if room.take(needed).is_err() {
            // Not started; a partial download of it is given up too, its bytes back to the
            // disk for the files that fit.
            let _ = fs::remove_file(&temp_path);
            let missing = room.missing(&write.path, manifest.size(), needed);
            tracing::warn!(
                path = write.path,
                size = missing.size,
                short_by = missing.short_by,
                "no room on the disk for this file: not downloading it until there is"
            );
            syncer.no_room.push(missing);
            given_up.insert(idx);
            temps.push(None);
            continue;
        }
        let (file, held) = if resumable {
            partial::open(&temp_path, manifest)?
        } else {
            (partial::create(&temp_path, manifest.size())?, Vec::new())
        };
        let mut offset = 0u64;
        let mut held_places = 0;
        for (chunk_idx, entry) in manifest.entries.iter().enumerate() {
            if held.get(chunk_idx) == Some(&true) {
                // Verified in the partial download a run cut short.
                held_places += 1;
            } else {
                let places = wanted.entry(entry.id).or_default();
                if places.is_empty() {
                    order.push(entry.id);
                }
                places.push((idx, offset));
            }
            offset += u64::from(entry.len);
        }
        if held_places > 0 {
            tracing::info!(
                path = write.path,
                chunks = held_places,
                of = manifest.entries.len(),
                "resuming a download"
            );
        }
        flushing.expect(idx, manifest.entries.len() - held_places, manifest.size());
        temps.push(Some((temp_path, file)));
    }
    // Local chunks first, verified; the rest from the relay.
    let mut remote_ids = Vec::new();
    for id in order {
        let places = &wanted[&id];
        match local.get(&id).and_then(|(path, offset, len)| {
            hasher::read_chunk(&syncer.root, path, *offset, *len, hasher::Expect::Id(id))
        }) {
            Some(raw) => {
                write_places(&temps, places, &raw, &mut full)?;
                flushing.written(&temps, places)?;
            }
            None => remote_ids.push(id),
        }
    }
    let mut failed: HashSet<usize> = HashSet::new();
    // Answers to what the group before asked ahead are taken even when nothing is missing now.
    let asked_ahead = link.as_deref().is_some_and(Link::has_asked_ahead);
    if !remote_ids.is_empty() || asked_ahead {
        let unavailable = match link.as_deref_mut() {
            Some(link) => {
                link.fetch(&remote_ids, |id, raw| {
                    if let Some(places) = wanted.get(&id) {
                        write_places(&temps, places, &raw, &mut full)?;
                        flushing.written(&temps, places)?;
                    }
                    Ok(())
                })
                .await?
            }
            None => remote_ids.clone(),
        };
        for id in unavailable {
            if let Some(places) = wanted.get(&id) {
                failed.extend(places.iter().map(|(idx, _)| *idx));
            }
        }
    }
    if let (Some(link), Some(next)) = (link, next) {
        link.ask_ahead(ahead_of(syncer, next, local, &wanted))
            .await?;
    }
    // The writer's modification time, as Dropbox and Syncthing keep it (a file written seconds
    // ago is also then not mistaken for a racy one by the next scan, which would read it again).
    for (write, temp) in group.iter().zip(&temps) {
        if let (Some((temp_path, file)), Ok(ms)) = (temp, u64::try_from(write.content.mtime.0)) {
            let mtime = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms);
            file.set_times(fs::FileTimes::new().set_modified(mtime))
                .map_err(|e| AgentError::io("set the time of", temp_path, e))?;
        }
    }
    // Every temp file's bytes are on disk before any is renamed into place: one sync of the
    // file system for the group instead of an fsync per file.
    flushing.wait().await?;
    sync_data(&temps)?;
    // Install each file.
    let (mut done, mut skipped) = (0, 0);
    let mut batch = Batch::default();
    let mut renamed = Renamed::default();
    let after = (!full.is_empty()).then(|| Room::measure(&tmp_dir, reserve));
    for (idx, (write, temp)) in group.iter().zip(temps).enumerate() {
        let manifest = &manifests[idx];
        if given_up.contains(&idx) {
            continue;
        }
        if let (Some(after), Some((temp_path, _))) = (&after, &temp)
            && full.contains(&idx)
        {
            // Ran out of space while written: its partial bytes (resumable or not) are removed.
            let _ = fs::remove_file(temp_path);
            let size = write.content.size;
            syncer.no_room.push(after.missing(&write.path, size, size));
            continue;
        }
        let installed = match (&write.content.body, temp, manifest) {
            (ContentBody::Symlink(target), _, _) => {
                skip_unsafe(install_symlink(syncer, write, target, &mut renamed))?.flatten()
            }
            (_, Some((temp_path, file)), Some(manifest)) if !failed.contains(&idx) => {
                drop(file);
                let installed = skip_unsafe(install_file(
                    syncer,
                    write,
                    &temp_path,
                    manifest,
                    &mut renamed,
                ))?;
                if installed.is_none() {
                    let _ = fs::remove_file(&temp_path);
                }
                installed.flatten()
            }
            (_, Some((temp_path, _)), _) => {
                // A partial download is kept for the next try.
                if !partial::is_partial(&syncer.state, &temp_path) {
                    let _ = fs::remove_file(&temp_path);
                }
                None
            }
            _ => None,
        };
        match installed {
            Some(entry) => {
                add_local_chunks(local, &write.path, &entry.chunks);
                batch.put.push((write.path.clone(), entry));
                done += 1;
            }
            None => skipped += 1,
        }
    }
    // The renames are durable before the index records them: an index entry for a file the
    // disk lost in a crash would read as the user deleting it.
    renamed.make_durable()?;
    syncer.commit_batch(batch, false)?;
    Ok((done, skipped))
}

/// A group whose chunks to fetch come to more than this is not asked for ahead: the relay's
/// connection would be held sending it while this device installs the group before.
const ASK_AHEAD_BYTES: u64 = 8 << 20;

/// The chunks of `group` to ask the relay for ahead: those its manifests list that neither a
/// local file nor the group before (`installing`) holds. None for a group of more than
/// [`ASK_AHEAD_BYTES`], nor for one with a blob manifest not fetched yet: fetching it first
/// would take the answers asked for ahead and drop them.
fn ahead_of(
    syncer: &Syncer,
    group: &[PendingWrite],
    local: &LocalChunks,
    installing: &HashMap<ChunkId, Vec<(usize, u64)>>,
) -> Vec<ChunkId> {
    let mut ids = Vec::new();
    let mut seen = HashSet::new();
    let mut bytes = 0u64;
    for write in group {
        let manifest = match &write.content.body {
            ContentBody::Symlink(_) => continue,
            ContentBody::Blob(id) => match syncer.manifests.get(id) {
                Some(manifest) => Some(manifest.clone()),
                None => return Vec::new(),
            },
            _ => syncer.manifest_of(&write.content),
        };
        for entry in manifest.iter().flat_map(|m| &m.entries) {
            let held = local.get(&entry.id).is_some() || installing.contains_key(&entry.id);
            if !held && seen.insert(entry.id) {
                ids.push(entry.id);
                bytes += u64::from(entry.len);
            }
        }
        if bytes > ASK_AHEAD_BYTES {
            return Vec::new();
        }
    }
    ids
}

/// Files at least this large are flushed on their own as soon as they are complete.
const FLUSH_EARLY_BYTES: u64 = 8 << 20;

/// Large files of a group flushed to disk as each is complete, on the blocking pool, while the
/// rest of the group arrives: the group's one `syncfs` then finds little left to write (a
/// gigabyte of large files otherwise all waited for it at the end).
#[derive(Default)]
struct Flushing {
    /// Per large file of the group: chunk places not yet written.
    left: HashMap<usize, usize>,
    started: Vec<(PathBuf, tokio::task::JoinHandle<std::io::Result<()>>)>,
}

impl Flushing {
    /// Notes a temp file of `chunks` chunk places and `size` bytes.
    fn expect(&mut self, idx: usize, chunks: usize, size: u64) {
        if size >= FLUSH_EARLY_BYTES {
            self.left.insert(idx, chunks);
        }
    }

    /// Notes chunk places written; a large file with none left starts flushing.
    fn written(
        &mut self,
        temps: &[Option<(PathBuf, File)>],
        places: &[(usize, u64)],
    ) -> Result<(), AgentError> {
        for (idx, _) in places {
            let Some(left) = self.left.get_mut(idx) else {
                continue;
            };
            *left = left.saturating_sub(1);
            if *left > 0 {
                continue;
            }
            self.left.remove(idx);
            if let Some((path, file)) = &temps[*idx] {
                let file = file
                    .try_clone()
                    .map_err(|e| AgentError::io("flush", path, e))?;
                let job = tokio::task::spawn_blocking(move || file.sync_data());
                self.started.push((path.clone(), job));
            }
        }
        Ok(())
    }

    /// Waits for every flush started.
    async fn wait(self) -> Result<(), AgentError> {
        for (path, job) in self.started {
            match job.await {
                Ok(result) => result.map_err(|e| AgentError::io("flush", &path, e))?,
                Err(e) => return Err(AgentError::io("flush", &path, std::io::Error::other(e))),
            }
        }
        Ok(())
    }
}

/// Makes the temp files' bytes durable: one `syncfs` of their file system covers them all.
#[cfg(target_os = "linux")]
fn sync_data(temps: &[Option<(PathBuf, File)>]) -> Result<(), AgentError> {
    match temps.iter().flatten().next() {
        Some((path, file)) => {
            rustix::fs::syncfs(file).map_err(|e| AgentError::io("sync", path, e.into()))
        }
        None => Ok(()),
    }
}

/// Makes the temp files' bytes durable, one fsync each (no `syncfs` here).
#[cfg(not(target_os = "linux"))]
fn sync_data(temps: &[Option<(PathBuf, File)>]) -> Result<(), AgentError> {
    for (path, file) in temps.iter().flatten() {
        file.sync_all()
            .map_err(|e| AgentError::io("fsync", path, e))?;
    }
    Ok(())
}

/// Writes a chunk at each of its places. A file whose write finds the disk full is given up
/// (`full`): emptied at once, so its bytes go back to the disk for the rest of the group.
fn write_places(
    temps: &[Option<(PathBuf, File)>],
    places: &[(usize, u64)],
    raw: &[u8],
    full: &mut HashSet<usize>,
) -> Result<(), AgentError> {
    for (idx, offset) in places {
        if full.contains(idx) {
            continue;
        }
        if let Some((path, file)) = &temps[*idx] {
            match file.write_all_at(raw, *offset) {
                Ok(()) => {}
                Err(e) if room::is_out_of_space(&e) => {
                    tracing::warn!(path = %path.display(), "the disk is full: giving this download up");
                    let _ = file.set_len(0);
                    full.insert(*idx);
                }
                Err(e) => return Err(AgentError::io("write", path, e)),
            }
        }
    }
    Ok(())
}

/// Renames the assembled temp file into place if the target is as the plan expected.
fn install_file(
    syncer: &Syncer,
    write: &PendingWrite,
    temp_path: &Path,
    manifest: &Manifest,
    renamed: &mut Renamed,
) -> Result<Option<IndexEntry>, AgentError> {
    let target = safe_path(&syncer.root, &write.path)?;
    if !target_as_expected(syncer, write) {
        let _ = fs::remove_file(temp_path);
        return Ok(None);
    }
    fs::set_permissions(temp_path, fs::Permissions::from_mode(write.mode))
        .map_err(|e| AgentError::io("chmod", temp_path, e))?;
    if write.replaces.is_some() {
        // Keep the replaced bytes: a hard link into the trash, then an atomic rename over.
        let _ = fs::hard_link(&target, trash_path(syncer, &write.path));
    }
    nofollow::rename_into(&syncer.root, temp_path, &write.path, renamed)?;
    let Some(stat) = walk::stat(&syncer.root, &write.path) else {
        return Ok(None);
    };
    Ok(Some(entry_for(
        write.node,
        &stat,
        Some(write.content.hash()),
        chunk_list(manifest),
    )))
}

fn install_symlink(
    syncer: &Syncer,
    write: &PendingWrite,
    target_text: &str,
    renamed: &mut Renamed,
) -> Result<Option<IndexEntry>, AgentError> {
    let target = safe_path(&syncer.root, &write.path)?;
    if !target_as_expected(syncer, write) {
        return Ok(None);
    }
    let temp_path = syncer
        .state
        .tmp_dir()
        .join(format!("{}-link", write.node.to_key()));
    let _ = fs::remove_file(&temp_path);
    std::os::unix::fs::symlink(target_text, &temp_path)
        .map_err(|e| AgentError::io("symlink", &temp_path, e))?;
    if write.replaces.is_some() {
        let _ = fs::rename(&target, trash_path(syncer, &write.path));
    }
    nofollow::rename_into(&syncer.root, &temp_path, &write.path, renamed)?;
    let Some(stat) = walk::stat(&syncer.root, &write.path) else {
        return Ok(None);
    };
    Ok(Some(entry_for(
        write.node,
        &stat,
        Some(write.content.hash()),
        Vec::new(),
    )))
}

/// The target is what the plan expected: absent when nothing is replaced, else unchanged since
/// its index entry was written.
fn target_as_expected(syncer: &Syncer, write: &PendingWrite) -> bool {
    match &write.replaces {
        None => {
            let free = walk::stat(&syncer.root, &write.path).is_none();
            if !free {
                tracing::debug!(
                    path = write.path,
                    "not applied: something unindexed is there"
                );
            }
            free
        }
        Some(expect) => matches_known(syncer, &write.path, expect),
    }
}

/// Whether the disk at `path` still matches its index entry (and so `expect`).
fn matches_known(syncer: &Syncer, path: &str, expect: &Known) -> bool {
    let Some(entry) = syncer.index.get(path) else {
        tracing::debug!(path, "not applied: the index has nothing at this path");
        return false;
    };
    if entry.node != expect.node {
        tracing::debug!(path, "not applied: the index holds another node here");
        return false;
    }
    let Some(stat) = walk::stat(&syncer.root, path) else {
        tracing::debug!(path, "not applied: nothing on disk at this path");
        return false;
    };
    let matches = on_disk_as_indexed(entry, &stat);
    if !matches {
        tracing::debug!(
            path,
            ?stat,
            ?entry,
            "not applied: changed on disk since the last scan"
        );
    }
    matches
}

/// Whether a path's stat shows what its index entry recorded: a directory by its inode, anything
/// else also by size, mtime and ctime. The ctime catches a rewrite that kept size and mtime (an
/// editor or `cp -a` putting the old time back), which must not be overwritten or removed.
fn on_disk_as_indexed(entry: &IndexEntry, stat: &Stat) -> bool {
    let kind_matches = kind_byte(stat.kind) == entry.kind && stat.inode == entry.inode;
    if stat.kind == NodeKind::Dir {
        kind_matches
    } else {
        kind_matches
            && stat.size == entry.size
            && stat.mtime_ns == entry.mtime_ns
            && stat.ctime_ns == entry.ctime_ns
    }
}

fn entry_for(
    node: NodeId,
    stat: &Stat,
    content: Option<ChunkId>,
    chunks: Vec<(ChunkId, u32)>,
) -> IndexEntry {
    IndexEntry {
        node,
        kind: kind_byte(stat.kind),
        size: stat.size,
        mtime_ns: stat.mtime_ns,
        inode: stat.inode,
        ctime_ns: stat.ctime_ns,
        mode: stat.mode,
        content,
        chunks,
        indexed_ns: now_ns(),
    }
}

fn trash_path(syncer: &Syncer, path: &str) -> PathBuf {
    let name = path.replace('/', "%2F");
    syncer
        .state
        .trash_dir()
        .join(format!("{}-{name}", now_ns()))
}

/// An action refused by [`safe_path`] or [`nofollow::rename_into`] is skipped with a warning (`None`), not an error: the
/// next scan records what the folder now holds (a directory swapped for a symlink, say) and the
/// plan is made again from it.
fn skip_unsafe<T>(result: Result<T, AgentError>) -> Result<Option<T>, AgentError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error @ (AgentError::UnsafePath(_) | AgentError::ParentChanged(_))) => {
            tracing::warn!(%error, "skipped");
            Ok(None)
        }
        Err(error) => Err(error),
    }
}

/// `root/relative`, refusing anything that could leave the folder: absolute paths, `..`, and
/// parents that are symlinks or not directories.
pub fn safe_path(root: &Path, relative: &str) -> Result<PathBuf, AgentError> {
    let refuse = || AgentError::UnsafePath(relative.to_owned());
    let rel = Path::new(relative);
    if relative.is_empty() || relative.contains('\0') {
        return Err(refuse());
    }
    let mut current = root.to_owned();
    let components: Vec<Component> = rel.components().collect();
    for (idx, component) in components.iter().enumerate() {
        let Component::Normal(name) = component else {
            return Err(refuse());
        };
        current.push(name);
        if idx + 1 < components.len() {
            match current.symlink_metadata() {
                Ok(meta) if meta.file_type().is_dir() => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                _ => return Err(refuse()),
            }
        }
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use cloud3_engine::ids::ChunkId;

    use super::*;

    fn file_stat() -> Stat {
        Stat {
            kind: NodeKind::File,
            size: 4,
            mtime_ns: 1_000,
            inode: 7,
            ctime_ns: 2_000,
            mode: 0o644,
        }
    }

    #[test]
    fn a_rewrite_keeping_size_and_mtime_is_not_taken_for_the_indexed_file() {
        let stat = file_stat();
        let entry = entry_for(NodeId([1; 16]), &stat, Some(ChunkId([2; 32])), Vec::new());
        assert!(on_disk_as_indexed(&entry, &stat));
        let rewritten = Stat {
            ctime_ns: 3_000,
            ..file_stat()
        };
        assert!(
            !on_disk_as_indexed(&entry, &rewritten),
            "same size, mtime and inode but a later ctime: the bytes may differ"
        );
        let grown = Stat {
            size: 5,
            ..file_stat()
        };
        assert!(!on_disk_as_indexed(&entry, &grown));
        let replaced = Stat {
            inode: 8,
            ..file_stat()
        };
        assert!(!on_disk_as_indexed(&entry, &replaced));
    }

    #[test]
    fn a_directory_is_known_by_its_inode_alone() {
        let dir = Stat {
            kind: NodeKind::Dir,
            size: 0,
            ..file_stat()
        };
        let entry = entry_for(NodeId([1; 16]), &dir, None, Vec::new());
        let touched = Stat {
            mtime_ns: 5_000,
            ctime_ns: 6_000,
            ..dir
        };
        assert!(on_disk_as_indexed(&entry, &touched));
    }
}
