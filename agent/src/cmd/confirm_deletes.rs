//! `cloud3 confirm-deletes [--undo]`: send the deletions the mass-delete guard holds back (see
//! `cloud3_engine::guard`), or with `--undo` bring the entries back instead. With the daemon
//! running it asks the daemon (see `control`), which acts at once; without it, it records the
//! change in the local state and then syncs once.

use std::path::Path;

use super::{Folder, block_on, held_elsewhere};
use crate::control::{self, Reply, Request};
use crate::daemon;
use crate::error::AgentError;
use crate::syncer::Syncer;

/// Records the held deletions (whatever is missing from the folder now) and sends them, or with
/// `undo` writes the held entries back.
pub(crate) fn run(dir: &Path, undo: bool) -> Result<(), AgentError> {
    let folder = Folder::open(dir)?;
    if undo {
        return run_undo(folder);
    }
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

fn run_undo(folder: Folder) -> Result<(), AgentError> {
    match control::ask(&folder.state, &Request::UndoDeletes)? {
        Some(Reply::DeletesUndone { count, synced }) => {
            print_undone(count, synced);
            return Ok(());
        }
        Some(other) => return Err(control::unexpected(&other)),
        None => {}
    }
    let count = {
        let mut syncer = Syncer::open(&folder.root, folder.config.clone(), folder.key.device_id())
            .map_err(|error| held_elsewhere(error, &folder.state))?;
        syncer.undo_deletes()?
    };
    if count == 0 {
        print_undone(count, true);
        return Ok(());
    }
    match block_on(daemon::sync_once(folder))? {
        Ok(_) => print_undone(count, true),
        Err(error) => {
            print_undone(count, false);
            eprintln!("not written yet: {error}");
        }
    }
    Ok(())
}

fn print_undone(count: usize, synced: bool) {
    match (count, synced) {
        (0, _) => println!("no deletions were waiting"),
        (count, true) => println!("brought back {count} entries; nothing was deleted"),
        (count, false) => {
            println!("{count} entries come back once the relay is reachable; nothing was deleted")
        }
    }
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
