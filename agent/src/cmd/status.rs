//! `cloud3 status [--json]`: whether the folder is in sync. A running daemon answers with live
//! figures (see `control`), including what it is transferring now; without one, the status the
//! last daemon or `sync` wrote to `.cloud3/status.json`.

use std::path::Path;

use indicatif::HumanBytes;

use super::Folder;
use crate::activity::{Transfer, Transfers};
use crate::control::{self, Reply, Request};
use crate::error::AgentError;
use crate::status::{PendingWork, Status};

/// Prints the live status, or the one the last daemon (or `sync`) recorded.
pub(crate) fn run(dir: &Path, json: bool) -> Result<(), AgentError> {
    let folder = Folder::open(dir)?;
    let (mut status, transfers, live) = match control::ask(&folder.state, &Request::Status)? {
        Some(Reply::Status { status, transfers }) => (*status, Some(transfers), true),
        Some(other) => return Err(control::unexpected(&other)),
        None => (Status::load(&folder.state).unwrap_or_default(), None, false),
    };
    let running = live || status.writer_alive();
    if !running || !status.connected {
        // Whatever a stopped (or killed) daemon last heard of other devices is not news.
        status.connected = running && status.connected;
        for device in &mut status.devices {
            device.online = None;
        }
    }
    if json {
        let mut value = serde_json::to_value(&status).unwrap_or_default();
        value["daemon_running"] = serde_json::Value::Bool(running);
        value["source"] = serde_json::Value::String(if live { "daemon" } else { "file" }.into());
        if let Some(transfers) = &transfers {
            value["transfers"] = serde_json::to_value(transfers).unwrap_or_default();
        }
        value["relay"] = serde_json::Value::String(folder.config.relay.clone());
        value["device"] = serde_json::Value::String(folder.key.device_id().short().to_string());
        println!("{value}");
        return Ok(());
    }
    println!("folder:   {}", folder.root.display());
    println!(
        "relay:    {} as {}",
        folder.config.relay, folder.config.user
    );
    println!(
        "device:   {} ({})",
        folder.config.device_name,
        folder.key.device_id().short()
    );
    let state = match (running, status.connected) {
        (true, true) => "running, connected",
        (true, false) => "running, offline (retrying)",
        (false, _) => "not running",
    };
    println!("daemon:   {state}");
    let times = &status.sync;
    println!("sent:     {}", when(times.last_upload));
    println!("received: {}", when(times.last_download));
    println!("in sync:  {}", when(times.last_in_sync));
    if status.waiting_to_join {
        println!(
            "joining:  not yet: local files are recorded once this device has reached the relay"
        );
    }
    println!("pending:  {}", pending(&status.pending));
    if let Some(transfers) = &transfers {
        print_transfers(transfers);
    }
    print_devices(&status);
    if !status.conflicts.is_empty() {
        println!("conflicts:");
        for conflict in &status.conflicts {
            println!("  {}  (a copy of {})", conflict.copy, conflict.original);
        }
    }
    if status.relay_storage_full {
        println!("relay storage full: uploads wait until the relay has room (retrying)");
    }
    if status.quota_full {
        println!(
            "storage quota full: uploads wait until old versions are collected or the quota is raised (retrying); local files are kept"
        );
    }
    if !status.no_room.is_empty() {
        println!("no room on this disk for:");
        for file in &status.no_room {
            println!(
                "  {} ({} bytes): needs {} more bytes free",
                file.path, file.size, file.short_by
            );
        }
    }
    print_safety(&status);
    print_scan(&status.scan);
    if let Some(error) = &status.last_error {
        println!("last error: {error}");
    }
    Ok(())
}

fn when(time: Option<i64>) -> String {
    time.map_or_else(|| "never".to_owned(), format_time)
}

fn files(n: usize) -> String {
    format!("{n} file{}", if n == 1 { "" } else { "s" })
}

/// `nothing to send or fetch`, or what is left each way with the progress of the transfer in
/// progress.
fn pending(work: &PendingWork) -> String {
    let mut parts = Vec::new();
    if work.upload_files > 0 || work.upload_bytes > 0 {
        let mut part = format!(
            "to send {} ({})",
            files(work.upload_files),
            HumanBytes(work.upload_bytes)
        );
        if work.uploaded_bytes > 0 {
            part += &format!(", {} sent so far", HumanBytes(work.uploaded_bytes));
        }
        parts.push(part);
    }
    if work.download_files > 0 {
        let mut part = format!(
            "to fetch {} ({})",
            files(work.download_files),
            HumanBytes(work.download_bytes)
        );
        if work.downloaded_bytes > 0 {
            part += &format!(", {} received so far", HumanBytes(work.downloaded_bytes));
        }
        parts.push(part);
    }
    if parts.is_empty() {
        "nothing to send or fetch".to_owned()
    } else {
        parts.join("; ")
    }
}

fn print_devices(status: &Status) {
    if status.devices.is_empty() {
        println!("devices:  no other device");
        return;
    }
    let offline = status.devices.iter().all(|device| device.online.is_none());
    if offline {
        println!("devices:  unknown while offline; last seen from here:");
    } else {
        println!("devices:");
    }
    for device in &status.devices {
        let seen = match (device.online, device.last_seen) {
            (Some(true), Some(since)) => format!("online since {}", format_time(since)),
            (Some(true), None) => "online".to_owned(),
            (_, Some(seen)) => format!("last seen {}", format_time(seen)),
            (_, None) => "not seen from this device".to_owned(),
        };
        println!("  {} ({}): {seen}", device.name, device.id);
    }
}

/// The safety rails' section: deletions held back, names that clash.
fn print_safety(status: &Status) {
    if status.paused_deletes > 0 {
        println!(
            "deletions paused: {} entries vanished from this folder at once; nothing was deleted \
             elsewhere. `cloud3 confirm-deletes` sends the deletions; `cloud3 confirm-deletes \
             --undo` (or putting the files back) cancels them:",
            status.paused_deletes
        );
        for path in &status.paused_delete_paths {
            println!("  {path}");
        }
        let more = status.paused_deletes - status.paused_delete_paths.len();
        if more > 0 {
            println!("  and {more} more");
        }
    }
    if !status.name_clashes.is_empty() {
        println!("names another device cannot hold as they are:");
        for note in &status.name_clashes {
            println!("  {note}");
        }
        let more = status
            .name_clashes_total
            .saturating_sub(status.name_clashes.len());
        if more > 0 {
            println!("  and {more} more");
        }
    }
}

fn print_transfers(transfers: &Transfers) {
    let list = |files: &[Transfer]| {
        files
            .iter()
            .take(5)
            .map(|f| format!("{} ({})", f.path, HumanBytes(f.size)))
            .chain((files.len() > 5).then(|| format!("and {} more", files.len() - 5)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !transfers.uploading.is_empty() {
        println!("sending:  {}", list(&transfers.uploading));
    }
    if !transfers.downloading.is_empty() {
        println!("fetching: {}", list(&transfers.downloading));
    }
}

fn format_time(ms: i64) -> String {
    let (y, mo, d, h, mi, s) = cloud3_engine::time::WallTime(ms).to_utc_parts();
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// The relay's malware scan: each file's verdict, and what waits in quarantine.
fn print_scan(scan: &crate::status::ScanStatus) {
    for note in &scan.files {
        let why = match (note.engine.is_some(), note.refused) {
            (true, _) => "flagged by the relay's scan: not fetched",
            (false, true) => "held by the relay until scanned clean",
            (false, false) => "not scanned by the relay",
        };
        println!("scan:     {}: {} ({why})", note.path, note.verdict);
    }
    for file in &scan.quarantined {
        println!(
            "quarantined: {} (engine {}, signature {}) in {}; `cloud3 quarantine restore {}` puts it back",
            file.path, file.engine, file.signature, file.stored, file.path
        );
    }
}
