//! Which blobs each user's documents reference. A device is served only those: a chunk that
//! no version of the user's folders names (an upload whose change never came, a guessed id) is
//! never handed out.

use std::ops::Bound;

use cloud3_engine::ids::ChunkId;
use redb::{ReadableDatabase, ReadableTable, WriteTransaction};

use super::{DOC_LOG, REFS, REFS_INDEXED, Store};
use crate::error::StoreError;

/// Which blobs each user's documents reference.
pub trait References {
    /// Stored folders whose history is not in the references yet (stored by a relay that did
    /// not keep them).
    fn unindexed_folders(&self) -> Result<Vec<(String, String)>, StoreError>;

    /// Records the references of `folder`'s whole history.
    fn index_refs(&self, user: &str, folder: &str, refs: &[ChunkId]) -> Result<(), StoreError>;
}

impl References for Store {
    fn unindexed_folders(&self) -> Result<Vec<(String, String)>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let log = txn.open_table(DOC_LOG).map_err(StoreError::db)?;
        let indexed = txn.open_table(REFS_INDEXED).map_err(StoreError::db)?;
        let mut folders: Vec<(String, String)> = Vec::new();
        // One row per folder: after each, seek past the rest of that folder's log.
        let mut row = log.first().map_err(StoreError::db)?;
        while let Some((key, _)) = row {
            let (user, folder, _) = key.value();
            let (user, folder) = (user.to_owned(), folder.to_owned());
            let past = (user.as_str(), folder.as_str(), u64::MAX);
            if indexed
                .get((past.0, past.1))
                .map_err(StoreError::db)?
                .is_none()
            {
                folders.push((user.clone(), folder.clone()));
            }
            row = log
                .range::<(&str, &str, u64)>((Bound::Excluded(past), Bound::Unbounded))
                .map_err(StoreError::db)?
                .next()
                .transpose()
                .map_err(StoreError::db)?;
        }
        Ok(folders)
    }

    fn index_refs(&self, user: &str, folder: &str, refs: &[ChunkId]) -> Result<(), StoreError> {
        let (user, folder, refs) = (user.to_owned(), folder.to_owned(), refs.to_vec());
        self.write(move |txn| insert_refs(txn, &user, &folder, &refs))
    }
}

/// Adds references made by a change to `folder` inside a write transaction.
pub(crate) fn insert_refs(
    txn: &WriteTransaction,
    user: &str,
    folder: &str,
    refs: &[ChunkId],
) -> Result<(), StoreError> {
    let mut table = txn.open_table(REFS).map_err(StoreError::db)?;
    for id in refs {
        table.insert((user, &id.0), ()).map_err(StoreError::db)?;
    }
    let mut indexed = txn.open_table(REFS_INDEXED).map_err(StoreError::db)?;
    indexed.insert((user, folder), ()).map_err(StoreError::db)?;
    Ok(())
}
