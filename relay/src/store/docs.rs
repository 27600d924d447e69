//! Folder documents (an append log of Automerge saves per user and folder) and the heads each
//! device is known to have.

use cloud3_engine::ids::{ChunkId, DeviceId};
use redb::{ReadableDatabase, ReadableTable};

use super::accounts::check_active;
use super::refs::insert_refs;
use super::{DOC_LOG, SYNC_HEADS, Store, decode, encode};
use crate::error::StoreError;

/// The log is folded into one snapshot past this many entries.
pub const DOC_LOG_COMPACT_AT: u64 = 512;

/// Folder documents and what each device is known to have.
pub trait Documents {
    /// The stored document bytes (snapshot and increments concatenated), empty if none.
    fn load_doc(&self, user: &str, folder: &str) -> Result<(Vec<u8>, u64), StoreError>;

    /// Appends an incremental save, on behalf of `device` (checked active in the same
    /// transaction) or of the relay itself, with the blobs it references. Durable when this
    /// returns.
    fn append_doc(
        &self,
        user: &str,
        folder: &str,
        device: Option<DeviceId>,
        bytes: &[u8],
        refs: &[ChunkId],
    ) -> Result<(), StoreError>;

    /// Replaces the log with one snapshot.
    fn compact_doc(&self, user: &str, folder: &str, snapshot: &[u8]) -> Result<(), StoreError>;

    /// The heads `device` was known to have for `folder`.
    fn sync_heads(&self, device: DeviceId, folder: &str) -> Result<Vec<[u8; 32]>, StoreError>;

    /// Records the heads `device` is known to have.
    fn set_sync_heads(
        &self,
        device: DeviceId,
        folder: &str,
        heads: &[[u8; 32]],
    ) -> Result<(), StoreError>;
}

impl Documents for Store {
    fn load_doc(&self, user: &str, folder: &str) -> Result<(Vec<u8>, u64), StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let log = txn.open_table(DOC_LOG).map_err(StoreError::db)?;
        let mut bytes = Vec::new();
        let mut entries = 0;
        for row in log
            .range((user, folder, 0)..=(user, folder, u64::MAX))
            .map_err(StoreError::db)?
        {
            let (_, value) = row.map_err(StoreError::db)?;
            bytes.extend_from_slice(value.value());
            entries += 1;
        }
        Ok((bytes, entries))
    }

    fn append_doc(
        &self,
        user: &str,
        folder: &str,
        device: Option<DeviceId>,
        bytes: &[u8],
        refs: &[ChunkId],
    ) -> Result<(), StoreError> {
        let (user, folder, bytes, refs) = (
            user.to_owned(),
            folder.to_owned(),
            bytes.to_vec(),
            refs.to_vec(),
        );
        self.write(move |txn| {
            if let Some(device) = device {
                check_active(txn, &user, device)?;
            }
            insert_refs(txn, &user, &folder, &refs)?;
            let mut log = txn.open_table(DOC_LOG).map_err(StoreError::db)?;
            let (user, folder) = (user.as_str(), folder.as_str());
            let next = match log
                .range((user, folder, 0)..=(user, folder, u64::MAX))
                .map_err(StoreError::db)?
                .next_back()
            {
                Some(row) => row.map_err(StoreError::db)?.0.value().2 + 1,
                None => 0,
            };
            log.insert((user, folder, next), bytes.as_slice())
                .map_err(StoreError::db)?;
            Ok(())
        })
    }

    fn compact_doc(&self, user: &str, folder: &str, snapshot: &[u8]) -> Result<(), StoreError> {
        let (user, folder, snapshot) = (user.to_owned(), folder.to_owned(), snapshot.to_vec());
        self.write(move |txn| {
            let mut log = txn.open_table(DOC_LOG).map_err(StoreError::db)?;
            let (user, folder) = (user.as_str(), folder.as_str());
            log.retain_in((user, folder, 0)..=(user, folder, u64::MAX), |_, _| false)
                .map_err(StoreError::db)?;
            log.insert((user, folder, 0), snapshot.as_slice())
                .map_err(StoreError::db)?;
            Ok(())
        })
    }

    fn sync_heads(&self, device: DeviceId, folder: &str) -> Result<Vec<[u8; 32]>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let table = txn.open_table(SYNC_HEADS).map_err(StoreError::db)?;
        match table.get((&device.0, folder)).map_err(StoreError::db)? {
            Some(value) => decode(value.value()),
            None => Ok(Vec::new()),
        }
    }

    fn set_sync_heads(
        &self,
        device: DeviceId,
        folder: &str,
        heads: &[[u8; 32]],
    ) -> Result<(), StoreError> {
        let (folder, heads) = (folder.to_owned(), encode(&heads.to_vec())?);
        self.write(move |txn| {
            let mut table = txn.open_table(SYNC_HEADS).map_err(StoreError::db)?;
            table
                .insert((&device.0, folder.as_str()), heads.as_slice())
                .map_err(StoreError::db)?;
            Ok(())
        })
    }
}
