//! The SHA-256 deny list: whole file versions an operator knows to be bad, one lowercase or
//! uppercase hex SHA-256 per line, optionally followed by a name for the verdict; `#` starts a
//! comment. Always available (no daemon needed); read at start and again on SIGHUP (a file that
//! does not read is logged and the old list stays).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use cloud3_engine::wire::Verdict;
use sha2::{Digest, Sha256};

use super::scanner::{ScanError, ScanPass, Scanner};

/// The engine name in verdicts.
pub const ENGINE: &str = "deny-list";

/// Why a deny list file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DenyListError {
    /// It does not read.
    #[error("cannot read deny list {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line is not a SHA-256.
    #[error("deny list {} line {line}: not a hex SHA-256", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
}

/// The loaded list (empty when no file is configured).
#[derive(Debug, Default)]
pub struct DenyList {
    path: Option<PathBuf>,
    entries: RwLock<HashMap<[u8; 32], String>>,
}

impl DenyList {
    /// Loads the list from `path` (none: an empty list).
    pub fn load(path: Option<&Path>) -> Result<DenyList, DenyListError> {
        let list = DenyList {
            path: path.map(Path::to_owned),
            entries: RwLock::default(),
        };
        list.reload()?;
        Ok(list)
    }

    /// Reads the file again; on error the old entries stay.
    pub fn reload(&self) -> Result<usize, DenyListError> {
        let Some(path) = &self.path else {
            return Ok(0);
        };
        let text = std::fs::read_to_string(path).map_err(|source| DenyListError::Read {
            path: path.clone(),
            source,
        })?;
        let entries = parse(&text).map_err(|line| DenyListError::Line {
            path: path.clone(),
            line,
        })?;
        let n = entries.len();
        *self.entries.write().unwrap_or_else(|p| p.into_inner()) = entries;
        Ok(n)
    }

    /// The verdict for a whole file's SHA-256.
    pub fn check(&self, sha256: &[u8; 32]) -> Verdict {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        match entries.get(sha256) {
            Some(name) => Verdict::Flagged {
                engine: ENGINE.into(),
                signature: name.clone(),
            },
            None => Verdict::Clean,
        }
    }
}

/// Entries by hash, each with its name (`sha256:HEX` when the line gives none); the 1-based
/// number of the first bad line otherwise.
fn parse(text: &str) -> Result<HashMap<[u8; 32], String>, usize> {
    let mut entries = HashMap::new();
    for (idx, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let hex_hash = words.next().unwrap_or("");
        let mut hash = [0u8; 32];
        hex::decode_to_slice(hex_hash, &mut hash).map_err(|_| idx + 1)?;
        let name = words.collect::<Vec<_>>().join(" ");
        let name = if name.is_empty() {
            format!("sha256:{}", hex::encode(hash))
        } else {
            name
        };
        entries.insert(hash, name);
    }
    Ok(entries)
}

/// A version being hashed for the deny list.
struct DenyPass<'a> {
    list: &'a DenyList,
    hasher: Sha256,
}

impl Scanner for DenyList {
    fn start(&self, _size: u64) -> Result<Box<dyn ScanPass + '_>, ScanError> {
        Ok(Box::new(DenyPass {
            list: self,
            hasher: Sha256::new(),
        }))
    }
}

impl ScanPass for DenyPass<'_> {
    fn feed(&mut self, bytes: &[u8]) -> Result<(), ScanError> {
        self.hasher.update(bytes);
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<Verdict, ScanError> {
        Ok(self.list.check(&self.hasher.finalize().into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_hashes_are_flagged_with_their_name_and_reload_replaces_the_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deny.txt");
        let bad: [u8; 32] = Sha256::digest(b"bad bytes").into();
        std::fs::write(
            &path,
            format!("# known bad\n{} Test.Bad # why\n\n", hex::encode(bad)),
        )
        .unwrap();
        let list = DenyList::load(Some(&path)).unwrap();
        let mut pass = list.start(9).unwrap();
        pass.feed(b"bad ").unwrap();
        pass.feed(b"bytes").unwrap();
        assert_eq!(
            pass.finish().unwrap(),
            Verdict::Flagged {
                engine: ENGINE.into(),
                signature: "Test.Bad".into()
            }
        );
        assert_eq!(list.check(&[0; 32]), Verdict::Clean);
        std::fs::write(&path, "not hex\n").unwrap();
        assert!(matches!(
            list.reload(),
            Err(DenyListError::Line { line: 1, .. })
        ));
        assert!(
            matches!(list.check(&bad), Verdict::Flagged { .. }),
            "old list kept"
        );
        std::fs::write(&path, hex::encode(bad)).unwrap();
        list.reload().unwrap();
        assert_eq!(
            list.check(&bad),
            Verdict::Flagged {
                engine: ENGINE.into(),
                signature: format!("sha256:{}", hex::encode(bad))
            }
        );
    }
}
