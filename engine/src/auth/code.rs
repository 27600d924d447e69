//! One-time codes for invites and pairing: at least 40 bits of entropy, typed by people, stored
//! only as a SHA-256 hash.

use sha2::{Digest, Sha256};

/// Alphabet without look-alikes (no 0/O, 1/I/L): 32 symbols, 5 bits each.
const ALPHABET: &[u8; 32] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ_";

/// Symbols per code: 10 x 5 = 50 bits of entropy.
const SYMBOLS: usize = 10;
const _: () = assert!(SYMBOLS * 5 >= 40, "codes need at least 40 bits of entropy");

/// Why a typed code was refused before looking it up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    /// The code has the wrong length or characters.
    #[error(
        "malformed code: expected {SYMBOLS} characters from {}",
        String::from_utf8_lossy(ALPHABET)
    )]
    Malformed,
}

/// A one-time code as shown to people, e.g. `K7RW-Q2MZ-9D`.
#[derive(Clone, PartialEq, Eq)]
pub struct OneTimeCode(String);

impl OneTimeCode {
    /// Makes a code from caller-supplied random bytes (8 bytes give 64 bits; 50 are used).
    pub fn generate(random: [u8; 8]) -> OneTimeCode {
        let mut bits = u64::from_le_bytes(random);
        let mut symbols = String::with_capacity(SYMBOLS + 2);
        for idx in 0..SYMBOLS {
            if idx > 0 && idx % 4 == 0 {
                symbols.push('-');
            }
            symbols.push(ALPHABET[(bits & 31) as usize] as char);
            bits >>= 5;
        }
        OneTimeCode(symbols)
    }

    /// Parses a code as typed: case, spaces and dashes are forgiven.
    pub fn parse(typed: &str) -> Result<OneTimeCode, CodeError> {
        let symbols: String = typed
            .chars()
            .filter(|c| !matches!(c, '-' | ' '))
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if symbols.len() != SYMBOLS || !symbols.bytes().all(|b| ALPHABET.contains(&b)) {
            return Err(CodeError::Malformed);
        }
        Ok(OneTimeCode::generate_from_symbols(&symbols))
    }

    fn generate_from_symbols(symbols: &str) -> OneTimeCode {
        let mut display = String::with_capacity(SYMBOLS + 2);
        for (idx, c) in symbols.chars().enumerate() {
            if idx > 0 && idx % 4 == 0 {
                display.push('-');
            }
            display.push(c);
        }
        OneTimeCode(display)
    }

    /// The form shown to people.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// What the relay stores: SHA-256 over a domain label and the code's symbols.
    pub fn hash(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(b"cloud3 one-time code v1\0");
        hasher.update(self.0.replace('-', "").as_bytes());
        hasher.finalize().into()
    }
}

impl std::fmt::Debug for OneTimeCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Codes are secrets until used.
        f.write_str("OneTimeCode(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_forgives_case_and_dashes() {
        let code = OneTimeCode::generate([0x5a; 8]);
        let typed = code.as_str().to_lowercase().replace('-', " ");
        let parsed = OneTimeCode::parse(&typed).unwrap();
        assert_eq!(parsed.hash(), code.hash());
    }

    #[test]
    fn codes_have_50_bits_and_differ_with_randomness() {
        let a = OneTimeCode::generate([1; 8]);
        let b = OneTimeCode::generate([2; 8]);
        assert_ne!(a.hash(), b.hash());
        assert_eq!(a.as_str().replace('-', "").len(), SYMBOLS);
    }

    #[test]
    fn malformed_codes_are_refused() {
        for bad in ["", "ABC", "0000000000", "ABCDEFGHJKM", "ABCD\0FGHJK"] {
            assert_eq!(
                OneTimeCode::parse(bad),
                Err(CodeError::Malformed),
                "{bad:?}"
            );
        }
    }
}
