//! `cloud3 history PATH` and `cloud3 restore PATH [--version V]`: a file's versions, and bringing
//! one back (or undeleting the file). With the daemon running they ask it (see `control`): the
//! daemon sends a restore to the relay at once, like any edit. Without it they read and change
//! the local document directly (so they work offline), and a restore then syncs once. Only
//! versions inside the relay's retention window are listed (see [`crate::versions`]).

use std::path::Path;

use cloud3_engine::time::WallTime;

use super::{Folder, block_on, held_elsewhere};
use crate::control::{self, Reply, Request};
use crate::daemon;
use crate::error::AgentError;
use crate::syncer::Syncer;
use crate::versions::{self, History, format_time, window_text};

/// Prints the versions of PATH, oldest first, numbered for `restore --version`.
pub(crate) fn run(dir: &Path, typed: &str) -> Result<(), AgentError> {
    let folder = Folder::open(dir)?;
    let path = &folder.relative(typed)?;
    let request = Request::History {
        path: path.to_owned(),
    };
    let history = match control::ask(&folder.state, &request)? {
        Some(Reply::History { history }) => history,
        Some(other) => return Err(control::unexpected(&other)),
        None => versions::history(&mut open(&folder)?, path)?,
    };
    print(path, &history);
    Ok(())
}

fn print(path: &str, history: &History) {
    let cutoff = history.cutoff.map(|c| format_time(WallTime(c)));
    let window = window_text(history.window_days);
    if history.dropped > 0
        && let Some(cutoff) = &cutoff
    {
        let (count, were) = match history.dropped {
            1 => ("1 older version".to_owned(), "was"),
            n => (format!("{n} older versions"), "were"),
        };
        println!("({count} {were} dropped: replaced before {cutoff}, {window})");
    }
    for version in &history.versions {
        println!(
            "{:>3}  {}  {:>12} bytes  by {}  {}",
            version.number,
            format_time(WallTime(version.written_at)),
            version.size,
            version.author,
            &version.hash[..12.min(version.hash.len())],
        );
    }
    if history.deleted {
        match (&cutoff, history.versions.is_empty()) {
            (Some(cutoff), true) => println!(
                "(deleted before {cutoff}, {window}: its content was dropped and cannot be \
                 restored)"
            ),
            _ => println!("(deleted; `cloud3 restore {path}` brings it back)"),
        }
    }
    if history.window_days.is_none() && (history.versions.len() > 1 || history.deleted) {
        println!(
            "(this device has not yet learnt the relay's retention window: it does on its next \
             connection; until then older versions listed may no longer be restorable)"
        );
    }
}

/// Restores PATH: undeletes it, and with `--version` puts that version's content back.
pub(crate) fn restore(dir: &Path, typed: &str, version: Option<usize>) -> Result<(), AgentError> {
    let folder = Folder::open(dir)?;
    let path = &folder.relative(typed)?;
    let request = Request::Restore {
        path: path.to_owned(),
        version,
    };
    match control::ask(&folder.state, &request)? {
        Some(Reply::Restored { synced: true }) => {
            println!("restored {path}");
            return Ok(());
        }
        Some(Reply::Restored { synced: false }) => {
            println!(
                "recorded the restore of {path}; the daemon syncs it (and fetches bytes this \
                 device lacks) when the relay is reachable"
            );
            return Ok(());
        }
        Some(other) => return Err(control::unexpected(&other)),
        None => versions::restore(&mut open(&folder)?, path, version)?,
    }
    // Bring the disk (and the relay) up to date now if the relay is reachable.
    match block_on(daemon::sync_once(folder))? {
        Ok(_) => println!("restored {path}"),
        Err(error) => {
            println!("restored {path} locally; it syncs when the relay is reachable ({error})")
        }
    }
    Ok(())
}

fn open(folder: &Folder) -> Result<Syncer, AgentError> {
    Syncer::open(&folder.root, folder.config.clone(), folder.key.device_id())
        .map_err(|error| held_elsewhere(error, &folder.state))
}
