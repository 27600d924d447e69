//! The agent's redb database: the file index, the folder document and sync metadata.
//!
//! Tables (all values postcard or raw bytes; the layout is a boundary, see ARCHITECTURE.md):
//! - `index`: relative path -> [`IndexEntry`], what this device last saw at that path.
//! - `doc_log`: sequence -> Automerge bytes; entry 0 may be a full snapshot, later entries
//!   incremental saves. Loading concatenates them.
//! - `meta`: small named values (the relay's known heads, last sync time).
//! - `pending`: chunk id -> where its bytes are ([`crate::syncer::BlobSource`]): blobs that local
//!   document changes reference and the relay may lack. Written in the same transaction as the
//!   change that references them, so an upload cut off by a crash resumes on the next start.
//!
//! Every change of local state goes through [`LocalDb::commit`], one transaction per batch.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use cloud3_engine::ids::{ChunkId, NodeId};
use cloud3_engine::tree::changes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::AgentError;
use crate::syncer::BlobSource;

const INDEX: TableDefinition<&str, &[u8]> = TableDefinition::new("index");
const DOC_LOG: TableDefinition<u64, &[u8]> = TableDefinition::new("doc_log");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const PENDING: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("pending");

/// The document log is folded into one snapshot when it has more entries than this.
const DOC_LOG_COMPACT_AT: u64 = 256;
/// ... or when its increments hold more bytes than this and than half the snapshot.
const DOC_LOG_COMPACT_BYTES: usize = 1 << 20;

/// What this device last saw at a path: enough to tell an unchanged file without reading it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// The document node materialised or scanned at this path.
    pub node: NodeId,
    /// 0 file, 1 dir, 2 symlink.
    pub kind: u8,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Inode number.
    pub inode: u64,
    /// Status change time, nanoseconds since the epoch.
    pub ctime_ns: i128,
    /// Mode bits.
    pub mode: u32,
    /// Content hash (files and symlinks).
    pub content: Option<ChunkId>,
    /// The file's chunks with their lengths, in order (files only), for local chunk reuse.
    pub chunks: Vec<(ChunkId, u32)>,
    /// When this entry was written, nanoseconds since the epoch (git's racy-file rule).
    pub indexed_ns: i128,
}

/// One batch of changes to local state, committed atomically.
#[derive(Debug, Default)]
pub struct Batch {
    /// Index entries to write.
    pub put: Vec<(String, IndexEntry)>,
    /// Index paths to remove.
    pub remove: Vec<String>,
    /// Incremental document bytes to append (empty: none).
    pub doc_append: Vec<u8>,
    /// A full document snapshot replacing the log (empty: none).
    pub doc_snapshot: Vec<u8>,
    /// Named metadata values to write.
    pub meta: Vec<(&'static str, Vec<u8>)>,
    /// Blobs to upload, to remember.
    pub pending_put: Vec<(ChunkId, BlobSource)>,
    /// Blobs the relay has committed, to forget.
    pub pending_done: Vec<ChunkId>,
}

impl Batch {
    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.put.is_empty()
            && self.remove.is_empty()
            && self.doc_append.is_empty()
            && self.doc_snapshot.is_empty()
            && self.meta.is_empty()
            && self.pending_put.is_empty()
            && self.pending_done.is_empty()
    }
}

/// The open database.
pub struct LocalDb {
    db: Database,
    path: PathBuf,
    /// The document log's shape, read once by [`LocalDb::load_doc`] and kept up to date by
    /// [`LocalDb::commit`], so deciding to fold it reads nothing.
    log: Cell<LogShape>,
}

/// Sizes of the document log.
#[derive(Clone, Copy, Debug, Default)]
struct LogShape {
    entries: u64,
    /// Bytes of the snapshot in entry 0 (0 while the log holds only changes).
    snapshot: usize,
    /// Bytes of every other entry.
    increments: usize,
}

/// redb's page cache. Its default (1 GiB) let a 100k-file folder keep every page it had read
/// or written resident; the index is read once at start and kept in memory anyway.
const CACHE_BYTES: usize = 16 << 20;

impl LocalDb {
    /// Opens or creates the database at `path`.
    pub fn open(path: &Path) -> Result<LocalDb, AgentError> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(|e| db_error(path, e))?;
        let local = LocalDb {
            db,
            path: path.to_owned(),
            log: Cell::new(LogShape::default()),
        };
        let txn = local.db.begin_write().map_err(|e| local.error(e))?;
        {
            txn.open_table(INDEX).map_err(|e| local.error(e))?;
            txn.open_table(DOC_LOG).map_err(|e| local.error(e))?;
            txn.open_table(META).map_err(|e| local.error(e))?;
            txn.open_table(PENDING).map_err(|e| local.error(e))?;
        }
        txn.commit().map_err(|e| local.error(e))?;
        Ok(local)
    }

    /// The whole file index.
    pub fn load_index(&self) -> Result<BTreeMap<String, IndexEntry>, AgentError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(INDEX).map_err(|e| self.error(e))?;
        let mut index = BTreeMap::new();
        for row in table.iter().map_err(|e| self.error(e))? {
            let (path, value) = row.map_err(|e| self.error(e))?;
            let entry: IndexEntry =
                postcard::from_bytes(value.value()).map_err(|e| self.error(e))?;
            index.insert(path.value().to_owned(), entry);
        }
        Ok(index)
    }

    /// Blobs still to upload.
    pub fn load_pending(&self) -> Result<HashMap<ChunkId, BlobSource>, AgentError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(PENDING).map_err(|e| self.error(e))?;
        let mut pending = HashMap::new();
        for row in table.iter().map_err(|e| self.error(e))? {
            let (id, value) = row.map_err(|e| self.error(e))?;
            let source: BlobSource =
                postcard::from_bytes(value.value()).map_err(|e| self.error(e))?;
            pending.insert(ChunkId(*id.value()), source);
        }
        Ok(pending)
    }

    /// The stored document bytes (snapshot and increments concatenated), empty if none.
    pub fn load_doc(&self) -> Result<Vec<u8>, AgentError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(DOC_LOG).map_err(|e| self.error(e))?;
        let mut bytes = Vec::new();
        let mut shape = LogShape::default();
        for row in table.iter().map_err(|e| self.error(e))? {
            let (seq, value) = row.map_err(|e| self.error(e))?;
            let value = value.value();
            // The first entry is a snapshot only once the log was folded.
            if seq.value() == 0 && changes::is_document(value) {
                shape.snapshot = value.len();
            } else {
                shape.increments += value.len();
            }
            shape.entries += 1;
            bytes.extend_from_slice(value);
        }
        self.log.set(shape);
        Ok(bytes)
    }

    /// Whether the document log is long enough to be folded into a snapshot: too many entries,
    /// or increments outweighing the snapshot. Loading increments replays them as changes, which
    /// costs far more time and memory than loading a snapshot (a 100k-file document loaded from
    /// its increments alone peaked at over 600 MiB).
    pub fn doc_log_is_long(&self) -> bool {
        let log = self.log.get();
        log.entries > DOC_LOG_COMPACT_AT
            || log.increments > (log.snapshot / 2).max(DOC_LOG_COMPACT_BYTES)
    }

    /// A named metadata value.
    pub fn meta(&self, name: &str) -> Result<Option<Vec<u8>>, AgentError> {
        let txn = self.db.begin_read().map_err(|e| self.error(e))?;
        let table = txn.open_table(META).map_err(|e| self.error(e))?;
        Ok(table
            .get(name)
            .map_err(|e| self.error(e))?
            .map(|v| v.value().to_vec()))
    }

    /// Commits a batch in one durable transaction.
    pub fn commit(&self, batch: &Batch) -> Result<(), AgentError> {
        if batch.is_empty() {
            return Ok(());
        }
        let txn = self.db.begin_write().map_err(|e| self.error(e))?;
        {
            let mut index = txn.open_table(INDEX).map_err(|e| self.error(e))?;
            for path in &batch.remove {
                index.remove(path.as_str()).map_err(|e| self.error(e))?;
            }
            for (path, entry) in &batch.put {
                let bytes = postcard::to_allocvec(entry).map_err(|e| self.error(e))?;
                index
                    .insert(path.as_str(), bytes.as_slice())
                    .map_err(|e| self.error(e))?;
            }
            let mut log = txn.open_table(DOC_LOG).map_err(|e| self.error(e))?;
            if !batch.doc_snapshot.is_empty() {
                log.retain(|_, _| false).map_err(|e| self.error(e))?;
                log.insert(0, batch.doc_snapshot.as_slice())
                    .map_err(|e| self.error(e))?;
            }
            if !batch.doc_append.is_empty() {
                let next = match log.last().map_err(|e| self.error(e))? {
                    Some((seq, _)) => seq.value() + 1,
                    None => 0,
                };
                log.insert(next, batch.doc_append.as_slice())
                    .map_err(|e| self.error(e))?;
            }
            let mut pending = txn.open_table(PENDING).map_err(|e| self.error(e))?;
            for (id, source) in &batch.pending_put {
                let bytes = postcard::to_allocvec(source).map_err(|e| self.error(e))?;
                pending
                    .insert(&id.0, bytes.as_slice())
                    .map_err(|e| self.error(e))?;
            }
            for id in &batch.pending_done {
                pending.remove(&id.0).map_err(|e| self.error(e))?;
            }
            let mut meta = txn.open_table(META).map_err(|e| self.error(e))?;
            for (name, value) in &batch.meta {
                meta.insert(*name, value.as_slice())
                    .map_err(|e| self.error(e))?;
            }
        }
        txn.commit().map_err(|e| self.error(e))?;
        let mut log = self.log.get();
        if !batch.doc_snapshot.is_empty() {
            log = LogShape {
                entries: 1,
                snapshot: batch.doc_snapshot.len(),
                increments: 0,
            };
        }
        if !batch.doc_append.is_empty() {
            log.entries += 1;
            log.increments += batch.doc_append.len();
        }
        self.log.set(log);
        Ok(())
    }

    fn error(&self, error: impl std::fmt::Display) -> AgentError {
        db_error(&self.path, error)
    }
}

fn db_error(path: &Path, error: impl std::fmt::Display) -> AgentError {
    AgentError::Database {
        path: path.to_owned(),
        message: error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(node: u8) -> IndexEntry {
        IndexEntry {
            node: NodeId([node; 16]),
            kind: 0,
            size: 3,
            mtime_ns: 1,
            inode: 2,
            ctime_ns: 4,
            mode: 0o644,
            content: Some(ChunkId([node; 32])),
            chunks: vec![(ChunkId([node; 32]), 3)],
            indexed_ns: 5,
        }
    }

    #[test]
    fn batches_persist_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.redb");
        {
            let db = LocalDb::open(&path).unwrap();
            db.commit(&Batch {
                put: vec![("a/b".into(), entry(1)), ("c".into(), entry(2))],
                doc_append: vec![1, 2],
                meta: vec![("relay_heads", vec![9])],
                ..Batch::default()
            })
            .unwrap();
            db.commit(&Batch {
                remove: vec!["c".into()],
                doc_append: vec![3],
                ..Batch::default()
            })
            .unwrap();
        }
        let db = LocalDb::open(&path).unwrap();
        let index = db.load_index().unwrap();
        assert_eq!(index.len(), 1);
        assert_eq!(index["a/b"], entry(1));
        assert_eq!(db.load_doc().unwrap(), vec![1, 2, 3]);
        assert_eq!(db.meta("relay_heads").unwrap(), Some(vec![9]));
        assert_eq!(db.meta("missing").unwrap(), None);
    }

    #[test]
    fn a_snapshot_replaces_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let db = LocalDb::open(&dir.path().join("a.redb")).unwrap();
        for byte in 0..5u8 {
            db.commit(&Batch {
                doc_append: vec![byte],
                ..Batch::default()
            })
            .unwrap();
        }
        db.commit(&Batch {
            doc_snapshot: vec![7, 7],
            doc_append: vec![8],
            ..Batch::default()
        })
        .unwrap();
        assert_eq!(db.load_doc().unwrap(), vec![7, 7, 8]);
    }

    #[test]
    fn the_log_is_folded_once_its_increments_outweigh_the_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.redb");
        let db = LocalDb::open(&path).unwrap();
        let increment = vec![1u8; DOC_LOG_COMPACT_BYTES / 2];
        for _ in 0..2 {
            db.commit(&Batch {
                doc_append: increment.clone(),
                ..Batch::default()
            })
            .unwrap();
            assert!(!db.doc_log_is_long());
        }
        db.commit(&Batch {
            doc_append: vec![2],
            ..Batch::default()
        })
        .unwrap();
        assert!(db.doc_log_is_long());
        // Reopened, the same shape is read back from what is stored.
        drop(db);
        let db = LocalDb::open(&path).unwrap();
        db.load_doc().unwrap();
        assert!(db.doc_log_is_long());
        db.commit(&Batch {
            doc_snapshot: vec![0u8; 16],
            ..Batch::default()
        })
        .unwrap();
        assert!(!db.doc_log_is_long());
    }
}
