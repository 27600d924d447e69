//! Files the relay's malware scan flagged. A device that holds a flagged version moves the file
//! into `.cloud3/quarantine/` (same relative path; never deleted, never synced) and forgets its
//! index entry, so its next scan records no deletion: the document keeps the file, and other
//! devices are unaffected. `.cloud3/quarantine.json` lists what was moved and why; `cloud3
//! quarantine restore PATH` puts a file back (the user's decision: its version is then never
//! quarantined again on this device).
//!
//! The list is a JSON file rather than a database table so that `quarantine list|restore` work
//! while the daemon holds the database; only the daemon adds to it, only the command marks an
//! entry restored, each by an atomic rename of the whole file.

use std::path::{Path, PathBuf};

use cloud3_engine::ids::ChunkId;
use serde::{Deserialize, Serialize};

use crate::db::{Batch, IndexEntry};
use crate::error::AgentError;
use crate::state::StateDir;
use crate::syncer::Syncer;

/// One quarantined file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    /// Where it was in the folder.
    pub path: String,
    /// Where it is now, relative to the folder.
    pub stored: String,
    /// Its content hash (hex).
    pub content: String,
    /// The scanner that flagged it.
    pub engine: String,
    /// What the scanner recognised.
    pub signature: String,
    /// When it was moved (Unix ms).
    pub at: i64,
    /// The user put it back.
    #[serde(default)]
    pub restored: bool,
}

/// `.cloud3/quarantine.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuarantineList {
    /// Every file ever quarantined here, oldest first.
    pub files: Vec<Quarantined>,
}

impl QuarantineList {
    fn path(state: &StateDir) -> PathBuf {
        state.root().join("quarantine.json")
    }

    /// The list (empty if there is none yet).
    pub fn load(state: &StateDir) -> Result<QuarantineList, AgentError> {
        let path = Self::path(state);
        match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| AgentError::Config {
                path: path.clone(),
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(QuarantineList::default()),
            Err(e) => Err(AgentError::io("read", &path, e)),
        }
    }

    /// Writes the list atomically.
    pub fn save(&self, state: &StateDir) -> Result<(), AgentError> {
        let path = Self::path(state);
        let temp = state.root().join("quarantine.json.tmp");
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        std::fs::write(&temp, text).map_err(|e| AgentError::io("write", &temp, e))?;
        std::fs::rename(&temp, &path).map_err(|e| AgentError::io("rename", &path, e))
    }

    /// Files still in quarantine.
    pub fn held(&self) -> impl Iterator<Item = &Quarantined> {
        self.files.iter().filter(|f| !f.restored)
    }

    /// Whether the user restored a file of this version (it stays where they put it).
    fn allowed(&self, content: &str) -> bool {
        self.files
            .iter()
            .any(|f| f.restored && f.content == content)
    }
}

/// The quarantine directory.
pub fn dir(state: &StateDir) -> PathBuf {
    state.root().join("quarantine")
}

/// Moves every file of version `content` this device holds, unchanged since its last scan,
/// into quarantine; returns the paths moved.
pub fn flagged(
    syncer: &mut Syncer,
    content: ChunkId,
    engine: &str,
    signature: &str,
) -> Result<Vec<String>, AgentError> {
    let hex = content.to_string();
    let mut list = QuarantineList::load(&syncer.state)?;
    if list.allowed(&hex) {
        return Ok(Vec::new());
    }
    let holding: Vec<(String, IndexEntry)> = syncer
        .index
        .iter()
        .filter(|(_, e)| e.content == Some(content) && e.kind == 0)
        .map(|(p, e)| (p.clone(), e.clone()))
        .collect();
    let mut moved = Vec::new();
    let mut batch = Batch::default();
    for (path, entry) in holding {
        // A file changed since its scan is another version (scanned on its own).
        let unchanged = crate::walk::stat(&syncer.root, &path).is_some_and(|stat| {
            stat.size == entry.size && stat.mtime_ns == entry.mtime_ns && stat.inode == entry.inode
        });
        if !unchanged {
            continue;
        }
        let stored = free_place(&dir(&syncer.state), &path);
        if let Some(parent) = stored.parent() {
            std::fs::create_dir_all(parent).map_err(|e| AgentError::io("create", parent, e))?;
        }
        let from = syncer.root.join(&path);
        std::fs::rename(&from, &stored).map_err(|e| AgentError::io("quarantine", &from, e))?;
        tracing::warn!(
            path,
            engine,
            signature,
            "flagged by the relay's scan: moved to quarantine"
        );
        list.files.push(Quarantined {
            path: path.clone(),
            stored: relative(&syncer.root, &stored),
            content: hex.clone(),
            engine: engine.to_owned(),
            signature: signature.to_owned(),
            at: crate::syncer::wall_now().0,
            restored: false,
        });
        batch.remove.push(path.clone());
        moved.push(path);
    }
    if !moved.is_empty() {
        list.save(&syncer.state)?;
        syncer.commit_batch(batch, false)?;
    }
    Ok(moved)
}

/// Puts a quarantined file back at its path (which must be free).
pub fn restore(root: &Path, state: &StateDir, path: &str) -> Result<(), AgentError> {
    let mut list = QuarantineList::load(state)?;
    let Some(entry) = list
        .files
        .iter_mut()
        .rev()
        .find(|f| !f.restored && f.path == path)
    else {
        return Err(AgentError::Usage(format!("{path} is not in quarantine")));
    };
    let to = root.join(path);
    if std::fs::symlink_metadata(&to).is_ok() {
        return Err(AgentError::Usage(format!(
            "{path} exists: move it away first, then restore"
        )));
    }
    if let Some(parent) = to.parent() {
        std::fs::create_dir_all(parent).map_err(|e| AgentError::io("create", parent, e))?;
    }
    let from = root.join(&entry.stored);
    std::fs::rename(&from, &to).map_err(|e| AgentError::io("restore", &from, e))?;
    entry.restored = true;
    list.save(state)
}

/// `quarantine/PATH`, or `quarantine/PATH (2)` and so on when taken.
fn free_place(dir: &Path, path: &str) -> PathBuf {
    let first = dir.join(path);
    if std::fs::symlink_metadata(&first).is_err() {
        return first;
    }
    (2..)
        .map(|n| dir.join(format!("{path} ({n})")))
        .find(|p| std::fs::symlink_metadata(p).is_err())
        .unwrap_or(first)
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}
