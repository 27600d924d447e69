//! The malware scan's verdicts, per user per file version (content hash): a version is scanned
//! once however many paths or devices name it. A record keeps the version's chunk list so it
//! can be scanned again (signature database changed) and its chunks refused while it is
//! flagged or held, and the whole file's SHA-256 once scanned so a reloaded deny list is
//! checked without reading the file again.

use cloud3_engine::ids::ChunkId;
use cloud3_engine::wire::Verdict;
use redb::{ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};

use super::{Store, VERDICTS, decode, encode};
use crate::error::StoreError;

/// One file version's scan state.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictRecord {
    /// The current verdict (`Unscanned { pending }` until a scan finishes).
    pub verdict: Verdict,
    /// The version's size in bytes.
    pub size: u64,
    /// Its chunks in order.
    pub chunks: Vec<ChunkId>,
    /// The manifest blob listing them (large files), read again if it was not stored yet.
    pub manifest: Option<ChunkId>,
    /// SHA-256 of the whole file, once a scan has read it.
    pub sha256: Option<[u8; 32]>,
    /// clamd's `VERSION` answer (engine and signature database) at the last scan.
    pub signatures: Option<String>,
    /// The operator released it (a false positive): served, never scanned again.
    pub released: bool,
}

/// Each user's verdicts.
pub trait Verdicts {
    /// The record of one version.
    fn verdict(&self, user: &str, content: ChunkId) -> Result<Option<VerdictRecord>, StoreError>;

    /// Writes records (one durable transaction).
    fn put_verdicts(
        &self,
        user: &str,
        records: &[(ChunkId, VerdictRecord)],
    ) -> Result<(), StoreError>;

    /// Every record, of every user: (user, content, record).
    fn all_verdicts(&self) -> Result<Vec<(String, ChunkId, VerdictRecord)>, StoreError>;
}

impl Verdicts for Store {
    fn verdict(&self, user: &str, content: ChunkId) -> Result<Option<VerdictRecord>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let table = txn.open_table(VERDICTS).map_err(StoreError::db)?;
        match table.get((user, &content.0)).map_err(StoreError::db)? {
            Some(value) => decode(value.value()).map(Some),
            None => Ok(None),
        }
    }

    fn put_verdicts(
        &self,
        user: &str,
        records: &[(ChunkId, VerdictRecord)],
    ) -> Result<(), StoreError> {
        let user = user.to_owned();
        let encoded = records
            .iter()
            .map(|(content, record)| Ok((*content, encode(record)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write(move |txn| {
            let mut table = txn.open_table(VERDICTS).map_err(StoreError::db)?;
            for (content, bytes) in &encoded {
                table
                    .insert((user.as_str(), &content.0), bytes.as_slice())
                    .map_err(StoreError::db)?;
            }
            Ok(())
        })
    }

    fn all_verdicts(&self) -> Result<Vec<(String, ChunkId, VerdictRecord)>, StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let table = txn.open_table(VERDICTS).map_err(StoreError::db)?;
        let mut all = Vec::new();
        for row in table.iter().map_err(StoreError::db)? {
            let (key, value) = row.map_err(StoreError::db)?;
            let (user, content) = key.value();
            all.push((user.to_owned(), ChunkId(*content), decode(value.value())?));
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use cloud3_engine::wire::UnscannedReason;

    use super::*;

    #[test]
    fn a_record_encodes_byte_exact() {
        let record = VerdictRecord {
            verdict: Verdict::Clean,
            size: 300,
            chunks: vec![ChunkId([2; 32])],
            manifest: None,
            sha256: Some([9; 32]),
            signatures: Some("v".into()),
            released: true,
        };
        // Clean (0), size 300 as a varint, one chunk, no manifest, the SHA-256, "v", released.
        let mut expected = vec![0, 0xac, 0x02, 1];
        expected.extend([2; 32]);
        expected.extend([0, 1]);
        expected.extend([9; 32]);
        expected.extend([1, 1, b'v', 1]);
        assert_eq!(crate::store::encode(&record).unwrap(), expected);
    }

    #[test]
    fn verdicts_are_kept_per_user_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let record = VerdictRecord {
            verdict: Verdict::Unscanned {
                reason: UnscannedReason::Pending,
            },
            size: 5,
            chunks: vec![ChunkId([2; 32])],
            manifest: None,
            sha256: None,
            signatures: None,
            released: false,
        };
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .put_verdicts("alice", &[(ChunkId([1; 32]), record.clone())])
                .unwrap();
            assert_eq!(store.verdict("bob", ChunkId([1; 32])).unwrap(), None);
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.verdict("alice", ChunkId([1; 32])).unwrap(),
            Some(record.clone())
        );
        assert_eq!(
            store.all_verdicts().unwrap(),
            vec![("alice".to_owned(), ChunkId([1; 32]), record)]
        );
    }
}
