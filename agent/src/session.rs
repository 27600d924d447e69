//! One connected session with the relay: the exchange that brings the folder and the relay up to
//! date both ways, and the handling of every message the relay sends.
//!
//! Invariants: blobs are uploaded before any document change that references them is sent; remote
//! changes are persisted before they are acknowledged; local edits are scanned into the document
//! before remote changes are materialised, so a concurrent edit is a conflict, never an overwrite.

use std::collections::HashSet;
use std::time::Duration;

use cloud3_engine::ids::{DeviceId, FolderId};
use cloud3_engine::session::DocOutgoing;
use cloud3_engine::wire::{ClientMessage, ContentVerdict, ServerMessage, Verdict};

use crate::apply;
use crate::error::AgentError;
use crate::status::Status;
use crate::syncer::Syncer;
use crate::transfer::Link;

/// How long `sync` waits for the relay without any progress.
pub const QUIET_TIMEOUT: Duration = Duration::from_secs(120);

/// Upload passes (each followed by a rescan of what changed meanwhile) before giving up for now.
const MAX_UPLOAD_PASSES: usize = 5;

/// Plans applied by one materialise when actions were skipped (each after a rescan).
const MATERIALISE_PASSES: usize = 3;

/// A connected session.
pub struct Session {
    /// The connection.
    pub link: Link,
    /// The relay's last reported heads.
    relay_heads: Option<Vec<[u8; 32]>>,
    /// Other devices of the user online now.
    pub online: Vec<DeviceId>,
    folder: FolderId,
    /// Document changes were sent that the relay has not yet shown it holds.
    unacknowledged: bool,
}

impl Session {
    /// Starts a session: uploads what is pending and sends our heads.
    pub async fn start(syncer: &mut Syncer, link: Link) -> Result<Session, AgentError> {
        syncer.learn_window(link.window())?;
        // The relay tells its verdicts anew on every connection.
        syncer.verdicts.clear();
        syncer.refused.clear();
        let mut session = Session {
            link,
            relay_heads: None,
            online: Vec::new(),
            folder: FolderId(syncer.config.folder.clone()),
            unacknowledged: false,
        };
        session.upload(syncer).await?;
        let out = syncer.relay.start(&mut syncer.doc);
        session.send_doc(syncer, out).await?;
        // The account's devices by name, for `status` (answered with `Devices`).
        session.link.send(&ClientMessage::ListDevices).await?;
        Ok(session)
    }

    /// Whether the relay has exactly our document.
    pub fn in_sync(&self, syncer: &mut Syncer) -> bool {
        let Some(relay) = &self.relay_heads else {
            return false;
        };
        let mut ours = syncer.doc.heads();
        let mut theirs = relay.clone();
        ours.sort();
        theirs.sort();
        ours == theirs && syncer.joined && syncer.pending.is_empty() && !self.link.has_deferred()
    }

    /// Local changes were recorded: upload their blobs, then send the changes.
    pub async fn push(&mut self, syncer: &mut Syncer) -> Result<(), AgentError> {
        self.upload(syncer).await?;
        let out = syncer.relay.on_local_change(&mut syncer.doc);
        self.send_doc(syncer, out).await
    }

    /// Handles one message from the relay.
    pub async fn handle(
        &mut self,
        syncer: &mut Syncer,
        message: ServerMessage,
        status: &mut Status,
    ) -> Result<(), AgentError> {
        tracing::debug!(message = ?brief(&message), "from relay");
        match message {
            ServerMessage::DocHeads { folder, heads } if folder == self.folder => {
                self.relay_heads = Some(heads.clone());
                let out = syncer.relay.on_heads(&mut syncer.doc, heads);
                self.send_doc(syncer, out).await?;
                syncer.persist()?;
                self.join_when_caught_up(syncer).await?;
                self.note_agreement(syncer, status);
            }
            ServerMessage::DocChanges { folder, changes } if folder == self.folder => {
                // Record local edits first, so they are concurrent with what arrives.
                if syncer.scan(&HashSet::new())? {
                    self.push(syncer).await?;
                }
                // A catch-up arrives as many messages: apply all that are already here, then
                // acknowledge and materialise once (not once per message, which re-derived the
                // tree and rewalked the folder for each).
                let mut batches = vec![changes];
                while let Some(next) = self.link.recv_ready().await? {
                    match next {
                        ServerMessage::DocChanges { folder, changes } if folder == self.folder => {
                            batches.push(changes);
                        }
                        other => {
                            self.link.put_back(other);
                            break;
                        }
                    }
                }
                let mut out = Vec::new();
                for changes in batches {
                    // Each answer acknowledges everything so far: only the last is sent.
                    out = syncer
                        .relay
                        .on_changes(&mut syncer.doc, changes)
                        .map_err(|e| AgentError::Protocol(e.to_string()))?;
                }
                syncer.persist()?;
                self.send_doc(syncer, out).await?;
                self.materialise(syncer).await?;
                self.join_when_caught_up(syncer).await?;
                status.sync.last_download = Some(crate::syncer::wall_now().0);
                self.note_agreement(syncer, status);
            }
            ServerMessage::Presence { online } => {
                status.presence(&online, crate::syncer::wall_now().0);
                self.online = online;
                if status.unnamed_devices() {
                    // Names (and devices never seen online) come from the relay's list.
                    self.link.send(&ClientMessage::ListDevices).await?;
                }
            }
            ServerMessage::Devices(list) => {
                let me = syncer.device.short().to_string();
                status.device_list(&list, &me, crate::syncer::wall_now().0);
            }
            ServerMessage::Error { code, message } => {
                tracing::warn!(?code, message, "relay reported an error");
            }
            ServerMessage::Pong(_) => {}
            ServerMessage::Verdicts(verdicts) => {
                if self.verdicts(syncer, verdicts)? {
                    self.materialise(syncer).await?;
                }
            }
            other => tracing::debug!(?other, "ignoring message"),
        }
        Ok(())
    }

    /// Takes the relay's scan verdicts: a flagged version this device holds goes to quarantine;
    /// returns whether a version it refused before is now served (so it is fetched).
    fn verdicts(
        &mut self,
        syncer: &mut Syncer,
        verdicts: Vec<ContentVerdict>,
    ) -> Result<bool, AgentError> {
        let mut cleared = false;
        for ContentVerdict { content, verdict } in verdicts {
            match &verdict {
                Verdict::Clean => {
                    syncer.verdicts.remove(&content);
                    cleared |= syncer.refused.remove(&content);
                }
                Verdict::Flagged { engine, signature } => {
                    syncer.refused.insert(content);
                    let moved = crate::quarantine::flagged(syncer, content, engine, signature)?;
                    if !moved.is_empty() {
                        tracing::warn!(files = ?moved, engine, signature, "quarantined");
                    }
                    syncer.verdicts.insert(content, verdict);
                }
                Verdict::Unscanned { .. } => {
                    syncer.verdicts.insert(content, verdict);
                }
            }
        }
        Ok(cleared)
    }

    /// Records when the folder and the relay agree, and when the relay has shown it holds
    /// changes this device sent.
    fn note_agreement(&mut self, syncer: &mut Syncer, status: &mut Status) {
        if self.in_sync(syncer) {
            let now = crate::syncer::wall_now().0;
            status.sync.last_in_sync = Some(now);
            if std::mem::take(&mut self.unacknowledged) {
                status.sync.last_upload = Some(now);
            }
        }
    }

    /// Joins the folder once this device holds every change the relay last reported, with the
    /// first scan (now against everything the relay had: files this folder already held that
    /// the document has too are the document's nodes).
    async fn join_when_caught_up(&mut self, syncer: &mut Syncer) -> Result<(), AgentError> {
        let Some(heads) = &self.relay_heads else {
            return Ok(());
        };
        if syncer.joined || !heads.iter().all(|h| syncer.doc.has_change(h)) {
            return Ok(());
        }
        syncer.join()?;
        tracing::info!("joined the folder's document; scanning the folder");
        if syncer.scan(&HashSet::new())? {
            self.push(syncer).await?;
        }
        self.materialise(syncer).await
    }

    /// Brings the disk to the document's state. Actions skipped because the disk changed since
    /// the last scan are planned again after a rescan records what changed, a bounded number of
    /// times: a skip never waits for some later message or timer to be retried. What is still
    /// skipped after that (a file still being written) is retried when its writer closes it
    /// (the watcher's event scans it, see [`Session::scanned`]).
    pub async fn materialise(&mut self, syncer: &mut Syncer) -> Result<(), AgentError> {
        for _ in 0..MATERIALISE_PASSES {
            let actions = syncer.plan();
            if actions.is_empty() {
                syncer.skipped_actions = false;
                syncer.no_room.clear();
                // Nothing left to download: no partial download is wanted any more.
                return crate::partial::clean(&syncer.state);
            }
            tracing::debug!(actions = ?crate::logging::Head(&actions), "materialising");
            let applied = apply::apply(syncer, Some(&mut self.link), actions).await?;
            // Versions the relay refused are not planned again until a verdict clears them.
            for (content, verdict) in self.link.refused.drain(..) {
                syncer.refused.insert(content);
                syncer.verdicts.entry(content).or_insert(verdict);
            }
            tracing::info!(
                done = applied.done,
                skipped = applied.skipped,
                "materialised"
            );
            if applied.skipped == 0 {
                syncer.skipped_actions = false;
                return Ok(());
            }
            if syncer.scan(&HashSet::new())? {
                self.push(syncer).await?;
            }
        }
        syncer.skipped_actions = true;
        Ok(())
    }

    /// A local scan ran: what it recorded goes to the relay, and the disk is brought to the
    /// merged document (a recorded edit can call for a conflict copy or a move on disk, and
    /// actions skipped earlier while a file was being written can now be done, and files the
    /// disk had no room for may fit now).
    pub async fn scanned(&mut self, syncer: &mut Syncer, changed: bool) -> Result<(), AgentError> {
        if changed {
            self.push(syncer).await?;
        }
        if changed || syncer.skipped_actions || !syncer.no_room.is_empty() {
            self.materialise(syncer).await?;
        }
        Ok(())
    }

    /// Receives the next message.
    pub async fn recv(&mut self) -> Result<ServerMessage, AgentError> {
        self.link.recv().await
    }

    async fn upload(&mut self, syncer: &mut Syncer) -> Result<(), AgentError> {
        for _ in 0..MAX_UPLOAD_PASSES {
            let stale = self.link.upload(syncer).await?;
            if stale.is_empty() {
                return Ok(());
            }
            // Files changed or moved while uploading: scan them again, then upload the new
            // chunks and the old ones from wherever they are now.
            syncer.scan(&stale.into_iter().collect())?;
            syncer.repoint_pending();
        }
        // Files that keep changing under the upload: what is still pending goes with the next
        // session, and the document waits for it.
        Err(AgentError::Protocol(
            "files kept changing during the upload; retrying later".into(),
        ))
    }

    async fn send_doc(
        &mut self,
        syncer: &mut Syncer,
        out: Vec<DocOutgoing>,
    ) -> Result<(), AgentError> {
        for message in out {
            if matches!(message, DocOutgoing::Changes(_)) {
                self.upload(syncer).await?;
                self.unacknowledged = true;
            }
            self.link
                .send(&message.into_client(self.folder.clone()))
                .await?;
        }
        Ok(())
    }
}

/// A short description of a message for logs.
fn brief(message: &ServerMessage) -> String {
    match message {
        ServerMessage::DocHeads { heads, .. } => format!("DocHeads({})", heads.len()),
        ServerMessage::DocChanges { changes, .. } => format!("DocChanges({})", changes.len()),
        other => format!("{other:?}").chars().take(80).collect(),
    }
}
