//! `cloud3 sync`: one exchange with the relay, then exit.

use std::path::Path;

use super::{Folder, block_on};
use crate::daemon;
use crate::error::AgentError;

/// Scans, uploads, downloads and materialises until the folder and the relay agree.
pub(crate) fn run(dir: &Path) -> Result<(), AgentError> {
    let folder = Folder::open(dir)?;
    let status = block_on(daemon::sync_once(folder))??;
    if !status.conflicts.is_empty() {
        println!("{} conflict copies in the folder", status.conflicts.len());
    }
    println!("in sync");
    Ok(())
}
