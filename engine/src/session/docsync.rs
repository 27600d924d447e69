//! Document sync with one peer: heads out, missing changes back.
//!
//! Each side remembers which heads the peer is known to have (`their_heads`). A `Heads` message says
//! "this is what I have"; the receiver answers with every change the sender lacks (computed from the
//! heads it recognises plus what it already knew the peer had) and, when the sender had changes it
//! does not recognise, with its own heads so the sender can do the same. Applying changes is
//! acknowledged with the new heads. Two peers reach equal heads in a bounded number of rounds, and
//! bytes on the wire stay proportional to the changes exchanged: this is the fix for Automerge's
//! sync generator, which sends the whole document when the peer lacks many changes.

use std::collections::BTreeSet;

use crate::ids::FolderId;
use crate::wire::ClientMessage;
use crate::wire::limits::MAX_CHANGES_BYTES;

/// A change hash.
pub type ChangeHash = [u8; 32];

/// Why a document refused changes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("changes refused: {0}")]
pub struct SyncDocError(pub String);

/// What [`PeerSync`] needs of a document.
pub trait SyncDoc {
    /// Current heads.
    fn heads(&mut self) -> Vec<ChangeHash>;
    /// Whether this change is in the document.
    fn has_change(&mut self, hash: &ChangeHash) -> bool;
    /// Raw bytes of every change not among `heads` or their ancestors, in causal order.
    fn changes_since(&mut self, heads: &[ChangeHash]) -> Vec<Vec<u8>>;
    /// Validates and applies raw changes; returns the hashes of the changes given.
    fn apply_changes(&mut self, changes: Vec<Vec<u8>>) -> Result<Vec<ChangeHash>, SyncDocError>;
}

/// A message for the peer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DocOutgoing {
    /// Send `DocHeads`.
    Heads(Vec<ChangeHash>),
    /// Send `DocChanges` (already split to fit one message each).
    Changes(Vec<Vec<u8>>),
}

impl DocOutgoing {
    /// The message a device sends for this, about `folder`.
    pub fn into_client(self, folder: FolderId) -> ClientMessage {
        match self {
            DocOutgoing::Heads(heads) => ClientMessage::DocHeads { folder, heads },
            DocOutgoing::Changes(changes) => ClientMessage::DocChanges { folder, changes },
        }
    }
}

/// Sync state for one document and one peer.
///
/// Within a connection the transport is ordered and reliable, so changes sent are assumed to
/// arrive (`their_heads` is optimistic). Across connections only what the peer proved it has
/// counts: heads it reported and changes it sent us ([`PeerSync::confirmed_heads`]); that is what
/// callers save and hand to [`PeerSync::with_their_heads`] on the next connection, so changes
/// lost with a dropped connection are sent again.
#[derive(Clone, Debug, Default)]
pub struct PeerSync {
    their_heads: BTreeSet<ChangeHash>,
    /// Heads the peer is proven to have (reported by it or received from it).
    confirmed: BTreeSet<ChangeHash>,
    /// Unknown heads the peer reported that we already asked for with our heads.
    requested_for: BTreeSet<ChangeHash>,
    /// The heads we last told the peer.
    told: Option<BTreeSet<ChangeHash>>,
    /// Our heads when we last pushed changes on this connection: the peer has them once what
    /// is in flight arrives (the transport is ordered), whatever heads it reports meanwhile.
    pushed: BTreeSet<ChangeHash>,
}

impl PeerSync {
    /// A peer we know nothing about.
    pub fn new() -> PeerSync {
        PeerSync::default()
    }

    /// A peer known to have (at least) these heads, e.g. its confirmed heads restored from
    /// storage.
    pub fn with_their_heads(heads: impl IntoIterator<Item = ChangeHash>) -> PeerSync {
        let heads: BTreeSet<ChangeHash> = heads.into_iter().collect();
        PeerSync {
            their_heads: heads.clone(),
            confirmed: heads,
            requested_for: BTreeSet::new(),
            told: None,
            pushed: BTreeSet::new(),
        }
    }

    /// Heads the peer has proven to have: safe to save and resume from after a disconnect.
    pub fn confirmed_heads(&self) -> Vec<ChangeHash> {
        self.confirmed.iter().copied().collect()
    }

    /// The first message of a round: our heads.
    pub fn start(&mut self, doc: &mut impl SyncDoc) -> Vec<DocOutgoing> {
        self.requested_for.clear();
        vec![self.tell(doc)]
    }

    /// The peer told us its heads. The answer carries what it lacks, and our heads unless they
    /// equal its heads and we told it them already (so a round always ends with both sides
    /// having heard the other's final heads, and never loops).
    pub fn on_heads(&mut self, doc: &mut impl SyncDoc, heads: Vec<ChangeHash>) -> Vec<DocOutgoing> {
        let theirs: BTreeSet<ChangeHash> = heads.iter().copied().collect();
        let (known, unknown): (Vec<_>, Vec<_>) = heads.into_iter().partition(|h| doc.has_change(h));
        if unknown.is_empty() {
            // They have exactly these heads and their ancestors, and soon what we pushed after
            // them (an answer to part of a long push must not send the rest again).
            self.their_heads = known.iter().chain(&self.pushed).copied().collect();
            self.confirmed = known.into_iter().collect();
        } else {
            self.their_heads.extend(known.iter().copied());
            self.their_heads.retain(|h| doc.has_change(h));
            self.confirmed.extend(known);
            self.confirmed.retain(|h| doc.has_change(h));
        }
        let mut out = self.push(doc);
        let fresh: Vec<_> = unknown
            .into_iter()
            .filter(|h| !self.requested_for.contains(h))
            .collect();
        let ours: BTreeSet<ChangeHash> = doc.heads().into_iter().collect();
        let already_told = self.told.as_ref() == Some(&ours);
        if !fresh.is_empty() || theirs != ours || !already_told {
            // They have changes we lack (our heads ask for them), or they have not heard our
            // current heads yet.
            self.requested_for.extend(fresh);
            if !(theirs == ours && already_told) {
                out.push(self.tell(doc));
            }
        }
        out
    }

    fn tell(&mut self, doc: &mut impl SyncDoc) -> DocOutgoing {
        let heads = doc.heads();
        self.told = Some(heads.iter().copied().collect());
        DocOutgoing::Heads(heads)
    }

    /// The peer sent changes. On success the answer acknowledges them with our new heads.
    pub fn on_changes(
        &mut self,
        doc: &mut impl SyncDoc,
        changes: Vec<Vec<u8>>,
    ) -> Result<Vec<DocOutgoing>, SyncDocError> {
        let applied = doc.apply_changes(changes)?;
        // The sender has what it sent us.
        self.their_heads.extend(applied.iter().copied());
        self.confirmed.extend(applied);
        self.requested_for.retain(|h| !doc.has_change(h));
        Ok(vec![self.tell(doc)])
    }

    /// Our document changed (a local commit, or changes merged from another peer): send what the
    /// peer lacks.
    pub fn on_local_change(&mut self, doc: &mut impl SyncDoc) -> Vec<DocOutgoing> {
        self.push(doc)
    }

    fn push(&mut self, doc: &mut impl SyncDoc) -> Vec<DocOutgoing> {
        let have: Vec<_> = self.their_heads.iter().copied().collect();
        let changes = doc.changes_since(&have);
        if changes.is_empty() {
            return Vec::new();
        }
        // Optimistic: the transport is ordered and reliable while connected; a reconnect starts a
        // new round from the peer's real heads.
        self.their_heads = doc.heads().into_iter().collect();
        self.pushed = self.their_heads.clone();
        split_changes(changes)
            .into_iter()
            .map(DocOutgoing::Changes)
            .collect()
    }
}

/// Splits changes into groups whose total size fits one message. A single change larger than the
/// limit travels alone (callers keep commits small; the receiver refuses oversized frames).
pub fn split_changes(changes: Vec<Vec<u8>>) -> Vec<Vec<Vec<u8>>> {
    let mut groups: Vec<Vec<Vec<u8>>> = Vec::new();
    let mut size = 0usize;
    for change in changes {
        let fits = size + change.len() <= MAX_CHANGES_BYTES;
        match groups.last_mut() {
            Some(group) if fits => {
                size += change.len();
                group.push(change);
            }
            _ => {
                size = change.len();
                groups.push(vec![change]);
            }
        }
    }
    groups
}

#[cfg(test)]
mod tests;
