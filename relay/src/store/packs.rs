//! Append-only pack files holding chunk bytes, one directory per user
//! (`packs/<hex SHA-256 of the user name>/<n>.pack`). redb keeps chunk bytes poorly (a file 2.3x
//! the payload for 64 KiB values), so bytes live here and redb only indexes them.
//!
//! A write appends and fsyncs before the index entry is committed: a crash in between leaves dead
//! bytes at a pack's tail, never an index entry pointing at missing bytes.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::error::StoreError;

/// A pack is closed and a new one started past this size.
pub const PACK_ROLL_BYTES: u64 = 256 * 1024 * 1024;

/// Where a blob's bytes are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PackSpan {
    /// Pack number.
    pub pack: u32,
    /// Byte offset.
    pub offset: u64,
    /// Length.
    pub len: u32,
}

/// The pack files of every user.
pub struct Packs {
    root: PathBuf,
    /// Per user directory: (current pack number, its length).
    current: HashMap<String, (u32, u64)>,
}

impl Packs {
    /// Opens the pack root.
    pub fn open(root: &Path) -> Result<Packs, StoreError> {
        fs::create_dir_all(root).map_err(|e| StoreError::io("create", root, e))?;
        Ok(Packs {
            root: root.to_owned(),
            current: HashMap::new(),
        })
    }

    /// A user's directory name: never the raw user name.
    fn user_dir(&self, user: &str) -> PathBuf {
        self.root.join(hex::encode(Sha256::digest(user.as_bytes())))
    }

    /// Appends each of `blobs` to the user's current pack (rolling to a new pack when it is
    /// full) and makes them durable with one `fsync` per pack touched: a batch costs one flush,
    /// not one per blob. A batch that fails (a full disk) is taken back whole: every pack it
    /// touched is truncated to the length it had, so no failed upload keeps the space it took.
    pub fn append_all(&mut self, user: &str, blobs: &[&[u8]]) -> Result<Vec<PackSpan>, StoreError> {
        let before = self.current.get(user).copied();
        let mut touched: Vec<(PathBuf, u64)> = Vec::new();
        let appended = self.append_each(user, blobs, &mut touched);
        if appended.is_err() {
            self.take_back(user, before, &touched);
        }
        appended
    }

    /// Takes back a batch whose index entries could not be committed (see
    /// [`Packs::append_all`]): its bytes are cut off the pack if nothing was appended after them
    /// meanwhile (else they stay as dead bytes, which no index entry names).
    pub fn rollback(&mut self, user: &str, spans: &[PackSpan]) {
        let (Some(first), Some(last)) = (spans.first(), spans.last()) else {
            return;
        };
        let end = (last.pack, last.offset + u64::from(last.len));
        if self.current.get(user) != Some(&end) {
            return;
        }
        let dir = self.user_dir(user);
        let mut touched: Vec<(PathBuf, u64)> = Vec::new();
        for span in spans {
            let path = pack_path(&dir, span.pack);
            if !touched.iter().any(|(p, _)| *p == path) {
                touched.push((path, span.offset));
            }
        }
        self.take_back(user, Some((first.pack, first.offset)), &touched);
    }

    /// Truncates each touched pack to its earlier length and puts the user's current pack back.
    fn take_back(&mut self, user: &str, before: Option<(u32, u64)>, touched: &[(PathBuf, u64)]) {
        for (path, len) in touched {
            let truncated = OpenOptions::new()
                .write(true)
                .open(path)
                .and_then(|file| file.set_len(*len).and_then(|()| file.sync_data()));
            if let Err(error) = truncated {
                tracing::error!(path = %path.display(), %error, "cannot take back a failed append");
            }
        }
        match before {
            Some(current) => self.current.insert(user.to_owned(), current),
            // Unknown before: the next append reads the lengths from disk again.
            None => self.current.remove(user),
        };
    }

    /// [`Packs::append_all`]'s work; `touched` gets each pack opened with its length before.
    fn append_each(
        &mut self,
        user: &str,
        blobs: &[&[u8]],
        touched: &mut Vec<(PathBuf, u64)>,
    ) -> Result<Vec<PackSpan>, StoreError> {
        let dir = self.user_dir(user);
        let mut spans = Vec::with_capacity(blobs.len());
        let mut open: Option<(u32, fs::File, PathBuf)> = None;
        for bytes in blobs {
            let (pack, len) = match self.current.get(user) {
                Some(current) => *current,
                None => {
                    fs::create_dir_all(&dir).map_err(|e| StoreError::io("create", &dir, e))?;
                    let last = last_pack(&dir)?;
                    let len = fs::metadata(pack_path(&dir, last)).map_or(0, |m| m.len());
                    (last, len)
                }
            };
            let (pack, offset) = if len >= PACK_ROLL_BYTES {
                (pack + 1, 0)
            } else {
                (pack, len)
            };
            if open.as_ref().is_none_or(|(n, _, _)| *n != pack) {
                if let Some((_, file, path)) = open.take() {
                    file.sync_data()
                        .map_err(|e| StoreError::io("sync", &path, e))?;
                }
                let path = pack_path(&dir, pack);
                let file = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| StoreError::io("open", &path, e))?;
                let len = file
                    .metadata()
                    .map_err(|e| StoreError::io("stat", &path, e))?
                    .len();
                touched.push((path.clone(), len));
                open = Some((pack, file, path));
            }
            let Some((_, file, path)) = open.as_mut() else {
                return Err(StoreError::Corrupt("no open pack".into()));
            };
            let offset = if offset == 0 {
                file.metadata().map_or(0, |m| m.len())
            } else {
                offset
            };
            file.write_all(bytes)
                .map_err(|e| StoreError::io("append", path, e))?;
            self.current
                .insert(user.to_owned(), (pack, offset + bytes.len() as u64));
            spans.push(PackSpan {
                pack,
                offset,
                len: bytes.len() as u32,
            });
        }
        if let Some((_, file, path)) = open {
            file.sync_data()
                .map_err(|e| StoreError::io("sync", &path, e))?;
        }
        Ok(spans)
    }

    /// Reads a span of a user's pack.
    pub fn read(&self, user: &str, span: PackSpan) -> Result<Vec<u8>, StoreError> {
        let path = pack_path(&self.user_dir(user), span.pack);
        let file = File::open(&path).map_err(|e| StoreError::io("open", &path, e))?;
        let mut bytes = vec![0u8; span.len as usize];
        file.read_exact_at(&mut bytes, span.offset)
            .map_err(|e| StoreError::io("read", &path, e))?;
        Ok(bytes)
    }

    /// Total bytes of a user's packs on disk.
    pub fn disk_bytes(&self, user: &str) -> u64 {
        fs::read_dir(self.user_dir(user))
            .map(|entries| {
                entries
                    .flatten()
                    .filter_map(|e| e.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    }

    /// Deletes a user's packs.
    pub fn remove_user(&mut self, user: &str) -> Result<(), StoreError> {
        self.current.remove(user);
        let dir = self.user_dir(user);
        match fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StoreError::io("remove", &dir, e)),
        }
    }
}

fn pack_path(dir: &Path, pack: u32) -> PathBuf {
    dir.join(format!("{pack:08}.pack"))
}

fn last_pack(dir: &Path) -> Result<u32, StoreError> {
    let entries = fs::read_dir(dir).map_err(|e| StoreError::io("list", dir, e))?;
    Ok(entries
        .flatten()
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_suffix(".pack"))
                .and_then(|n| n.parse::<u32>().ok())
        })
        .max()
        .unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appended_spans_read_back_after_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let spans: Vec<PackSpan> = {
            let mut packs = Packs::open(dir.path()).unwrap();
            // One batch of two, as a connection stores them.
            packs
                .append_all("alice", &[b"first".as_slice(), b"second".as_slice()])
                .unwrap()
        };
        assert_eq!(spans[1].offset, 5);
        let mut packs = Packs::open(dir.path()).unwrap();
        let third = packs.append_all("alice", &[b"third"]).unwrap()[0];
        assert_eq!(third.offset, 11);
        assert_eq!(packs.read("alice", spans[1]).unwrap(), b"second");
        assert_eq!(packs.read("alice", third).unwrap(), b"third");
        assert!(packs.read("bob", spans[0]).is_err(), "bob has no packs");
    }

    #[test]
    fn a_failed_append_is_taken_back_whole() {
        let dir = tempfile::tempdir().unwrap();
        let mut packs = Packs::open(dir.path()).unwrap();
        let kept = packs.append_all("alice", &[b"committed"]).unwrap()[0];
        let user_dir = packs.user_dir("alice");
        // The first blob fills pack 0; the second must go to pack 1, which cannot be opened
        // (a directory stands at its path), as a write fails on a full disk.
        std::fs::create_dir(pack_path(&user_dir, 1)).unwrap();
        packs
            .current
            .insert("alice".to_owned(), (0, PACK_ROLL_BYTES - 1));
        let failed = packs.append_all("alice", &[b"written first", b"never written"]);
        assert!(failed.is_err());
        let len = std::fs::metadata(pack_path(&user_dir, 0)).unwrap().len();
        assert_eq!(
            len, 9,
            "the blob written before the failure is cut off again"
        );
        assert_eq!(packs.read("alice", kept).unwrap(), b"committed");
    }

    #[test]
    fn a_rollback_cuts_off_only_its_own_batch() {
        let dir = tempfile::tempdir().unwrap();
        let mut packs = Packs::open(dir.path()).unwrap();
        packs.append_all("alice", &[b"kept"]).unwrap();
        let batch = packs.append_all("alice", &[b"one", b"two"]).unwrap();
        packs.rollback("alice", &batch);
        let path = pack_path(&packs.user_dir("alice"), 0);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4);
        let next = packs.append_all("alice", &[b"next"]).unwrap()[0];
        assert_eq!(next.offset, 4, "the next blob takes the freed place");
        // A batch with another appended after it stays (dead bytes, never indexed).
        let early = packs.append_all("alice", &[b"early"]).unwrap();
        packs.append_all("alice", &[b"later"]).unwrap();
        packs.rollback("alice", &early);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 18);
    }

    #[test]
    fn a_torn_tail_does_not_break_committed_spans() {
        let dir = tempfile::tempdir().unwrap();
        let mut packs = Packs::open(dir.path()).unwrap();
        let span = packs.append_all("alice", &[b"committed"]).unwrap()[0];
        let path = pack_path(&packs.user_dir("alice"), 0);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(b"half-written garbage").unwrap();
        let mut packs = Packs::open(dir.path()).unwrap();
        assert_eq!(packs.read("alice", span).unwrap(), b"committed");
        let next = packs.append_all("alice", &[b"next"]).unwrap()[0];
        assert_eq!(packs.read("alice", next).unwrap(), b"next");
    }
}
