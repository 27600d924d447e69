//! The relay's error types.

use std::path::{Path, PathBuf};

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("database: {0}")]
    Database(String),
    /// A file operation failed.
    #[error("cannot {op} {}: {source}", path.display())]
    Io {
        /// What was attempted.
        op: &'static str,
        /// On what.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Stored bytes do not decode.
    #[error("storage is corrupt: {0}")]
    Corrupt(String),
    /// The OS gave no randomness.
    #[error("no randomness: {0}")]
    Random(String),
    /// The user exists already.
    #[error("user {0} exists already")]
    UserExists(String),
    /// No such user.
    #[error("no user {0}")]
    NoUser(String),
    /// The name is not allowed.
    #[error("invalid user name {0:?}: use 1-64 letters, digits, '-', '_' or '.'")]
    BadName(String),
    /// The device may not do this.
    #[error("device {0} may not do this")]
    Forbidden(String),
    /// The scan has no verdict on this version of this user's files.
    #[error("no scan verdict on version {content} of user {user}")]
    NoVerdict {
        /// The user.
        user: String,
        /// The version's content hash (hex).
        content: String,
    },
    /// The relay's disk is down to its free-space reserve (see `disk`).
    #[error("relay storage full")]
    StorageFull,
    /// The user's storage quota is full.
    #[error("storage quota of {quota} bytes is full")]
    Quota {
        /// The quota.
        quota: u64,
    },
}

impl StoreError {
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> StoreError {
        StoreError::Io {
            op,
            path: path.to_owned(),
            source,
        }
    }

    pub(crate) fn db(error: impl std::fmt::Display) -> StoreError {
        StoreError::Database(error.to_string())
    }

    /// Whether this failed for want of space (the file system or the user's disk quota is
    /// full): a refusal the device should retry later, not an internal failure.
    pub fn is_out_of_space(&self) -> bool {
        match self {
            StoreError::StorageFull => true,
            StoreError::Io { source, .. } => matches!(
                source.raw_os_error(),
                Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error()
                    || code == rustix::io::Errno::DQUOT.raw_os_error()
            ),
            _ => false,
        }
    }
}
