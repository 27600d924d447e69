//! `cloud3 quarantine list|restore`: the files the relay's scan flagged that this device moved
//! into `.cloud3/quarantine/`. Works on the folder's files directly, whether or not the daemon
//! runs (a restored file is then scanned like any new file and adopted as the document's node).

use super::Folder;
use crate::cli::QuarantineAction;
use crate::error::AgentError;
use crate::quarantine::{self, QuarantineList};

/// Runs a quarantine command.
pub(crate) fn run(action: QuarantineAction) -> Result<(), AgentError> {
    match action {
        QuarantineAction::List { dir } => {
            let folder = Folder::open(&dir.dir)?;
            let list = QuarantineList::load(&folder.state)?;
            for file in list.held() {
                println!(
                    "{}\t{}\t{}\t{}",
                    file.path, file.engine, file.signature, file.stored
                );
            }
            Ok(())
        }
        QuarantineAction::Restore { path, dir } => {
            let folder = Folder::open(&dir.dir)?;
            let path = folder.relative(&path)?;
            quarantine::restore(&folder.root, &folder.state, &path)?;
            println!("restored {path} from quarantine");
            Ok(())
        }
    }
}
