//! The chunk index: (user, chunk id) → where its encoded bytes are, with the per-user quota.
//!
//! A blob is decoded and checked against its SHA-256 id once, when it arrives; its index entry
//! then records an xxh3-64 checksum of the encoded bytes as stored. Serving a blob checks that
//! checksum (a damaged pack is reported, never served) instead of decompressing and hashing it
//! again: devices and the viewer decode and check the SHA-256 themselves before using a blob.
//! Entries written before checksums existed are checked the old way, by decoding and hashing.

use std::collections::HashSet;

use cloud3_engine::chunk::{self, Manifest};
use cloud3_engine::ids::{ChunkId, DeviceId};
use cloud3_engine::wire::ChunkCodec;
use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::accounts::check_active;
use super::packs::PackSpan;
use super::{CHUNKS, REFS, Store, USAGE, decode, encode};
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
    /// xxh3-64 of the encoded bytes, taken when they were verified on arrival; `None` in entries
    /// written before checksums were kept.
    pub checksum: Option<u64>,
}

/// The layout of [`ChunkLocation`] before it kept a checksum (postcard has no optional
/// trailing fields, so old entries are read through this).
#[derive(Deserialize)]
struct LocationWithoutChecksum {
    pack: u32,
    offset: u64,
    len: u32,
    zstd: bool,
    raw_len: u32,
}

impl ChunkLocation {
    fn decode(bytes: &[u8]) -> Result<ChunkLocation, StoreError> {
        decode(bytes).or_else(|_| {
            let old: LocationWithoutChecksum = decode(bytes)?;
            Ok(ChunkLocation {
                pack: old.pack,
                offset: old.offset,
                len: old.len,
                zstd: old.zstd,
                raw_len: old.raw_len,
                checksum: None,
            })
        })
    }
}

/// The checksum a stored blob's encoded bytes are checked against when read back.
fn checksum(encoded: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(encoded)
}

/// A blob arriving from a device, decoded (bounded by its declared size) and checked against
/// its id: the only kind of blob [`Chunks::put_chunks`] stores. Checking is separate from storing
/// so a connection can check each blob on every core as it arrives, while the batch before it is
/// being written.
#[derive(Debug)]
pub struct VerifiedBlob {
    id: ChunkId,
    codec: ChunkCodec,
    raw_len: u32,
    bytes: Vec<u8>,
}

impl VerifiedBlob {
    /// Checks encoded `bytes` against `id`; a blob that fails is refused (`Forbidden`).
    pub fn verify(
        id: ChunkId,
        codec: ChunkCodec,
        raw_len: u32,
        bytes: Vec<u8>,
    ) -> Result<VerifiedBlob, StoreError> {
        chunk::open(id, codec, &bytes, raw_len)
            .map_err(|e| StoreError::Forbidden(e.to_string()))?;
        Ok(VerifiedBlob {
            id,
            codec,
            raw_len,
            bytes,
        })
    }
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

    /// Stores verified blobs for `user`, on behalf of `device`, in one durable batch (one pack
    /// flush, one transaction). Returns each blob's outcome once everything is durable; the
    /// outer error means nothing of the batch was stored.
    fn put_chunks(
        &self,
        user: &str,
        device: DeviceId,
        blobs: &[VerifiedBlob],
        quota: u64,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError>;

    /// A user's blobs for a device, in the order of `ids`, for as many of `ids` as fit in
    /// `budget` encoded bytes (at least one): each with its stored bytes checked (see the module
    /// docs), `None` unless the user stores it and some version of the user's documents
    /// references it, an error if its stored bytes are damaged. One lookup for the whole run
    /// rather than one per blob (a folder of small files asks for thousands at once).
    fn get_chunks(
        &self,
        user: &str,
        ids: &[ChunkId],
        budget: u64,
    ) -> Result<Vec<Result<Option<StoredBlob>, StoreError>>, StoreError>;

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
        blobs: &[VerifiedBlob],
        quota: u64,
    ) -> Result<Vec<Result<(), StoreError>>, StoreError> {
        let mut outcomes: Vec<Result<(), StoreError>> = Vec::with_capacity(blobs.len());
        let mut accepted: Vec<usize> = Vec::new();
        let mut used = self.usage(user)?;
        let ids: Vec<ChunkId> = blobs.iter().map(|b| b.id).collect();
        // Taken from `missing` as accepted, so a blob sent twice in one batch is stored once.
        let mut missing: HashSet<ChunkId> = self.missing_chunks(user, &ids)?.into_iter().collect();
        for (n, blob) in blobs.iter().enumerate() {
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
        let bytes: Vec<&[u8]> = accepted
            .iter()
            .map(|&n| blobs[n].bytes.as_slice())
            .collect();
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
                    checksum: Some(checksum(&blob.bytes)),
                };
                (blob.id, location)
            })
            .collect();
        let owner = user.to_owned();
        let indexed = self.write(move |txn| {
            let user = owner;
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
        });
        if let Err(error) = indexed {
            // Nothing of the batch is indexed: its bytes are taken back too.
            self.packs
                .lock()
                .map_err(|_| StoreError::Corrupt("pack lock poisoned".into()))?
                .rollback(user, &spans);
            return Err(error);
        }
        Ok(outcomes)
    }

    fn get_chunks(
        &self,
        user: &str,
        ids: &[ChunkId],
        budget: u64,
    ) -> Result<Vec<Result<Option<StoredBlob>, StoreError>>, StoreError> {
        let mut located = Vec::new();
        {
            let txn = self.db.begin_read().map_err(StoreError::db)?;
            let refs = txn.open_table(REFS).map_err(StoreError::db)?;
            let chunks = txn.open_table(CHUNKS).map_err(StoreError::db)?;
            let mut bytes = 0u64;
            for id in ids {
                if !located.is_empty() && bytes >= budget {
                    break;
                }
                let referenced = refs.get((user, &id.0)).map_err(StoreError::db)?.is_some();
                let location = match chunks.get((user, &id.0)).map_err(StoreError::db)? {
                    Some(value) if referenced => Some(ChunkLocation::decode(value.value())?),
                    _ => None,
                };
                bytes += location.map_or(0, |l| u64::from(l.len));
                located.push((*id, location));
            }
        }
        Ok(located
            .into_iter()
            .map(|(id, location)| match location {
                Some(location) => self.read_located(user, id, location).map(Some),
                None => Ok(None),
            })
            .collect())
    }

    fn manifest_chunks(&self, user: &str, id: ChunkId) -> Result<Vec<ChunkId>, StoreError> {
        let Some(blob) = self.read_blob(user, id)? else {
            return Ok(Vec::new());
        };
        let raw =
            chunk::open(id, blob.codec, &blob.bytes, blob.raw_len).map_err(|_| corrupt(id))?;
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
    /// A user's blob, its stored bytes checked (see [`Store::read_located`]); `None` if the
    /// user does not store it.
    fn read_blob(&self, user: &str, id: ChunkId) -> Result<Option<StoredBlob>, StoreError> {
        let location = {
            let txn = self.db.begin_read().map_err(StoreError::db)?;
            let table = txn.open_table(CHUNKS).map_err(StoreError::db)?;
            match table.get((user, &id.0)).map_err(StoreError::db)? {
                Some(value) => ChunkLocation::decode(value.value())?,
                None => return Ok(None),
            }
        };
        self.read_located(user, id, location).map(Some)
    }

    /// A stored blob's bytes, checked against the checksum taken when it arrived (or, for
    /// entries from before checksums, decoded and checked against its id).
    fn read_located(
        &self,
        user: &str,
        id: ChunkId,
        location: ChunkLocation,
    ) -> Result<StoredBlob, StoreError> {
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
        let intact = match location.checksum {
            Some(expected) => checksum(&bytes) == expected,
            None => chunk::open(id, codec, &bytes, location.raw_len).is_ok(),
        };
        if !intact {
            return Err(corrupt(id));
        }
        Ok(StoredBlob {
            codec,
            raw_len: location.raw_len,
            bytes,
        })
    }
}

fn corrupt(id: ChunkId) -> StoreError {
    StoreError::Corrupt(format!("stored blob {id} is damaged"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use cloud3_engine::chunk::compress;
    use cloud3_engine::time::WallTime;

    use super::*;
    use crate::store::Accounts;

    const DEVICE: DeviceId = DeviceId([7; 32]);

    /// A store with user `u`, its device enrolled, holding one compressible blob.
    fn store_with_blob(dir: &std::path::Path) -> (Store, ChunkId, Vec<u8>) {
        let store = Store::open(dir).unwrap();
        let code = store.add_user("u", WallTime(0)).unwrap();
        store
            .enrol("u", code.as_str(), DEVICE, "laptop", WallTime(0))
            .unwrap()
            .unwrap();
        let raw = b"the quick brown fox ".repeat(500);
        let id = ChunkId::of(&raw);
        let encoded = compress(&raw);
        assert_eq!(encoded.codec, ChunkCodec::Zstd);
        let blob =
            VerifiedBlob::verify(id, encoded.codec, raw.len() as u32, encoded.bytes).unwrap();
        let outcomes = store.put_chunks("u", DEVICE, &[blob], u64::MAX).unwrap();
        assert!(outcomes[0].is_ok());
        (store, id, raw)
    }

    fn pack_file(dir: &std::path::Path) -> std::fs::File {
        let user_dir = std::fs::read_dir(dir.join("packs"))
            .unwrap()
            .next()
            .unwrap();
        let pack = std::fs::read_dir(user_dir.unwrap().path()).unwrap().next();
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(pack.unwrap().unwrap().path())
            .unwrap()
    }

    fn location(store: &Store, id: ChunkId) -> ChunkLocation {
        let txn = store.db.begin_read().unwrap();
        let table = txn.open_table(CHUNKS).unwrap();
        ChunkLocation::decode(table.get(("u", &id.0)).unwrap().unwrap().value()).unwrap()
    }

    #[test]
    fn a_blob_that_does_not_match_its_id_is_refused() {
        let raw = b"what the device claims".to_vec();
        let other = ChunkId::of(b"something else");
        let refused = VerifiedBlob::verify(other, ChunkCodec::Raw, raw.len() as u32, raw);
        assert!(matches!(refused, Err(StoreError::Forbidden(_))));
        let bomb = compress(&vec![0u8; 1 << 20]);
        let declared_small = VerifiedBlob::verify(other, bomb.codec, 1024, bomb.bytes);
        assert!(matches!(declared_small, Err(StoreError::Forbidden(_))));
    }

    #[test]
    fn a_stored_blob_reads_back_as_it_arrived() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, id, raw) = store_with_blob(tmp.path());
        let blob = store.read_blob("u", id).unwrap().unwrap();
        assert_eq!(
            chunk::open(id, blob.codec, &blob.bytes, blob.raw_len).unwrap(),
            raw
        );
        assert!(location(&store, id).checksum.is_some());
    }

    #[test]
    fn blobs_are_served_in_runs_and_only_when_referenced() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, first, _) = store_with_blob(tmp.path());
        let mut ids = vec![first];
        for n in 0..2u8 {
            let raw = vec![n; 40_000];
            let id = ChunkId::of(&raw);
            let blob = VerifiedBlob::verify(id, ChunkCodec::Raw, 40_000, raw).unwrap();
            store.put_chunks("u", DEVICE, &[blob], u64::MAX).unwrap()[0]
                .as_ref()
                .unwrap();
            ids.push(id);
        }
        // The first two are named by a document; the third was uploaded but never referenced.
        let txn = store.db.begin_write().unwrap();
        let mut refs = txn.open_table(REFS).unwrap();
        for id in &ids[..2] {
            refs.insert(("u", &id.0), ()).unwrap();
        }
        drop(refs);
        txn.commit().unwrap();

        let all = store.get_chunks("u", &ids, u64::MAX).unwrap();
        assert_eq!(all.len(), 3);
        assert!(matches!(all[0], Ok(Some(_))));
        assert!(matches!(&all[1], Ok(Some(b)) if b.bytes == vec![0u8; 40_000]));
        assert!(matches!(all[2], Ok(None)));
        // A run stops once its budget is spent, and always holds at least one blob.
        let run = store.get_chunks("u", &ids, 1).unwrap();
        assert_eq!(run.len(), 1);
        let run = store.get_chunks("u", &ids[1..], 40_001).unwrap();
        assert_eq!(run.len(), 2);
        assert!(
            store.get_chunks("other", &ids, u64::MAX).unwrap()[0]
                .as_ref()
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_batch_that_cannot_be_indexed_leaves_no_bytes_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, _, _) = store_with_blob(tmp.path());
        let len = || pack_file(tmp.path()).metadata().unwrap().len();
        let before = len();
        let raw = vec![9u8; 50_000];
        let blob = VerifiedBlob::verify(ChunkId::of(&raw), ChunkCodec::Raw, 50_000, raw).unwrap();
        // A device that is not (or no longer) the user's: the index commit refuses the batch.
        let stranger = DeviceId([8; 32]);
        assert!(store.put_chunks("u", stranger, &[blob], u64::MAX).is_err());
        assert_eq!(
            len(),
            before,
            "the refused batch's bytes are cut off the pack"
        );
        assert_eq!(store.usage("u").unwrap(), before);
    }

    #[test]
    fn a_damaged_pack_is_reported_and_never_served() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, id, _) = store_with_blob(tmp.path());
        let at = location(&store, id);
        let mut byte = [0u8; 1];
        let pack = pack_file(tmp.path());
        let middle = at.offset + u64::from(at.len) / 2;
        pack.read_exact_at(&mut byte, middle).unwrap();
        pack.write_all_at(&[byte[0] ^ 1], middle).unwrap();
        assert!(matches!(
            store.read_blob("u", id),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn entries_from_before_checksums_are_checked_by_their_hash() {
        let tmp = tempfile::tempdir().unwrap();
        let (store, id, raw) = store_with_blob(tmp.path());
        // Rewrite the entry in the layout that had no checksum.
        let at = location(&store, id);
        #[derive(Serialize)]
        struct Old(u32, u64, u32, bool, u32);
        let old = encode(&Old(at.pack, at.offset, at.len, at.zstd, at.raw_len)).unwrap();
        let txn = store.db.begin_write().unwrap();
        txn.open_table(CHUNKS)
            .unwrap()
            .insert(("u", &id.0), old.as_slice())
            .unwrap();
        txn.commit().unwrap();
        assert_eq!(location(&store, id).checksum, None);
        let blob = store.read_blob("u", id).unwrap().unwrap();
        assert_eq!(
            chunk::open(id, blob.codec, &blob.bytes, blob.raw_len).unwrap(),
            raw
        );

        let pack = pack_file(tmp.path());
        pack.write_all_at(&[0xff; 8], at.offset + u64::from(at.len) - 8)
            .unwrap();
        assert!(matches!(
            store.read_blob("u", id),
            Err(StoreError::Corrupt(_))
        ));
    }
}
