//! `cloud3 devices`: list the account's devices.

use std::path::Path;

use cloud3_engine::wire::{ClientMessage, DeviceInfo, ServerMessage};

use super::{Folder, block_on};
use crate::control::{self, Reply, Request};
use crate::error::AgentError;

/// Prints one line per device.
pub(crate) fn run(dir: &Path) -> Result<(), AgentError> {
    let folder = Folder::open(dir)?;
    let me = folder.key.device_id();
    // A running daemon asks over its live connection.
    let devices = match control::ask(&folder.state, &Request::Devices)? {
        Some(Reply::Devices { devices }) => devices,
        Some(other) => return Err(control::unexpected(&other)),
        None => fetch(&folder)?,
    };
    for device in devices {
        let status = match (device.revoked, device.online) {
            (Some(_), _) => "revoked",
            (None, true) => "online",
            (None, false) => "offline",
        };
        let mode = if device.read_only { " read-only" } else { "" };
        let this = if device.device == me {
            " (this device)"
        } else {
            ""
        };
        println!(
            "{}  {:<20} {status}{mode}{this}",
            device.device.short(),
            device.name
        );
    }
    Ok(())
}

/// The account's device list from the relay.
pub(crate) fn fetch(folder: &Folder) -> Result<Vec<DeviceInfo>, AgentError> {
    block_on(async {
        let mut connection = folder.connect().await?;
        connection.send(&ClientMessage::ListDevices).await?;
        loop {
            match connection.recv().await? {
                ServerMessage::Devices(list) => {
                    connection.close().await;
                    return Ok(list);
                }
                ServerMessage::Error { message, .. } => return Err(AgentError::Refused(message)),
                _ => continue,
            }
        }
    })?
}
