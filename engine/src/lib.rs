//! cloud3's engine: everything about syncing a folder that does not touch a disk, a socket or a
//! clock.
//!
//! - [`tree`]: the folder as an Automerge document and the deterministic tree derived from it.
//! - [`chunk`]: content-defined chunking, SHA-256 ids, zstd, manifests.
//! - [`wire`]: the versioned messages between devices and the relay.
//! - [`auth`]: device keys, the signed handshake, one-time codes.
//! - [`session`]: the sync protocol as state machines fed with messages and returning actions.
//! - [`scan`] and [`materialise`]: file facts in, document ops out; document in, file actions out.
//! - [`guard`]: whether a scan's deletions are sent or held until the user confirms them.
//!
//! Time ([`time::Millis`], [`time::WallTime`]) and randomness are always passed in by the caller.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod auth;
pub mod chunk;
#[cfg(feature = "test-support")]
pub mod fuzz;
pub mod guard;
pub mod ids;
pub mod materialise;
pub mod scan;
pub mod session;
#[cfg(feature = "test-support")]
pub mod sim;
pub mod time;
pub mod tree;
pub mod wire;
