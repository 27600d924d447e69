//! `cloud3 sync`: one exchange with the relay, then exit. With the daemon running, it asks the
//! daemon to scan now and answers once the daemon and the relay agree.

use std::path::Path;

use super::{Folder, block_on, held_elsewhere};
use crate::control::{self, Reply, Request};
use crate::daemon;
use crate::error::AgentError;

/// Scans, uploads, downloads and materialises until the folder and the relay agree.
pub(crate) fn run(dir: &Path) -> Result<(), AgentError> {
    let folder = Folder::open(dir)?;
    match control::ask(&folder.state, &Request::Sync)? {
        Some(Reply::Synced) => {
            println!("in sync");
            return Ok(());
        }
        Some(other) => return Err(control::unexpected(&other)),
        None => {}
    }
    let state = folder.state.clone();
    let status =
        block_on(daemon::sync_once(folder))?.map_err(|error| held_elsewhere(error, &state))?;
    if !status.conflicts.is_empty() {
        println!("{} conflict copies in the folder", status.conflicts.len());
    }
    if status.paused_deletes > 0 {
        println!(
            "{} deletions paused (see `cloud3 status`; `cloud3 confirm-deletes` sends them)",
            status.paused_deletes
        );
    }
    for file in &status.no_room {
        eprintln!(
            "no room on this disk for {} ({} bytes): needs {} more bytes free",
            file.path, file.size, file.short_by
        );
    }
    println!("in sync");
    Ok(())
}
