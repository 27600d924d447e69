//! `cloud3 confirm-deletes`: send the deletions the mass-delete guard holds back (see
//! `cloud3_engine::guard`). With the daemon running it asks the daemon (see `control`), which
//! records and sends them at once; without it, it records them in the local document and then
//! syncs once.

use std::path::Path;

use super::{Folder, block_on, held_elsewhere};
use crate::control::{self, Reply, Request};
use crate::daemon;
use crate::error::AgentError;
use crate::syncer::Syncer;

/// Records the held deletions (whatever is missing from the folder now) and sends them.
pub(crate) fn run(dir: &Path) -> Result<(), AgentError> {
    let folder = Folder::open(dir)?;
    match control::ask(&folder.state, &Request::ConfirmDeletes)? {
        Some(Reply::DeletesConfirmed { count, synced }) => {
            print_outcome(count, synced);
            return Ok(());
        }
        Some(other) => return Err(control::unexpected(&other)),
        None => {}
    }
    let count = {
        let mut syncer = Syncer::open(&folder.root, folder.config.clone(), folder.key.device_id())
            .map_err(|error| held_elsewhere(error, &folder.state))?;
        syncer.confirm_deletes = true;
        syncer.scan(&Default::default())?;
        syncer.last_scan_deletes
    };
    if count == 0 {
        print_outcome(count, true);
        return Ok(());
    }
    match block_on(daemon::sync_once(folder))? {
        Ok(_) => print_outcome(count, true),
        Err(error) => {
            print_outcome(count, false);
            eprintln!("not sent yet: {error}");
        }
    }
    Ok(())
}

fn print_outcome(count: usize, synced: bool) {
    match (count, synced) {
        (0, _) => println!("no deletions were waiting"),
        (count, true) => println!("sent {count} deletions; other devices apply them as they sync"),
        (count, false) => {
            println!("recorded {count} deletions; they are sent when the relay is reachable")
        }
    }
}
