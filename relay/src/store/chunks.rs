//! The chunk index: (user, chunk id) → where its encoded bytes are, with the per-user quota.

use std::collections::HashSet;

use cloud3_engine::chunk::{self, Manifest};
use cloud3_engine::ids::{ChunkId, DeviceId};
use cloud3_engine::wire::ChunkCodec;
use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::accounts::check_active;
use super::packs::PackSpan;
use super::refs::References;
use super::{CHUNKS, Store, USAGE, decode, encode};
use crate::error::StoreError;

/// Where a stored blob is and how it is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkLocation {
    /// Pack number.
    pub pack: u32,
    /// Offset in the pack.
    pub offset: u64,
    /// Encoded length.
    pub len: u32,
    /// Encoding.
    pub zstd: bool,
    /// Raw length.
    pub raw_len: u32,
}

/// A blob arriving from a device.
#[derive(Clone, Copy, Debug)]
pub struct NewBlob<'a> {
    /// Its id (SHA-256 of the raw bytes).
    pub id: ChunkId,
    /// How `bytes` are encoded.
    pub codec: ChunkCodec,
    /// Its raw length.
    pub raw_len: u32,
    /// The encoded bytes.
    pub bytes: &'a [u8],
}

/// A stored blob, verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredBlob {
    /// Encoding of `bytes`.
    pub codec: ChunkCodec,
    /// Raw length.
    pub raw_len: u32,
    /// Encoded bytes.
    pub bytes: Vec<u8>,
}

/// Each user's blobs.
pub trait Chunks {
    /// Which of `ids` the user does not store.
    fn missing_chunks(&self, user: &str, ids: &[ChunkId]) -> Result<Vec<ChunkId>, StoreError>;

    /// Verifies and stores blobs for `user`, on behalf of `device`, in one durable batch (one
    /// pack flush, one transaction). Returns each blob's outcome once everything is durable;
    /// the outer error means nothing of the batch was stored.
    fn put_chunks(
        &self,
        user: &str,
        device: DeviceId,
        blobs: &[NewBlob<'_>],
        quota: u64,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError>;

    /// A user's blob for a device, verified against its id; `None` unless the user stores it
    /// and some version of the user's documents references it.
    fn get_chunk(&self, user: &str, id: ChunkId) -> Result<Option<StoredBlob>, StoreError>;

    /// The chunks a stored manifest blob lists; empty if the user does not store `id` or it
    /// is not a manifest.
    fn manifest_chunks(&self, user: &str, id: ChunkId) -> Result<Vec<ChunkId>, StoreError>;

    /// Encoded bytes the user stores.
    fn usage(&self, user: &str) -> Result<u64, StoreError>;

    /// Bytes of the user's pack files on disk.
    fn pack_disk_bytes(&self, user: &str) -> u64;
}

impl Chunks for Store {
    fn missing_chunks(&self, user: &str, ids: &[ChunkId]) -> Result<Vec<ChunkId>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let table = txn.open_table(CHUNKS).map_err(StoreError::db)?;
        let mut missing = Vec::new();
        for id in ids {
            if table.get((user, &id.0)).map_err(StoreError::db)?.is_none() {
                missing.push(*id);
            }
        }
        Ok(missing)
    }

    fn put_chunks(
        &self,
        user: &str,
        device: DeviceId,
        blobs: &[NewBlob<'_>],
        quota: u64,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut outcomes: Vec<Result<(), StoreError>> = Vec::with_capacity(blobs.len());
        let mut accepted: Vec<usize> = Vec::new();
        let mut used = self.usage(user)?;
        let ids: Vec<ChunkId> = blobs.iter().map(|b| b.id).collect();
        // Taken from `missing` as accepted, so a blob sent twice in one batch is stored once.
        let mut missing: HashSet<ChunkId> = self.missing_chunks(user, &ids)?.into_iter().collect();
        for (n, blob) in blobs.iter().enumerate() {
            if let Err(e) = chunk::open(blob.id, blob.codec, blob.bytes, blob.raw_len) {
                outcomes.push(Err(StoreError::Forbidden(e.to_string())));
                continue;
            }
            if !missing.contains(&blob.id) {
                outcomes.push(Ok(()));
                continue;
            }
            if used + blob.bytes.len() as u64 > quota {
                outcomes.push(Err(StoreError::Quota { quota }));
                continue;
            }
            missing.remove(&blob.id);
            used += blob.bytes.len() as u64;
            accepted.push(n);
            outcomes.push(Ok(()));
        }
        if accepted.is_empty() {
            return Ok(outcomes);
        }
        let bytes: Vec<&[u8]> = accepted.iter().map(|&n| blobs[n].bytes).collect();
        let spans: Vec<PackSpan> = self
            .packs
            .lock()
            .map_err(|_| StoreError::Corrupt("pack lock poisoned".into()))?
            .append_all(user, &bytes)?;
        let located: Vec<(ChunkId, ChunkLocation)> = accepted
            .iter()
            .zip(&spans)
            .map(|(&n, span)| {
                let blob = &blobs[n];
                let location = ChunkLocation {
                    pack: span.pack,
                    offset: span.offset,
                    len: span.len,
                    zstd: blob.codec == ChunkCodec::Zstd,
                    raw_len: blob.raw_len,
                };
                (blob.id, location)
            })
            .collect();
        let user = user.to_owned();
        self.write(move |txn| {
            check_active(txn, &user, device)?;
            let user = user.as_str();
            let mut table = txn.open_table(CHUNKS).map_err(StoreError::db)?;
            let mut added = 0u64;
            for (id, location) in &located {
                // Another connection may have stored it meanwhile.
                if table.get((user, &id.0)).map_err(StoreError::db)?.is_some() {
                    continue;
                }
                table
                    .insert((user, &id.0), encode(location)?.as_slice())
                    .map_err(StoreError::db)?;
                added += u64::from(location.len);
            }
            let mut usage = txn.open_table(USAGE).map_err(StoreError::db)?;
            let before = usage
                .get(user)
                .map_err(StoreError::db)?
                .map_or(0, |v| v.value());
            usage.insert(user, before + added).map_err(StoreError::db)?;
            Ok(())
        })?;
        Ok(outcomes)
    }

    fn get_chunk(&self, user: &str, id: ChunkId) -> Result<Option<StoredBlob>, StoreError> {
        if !self.is_referenced(user, id)? {
            return Ok(None);
        }
        Ok(self.read_blob(user, id)?.map(|(blob, _)| blob))
    }

    fn manifest_chunks(&self, user: &str, id: ChunkId) -> Result<Vec<ChunkId>, StoreError> {
        let Some((_, raw)) = self.read_blob(user, id)? else {
            return Ok(Vec::new());
        };
        Ok(Manifest::decode(&raw)
            .map(|m| m.entries.into_iter().map(|e| e.id).collect())
            .unwrap_or_default())
    }

    fn usage(&self, user: &str) -> Result<u64, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let usage = txn.open_table(USAGE).map_err(StoreError::db)?;
        Ok(usage
            .get(user)
            .map_err(StoreError::db)?
            .map_or(0, |v| v.value()))
    }

    fn pack_disk_bytes(&self, user: &str) -> u64 {
        self.packs.lock().map(|p| p.disk_bytes(user)).unwrap_or(0)
    }
}

impl Store {
    /// A user's blob, verified against its id, with its raw bytes; `None` if the user does not
    /// store it.
    fn read_blob(
        &self,
        user: &str,
        id: ChunkId,
    ) -> Result<Option<(StoredBlob, Vec<u8>)>, StoreError> {
        let location: ChunkLocation = {
            let txn = self.db.begin_read().map_err(StoreError::db)?;
            let table = txn.open_table(CHUNKS).map_err(StoreError::db)?;
            match table.get((user, &id.0)).map_err(StoreError::db)? {
                Some(value) => decode(value.value())?,
                None => return Ok(None),
            }
        };
        let span = PackSpan {
            pack: location.pack,
            offset: location.offset,
            len: location.len,
        };
        let bytes = self
            .packs
            .lock()
            .map_err(|_| StoreError::Corrupt("pack lock poisoned".into()))?
            .read(user, span)?;
        let codec = if location.zstd {
            ChunkCodec::Zstd
        } else {
            ChunkCodec::Raw
        };
        // Storage is checked on every read: a damaged pack is reported, never served.
        let raw = chunk::open(id, codec, &bytes, location.raw_len)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let blob = StoredBlob {
            codec,
            raw_len: location.raw_len,
            bytes,
        };
        Ok(Some((blob, raw)))
    }
}
