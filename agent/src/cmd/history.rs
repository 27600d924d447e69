//! `cloud3 history PATH` and `cloud3 restore PATH [--version V]`: a file's versions, and bringing
//! one back (or undeleting the file). Both read the local document, so they work offline; they
//! need the daemon stopped (it holds the database).

use std::path::Path;

use cloud3_engine::time::WallTime;

use super::{Folder, block_on};
use crate::daemon;
use crate::error::AgentError;
use crate::syncer::{Syncer, wall_now};

/// Prints the versions of PATH, oldest first, numbered for `restore --version`.
pub(crate) fn run(dir: &Path, path: &str) -> Result<(), AgentError> {
    let folder = Folder::open(dir)?;
    let mut syncer = open(dir, &folder)?;
    let (node, deleted) = syncer
        .doc
        .find_path(path)
        .ok_or_else(|| AgentError::Usage(format!("{path} is not in the folder's history")))?;
    let versions = syncer.doc.node_history(node);
    for (number, version) in versions.iter().enumerate() {
        let author = syncer.doc.device_name(version.content.author);
        println!(
            "{number:>3}  {}  {:>12} bytes  by {author}  {}",
            format_time(version.content.written_at),
            version.content.size,
            &version.content.hash().to_hex()[..12],
        );
    }
    if deleted {
        println!("(deleted; `cloud3 restore {path}` brings it back)");
    }
    Ok(())
}

/// Restores PATH: undeletes it, and with `--version` puts that version's content back.
pub(crate) fn restore(dir: &Path, path: &str, version: Option<usize>) -> Result<(), AgentError> {
    let folder = Folder::open(dir)?;
    {
        let mut syncer = open(dir, &folder)?;
        let (node, deleted) = syncer
            .doc
            .find_path(path)
            .ok_or_else(|| AgentError::Usage(format!("{path} is not in the folder's history")))?;
        let versions = syncer.doc.node_history(node);
        let chosen = match version {
            Some(number) => Some(versions.get(number).ok_or_else(|| {
                AgentError::Usage(format!(
                    "{path} has versions 0 to {}",
                    versions.len().saturating_sub(1)
                ))
            })?),
            None => None,
        };
        if deleted {
            syncer.doc.restore(node).map_err(doc_error)?;
        }
        if let Some(chosen) = chosen {
            let mut content = chosen.content.clone();
            content.written_at = wall_now();
            content.author = syncer.short();
            syncer.doc.set_content(node, content).map_err(doc_error)?;
        }
        syncer.commit_batch(Default::default(), true)?;
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

fn open(dir: &Path, folder: &Folder) -> Result<Syncer, AgentError> {
    Syncer::open(dir, folder.config.clone(), folder.key.device_id()).map_err(|error| match error {
        AgentError::Database { message, .. }
            if message.contains("already open") || message.contains("lock") =>
        {
            AgentError::Usage("the daemon is running for this folder: stop it first".into())
        }
        other => other,
    })
}

fn doc_error(error: impl std::fmt::Display) -> AgentError {
    AgentError::Protocol(format!("folder document: {error}"))
}

fn format_time(time: WallTime) -> String {
    let (y, mo, d, h, mi, s) = time.to_utc_parts();
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}")
}
