//! Limits on what the agent keeps for itself: `.cloud3/trash/` (files replaced or deleted by
//! sync, kept so a mistake can be undone by hand) and `.cloud3/partial/` (downloads cut short,
//! kept to resume). Each has an age and a size limit in the folder's config; entries past the
//! age are removed, then the oldest until the directory fits its size. Both are pruned when the
//! folder is opened (before any download, so a partial file being written is never touched),
//! and the trash again with every periodic rescan of the daemon.
//!
//! An entry's age: a trash entry's name starts with the nanosecond time it was trashed (a
//! moved file keeps its own, perhaps old, modification time); otherwise its modification time.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::AgentError;

/// How much a directory may keep.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limit {
    /// Entries older than this go.
    pub max_age: Duration,
    /// Then the oldest go until the rest takes at most this many bytes.
    pub max_bytes: u64,
}

/// What a prune removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    /// Entries removed.
    pub entries: usize,
    /// Their bytes.
    pub bytes: u64,
}

/// Prunes `dir` to `limit` as of `now` (see the module docs).
pub fn prune(dir: &Path, limit: Limit, now: SystemTime) -> Result<Pruned, AgentError> {
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Pruned::default()),
        Err(e) => return Err(AgentError::io("list", dir, e)),
    };
    let mut entries: Vec<(SystemTime, u64, PathBuf)> = listing
        .flatten()
        .map(|entry| {
            let path = entry.path();
            let age = trashed_at(&entry.file_name().to_string_lossy())
                .or_else(|| entry.metadata().and_then(|m| m.modified()).ok())
                .unwrap_or(now);
            (age, size_of(&path), path)
        })
        .collect();
    // Oldest first.
    entries.sort();
    let mut total: u64 = entries.iter().map(|(_, size, _)| size).sum();
    let mut pruned = Pruned::default();
    for (at, size, path) in entries {
        let too_old = now.duration_since(at).unwrap_or_default() > limit.max_age;
        if !too_old && total <= limit.max_bytes {
            break;
        }
        let removed = if path.is_dir() && !path.is_symlink() {
            std::fs::remove_dir_all(&path)
        } else {
            std::fs::remove_file(&path)
        };
        match removed {
            Ok(()) => {
                total -= size;
                pruned.entries += 1;
                pruned.bytes += size;
            }
            Err(error) => tracing::warn!(path = %path.display(), %error, "cannot prune"),
        }
    }
    Ok(pruned)
}

/// The time in a trash entry's name (`NANOS-name`).
fn trashed_at(name: &str) -> Option<SystemTime> {
    let nanos: u64 = name.split_once('-')?.0.parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_nanos(nanos))
}

/// Bytes of a file, or of everything under a directory (symlinks not followed).
fn size_of(path: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.len();
    }
    std::fs::read_dir(path)
        .map(|listing| listing.flatten().map(|e| size_of(&e.path())).sum())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    #[test]
    fn old_entries_go_then_the_oldest_until_it_fits() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::now();
        let name = |days_ago: u32, name: &str| {
            let at = now - DAY * days_ago;
            let nanos = at.duration_since(UNIX_EPOCH).unwrap().as_nanos();
            dir.path().join(format!("{nanos}-{name}"))
        };
        std::fs::write(name(40, "ancient.txt"), vec![0u8; 10]).unwrap();
        std::fs::write(name(5, "older.txt"), vec![0u8; 600]).unwrap();
        let folder = name(3, "photos");
        std::fs::create_dir(&folder).unwrap();
        std::fs::write(folder.join("a.jpg"), vec![0u8; 300]).unwrap();
        std::fs::write(name(1, "newest.txt"), vec![0u8; 200]).unwrap();

        let limit = Limit {
            max_age: 30 * DAY,
            max_bytes: 2000,
        };
        let pruned = prune(dir.path(), limit, now).unwrap();
        assert_eq!(
            pruned,
            Pruned {
                entries: 1,
                bytes: 10
            },
            "only the 40-day-old one"
        );
        let limit = Limit {
            max_age: 30 * DAY,
            max_bytes: 600,
        };
        let pruned = prune(dir.path(), limit, now).unwrap();
        assert_eq!(
            pruned,
            Pruned {
                entries: 1,
                bytes: 600
            },
            "the oldest goes first"
        );
        assert!(folder.join("a.jpg").exists() && name(1, "newest.txt").exists());
        let limit = Limit {
            max_age: 30 * DAY,
            max_bytes: 250,
        };
        assert_eq!(
            prune(dir.path(), limit, now).unwrap().bytes,
            300,
            "a whole directory"
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert_eq!(
            prune(&dir.path().join("none"), limit, now).unwrap(),
            Pruned::default()
        );
    }
}
