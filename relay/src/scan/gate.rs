//! Which chunks are refused, per user: those of flagged versions, and under `hold` those of
//! versions not yet clean. Kept in memory (rebuilt from the verdict records at start) because
//! every `ChunkGet` asks. A chunk that several refused versions share stays refused until none
//! of them refuses it; a chunk a refused version shares with a clean one is refused too (the
//! blob cannot tell which file it is read for).

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use cloud3_engine::ids::ChunkId;
use cloud3_engine::wire::Verdict;

/// One user's refused chunks, each with the versions that refuse it and their verdicts.
type Refused = HashMap<ChunkId, BTreeMap<ChunkId, Verdict>>;

/// The refused chunks of every user.
#[derive(Debug, Default)]
pub struct Refusals {
    users: Mutex<HashMap<String, Refused>>,
}

impl Refusals {
    /// Refuses `chunks` of version `content` with `verdict` (replacing its earlier reason).
    pub fn refuse(&self, user: &str, content: ChunkId, chunks: &[ChunkId], verdict: &Verdict) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let refused = users.entry(user.to_owned()).or_default();
        for chunk in chunks {
            refused
                .entry(*chunk)
                .or_default()
                .insert(content, verdict.clone());
        }
    }

    /// Serves `chunks` of version `content` again (unless another version refuses them).
    pub fn serve(&self, user: &str, content: ChunkId, chunks: &[ChunkId]) {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let Some(refused) = users.get_mut(user) else {
            return;
        };
        for chunk in chunks {
            if let Some(versions) = refused.get_mut(chunk) {
                versions.remove(&content);
                if versions.is_empty() {
                    refused.remove(chunk);
                }
            }
        }
    }

    /// Why `chunk` is refused to `user`'s devices: the version and its verdict (a flag first).
    pub fn refusal(&self, user: &str, chunk: ChunkId) -> Option<(ChunkId, Verdict)> {
        let users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        let versions = users.get(user)?.get(&chunk)?;
        versions
            .iter()
            .find(|(_, v)| matches!(v, Verdict::Flagged { .. }))
            .or_else(|| versions.iter().next())
            .map(|(content, verdict)| (*content, verdict.clone()))
    }
}

#[cfg(test)]
mod tests {
    use cloud3_engine::wire::UnscannedReason;

    use super::*;

    #[test]
    fn a_shared_chunk_is_served_once_no_version_refuses_it() {
        let refusals = Refusals::default();
        let (a, b, shared) = (ChunkId([1; 32]), ChunkId([2; 32]), ChunkId([9; 32]));
        let pending = Verdict::Unscanned {
            reason: UnscannedReason::Pending,
        };
        let flagged = Verdict::Flagged {
            engine: "deny-list".into(),
            signature: "x".into(),
        };
        refusals.refuse("alice", a, &[shared, ChunkId([3; 32])], &pending);
        refusals.refuse("alice", b, &[shared], &flagged);
        assert_eq!(refusals.refusal("bob", shared), None, "per user");
        assert_eq!(refusals.refusal("alice", shared), Some((b, flagged)));
        refusals.serve("alice", b, &[shared]);
        assert_eq!(refusals.refusal("alice", shared), Some((a, pending)));
        refusals.serve("alice", a, &[shared, ChunkId([3; 32])]);
        assert_eq!(refusals.refusal("alice", shared), None);
        assert_eq!(refusals.refusal("alice", ChunkId([3; 32])), None);
    }
}
