//! Room on the folder's disk for downloads. Before a group of files is assembled, each file's
//! bytes are weighed against the free space of the folder's file system less a reserve
//! (`min_free_mib` in `config.toml`; by default 1 % of the file system, as Syncthing's minimum
//! free disk, but at most [`DEFAULT_RESERVE_MAX`]): files that fit are
//! downloaded, one that does not is not started and is reported in `cloud3 status` with the
//! space it lacks. A write that still runs out of space (something else filled the disk
//! meanwhile) gives the file up the same way, its partial bytes removed.

use std::path::Path;

use crate::status::NoRoom;

/// The default reserve's ceiling: 1 % of a large disk is more than a sync tool needs to leave.
pub const DEFAULT_RESERVE_MAX: u64 = 1 << 30;

/// Bytes that downloads may still take on one file system.
#[derive(Debug)]
pub struct Room {
    /// Free bytes less the reserve; `None` when the file system would not say.
    left: Option<u64>,
    /// Free bytes less the reserve when measured (negative: already inside the reserve).
    measured: i128,
}

impl Room {
    /// Measures the file system holding `dir`, keeping `reserve` bytes free (`None`: the
    /// default reserve).
    pub fn measure(dir: &Path, reserve: Option<u64>) -> Room {
        match space(dir) {
            Ok((free, total)) => {
                let reserve = reserve.unwrap_or((total / 100).min(DEFAULT_RESERVE_MAX));
                let measured = i128::from(free) - i128::from(reserve);
                Room {
                    left: Some(u64::try_from(measured).unwrap_or(0)),
                    measured,
                }
            }
            Err(error) => {
                tracing::warn!(dir = %dir.display(), %error, "cannot read free space; downloading anyway");
                Room {
                    left: None,
                    measured: 0,
                }
            }
        }
    }

    /// Takes room for `bytes` more, or says how many bytes are missing for them.
    pub fn take(&mut self, bytes: u64) -> Result<(), u64> {
        let Some(left) = self.left.as_mut() else {
            return Ok(());
        };
        if bytes <= *left {
            *left -= bytes;
            return Ok(());
        }
        Err(bytes - *left)
    }

    /// A file of `size` bytes given up for want of room (`needed` of them still to write),
    /// with the free space it lacks.
    pub fn missing(&self, path: &str, size: u64, needed: u64) -> NoRoom {
        let short_by = i128::from(needed) - self.measured;
        NoRoom {
            path: path.to_owned(),
            size,
            short_by: u64::try_from(short_by.max(1)).unwrap_or(u64::MAX),
        }
    }
}

/// Whether an IO error means the file system (or the user's disk quota) is full.
pub fn is_out_of_space(error: &std::io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error()
            || code == rustix::io::Errno::DQUOT.raw_os_error()
    )
}

/// Bytes an unprivileged writer may still use on the file system holding `dir`, and its size.
fn space(dir: &Path) -> std::io::Result<(u64, u64)> {
    let stat = rustix::fs::statvfs(dir)?;
    Ok((
        stat.f_bavail.saturating_mul(stat.f_frsize),
        stat.f_blocks.saturating_mul(stat.f_frsize),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_take_room_in_turn_and_what_does_not_fit_says_by_how_much() {
        let mut room = Room {
            left: Some(100),
            measured: 100,
        };
        assert_eq!(room.take(60), Ok(()));
        assert_eq!(room.take(50), Err(10));
        assert_eq!(room.take(40), Ok(()), "a smaller file after it still fits");
        assert_eq!(room.missing("big", 150, 150).short_by, 50);
        let unknown = &mut Room {
            left: None,
            measured: 0,
        };
        assert_eq!(unknown.take(u64::MAX), Ok(()));
    }

    #[test]
    fn the_folders_file_system_is_measured() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut room = Room::measure(dir.path(), Some(0));
        assert_eq!(room.take(1), Ok(()));
        let mut none = Room::measure(dir.path(), Some(u64::MAX));
        assert!(none.take(1).is_err());
        let (free, total) = space(dir.path()).expect("statvfs");
        let default = Room::measure(dir.path(), None);
        let reserve = (total / 100).min(DEFAULT_RESERVE_MAX);
        // Others write meanwhile: close to what was free less the default reserve.
        let expected = i128::from(free) - i128::from(reserve);
        assert!((default.measured - expected).abs() < 64 << 20);
    }
}
