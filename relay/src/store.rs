//! The relay's embedded storage: one redb database (`DATA/relay.redb`) for accounts, devices,
//! codes, documents and the chunk index, and append-only pack files for chunk bytes
//! (`DATA/packs/`). Every call that touches a user's data takes that user's name: there is no way
//! to reach a chunk, document or device of another user.
//!
//! Tables (postcard values; the layout is a boundary, see ARCHITECTURE.md):
//! - `users`: name → [`UserRecord`]
//! - `devices`: device key → [`DeviceRecord`]
//! - `codes`: SHA-256 of a one-time code → [`CodeRecord`]
//! - `code_tries`: user → wrong tries since the last success
//! - `device_log`: (user, seq) → [`DeviceEvent`], append-only
//! - `doc_log`: (user, folder, seq) → Automerge bytes (entry 0 may be a snapshot)
//! - `sync_heads`: (device, folder) → heads the device is known to have
//! - `chunks`: (user, chunk id) → [`ChunkLocation`]
//! - `usage`: user → stored chunk bytes
//! - `refs`: (user, blob id) → () for every blob some version of the user's documents references
//! - `refs_indexed`: (user, folder) → () once the folder's history is in `refs`
//! - `claims`: (user, blob id) → when (ms, the store's [`Clock`]) a device last stored the blob
//!   or was told the relay has it; the collector spares blobs claimed within its grace period
//! - `retention`: user → retention window in days, overriding the relay's default
//! - `verdicts`: (user, content hash) → [`VerdictRecord`] (the malware scan)
//! - `meta`: `relay_id`

pub mod accounts;
pub mod chunks;
pub mod collect;
pub mod compact;
pub mod docs;
pub mod packs;
pub mod refs;
pub mod verdicts;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

pub use accounts::Accounts;
pub use accounts::{
    AuthOutcome, CodeKind, CodeRecord, DeviceEvent, DeviceRecord, EnrolRefusal, UserRecord,
};
pub use chunks::{ChunkLocation, Chunks};
pub use collect::{Collector, GcReport, GcSettings};
pub use docs::Documents;
pub use refs::References;
pub use verdicts::{VerdictRecord, Verdicts};

use crate::clock::Clock;
use crate::error::StoreError;
use packs::Packs;
use writer::Writer;

pub(crate) const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
pub(crate) const DEVICES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("devices");
pub(crate) const CODES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("codes");
pub(crate) const DEVICE_LOG: TableDefinition<(&str, u64), &[u8]> =
    TableDefinition::new("device_log");
pub(crate) const DOC_LOG: TableDefinition<(&str, &str, u64), &[u8]> =
    TableDefinition::new("doc_log");
pub(crate) const SYNC_HEADS: TableDefinition<(&[u8; 32], &str), &[u8]> =
    TableDefinition::new("sync_heads");
pub(crate) const CHUNKS: TableDefinition<(&str, &[u8; 32]), &[u8]> = TableDefinition::new("chunks");
pub(crate) const USAGE: TableDefinition<&str, u64> = TableDefinition::new("usage");
pub(crate) const REFS: TableDefinition<(&str, &[u8; 32]), ()> = TableDefinition::new("refs");
pub(crate) const REFS_INDEXED: TableDefinition<(&str, &str), ()> =
    TableDefinition::new("refs_indexed");
pub(crate) const CLAIMS: TableDefinition<(&str, &[u8; 32]), i64> = TableDefinition::new("claims");
pub(crate) const RETENTION: TableDefinition<&str, u32> = TableDefinition::new("retention");
pub(crate) const VERDICTS: TableDefinition<(&str, &[u8; 32]), &[u8]> =
    TableDefinition::new("verdicts");
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The relay's storage.
pub struct Store {
    pub(crate) db: Arc<Database>,
    writer: Writer,
    pub(crate) packs: Mutex<Packs>,
    /// Held (shared) by a blob batch from its pack append to its index commit, and briefly
    /// (exclusive) by compaction after it closes the packs it will rewrite: no batch still
    /// indexing into a closed pack is missed.
    pub(crate) appending: std::sync::RwLock<()>,
    pub(crate) clock: Clock,
    /// One collection at a time (the background collector and `cloud3-relay gc`).
    pub(crate) collecting: Mutex<()>,
    data: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the storage in `data`.
    pub fn open(data: &Path) -> Result<Store, StoreError> {
        Store::open_with_clock(data, Clock::default())
    }

    /// Opens the storage with a clock for lifecycle decisions (see [`Clock`]). A compaction
    /// that a crash interrupted is finished or rolled back here (see [`compact`]).
    pub fn open_with_clock(data: &Path, clock: Clock) -> Result<Store, StoreError> {
        std::fs::create_dir_all(data).map_err(|e| StoreError::io("create", data, e))?;
        let path = data.join("relay.redb");
        let db = Database::create(&path).map_err(|e| StoreError::Database(e.to_string()))?;
        let txn = db.begin_write().map_err(StoreError::db)?;
        {
            txn.open_table(USERS).map_err(StoreError::db)?;
            txn.open_table(DEVICES).map_err(StoreError::db)?;
            txn.open_table(CODES).map_err(StoreError::db)?;
            txn.open_table(DEVICE_LOG).map_err(StoreError::db)?;
            txn.open_table(DOC_LOG).map_err(StoreError::db)?;
            txn.open_table(SYNC_HEADS).map_err(StoreError::db)?;
            txn.open_table(CHUNKS).map_err(StoreError::db)?;
            txn.open_table(USAGE).map_err(StoreError::db)?;
            txn.open_table(REFS).map_err(StoreError::db)?;
            txn.open_table(REFS_INDEXED).map_err(StoreError::db)?;
            txn.open_table(CLAIMS).map_err(StoreError::db)?;
            txn.open_table(RETENTION).map_err(StoreError::db)?;
            txn.open_table(VERDICTS).map_err(StoreError::db)?;
            let mut meta = txn.open_table(META).map_err(StoreError::db)?;
            if meta.get("relay_id").map_err(StoreError::db)?.is_none() {
                let mut id = [0u8; 32];
                getrandom::fill(&mut id).map_err(|e| StoreError::Random(e.to_string()))?;
                meta.insert("relay_id", id.as_slice())
                    .map_err(StoreError::db)?;
            }
        }
        txn.commit().map_err(StoreError::db)?;
        let db = Arc::new(db);
        let store = Store {
            writer: Writer::start(db.clone())?,
            db,
            packs: Mutex::new(Packs::open(&data.join("packs"))?),
            appending: std::sync::RwLock::new(()),
            clock,
            collecting: Mutex::new(()),
            data: data.to_owned(),
        };
        store.remove_unindexed_packs()?;
        Ok(store)
    }

    /// Runs `job` in the writer thread's next transaction, committed together with whatever
    /// else is queued; returns once it is durable.
    pub(crate) fn write<T: Send + 'static>(
        &self,
        job: impl FnOnce(&redb::WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.writer.write(job)
    }
}

/// Everything the relay stores, behind one trait so another backend (shared/DESIGN.md section
/// 11: object storage for chunks, PostgreSQL for the rest) can replace the embedded one. Every
/// method that touches a user's data takes that user.
pub trait Storage:
    Accounts + Documents + Chunks + References + Collector + Verdicts + Send + Sync
{
    /// The data directory (the admin socket lives there).
    fn data_dir(&self) -> &Path;

    /// This relay's identity, bound into every device signature.
    fn relay_id(&self) -> Result<[u8; 32], StoreError>;
}

impl Storage for Store {
    fn data_dir(&self) -> &Path {
        &self.data
    }

    fn relay_id(&self) -> Result<[u8; 32], StoreError> {
        let txn = self.db.begin_read().map_err(StoreError::db)?;
        let meta = txn.open_table(META).map_err(StoreError::db)?;
        let value = meta
            .get("relay_id")
            .map_err(StoreError::db)?
            .ok_or_else(|| StoreError::Corrupt("no relay id".into()))?;
        value
            .value()
            .try_into()
            .map_err(|_| StoreError::Corrupt("relay id length".into()))
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_allocvec(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(crate) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, StoreError> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}
