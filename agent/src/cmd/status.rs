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
    if status.relay_storage_full {
        println!("relay storage full: uploads wait until the relay has room (retrying)");
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
    if let Some(error) = &status.last_error {
        println!("last error: {error}");
    }
    Ok(())
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
