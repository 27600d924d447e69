//! The relay's side of one folder: the always-on peer every device of the user syncs with.
//!
//! A [`FolderHub`] holds one [`PeerSync`] per connected device. Changes from one device are applied
//! once, acknowledged to the sender with the new heads, and pushed at once to every other connected
//! device (the "pull hint" is the changes themselves, only what each device lacks). The shell must
//! persist the document after [`FolderHub::on_changes`] succeeds and before it sends anything the
//! call returned: an acknowledgement means the changes are durable.

use std::collections::BTreeMap;

use super::docsync::{ChangeHash, DocOutgoing, PeerSync, SyncDoc, SyncDocError};

/// Sync state of one folder at the relay, for all connected devices of its user.
#[derive(Debug)]
pub struct FolderHub<K: Ord + Copy> {
    peers: BTreeMap<K, PeerSync>,
}

impl<K: Ord + Copy> Default for FolderHub<K> {
    fn default() -> Self {
        FolderHub {
            peers: BTreeMap::new(),
        }
    }
}

impl<K: Ord + Copy> FolderHub<K> {
    /// A hub with no device connected.
    pub fn new() -> FolderHub<K> {
        FolderHub::default()
    }

    /// A device connected; `their_heads` is what it was known to have last time (may be empty).
    pub fn connect(&mut self, peer: K, their_heads: Vec<ChangeHash>) {
        self.peers
            .insert(peer, PeerSync::with_their_heads(their_heads));
    }

    /// A device disconnected; returns the heads it is known to have, for the shell to store.
    pub fn disconnect(&mut self, peer: K) -> Option<Vec<ChangeHash>> {
        self.peers.remove(&peer).map(|sync| sync.confirmed_heads())
    }

    /// Connected devices.
    pub fn peers(&self) -> impl Iterator<Item = K> + '_ {
        self.peers.keys().copied()
    }

    /// A device sent its heads: answer with what it lacks (and ask for what we lack).
    pub fn on_heads(
        &mut self,
        doc: &mut impl SyncDoc,
        peer: K,
        heads: Vec<ChangeHash>,
    ) -> Vec<(K, DocOutgoing)> {
        let sync = self.peers.entry(peer).or_default();
        sync.on_heads(doc, heads)
            .into_iter()
            .map(|message| (peer, message))
            .collect()
    }

    /// A device sent changes: apply, acknowledge, and push them to every other connected device.
    pub fn on_changes(
        &mut self,
        doc: &mut impl SyncDoc,
        peer: K,
        changes: Vec<Vec<u8>>,
    ) -> Result<Vec<(K, DocOutgoing)>, SyncDocError> {
        let sync = self.peers.entry(peer).or_default();
        let mut out: Vec<_> = sync
            .on_changes(doc, changes)?
            .into_iter()
            .map(|message| (peer, message))
            .collect();
        out.extend(self.broadcast(doc, Some(peer)));
        Ok(out)
    }

    /// The document changed outside any device (e.g. the relay wrote to it): push to everyone.
    pub fn on_local_change(&mut self, doc: &mut impl SyncDoc) -> Vec<(K, DocOutgoing)> {
        self.broadcast(doc, None)
    }

    fn broadcast(&mut self, doc: &mut impl SyncDoc, except: Option<K>) -> Vec<(K, DocOutgoing)> {
        let mut out = Vec::new();
        for (&other, sync) in self.peers.iter_mut() {
            if Some(other) == except {
                continue;
            }
            out.extend(
                sync.on_local_change(doc)
                    .into_iter()
                    .map(|message| (other, message)),
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::test_doc::Doc;

    fn deliver_to_device(
        doc: &mut Doc,
        sync: &mut PeerSync,
        message: DocOutgoing,
    ) -> Vec<DocOutgoing> {
        match message {
            DocOutgoing::Heads(heads) => sync.on_heads(doc, heads),
            DocOutgoing::Changes(changes) => sync.on_changes(doc, changes).expect("valid changes"),
        }
    }

    #[test]
    fn a_change_from_one_device_reaches_the_other_connected_device_at_once() {
        let mut relay = Doc::new(0);
        let mut hub = FolderHub::new();
        let mut devices = [Doc::new(1), Doc::new(2)];
        let mut syncs = [PeerSync::new(), PeerSync::new()];
        hub.connect(0usize, Vec::new());
        hub.connect(1usize, Vec::new());

        devices[0].edit("hello", 1);
        let mut queue: Vec<(usize, DocOutgoing)> = syncs[0]
            .on_local_change(&mut devices[0])
            .into_iter()
            .map(|m| (0, m))
            .collect();
        // Alternate: device messages go to the hub, hub messages go to devices.
        let mut rounds = 0;
        while let Some((from, message)) = queue.pop() {
            rounds += 1;
            assert!(rounds < 50, "no quiescence");
            let replies = match message {
                DocOutgoing::Heads(heads) => hub.on_heads(&mut relay, from, heads),
                DocOutgoing::Changes(changes) => {
                    hub.on_changes(&mut relay, from, changes).expect("valid")
                }
            };
            for (to, reply) in replies {
                let back = deliver_to_device(&mut devices[to], &mut syncs[to], reply);
                queue.extend(back.into_iter().map(|m| (to, m)));
            }
        }
        assert_eq!(devices[1].value("hello"), Some("1".into()));
        assert_eq!(relay.value("hello"), Some("1".into()));
    }

    #[test]
    fn disconnect_returns_the_heads_to_remember() {
        let mut relay = Doc::new(0);
        relay.edit("x", 1);
        let heads = relay.heads();
        let mut hub = FolderHub::new();
        hub.connect(7u32, heads.clone());
        assert_eq!(hub.disconnect(7), Some(heads));
        assert_eq!(hub.disconnect(7), None);
    }
}
