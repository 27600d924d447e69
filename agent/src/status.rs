//! The folder's sync status, written to `.cloud3/status.json` by `run` and `sync` so that
//! `cloud3 status` can report it while the daemon holds the database.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use cloud3_engine::ids::DeviceId;
use cloud3_engine::wire::DeviceInfo;

use crate::error::AgentError;
use crate::state::StateDir;

/// What `cloud3 status` shows: the process and its connection, then one section per subject.
/// A new subject gets its own section struct (with `#[serde(default)]`, so a `status.json`
/// written before it still loads).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The process that wrote this.
    pub pid: u32,
    /// Whether it was connected to the relay.
    pub connected: bool,
    /// The last error, if the agent is retrying.
    pub last_error: Option<String>,
    /// The device has not yet once held everything the relay had of the folder, so it does not
    /// record local changes yet (it joins on its first complete exchange with the relay).
    #[serde(default)]
    pub waiting_to_join: bool,
    /// When changes last went each way (kept across restarts).
    #[serde(default)]
    pub sync: SyncTimes,
    /// What waits to be sent or written, and how far the transfer in progress is.
    #[serde(default)]
    pub pending: PendingWork,
    /// The account's other devices, by name (last-seen times kept across restarts).
    #[serde(default)]
    pub devices: Vec<PeerDevice>,
    /// Conflict copies in the folder, each with the file it is a copy of.
    #[serde(default)]
    pub conflicts: Vec<ConflictCopy>,

    // Safety rails: deletions held back and names this device cannot hold.
    /// Deletions the mass-delete guard holds back until `cloud3 confirm-deletes` (or until the
    /// files are put back).
    #[serde(default)]
    pub paused_deletes: usize,
    /// The first of them (at most [`PAUSED_EXAMPLES`]), folder-relative.
    #[serde(default)]
    pub paused_delete_paths: Vec<String>,
    /// Entries whose names another device cannot hold (case or normalisation twins, names
    /// Windows refuses), and entries this device keeps under a name of its own because its
    /// file system cannot hold both twins: `PATH: why` (at most [`NAME_EXAMPLES`]).
    #[serde(default)]
    pub name_clashes: Vec<String>,
    /// How many such entries there are in all.
    #[serde(default)]
    pub name_clashes_total: usize,

    // Full disks (issue 20).
    /// The relay refused this device's uploads because its storage is full: they wait, and
    /// the device tries again with back-off.
    #[serde(default)]
    pub relay_storage_full: bool,
    /// Files this device has no room for on its disk (not downloaded, retried when there is).
    #[serde(default)]
    pub no_room: Vec<NoRoom>,

    // Storage lifecycle (issue 17).
    /// The relay refused this device's uploads because the account's quota is full: local
    /// files are kept, uploads wait, and the device tries again with back-off (space freed by
    /// the relay's garbage collection counts at once).
    #[serde(default)]
    pub quota_full: bool,
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

/// When changes last went each way, Unix ms (`None`: never, as far as this device recorded).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncTimes {
    /// The relay last acknowledged changes this device sent.
    pub last_upload: Option<i64>,
    /// Changes from the relay were last applied here.
    pub last_download: Option<i64>,
    /// The folder and the relay last held the same document.
    pub last_in_sync: Option<i64>,
}

/// What waits to be sent or written.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingWork {
    /// Files whose chunks wait to be uploaded.
    pub upload_files: usize,
    /// Their chunks' bytes still to upload.
    pub upload_bytes: u64,
    /// Bytes uploaded so far in the upload in progress.
    pub uploaded_bytes: u64,
    /// Files waiting to be written locally (known while a download is in progress).
    pub download_files: usize,
    /// Their bytes.
    pub download_bytes: u64,
    /// Bytes received so far in the download in progress.
    pub downloaded_bytes: u64,
}

/// Another device of the account.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerDevice {
    /// Its short id.
    pub id: String,
    /// Its name (the short id until the relay has told its name).
    pub name: String,
    /// Whether it is connected to the relay now; `None` while this device is offline (unknown).
    pub online: Option<bool>,
    /// When this device last saw it connected, Unix ms (for one online now: since when);
    /// `None`: never seen.
    pub last_seen: Option<i64>,
}

/// A conflict copy and the file it is a copy of (folder-relative paths).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConflictCopy {
    /// The copy, `NAME (conflict from DEVICE DATE TIME).EXT`.
    pub copy: String,
    /// The file it was copied beside.
    pub original: String,
}

/// A file the folder's disk has no room for.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoRoom {
    /// The file's path in the folder.
    pub path: String,
    /// Its size.
    pub size: u64,
    /// Free space it lacks (beyond the reserve `min_free_mib` keeps).
    pub short_by: u64,
}

impl Status {
    /// The status a new daemon or `sync` starts from: what the last one recorded that outlives
    /// a process (sync times, devices and when they were last seen; whether they are online is
    /// unknown until the relay says).
    pub fn resumed(state: &StateDir) -> Status {
        let last = Status::load(state).unwrap_or_default();
        Status {
            pid: std::process::id(),
            sync: last.sync,
            devices: last
                .devices
                .into_iter()
                .map(|device| PeerDevice {
                    online: None,
                    ..device
                })
                .collect(),
            ..Status::default()
        }
    }

    /// The connection to the relay ended (at `now`): devices online until then were last seen
    /// now, and whether any is online is unknown until the relay says again.
    pub fn offline(&mut self, now: i64) {
        self.connected = false;
        for device in &mut self.devices {
            if device.online == Some(true) {
                device.last_seen = Some(now);
            }
            device.online = None;
        }
    }

    /// The relay listed the devices connected now (other than this one).
    pub fn presence(&mut self, online: &[DeviceId], now: i64) {
        for device in &mut self.devices {
            let is_online = online.iter().any(|id| id.short().to_string() == device.id);
            // Came online now, or was online until now (one still online keeps since when).
            if (device.online == Some(true)) != is_online {
                device.last_seen = Some(now);
            }
            device.online = Some(is_online);
        }
        for id in online {
            let short = id.short().to_string();
            if !self.devices.iter().any(|device| device.id == short) {
                self.devices.push(PeerDevice {
                    name: short.clone(),
                    id: short,
                    online: Some(true),
                    last_seen: Some(now),
                });
            }
        }
    }

    /// Whether some online device's name is not known yet (the relay's device list tells it).
    pub fn unnamed_devices(&self) -> bool {
        self.devices.iter().any(|device| device.name == device.id)
    }

    /// The relay's device list: names, and devices revoked or never seen online. `me` is this
    /// device's short id.
    pub fn device_list(&mut self, list: &[DeviceInfo], me: &str, now: i64) {
        let mut devices = Vec::new();
        for info in list.iter().filter(|info| info.revoked.is_none()) {
            let id = info.device.short().to_string();
            if id == me {
                continue;
            }
            let known = self.devices.iter().find(|device| device.id == id);
            let online = Some(info.online);
            let last_seen = match known {
                Some(known) if known.online == Some(true) && info.online => known.last_seen,
                Some(known) if known.online == Some(true) => Some(now),
                _ if info.online => Some(now),
                Some(known) => known.last_seen,
                None => None,
            };
            devices.push(PeerDevice {
                id,
                name: info.name.clone(),
                online,
                last_seen,
            });
        }
        self.devices = devices;
    }
}

/// How many entries with names another device cannot hold `status` names.
pub const NAME_EXAMPLES: usize = 100;

/// How many held deletions `status` names.
pub const PAUSED_EXAMPLES: usize = 20;

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

#[cfg(test)]
mod tests {
    use super::*;

    fn device(byte: u8) -> DeviceId {
        DeviceId([byte; 32])
    }

    #[test]
    fn a_status_file_from_before_the_sections_still_loads() {
        let old = r#"{"pid":7,"connected":false,"last_sync":1700000000000,"online":["AB"],
            "pending_uploads":0,"pending_upload_bytes":0,"pending_downloads":0,
            "pending_download_bytes":0,"conflicts":[],"last_error":null}"#;
        let status: Status = serde_json::from_str(old).unwrap();
        assert_eq!(status.pid, 7);
        assert_eq!(status.sync, SyncTimes::default());
        assert!(status.devices.is_empty());
    }

    #[test]
    fn the_sections_are_serialised_as_status_json_shows_them() {
        let status = Status {
            pid: 1,
            sync: SyncTimes {
                last_upload: Some(2),
                ..SyncTimes::default()
            },
            devices: vec![PeerDevice {
                id: "X".into(),
                name: "desk".into(),
                online: None,
                last_seen: Some(3),
            }],
            conflicts: vec![ConflictCopy {
                copy: "a (conflict from b 2024-10-27 134507).txt".into(),
                original: "a.txt".into(),
            }],
            ..Status::default()
        };
        assert_eq!(
            serde_json::to_string(&status).unwrap(),
            r#"{"pid":1,"connected":false,"last_error":null,"waiting_to_join":false,"#.to_owned()
                + r#""sync":{"last_upload":2,"last_download":null,"last_in_sync":null},"#
                + r#""pending":{"upload_files":0,"upload_bytes":0,"uploaded_bytes":0,"#
                + r#""download_files":0,"download_bytes":0,"downloaded_bytes":0},"#
                + r#""devices":[{"id":"X","name":"desk","online":null,"last_seen":3}],"#
                + r#""conflicts":[{"copy":"a (conflict from b 2024-10-27 134507).txt","#
                + r#""original":"a.txt"}],"paused_deletes":0,"paused_delete_paths":[],"#
                + r#""name_clashes":[],"name_clashes_total":0,"#
                + r#""relay_storage_full":false,"no_room":[],"quota_full":false,"#
                + r#""scan":{"files":[],"quarantined":[]}}"#
        );
    }

    #[test]
    fn devices_are_last_seen_when_they_leave_and_unknown_while_offline() {
        let (a, b) = (device(1), device(2));
        let mut status = Status::default();
        status.presence(&[a], 10);
        assert_eq!(status.devices.len(), 1);
        assert!(status.unnamed_devices(), "named once the relay lists it");
        let list = |online_a: bool| {
            [a, b, device(9)].map(|id| DeviceInfo {
                device: id,
                name: format!("dev{}", id.0[0]),
                enrolled: cloud3_engine::time::WallTime(0),
                enrolled_by: None,
                read_only: false,
                revoked: None,
                online: id == a && online_a,
            })
        };
        let me = device(9).short().to_string();
        status.device_list(&list(true), &me, 11);
        let seen = |s: &Status| {
            s.devices
                .iter()
                .map(|d| (d.name.clone(), d.online, d.last_seen))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            seen(&status),
            [
                ("dev1".into(), Some(true), Some(10)),
                ("dev2".into(), Some(false), None)
            ],
            "online since it came; this device itself is not listed"
        );
        assert!(!status.unnamed_devices());
        status.presence(&[], 20);
        assert_eq!(seen(&status)[0], ("dev1".into(), Some(false), Some(20)));
        status.presence(&[b], 30);
        status.offline(40);
        assert_eq!(
            seen(&status),
            [
                ("dev1".into(), None, Some(20)),
                ("dev2".into(), None, Some(40))
            ],
            "while offline: unknown, last seen when the link went"
        );
    }
}
