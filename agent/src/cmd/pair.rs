//! `cloud3 pair [--read-only]`: ask the relay for a one-time code that enrols another device.

use std::path::Path;

use cloud3_engine::wire::{ClientMessage, ServerMessage};

use super::{Folder, block_on};
use crate::error::AgentError;

/// Prints the code as the last stdout line.
pub(crate) fn run(dir: &Path, read_only: bool) -> Result<(), AgentError> {
    let folder = Folder::open(dir)?;
    let code = block_on(async {
        let mut connection = folder.connect().await?;
        connection
            .send(&ClientMessage::PairRequest { read_only })
            .await?;
        loop {
            match connection.recv().await? {
                ServerMessage::PairCode { code, .. } => {
                    connection.close().await;
                    return Ok(code);
                }
                ServerMessage::Error { message, .. } => return Err(AgentError::Refused(message)),
                _ => continue,
            }
        }
    })??;
    let kind = if read_only { "read-only " } else { "" };
    println!("one-time {kind}pairing code, valid for 10 minutes:");
    println!("{code}");
    Ok(())
}
