//! Checking Automerge change bytes from a peer before Automerge sees them.
//!
//! Automerge inflates compressed change chunks and document chunks without a bound, so a small
//! message could grow a thousandfold. Peers exchange only uncompressed change chunks: the header
//! is parsed here and anything else is refused. (Automerge itself refuses a change chunk whose
//! columns are marked compressed.)

use crate::wire::limits::MAX_CHANGES_BYTES;

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const CHUNK_DOCUMENT: u8 = 0;
const CHUNK_CHANGE: u8 = 1;

/// Why change bytes were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    /// Not an Automerge chunk.
    #[error("not an automerge change: {0}")]
    Malformed(&'static str),
    /// A compressed change or a whole document, which could inflate without bound.
    #[error("refused automerge chunk of type {0}: only uncompressed changes are accepted")]
    ChunkType(u8),
    /// Larger than a message may carry.
    #[error("change of {0} bytes exceeds the limit")]
    TooLarge(usize),
}

/// Accepts exactly one uncompressed change chunk filling `bytes`.
pub fn check_change(bytes: &[u8]) -> Result<(), ChangeError> {
    change_body(bytes).map(|_| ())
}

/// The body of exactly one uncompressed change chunk filling `bytes` (what follows its magic,
/// checksum, type and length), checked as [`check_change`] checks it.
pub fn change_body(bytes: &[u8]) -> Result<&[u8], ChangeError> {
    if bytes.len() > MAX_CHANGES_BYTES {
        return Err(ChangeError::TooLarge(bytes.len()));
    }
    let (chunk_type, mut rest) = chunk_type(bytes)?;
    if chunk_type != CHUNK_CHANGE {
        return Err(ChangeError::ChunkType(chunk_type));
    }
    let mut len = 0u64;
    let mut shift = 0;
    loop {
        let (&byte, tail) = rest
            .split_first()
            .ok_or(ChangeError::Malformed("truncated length"))?;
        rest = tail;
        len |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 56 {
            return Err(ChangeError::Malformed("length too long"));
        }
    }
    if len != rest.len() as u64 {
        return Err(ChangeError::Malformed("length does not match"));
    }
    Ok(rest)
}

/// Whether `bytes` start with a whole-document chunk (what `FolderDoc::save` writes), not with
/// changes.
pub fn is_document(bytes: &[u8]) -> bool {
    matches!(chunk_type(bytes), Ok((CHUNK_DOCUMENT, _)))
}

/// An Automerge chunk's type and what follows it (after magic and checksum).
fn chunk_type(bytes: &[u8]) -> Result<(u8, &[u8]), ChangeError> {
    let rest = bytes
        .strip_prefix(&MAGIC)
        .ok_or(ChangeError::Malformed("bad magic"))?;
    let rest = rest
        .get(4..)
        .ok_or(ChangeError::Malformed("truncated checksum"))?;
    let (&chunk_type, rest) = rest
        .split_first()
        .ok_or(ChangeError::Malformed("truncated type"))?;
    Ok((chunk_type, rest))
}

#[cfg(test)]
mod tests {
    use automerge::{AutoCommit, ROOT, transaction::Transactable};

    use super::*;

    fn real_change() -> Vec<u8> {
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "k", "v").unwrap();
        doc.commit();
        doc.get_changes(&[])[0].raw_bytes().to_vec()
    }

    #[test]
    fn a_real_change_passes() {
        assert_eq!(check_change(&real_change()), Ok(()));
    }

    #[test]
    fn compressed_chunks_and_documents_are_refused() {
        // A compressed chunk (type 2) whose deflate stream would inflate to 1 GiB of zeros
        // would be inflated by automerge without a bound; it never gets that far.
        let mut bomb = MAGIC.to_vec();
        bomb.extend([0, 0, 0, 0, 2, 0x80, 0x08]);
        bomb.extend(vec![0u8; 1024]);
        assert_eq!(check_change(&bomb), Err(ChangeError::ChunkType(2)));
        let mut doc = AutoCommit::new();
        doc.put(ROOT, "k", "v").unwrap();
        assert!(matches!(
            check_change(&doc.save()),
            Err(ChangeError::ChunkType(0))
        ));
        assert!(is_document(&doc.save()));
        assert!(!is_document(&real_change()));
    }

    #[test]
    fn garbage_is_refused() {
        for bytes in [vec![], vec![1, 2, 3], MAGIC.to_vec()] {
            assert!(check_change(&bytes).is_err());
        }
        let mut truncated = real_change();
        truncated.pop();
        assert!(check_change(&truncated).is_err());
    }
}
