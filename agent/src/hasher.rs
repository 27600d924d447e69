//! Reading a file into its manifest: content-defined chunks and their SHA-256 ids, streamed so a
//! large file is never held in memory whole.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use cloud3_engine::chunk::{Manifest, ManifestEntry, cdc};

/// Chunks and hashes the file at `path`.
pub fn hash_file(path: &Path) -> std::io::Result<Manifest> {
    let file = File::open(path)?;
    let mut entries = Vec::new();
    for chunk in cdc::stream(BufReader::with_capacity(1 << 20, file)) {
        let chunk = chunk?;
        entries.push(ManifestEntry {
            id: cloud3_engine::ids::ChunkId::of(&chunk),
            len: chunk.len() as u32,
        });
    }
    Ok(Manifest { entries })
}
