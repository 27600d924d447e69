//! Partial downloads that survive a restart: a large file is assembled in `.cloud3/partial/`
//! under a name made of its node and content, so a download cut short (a kill, a crash, a lost
//! link) finds the file again when it starts over. Nothing in it is trusted: every chunk is
//! checked against its SHA-256 before it counts as held, and only the rest is fetched.
//!
//! Partial files nothing wants are removed: all of them once the folder has nothing left to
//! download, and past the age and size limits of the folder's config (`partial_max_days`,
//! `partial_max_mib`; see [`crate::keep`]).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use cloud3_engine::chunk::Manifest;
use cloud3_engine::ids::{ChunkId, NodeId};
use cloud3_engine::tree::Content;
use rayon::prelude::*;

use crate::error::AgentError;
use crate::state::StateDir;

/// Where the download of `content` for `node` is assembled.
pub fn path(state: &StateDir, node: NodeId, content: &Content) -> PathBuf {
    state
        .partial_dir()
        .join(format!("{}-{}", node.to_key(), content.hash().to_hex()))
}

/// A new, empty file of `size` bytes at `path` (truncating what was there).
pub fn create(path: &Path, size: u64) -> Result<File, AgentError> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| AgentError::io("create", path, e))?;
    file.set_len(size)
        .map_err(|e| AgentError::io("size", path, e))?;
    Ok(file)
}

/// Opens the partial download at `path` for `manifest`, keeping what an earlier run wrote: per
/// chunk, whether the file already holds it (checked by SHA-256). A file of another size, or
/// none, starts empty.
pub fn open(path: &Path, manifest: &Manifest) -> Result<(File, Vec<bool>), AgentError> {
    let existing = OpenOptions::new().read(true).write(true).open(path);
    let file = match existing {
        Ok(file) if file.metadata().is_ok_and(|m| m.len() == manifest.size()) => file,
        _ => return Ok((create(path, manifest.size())?, Vec::new())),
    };
    let mut offsets = Vec::with_capacity(manifest.entries.len());
    let mut offset = 0u64;
    for entry in &manifest.entries {
        offsets.push(offset);
        offset += u64::from(entry.len);
    }
    let held = manifest
        .entries
        .par_iter()
        .zip(offsets)
        .map(|(entry, offset)| {
            let mut bytes = vec![0u8; entry.len as usize];
            file.read_exact_at(&mut bytes, offset).is_ok() && ChunkId::of(&bytes) == entry.id
        })
        .collect();
    Ok((file, held))
}

/// Whether `path` is a partial download (kept when its download fails, for the next try).
pub fn is_partial(state: &StateDir, path: &Path) -> bool {
    path.starts_with(state.partial_dir())
}

/// Removes every partial download (the folder has nothing left to download).
pub fn clean(state: &StateDir) -> Result<(), AgentError> {
    let dir = state.partial_dir();
    std::fs::create_dir_all(&dir).map_err(|e| AgentError::io("create", &dir, e))?;
    let entries = std::fs::read_dir(&dir).map_err(|e| AgentError::io("list", &dir, e))?;
    for entry in entries.flatten() {
        let path = entry.path();
        tracing::debug!(path = %path.display(), "removing a partial download");
        let _ = std::fs::remove_file(&path);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use cloud3_engine::chunk::ManifestEntry;

    use super::*;

    fn manifest_of(chunks: &[&[u8]]) -> Manifest {
        Manifest {
            entries: chunks
                .iter()
                .map(|bytes| ManifestEntry {
                    id: ChunkId::of(bytes),
                    len: bytes.len() as u32,
                })
                .collect(),
        }
    }

    #[test]
    fn only_chunks_that_check_out_count_as_held() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("p");
        let chunks: [&[u8]; 3] = [b"first chunk", b"second chunk", b"third"];
        let manifest = manifest_of(&chunks);
        let (file, held) = open(&path, &manifest).expect("new partial");
        assert!(held.is_empty(), "a new partial holds nothing");
        file.write_all_at(chunks[0], 0).expect("write");
        // The second chunk is damaged; the third never written.
        file.write_all_at(b"second chunX", 11).expect("write");
        drop(file);
        let (_, held) = open(&path, &manifest).expect("reopen");
        assert_eq!(held, [true, false, false]);
    }

    #[test]
    fn a_partial_of_another_size_starts_over() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("p");
        std::fs::write(&path, b"something else entirely").expect("write");
        let manifest = manifest_of(&[b"abc"]);
        let (file, held) = open(&path, &manifest).expect("open");
        assert!(held.is_empty());
        assert_eq!(file.metadata().expect("stat").len(), 3);
    }
}
