//! One file per subcommand; [`run`] dispatches.

mod devices;
mod history;
mod init;
mod pair;
mod revoke;
mod run;
mod status;
mod sync;

use std::path::Path;

use cloud3_engine::auth::DeviceKey;
use cloud3_engine::wire::AuthProof;

use crate::cli::{Cli, Command};
use crate::connection::Connection;
use crate::error::AgentError;
use crate::state::{Config, StateDir};

/// Runs one command to completion.
pub fn run(cli: Cli) -> Result<(), AgentError> {
    match cli.command {
        Command::Init {
            dir,
            relay,
            user,
            invite,
            pair,
            device_name,
            ca,
        } => init::run(
            &dir,
            &relay,
            &user,
            invite.or(pair),
            device_name,
            ca.as_deref(),
        ),
        Command::Pair { dir, read_only } => pair::run(&dir.dir, read_only),
        Command::Devices { dir } => devices::run(&dir.dir),
        Command::Revoke { device, dir } => revoke::run(&dir.dir, &device),
        Command::Run { dir } => run::run(&dir.dir),
        Command::Sync { dir } => sync::run(&dir.dir),
        Command::Status { dir, json } => status::run(&dir.dir, json),
        Command::History { path, dir } => history::run(&dir.dir, &path),
        Command::Restore { path, version, dir } => history::restore(&dir.dir, &path, version),
    }
}

/// An initialised folder's config and key.
pub struct Folder {
    pub state: StateDir,
    pub config: Config,
    pub key: DeviceKey,
}

impl Folder {
    /// Opens the folder at `dir`, or explains that it is not initialised.
    pub fn open(dir: &Path) -> Result<Folder, AgentError> {
        // Absolute, as the watcher reports paths: with a relative `--dir` other than `.`, every
        // event fell outside the folder and only the periodic rescan saw changes.
        let absolute = std::path::absolute(dir).map_err(|e| AgentError::io("resolve", dir, e))?;
        let state = StateDir::of(&absolute);
        if !state.exists() {
            return Err(AgentError::NotInitialised(dir.to_owned()));
        }
        Ok(Folder {
            config: state.load_config()?,
            key: state.load_key()?,
            state,
        })
    }

    /// An authenticated connection to the folder's relay.
    pub async fn connect(&self) -> Result<Connection, AgentError> {
        Connection::open(
            &self.config.relay,
            self.state.ca_path(&self.config).as_deref(),
            &self.config.user,
            &self.key,
            AuthProof::Device,
        )
        .await
    }
}

/// A single-threaded runtime for short request/response commands.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> Result<F::Output, AgentError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| AgentError::Protocol(format!("cannot start the async runtime: {e}")))?;
    Ok(runtime.block_on(future))
}
