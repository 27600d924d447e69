//! One-time codes for invites and pairing: at least 50 bits of entropy, typed by people, stored
//! only as a SHA-256 hash.
//!
//! The alphabet is Crockford's base32: digits and capital letters only, so chat apps and
//! Markdown leave a code alone (the first alphabet ended in `_`, which they ate at a code's
//! ends). The one separator is `-`, and only inside a code. Codes are single-use and live ten
//! minutes, so codes of the old alphabet are simply not accepted any more (their hash label
//! changed too).

use sha2::{Digest, Sha256};

/// Crockford's base32: no I, L, O or U; 32 symbols, 5 bits each.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Symbols per code: 10 x 5 = 50 bits of entropy.
const SYMBOLS: usize = 10;
const _: () = assert!(SYMBOLS * 5 >= 50, "codes need at least 50 bits of entropy");

/// Symbols per group in the displayed form, groups joined by `-`.
const GROUP: usize = 5;

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

/// A one-time code as shown to people, e.g. `K7RWQ-2MZ9D`.
#[derive(Clone, PartialEq, Eq)]
pub struct OneTimeCode(String);

impl OneTimeCode {
    /// Makes a code from caller-supplied random bytes (8 bytes give 64 bits; 50 are used).
    pub fn generate(random: [u8; 8]) -> OneTimeCode {
        let mut bits = u64::from_le_bytes(random);
        let mut symbols = String::with_capacity(SYMBOLS);
        for _ in 0..SYMBOLS {
            symbols.push(ALPHABET[(bits & 31) as usize] as char);
            bits >>= 5;
        }
        OneTimeCode::generate_from_symbols(&symbols)
    }

    /// Parses a code as typed: case, spaces and dashes are forgiven, and so are the look-alikes
    /// Crockford's base32 reads as digits (O for 0, I and L for 1).
    pub fn parse(typed: &str) -> Result<OneTimeCode, CodeError> {
        let symbols: String = typed
            .chars()
            .filter(|c| !matches!(c, '-' | ' '))
            .map(|c| match c.to_ascii_uppercase() {
                'O' => '0',
                'I' | 'L' => '1',
                other => other,
            })
            .collect();
        if symbols.len() != SYMBOLS || !symbols.bytes().all(|b| ALPHABET.contains(&b)) {
            return Err(CodeError::Malformed);
        }
        Ok(OneTimeCode::generate_from_symbols(&symbols))
    }

    fn generate_from_symbols(symbols: &str) -> OneTimeCode {
        let mut display = String::with_capacity(SYMBOLS + SYMBOLS / GROUP);
        for (idx, c) in symbols.chars().enumerate() {
            if idx > 0 && idx % GROUP == 0 {
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
        hasher.update(b"cloud3 one-time code v2\0");
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
    fn codes_are_digits_and_capitals_with_dashes_only_inside() {
        for random in [[0xff; 8], [0; 8], [0x5a; 8], [0xa5; 8], [0xf0; 8]] {
            let code = OneTimeCode::generate(random);
            let text = code.as_str();
            assert!(
                text.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase() || b == b'-'),
                "{text}"
            );
            assert!(!text.starts_with('-') && !text.ends_with('-'), "{text}");
        }
        // All bits set picked the alphabet's last symbol, which used to be `_`.
        assert_eq!(OneTimeCode::generate([0xff; 8]).as_str(), "ZZZZZ-ZZZZZ");
    }

    #[test]
    fn look_alikes_read_as_digits() {
        let code = OneTimeCode::parse("10101-01010").unwrap();
        assert_eq!(
            OneTimeCode::parse("lOiO1 o1oLo").unwrap().hash(),
            code.hash()
        );
    }

    #[test]
    fn malformed_codes_are_refused() {
        for bad in [
            "",
            "ABC",
            "UUUUUUUUUU",
            "ABCDEFGHJKM",
            "ABCD\0FGHJK",
            "ABCDE_FGHJ",
        ] {
            assert_eq!(
                OneTimeCode::parse(bad),
                Err(CodeError::Malformed),
                "{bad:?}"
            );
        }
    }
}
