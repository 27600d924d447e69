//! The wire protocol between devices and the relay: one versioned message per WebSocket binary
//! frame.
//!
//! Every frame is `version: u16 (big endian) || postcard(message)`. The version is read first so an
//! unknown one is refused with a clear error before anything else is decoded, and the frame's
//! length is checked against [`limits::MAX_MESSAGE_BYTES`] before decoding allocates anything.
//!
//! Message flow:
//! ```text
//! device                                   relay
//!   |  <---------------- Challenge { relay_id, nonce }     (first frame, always)
//!   |  Hello { Auth | Enrol } ------------------------->   (signature over the challenge)
//!   |  <---------------- Welcome { device, read_only, now, retention_days }
//!   |                                                       or close 4001 / 4003 / 4004
//!   |  DocHeads { folder, heads } --------------------->   (my heads; starts a sync round)
//!   |  <---------------- DocChanges + DocHeads              (what I lack, then the relay's heads)
//!   |  ChunkQuery { ids } ----------------------------->
//!   |  <---------------- ChunkMissing { ids }
//!   |  ChunkPut { .. } -------------------------------->   (pieces of at most 512 KiB)
//!   |  <---------------- ChunkStored { id }                 (only after commit)
//!   |  DocChanges { folder, changes } ----------------->   (after the chunks they reference)
//!   |  <---------------- DocHeads                           (ack; other devices get DocChanges)
//!   |  ChunkGet { ids } ------------------------------->
//!   |  <---------------- ChunkData { .. } / ChunkUnavailable
//! ```
//! `Verdicts` (the malware scan's findings) may arrive at any time; a `ChunkGet` for a blob of
//! a flagged or held version is answered `ChunkRefused` with the verdict.
//! Presence, pairing codes, device lists, revocation and ping/pong may be interleaved anywhere.

pub mod codec;
pub mod limits;
pub mod message;

pub use codec::{DecodeError, decode_client, decode_server, encode_client, encode_server};
pub use message::{
    AuthProof, ChunkCodec, ClientMessage, CloseCode, ContentVerdict, DeviceInfo, ErrorCode, Hello,
    ServerMessage, UnscannedReason, Verdict,
};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;
