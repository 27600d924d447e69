//! `cloud3 revoke DEVICE`: cut a device of the account off at once.

use std::path::Path;

use cloud3_engine::wire::{ClientMessage, ServerMessage};

use super::{Folder, block_on, devices};
use crate::error::AgentError;

/// Resolves DEVICE (id, id prefix or name) against the device list, then revokes it.
pub(crate) fn run(dir: &Path, device: &str) -> Result<(), AgentError> {
    let folder = Folder::open(dir)?;
    let list = devices::fetch(&folder)?;
    let matches: Vec<_> = list
        .iter()
        .filter(|d| d.name == device || d.device.to_hex().starts_with(&device.to_lowercase()))
        .collect();
    let target = match matches.as_slice() {
        [one] => one.device,
        [] => return Err(AgentError::Usage(format!("no device matches {device:?}"))),
        _ => {
            return Err(AgentError::Usage(format!(
                "{device:?} matches {} devices: give more of the id",
                matches.len()
            )));
        }
    };
    block_on(async {
        let mut connection = folder.connect().await?;
        connection
            .send(&ClientMessage::Revoke { device: target })
            .await?;
        loop {
            match connection.recv().await? {
                ServerMessage::Revoked { .. } => {
                    connection.close().await;
                    return Ok(());
                }
                ServerMessage::Error { message, .. } => return Err(AgentError::Refused(message)),
                _ => continue,
            }
        }
    })??;
    println!("revoked {}", target.short());
    Ok(())
}
