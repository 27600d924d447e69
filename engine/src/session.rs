//! The sync protocol as state machines: fed with messages and time, returning messages to send and
//! events for the shell to perform. No IO happens here.
//!
//! - [`docsync`]: keeping one folder document in sync with one peer by exchanging heads and the
//!   changes the other side lacks (never Automerge's whole-document fallback).
//! - [`hub`]: the relay's side of a folder, fanning each device's changes out to the others.

pub mod docsync;
pub mod hub;
#[cfg(test)]
mod test_doc;

pub use docsync::{ChangeHash, DocOutgoing, PeerSync, SyncDoc, SyncDocError};
pub use hub::FolderHub;
