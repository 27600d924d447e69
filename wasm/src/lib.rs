//! cloud3's engine in the browser: the viewer page's device.
//!
//! [`Viewer`] is a state machine like the engine's sessions: the page owns the WebSocket, hands
//! every binary frame to [`Viewer::receive`] and sends the frames it returns. Everything a
//! device does to read a folder happens here: the device key, the signed handshake, document
//! sync with the relay, listing the tree, fetching a file's chunks, verifying each chunk's
//! SHA-256, decompressing (pure-Rust zstd) and reassembling, and a node's versions. What the page
//! should show arrives as events ([`Viewer::events`]), JSON objects with a `kind`.

use std::collections::{HashMap, HashSet};

use cloud3_engine::auth::DeviceKey;
use cloud3_engine::auth::challenge::sign_hello;
use cloud3_engine::chunk::{self, ChunkError, Manifest};
use cloud3_engine::ids::{ChunkId, FolderId, NodeId};
use cloud3_engine::session::{DocOutgoing, PeerSync};
use cloud3_engine::time::WallTime;
use cloud3_engine::tree::{Content, ContentBody, FolderDoc, NodeKind};
use cloud3_engine::wire::limits::MAX_IDS_PER_MESSAGE;
use cloud3_engine::wire::{
    AuthProof, ClientMessage, CloseCode, ContentVerdict, ServerMessage, Verdict, decode_server,
    encode_client,
};
use serde_json::{Value, json};
use wasm_bindgen::prelude::*;

/// A file being opened: its content and, once fetched, its chunk list.
struct Opening {
    content: Content,
    manifest: Option<Manifest>,
    ready: bool,
}

/// The browser's device: key, document replica and fetched blobs.
#[wasm_bindgen]
pub struct Viewer {
    key: DeviceKey,
    user: String,
    enrol: Option<(String, String)>,
    doc: FolderDoc,
    relay: PeerSync,
    folder: FolderId,
    read_only: bool,
    /// Encoded bytes of blobs arriving in pieces.
    pieces: HashMap<ChunkId, Vec<u8>>,
    /// Verified raw blobs.
    blobs: HashMap<ChunkId, Vec<u8>>,
    requested: HashSet<ChunkId>,
    /// Files being opened, by content hash.
    opening: HashMap<ChunkId, Opening>,
    /// The relay's scan verdicts on versions that are not plainly clean, by content hash.
    verdicts: HashMap<ChunkId, Verdict>,
    events: Vec<Value>,
    /// The account's retention window in days and how far the relay's clock runs ahead of the
    /// browser's (ms), from the relay's `Welcome`.
    window: Option<(u32, i64)>,
}

fn error(message: impl std::fmt::Display) -> JsError {
    JsError::new(&message.to_string())
}

fn frames(messages: Vec<ClientMessage>) -> js_sys::Array {
    messages
        .iter()
        .map(|m| js_sys::Uint8Array::from(encode_client(m).as_slice()))
        .collect()
}

fn now() -> WallTime {
    WallTime(js_sys::Date::now() as i64)
}

#[wasm_bindgen]
impl Viewer {
    /// A viewer for `user` with the device key `secret_hex` (64 hex digits), or a new key from
    /// the browser's randomness when it is empty.
    #[wasm_bindgen(constructor)]
    pub fn new(secret_hex: &str, user: &str) -> Result<Viewer, JsError> {
        let secret: [u8; 32] = if secret_hex.is_empty() {
            let mut secret = [0u8; 32];
            getrandom::fill(&mut secret).map_err(|e| error(format!("no randomness: {e}")))?;
            secret
        } else {
            hex::decode(secret_hex)
                .ok()
                .and_then(|bytes| bytes.try_into().ok())
                .ok_or_else(|| error("the stored device key is not 64 hex digits"))?
        };
        let key = DeviceKey::from_secret(secret);
        let actor = key.device_id().0[..16].to_vec();
        Ok(Viewer {
            key,
            user: user.to_owned(),
            enrol: None,
            doc: FolderDoc::new(&actor),
            relay: PeerSync::new(),
            folder: FolderId::default_folder(),
            read_only: true,
            pieces: HashMap::new(),
            blobs: HashMap::new(),
            requested: HashSet::new(),
            opening: HashMap::new(),
            verdicts: HashMap::new(),
            events: Vec::new(),
            window: None,
        })
    }

    /// The device key, to keep in the browser's storage.
    #[wasm_bindgen(js_name = secretHex)]
    pub fn secret_hex(&self) -> String {
        hex::encode(self.key.secret())
    }

    /// This device's id (its public key), hex.
    #[wasm_bindgen(js_name = deviceId)]
    pub fn device_id(&self) -> String {
        self.key.device_id().to_hex()
    }

    /// The next handshake enrols this device with a (read-only) pairing code.
    #[wasm_bindgen(js_name = enrolWith)]
    pub fn enrol_with(&mut self, code: &str, device_name: &str) {
        self.enrol = Some((code.trim().to_owned(), device_name.to_owned()));
    }

    /// Whether the relay treats this device as read-only.
    #[wasm_bindgen(js_name = readOnly)]
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// Handles one binary frame from the relay; returns the frames to send back.
    pub fn receive(&mut self, frame: &[u8]) -> Result<js_sys::Array, JsError> {
        let message =
            decode_server(frame).map_err(|e| error(format!("unreadable message: {e}")))?;
        let out = self.handle(message)?;
        Ok(frames(out))
    }

    fn handle(&mut self, message: ServerMessage) -> Result<Vec<ClientMessage>, JsError> {
        Ok(match message {
            ServerMessage::Challenge {
                relay_id, nonce, ..
            } => {
                let proof = match self.enrol.take() {
                    Some((code, device_name)) => AuthProof::Enrol { code, device_name },
                    None => AuthProof::Device,
                };
                let hello = sign_hello(&self.key, &relay_id, &nonce, &self.user, proof);
                vec![ClientMessage::Hello(hello)]
            }
            ServerMessage::Welcome {
                read_only,
                now: relay_now,
                retention_days,
                ..
            } => {
                self.read_only = read_only;
                self.window = Some((retention_days, relay_now.0.saturating_sub(now().0)));
                self.events
                    .push(json!({"kind": "welcome", "readOnly": read_only}));
                let out = self.relay.start(&mut self.doc);
                self.doc_messages(out)
            }
            ServerMessage::DocHeads { folder, heads } if folder == self.folder => {
                let out = self.relay.on_heads(&mut self.doc, heads);
                self.doc_messages(out)
            }
            ServerMessage::DocChanges { folder, changes } if folder == self.folder => {
                let out = self
                    .relay
                    .on_changes(&mut self.doc, changes)
                    .map_err(|e| error(format!("the relay sent changes that were refused: {e}")))?;
                self.events.push(json!({"kind": "tree"}));
                self.doc_messages(out)
            }
            ServerMessage::ChunkData(piece) => {
                let bytes = self.pieces.entry(piece.id).or_default();
                if piece.offset as usize != bytes.len() {
                    self.pieces.remove(&piece.id);
                    self.requested.remove(&piece.id);
                    self.fail(format!("chunk {} arrived out of order", piece.id));
                    return Ok(Vec::new());
                }
                bytes.extend_from_slice(&piece.data);
                if bytes.len() < piece.encoded_len as usize {
                    return Ok(Vec::new());
                }
                let encoded = self.pieces.remove(&piece.id).unwrap_or_default();
                match chunk::open(piece.id, piece.codec, &encoded, piece.raw_len) {
                    Ok(raw) => {
                        self.blobs.insert(piece.id, raw);
                    }
                    Err(ChunkError::HashMismatch { id }) => {
                        self.events.push(json!({
                            "kind": "error",
                            "code": "hash-mismatch",
                            "message": format!("chunk {id} does not match its SHA-256: refused"),
                        }));
                    }
                    Err(e) => self.fail(e.to_string()),
                }
                self.progress()
            }
            ServerMessage::ChunkUnavailable { id } => {
                self.fail(format!("the relay does not have chunk {id}"));
                Vec::new()
            }
            ServerMessage::ChunkRefused {
                id,
                content,
                verdict,
            } => {
                self.requested.remove(&id);
                self.opening.remove(&content);
                self.events.push(json!({
                    "kind": "error",
                    "code": "refused",
                    "message": format!("the relay refuses this file: {verdict}"),
                }));
                self.verdicts.insert(content, verdict);
                self.events.push(json!({"kind": "tree"}));
                Vec::new()
            }
            ServerMessage::Verdicts(verdicts) => {
                for ContentVerdict { content, verdict } in verdicts {
                    if verdict == Verdict::Clean {
                        self.verdicts.remove(&content);
                    } else {
                        self.verdicts.insert(content, verdict);
                    }
                }
                self.events.push(json!({"kind": "tree"}));
                Vec::new()
            }
            ServerMessage::Presence { online } => {
                let online: Vec<String> = online.iter().map(|d| d.short().to_string()).collect();
                self.events
                    .push(json!({"kind": "presence", "online": online}));
                Vec::new()
            }
            ServerMessage::Error { code, message } => {
                self.events.push(json!({
                    "kind": "error",
                    "code": format!("{code:?}"),
                    "message": message,
                }));
                Vec::new()
            }
            _ => Vec::new(),
        })
    }

    fn fail(&mut self, message: String) {
        self.events
            .push(json!({"kind": "error", "code": "fetch", "message": message}));
    }

    fn doc_messages(&self, out: Vec<DocOutgoing>) -> Vec<ClientMessage> {
        out.into_iter()
            .map(|m| m.into_client(self.folder.clone()))
            .collect()
    }

    /// Events since the last call, as a JSON array.
    pub fn events(&mut self) -> String {
        Value::Array(std::mem::take(&mut self.events)).to_string()
    }

    /// The folder's tree as a JSON array of `{id, path, name, parent, kind, size, mtime,
    /// author, verdict, flagged}`, sorted by path (`verdict`: the relay's scan verdict when it
    /// is not plainly clean; `flagged`: the scan found something, so the page offers no
    /// download or preview).
    pub fn tree(&self) -> String {
        let tree = self.doc.derive();
        let entries: Vec<Value> = tree
            .iter()
            .map(|(path, node)| {
                let verdict = node
                    .content
                    .as_ref()
                    .and_then(|c| self.verdicts.get(&c.hash()));
                let kind = match node.kind {
                    NodeKind::File => "file",
                    NodeKind::Dir => "dir",
                    NodeKind::Symlink => "symlink",
                };
                json!({
                    "id": node.id.to_key(),
                    "path": path,
                    "name": node.name,
                    "parent": tree.path_of(node.parent).unwrap_or(""),
                    "kind": kind,
                    "size": node.content.as_ref().map_or(0, |c| c.size),
                    "mtime": node.content.as_ref().map_or(0, |c| c.mtime.0),
                    "author": node.content.as_ref().map(|c| self.doc.device_name(c.author)),
                    "verdict": verdict.map(|v| v.to_string()),
                    "flagged": matches!(verdict, Some(Verdict::Flagged { .. })),
                })
            })
            .collect();
        Value::Array(entries).to_string()
    }

    /// A node's versions that can still be restored, oldest first, as JSON: `{versions:
    /// [{version, size, mtime, writtenAt, author}], dropped, windowDays, cutoff}`. Versions the
    /// relay's retention window dropped (replaced before `cutoff`, ms) are counted in `dropped`
    /// and not listed; the others keep their numbers.
    pub fn history(&mut self, node: &str) -> Result<String, JsError> {
        let id = NodeId::from_key(node).map_err(error)?;
        let cutoff = self.cutoff();
        let all = self.doc.node_history(id, cutoff);
        let dropped = all.iter().filter(|v| !v.restorable).count();
        let versions: Vec<Value> = all
            .iter()
            .enumerate()
            .filter(|(_, v)| v.restorable)
            .map(|(n, v)| {
                json!({
                    "version": n,
                    "size": v.content.size,
                    "mtime": v.content.mtime.0,
                    "writtenAt": v.content.written_at.0,
                    "author": self.doc.device_name(v.content.author),
                })
            })
            .collect();
        Ok(json!({
            "versions": versions,
            "dropped": dropped,
            "windowDays": self.window.map(|(days, _)| days),
            "cutoff": cutoff.map(|c| c.0),
        })
        .to_string())
    }

    /// The relay's now less the retention window (`None` before the relay's `Welcome`).
    fn cutoff(&self) -> Option<WallTime> {
        self.window.map(|(days, relay_ahead)| {
            WallTime(
                now()
                    .0
                    .saturating_add(relay_ahead)
                    .saturating_sub(i64::from(days).saturating_mul(86_400_000)),
            )
        })
    }

    /// Starts opening a node's current content (`version` < 0) or one of its versions: the
    /// result names the content (`key`) and holds the frames to send; a `file` event with that
    /// key says when [`Viewer::bytes`] has it.
    pub fn open(&mut self, node: &str, version: i32) -> Result<Opened, JsError> {
        let id = NodeId::from_key(node).map_err(error)?;
        let content = if version < 0 {
            self.doc
                .derive()
                .get(id)
                .and_then(|n| n.content.clone())
                .ok_or_else(|| error("no such file"))?
        } else {
            let cutoff = self.cutoff();
            let chosen = self
                .doc
                .node_history(id, cutoff)
                .into_iter()
                .nth(version as usize)
                .ok_or_else(|| error("no such version"))?;
            if !chosen.restorable {
                return Err(error(format!(
                    "version {} was dropped: it is outside the relay's retention window",
                    version + 1
                )));
            }
            chosen.content
        };
        let key = content.hash();
        if let Some(verdict @ Verdict::Flagged { .. }) = self.verdicts.get(&key) {
            return Err(error(format!(
                "the relay's scan flagged this file: {verdict}"
            )));
        }
        let manifest = match &content.body {
            ContentBody::Inline(manifest) => Some(manifest.clone()),
            ContentBody::Blob(_) | ContentBody::Symlink(_) => None,
        };
        let opening = self.opening.entry(key).or_insert(Opening {
            content,
            manifest,
            ready: false,
        });
        if opening.ready {
            self.events
                .push(json!({"kind": "file", "key": key.to_hex()}));
        }
        let out = self.progress();
        Ok(Opened {
            key: key.to_hex(),
            frames: frames(out),
        })
    }

    /// Requests what open files still lack; emits `file` events for complete ones.
    fn progress(&mut self) -> Vec<ClientMessage> {
        let mut wanted: Vec<ChunkId> = Vec::new();
        let mut done: Vec<ChunkId> = Vec::new();
        let mut failed: Vec<(ChunkId, String)> = Vec::new();
        for (key, opening) in &mut self.opening {
            if opening.ready {
                continue;
            }
            match &opening.content.body {
                ContentBody::Symlink(_) => {
                    opening.ready = true;
                    done.push(*key);
                    continue;
                }
                ContentBody::Blob(manifest_id) if opening.manifest.is_none() => {
                    match self.blobs.get(manifest_id) {
                        Some(bytes) => match Manifest::decode(bytes) {
                            Ok(manifest) => opening.manifest = Some(manifest),
                            Err(e) => {
                                failed.push((*key, format!("bad manifest: {e}")));
                                continue;
                            }
                        },
                        None => {
                            wanted.push(*manifest_id);
                            continue;
                        }
                    }
                }
                _ => {}
            }
            let Some(manifest) = &opening.manifest else {
                continue;
            };
            let missing: Vec<ChunkId> = manifest
                .entries
                .iter()
                .map(|e| e.id)
                .filter(|id| !self.blobs.contains_key(id))
                .collect();
            if missing.is_empty() {
                opening.ready = true;
                done.push(*key);
            } else {
                wanted.extend(missing);
            }
        }
        for (key, message) in failed {
            self.opening.remove(&key);
            self.fail(message);
        }
        for key in done {
            self.events
                .push(json!({"kind": "file", "key": key.to_hex()}));
        }
        let fresh: Vec<ChunkId> = wanted
            .into_iter()
            .filter(|id| self.requested.insert(*id))
            .collect();
        fresh
            .chunks(MAX_IDS_PER_MESSAGE)
            .map(|ids| ClientMessage::ChunkGet { ids: ids.to_vec() })
            .collect()
    }

    /// The bytes of an opened file (after its `file` event), every chunk verified.
    pub fn bytes(&self, key: &str) -> Result<Vec<u8>, JsError> {
        let key: ChunkId = key.parse().map_err(error)?;
        let opening = self
            .opening
            .get(&key)
            .filter(|o| o.ready)
            .ok_or_else(|| error("that file is not open yet"))?;
        if let ContentBody::Symlink(target) = &opening.content.body {
            return Ok(target.as_bytes().to_vec());
        }
        let manifest = opening
            .manifest
            .as_ref()
            .ok_or_else(|| error("that file is not open yet"))?;
        let mut bytes = Vec::with_capacity(opening.content.size as usize);
        for entry in &manifest.entries {
            let chunk = self
                .blobs
                .get(&entry.id)
                .ok_or_else(|| error("a chunk went missing"))?;
            bytes.extend_from_slice(chunk);
        }
        Ok(bytes)
    }

    /// A frame that tries to change the folder (create a file): a read-only device's relay
    /// refuses it with an `error` event. The local replica is left unchanged.
    #[wasm_bindgen(js_name = writeAttempt)]
    pub fn write_attempt(&mut self) -> Result<js_sys::Array, JsError> {
        let actor = self.key.device_id().0[..16].to_vec();
        let mut scratch = FolderDoc::load(&self.doc.save(), &actor).map_err(error)?;
        let before = scratch.heads();
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|e| error(format!("no randomness: {e}")))?;
        scratch
            .create_node(
                NodeId(id),
                NodeId::ROOT,
                "written-by-the-browser.txt",
                NodeKind::Dir,
                0o755,
                None,
                self.key.device_id().short(),
                now(),
            )
            .map_err(error)?;
        scratch.commit(now());
        let changes = scratch.changes_since(&before);
        Ok(frames(vec![ClientMessage::DocChanges {
            folder: self.folder.clone(),
            changes,
        }]))
    }
}

/// A file being opened: its content key and the frames that request its chunks.
#[wasm_bindgen]
pub struct Opened {
    key: String,
    frames: js_sys::Array,
}

#[wasm_bindgen]
impl Opened {
    /// The content's hash, as `file` events name it.
    #[wasm_bindgen(getter)]
    pub fn key(&self) -> String {
        self.key.clone()
    }

    /// Frames to send to the relay.
    #[wasm_bindgen(getter)]
    pub fn frames(&self) -> js_sys::Array {
        self.frames.clone()
    }
}

/// What a WebSocket close code from the relay means, for people.
#[wasm_bindgen(js_name = closeReason)]
pub fn close_reason(code: u16) -> String {
    match CloseCode::from_code(code) {
        Some(CloseCode::BadAuth) => "the relay refused this device (wrong or used code?)".into(),
        Some(CloseCode::Revoked) => "this device was revoked".into(),
        Some(CloseCode::UnsupportedVersion) => "the relay speaks another protocol version".into(),
        Some(CloseCode::HandshakeTimeout) => "the handshake took too long".into(),
        Some(CloseCode::Limit) => "the relay closed the connection (limit)".into(),
        None => "offline".into(),
    }
}
