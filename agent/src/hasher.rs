//! Reading a file into its manifest: content-defined chunks and their SHA-256 ids, streamed so a
//! large file is never held in memory whole.

use std::collections::HashMap;
use std::fs::File;
use std::io::{IsTerminal, Read, Seek, SeekFrom};
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use cloud3_engine::chunk::{Manifest, ManifestEntry, cdc};
use cloud3_engine::ids::ChunkId;

use crate::walk::Stat;

/// A file read into its manifest, with an xxh3-64 checksum of each chunk's bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct Hashed {
    /// The file's facts when it was read: taken before and found the same after, so its size
    /// and times describe exactly the bytes the manifest lists.
    pub stat: Stat,
    /// Its chunks and their SHA-256 ids.
    pub manifest: Manifest,
    /// Per chunk, in order: xxh3-64 of its bytes, so an upload reading a chunk back can tell
    /// whether the file still holds it without a second SHA-256 over every byte.
    pub checks: Vec<u64>,
}

/// Why a file could not be read into a manifest.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Reading failed (vanished, unreadable).
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The file changed while it was read: it is still being written.
    #[error("the file changed while it was read")]
    Changing,
}

/// Chunks and hashes the file at `path`, reading it in blocks and hashing each chunk where it
/// lies in the read buffer. The file is stat'ed (through the open handle) before and after the
/// read; if size, times or identity moved, or the bytes read are not the size stat'ed, it is
/// [`ReadError::Changing`] and nothing of this read is used.
pub fn hash_file(path: &Path) -> Result<Hashed, ReadError> {
    let file = File::open(path)?;
    let stat_of = |file: &File| -> Result<Stat, ReadError> {
        Stat::from_metadata(&file.metadata()?).ok_or(ReadError::Changing)
    };
    let before = stat_of(&file)?;
    let mut entries = Vec::new();
    let mut checks = Vec::new();
    let mut read = 0u64;
    cdc::for_each_chunk(&file, before.size, |chunk| {
        read += chunk.len() as u64;
        entries.push(ManifestEntry {
            id: ChunkId::of(chunk),
            len: chunk.len() as u32,
        });
        checks.push(checksum(chunk));
    })?;
    let after = stat_of(&file)?;
    if after != before || read != before.size {
        return Err(ReadError::Changing);
    }
    Ok(Hashed {
        stat: before,
        manifest: Manifest { entries },
        checks,
    })
}

/// The checksum [`Hashed::checks`] holds for a chunk's bytes.
pub fn checksum(bytes: &[u8]) -> u64 {
    xxhash_rust::xxh3::xxh3_64(bytes)
}

/// How a chunk read back from a file is known to be the one expected.
#[derive(Clone, Copy, Debug)]
pub enum Expect {
    /// Its SHA-256 is this id.
    Id(ChunkId),
    /// Its xxh3-64 is this (taken by the scan that found the chunk, whose id it has).
    Checksum(u64),
}

/// Reads `len` bytes at `offset` of the file at `relative` (inside `root`): the expected chunk,
/// or `None` when the file no longer holds it there.
pub fn read_chunk(
    root: &Path,
    relative: &str,
    offset: u64,
    len: u32,
    expect: Expect,
) -> Option<Vec<u8>> {
    let mut file = File::open(root.join(relative)).ok()?;
    file.seek(SeekFrom::Start(offset)).ok()?;
    let mut raw = vec![0u8; len as usize];
    file.read_exact(&mut raw).ok()?;
    let held = match expect {
        Expect::Id(id) => ChunkId::of(&raw) == id,
        Expect::Checksum(check) => checksum(&raw) == check,
    };
    held.then_some(raw)
}

/// Fewer files than this are read on the calling thread (a watcher's batch of a few saves).
const PARALLEL_FILES: usize = 32;

/// Below this many files no progress bar is shown.
const PROGRESS_MIN_FILES: usize = 200;

/// Chunks and hashes `paths` (relative to `root`) on every core. On a terminal, a batch of
/// `PROGRESS_MIN_FILES` or more shows a progress bar (an initial scan of a large tree); when
/// stdout is not a terminal there is none.
pub fn hash_files(root: &Path, paths: &[&str]) -> HashMap<String, Result<Hashed, ReadError>> {
    let bar = if paths.len() >= PROGRESS_MIN_FILES && std::io::stdout().is_terminal() {
        let style = ProgressStyle::with_template(
            "{msg} {wide_bar} {pos}/{len} files, {elapsed} elapsed, about {eta} left",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        ProgressBar::new(paths.len() as u64)
            .with_style(style)
            .with_message("reading")
    } else {
        ProgressBar::hidden()
    };
    let one = |path: &&str| {
        let manifest = hash_file(&root.join(path));
        bar.inc(1);
        ((*path).to_owned(), manifest)
    };
    let hashed = if paths.len() < PARALLEL_FILES {
        paths.iter().map(one).collect()
    } else {
        // One file per work item: paths come sorted, so a few large files often sit side by
        // side, and a default split would leave them to one thread while the other idles. The
        // results go straight into their slots of one vector (a map collected in parallel
        // would gather a list of per-item vectors first).
        let hash = || -> Vec<_> { paths.par_iter().with_max_len(1).map(one).collect() };
        workers()
            .map_or_else(hash, |pool| pool.install(hash))
            .into_iter()
            .collect()
    };
    bar.finish_and_clear();
    hashed
}

/// A thread pool for one burst of work, one thread per core. Its threads end with it, and
/// with them the memory their allocator kept cached (idle threads of a global pool kept tens
/// of megabytes after a 100k-file scan); `None` runs the work on the global pool.
pub fn workers() -> Option<rayon::ThreadPool> {
    rayon::ThreadPoolBuilder::new().build().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn many_files_hash_in_parallel_to_what_one_at_a_time_gives() {
        let tmp = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for n in 0..300u32 {
            let path = format!("d{}/f{n}", n % 7);
            std::fs::create_dir_all(tmp.path().join(format!("d{}", n % 7))).unwrap();
            std::fs::write(tmp.path().join(&path), n.to_le_bytes().repeat(n as usize)).unwrap();
            paths.push(path);
        }
        paths.push("missing".into());
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let hashed = hash_files(tmp.path(), &refs);
        assert_eq!(hashed.len(), paths.len());
        for path in &paths[..300] {
            let one = hash_file(&tmp.path().join(path)).unwrap();
            assert_eq!(hashed[path].as_ref().unwrap(), &one, "{path}");
        }
        assert!(hashed["missing"].is_err());
    }

    #[test]
    fn a_chunk_read_back_is_known_by_its_checksum_until_the_file_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        let bytes: Vec<u8> = (0..300_000u32).map(|n| (n * 7 % 251) as u8).collect();
        std::fs::write(&path, &bytes).unwrap();
        let hashed = hash_file(&path).unwrap();
        let entries = &hashed.manifest.entries;
        assert_eq!(entries.len(), hashed.checks.len());
        let (entry, check) = (entries[1], hashed.checks[1]);
        let offset = u64::from(entries[0].len);
        let by_id = read_chunk(tmp.path(), "f", offset, entry.len, Expect::Id(entry.id));
        let by_check = read_chunk(tmp.path(), "f", offset, entry.len, Expect::Checksum(check));
        assert_eq!(by_id, by_check);
        assert_eq!(by_id.map(|raw| ChunkId::of(&raw)), Some(entry.id));
        let mut changed = bytes;
        changed[offset as usize + 5] ^= 1;
        std::fs::write(&path, &changed).unwrap();
        assert_eq!(
            read_chunk(tmp.path(), "f", offset, entry.len, Expect::Checksum(check)),
            None
        );
        assert_eq!(
            read_chunk(tmp.path(), "f", offset, entry.len, Expect::Id(entry.id)),
            None
        );
    }
}
