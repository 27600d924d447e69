//! The agent's error type: what failed, on what.

use std::path::{Path, PathBuf};

/// Everything that can stop an agent command.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// A filesystem operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was attempted.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The config file is not valid.
    #[error("invalid config {}: {message}", path.display())]
    Config {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The device key is readable by other users.
    #[error("device key {} is readable by others: run chmod 600 on it", path.display())]
    KeyPermissions {
        /// The file.
        path: PathBuf,
    },
    /// The device key file is damaged.
    #[error("device key {} is damaged", path.display())]
    KeyCorrupt {
        /// The file.
        path: PathBuf,
    },
    /// The OS gave no randomness.
    #[error("no randomness from the operating system: {0}")]
    Random(String),
    /// The folder is not set up.
    #[error("{} is not a cloud3 folder: run `cloud3 init` first", .0.display())]
    NotInitialised(PathBuf),
    /// The folder is already set up.
    #[error("{} is already a cloud3 folder", .0.display())]
    AlreadyInitialised(PathBuf),
    /// The relay could not be reached.
    #[error("cannot reach relay {url}: {message}")]
    Unreachable {
        /// The relay URL.
        url: String,
        /// Why.
        message: String,
    },
    /// The relay's TLS could not be trusted or spoken (wrong or expired certificate, a private
    /// CA that is not pinned, `ws://` to a TLS port or `wss://` to a plain one). Not retried:
    /// it needs the user's attention.
    #[error("TLS with relay {url} failed: {message}")]
    Tls {
        /// The relay URL.
        url: String,
        /// Why, with a hint.
        message: String,
    },
    /// The relay refused this device's authentication.
    #[error("the relay refused authentication: {0}")]
    AuthRefused(String),
    /// This device was revoked.
    #[error("this device was revoked; local files are untouched")]
    Revoked,
    /// The relay speaks another protocol version.
    #[error("the relay does not support this protocol version: {0}")]
    UnsupportedVersion(String),
    /// The relay's storage is full: it stores no new blobs for now.
    #[error("relay storage full: uploads wait until the relay has room again")]
    RelayFull,
    /// The relay answered a request with an error.
    #[error("the relay refused: {0}")]
    Refused(String),
    /// The connection broke or the relay broke the protocol.
    #[error("connection to the relay failed: {0}")]
    Protocol(String),
    /// A path that could leave the folder (absolute, `..`, or through a parent that is a
    /// symlink or not a directory); the action is skipped.
    #[error("refusing unsafe path {0:?}: it could leave the folder")]
    UnsafePath(String),
    /// A parent directory vanished while the action ran; the next scan sees what happened.
    #[error("the folder changed under {0:?} meanwhile; skipped until the next scan")]
    ParentChanged(String),
    /// The local database failed.
    #[error("local database {}: {message}", path.display())]
    Database {
        /// The database file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The folder no longer looks like the one this device synced: its root marker
    /// (`.cloud3/`) is gone or the root is another directory (a disk that is not mounted, a
    /// folder replaced). Syncing stops instead of deleting everything elsewhere.
    #[error("stopped syncing {}: {reason}; nothing was deleted (is its disk mounted?)", root.display())]
    FolderGone {
        /// The folder's root.
        root: PathBuf,
        /// What no longer matches.
        reason: String,
    },
    /// The running daemon could not do what the command asked (its reason).
    #[error("{0}")]
    Daemon(String),
    /// The command was used wrongly.
    #[error("{0}")]
    Usage(String),
}

impl AgentError {
    /// An [`AgentError::Io`] for `op` on `path`.
    pub fn io(op: &'static str, path: &Path, source: std::io::Error) -> AgentError {
        AgentError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }
}
