//! One file per subcommand; [`run`] dispatches.

mod confirm_deletes;
mod devices;
mod history;
mod init;
mod pair;
mod quarantine;
mod revoke;
mod run;
mod status;
mod sync;

use std::path::{Component, Path, PathBuf};

use cloud3_engine::auth::DeviceKey;
use cloud3_engine::wire::AuthProof;

use crate::cli::{Cli, Command};
use crate::connection::Connection;
use crate::control;
use crate::error::AgentError;
use crate::state::{Config, StateDir};
use crate::status::Status;

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
        Command::Quarantine { action } => quarantine::run(action),
        Command::ConfirmDeletes { undo, dir } => confirm_deletes::run(&dir.dir, undo),
    }
}

/// An initialised folder's config and key.
pub struct Folder {
    /// The synced folder's root: the directory holding `.cloud3/`.
    pub root: PathBuf,
    pub state: StateDir,
    pub config: Config,
    pub key: DeviceKey,
}

impl Folder {
    /// Opens the folder that holds `dir`: `dir` itself or its nearest ancestor with a
    /// `.cloud3/` (as git finds its repository), or explains that there is none.
    pub fn open(dir: &Path) -> Result<Folder, AgentError> {
        // Absolute, as the watcher reports paths: with a relative `--dir` other than `.`, every
        // event fell outside the folder and only the periodic rescan saw changes.
        let absolute = std::path::absolute(dir).map_err(|e| AgentError::io("resolve", dir, e))?;
        let absolute = normalise(&absolute);
        let root = absolute
            .ancestors()
            .find(|candidate| StateDir::of(candidate).exists())
            .ok_or_else(|| AgentError::NotInitialised(dir.to_owned()))?
            .to_owned();
        let state = StateDir::of(&root);
        Ok(Folder {
            config: state.load_config()?,
            key: state.load_key()?,
            state,
            root,
        })
    }

    /// The folder-relative form of PATH as typed: absolute paths must lie inside the folder;
    /// relative ones are taken from the current directory when it is inside the folder, else
    /// from the folder's root (as with `--dir` from elsewhere).
    pub fn relative(&self, typed: &str) -> Result<String, AgentError> {
        let path = Path::new(typed);
        let cwd = std::env::current_dir().ok();
        let base = match &cwd {
            Some(cwd) if self.inside(cwd).is_some() => cwd.clone(),
            _ => self.root.clone(),
        };
        let joined = normalise(&base.join(path));
        let relative = self.inside(&joined).ok_or_else(|| {
            AgentError::Usage(format!(
                "{typed} is outside the folder {}",
                self.root.display()
            ))
        })?;
        let relative = relative
            .to_str()
            .ok_or_else(|| AgentError::Usage(format!("{typed} is not valid UTF-8")))?
            .to_owned();
        if relative.is_empty() {
            return Err(AgentError::Usage(format!(
                "{typed} is the folder itself: give a file inside it"
            )));
        }
        Ok(relative)
    }

    /// `path` relative to the root, if it lies inside (as written or with symlinks resolved,
    /// since the current directory comes resolved).
    fn inside(&self, path: &Path) -> Option<PathBuf> {
        if let Ok(rest) = path.strip_prefix(&self.root) {
            return Some(rest.to_owned());
        }
        let canonical = std::fs::canonicalize(&self.root).ok()?;
        path.strip_prefix(&canonical).ok().map(Path::to_owned)
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

/// `error`, or for the database lock that another process holds, a message naming that process
/// (its pid, from its control socket or its `status.json`) instead of redb's own words.
pub(crate) fn held_elsewhere(error: AgentError, state: &StateDir) -> AgentError {
    match error {
        AgentError::Database { message, .. }
            if message.contains("already open") || message.contains("lock") =>
        {
            let live = match control::ask(state, &control::Request::Status) {
                Ok(Some(control::Reply::Status { status, .. })) => Some(status.pid),
                _ => None,
            };
            let pid = live.or_else(|| {
                Status::load(state)
                    .filter(Status::writer_alive)
                    .map(|status| status.pid)
            });
            let holder = match pid {
                Some(pid) => format!("a cloud3 daemon (pid {pid})"),
                None => "another cloud3 process (`cloud3 run` or `cloud3 sync`)".to_owned(),
            };
            AgentError::Usage(format!(
                "{holder} is already running on {}; stop it first, or use `cloud3 status` to \
                 see what it does",
                state.root().parent().unwrap_or(state.root()).display()
            ))
        }
        other => other,
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

/// `path` with `.` and `..` resolved by name (the file may not exist: a deleted one is restored).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
