//! Device identity and the challenge-response handshake, as pure functions.
//!
//! The relay sends a fresh nonce and its identity; the device signs a domain-separated message
//! binding both, its own key and the account name; the relay checks it with `verify_strict`.
//! One-time codes (invites and pairing codes) are generated from caller-supplied randomness and
//! only their hashes are stored.

pub mod challenge;
pub mod code;
pub mod keys;

pub use challenge::{HandshakeError, signed_message, verify_hello};
pub use code::{CodeError, OneTimeCode};
pub use keys::DeviceKey;
