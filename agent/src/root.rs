//! The folder's root as it was when the folder was opened: a folder that is no longer the one
//! this device synced (its root gone, another directory in its place such as an unmounted
//! disk's empty mount point, or its marker `.cloud3/` missing) stops syncing instead of
//! deleting everything elsewhere or filling the wrong disk.

use std::path::{Path, PathBuf};

use crate::error::AgentError;
use crate::state::StateDir;

/// The root's identity (device and inode) and its marker, remembered at open.
#[derive(Clone, Debug)]
pub struct FolderRoot {
    root: PathBuf,
    identity: (u64, u64),
    state: StateDir,
}

impl FolderRoot {
    /// Remembers `root` as it is now, with its state directory.
    pub fn open(root: &Path, state: StateDir) -> Result<FolderRoot, AgentError> {
        Ok(FolderRoot {
            root: root.to_owned(),
            identity: identity(root).map_err(|e| AgentError::io("stat", root, e))?,
            state,
        })
    }

    /// `Err(FolderGone)` when the folder is no longer the one opened.
    pub fn check(&self) -> Result<(), AgentError> {
        let gone = |reason: String| AgentError::FolderGone {
            root: self.root.clone(),
            reason,
        };
        match identity(&self.root) {
            Ok(now) if now == self.identity => {}
            Ok(_) => {
                return Err(gone(
                    "another directory is in its place (device or inode changed)".into(),
                ));
            }
            Err(_) => return Err(gone("the folder is gone".into())),
        }
        if !self.state.exists() {
            return Err(gone(format!(
                "its marker {} (config and device key) is missing",
                self.state.root().display()
            )));
        }
        Ok(())
    }

    /// What an error that stopped the daemon means: a write into `.cloud3/` that failed
    /// because the disk went away is reported as the folder gone, which says what to do.
    pub fn explain(&self, error: AgentError) -> AgentError {
        match self.check() {
            Err(gone) => gone,
            Ok(()) => error,
        }
    }
}

fn identity(path: &Path) -> std::io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path)?;
    Ok((meta.dev(), meta.ino()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_after_the_folder_went_away_says_the_folder_is_gone() {
        let tmp = tempfile::tempdir().expect("temp dir");
        let folder = tmp.path().join("f");
        let state = StateDir::of(&folder);
        state.create().expect("state dir");
        std::fs::write(state.root().join("config.toml"), "x").expect("config");
        std::fs::write(state.root().join("device.key"), "x").expect("key");
        let root = FolderRoot::open(&folder, state).expect("open");
        assert!(root.check().is_ok());
        let other = || AgentError::Protocol("cannot write status.json.tmp".into());
        assert!(matches!(root.explain(other()), AgentError::Protocol(_)));
        std::fs::rename(&folder, tmp.path().join("moved")).expect("move away");
        std::fs::create_dir(&folder).expect("an empty directory in its place");
        assert!(matches!(
            root.explain(other()),
            AgentError::FolderGone { .. }
        ));
    }
}
