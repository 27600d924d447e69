//! Online compaction: a closed pack whose live bytes fall below a fraction of its size is
//! rewritten while devices keep syncing and reading.
//!
//! 1. The user's current pack is closed (appends go to a new one) and compaction waits for
//!    every blob batch still indexing into a closed pack (the `appending` gate).
//! 2. Each live blob of a sparse pack is read (its checksum checked) and appended to the
//!    current pack, fsynced.
//! 3. One writer transaction points every moved blob's index entry at its copy (an entry that
//!    changed meanwhile is left alone).
//! 4. The old pack is removed, then its directory fsynced.
//!
//! A crash before 3 leaves copies no entry names (dead bytes in a newer pack, reclaimed by a
//! later compaction); after 3, an old pack no entry names. [`Store::open`] removes every pack no
//! index entry names, which finishes the second case and rolls back the first: the store opens
//! and serves every blob from wherever its committed entry points. A reader that looked a blob
//! up before the switch and finds the old pack gone looks it up again (`read_located`).
//!
//! For crash tests, `CLOUD3_COMPACT_PAUSE_AT=N` makes the N-th step (counted over the
//! process: each batch copied, each switch, each removal) print `compaction paused at step N`
//! to stderr and wait there forever, for the test to kill the process with SIGKILL.

use std::sync::atomic::{AtomicU64, Ordering};

use cloud3_engine::ids::ChunkId;
use redb::ReadableTable;

use super::chunks::ChunkLocation;
use super::packs::PackSpan;
use super::{Accounts, CHUNKS, Store, encode};
use crate::error::StoreError;

/// Bytes copied per pack append while compacting.
const COPY_BATCH_BYTES: u64 = 8 << 20;

impl Store {
    /// Compacts `user`'s sparse packs (see the module docs); returns how many were rewritten
    /// or removed.
    pub(crate) fn compact_user(&self, user: &str, below: f64) -> Result<u64, StoreError> {
        let open_from = self.lock_packs()?.roll(user)?;
        // Every batch that appended to a pack now closed has committed its index entries.
        drop(
            self.appending
                .write()
                .map_err(|_| StoreError::Corrupt("append gate poisoned".into()))?,
        );
        let mut live = self.live_by_pack(user)?;
        let sizes = self.lock_packs()?.sizes(user)?;
        let mut compacted = 0;
        for (pack, size) in sizes.into_iter().filter(|(n, _)| *n < open_from) {
            let entries = live.remove(&pack).unwrap_or_default();
            let live_bytes: u64 = entries.iter().map(|(_, l)| u64::from(l.len)).sum();
            // A closed pack nothing lives in goes whatever its size (an empty one left by an
            // earlier roll too); one live enough stays.
            if !entries.is_empty() && live_bytes as f64 >= below * size as f64 {
                continue;
            }
            let Some(moves) = self.copy_live(user, pack, &entries)? else {
                continue;
            };
            pause_point();
            let owner = user.to_owned();
            self.write(move |txn| {
                let mut chunks = txn.open_table(CHUNKS).map_err(StoreError::db)?;
                for (id, old, new) in &moves {
                    let current = chunks
                        .get((owner.as_str(), &id.0))
                        .map_err(StoreError::db)?
                        .map(|v| ChunkLocation::decode(v.value()))
                        .transpose()?;
                    if current == Some(*old) {
                        chunks
                            .insert((owner.as_str(), &id.0), encode(new)?.as_slice())
                            .map_err(StoreError::db)?;
                    }
                }
                Ok(())
            })?;
            pause_point();
            self.lock_packs()?.remove_pack(user, pack)?;
            compacted += 1;
            tracing::info!(%user, pack, size, live_bytes, "compacted a pack");
        }
        Ok(compacted)
    }

    /// Copies `entries` (the live blobs of `pack`) to the current pack; `None` if one of them
    /// cannot be read intact (the pack is then left as it is, and the damage logged).
    #[allow(clippy::type_complexity)]
    fn copy_live(
        &self,
        user: &str,
        pack: u32,
        entries: &[(ChunkId, ChunkLocation)],
    ) -> Result<Option<Vec<(ChunkId, ChunkLocation, ChunkLocation)>>, StoreError> {
        let mut moves = Vec::with_capacity(entries.len());
        let mut start = 0;
        while start < entries.len() {
            let mut end = start;
            let mut bytes = 0u64;
            while end < entries.len() && (end == start || bytes < COPY_BATCH_BYTES) {
                bytes += u64::from(entries[end].1.len);
                end += 1;
            }
            let mut blobs = Vec::with_capacity(end - start);
            for (id, location) in &entries[start..end] {
                match self.read_at(user, *id, *location) {
                    Ok(blob) => blobs.push(blob.bytes),
                    Err(error) => {
                        tracing::error!(%user, pack, %id, %error, "cannot compact a pack");
                        return Ok(None);
                    }
                }
            }
            let slices: Vec<&[u8]> = blobs.iter().map(Vec::as_slice).collect();
            let spans: Vec<PackSpan> = self.lock_packs()?.append_all(user, &slices)?;
            for ((id, old), span) in entries[start..end].iter().zip(spans) {
                let new = ChunkLocation {
                    pack: span.pack,
                    offset: span.offset,
                    len: span.len,
                    ..*old
                };
                moves.push((*id, *old, new));
            }
            pause_point();
            start = end;
        }
        Ok(Some(moves))
    }

    /// Removes every pack file no index entry names: what a crash left of a compaction (see
    /// the module docs) or of a batch whose index commit never happened. Runs at open, when
    /// nothing is being appended.
    pub(crate) fn remove_unindexed_packs(&self) -> Result<(), StoreError> {
        for (user, _) in self.list_users()? {
            let live = self.live_by_pack(&user)?;
            let mut packs = self.lock_packs()?;
            for (pack, _) in packs.sizes(&user)? {
                if !live.contains_key(&pack) {
                    packs.remove_pack(&user, pack)?;
                    tracing::info!(%user, pack, "removed a pack no index entry names");
                }
            }
        }
        Ok(())
    }

    fn lock_packs(&self) -> Result<std::sync::MutexGuard<'_, super::packs::Packs>, StoreError> {
        self.packs
            .lock()
            .map_err(|_| StoreError::Corrupt("pack lock poisoned".into()))
    }
}

/// A step of compaction; pauses there for a crash test when `CLOUD3_COMPACT_PAUSE_AT` says so.
fn pause_point() {
    static STEPS: AtomicU64 = AtomicU64::new(0);
    static PAUSE_AT: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let step = STEPS.fetch_add(1, Ordering::SeqCst) + 1;
    let pause_at = PAUSE_AT.get_or_init(|| {
        std::env::var("CLOUD3_COMPACT_PAUSE_AT")
            .ok()
            .and_then(|n| n.parse().ok())
    });
    if *pause_at == Some(step) {
        eprintln!("compaction paused at step {step}");
        loop {
            std::thread::park();
        }
    }
}
