//! A file's versions as `cloud3 history` lists them, and restoring one (or undeleting the file)
//! in the local document. Shared by the direct commands and the daemon's control channel, so
//! both answer the same way.

use serde::{Deserialize, Serialize};

use crate::error::AgentError;
use crate::syncer::{Syncer, wall_now};

/// One version of a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    /// When it was written (Unix ms).
    pub written_at: i64,
    /// Its size in bytes.
    pub size: u64,
    /// The name of the device that wrote it.
    pub author: String,
    /// Its content hash, hex.
    pub hash: String,
}

/// The versions of a file, oldest first (numbered from 0 for `restore --version`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    /// The versions.
    pub versions: Vec<Version>,
    /// Whether the file is deleted now.
    pub deleted: bool,
}

/// The versions of `path` in the local document.
pub fn history(syncer: &mut Syncer, path: &str) -> Result<History, AgentError> {
    let (node, deleted) = syncer
        .doc
        .find_path(path)
        .ok_or_else(|| not_in_history(path))?;
    let versions = syncer
        .doc
        .node_history(node)
        .into_iter()
        .map(|version| Version {
            written_at: version.content.written_at.0,
            size: version.content.size,
            author: syncer.doc.device_name(version.content.author),
            hash: version.content.hash().to_hex(),
        })
        .collect::<Vec<_>>();
    if versions.is_empty() {
        // Only directories have no content versions.
        return Err(AgentError::Usage(format!(
            "{path} is a directory: `cloud3 history` lists the versions of a file; give a file \
             inside it"
        )));
    }
    Ok(History { versions, deleted })
}

/// Undeletes `path` and, with `version`, makes that version its content again; commits the
/// change to the local document (syncing it is the caller's part).
pub fn restore(syncer: &mut Syncer, path: &str, version: Option<usize>) -> Result<(), AgentError> {
    let (node, deleted) = syncer
        .doc
        .find_path(path)
        .ok_or_else(|| not_in_history(path))?;
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
    syncer.commit_batch(Default::default(), true)
}

fn not_in_history(path: &str) -> AgentError {
    AgentError::Usage(format!("{path} is not in the folder's history"))
}

fn doc_error(error: impl std::fmt::Display) -> AgentError {
    AgentError::Protocol(format!("folder document: {error}"))
}
