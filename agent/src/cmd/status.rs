//! `cloud3 status [--json]`: whether the folder is in sync.

use std::path::Path;

use super::Folder;
use crate::error::AgentError;
use crate::status::Status;

/// Prints the status the daemon (or the last `sync`) recorded.
pub(crate) fn run(dir: &Path, json: bool) -> Result<(), AgentError> {
    let folder = Folder::open(dir)?;
    let mut status = Status::load(&folder.state).unwrap_or_default();
    let running = status.writer_alive();
    if !running {
        status.connected = false;
    }
    if json {
        let mut value = serde_json::to_value(&status).unwrap_or_default();
        value["daemon_running"] = serde_json::Value::Bool(running);
        value["relay"] = serde_json::Value::String(folder.config.relay.clone());
        value["device"] = serde_json::Value::String(folder.key.device_id().short().to_string());
        println!("{value}");
        return Ok(());
    }
    println!("folder:   {}", dir.display());
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
    if let Some(error) = &status.last_error {
        println!("last error: {error}");
    }
    Ok(())
}

fn format_time(ms: i64) -> String {
    let (y, mo, d, h, mi, s) = cloud3_engine::time::WallTime(ms).to_utc_parts();
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}
