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
    /// What the relay's malware scan says about files of the folder.
    #[serde(default)]
    pub scan: ScanStatus,
}

/// The malware scan's findings as this device knows them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanStatus {
    /// Files of the folder whose current version is flagged, held for the scan or unscanned.
    pub files: Vec<ScanNote>,
    /// Files this device moved into `.cloud3/quarantine/` (and not restored).
    pub quarantined: Vec<crate::quarantine::Quarantined>,
}

/// One file's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScanNote {
    /// The file's path in the folder.
    pub path: String,
    /// The verdict as people read it: `Flagged { engine: E, signature: S }`,
    /// `Unscanned { pending }`, `Unscanned { too large }`.
    pub verdict: String,
    /// The scanner that flagged it.
    pub engine: Option<String>,
    /// What it recognised.
    pub signature: Option<String>,
    /// Whether the relay refuses its bytes to this device (flagged, or held until clean).
    pub refused: bool,
}

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
