//! A file's versions as `cloud3 history` lists them, and restoring one (or undeleting the file)
//! in the local document. Shared by the direct commands and the daemon's control channel, so
//! both answer the same way.
//!
//! Only versions the relay still keeps are offered: the relay's `Welcome` tells each connection
//! the account's retention window and the relay's clock ([`Window`], kept in `agent.redb`), and
//! a version counts as dropped when a collection at the relay's now less that window would free
//! it (the engine's [`cloud3_engine::tree::FolderDoc::node_history`]). Version numbers never
//! change as versions drop: a dropped number is refused by `restore` with the reason.

use cloud3_engine::time::WallTime;
use serde::{Deserialize, Serialize};

use crate::error::AgentError;
use crate::syncer::{Syncer, wall_now};

const DAY_MS: i64 = 86_400_000;

/// The relay's retention window as this device last learnt it (from the relay's `Welcome`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// The account's window in days.
    pub days: u32,
    /// How far the relay's clock runs ahead of this device's (ms; negative: behind).
    pub relay_ahead_ms: i64,
}

impl Window {
    /// The window the relay announced at this device's `now`.
    pub fn learnt(days: u32, relay_now: WallTime, now: WallTime) -> Window {
        Window {
            days,
            relay_ahead_ms: relay_now.0.saturating_sub(now.0),
        }
    }

    /// The relay's now less the window, at this device's `now`: versions replaced (or files
    /// deleted) before it are dropped.
    pub fn cutoff(&self, now: WallTime) -> WallTime {
        WallTime(
            now.0
                .saturating_add(self.relay_ahead_ms)
                .saturating_sub(i64::from(self.days).saturating_mul(DAY_MS)),
        )
    }

    /// Whether `other` says something different enough to store (a new window, or the clocks'
    /// difference moved by more than a second).
    pub fn differs(&self, other: &Window) -> bool {
        self.days != other.days || (self.relay_ahead_ms - other.relay_ahead_ms).abs() > 1000
    }
}

/// One version of a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// Its number for `restore --version` (versions keep their numbers as older ones drop).
    pub number: usize,
    /// When it was written (Unix ms).
    pub written_at: i64,
    /// Its size in bytes.
    pub size: u64,
    /// The name of the device that wrote it.
    pub author: String,
    /// Its content hash, hex.
    pub hash: String,
}

/// The restorable versions of a file, oldest first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The versions that can be restored.
    pub versions: Vec<Version>,
    /// How many versions were dropped (outside the relay's retention window).
    pub dropped: usize,
    /// The window they were judged by, in days; `None` until this device has learnt it from
    /// the relay (then every version is listed).
    pub window_days: Option<u32>,
    /// Versions replaced (and files deleted) before this time (Unix ms) are dropped.
    pub cutoff: Option<i64>,
    /// Whether the file is deleted now.
    pub deleted: bool,
}

/// The restorable versions of `path` in the local document.
pub fn history(syncer: &mut Syncer, path: &str) -> Result<History, AgentError> {
    let (node, deleted) = syncer
        .doc
        .find_path(path)
        .ok_or_else(|| not_in_history(path))?;
    let cutoff = cutoff(syncer);
    let all = syncer.doc.node_history(node, cutoff);
    if all.is_empty() {
        // Only directories have no content versions.
        return Err(AgentError::Usage(format!(
            "{path} is a directory: `cloud3 history` lists the versions of a file; give a file \
             inside it"
        )));
    }
    let dropped = all.iter().filter(|v| !v.restorable).count();
    let versions = all
        .into_iter()
        .enumerate()
        .filter(|(_, version)| version.restorable)
        .map(|(number, version)| Version {
            number,
            written_at: version.content.written_at.0,
            size: version.content.size,
            author: syncer.doc.device_name(version.content.author),
            hash: version.content.hash().to_hex(),
        })
        .collect::<Vec<_>>();
    Ok(History {
        versions,
        dropped,
        window_days: syncer.window.map(|w| w.days),
        cutoff: cutoff.map(|c| c.0),
        deleted,
    })
}

/// Undeletes `path` and, with `version`, makes that version its content again; commits the
/// change to the local document (syncing it is the caller's part). A version (or a deleted
/// file's content) the relay's retention window dropped is refused: its bytes are gone.
pub fn restore(syncer: &mut Syncer, path: &str, version: Option<usize>) -> Result<(), AgentError> {
    let (node, deleted) = syncer
        .doc
        .find_path(path)
        .ok_or_else(|| not_in_history(path))?;
    let cutoff = cutoff(syncer);
    let versions = syncer.doc.node_history(node, cutoff);
    let chosen = match version {
        Some(number) => {
            let chosen = versions.get(number).ok_or_else(|| {
                AgentError::Usage(format!(
                    "{path} has versions 0 to {}",
                    versions.len().saturating_sub(1)
                ))
            })?;
            if !chosen.restorable {
                return Err(AgentError::Usage(format!(
                    "version {number} of {path} was dropped: it was replaced before {}, {}; \
                     `cloud3 history {path}` lists the versions that can be restored",
                    cutoff_text(cutoff),
                    window_text(syncer.window.map(|w| w.days))
                )));
            }
            Some(chosen)
        }
        None => None,
    };
    if deleted && chosen.is_none() {
        let current = syncer.doc.content_of(node);
        let kept = versions
            .iter()
            .any(|v| v.restorable && Some(&v.content) == current.as_ref());
        if !kept {
            return Err(AgentError::Usage(format!(
                "{path} was deleted before {}, {}: its content was dropped; `cloud3 history \
                 {path}` lists what can be restored",
                cutoff_text(cutoff),
                window_text(syncer.window.map(|w| w.days))
            )));
        }
    }
    if deleted {
        syncer.doc.restore(node).map_err(doc_error)?;
    }
    if let Some(chosen) = chosen {
        let mut content = chosen.content.clone();
        content.written_at = wall_now();
        content.author = syncer.short();
        syncer.doc.set_content(node, content).map_err(doc_error)?;
    }
    syncer.commit_batch(Default::default(), true)
}

/// The relay's now less its window, if this device has learnt the window.
fn cutoff(syncer: &Syncer) -> Option<WallTime> {
    syncer.window.map(|window| window.cutoff(wall_now()))
}

/// `time` as `cloud3 history` prints times (UTC).
pub fn format_time(time: WallTime) -> String {
    let (y, mo, d, h, mi, s) = time.to_utc_parts();
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}

fn cutoff_text(cutoff: Option<WallTime>) -> String {
    cutoff.map_or_else(|| "the window".to_owned(), format_time)
}

/// "outside the relay's N-day retention window".
pub fn window_text(days: Option<u32>) -> String {
    match days {
        Some(days) => format!("outside the relay's {days}-day retention window"),
        None => "outside the relay's retention window".to_owned(),
    }
}

fn not_in_history(path: &str) -> AgentError {
    AgentError::Usage(format!("{path} is not in the folder's history"))
}

fn doc_error(error: impl std::fmt::Display) -> AgentError {
    AgentError::Protocol(format!("folder document: {error}"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use cloud3_engine::ids::DeviceId;

    use super::*;
    use crate::state::StateDir;

    fn open(dir: &std::path::Path) -> Syncer {
        let config =
            toml::from_str("relay = \"ws://127.0.0.1:9\"\nuser = \"u\"\ndevice_name = \"d\"")
                .expect("config");
        Syncer::open(dir, config, DeviceId([1; 32])).expect("syncer")
    }

    fn usage(result: Result<(), AgentError>) -> String {
        match result {
            Err(AgentError::Usage(message)) => message,
            other => panic!("a usage error, not {other:?}"),
        }
    }

    #[test]
    fn only_versions_inside_the_learnt_window_are_offered() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::of(dir.path());
        state.create().unwrap();
        state.create_key().unwrap();
        let mut syncer = open(dir.path());
        state.save_config(&syncer.config).unwrap();
        syncer.join().unwrap();
        for text in ["one", "two"] {
            std::fs::write(dir.path().join("f.txt"), text).unwrap();
            assert!(syncer.scan(&HashSet::new()).unwrap());
        }
        std::fs::write(dir.path().join("gone.txt"), "gone").unwrap();
        assert!(syncer.scan(&HashSet::new()).unwrap());
        std::fs::remove_file(dir.path().join("gone.txt")).unwrap();
        assert!(syncer.scan(&HashSet::new()).unwrap());

        // No window learnt yet: everything is offered, and the history says it does not know.
        let listed = history(&mut syncer, "f.txt").unwrap();
        assert_eq!(listed.versions.len(), 2);
        assert_eq!((listed.dropped, listed.window_days), (0, None));

        // A 30-day window, kept across a restart: still everything.
        syncer
            .learn_window(Window::learnt(30, wall_now(), wall_now()))
            .unwrap();
        drop(syncer);
        let mut syncer = open(dir.path());
        assert_eq!(syncer.window.map(|w| w.days), Some(30));
        let listed = history(&mut syncer, "f.txt").unwrap();
        assert_eq!((listed.versions.len(), listed.dropped), (2, 0));

        // The relay's clock a minute ahead and no window: only the current version is left,
        // under its own number; the dropped one and the deleted file are refused.
        let ahead = WallTime(wall_now().0 + 60_000);
        syncer
            .learn_window(Window::learnt(0, ahead, wall_now()))
            .unwrap();
        let listed = history(&mut syncer, "f.txt").unwrap();
        let numbers: Vec<usize> = listed.versions.iter().map(|v| v.number).collect();
        assert_eq!((numbers, listed.dropped), (vec![1], 1));
        assert_eq!(listed.window_days, Some(0));
        let refused = usage(restore(&mut syncer, "f.txt", Some(0)));
        assert!(
            refused.starts_with("version 0 of f.txt was dropped"),
            "{refused}"
        );
        let gone = history(&mut syncer, "gone.txt").unwrap();
        assert!(gone.deleted && gone.versions.is_empty() && gone.dropped == 1);
        let refused = usage(restore(&mut syncer, "gone.txt", None));
        assert!(
            refused.starts_with("gone.txt was deleted before"),
            "{refused}"
        );
        assert!(
            syncer
                .doc
                .find_path("gone.txt")
                .is_some_and(|(_, deleted)| deleted)
        );
        restore(&mut syncer, "f.txt", Some(1)).unwrap();
    }

    #[test]
    fn the_cutoff_is_the_relays_now_less_the_window() {
        // The relay runs an hour ahead; a 2-day window.
        let hour = 3_600_000;
        let window = Window::learnt(2, WallTime(10 * DAY_MS + hour), WallTime(10 * DAY_MS));
        assert_eq!(window.relay_ahead_ms, hour);
        assert_eq!(
            window.cutoff(WallTime(20 * DAY_MS)),
            WallTime(18 * DAY_MS + hour)
        );
        assert!(!window.differs(&Window::learnt(2, WallTime(hour + 500), WallTime(0))));
        assert!(window.differs(&Window::learnt(2, WallTime(0), WallTime(0))));
        assert!(window.differs(&Window::learnt(3, WallTime(hour), WallTime(0))));
    }
}
