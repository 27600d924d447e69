//! The messages: one enum per direction, each `#[non_exhaustive]` so versions can add variants.

use serde::{Deserialize, Serialize};

use crate::ids::{ChunkId, DeviceId, FolderId};
use crate::time::WallTime;

/// Messages a device sends to the relay.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ClientMessage {
    /// The answer to the relay's `Challenge`: the only message accepted before `Welcome`.
    Hello(Hello),
    /// The sender's current heads of a folder document; asks the peer for what the sender lacks.
    DocHeads {
        /// Folder the heads belong to.
        folder: FolderId,
        /// Automerge change hashes.
        heads: Vec<[u8; 32]>,
    },
    /// Automerge changes (each the raw bytes of one uncompressed change chunk).
    DocChanges {
        /// Folder the changes belong to.
        folder: FolderId,
        /// Raw change chunks, in causal order.
        changes: Vec<Vec<u8>>,
    },
    /// "Which of these chunks do you lack?"
    ChunkQuery {
        /// Request id echoed in the answer.
        request: u32,
        /// Chunks or manifest blobs the sender wants to reference.
        ids: Vec<ChunkId>,
    },
    /// One piece of a chunk or manifest blob (compressed as `codec` says).
    ChunkPut(ChunkPiece),
    /// Ask for chunks or manifest blobs; answered by `ChunkData` pieces or `ChunkUnavailable`.
    ChunkGet {
        /// Blobs wanted.
        ids: Vec<ChunkId>,
    },
    /// Ask for a one-time pairing code for a new device of this account.
    PairRequest {
        /// Whether the new device may only read (the browser viewer).
        read_only: bool,
    },
    /// Ask for the account's device list.
    ListDevices,
    /// Revoke a device of this account.
    Revoke {
        /// The device to cut off.
        device: DeviceId,
    },
    /// Keep-alive; answered by `Pong` with the same value.
    Ping(u64),
}

/// Messages the relay sends to a device.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ServerMessage {
    /// The first frame on every connection.
    Challenge {
        /// Highest protocol version the relay speaks.
        version: u16,
        /// The relay's identity, bound into the signature so a proof cannot be replayed elsewhere.
        relay_id: [u8; 32],
        /// Fresh random bytes for this connection.
        nonce: [u8; 32],
    },
    /// Authentication succeeded.
    Welcome {
        /// The authenticated device.
        device: DeviceId,
        /// Whether this device may only read.
        read_only: bool,
        /// The relay's wall time (the clock its collector goes by), so devices can notice
        /// clock skew and judge the retention window by the relay's time.
        now: WallTime,
        /// The account's retention window in days: replaced and deleted versions stay
        /// restorable this long, so devices offer only those.
        retention_days: u32,
    },
    /// See [`ClientMessage::DocHeads`].
    DocHeads {
        /// Folder the heads belong to.
        folder: FolderId,
        /// Automerge change hashes.
        heads: Vec<[u8; 32]>,
    },
    /// See [`ClientMessage::DocChanges`]; sent to every other online device after a merge.
    DocChanges {
        /// Folder the changes belong to.
        folder: FolderId,
        /// Raw change chunks, in causal order.
        changes: Vec<Vec<u8>>,
    },
    /// The answer to `ChunkQuery`: the subset the relay lacks.
    ChunkMissing {
        /// The query's request id.
        request: u32,
        /// Ids the relay does not store for this user.
        ids: Vec<ChunkId>,
    },
    /// A chunk or blob was verified and committed.
    ChunkStored {
        /// The stored blob.
        id: ChunkId,
    },
    /// One piece of a requested chunk or blob.
    ChunkData(ChunkPiece),
    /// A requested blob is not stored for this user.
    ChunkUnavailable {
        /// The blob asked for.
        id: ChunkId,
    },
    /// A one-time pairing code.
    PairCode {
        /// The code to type on the new device.
        code: String,
        /// When it stops working.
        expires: WallTime,
        /// Whether the device that uses it will be read-only.
        read_only: bool,
    },
    /// The account's devices.
    Devices(Vec<DeviceInfo>),
    /// Which of the account's other devices are online now.
    Presence {
        /// Online devices, this one excluded.
        online: Vec<DeviceId>,
    },
    /// A device was revoked (the answer to `Revoke`).
    Revoked {
        /// The revoked device.
        device: DeviceId,
    },
    /// A request failed; the connection stays open unless a close follows.
    Error {
        /// What kind of failure.
        code: ErrorCode,
        /// A sentence for logs and people.
        message: String,
    },
    /// Answer to `Ping`.
    Pong(u64),
    /// What the relay's malware scan says about file versions of this account: sent on
    /// connect for every version that is not plainly clean, and whenever a verdict changes.
    Verdicts(Vec<ContentVerdict>),
    /// A requested blob belongs to a file version the scan flagged or (in `hold` mode) has not
    /// yet found clean: it is not served. Not `ChunkUnavailable`: the device says why it waits.
    ChunkRefused {
        /// The blob asked for.
        id: ChunkId,
        /// The content hash of the file version the blob belongs to.
        content: ChunkId,
        /// Why it is refused.
        verdict: Verdict,
    },
}

/// How a device proves itself in `Hello`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// The protocol version the device chose (at most the relay's).
    pub version: u16,
    /// The account name.
    pub user: String,
    /// The device's public key.
    pub device: DeviceId,
    /// Known device, or enrolment with a code.
    pub proof: AuthProof,
    /// Signature over [`crate::auth::challenge::signed_message`].
    pub signature: Vec<u8>,
}

/// Whether the device is already enrolled or enrols now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuthProof {
    /// An enrolled device logging in.
    Device,
    /// A new device enrolling with an invite or pairing code.
    Enrol {
        /// The one-time code.
        code: String,
        /// A name for people, such as "laptop".
        device_name: String,
    },
}

/// One piece of a blob on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkPiece {
    /// SHA-256 of the blob's raw bytes.
    pub id: ChunkId,
    /// Length of the raw (uncompressed) blob: decompression is bounded by it.
    pub raw_len: u32,
    /// How `data` is encoded.
    pub codec: ChunkCodec,
    /// Total length of the encoded blob.
    pub encoded_len: u32,
    /// Offset of this piece within the encoded blob.
    pub offset: u32,
    /// The piece (serialised as one run of bytes, not byte by byte).
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

impl ChunkPiece {
    /// The pieces of an encoded blob, in order, each at most `MAX_PIECE_BYTES`: a blob that fits
    /// one piece (every chunk) moves its bytes into it, a larger one (a big manifest) is copied
    /// out piece by piece.
    pub fn split(
        id: ChunkId,
        raw_len: u32,
        codec: ChunkCodec,
        bytes: Vec<u8>,
    ) -> impl Iterator<Item = ChunkPiece> {
        use crate::wire::limits::MAX_PIECE_BYTES;
        let encoded_len = bytes.len() as u32;
        let piece = move |offset: usize, data: Vec<u8>| ChunkPiece {
            id,
            raw_len,
            codec,
            encoded_len,
            offset: offset as u32,
            data,
        };
        let pieces: Vec<ChunkPiece> = if bytes.len() <= MAX_PIECE_BYTES {
            vec![piece(0, bytes)]
        } else {
            bytes
                .chunks(MAX_PIECE_BYTES)
                .enumerate()
                .map(|(n, data)| piece(n * MAX_PIECE_BYTES, data.to_vec()))
                .collect()
        };
        pieces.into_iter()
    }
}

/// Encoding of a blob's bytes on the wire and at rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ChunkCodec {
    /// Raw bytes (compression did not shrink them).
    Raw,
    /// A zstd frame.
    Zstd,
}

/// An entry of the account's device list.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// The device key.
    pub device: DeviceId,
    /// Its name.
    pub name: String,
    /// When it enrolled.
    pub enrolled: WallTime,
    /// Which device issued its pairing code (none for the invite).
    pub enrolled_by: Option<DeviceId>,
    /// Whether it may only read.
    pub read_only: bool,
    /// When it was revoked, if it was.
    pub revoked: Option<WallTime>,
    /// Whether it is connected now.
    pub online: bool,
}

/// Machine-readable failure kinds in `ServerMessage::Error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The message could not be decoded or broke a rule of the protocol.
    BadMessage,
    /// A size or rate limit was exceeded.
    Limit,
    /// The account's storage quota is full.
    Quota,
    /// A blob's bytes did not hash to its id.
    HashMismatch,
    /// Read-only devices may not write.
    ReadOnly,
    /// The request named something that does not exist for this account.
    NotFound,
    /// The relay failed internally; the request may be retried.
    Internal,
    /// The relay's disk is down to its free-space reserve: it stores no new blobs until it has
    /// room again (reads and document changes needing no new blobs still work). Retry later,
    /// with back-off.
    StorageFull,
}

/// The scan's verdict on one file version (by content hash).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentVerdict {
    /// The version's content hash ([`crate::tree::Content::hash`]).
    pub content: ChunkId,
    /// What the scan found.
    pub verdict: Verdict,
}

/// What a malware scan found in one file version.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Verdict {
    /// Scanned (or released by the operator) and found clean.
    Clean,
    /// A scanner recognised something bad.
    Flagged {
        /// Which scanner: `deny-list` or `clamav`.
        engine: String,
        /// What it recognised (a signature name, or the deny list's entry).
        signature: String,
    },
    /// Not scanned (yet): never silently taken for clean.
    Unscanned {
        /// Why not.
        reason: UnscannedReason,
    },
}

/// Why a file version was not scanned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnscannedReason {
    /// Queued, or the scanner is down or slow: it is retried.
    Pending,
    /// Larger than the scanner accepts (clamd's `StreamMaxLength`).
    TooLarge,
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Verdict::Clean => write!(f, "Clean"),
            Verdict::Flagged { engine, signature } => {
                write!(f, "Flagged {{ engine: {engine}, signature: {signature} }}")
            }
            Verdict::Unscanned { reason } => write!(f, "Unscanned {{ {reason} }}"),
        }
    }
}

impl std::fmt::Display for UnscannedReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            UnscannedReason::Pending => "pending",
            UnscannedReason::TooLarge => "too large",
        })
    }
}

/// WebSocket close codes the agent acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum CloseCode {
    /// Authentication failed: bad signature, unknown device or wrong code.
    BadAuth = 4001,
    /// The protocol version is not supported.
    UnsupportedVersion = 4002,
    /// The device was revoked.
    Revoked = 4003,
    /// The handshake did not finish in time.
    HandshakeTimeout = 4004,
    /// A limit was broken badly enough to disconnect.
    Limit = 4008,
}

impl CloseCode {
    /// The numeric close code.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The close code for a number, if it is one of ours.
    pub fn from_code(code: u16) -> Option<CloseCode> {
        [
            CloseCode::BadAuth,
            CloseCode::UnsupportedVersion,
            CloseCode::Revoked,
            CloseCode::HandshakeTimeout,
            CloseCode::Limit,
        ]
        .into_iter()
        .find(|c| c.code() == code)
    }
}
