//! The free-space reserve of the relay's data directory (`--min-free-mib`, as Syncthing's
//! minimum free disk): blobs that would take the file system below it are refused with
//! `StorageFull` ("relay storage full") before a byte of them is written, so the relay never
//! fills its disk. The reserve keeps room for what needs no new blobs: document changes, device
//! heads, accounts and the database's own growth. Reads never look at it.
//!
//! Free space is asked of the file system (`statvfs`) for every batch, so once an operator frees
//! space the next upload is taken: nothing to restart. Reaching the reserve is logged once as a
//! warning (and leaving it once as information) and shown by the `cloud3_storage_full` gauge and
//! the `cloud3_storage_full_refusals` counter.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::metrics::Metrics;

/// Room beyond the reserve a full relay needs before it takes blobs again: one upload batch.
pub const RESUME_MARGIN: u64 = 8 << 20;

/// The reserve, and whether it is reached now.
#[derive(Debug)]
pub struct DiskSpace {
    dir: PathBuf,
    reserve: u64,
    full: AtomicBool,
}

impl DiskSpace {
    /// Watches the file system holding `dir`, keeping `reserve` bytes free.
    pub fn new(dir: &Path, reserve: u64) -> DiskSpace {
        DiskSpace {
            dir: dir.to_owned(),
            reserve,
            full: AtomicBool::new(false),
        }
    }

    /// Whether `bytes` more can be stored and still leave the reserve free. Refusals are
    /// counted; the first after room (and the first room after refusals) is logged.
    pub fn room_for(&self, bytes: u64, metrics: &Metrics) -> bool {
        let room = self.look(bytes, metrics);
        if !room {
            metrics.storage_full_refusals.inc();
        }
        room
    }

    /// Looks at the free space without an upload waiting (at start, so the gauges and the log
    /// say at once whether the relay is full).
    pub fn observe(&self, metrics: &Metrics) {
        self.look(0, metrics);
    }

    /// Measures the free space, updates the gauges and logs a change of state.
    fn look(&self, bytes: u64, metrics: &Metrics) -> bool {
        let available = match available(&self.dir) {
            Ok(available) => available,
            Err(error) => {
                // Not knowing is no reason to refuse: a write that fails is rolled back.
                tracing::warn!(dir = %self.dir.display(), %error, "cannot read free space");
                return true;
            }
        };
        metrics.disk_free_bytes.set(clamp(available));
        // Once full, the relay stays full until a whole batch would fit again: a device retrying
        // then is refused before it sends anything, rather than after each batch it sends.
        let margin = if self.full.load(Ordering::Relaxed) {
            RESUME_MARGIN
        } else {
            0
        };
        let room = available >= self.reserve.saturating_add(bytes).saturating_add(margin);
        let was_full = self.full.swap(!room, Ordering::Relaxed);
        metrics.storage_full.set(i64::from(!room));
        if room {
            if was_full {
                tracing::info!(
                    available,
                    reserve = self.reserve,
                    "relay storage has room again: storing blobs"
                );
            }
        } else if !was_full {
            tracing::warn!(
                dir = %self.dir.display(),
                available,
                reserve = self.reserve,
                wanted = bytes,
                "relay storage full: the free-space reserve is reached; refusing new blobs until there is room"
            );
        }
        room
    }
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`.
fn available(dir: &Path) -> std::io::Result<u64> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

fn clamp(bytes: u64) -> i64 {
    i64::try_from(bytes).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_is_kept_and_room_is_seen_again() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::default();
        let free = available(dir.path()).unwrap();
        // A reserve of half the free space (other processes write meanwhile): 1 KiB fits, as
        // much again as is free does not.
        let space = DiskSpace::new(dir.path(), free / 2);
        assert!(space.room_for(1024, &metrics));
        assert_eq!(metrics.storage_full.get(), 0);
        assert!(!space.room_for(free, &metrics));
        assert_eq!(metrics.storage_full.get(), 1);
        assert_eq!(metrics.storage_full_refusals.get(), 1);
        assert!(space.room_for(0, &metrics), "room again for what fits");
        assert_eq!(metrics.storage_full.get(), 0);
        let none = DiskSpace::new(dir.path(), u64::MAX);
        none.observe(&metrics);
        assert_eq!(metrics.storage_full.get(), 1, "seen full without an upload");
        assert_eq!(
            metrics.storage_full_refusals.get(),
            1,
            "and nothing refused"
        );
        assert!(!none.room_for(0, &metrics));
    }
}
