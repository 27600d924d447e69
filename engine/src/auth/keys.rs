//! A device's ed25519 key pair. The secret never leaves the device.

use ed25519_dalek::{Signer, SigningKey};

use crate::ids::DeviceId;

/// A device's signing key.
pub struct DeviceKey(SigningKey);

impl DeviceKey {
    /// A key from 32 secret bytes, which the caller draws from the OS's randomness.
    pub fn from_secret(secret: [u8; 32]) -> DeviceKey {
        DeviceKey(SigningKey::from_bytes(&secret))
    }

    /// The 32 secret bytes, for the caller to store (mode 0600 on disk).
    pub fn secret(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// This device's id: its public key.
    pub fn device_id(&self) -> DeviceId {
        DeviceId(self.0.verifying_key().to_bytes())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the secret.
        write!(f, "DeviceKey({:?})", self.device_id())
    }
}
