//! The agent's state directory `DIR/.cloud3/`: config, device key, database, temp files and trash.
//!
//! Nothing under `.cloud3/` is ever synced. The device key is written with mode 0600 and never
//! leaves this directory.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use cloud3_engine::auth::DeviceKey;
use cloud3_engine::guard::DeleteGuard;
use serde::{Deserialize, Serialize};

use crate::error::AgentError;

/// Name of the state directory inside a synced folder.
pub const STATE_DIR: &str = ".cloud3";

/// The agent's configuration (`.cloud3/config.toml`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// Relay URL, `ws://HOST:PORT` or `wss://HOST:PORT`.
    pub relay: String,
    /// Account name.
    pub user: String,
    /// This device's name as shown to people.
    pub device_name: String,
    /// The synced folder of the account.
    #[serde(default = "default_folder")]
    pub folder: String,
    /// Milliseconds between full rescans (the safety net behind the watcher).
    #[serde(default = "default_rescan_ms")]
    pub rescan_interval_ms: u64,
    /// Milliseconds the watcher waits for a burst of events to settle.
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
    /// The pinned CA certificate (PEM) that `wss://` relays must chain to instead of the
    /// system's roots, relative to `.cloud3/` (set by `cloud3 init --ca`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca: Option<PathBuf>,
    /// Mass-delete guard: a scan's deletions are held until `cloud3 confirm-deletes` when they
    /// are more than this many nodes (files, directories, symlinks)...
    #[serde(default = "default_mass_delete_files")]
    pub mass_delete_files: usize,
    /// ... and more than this percentage of the folder's nodes.
    #[serde(default = "default_mass_delete_percent")]
    pub mass_delete_percent: u8,
    /// MiB the folder's file system keeps free: a download that would take it below this is
    /// not started (the file is reported in `status` until there is room). Unset: 1 % of the
    /// file system, at most 1 GiB (see `room`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_free_mib: Option<u64>,
}

impl Config {
    /// The mass-delete guard this configuration asks for.
    pub fn delete_guard(&self) -> DeleteGuard {
        DeleteGuard {
            min_files: self.mass_delete_files,
            min_percent: self.mass_delete_percent.min(100),
        }
    }
}

fn default_mass_delete_files() -> usize {
    DeleteGuard::default().min_files
}

fn default_mass_delete_percent() -> u8 {
    DeleteGuard::default().min_percent
}

fn default_folder() -> String {
    cloud3_engine::ids::FolderId::DEFAULT.to_owned()
}

fn default_rescan_ms() -> u64 {
    60_000
}

fn default_debounce_ms() -> u64 {
    30
}

/// Paths of one folder's state.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The state of the synced folder `folder`.
    pub fn of(folder: &Path) -> StateDir {
        StateDir {
            root: folder.join(STATE_DIR),
        }
    }

    /// `.cloud3/` itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether `cloud3 init` ran here.
    pub fn exists(&self) -> bool {
        self.config_path().is_file() && self.key_path().is_file()
    }

    /// Creates the directory layout.
    pub fn create(&self) -> Result<(), AgentError> {
        for dir in [self.root.clone(), self.tmp_dir(), self.trash_dir()] {
            fs::create_dir_all(&dir).map_err(|e| AgentError::io("create", &dir, e))?;
        }
        fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700))
            .map_err(|e| AgentError::io("chmod", &self.root, e))?;
        Ok(())
    }

    fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    fn key_path(&self) -> PathBuf {
        self.root.join("device.key")
    }

    /// The agent's redb database.
    pub fn database_path(&self) -> PathBuf {
        self.root.join("agent.redb")
    }

    /// Where files are assembled before being renamed into place.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Where large downloads are assembled, named by node and content so that the verified
    /// chunks of one cut short (a kill, a crash, a lost link) are reused when it starts again.
    pub fn partial_dir(&self) -> PathBuf {
        self.root.join("partial")
    }

    /// Where deleted and replaced files go first.
    pub fn trash_dir(&self) -> PathBuf {
        self.root.join("trash")
    }

    /// Reads the configuration.
    pub fn load_config(&self) -> Result<Config, AgentError> {
        let path = self.config_path();
        let text = fs::read_to_string(&path).map_err(|e| AgentError::io("read", &path, e))?;
        toml::from_str(&text).map_err(|e| AgentError::Config {
            path,
            message: e.to_string(),
        })
    }

    /// The pinned CA file of `config`, if any, as a path.
    pub fn ca_path(&self, config: &Config) -> Option<PathBuf> {
        config.ca.as_ref().map(|ca| self.root.join(ca))
    }

    /// Writes the configuration.
    pub fn save_config(&self, config: &Config) -> Result<(), AgentError> {
        let path = self.config_path();
        let text = toml::to_string_pretty(config).map_err(|e| AgentError::Config {
            path: path.clone(),
            message: e.to_string(),
        })?;
        fs::write(&path, text).map_err(|e| AgentError::io("write", &path, e))
    }

    /// Reads the device key, refusing one that others can read.
    pub fn load_key(&self) -> Result<DeviceKey, AgentError> {
        let path = self.key_path();
        let meta = fs::metadata(&path).map_err(|e| AgentError::io("stat", &path, e))?;
        if meta.permissions().mode() & 0o077 != 0 {
            return Err(AgentError::KeyPermissions { path });
        }
        let bytes = fs::read(&path).map_err(|e| AgentError::io("read", &path, e))?;
        let secret: [u8; 32] = bytes
            .try_into()
            .map_err(|_| AgentError::KeyCorrupt { path: path.clone() })?;
        Ok(DeviceKey::from_secret(secret))
    }

    /// Generates and stores a new device key (mode 0600); refuses to replace an existing one.
    pub fn create_key(&self) -> Result<DeviceKey, AgentError> {
        let path = self.key_path();
        let mut secret = [0u8; 32];
        getrandom::fill(&mut secret).map_err(|e| AgentError::Random(e.to_string()))?;
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| AgentError::io("create", &path, e))?;
        file.write_all(&secret)
            .and_then(|()| file.sync_all())
            .map_err(|e| AgentError::io("write", &path, e))?;
        Ok(DeviceKey::from_secret(secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::of(dir.path());
        state.create().unwrap();
        let key = state.create_key().unwrap();
        let mode = fs::metadata(state.key_path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(state.load_key().unwrap().device_id(), key.device_id());
        assert!(
            state.create_key().is_err(),
            "an existing key must never be replaced"
        );
    }

    #[test]
    fn a_key_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::of(dir.path());
        state.create().unwrap();
        state.create_key().unwrap();
        fs::set_permissions(state.key_path(), fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            state.load_key(),
            Err(AgentError::KeyPermissions { .. })
        ));
    }

    #[test]
    fn config_roundtrips_with_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::of(dir.path());
        state.create().unwrap();
        fs::write(
            state.config_path(),
            "relay = \"ws://127.0.0.1:1\"\nuser = \"alice\"\ndevice_name = \"laptop\"\n",
        )
        .unwrap();
        let config = state.load_config().unwrap();
        assert_eq!(config.folder, "default");
        assert_eq!(
            config.delete_guard(),
            DeleteGuard {
                min_files: 50,
                min_percent: 25
            },
            "a config from before the guard gets its defaults"
        );
        state.save_config(&config).unwrap();
        assert_eq!(state.load_config().unwrap(), config);
    }
}
