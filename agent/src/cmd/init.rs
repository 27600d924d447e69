//! `cloud3 init DIR --relay URL --user NAME (--invite CODE | --pair CODE)`: enrol this device.

use std::fs;
use std::path::Path;

use cloud3_engine::wire::AuthProof;

use super::block_on;
use crate::connection::Connection;
use crate::error::AgentError;
use crate::state::{Config, StateDir};

/// Creates the state directory and key, enrols with the relay, and writes the config. On failure
/// the state directory is removed again so the command can simply be retried.
pub(crate) fn run(
    dir: &Path,
    relay: &str,
    user: &str,
    code: Option<String>,
    device_name: Option<String>,
) -> Result<(), AgentError> {
    let code = code.ok_or_else(|| AgentError::Usage("give --invite or --pair".into()))?;
    if !relay.starts_with("ws://") && !relay.starts_with("wss://") {
        return Err(AgentError::Usage(format!(
            "relay URL must start with ws:// or wss://, got {relay:?}"
        )));
    }
    fs::create_dir_all(dir).map_err(|e| AgentError::io("create", dir, e))?;
    let state = StateDir::of(dir);
    if state.root().exists() {
        return Err(AgentError::AlreadyInitialised(dir.to_owned()));
    }
    let device_name = device_name.unwrap_or_else(host_name);
    let result = enrol(&state, relay, user, code, &device_name);
    if result.is_err() {
        let _ = fs::remove_dir_all(state.root());
    }
    let device = result?;
    println!("enrolled device {device_name} ({device}) for {user} at {relay}");
    println!(
        "run `cloud3 run --dir {}` to keep it in sync",
        dir.display()
    );
    Ok(())
}

fn enrol(
    state: &StateDir,
    relay: &str,
    user: &str,
    code: String,
    device_name: &str,
) -> Result<String, AgentError> {
    state.create()?;
    let key = state.create_key()?;
    let proof = AuthProof::Enrol {
        code,
        device_name: device_name.to_owned(),
    };
    let connection = block_on(Connection::open(relay, user, &key, proof))??;
    block_on(connection.close())?;
    state.save_config(&Config {
        relay: relay.to_owned(),
        user: user.to_owned(),
        device_name: device_name.to_owned(),
        folder: cloud3_engine::ids::FolderId::DEFAULT.to_owned(),
        rescan_interval_ms: 60_000,
        debounce_ms: 30,
    })?;
    Ok(key.device_id().short().to_string())
}

fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "device".to_owned())
}
