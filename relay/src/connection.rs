//! One WebSocket connection: the handshake (relay speaks first; only a signed `Hello` is read
//! before authentication, all within one deadline), then requests until the device leaves, is
//! revoked, or breaks a limit. A writer task owns the socket's sending half and drains a bounded
//! queue, so a slow client never holds up anyone else.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use cloud3_engine::auth::verify_hello;
use cloud3_engine::ids::{ChunkId, DeviceId};
use cloud3_engine::wire::limits::{MAX_BLOB_BYTES, MAX_IDS_PER_MESSAGE, MAX_PIECE_BYTES};
use cloud3_engine::wire::message::ChunkPiece;
use cloud3_engine::wire::{
    self, AuthProof, ClientMessage, CloseCode, DecodeError, ErrorCode, Hello, ServerMessage,
};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::error::StoreError;
use crate::hub::{ConnId, Outbound};
use crate::limits::Admission;
use crate::metrics::Metrics;
use crate::server::Relay;
use crate::store::AuthOutcome;
use crate::store::chunks::VerifiedBlob;

/// Drives one accepted socket to its end. `admission` is the connection's place under the caps
/// on unauthenticated connections (taken when it was accepted; none: refused over the caps).
pub async fn serve(
    relay: Arc<Relay>,
    socket: WebSocket,
    peer: SocketAddr,
    admission: Option<Admission>,
) {
    relay.metrics.connections.inc();
    let (sink, mut stream) = socket.split();
    let (tx, rx) = mpsc::channel(relay.gate.limits.outgoing_queue);
    let writer = tokio::spawn(write_loop(sink, rx, relay.metrics.clone()));
    // A connection refused over the caps is closed at once; any other the relay closes lingers
    // (see `linger`), a refused handshake still counted against the caps while it does.
    let over_caps = admission.is_none();
    let mut refused_admission = None;
    let outcome = match admission {
        None => {
            let _ = tx
                .send(Outbound::Close(
                    CloseCode::Limit,
                    "too many connections".into(),
                ))
                .await;
            None
        }
        Some(admission) => {
            let deadline = relay.gate.limits.handshake_timeout;
            let started = std::time::Instant::now();
            match tokio::time::timeout(deadline, handshake(&relay, peer, &mut stream, &tx)).await {
                Ok(Ok(session)) => {
                    relay
                        .metrics
                        .handshake_seconds
                        .observe(started.elapsed().as_secs_f64());
                    Some(session)
                }
                Ok(Err((code, reason))) => {
                    relay.metrics.auth_failures.inc();
                    tracing::info!(%peer, ?code, reason, "handshake refused");
                    let _ = tx.send(Outbound::Close(code, reason)).await;
                    refused_admission = Some(admission);
                    None
                }
                Err(_) => {
                    relay.metrics.auth_failures.inc();
                    let _ = tx
                        .send(Outbound::Close(
                            CloseCode::HandshakeTimeout,
                            "handshake timed out".into(),
                        ))
                        .await;
                    refused_admission = Some(admission);
                    None
                }
            }
        }
    };
    if let Some(session) = outcome {
        let user = session.user.clone();
        let max = relay.gate.limits.max_connections_per_account;
        let retention_days = relay
            .store
            .window_days(&user, &relay.gc)
            .unwrap_or_else(|error| {
                tracing::warn!(%user, %error, "cannot read the account's retention window");
                relay.gc.retention_days
            });
        let welcome = ServerMessage::Welcome {
            device: session.device,
            read_only: session.read_only,
            now: relay.store.lifecycle_now(),
            retention_days,
        };
        let _ = tx.send(Outbound::Message(welcome)).await;
        match relay
            .hub
            .connect(&user, session.device, tx.clone(), max)
            .await
        {
            Some(conn) => {
                let span =
                    tracing::info_span!("device", user = %user, device = %session.device.short());
                let _enter = span.enter();
                tracing::info!(%peer, "connected");
                drop(_enter);
                let mut session = Session {
                    conn,
                    uploads: HashMap::new(),
                    upload_bytes: 0,
                    ..session
                };
                if let Err(reason) = session.run(&relay, &mut stream, &tx).await {
                    relay.metrics.dropped.inc();
                    tracing::warn!(user = %user, device = %session.device.short(), reason, "dropping connection");
                    let _ = tx.send(Outbound::Close(CloseCode::Limit, reason)).await;
                }
                relay.hub.disconnect(&user, conn).await;
            }
            None => {
                let _ = tx
                    .send(Outbound::Close(
                        CloseCode::Limit,
                        "too many connections for this account".into(),
                    ))
                    .await;
            }
        }
    }
    drop(tx);
    if writer.await.unwrap_or(false) && !over_caps {
        linger(&mut stream).await;
    }
    drop(refused_admission);
    relay.metrics.connections.dec();
}

/// How long a connection the relay closed stays open for the peer to read the close frame.
const CLOSE_LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Keeps a connection the relay closed open a moment, reading and dropping what still arrives
/// (a lingering close, as web servers do): a socket closed with unread bytes, such as the rest of
/// an oversized frame, is reset, and a reset can discard the close frame (and its reason) before
/// the peer reads it.
async fn linger(stream: &mut SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(CLOSE_LINGER, async {
        while let Some(Ok(_)) = stream.next().await {}
        std::future::pending::<()>().await
    })
    .await;
}

/// Sends what the connection queues; true when it ended by sending a close frame.
async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outbound>,
    metrics: Arc<Metrics>,
) -> bool {
    while let Some(outbound) = rx.recv().await {
        match outbound {
            Outbound::Message(message) => {
                let frame = wire::encode_server(&message);
                metrics.messages_out.inc();
                metrics.bytes_out.inc_by(frame.len() as u64);
                if sink.send(Message::Binary(frame.into())).await.is_err() {
                    return false;
                }
            }
            Outbound::Close(code, reason) => {
                let frame = CloseFrame {
                    code: code.code(),
                    reason: reason.into(),
                };
                let _ = sink.send(Message::Close(Some(frame))).await;
                let _ = sink.close().await;
                return true;
            }
        }
    }
    let _ = sink.close().await;
    false
}

/// An authenticated device's connection state.
struct Session {
    user: String,
    device: DeviceId,
    read_only: bool,
    conn: ConnId,
    /// Blobs being uploaded in pieces: id -> (first piece's header, bytes so far).
    uploads: HashMap<ChunkId, (ChunkPiece, Vec<u8>)>,
    upload_bytes: usize,
    /// Complete blobs being verified on every core, waiting to be stored in one batch.
    ready: Vec<Verifying>,
    ready_bytes: usize,
    /// The batch being verified and stored on the blocking pool while more blobs arrive (at
    /// most one); acknowledged when it is durable.
    storing: Option<Storing>,
}

/// A complete blob being decoded and checked against its id on the rayon pool.
type Verifying = (
    ChunkId,
    tokio::sync::oneshot::Receiver<Result<VerifiedBlob, StoreError>>,
);

/// A batch of blobs being stored: their ids and the store's outcome for each.
struct Storing {
    ids: Vec<ChunkId>,
    job: tokio::task::JoinHandle<StoreOutcomes>,
}

type StoreOutcomes = Result<Vec<Result<(), StoreError>>, StoreError>;

type Refusal = (CloseCode, String);

/// The next frame from the device, which must come within `idle`; none once the writer has
/// ended (it sent a close frame, as at shutdown, or the socket broke): nothing more would be
/// answered.
async fn next_within(
    stream: &mut SplitStream<WebSocket>,
    idle: std::time::Duration,
    tx: &mpsc::Sender<Outbound>,
) -> Result<Option<Result<Message, axum::Error>>, String> {
    tokio::select! {
        next = tokio::time::timeout(idle, stream.next()) => next.map_err(|_| "idle timeout".to_owned()),
        () = tx.closed() => Ok(None),
    }
}

/// Complete blobs are stored in batches of at most this many...
const FLUSH_BLOBS: usize = 256;

/// ...or this many bytes, or whatever has arrived when the socket has nothing more ready.
const FLUSH_BYTES: usize = 8 << 20;

/// Encoded bytes of stored blobs read at once to answer a `ChunkGet` (two runs are held: one
/// being sent, the next being read).
const READ_RUN_BYTES: u64 = 4 << 20;

async fn handshake(
    relay: &Relay,
    peer: SocketAddr,
    stream: &mut SplitStream<WebSocket>,
    tx: &mpsc::Sender<Outbound>,
) -> Result<Session, Refusal> {
    let mut nonce = [0u8; 32];
    getrandom::fill(&mut nonce).map_err(|_| (CloseCode::BadAuth, "no randomness".to_owned()))?;
    let challenge = ServerMessage::Challenge {
        version: wire::PROTOCOL_VERSION,
        relay_id: relay.relay_id,
        nonce,
    };
    tx.send(Outbound::Message(challenge))
        .await
        .map_err(|_| (CloseCode::BadAuth, "gone".to_owned()))?;
    let hello = loop {
        let frame = match stream.next().await {
            Some(Ok(Message::Binary(bytes))) => bytes,
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Text(_))) => {
                return Err((CloseCode::BadAuth, "text frames are not spoken here".into()));
            }
            _ => return Err((CloseCode::BadAuth, "closed during handshake".into())),
        };
        match wire::decode_client(&frame) {
            Ok(ClientMessage::Hello(hello)) => break hello,
            Ok(_) => return Err((CloseCode::BadAuth, "expected a hello".into())),
            Err(DecodeError::UnsupportedVersion(v)) => {
                return Err((
                    CloseCode::UnsupportedVersion,
                    format!(
                        "protocol version {v} is not supported; this relay speaks {}",
                        wire::PROTOCOL_VERSION
                    ),
                ));
            }
            Err(error) => return Err((CloseCode::BadAuth, error.to_string())),
        }
    };
    authenticate(relay, peer, &nonce, hello).await
}

async fn authenticate(
    relay: &Relay,
    peer: SocketAddr,
    nonce: &[u8; 32],
    hello: Hello,
) -> Result<Session, Refusal> {
    if hello.version != wire::PROTOCOL_VERSION {
        return Err((
            CloseCode::UnsupportedVersion,
            format!("protocol version {} is not supported", hello.version),
        ));
    }
    verify_hello(&relay.relay_id, nonce, &hello)
        .map_err(|e| (CloseCode::BadAuth, e.to_string()))?;
    let store = relay.store.clone();
    let user = hello.user.clone();
    let device = hello.device;
    let now = crate::server::wall_now();
    let read_only = match hello.proof {
        AuthProof::Device => {
            let outcome = blocking(move || store.authenticate(&user, device)).await?;
            match outcome {
                AuthOutcome::Ok { read_only } => read_only,
                AuthOutcome::Unknown => {
                    return Err((CloseCode::BadAuth, "unknown device for this user".into()));
                }
                AuthOutcome::Revoked => {
                    return Err((CloseCode::Revoked, "this device was revoked".into()));
                }
            }
        }
        AuthProof::Enrol { code, device_name } => {
            let started = std::time::Instant::now();
            if let Err(wait) = relay.guessing.check(peer.ip(), &user, started) {
                return Err((
                    CloseCode::BadAuth,
                    format!(
                        "enrolment refused: too many wrong codes, try again in {} s",
                        wait.as_secs().max(1)
                    ),
                ));
            }
            let guessed_user = user.clone();
            let result =
                blocking(move || store.enrol(&user, &code, device, &device_name, now)).await?;
            result.map_err(|why| {
                if why.is_guess() {
                    relay
                        .guessing
                        .failed(peer.ip(), &guessed_user, std::time::Instant::now());
                }
                (CloseCode::BadAuth, format!("enrolment refused: {why}"))
            })?
        }
    };
    Ok(Session {
        user: hello.user,
        device,
        read_only,
        conn: 0,
        uploads: HashMap::new(),
        upload_bytes: 0,
        ready: Vec::new(),
        ready_bytes: 0,
        storing: None,
    })
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, crate::error::StoreError> + Send + 'static,
) -> Result<T, Refusal> {
    match tokio::task::spawn_blocking(work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(error)) => {
            tracing::error!(%error, "storage failed during handshake");
            Err((CloseCode::BadAuth, "relay storage failed".into()))
        }
        Err(_) => Err((CloseCode::BadAuth, "relay task failed".into())),
    }
}

impl Session {
    /// Serves requests until the socket ends (Ok) or the client breaks a rule (Err(reason)).
    async fn run(
        &mut self,
        relay: &Arc<Relay>,
        stream: &mut SplitStream<WebSocket>,
        tx: &mpsc::Sender<Outbound>,
    ) -> Result<(), String> {
        loop {
            let next = if let Some(storing) = &mut self.storing {
                // A batch is being stored: acknowledge it as soon as it is durable, and keep
                // reading meanwhile.
                tokio::select! {
                    outcomes = &mut storing.job => {
                        let ids = std::mem::take(&mut storing.ids);
                        self.storing = None;
                        self.acknowledge(relay, tx, ids, outcomes).await?;
                        continue;
                    }
                    next = next_within(stream, relay.gate.limits.idle_timeout, tx) => next?,
                }
            } else if self.ready.is_empty() {
                next_within(stream, relay.gate.limits.idle_timeout, tx).await?
            } else {
                // Complete blobs wait for a batch only while more messages are already here.
                match tokio::time::timeout(std::time::Duration::ZERO, stream.next()).await {
                    Ok(next) => next,
                    Err(_) => {
                        self.start_storing(relay, tx).await?;
                        continue;
                    }
                }
            };
            let frame = match next {
                None | Some(Ok(Message::Close(_))) => return Ok(()),
                // A peer that vanished without a close frame is just gone; oversized frames
                // and broken framing are a broken rule.
                Some(Err(error)) => {
                    let error = error.to_string();
                    if error.contains("without closing handshake")
                        || error.contains("Connection reset by peer")
                    {
                        return Ok(());
                    }
                    return Err(format!("unreadable frame: {error}"));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                Some(Ok(Message::Text(_))) => {
                    return Err("text frames are not spoken here".into());
                }
                Some(Ok(Message::Binary(bytes))) => bytes,
            };
            relay.metrics.messages_in.inc();
            relay.metrics.bytes_in.inc_by(frame.len() as u64);
            let decoded = wire::decode_client(&frame);
            let blob_piece = matches!(decoded, Ok(ClientMessage::ChunkPut(_)));
            relay
                .gate
                .throttle(&self.device.0, &self.user, frame.len(), blob_piece)
                .await;
            let message = match decoded {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(device = %self.device.short(), %error, "malformed message");
                    self.error(tx, ErrorCode::BadMessage, error.to_string())
                        .await?;
                    continue;
                }
            };
            self.handle(relay, tx, message).await?;
        }
    }

    async fn handle(
        &mut self,
        relay: &Arc<Relay>,
        tx: &mpsc::Sender<Outbound>,
        message: ClientMessage,
    ) -> Result<(), String> {
        // Everything but more blobs sees the blobs before it stored and acknowledged.
        if !matches!(message, ClientMessage::ChunkPut(_)) {
            self.flush_chunks(relay, tx).await?;
        }
        match message {
            ClientMessage::Hello(_) => {
                self.error(tx, ErrorCode::BadMessage, "already authenticated".into())
                    .await
            }
            ClientMessage::DocHeads { folder, heads } => {
                if heads.len() > wire::limits::MAX_HEADS {
                    return self
                        .error(tx, ErrorCode::Limit, "too many heads".into())
                        .await;
                }
                if let Err(error) = relay
                    .hub
                    .doc_heads(&self.user, self.conn, &folder, heads)
                    .await
                {
                    return self.error(tx, ErrorCode::Internal, error.to_string()).await;
                }
                Ok(())
            }
            ClientMessage::DocChanges { folder, changes } => {
                if self.read_only {
                    tracing::warn!(device = %self.device.short(), "read-only device tried to change the document");
                    return self
                        .error(
                            tx,
                            ErrorCode::ReadOnly,
                            "read-only devices may not change the folder".into(),
                        )
                        .await;
                }
                let started = std::time::Instant::now();
                let applied = relay
                    .hub
                    .doc_changes(&self.user, self.conn, &folder, changes)
                    .await;
                relay
                    .metrics
                    .fanout_seconds
                    .observe(started.elapsed().as_secs_f64());
                match applied {
                    Ok(()) => Ok(()),
                    Err(crate::hub::HubError::Refused(why)) => {
                        tracing::warn!(device = %self.device.short(), why, "changes refused");
                        self.error(tx, ErrorCode::BadMessage, why).await
                    }
                    Err(error) => self.error(tx, ErrorCode::Internal, error.to_string()).await,
                }
            }
            ClientMessage::ChunkQuery { request, ids } => {
                if ids.len() > MAX_IDS_PER_MESSAGE {
                    return self
                        .error(tx, ErrorCode::Limit, "too many ids".into())
                        .await;
                }
                let store = relay.store.clone();
                let user = self.user.clone();
                match tokio::task::spawn_blocking(move || store.missing_chunks(&user, &ids)).await {
                    // Full: said before the device sends a byte of what it would upload.
                    Ok(Ok(ids)) if !ids.is_empty() && !relay.disk.room_for(0, &relay.metrics) => {
                        self.storage_full(tx).await
                    }
                    Ok(Ok(ids)) => {
                        self.send(tx, ServerMessage::ChunkMissing { request, ids })
                            .await
                    }
                    _ => {
                        self.error(tx, ErrorCode::Internal, "chunk index failed".into())
                            .await
                    }
                }
            }
            ClientMessage::ChunkPut(piece) => self.chunk_piece(relay, tx, piece).await,
            ClientMessage::ChunkGet { ids } => {
                if ids.len() > MAX_IDS_PER_MESSAGE {
                    return self
                        .error(tx, ErrorCode::Limit, "too many ids".into())
                        .await;
                }
                self.serve_chunks(relay, tx, ids).await
            }
            ClientMessage::PairRequest { read_only } => {
                if self.read_only {
                    return self
                        .error(
                            tx,
                            ErrorCode::ReadOnly,
                            "read-only devices may not pair others".into(),
                        )
                        .await;
                }
                let store = relay.store.clone();
                let (user, device, now) =
                    (self.user.clone(), self.device, crate::server::wall_now());
                match tokio::task::spawn_blocking(move || {
                    store.issue_pairing_code(&user, device, read_only, now)
                })
                .await
                {
                    Ok(Ok((code, expires))) => {
                        self.send(
                            tx,
                            ServerMessage::PairCode {
                                code: code.as_str().to_owned(),
                                expires,
                                read_only,
                            },
                        )
                        .await
                    }
                    _ => {
                        self.error(tx, ErrorCode::Internal, "cannot issue a code".into())
                            .await
                    }
                }
            }
            ClientMessage::ListDevices => {
                let store = relay.store.clone();
                let user = self.user.clone();
                let online = relay.hub.online(&self.user).await;
                match tokio::task::spawn_blocking(move || store.list_devices(&user)).await {
                    Ok(Ok(mut list)) => {
                        for device in &mut list {
                            device.online = online.contains(&device.device);
                        }
                        self.send(tx, ServerMessage::Devices(list)).await
                    }
                    _ => {
                        self.error(tx, ErrorCode::Internal, "cannot list devices".into())
                            .await
                    }
                }
            }
            ClientMessage::Revoke { device } => {
                if self.read_only {
                    return self
                        .error(
                            tx,
                            ErrorCode::ReadOnly,
                            "read-only devices may not revoke".into(),
                        )
                        .await;
                }
                let store = relay.store.clone();
                let (user, by, now) = (self.user.clone(), self.device, crate::server::wall_now());
                match tokio::task::spawn_blocking(move || store.revoke(&user, by, device, now))
                    .await
                {
                    Ok(Ok(())) => {
                        tracing::info!(user = %self.user, by = %self.device.short(), revoked = %device.short(), "device revoked");
                        relay
                            .hub
                            .kick(
                                &self.user,
                                device,
                                CloseCode::Revoked,
                                "this device was revoked",
                            )
                            .await;
                        self.send(tx, ServerMessage::Revoked { device }).await
                    }
                    _ => {
                        self.error(
                            tx,
                            ErrorCode::NotFound,
                            "no such device in this account".into(),
                        )
                        .await
                    }
                }
            }
            ClientMessage::Ping(value) => self.send(tx, ServerMessage::Pong(value)).await,
            _ => {
                self.error(tx, ErrorCode::BadMessage, "unsupported message".into())
                    .await
            }
        }
    }

    async fn chunk_piece(
        &mut self,
        relay: &Arc<Relay>,
        tx: &mpsc::Sender<Outbound>,
        piece: ChunkPiece,
    ) -> Result<(), String> {
        if self.read_only {
            tracing::warn!(device = %self.device.short(), "read-only device tried to upload");
            return self
                .error(
                    tx,
                    ErrorCode::ReadOnly,
                    "read-only devices may not upload".into(),
                )
                .await;
        }
        let encoded_len = piece.encoded_len as usize;
        if encoded_len > MAX_BLOB_BYTES
            || piece.raw_len as usize > MAX_BLOB_BYTES
            || piece.data.len() > MAX_PIECE_BYTES
        {
            return Err("blob over the size limit".into());
        }
        let id = piece.id;
        let mut piece = piece;
        let data = std::mem::take(&mut piece.data);
        let entry = self
            .uploads
            .entry(id)
            .or_insert_with(|| (piece.clone(), Vec::new()));
        let (header, bytes) = entry;
        let consistent = header.encoded_len == piece.encoded_len
            && header.raw_len == piece.raw_len
            && header.codec == piece.codec
            && piece.offset as usize == bytes.len()
            && bytes.len() + data.len() <= encoded_len;
        if !consistent {
            self.uploads.remove(&id);
            return self
                .error(
                    tx,
                    ErrorCode::BadMessage,
                    format!("inconsistent piece of blob {id}"),
                )
                .await;
        }
        self.upload_bytes += data.len();
        if bytes.is_empty() {
            // The first piece (all of a chunk) becomes the buffer without a copy.
            *bytes = data;
        } else {
            bytes.extend_from_slice(&data);
        }
        if self.upload_bytes > 2 * MAX_BLOB_BYTES {
            return Err("too many unfinished uploads".into());
        }
        if bytes.len() < encoded_len {
            return Ok(());
        }
        let Some((header, bytes)) = self.uploads.remove(&id) else {
            return Ok(());
        };
        self.upload_bytes = self.upload_bytes.saturating_sub(bytes.len());
        self.ready_bytes += bytes.len();
        let (done, verdict) = tokio::sync::oneshot::channel();
        rayon::spawn(move || {
            let ChunkPiece {
                id, codec, raw_len, ..
            } = header;
            // Decoders are fuzzed, but a panic here must not take the relay down with it.
            let verified =
                std::panic::catch_unwind(|| VerifiedBlob::verify(id, codec, raw_len, bytes))
                    .unwrap_or_else(|_| {
                        Err(StoreError::Forbidden(format!("blob {id} is malformed")))
                    });
            let _ = done.send(verified);
        });
        self.ready.push((id, verdict));
        if self.ready.len() >= FLUSH_BLOBS || self.ready_bytes >= FLUSH_BYTES {
            self.start_storing(relay, tx).await?;
        }
        Ok(())
    }

    /// Stores every complete blob received so far and acknowledges each: what a message other
    /// than a blob piece sees before it is handled.
    async fn flush_chunks(
        &mut self,
        relay: &Arc<Relay>,
        tx: &mpsc::Sender<Outbound>,
    ) -> Result<(), String> {
        self.start_storing(relay, tx).await?;
        self.finish_storing(relay, tx).await
    }

    /// Waits for the batch being stored, if any, and acknowledges it.
    async fn finish_storing(
        &mut self,
        relay: &Arc<Relay>,
        tx: &mpsc::Sender<Outbound>,
    ) -> Result<(), String> {
        if let Some(Storing { ids, job }) = self.storing.take() {
            self.acknowledge(relay, tx, ids, job.await).await?;
        }
        Ok(())
    }

    /// Starts storing the complete blobs received so far as one durable batch on the blocking
    /// pool, once the batch before it is stored and acknowledged: the verification and the
    /// commit of one batch overlap the arrival of the next.
    async fn start_storing(
        &mut self,
        relay: &Arc<Relay>,
        tx: &mpsc::Sender<Outbound>,
    ) -> Result<(), String> {
        if self.ready.is_empty() {
            return Ok(());
        }
        self.finish_storing(relay, tx).await?;
        let ready = std::mem::take(&mut self.ready);
        let ready_bytes = std::mem::take(&mut self.ready_bytes) as u64;
        let (disk, metrics) = (relay.disk.clone(), relay.metrics.clone());
        let ids: Vec<ChunkId> = ready.iter().map(|(id, _)| *id).collect();
        let store = relay.store.clone();
        let (user, device, quota) = (
            self.user.clone(),
            self.device,
            relay.gate.limits.quota_bytes,
        );
        let put_seconds = relay.metrics.chunk_put_seconds.clone();
        let job = tokio::task::spawn_blocking(move || {
            // Each blob's verdict, in order: refused ones keep their error, verified ones
            // are stored together and take the store's outcome.
            let mut refused = Vec::with_capacity(ready.len());
            let mut blobs = Vec::with_capacity(ready.len());
            for (id, verdict) in ready {
                let verdict = verdict.blocking_recv().unwrap_or_else(|_| {
                    Err(StoreError::Forbidden(format!("blob {id} was not checked")))
                });
                match verdict {
                    Ok(blob) => {
                        blobs.push(blob);
                        refused.push(None);
                    }
                    Err(e) => refused.push(Some(e)),
                }
            }
            // The reserve is kept: a batch that does not fit is refused before it is written.
            if !blobs.is_empty() && !disk.room_for(ready_bytes, &metrics) {
                return Ok(refused
                    .into_iter()
                    .map(|refusal| Err(refusal.unwrap_or(StoreError::StorageFull)))
                    .collect());
            }
            let started = std::time::Instant::now();
            let stored = store.put_chunks(&user, device, &blobs, quota);
            put_seconds.observe(started.elapsed().as_secs_f64());
            let mut stored = stored?.into_iter();
            Ok(refused
                .into_iter()
                .map(|refusal| match refusal {
                    Some(e) => Err(e),
                    None => stored.next().unwrap_or_else(|| {
                        Err(StoreError::Database("no outcome for a stored blob".into()))
                    }),
                })
                .collect())
        });
        self.storing = Some(Storing { ids, job });
        Ok(())
    }

    /// Sends the blobs a device asked for, in order: read in runs of about [`READ_RUN_BYTES`],
    /// the next run read while the one before is sent. A blob the store lacks, that nothing
    /// references, or whose stored bytes are damaged (logged) is answered `ChunkUnavailable`.
    async fn serve_chunks(
        &mut self,
        relay: &Arc<Relay>,
        tx: &mpsc::Sender<Outbound>,
        ids: Vec<ChunkId>,
    ) -> Result<(), String> {
        // Blobs of versions the scan flagged (or, under `hold`, has not found clean) are
        // refused with the verdict, never read.
        let mut served = Vec::with_capacity(ids.len());
        for id in ids {
            match relay.scan.refusal(&self.user, id) {
                Some((content, verdict)) => {
                    self.send(
                        tx,
                        ServerMessage::ChunkRefused {
                            id,
                            content,
                            verdict,
                        },
                    )
                    .await?
                }
                None => served.push(id),
            }
        }
        let ids: Arc<[ChunkId]> = served.into();
        let read = |from: usize| {
            let (store, user, ids) = (relay.store.clone(), self.user.clone(), ids.clone());
            let get_seconds = relay.metrics.chunk_get_seconds.clone();
            tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                let blobs = store.get_chunks(&user, &ids[from..], READ_RUN_BYTES);
                get_seconds.observe(started.elapsed().as_secs_f64());
                blobs
            })
        };
        let mut from = 0;
        let mut next = (!ids.is_empty()).then(|| read(0));
        while let Some(job) = next.take() {
            let blobs = match job.await {
                Ok(Ok(blobs)) if !blobs.is_empty() => blobs,
                _ => {
                    tracing::error!(user = %self.user, "reading stored blobs failed");
                    for &id in &ids[from..] {
                        self.send(tx, ServerMessage::ChunkUnavailable { id })
                            .await?;
                    }
                    return Ok(());
                }
            };
            let run = from..from + blobs.len();
            from = run.end;
            if from < ids.len() {
                next = Some(read(from));
            }
            for (&id, blob) in ids[run].iter().zip(blobs) {
                match blob {
                    Ok(Some(blob)) => {
                        for piece in ChunkPiece::split(id, blob.raw_len, blob.codec, blob.bytes) {
                            self.send(tx, ServerMessage::ChunkData(piece)).await?;
                        }
                    }
                    Ok(None) => {
                        self.send(tx, ServerMessage::ChunkUnavailable { id })
                            .await?
                    }
                    Err(e) => {
                        tracing::error!(user = %self.user, %id, error = %e, "stored blob failed its check");
                        self.send(tx, ServerMessage::ChunkUnavailable { id })
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Acknowledges a stored batch: `ChunkStored` for each blob now durable, or why it was
    /// refused.
    async fn acknowledge(
        &mut self,
        relay: &Arc<Relay>,
        tx: &mpsc::Sender<Outbound>,
        ids: Vec<ChunkId>,
        result: Result<StoreOutcomes, tokio::task::JoinError>,
    ) -> Result<(), String> {
        let outcomes = match result {
            Ok(Ok(outcomes)) => outcomes,
            Ok(Err(error)) if error.is_out_of_space() => {
                // The reserve did not hold (another process filled the disk): the batch was
                // rolled back; the device is told as for the reserve.
                tracing::warn!(user = %self.user, %error, "storing blobs ran out of space");
                relay.metrics.storage_full_refusals.inc();
                return self.storage_full(tx).await;
            }
            _ => {
                return self
                    .error(tx, ErrorCode::Internal, "cannot store blobs".into())
                    .await;
            }
        };
        let mut told_full = false;
        for (id, outcome) in ids.into_iter().zip(outcomes) {
            match outcome {
                // One refusal per batch: the device stops its upload at the first.
                Err(error) if error.is_out_of_space() => {
                    if !std::mem::replace(&mut told_full, true) {
                        self.storage_full(tx).await?;
                    }
                }
                Ok(()) => {
                    relay.metrics.chunks_stored.inc();
                    self.send(tx, ServerMessage::ChunkStored { id }).await?;
                }
                Err(crate::error::StoreError::Quota { quota }) => {
                    self.error(
                        tx,
                        ErrorCode::Quota,
                        format!("storage quota of {quota} bytes is full"),
                    )
                    .await?;
                }
                Err(crate::error::StoreError::Forbidden(why)) => {
                    tracing::warn!(device = %self.device.short(), why, "blob refused");
                    let code = if why.contains("hash") {
                        ErrorCode::HashMismatch
                    } else {
                        ErrorCode::BadMessage
                    };
                    self.error(tx, code, why).await?;
                }
                Err(_) => {
                    self.error(tx, ErrorCode::Internal, "cannot store blob".into())
                        .await?;
                }
            }
        }
        Ok(())
    }

    /// Tells the device the relay stores no new blobs for now (see `disk`).
    async fn storage_full(&self, tx: &mpsc::Sender<Outbound>) -> Result<(), String> {
        self.error(tx, ErrorCode::StorageFull, "relay storage full".into())
            .await
    }

    async fn send(
        &self,
        tx: &mpsc::Sender<Outbound>,
        message: ServerMessage,
    ) -> Result<(), String> {
        tx.send(Outbound::Message(message))
            .await
            .map_err(|_| "connection closed".to_owned())
    }

    async fn error(
        &self,
        tx: &mpsc::Sender<Outbound>,
        code: ErrorCode,
        message: String,
    ) -> Result<(), String> {
        self.send(tx, ServerMessage::Error { code, message }).await
    }
}
