//! Chunks: content-defined chunking, SHA-256 ids, zstd compression and manifests.
//!
//! A file's bytes are cut by FastCDC ([`cdc`]) into chunks named by the SHA-256 of their raw bytes
//! ([`crate::ids::ChunkId`]). The ordered list of a file's chunks is its [`manifest::Manifest`];
//! the file's content hash is the hash of that manifest's encoding.

pub mod cdc;
pub mod compress;
pub mod manifest;

#[cfg(not(target_arch = "wasm32"))]
pub use compress::compress;
pub use compress::{ChunkError, Encoded, open};
pub use manifest::{Manifest, ManifestEntry, ManifestError};
