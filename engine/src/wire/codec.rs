//! Encoding and decoding of frames: `version (u16 BE) || postcard(message)`.
//!
//! Only this module knows the byte layout of a frame.

use serde::Serialize;
use serde::de::DeserializeOwned;

use super::PROTOCOL_VERSION;
use super::limits::MAX_MESSAGE_BYTES;
use super::message::{ClientMessage, ServerMessage};

/// Why a frame could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The frame is larger than [`MAX_MESSAGE_BYTES`].
    #[error("message of {0} bytes exceeds the limit of {MAX_MESSAGE_BYTES}")]
    TooLarge(usize),
    /// The frame is shorter than its version prefix.
    #[error("message too short to hold a version")]
    Truncated,
    /// The frame's version is not one this build speaks.
    #[error("unsupported protocol version {0} (this build speaks {PROTOCOL_VERSION})")]
    UnsupportedVersion(u16),
    /// The body is not a valid message.
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// Encodes a device's message.
pub fn encode_client(message: &ClientMessage) -> Vec<u8> {
    encode(message)
}

/// Encodes a relay's message.
pub fn encode_server(message: &ServerMessage) -> Vec<u8> {
    encode(message)
}

/// Decodes a frame received by the relay.
pub fn decode_client(frame: &[u8]) -> Result<ClientMessage, DecodeError> {
    decode(frame)
}

/// Decodes a frame received by a device.
pub fn decode_server(frame: &[u8]) -> Result<ServerMessage, DecodeError> {
    decode(frame)
}

fn encode<T: Serialize>(message: &T) -> Vec<u8> {
    let mut frame = PROTOCOL_VERSION.to_be_bytes().to_vec();
    // Serialising our own message types into a Vec cannot fail: they hold no maps with
    // non-string keys and no types postcard rejects.
    let body = postcard::to_allocvec(message).expect("wire messages always serialise");
    frame.extend_from_slice(&body);
    frame
}

fn decode<T: DeserializeOwned>(frame: &[u8]) -> Result<T, DecodeError> {
    if frame.len() > MAX_MESSAGE_BYTES {
        return Err(DecodeError::TooLarge(frame.len()));
    }
    let (version, body) = frame
        .split_first_chunk::<2>()
        .ok_or(DecodeError::Truncated)?;
    let version = u16::from_be_bytes(*version);
    if version != PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    // postcard bounds every length prefix by the remaining input before allocating, so a frame
    // within the size limit cannot make it allocate more than a small multiple of the frame.
    let (message, rest) =
        postcard::take_from_bytes(body).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    if !rest.is_empty() {
        return Err(DecodeError::Malformed(format!(
            "{} trailing bytes after message",
            rest.len()
        )));
    }
    Ok(message)
}

#[cfg(test)]
mod tests;
