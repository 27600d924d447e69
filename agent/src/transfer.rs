//! Moving blobs between this device and the relay over one connection: asking which blobs the
//! relay lacks, uploading them in pieces, and fetching blobs with verification. Messages that
//! arrive while a transfer waits for its answers are kept, in order, for the main loop.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::Path;
use std::sync::Arc;

use cloud3_engine::chunk::{self, Encoded, Manifest};
use cloud3_engine::ids::ChunkId;
use cloud3_engine::wire::limits::MAX_IDS_PER_MESSAGE;
use cloud3_engine::wire::{ClientMessage, ErrorCode, ServerMessage, Verdict, message::ChunkPiece};
use rayon::prelude::*;

use crate::activity::Activity;
use crate::connection::Connection;
use crate::error::AgentError;
use crate::hasher::{self, Expect};
use crate::syncer::{BlobSource, Syncer};

/// A connection plus the messages deferred while a transfer waited.
pub struct Link {
    connection: Connection,
    deferred: VecDeque<ServerMessage>,
    next_request: u32,
    /// Blobs asked for ahead of the fetch that will take them (see [`Link::ask_ahead`]).
    asked_ahead: Vec<ChunkId>,
    /// Bytes of blob data sent and received (for status and benchmarks).
    pub bytes_up: u64,
    /// Bytes of blob data received.
    pub bytes_down: u64,
    /// What is transferring now, for `cloud3 status`.
    pub activity: Activity,
    /// Versions (content hashes) whose blobs the relay refused since the session last took
    /// them, with the scan's verdict.
    pub refused: Vec<(ChunkId, Verdict)>,
}

impl Link {
    /// Wraps an authenticated connection.
    pub fn new(connection: Connection) -> Link {
        Link {
            connection,
            deferred: VecDeque::new(),
            next_request: 0,
            asked_ahead: Vec::new(),
            bytes_up: 0,
            bytes_down: 0,
            activity: Activity::default(),
            refused: Vec::new(),
        }
    }

    /// The retention window the relay announced for this connection.
    pub fn window(&self) -> crate::versions::Window {
        self.connection.window
    }

    /// Reports this link's transfers to `activity`.
    pub fn with_activity(mut self, activity: Activity) -> Link {
        self.activity = activity;
        self
    }

    /// Sends a message.
    pub async fn send(&mut self, message: &ClientMessage) -> Result<(), AgentError> {
        self.connection.send(message).await
    }

    /// The next message: deferred ones first.
    pub async fn recv(&mut self) -> Result<ServerMessage, AgentError> {
        match self.deferred.pop_front() {
            Some(message) => Ok(message),
            None => self.connection.recv().await,
        }
    }

    /// A message that is already here (deferred or buffered), without waiting for one.
    pub async fn recv_ready(&mut self) -> Result<Option<ServerMessage>, AgentError> {
        if let Some(message) = self.deferred.pop_front() {
            return Ok(Some(message));
        }
        // A zero timeout still polls once: whatever the socket has buffered is taken.
        match tokio::time::timeout(std::time::Duration::ZERO, self.connection.recv()).await {
            Ok(message) => message.map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Puts a message back to be received next.
    pub fn put_back(&mut self, message: ServerMessage) {
        self.deferred.push_front(message);
    }

    /// Whether messages are waiting to be handled without reading the socket.
    pub fn has_deferred(&self) -> bool {
        !self.deferred.is_empty()
    }

    /// Closes the connection.
    pub async fn close(self) {
        self.connection.close().await;
    }

    /// Uploads every pending blob the relay lacks and waits until each is committed there.
    /// Returns the paths whose bytes changed since they were scanned (they need a rescan).
    ///
    /// One stream across the relay's answers: each batch of ids is asked about before the
    /// batch ahead of it is sent, and each group of blobs is read, verified and compressed on
    /// every core while the group before it is sent, so neither the answers nor the relay's
    /// commits leave the link idle between batches.
    pub async fn upload(&mut self, syncer: &mut Syncer) -> Result<Vec<String>, AgentError> {
        let ids: Vec<ChunkId> = syncer.pending.keys().copied().collect();
        let _reported = (!ids.is_empty()).then(|| {
            self.activity
                .upload(syncer.pending.values().filter_map(|source| match source {
                    BlobSource::File { path, len, .. } => Some((path.clone(), u64::from(*len))),
                    BlobSource::Bytes(_) => None,
                }))
        });
        let mut plan = Plan {
            batches: ids.chunks(MAX_IDS_PER_MESSAGE),
            asked: None,
            groups: Vec::new().into_iter(),
            pool: None,
            awaiting: 0,
        };
        plan.asked = match plan.batches.next() {
            Some(batch) => Some(self.query(batch).await?),
            None => None,
        };
        let mut stale = Vec::new();
        // Blobs whose file changed or moved since the scan stay pending (see
        // `Syncer::repoint_pending`); every other blob asked about is at the relay once the
        // stream ends.
        let mut unsent: HashSet<ChunkId> = HashSet::new();
        let mut next = self.next_group(&mut plan, syncer).await?;
        while let Some(job) = next.take() {
            let prepared = match job.await {
                Ok(prepared) => prepared,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => return Err(AgentError::Protocol(format!("upload stopped: {e}"))),
            };
            next = self.next_group(&mut plan, syncer).await?;
            for (id, outcome) in prepared {
                match outcome {
                    Ok(blob) => {
                        self.put(id, blob).await?;
                        plan.awaiting += 1;
                    }
                    Err(path) => {
                        stale.push(path);
                        unsent.insert(id);
                    }
                }
            }
        }
        while plan.awaiting > 0 {
            self.wait_for(|m| match m {
                ServerMessage::ChunkStored { .. } => Ok(()),
                other => Err(other),
            })
            .await?;
            plan.awaiting -= 1;
        }
        let done: Vec<ChunkId> = ids.into_iter().filter(|id| !unsent.contains(id)).collect();
        syncer.uploaded(&done);
        Ok(stale)
    }

    /// Asks the relay which of `batch` it lacks; returns the request number of the answer.
    async fn query(&mut self, batch: &[ChunkId]) -> Result<u32, AgentError> {
        self.next_request = self.next_request.wrapping_add(1);
        let request = self.next_request;
        self.send(&ClientMessage::ChunkQuery {
            request,
            ids: batch.to_vec(),
        })
        .await?;
        Ok(request)
    }

    /// Starts preparing the next group of blobs to send, taking the relay's answer for the next
    /// batch (and asking about the one after) when the current batch has no groups left; `None`
    /// when every batch is done.
    async fn next_group(
        &mut self,
        plan: &mut Plan<'_>,
        syncer: &Syncer,
    ) -> Result<Option<PreparedGroup>, AgentError> {
        loop {
            if let Some(group) = plan.groups.next() {
                return Ok(Some(prepare(&syncer.root, group, &mut plan.pool)));
            }
            let Some(request) = plan.asked.take() else {
                return Ok(None);
            };
            let awaiting = &mut plan.awaiting;
            let missing = self
                .wait_for(|m| match m {
                    ServerMessage::ChunkMissing { request: r, ids } if r == request => {
                        Ok(Some(ids))
                    }
                    // Commits of blobs already sent are counted as they come.
                    ServerMessage::ChunkStored { .. } if *awaiting > 0 => {
                        *awaiting -= 1;
                        Ok(None)
                    }
                    other => Err(other),
                })
                .await?;
            let Some(missing) = missing else {
                plan.asked = Some(request);
                continue;
            };
            if let Some(batch) = plan.batches.next() {
                plan.asked = Some(self.query(batch).await?);
            }
            let sources: Vec<Source> = missing
                .into_iter()
                .filter_map(|id| {
                    let expect = match syncer.pending_checks.get(&id) {
                        Some(&check) => Expect::Checksum(check),
                        None => Expect::Id(id),
                    };
                    Some((id, syncer.pending.get(&id)?.clone(), expect))
                })
                .collect();
            plan.groups = groups_of(sources).into_iter();
        }
    }

    async fn put(&mut self, id: ChunkId, blob: Prepared) -> Result<(), AgentError> {
        let Prepared { raw_len, encoded } = blob;
        for piece in ChunkPiece::split(id, raw_len, encoded.codec, encoded.bytes) {
            self.bytes_up += piece.data.len() as u64;
            self.activity.sent(piece.data.len() as u64);
            self.send(&ClientMessage::ChunkPut(piece)).await?;
        }
        Ok(())
    }

    /// Asks for blobs the next [`Link::fetch`] will want, so the relay reads and sends them
    /// while this device does other work (installing the files fetched before). The next fetch
    /// takes every answer to them first, handing on those it wants and dropping the rest.
    pub async fn ask_ahead(&mut self, ids: Vec<ChunkId>) -> Result<(), AgentError> {
        for batch in ids.chunks(MAX_IDS_PER_MESSAGE) {
            self.send(&ClientMessage::ChunkGet {
                ids: batch.to_vec(),
            })
            .await?;
        }
        self.asked_ahead.extend(ids);
        Ok(())
    }

    /// Whether blobs asked for ahead still wait for a fetch to take them.
    pub fn has_asked_ahead(&self) -> bool {
        !self.asked_ahead.is_empty()
    }

    /// Fetches blobs; each verified blob's raw bytes are handed to `on_blob` as it completes.
    /// Returns the ids the relay does not have (a newer change usually supersedes them).
    pub async fn fetch(
        &mut self,
        ids: &[ChunkId],
        mut on_blob: impl FnMut(ChunkId, Vec<u8>) -> Result<(), AgentError>,
    ) -> Result<Vec<ChunkId>, AgentError> {
        let wanted: HashSet<ChunkId> = ids.iter().copied().collect();
        let ahead = std::mem::take(&mut self.asked_ahead);
        let asked: HashSet<ChunkId> = ahead.iter().copied().collect();
        let rest: Vec<ChunkId> = ids
            .iter()
            .copied()
            .filter(|id| !asked.contains(id))
            .collect();
        let batches = std::iter::once((ahead, true)).chain(
            rest.chunks(MAX_IDS_PER_MESSAGE)
                .map(|batch| (batch.to_vec(), false)),
        );
        let mut unavailable = Vec::new();
        let mut opening = Opening::default();
        for (batch, sent) in batches {
            if batch.is_empty() {
                continue;
            }
            if !sent {
                self.send(&ClientMessage::ChunkGet { ids: batch.clone() })
                    .await?;
            }
            let mut outstanding: HashMap<ChunkId, Vec<u8>> =
                batch.iter().map(|id| (*id, Vec::new())).collect();
            while !outstanding.is_empty() {
                let message = self
                    .wait_for(|m| match m {
                        ServerMessage::ChunkData(piece) if outstanding.contains_key(&piece.id) => {
                            Ok(Ok(piece))
                        }
                        ServerMessage::ChunkUnavailable { id } if outstanding.contains_key(&id) => {
                            Ok(Err((id, None)))
                        }
                        ServerMessage::ChunkRefused {
                            id,
                            content,
                            verdict,
                        } if outstanding.contains_key(&id) => {
                            Ok(Err((id, Some((content, verdict)))))
                        }
                        other => Err(other),
                    })
                    .await?;
                let mut piece = match message {
                    Ok(piece) => piece,
                    Err((id, refusal)) => {
                        outstanding.remove(&id);
                        if let Some((content, verdict)) = refusal {
                            tracing::info!(%content, %verdict, "the relay refuses a file version");
                            self.refused.push((content, verdict));
                        }
                        if wanted.contains(&id) {
                            unavailable.push(id);
                        }
                        continue;
                    }
                };
                self.bytes_down += piece.data.len() as u64;
                self.activity.received(piece.data.len() as u64);
                let buffer = outstanding.entry(piece.id).or_default();
                if piece.offset as usize != buffer.len()
                    || buffer.len() + piece.data.len() > piece.encoded_len as usize
                {
                    return Err(AgentError::Protocol(format!(
                        "out-of-order piece of blob {}",
                        piece.id
                    )));
                }
                if buffer.is_empty() {
                    // The first piece (all of a chunk) becomes the buffer without a copy.
                    *buffer = std::mem::take(&mut piece.data);
                } else {
                    buffer.extend_from_slice(&piece.data);
                }
                if buffer.len() == piece.encoded_len as usize {
                    let encoded = outstanding.remove(&piece.id).unwrap_or_default();
                    if wanted.contains(&piece.id) {
                        opening.open(piece, encoded, &mut on_blob).await?;
                    }
                }
            }
        }
        opening.hand_on(0, &mut on_blob).await?;
        Ok(unavailable)
    }

    /// Fetches (or finds locally) the manifest of a blob-manifest content.
    pub async fn manifest(
        &mut self,
        syncer: &mut Syncer,
        id: ChunkId,
    ) -> Result<Manifest, AgentError> {
        if let Some(manifest) = syncer.manifests.get(&id) {
            return Ok(manifest.clone());
        }
        let mut found = None;
        self.fetch(&[id], |_, raw| {
            found = Some(Manifest::decode(&raw).map_err(|e| AgentError::Protocol(e.to_string()))?);
            Ok(())
        })
        .await?;
        let manifest = found.ok_or_else(|| AgentError::Protocol(format!("no manifest {id}")))?;
        syncer.manifests.insert(id, manifest.clone());
        Ok(manifest)
    }

    /// Reads messages until `pick` takes one (`Ok`); the ones it gives back are deferred.
    /// Errors from the relay end the wait.
    async fn wait_for<T>(
        &mut self,
        mut pick: impl FnMut(ServerMessage) -> Result<T, ServerMessage>,
    ) -> Result<T, AgentError> {
        loop {
            let message = match pick(self.connection.recv().await?) {
                Ok(found) => return Ok(found),
                Err(message) => message,
            };
            match message {
                ServerMessage::Error {
                    code: ErrorCode::StorageFull,
                    ..
                } => return Err(AgentError::RelayFull),
                ServerMessage::Error {
                    code: ErrorCode::Quota,
                    ..
                } => return Err(AgentError::QuotaFull),
                ServerMessage::Error { code, message } => {
                    return Err(AgentError::Refused(format!("{code:?}: {message}")));
                }
                other => self.deferred.push_back(other),
            }
        }
    }
}

/// Blobs of at least this many raw bytes are decoded and verified aside (see [`Opening`]) while
/// the next ones arrive; smaller ones cost less to open than to hand over. Raw, not encoded:
/// the work is hashing and inflating the raw bytes, and a text chunk of 64 KiB arrives as a
/// fraction of that.
const OPEN_ASIDE_BYTES: u32 = 16 << 10;

/// Blobs being opened aside at most at once: enough to keep the cores busy, little to hold.
const OPENING_AT_MOST: usize = 8;

/// Received blobs being decoded and verified off the receiving task, on a pool with one thread
/// per core made for this fetch (tokio's blocking pool would grow threads, each keeping its own
/// decompression context and allocator cache), handed on in arrival order.
#[derive(Default)]
struct Opening {
    pool: Option<rayon::ThreadPool>,
    jobs: VecDeque<(ChunkId, Opened)>,
}

type Opened = tokio::sync::oneshot::Receiver<Result<Vec<u8>, chunk::ChunkError>>;

impl Opening {
    /// Opens a complete blob (aside when large) and hands on every blob opened so far that
    /// has to be waited for to keep at most [`OPENING_AT_MOST`] aside.
    async fn open(
        &mut self,
        piece: ChunkPiece,
        encoded: Vec<u8>,
        on_blob: &mut impl FnMut(ChunkId, Vec<u8>) -> Result<(), AgentError>,
    ) -> Result<(), AgentError> {
        let ChunkPiece {
            id, codec, raw_len, ..
        } = piece;
        let aside = raw_len >= OPEN_ASIDE_BYTES;
        if self.pool.is_none() && aside {
            self.pool = hasher::workers();
        }
        let Some(pool) = self.pool.as_ref().filter(|_| aside) else {
            let raw = chunk::open(id, codec, &encoded, raw_len)
                .map_err(|e| AgentError::Protocol(e.to_string()))?;
            return on_blob(id, raw);
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        pool.spawn(move || {
            let _ = tx.send(chunk::open(id, codec, &encoded, raw_len));
        });
        self.jobs.push_back((id, rx));
        self.hand_on(OPENING_AT_MOST, on_blob).await
    }

    /// Hands on the blobs opened aside, oldest first, until at most `left` are still open
    /// (0: every one).
    async fn hand_on(
        &mut self,
        left: usize,
        on_blob: &mut impl FnMut(ChunkId, Vec<u8>) -> Result<(), AgentError>,
    ) -> Result<(), AgentError> {
        while self.jobs.len() > left {
            let Some((id, job)) = self.jobs.pop_front() else {
                break;
            };
            let raw = job
                .await
                .map_err(|_| AgentError::Protocol(format!("opening blob {id} stopped")))?
                .map_err(|e| AgentError::Protocol(e.to_string()))?;
            on_blob(id, raw)?;
        }
        Ok(())
    }
}

/// Where an upload stands: the batches not yet asked about, the answer awaited, the groups of
/// the current batch not yet prepared, and how many sent blobs the relay has yet to commit.
struct Plan<'a> {
    batches: std::slice::Chunks<'a, ChunkId>,
    asked: Option<u32>,
    groups: std::vec::IntoIter<Group>,
    pool: Option<Arc<rayon::ThreadPool>>,
    awaiting: usize,
}

/// A group being prepared: each blob ready to send, or the path whose file changed.
type PreparedGroup = tokio::task::JoinHandle<Vec<(ChunkId, Result<Prepared, String>)>>;

/// A blob ready to send.
struct Prepared {
    raw_len: u32,
    encoded: Encoded,
}

/// Raw bytes of the blobs prepared together (read, verified and compressed) while the group
/// before is sent: enough to keep every core busy, little enough to hold twice.
const GROUP_BYTES: u64 = 8 << 20;

/// Groups smaller than this are prepared on one thread: spreading a few hundred tiny files over
/// threads costs more than it saves.
const PARALLEL_BYTES: u64 = 1 << 20;

/// A pending blob to send: its id, where its bytes are and how they are known when read.
type Source = (ChunkId, BlobSource, Expect);

/// Blobs prepared together, and their raw bytes.
struct Group {
    blobs: Vec<Source>,
    bytes: u64,
}

/// Splits blobs into groups of about [`GROUP_BYTES`].
fn groups_of(sources: Vec<Source>) -> Vec<Group> {
    let mut groups: Vec<Group> = Vec::new();
    for (id, source, expect) in sources {
        let len = match &source {
            BlobSource::File { len, .. } => u64::from(*len),
            BlobSource::Bytes(bytes) => bytes.len() as u64,
        };
        match groups.last_mut() {
            Some(group) if group.bytes + len <= GROUP_BYTES => {
                group.blobs.push((id, source, expect));
                group.bytes += len;
            }
            _ => groups.push(Group {
                blobs: vec![(id, source, expect)],
                bytes: len,
            }),
        }
    }
    groups
}

/// Reads, verifies and compresses a group of blobs on the blocking pool (a large group on every
/// core of `pool`); each comes back ready, or as the path whose file changed since its scan.
fn prepare(root: &Path, group: Group, pool: &mut Option<Arc<rayon::ThreadPool>>) -> PreparedGroup {
    let root = root.to_owned();
    let one = move |(id, source, expect): Source| {
        let prepared = read_source(&root, &source, expect).map(|raw| Prepared {
            raw_len: raw.len() as u32,
            encoded: chunk::compress(&raw),
        });
        (id, prepared)
    };
    if group.bytes < PARALLEL_BYTES {
        return tokio::task::spawn_blocking(move || group.blobs.into_iter().map(one).collect());
    }
    if pool.is_none() {
        *pool = hasher::workers().map(Arc::new);
    }
    let pool = pool.clone();
    tokio::task::spawn_blocking(move || {
        let prepare = || {
            group
                .blobs
                .into_par_iter()
                .with_max_len(1)
                .map(one)
                .collect()
        };
        match pool {
            Some(pool) => pool.install(prepare),
            None => prepare(),
        }
    })
}

/// Reads a pending blob's bytes, checking them as `expect` says (the relay checks every blob's
/// SHA-256 again on arrival); `Err(path)` when the file changed since its scan.
fn read_source(root: &Path, source: &BlobSource, expect: Expect) -> Result<Vec<u8>, String> {
    match source {
        BlobSource::Bytes(bytes) => Ok(bytes.clone()),
        BlobSource::File { path, offset, len } => {
            hasher::read_chunk(root, path, *offset, *len, expect).ok_or_else(|| path.clone())
        }
    }
}
