//! The folder's sync status, written to `.cloud3/status.json` by `run` and `sync` so that
//! `cloud3 status` can report it while the daemon holds the database.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::AgentError;
use crate::state::StateDir;

/// What `cloud3 status` shows.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The process that wrote this.
    pub pid: u32,
    /// Whether it was connected to the relay.
    pub connected: bool,
    /// Last time the folder was in sync with the relay (Unix ms).
    pub last_sync: Option<i64>,
    /// Short ids of the user's other devices online.
    pub online: Vec<String>,
    /// Blobs waiting to be uploaded.
    pub pending_uploads: usize,
    /// Bytes waiting to be uploaded.
    pub pending_upload_bytes: u64,
    /// Files waiting to be written locally.
    pub pending_downloads: usize,
    /// Bytes waiting to be written locally.
    pub pending_download_bytes: u64,
    /// Conflict copies in the folder.
    pub conflicts: Vec<String>,
    /// The last error, if the agent is retrying.
    pub last_error: Option<String>,
    /// The device has not yet once held everything the relay had of the folder, so it does not
    /// record local changes yet (it joins on its first complete exchange with the relay).
    #[serde(default)]
    pub waiting_to_join: bool,

    // Safety rails: deletions held back and names this device cannot hold.
    /// Deletions the mass-delete guard holds back until `cloud3 confirm-deletes` (or until the
    /// files are put back).
    #[serde(default)]
    pub paused_deletes: usize,
    /// The first of them (at most [`PAUSED_EXAMPLES`]), folder-relative.
    #[serde(default)]
    pub paused_delete_paths: Vec<String>,
    /// Entries whose names another device cannot hold (case or normalisation twins, names
    /// Windows refuses), and entries this device keeps under a name of its own because its
    /// file system cannot hold both twins: `PATH: why` (at most [`NAME_EXAMPLES`]).
    #[serde(default)]
    pub name_clashes: Vec<String>,
    /// How many such entries there are in all.
    #[serde(default)]
    pub name_clashes_total: usize,

    // Full disks (issue 20).
    /// The relay refused this device's uploads because its storage is full: they wait, and
    /// the device tries again with back-off.
    #[serde(default)]
    pub relay_storage_full: bool,
    /// Files this device has no room for on its disk (not downloaded, retried when there is).
    #[serde(default)]
    pub no_room: Vec<NoRoom>,
}

/// A file the folder's disk has no room for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoRoom {
    /// The file's path in the folder.
    pub path: String,
    /// Its size.
    pub size: u64,
    /// Free space it lacks (beyond the reserve `min_free_mib` keeps).
    pub short_by: u64,
}

/// How many entries with names another device cannot hold `status` names.
pub const NAME_EXAMPLES: usize = 100;

/// How many held deletions `status` names.
pub const PAUSED_EXAMPLES: usize = 20;

/// `status.json` as the daemon keeps it: written only when what it says changed, so an idle
/// daemon writes nothing.
#[derive(Debug, Default)]
pub struct StatusFile {
    written: Option<Status>,
}

impl StatusFile {
    /// Writes `status` unless it is what was written last.
    pub fn save(&mut self, status: &Status, state: &StateDir) -> Result<(), AgentError> {
        if self.written.as_ref() == Some(status) {
            return Ok(());
        }
        status.save(state)?;
        self.written = Some(status.clone());
        Ok(())
    }
}

impl Status {
    fn path(state: &StateDir) -> PathBuf {
        state.root().join("status.json")
    }

    /// Writes the status atomically.
    pub fn save(&self, state: &StateDir) -> Result<(), AgentError> {
        let path = Self::path(state);
        let temp = state.root().join("status.json.tmp");
        let text = serde_json::to_string_pretty(self).unwrap_or_default();
        std::fs::write(&temp, text).map_err(|e| AgentError::io("write", &temp, e))?;
        std::fs::rename(&temp, &path).map_err(|e| AgentError::io("rename", &path, e))
    }

    /// Reads the last written status, if any.
    pub fn load(state: &StateDir) -> Option<Status> {
        let text = std::fs::read_to_string(Self::path(state)).ok()?;
        serde_json::from_str(&text).ok()
    }

    /// Whether the process that wrote this status is still running.
    pub fn writer_alive(&self) -> bool {
        Path::new(&format!("/proc/{}", self.pid)).exists() && self.pid != std::process::id()
    }
}
