//! `cloud3 init DIR --relay URL --user NAME (--invite CODE | --pair CODE) [--ca FILE]`: enrol
//! this device.

use std::fs;
use std::path::{Path, PathBuf};

use cloud3_engine::guard::DeleteGuard;
use cloud3_engine::wire::AuthProof;

use super::block_on;
use crate::connection::Connection;
use crate::error::AgentError;
use crate::state::{Config, StateDir};

/// Creates the state directory and key, enrols with the relay, and writes the config. On failure
/// everything it made is removed again (the state directory, and DIR and its parents if it
/// created them; files that were there before stay), so the command can simply be retried.
pub(crate) fn run(
    dir: &Path,
    relay: &str,
    user: &str,
    code: Option<String>,
    device_name: Option<String>,
    ca: Option<&Path>,
) -> Result<(), AgentError> {
    let code = code.ok_or_else(|| AgentError::Usage("give --invite or --pair".into()))?;
    if !relay.starts_with("ws://") && !relay.starts_with("wss://") {
        return Err(AgentError::Usage(format!(
            "relay URL must start with ws:// or wss://, got {relay:?}"
        )));
    }
    if ca.is_some() && !relay.starts_with("wss://") {
        return Err(AgentError::Usage(
            "--ca pins the CA of a wss:// relay; this relay URL is not wss://".into(),
        ));
    }
    if relay.starts_with("ws://") && !is_loopback(relay) {
        eprintln!(
            "warning: {relay} is plain WebSocket to another machine: file names and contents \
             cross the network unencrypted; use wss:// (see deploy/README.md)"
        );
    }
    let dir = &std::path::absolute(dir).map_err(|e| AgentError::io("resolve", dir, e))?;
    // The directories this command makes (DIR and missing parents), removed again on failure.
    let created: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|ancestor| fs::symlink_metadata(ancestor).is_err())
        .map(Path::to_owned)
        .collect();
    fs::create_dir_all(dir).map_err(|e| AgentError::io("create", dir, e))?;
    let state = StateDir::of(dir);
    if state.root().exists() {
        return Err(AgentError::AlreadyInitialised(dir.to_owned()));
    }
    let device_name = device_name.unwrap_or_else(host_name);
    let result = enrol(&state, relay, user, code, &device_name, ca);
    if result.is_err() {
        let _ = fs::remove_dir_all(state.root());
        // Deepest first; `remove_dir` only removes empty ones, so nothing else is lost.
        for made in &created {
            let _ = fs::remove_dir(made);
        }
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
    ca: Option<&Path>,
) -> Result<String, AgentError> {
    state.create()?;
    let key = state.create_key()?;
    // The CA is copied into the state directory: the device keeps trusting it wherever the
    // original file goes.
    let pinned = match ca {
        Some(ca) => {
            let copy = state.root().join(PINNED_CA);
            fs::copy(ca, &copy).map_err(|e| AgentError::io("copy", ca, e))?;
            Some(PathBuf::from(PINNED_CA))
        }
        None => None,
    };
    let proof = AuthProof::Enrol {
        code,
        device_name: device_name.to_owned(),
    };
    let ca_path = pinned.as_ref().map(|name| state.root().join(name));
    let connection = block_on(Connection::open(
        relay,
        ca_path.as_deref(),
        user,
        &key,
        proof,
    ))??;
    block_on(connection.close())?;
    state.save_config(&Config {
        relay: relay.to_owned(),
        user: user.to_owned(),
        device_name: device_name.to_owned(),
        folder: cloud3_engine::ids::FolderId::DEFAULT.to_owned(),
        rescan_interval_ms: 60_000,
        debounce_ms: 30,
        min_free_mib: None,
        ca: pinned,
        mass_delete_files: DeleteGuard::default().min_files,
        mass_delete_percent: DeleteGuard::default().min_percent,
    })?;
    Ok(key.device_id().short().to_string())
}

/// The pinned CA's file name in `.cloud3/`.
const PINNED_CA: &str = "ca.pem";

/// Whether the URL's host is this machine (localhost, 127/8 or ::1).
fn is_loopback(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn host_name() -> String {
    fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "device".to_owned())
}

#[cfg(test)]
mod tests {
    use super::is_loopback;

    #[test]
    fn loopback_hosts_are_recognised() {
        for url in [
            "ws://127.0.0.1:8787",
            "ws://localhost",
            "ws://[::1]:80/",
            "ws://127.3.0.1",
        ] {
            assert!(is_loopback(url), "{url}");
        }
        for url in [
            "ws://relay.example.org",
            "ws://10.0.0.1:8787",
            "ws://[2001:db8::1]",
        ] {
            assert!(!is_loopback(url), "{url}");
        }
    }
}
