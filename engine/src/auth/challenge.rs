//! The signed handshake message and its verification.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::ids::DeviceId;
use crate::wire::{AuthProof, Hello};

/// Domain separation for handshake signatures: a signature made here is useless anywhere else.
pub const HANDSHAKE_DOMAIN: &[u8] = b"cloud3 device handshake v1\0";

/// Why a `Hello` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeError {
    /// The device key is not a valid ed25519 point.
    #[error("device key of {device:?} is not a valid ed25519 key")]
    BadKey {
        /// The claimed device.
        device: DeviceId,
    },
    /// The signature does not verify strictly.
    #[error("signature of {device:?} does not verify")]
    BadSignature {
        /// The claimed device.
        device: DeviceId,
    },
}

/// The exact bytes a device signs: domain, relay identity, nonce, device key, user and the proof
/// (so an enrolment code cannot be moved to another key or account).
pub fn signed_message(relay_id: &[u8; 32], nonce: &[u8; 32], hello: &Hello) -> Vec<u8> {
    let mut message = Vec::with_capacity(256);
    message.extend_from_slice(HANDSHAKE_DOMAIN);
    message.extend_from_slice(relay_id);
    message.extend_from_slice(nonce);
    message.extend_from_slice(&hello.device.0);
    message.extend_from_slice(&hello.version.to_be_bytes());
    push_field(&mut message, hello.user.as_bytes());
    match &hello.proof {
        AuthProof::Device => message.push(0),
        AuthProof::Enrol { code, device_name } => {
            message.push(1);
            push_field(&mut message, code.as_bytes());
            push_field(&mut message, device_name.as_bytes());
        }
    }
    message
}

/// Checks the signature of `hello` for this relay and nonce (not whether the device is enrolled:
/// that is the relay's store's call).
pub fn verify_hello(
    relay_id: &[u8; 32],
    nonce: &[u8; 32],
    hello: &Hello,
) -> Result<(), HandshakeError> {
    let device = hello.device;
    let key = VerifyingKey::from_bytes(&device.0).map_err(|_| HandshakeError::BadKey { device })?;
    let signature = Signature::from_slice(&hello.signature)
        .map_err(|_| HandshakeError::BadSignature { device })?;
    key.verify_strict(&signed_message(relay_id, nonce, hello), &signature)
        .map_err(|_| HandshakeError::BadSignature { device })
}

/// Builds a signed `Hello` for `key`.
pub fn sign_hello(
    key: &super::DeviceKey,
    relay_id: &[u8; 32],
    nonce: &[u8; 32],
    user: &str,
    proof: AuthProof,
) -> Hello {
    let mut hello = Hello {
        version: crate::wire::PROTOCOL_VERSION,
        user: user.to_owned(),
        device: key.device_id(),
        proof,
        signature: Vec::new(),
    };
    hello.signature = key.sign(&signed_message(relay_id, nonce, &hello)).to_vec();
    hello
}

fn push_field(message: &mut Vec<u8>, field: &[u8]) {
    message.extend_from_slice(&(field.len() as u32).to_be_bytes());
    message.extend_from_slice(field);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::DeviceKey;

    fn hello_for(key: &DeviceKey, nonce: &[u8; 32]) -> Hello {
        sign_hello(key, &[1; 32], nonce, "alice", AuthProof::Device)
    }

    #[test]
    fn a_signed_hello_verifies() {
        let key = DeviceKey::from_secret([9; 32]);
        let hello = hello_for(&key, &[2; 32]);
        assert_eq!(verify_hello(&[1; 32], &[2; 32], &hello), Ok(()));
    }

    #[test]
    fn a_replayed_hello_fails_under_a_new_nonce_or_relay() {
        let key = DeviceKey::from_secret([9; 32]);
        let hello = hello_for(&key, &[2; 32]);
        assert!(verify_hello(&[1; 32], &[3; 32], &hello).is_err());
        assert!(verify_hello(&[4; 32], &[2; 32], &hello).is_err());
    }

    #[test]
    fn changing_user_or_proof_breaks_the_signature() {
        let key = DeviceKey::from_secret([9; 32]);
        let mut hello = hello_for(&key, &[2; 32]);
        hello.user = "bob".into();
        assert!(verify_hello(&[1; 32], &[2; 32], &hello).is_err());
        let mut hello = hello_for(&key, &[2; 32]);
        hello.proof = AuthProof::Enrol {
            code: "x".into(),
            device_name: "d".into(),
        };
        assert!(verify_hello(&[1; 32], &[2; 32], &hello).is_err());
    }

    #[test]
    fn another_devices_key_cannot_sign_for_it() {
        let alice = DeviceKey::from_secret([9; 32]);
        let mallory = DeviceKey::from_secret([8; 32]);
        let mut hello = hello_for(&mallory, &[2; 32]);
        hello.device = alice.device_id();
        assert!(verify_hello(&[1; 32], &[2; 32], &hello).is_err());
    }

    #[test]
    fn garbage_signatures_and_keys_are_refused() {
        let key = DeviceKey::from_secret([9; 32]);
        let mut hello = hello_for(&key, &[2; 32]);
        hello.signature = vec![0; 3];
        assert!(verify_hello(&[1; 32], &[2; 32], &hello).is_err());
        hello.device = DeviceId([0xff; 32]);
        assert!(verify_hello(&[1; 32], &[2; 32], &hello).is_err());
    }
}
