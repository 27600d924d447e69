//! Identifiers shared by every part of cloud3: nodes, chunks, devices and folders.
//!
//! Each is a newtype over fixed bytes so that a chunk id can never be passed where a node id is
//! expected. Text forms are stable: they appear in the Automerge document and in redb keys.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Error for an identifier that does not parse from its text form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind}: {text:?}")]
pub struct ParseIdError {
    kind: &'static str,
    text: String,
}

/// SHA-256 of a chunk's raw (uncompressed) bytes; also names manifest blobs.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ChunkId(pub [u8; 32]);

impl ChunkId {
    /// Hashes `bytes` into the id they are stored under.
    pub fn of(bytes: &[u8]) -> ChunkId {
        ChunkId(Sha256::digest(bytes).into())
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", &self.to_hex()[..12])
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for ChunkId {
    type Err = ParseIdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| ParseIdError {
            kind: "chunk id",
            text: text.to_owned(),
        })?;
        Ok(ChunkId(bytes))
    }
}

/// A node (file, directory or symlink) of a folder, stable across renames and moves.
///
/// Fresh nodes get 16 random bytes from the caller; conflict copies get an id derived from what
/// conflicted ([`NodeId::derived`]) so that every device resolving the same conflict agrees.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 16]);

impl NodeId {
    /// The root directory of every folder.
    pub const ROOT: NodeId = NodeId([0; 16]);

    /// An id derived from `parts` under a domain label, so equal inputs give equal ids everywhere.
    pub fn derived(domain: &str, parts: &[&[u8]]) -> NodeId {
        let mut hasher = Sha256::new();
        hasher.update(domain.as_bytes());
        for part in parts {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        let digest = hasher.finalize();
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        NodeId(id)
    }

    /// The text form used as an Automerge map key: 22 characters of unpadded base64url.
    pub fn to_key(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Parses the text form written by [`NodeId::to_key`].
    pub fn from_key(text: &str) -> Result<NodeId, ParseIdError> {
        let error = || ParseIdError {
            kind: "node id",
            text: text.to_owned(),
        };
        let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| error())?;
        Ok(NodeId(bytes.try_into().map_err(|_| error())?))
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.to_key())
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_key())
    }
}

/// A device: the bytes of its ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct DeviceId(pub [u8; 32]);

impl DeviceId {
    /// The short form shown to people and recorded in file contents: the first 8 bytes in hex.
    pub fn short(&self) -> ShortDeviceId {
        let mut short = [0u8; 8];
        short.copy_from_slice(&self.0[..8]);
        ShortDeviceId(short)
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({})", self.short())
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for DeviceId {
    type Err = ParseIdError;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| ParseIdError {
            kind: "device id",
            text: text.to_owned(),
        })?;
        Ok(DeviceId(bytes))
    }
}

/// The first 8 bytes of a [`DeviceId`]: enough to tell a user's devices apart in a document.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ShortDeviceId(pub [u8; 8]);

impl fmt::Debug for ShortDeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShortDeviceId({self})")
    }
}

impl fmt::Display for ShortDeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A synced folder of an account. Accounts start with one folder, [`FolderId::DEFAULT`].
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, Serialize, Deserialize)]
pub struct FolderId(pub String);

impl FolderId {
    /// The folder every account starts with.
    pub const DEFAULT: &'static str = "default";

    /// The account's first folder.
    pub fn default_folder() -> FolderId {
        FolderId(Self::DEFAULT.to_owned())
    }
}

impl fmt::Display for FolderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_key_roundtrips_and_is_22_chars() {
        let id = NodeId([7; 16]);
        let key = id.to_key();
        assert_eq!(key.len(), 22);
        assert_eq!(NodeId::from_key(&key), Ok(id));
        assert!(NodeId::from_key("short").is_err());
    }

    #[test]
    fn derived_ids_depend_on_every_part_and_its_boundaries() {
        let a = NodeId::derived("d", &[b"ab", b"c"]);
        let b = NodeId::derived("d", &[b"a", b"bc"]);
        assert_ne!(a, b);
        assert_eq!(a, NodeId::derived("d", &[b"ab", b"c"]));
    }

    #[test]
    fn chunk_id_is_sha256_and_hex_roundtrips() {
        let id = ChunkId::of(b"abc");
        assert_eq!(
            id.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(id.to_hex().parse::<ChunkId>(), Ok(id));
    }
}
