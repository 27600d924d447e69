//! Garbage collection: blobs that no restorable version references are removed from the index
//! (their pack bytes become dead and [`super::compact`] reclaims them).
//!
//! The protocol (also in ARCHITECTURE.md):
//! 1. **Mark**, from a read snapshot: for each user, each folder document's
//!    [`FolderDoc::retained_refs`] at `now - window` (the user's own window, else the relay's),
//!    with the chunks every retained manifest blob lists. A document or manifest that cannot be
//!    read stops that user's collection: nothing is freed that cannot be accounted for.
//! 2. **Sweep**, in one writer transaction (serialised with every upload, chunk query and
//!    document change): an unmarked blob is removed (index entry, reference, claim, usage)
//!    unless it was *claimed* within the grace period. Claims are stamped in the same
//!    transaction that answers a chunk query "present" or indexes an upload, so a device that
//!    is about to send a change naming a blob (it uploaded it, or was told the relay has it)
//!    holds it for the grace period, whatever the mark saw. A device must send the change
//!    within the grace (default 24 h) of its query or upload; after that it queries again.
//!    A change committed after the mark that names a blob it neither uploaded nor queried
//!    (a restore of a version at the edge of the window) is the one case the grace does not
//!    cover: restores are offered only for versions inside the window.
//!
//! Space freed counts against the quota at once (`usage` is lowered in the sweep).

use std::collections::{HashMap, HashSet};
use std::ops::Bound;
use std::time::{Duration, Instant};

use cloud3_engine::ids::ChunkId;
use cloud3_engine::time::WallTime;
use cloud3_engine::tree::FolderDoc;
use redb::{ReadableDatabase, ReadableTable};

use super::chunks::{ChunkLocation, Chunks};
use super::{Accounts, CHUNKS, CLAIMS, DOC_LOG, Documents, REFS, RETENTION, Store, USAGE};
use crate::error::StoreError;

/// The actor the collector loads documents with (it never writes them).
const READER_ACTOR: [u8; 16] = [0xc0; 16];

/// How the collector decides.
#[derive(Clone, Debug, PartialEq)]
pub struct GcSettings {
    /// The relay's retention window (a user's own overrides it).
    pub retention_days: u32,
    /// Blobs claimed more recently than this are spared.
    pub grace: Duration,
    /// Packs whose live bytes are below this fraction of their size are rewritten.
    pub compact_below: f64,
}

impl Default for GcSettings {
    fn default() -> GcSettings {
        GcSettings {
            retention_days: 30,
            grace: Duration::from_secs(24 * 3600),
            compact_below: 0.9,
        }
    }
}

/// What one collection did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcReport {
    /// Users collected.
    pub users: usize,
    /// Users skipped (a document or manifest could not be read).
    pub skipped_users: usize,
    /// Blobs removed from the index.
    pub blobs_freed: u64,
    /// Their encoded bytes.
    pub bytes_freed: u64,
    /// Unmarked blobs spared because they were claimed within the grace period.
    pub blobs_spared: u64,
    /// Packs rewritten or removed by compaction.
    pub packs_compacted: u64,
    /// Pack bytes on disk before and after compaction.
    pub pack_bytes_before: u64,
    /// See `pack_bytes_before`.
    pub pack_bytes_after: u64,
    /// Time taken by the mark and sweep, and by compaction.
    pub collect_time: Duration,
    /// See `collect_time`.
    pub compact_time: Duration,
}

impl GcReport {
    /// The report as lines for an operator.
    pub fn lines(&self) -> Vec<String> {
        vec![
            format!(
                "collected {} users ({} skipped): freed {} blobs, {} bytes; spared {} recently claimed blobs; {:.2} s",
                self.users,
                self.skipped_users,
                self.blobs_freed,
                self.bytes_freed,
                self.blobs_spared,
                self.collect_time.as_secs_f64()
            ),
            format!(
                "compacted {} packs: {} -> {} bytes on disk; {:.2} s",
                self.packs_compacted,
                self.pack_bytes_before,
                self.pack_bytes_after,
                self.compact_time.as_secs_f64()
            ),
        ]
    }
}

/// The storage lifecycle: retention windows, collection and compaction.
pub trait Collector {
    /// A user's own retention window in days, if set.
    fn retention(&self, user: &str) -> Result<Option<u32>, StoreError>;

    /// Sets (or with `None` clears) a user's own retention window.
    fn set_retention(&self, user: &str, days: Option<u32>) -> Result<(), StoreError>;

    /// The window `user`'s versions are kept for, in days: their own, else the relay's.
    fn window_days(&self, user: &str, settings: &GcSettings) -> Result<u32, StoreError> {
        Ok(self.retention(user)?.unwrap_or(settings.retention_days))
    }

    /// Now, as the clock the collector goes by tells it.
    fn lifecycle_now(&self) -> WallTime;

    /// Collects every user's garbage, then compacts their packs (see the module docs).
    fn collect(&self, settings: &GcSettings) -> Result<GcReport, StoreError>;
}

impl Collector for Store {
    fn retention(&self, user: &str) -> Result<Option<u32>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let table = txn.open_table(RETENTION).map_err(StoreError::db)?;
        Ok(table.get(user).map_err(StoreError::db)?.map(|v| v.value()))
    }

    fn set_retention(&self, user: &str, days: Option<u32>) -> Result<(), StoreError> {
        let user = user.to_owned();
        let exists = self.list_users()?.iter().any(|(name, _)| *name == user);
        if !exists {
            return Err(StoreError::NoUser(user));
        }
        self.write(move |txn| {
            let mut table = txn.open_table(RETENTION).map_err(StoreError::db)?;
            match days {
                Some(days) => table.insert(user.as_str(), days).map(|_| ()),
                None => table.remove(user.as_str()).map(|_| ()),
            }
            .map_err(StoreError::db)
        })
    }

    fn lifecycle_now(&self) -> WallTime {
        self.clock.now()
    }

    fn collect(&self, settings: &GcSettings) -> Result<GcReport, StoreError> {
        let _one_at_a_time = self
            .collecting
            .lock()
            .map_err(|_| StoreError::Corrupt("collector lock poisoned".into()))?;
        let started = Instant::now();
        let mut report = GcReport::default();
        let users: Vec<String> = self.list_users()?.into_iter().map(|(n, _)| n).collect();
        for user in &users {
            let now = self.clock.now();
            let days = self.window_days(user, settings)?;
            let cutoff = WallTime(now.0.saturating_sub(i64::from(days) * 86_400_000));
            let marked = match self.mark(user, cutoff) {
                Ok(marked) => marked,
                Err(error) => {
                    tracing::warn!(%user, %error, "garbage collection skipped this user");
                    report.skipped_users += 1;
                    continue;
                }
            };
            let unmarked = self.unmarked(user, &marked)?;
            let grace_ms = i64::try_from(settings.grace.as_millis()).unwrap_or(i64::MAX);
            let claimed_after = now.0.saturating_sub(grace_ms);
            let (freed, bytes, spared) = self.sweep(user, unmarked, claimed_after)?;
            report.users += 1;
            report.blobs_freed += freed;
            report.bytes_freed += bytes;
            report.blobs_spared += spared;
            tracing::info!(%user, days, freed, bytes, spared, "collected");
        }
        report.collect_time = started.elapsed();
        let started = Instant::now();
        for user in &users {
            report.pack_bytes_before += self.pack_disk_bytes(user);
            report.packs_compacted += self.compact_user(user, settings.compact_below)?;
            report.pack_bytes_after += self.pack_disk_bytes(user);
        }
        report.compact_time = started.elapsed();
        Ok(report)
    }
}

impl Store {
    /// Every blob a restorable version of `user`'s folders needs at `cutoff`.
    fn mark(&self, user: &str, cutoff: WallTime) -> Result<HashSet<ChunkId>, StoreError> {
        let mut marked = HashSet::new();
        for folder in self.folders(user)? {
            let (bytes, _) = self.load_doc(user, &folder)?;
            let mut doc = FolderDoc::load(&bytes, &READER_ACTOR)
                .map_err(|e| StoreError::Corrupt(format!("document {folder} of {user}: {e}")))?;
            let refs = doc.retained_refs(cutoff);
            marked.extend(refs.chunks.iter().copied());
            for &manifest in &refs.manifests {
                marked.insert(manifest);
                if self.location(user, manifest)?.is_some() {
                    marked.extend(self.manifest_chunks(user, manifest)?);
                }
            }
        }
        Ok(marked)
    }

    /// The user's folders with a stored document.
    fn folders(&self, user: &str) -> Result<Vec<String>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let log = txn.open_table(DOC_LOG).map_err(StoreError::db)?;
        let mut folders = Vec::new();
        let mut from = Bound::Included((user, "", 0u64));
        loop {
            let next = log
                .range::<(&str, &str, u64)>((from, Bound::Unbounded))
                .map_err(StoreError::db)?
                .next()
                .transpose()
                .map_err(StoreError::db)?;
            let Some((key, _)) = next else { break };
            let (owner, folder, _) = key.value();
            if owner != user {
                break;
            }
            folders.push(folder.to_owned());
            let folder = folders.last().map_or("", String::as_str);
            from = Bound::Excluded((user, folder, u64::MAX));
        }
        Ok(folders)
    }

    /// Stored blobs of `user` not in `marked`.
    fn unmarked(&self, user: &str, marked: &HashSet<ChunkId>) -> Result<Vec<ChunkId>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let chunks = txn.open_table(CHUNKS).map_err(StoreError::db)?;
        let mut unmarked = Vec::new();
        for row in chunks
            .range((user, &[0u8; 32])..=(user, &[0xffu8; 32]))
            .map_err(StoreError::db)?
        {
            let (key, _) = row.map_err(StoreError::db)?;
            let id = ChunkId(*key.value().1);
            if !marked.contains(&id) {
                unmarked.push(id);
            }
        }
        Ok(unmarked)
    }

    /// Removes `unmarked` blobs not claimed after `claimed_after` (ms) in one writer
    /// transaction; returns (freed, bytes freed, spared).
    fn sweep(
        &self,
        user: &str,
        unmarked: Vec<ChunkId>,
        claimed_after: i64,
    ) -> Result<(u64, u64, u64), StoreError> {
        if unmarked.is_empty() {
            return Ok((0, 0, 0));
        }
        let user = user.to_owned();
        self.write(move |txn| {
            let user = user.as_str();
            let mut chunks = txn.open_table(CHUNKS).map_err(StoreError::db)?;
            let mut refs = txn.open_table(REFS).map_err(StoreError::db)?;
            let mut claims = txn.open_table(CLAIMS).map_err(StoreError::db)?;
            let (mut freed, mut bytes, mut spared) = (0u64, 0u64, 0u64);
            for id in &unmarked {
                let claimed = claims
                    .get((user, &id.0))
                    .map_err(StoreError::db)?
                    .map(|at| at.value());
                if claimed.is_some_and(|at| at > claimed_after) {
                    spared += 1;
                    continue;
                }
                let Some(entry) = chunks.remove((user, &id.0)).map_err(StoreError::db)? else {
                    continue;
                };
                let location = ChunkLocation::decode(entry.value())?;
                drop(entry);
                refs.remove((user, &id.0)).map_err(StoreError::db)?;
                claims.remove((user, &id.0)).map_err(StoreError::db)?;
                freed += 1;
                bytes += u64::from(location.len);
            }
            let mut usage = txn.open_table(USAGE).map_err(StoreError::db)?;
            let before = usage
                .get(user)
                .map_err(StoreError::db)?
                .map_or(0, |v| v.value());
            usage
                .insert(user, before.saturating_sub(bytes))
                .map_err(StoreError::db)?;
            Ok((freed, bytes, spared))
        })
    }

    /// Live encoded bytes per pack of `user`, with the entries in each.
    pub(crate) fn live_by_pack(
        &self,
        user: &str,
    ) -> Result<HashMap<u32, Vec<(ChunkId, ChunkLocation)>>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let chunks = txn.open_table(CHUNKS).map_err(StoreError::db)?;
        let mut packs: HashMap<u32, Vec<(ChunkId, ChunkLocation)>> = HashMap::new();
        for row in chunks
            .range((user, &[0u8; 32])..=(user, &[0xffu8; 32]))
            .map_err(StoreError::db)?
        {
            let (key, value) = row.map_err(StoreError::db)?;
            let location = ChunkLocation::decode(value.value())?;
            packs
                .entry(location.pack)
                .or_default()
                .push((ChunkId(*key.value().1), location));
        }
        Ok(packs)
    }
}

#[cfg(test)]
mod tests;
