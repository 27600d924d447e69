//! The relay's live state per user: connected devices with their outgoing queues, and the
//! loaded folder documents with their [`FolderHub`]s. The relay is the user's always-on
//! Automerge peer: a device's changes are applied, persisted, acknowledged, and pushed at once to
//! every other connected device of that user (never to anyone else's).

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use cloud3_engine::ids::{ChunkId, DeviceId, FolderId};
use cloud3_engine::session::{DocOutgoing, FolderHub};
use cloud3_engine::tree::{BlobRefs, FolderDoc};
use cloud3_engine::wire::{CloseCode, ContentVerdict, ServerMessage};
use tokio::sync::mpsc;

use crate::error::StoreError;
use crate::metrics::Metrics;
use crate::scan::ScanService;
use crate::store::Storage;
use crate::store::docs::DOC_LOG_COMPACT_AT;

/// A connection's id, unique for the process's lifetime.
pub type ConnId = u64;

/// What a connection's writer task sends.
#[derive(Debug)]
pub enum Outbound {
    /// A message.
    Message(ServerMessage),
    /// Close with this code and reason.
    Close(CloseCode, String),
}

struct Conn {
    device: DeviceId,
    tx: mpsc::Sender<Outbound>,
}

struct Folder {
    doc: FolderDoc,
    hub: FolderHub<ConnId>,
    log_entries: u64,
}

#[derive(Default)]
struct UserState {
    conns: BTreeMap<ConnId, Conn>,
    folders: HashMap<String, Folder>,
}

/// Why a document operation failed.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// Storage failed or refused (e.g. the device was revoked meanwhile).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The changes were refused.
    #[error("{0}")]
    Refused(String),
}

/// All users' live state.
pub struct Hub {
    store: Arc<dyn Storage>,
    metrics: Arc<Metrics>,
    scan: Arc<ScanService>,
    users: Mutex<HashMap<String, Arc<tokio::sync::Mutex<UserState>>>>,
    next_conn: AtomicU64,
    actor: Vec<u8>,
}

impl Hub {
    /// A hub over `store`.
    pub fn new(
        store: Arc<dyn Storage>,
        metrics: Arc<Metrics>,
        scan: Arc<ScanService>,
    ) -> Result<Hub, StoreError> {
        let mut actor = store.relay_id()?[..16].to_vec();
        let mut suffix = [0u8; 8];
        getrandom::fill(&mut suffix).map_err(|e| StoreError::Random(e.to_string()))?;
        actor.extend_from_slice(&suffix);
        let hub = Hub {
            store,
            metrics,
            scan,
            users: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            actor,
        };
        hub.index_old_documents()?;
        Ok(hub)
    }

    /// Indexes the blob references of documents stored before references were kept, so their
    /// chunks stay downloadable. Runs once per folder, before the relay serves anyone.
    fn index_old_documents(&self) -> Result<(), StoreError> {
        for (user, folder) in self.store.unindexed_folders()? {
            let (bytes, _) = self.store.load_doc(&user, &folder)?;
            let refs = match FolderDoc::load(&bytes, &self.actor) {
                Ok(mut doc) => self.expand(&user, &doc.blob_refs()),
                Err(error) => {
                    tracing::warn!(%user, %folder, %error, "cannot index a document");
                    continue;
                }
            };
            self.store.index_refs(&user, &folder, &refs)?;
            tracing::info!(%user, %folder, blobs = refs.len(), "indexed blob references");
        }
        Ok(())
    }

    fn user(&self, user: &str) -> Arc<tokio::sync::Mutex<UserState>> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.entry(user.to_owned()).or_default().clone()
    }

    /// Registers a connection; returns its id, or `None` past the per-account cap.
    pub async fn connect(
        &self,
        user: &str,
        device: DeviceId,
        tx: mpsc::Sender<Outbound>,
        max_per_account: usize,
    ) -> Option<ConnId> {
        let state = self.user(user);
        let mut state = state.lock().await;
        if state.conns.len() >= max_per_account {
            return None;
        }
        let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
        // What the scan says about versions that are not plainly clean, before anything else.
        let notes = self.scan.notes(user);
        if !notes.is_empty() {
            let _ = tx.try_send(Outbound::Message(ServerMessage::Verdicts(notes)));
        }
        state.conns.insert(id, Conn { device, tx });
        self.metrics.devices_online.inc();
        presence(&state);
        Some(id)
    }

    /// Unregisters a connection, remembering what its device is known to have.
    pub async fn disconnect(&self, user: &str, conn: ConnId) {
        let state = self.user(user);
        let mut state = state.lock().await;
        let Some(gone) = state.conns.remove(&conn) else {
            return;
        };
        self.metrics.devices_online.dec();
        for (folder, f) in state.folders.iter_mut() {
            if let Some(heads) = f.hub.disconnect(conn)
                && let Err(error) = self.store.set_sync_heads(gone.device, folder, &heads)
            {
                tracing::warn!(%error, "cannot record sync heads");
            }
        }
        presence(&state);
    }

    /// A device's heads: answer with what it lacks.
    pub async fn doc_heads(
        &self,
        user: &str,
        conn: ConnId,
        folder: &FolderId,
        heads: Vec<[u8; 32]>,
    ) -> Result<(), HubError> {
        let state = self.user(user);
        let mut state = state.lock().await;
        let state = &mut *state;
        let device = match state.conns.get(&conn) {
            Some(c) => c.device,
            None => return Ok(()),
        };
        let f = self.folder(state, user, folder, conn, device)?;
        let out = f.hub.on_heads(&mut f.doc, conn, heads);
        send_all(state, folder, out);
        Ok(())
    }

    /// A device's changes: apply, persist, acknowledge, push to the user's other devices.
    pub async fn doc_changes(
        &self,
        user: &str,
        conn: ConnId,
        folder: &FolderId,
        changes: Vec<Vec<u8>>,
    ) -> Result<(), HubError> {
        let state = self.user(user);
        let mut state = state.lock().await;
        let state = &mut *state;
        let device = match state.conns.get(&conn) {
            Some(c) => c.device,
            None => return Ok(()),
        };
        let f = self.folder(state, user, folder, conn, device)?;
        let out = match f.hub.on_changes(&mut f.doc, conn, changes) {
            Ok(out) => out,
            Err(error) => {
                if f.doc.is_broken() {
                    // Everything applied before is stored: the next use reloads it.
                    tracing::warn!(%user, folder = %folder.0, "document reloaded after a hostile change");
                    state.folders.remove(&folder.0);
                }
                return Err(HubError::Refused(error.to_string()));
            }
        };
        // What the changes Automerge accepted reference, read as they were applied.
        let taken = f.doc.take_refs();
        let refs = self.expand(user, &taken);
        // New versions are recorded for the scan (under `hold`, refused from now on) before the
        // change is stored: a version stored is never one the scan does not know of.
        let new_versions = self.scan.record(user, &taken.files)?;
        let increment = f.doc.save_incremental();
        if !increment.is_empty() {
            // Durable (and checked against revocation in the same transaction) before any
            // acknowledgement or fan-out leaves.
            self.store
                .append_doc(user, &folder.0, Some(device), &increment, &refs)?;
            f.log_entries += 1;
            if f.log_entries > DOC_LOG_COMPACT_AT {
                let snapshot = f.doc.save();
                self.store.compact_doc(user, &folder.0, &snapshot)?;
                f.log_entries = 1;
            }
        }
        self.scan.queue(user, new_versions);
        send_all(state, folder, out);
        Ok(())
    }

    /// Tells every connection of `user` the scan's verdicts.
    pub async fn tell(&self, user: &str, verdicts: Vec<ContentVerdict>) {
        let state = self.user(user);
        let state = state.lock().await;
        for conn in state.conns.values() {
            let message = ServerMessage::Verdicts(verdicts.clone());
            let _ = conn.tx.try_send(Outbound::Message(message));
        }
    }

    /// Closes every open connection of `device` with `code`.
    pub async fn kick(&self, user: &str, device: DeviceId, code: CloseCode, reason: &str) {
        let state = self.user(user);
        let state = state.lock().await;
        for conn in state.conns.values().filter(|c| c.device == device) {
            let _ = conn.tx.try_send(Outbound::Close(code, reason.to_owned()));
        }
    }

    /// Devices of `user` online now.
    pub async fn online(&self, user: &str) -> Vec<DeviceId> {
        let state = self.user(user);
        let state = state.lock().await;
        state.conns.values().map(|c| c.device).collect()
    }

    /// Drops a user's live state (after `user remove`), closing their connections.
    pub async fn forget_user(&self, user: &str) {
        let state = self.user(user);
        {
            let state = state.lock().await;
            for conn in state.conns.values() {
                let _ = conn.tx.try_send(Outbound::Close(
                    CloseCode::Revoked,
                    "account removed".into(),
                ));
            }
        }
        self.users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(user);
    }

    /// Closes every connection (shutdown).
    pub async fn close_all(&self) {
        let users: Vec<_> = self
            .users
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for state in users {
            let state = state.lock().await;
            for conn in state.conns.values() {
                let _ = conn.tx.try_send(Outbound::Close(
                    CloseCode::HandshakeTimeout,
                    "relay shutting down".into(),
                ));
            }
        }
    }

    /// Blob references with the chunks of each referenced manifest the user stores (devices
    /// upload a manifest before the change that names it).
    fn expand(&self, user: &str, refs: &BlobRefs) -> Vec<ChunkId> {
        let mut all: Vec<ChunkId> = refs.all().copied().collect();
        for &manifest in &refs.manifests {
            match self.store.manifest_chunks(user, manifest) {
                Ok(chunks) => all.extend(chunks),
                // Only downloads of that file suffer; the change itself is kept.
                Err(error) => tracing::warn!(%user, %manifest, %error, "cannot read a manifest"),
            }
        }
        all
    }

    /// The loaded folder, loading it (and registering `conn`) on first use.
    fn folder<'a>(
        &self,
        state: &'a mut UserState,
        user: &str,
        folder: &FolderId,
        conn: ConnId,
        device: DeviceId,
    ) -> Result<&'a mut Folder, HubError> {
        if !state.folders.contains_key(&folder.0) {
            let (bytes, entries) = self.store.load_doc(user, &folder.0)?;
            let mut doc = if bytes.is_empty() {
                FolderDoc::new(&self.actor)
            } else {
                FolderDoc::load(&bytes, &self.actor)
                    .map_err(|e| StoreError::Corrupt(format!("document of {user}: {e}")))?
            };
            // What devices' changes reference is indexed as they are applied.
            doc.record_refs();
            state.folders.insert(
                folder.0.clone(),
                Folder {
                    doc,
                    hub: FolderHub::new(),
                    log_entries: entries,
                },
            );
        }
        let known: Vec<ConnId> = state.folders[&folder.0].hub.peers().collect();
        let f = state
            .folders
            .get_mut(&folder.0)
            .ok_or_else(|| StoreError::Corrupt("folder vanished".into()))?;
        // Every connected device of the user joins the folder's hub, so it gets pushes.
        for (&other, c) in &state.conns {
            if !known.contains(&other) {
                let heads = if other == conn {
                    self.store.sync_heads(device, &folder.0)?
                } else {
                    self.store.sync_heads(c.device, &folder.0)?
                };
                f.hub.connect(other, heads);
            }
        }
        Ok(f)
    }
}

/// Sends the hub's messages to their connections; a connection whose queue is full is closed
/// (a client that never reads must not hold anyone up).
fn send_all(state: &UserState, folder: &FolderId, out: Vec<(ConnId, DocOutgoing)>) {
    for (conn, message) in out {
        let Some(c) = state.conns.get(&conn) else {
            continue;
        };
        let message = match message {
            DocOutgoing::Heads(heads) => ServerMessage::DocHeads {
                folder: folder.clone(),
                heads,
            },
            DocOutgoing::Changes(changes) => ServerMessage::DocChanges {
                folder: folder.clone(),
                changes,
            },
        };
        if c.tx.try_send(Outbound::Message(message)).is_err() {
            let _ =
                c.tx.try_send(Outbound::Close(CloseCode::Limit, "not reading".into()));
        }
    }
}

/// Tells every connection of a user who else is online.
fn presence(state: &UserState) {
    for (id, conn) in &state.conns {
        let online: Vec<DeviceId> = state
            .conns
            .iter()
            .filter(|(other, c)| *other != id && c.device != conn.device)
            .map(|(_, c)| c.device)
            .collect();
        let _ = conn
            .tx
            .try_send(Outbound::Message(ServerMessage::Presence { online }));
    }
}
