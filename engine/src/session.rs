//! The sync protocol as state machines: fed with messages and time, returning messages to send and
//! events for the shell to perform. No IO happens here.
//!
//! - [`docsync`]: keeping one folder document in sync with one peer by exchanging heads and the
//!   changes the other side lacks (never Automerge's whole-document fallback).

pub mod docsync;

pub use docsync::{DocOutgoing, PeerSync, SyncDoc, SyncDocError};
