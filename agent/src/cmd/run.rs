//! `cloud3 run`: keep the folder in sync until SIGINT/SIGTERM.

use std::path::Path;

use super::Folder;
use crate::daemon;
use crate::error::AgentError;

/// Runs the daemon in the foreground.
pub(crate) fn run(dir: &Path) -> Result<(), AgentError> {
    let folder = Folder::open(dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| AgentError::Protocol(format!("cannot start the async runtime: {e}")))?;
    tracing::info!(dir = %dir.display(), relay = %folder.config.relay, "syncing");
    runtime.block_on(daemon::run(folder))
}
