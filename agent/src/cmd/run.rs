//! `cloud3 run`: keep the folder in sync until SIGINT/SIGTERM.

use std::path::Path;

use super::{Folder, held_elsewhere};
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
    tracing::info!(dir = %folder.root.display(), relay = %folder.config.relay, "syncing");
    let state = folder.state.clone();
    runtime
        .block_on(daemon::run(folder))
        .map_err(|error| held_elsewhere(error, &state))
}
