//! Walking the synced folder: every path with its kind, size, times, inode and mode, honouring
//! `.cloud3ignore` (gitignore syntax) and skipping `.cloud3/`. Symlinks are reported as links and
//! never followed. Names that cannot be synced (not UTF-8, or refused by the engine's name rules)
//! are skipped with a warning.

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use cloud3_engine::tree::{NodeKind, validate_name};
use ignore::WalkBuilder;

use crate::error::AgentError;
use crate::state::STATE_DIR;

/// The name of the ignore file at the folder's root (and in any subdirectory).
pub const IGNORE_FILE: &str = ".cloud3ignore";

/// What `stat` says about a path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    /// File, directory or symlink.
    pub kind: NodeKind,
    /// Size in bytes (0 for directories).
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i128,
    /// Inode number.
    pub inode: u64,
    /// Status change time, nanoseconds since the epoch: unlike the mtime, no program can set it,
    /// so a file replaced by one with the same size, mtime and (reused) inode is still noticed.
    pub ctime_ns: i128,
    /// Permission bits (0o7777 mask).
    pub mode: u32,
}

impl Stat {
    /// Reads the facts of `metadata` (from `symlink_metadata`); `None` for sockets, fifos, devices.
    pub fn from_metadata(metadata: &Metadata) -> Option<Stat> {
        let file_type = metadata.file_type();
        let kind = if file_type.is_symlink() {
            NodeKind::Symlink
        } else if file_type.is_dir() {
            NodeKind::Dir
        } else if file_type.is_file() {
            NodeKind::File
        } else {
            return None;
        };
        Some(Stat {
            kind,
            size: if kind == NodeKind::Dir {
                0
            } else {
                metadata.len()
            },
            mtime_ns: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
            inode: metadata.ino(),
            ctime_ns: i128::from(metadata.ctime()) * 1_000_000_000
                + i128::from(metadata.ctime_nsec()),
            mode: metadata.permissions().mode() & 0o7777,
        })
    }
}

/// Stats one path relative to `root` without following a final symlink.
pub fn stat(root: &Path, relative: &str) -> Option<Stat> {
    let metadata = std::fs::symlink_metadata(root.join(relative)).ok()?;
    Stat::from_metadata(&metadata)
}

/// Every syncable path under `root`, keyed by its '/'-separated relative path.
pub fn walk(root: &Path) -> Result<BTreeMap<String, Stat>, AgentError> {
    let mut builder = WalkBuilder::new(root);
    builder
        .standard_filters(false)
        .hidden(false)
        .follow_links(false)
        .add_custom_ignore_filename(IGNORE_FILE)
        .filter_entry(|entry| !(entry.depth() == 1 && entry.file_name() == STATE_DIR));
    let mut found = BTreeMap::new();
    for entry in builder.build() {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                tracing::warn!(%error, "skipping an entry the walk could not read");
                continue;
            }
        };
        if entry.depth() == 0 {
            continue;
        }
        let Some(relative) = relative_path(root, entry.path()) else {
            tracing::warn!(path = %entry.path().display(), "skipping a name that cannot be synced");
            continue;
        };
        let metadata = match entry.path().symlink_metadata() {
            Ok(metadata) => metadata,
            // Vanished between listing and stat: the next scan sees it gone.
            Err(_) => continue,
        };
        if let Some(stat) = Stat::from_metadata(&metadata) {
            found.insert(relative, stat);
        }
    }
    Ok(found)
}

/// The relative path as a string, if every component is a valid, UTF-8 name.
pub fn relative_path(root: &Path, path: &Path) -> Option<String> {
    let relative = path.strip_prefix(root).ok()?;
    let mut parts = Vec::new();
    for component in relative.components() {
        let name = component.as_os_str().to_str()?;
        validate_name(name).ok()?;
        parts.push(name);
    }
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn walk_lists_nested_paths_links_and_honours_ignore() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("a/b")).unwrap();
        fs::create_dir_all(root.join(".cloud3/tmp")).unwrap();
        fs::write(root.join("a/b/f.txt"), "x").unwrap();
        fs::write(root.join("a/skip.log"), "x").unwrap();
        fs::write(root.join(".cloud3ignore"), "*.log\n").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", root.join("link")).unwrap();
        let found = walk(root).unwrap();
        let paths: Vec<_> = found.keys().cloned().collect();
        assert_eq!(paths, [".cloud3ignore", "a", "a/b", "a/b/f.txt", "link"]);
        assert_eq!(found["link"].kind, NodeKind::Symlink);
        assert_eq!(found["a"].kind, NodeKind::Dir);
        assert_eq!(found["a/b/f.txt"].size, 1);
    }
}
