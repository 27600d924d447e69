//! `cloud3 status [--json]`: whether the folder is in sync. A running daemon answers with live
//! figures (see `control`), including what it is transferring now; without one, the status the
//! last daemon or `sync` wrote to `.cloud3/status.json`.

use std::path::Path;

use super::Folder;
use crate::activity::{Transfer, Transfers};
use crate::control::{self, Reply, Request};
use crate::error::AgentError;
use crate::status::Status;

/// Prints the live status, or the one the last daemon (or `sync`) recorded.
pub(crate) fn run(dir: &Path, json: bool) -> Result<(), AgentError> {
    let folder = Folder::open(dir)?;
    let (mut status, transfers, live) = match control::ask(&folder.state, &Request::Status)? {
        Some(Reply::Status { status, transfers }) => (*status, Some(transfers), true),
        Some(other) => return Err(control::unexpected(&other)),
        None => (Status::load(&folder.state).unwrap_or_default(), None, false),
    };
    let running = live || status.writer_alive();
    if !running {
        status.connected = false;
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
    match status.last_sync {
        Some(ms) => println!("synced:   {}", format_time(ms)),
        None => println!("synced:   never"),
    }
    if status.waiting_to_join {
        println!(
            "joining:  not yet: local files are recorded once this device has reached the relay"
        );
    }
    println!(
        "pending:  {} uploads ({} bytes), {} downloads ({} bytes)",
        status.pending_uploads,
        status.pending_upload_bytes,
        status.pending_downloads,
        status.pending_download_bytes
    );
    if let Some(transfers) = &transfers {
        print_transfers(transfers);
    }
    println!(
        "online:   {}",
        if status.online.is_empty() {
            "no other device".to_owned()
        } else {
            status.online.join(", ")
        }
    );
    if !status.conflicts.is_empty() {
        println!("conflicts:");
        for path in &status.conflicts {
            println!("  {path}");
        }
    }
    print_scan(&status.scan);
    if let Some(error) = &status.last_error {
        println!("last error: {error}");
    }
    Ok(())
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

fn print_transfers(transfers: &Transfers) {
    let list = |files: &[Transfer]| {
        files
            .iter()
            .take(5)
            .map(|f| format!("{} ({} bytes)", f.path, f.size))
            .chain((files.len() > 5).then(|| format!("and {} more", files.len() - 5)))
            .collect::<Vec<_>>()
            .join(", ")
    };
    if !transfers.uploading.is_empty() {
        println!(
            "sending:  {} ({} bytes sent so far)",
            list(&transfers.uploading),
            transfers.uploaded_bytes
        );
    }
    if !transfers.downloading.is_empty() {
        println!(
            "fetching: {} ({} bytes received so far)",
            list(&transfers.downloading),
            transfers.downloaded_bytes
        );
    }
}

fn format_time(ms: i64) -> String {
    let (y, mo, d, h, mi, s) = cloud3_engine::time::WallTime(ms).to_utc_parts();
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}
