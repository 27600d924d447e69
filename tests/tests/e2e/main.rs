//! End-to-end tests: real `cloud3-relay` and `cloud3` processes on loopback, real folders.

mod agent_faults;
mod agent_sync;
mod bad_input;
mod control;
mod daemon;
mod everyday;
mod full_disk;
mod lifecycle;
mod randomized;
mod relay_edge;
mod relay_protocol;
mod relay_tls;
mod safety;
mod scan;
mod status;

use std::path::Path;

use anyhow::Result;
use cloud3_tests::{Device, Relay};

/// A relay with user alice and `n` enrolled devices (the first by invite, the rest paired).
pub(crate) fn setup(root: &Path, n: usize) -> Result<(Relay, Vec<Device>)> {
    let relay = Relay::start(&root.join("relay"))?;
    let invite = relay.add_user("alice")?;
    let mut devices = vec![Device::init(
        &root.join("dev0"),
        &relay,
        "alice",
        "--invite",
        &invite,
        "dev0",
    )?];
    for idx in 1..n {
        let code = devices[0].pair(false)?;
        devices.push(Device::init(
            &root.join(format!("dev{idx}")),
            &relay,
            "alice",
            "--pair",
            &code,
            &format!("dev{idx}"),
        )?);
    }
    Ok((relay, devices))
}

/// Lines of `cloud3 history` output that are versions ("  0  2026-...").
pub(crate) fn versions(history: &str) -> usize {
    history
        .lines()
        .filter(|line| {
            line.split_whitespace()
                .next()
                .is_some_and(|n| n.parse::<usize>().is_ok())
        })
        .count()
}
