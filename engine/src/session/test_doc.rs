//! A plain Automerge document implementing [`SyncDoc`], for the session tests.

use automerge::{
    ActorId, AutoCommit, ChangeHash as AmHash, ROOT, ReadDoc, transaction::Transactable,
};

use super::docsync::{ChangeHash, SyncDoc, SyncDocError};

/// A plain Automerge document with a few helpers.
pub(crate) struct Doc(AutoCommit);

impl Doc {
    pub(crate) fn new(actor: u8) -> Doc {
        Doc(AutoCommit::new().with_actor(ActorId::from(vec![actor; 16])))
    }

    pub(crate) fn edit(&mut self, key: &str, value: i64) {
        self.0.put(ROOT, key, value).expect("put on root");
        self.0.commit();
    }

    pub(crate) fn value(&self, key: &str) -> Option<String> {
        self.0
            .get(ROOT, key)
            .ok()
            .flatten()
            .map(|(v, _)| v.to_string())
    }
}

impl SyncDoc for Doc {
    fn heads(&mut self) -> Vec<ChangeHash> {
        self.0.get_heads().into_iter().map(|h| h.0).collect()
    }
    fn has_change(&mut self, hash: &ChangeHash) -> bool {
        self.0.get_change_by_hash(&AmHash(*hash)).is_some()
    }
    fn changes_since(&mut self, heads: &[ChangeHash]) -> Vec<Vec<u8>> {
        let heads: Vec<_> = heads.iter().map(|h| AmHash(*h)).collect();
        self.0
            .get_changes(&heads)
            .into_iter()
            .map(|c| c.raw_bytes().to_vec())
            .collect()
    }
    fn apply_changes(&mut self, changes: Vec<Vec<u8>>) -> Result<Vec<ChangeHash>, SyncDocError> {
        let mut parsed = Vec::new();
        for bytes in changes {
            parsed.push(
                automerge::Change::from_bytes(bytes).map_err(|e| SyncDocError(e.to_string()))?,
            );
        }
        let hashes = parsed.iter().map(|c| c.hash().0).collect();
        self.0
            .apply_changes(parsed)
            .map_err(|e| SyncDocError(e.to_string()))?;
        Ok(hashes)
    }
}
