//! `cloud3-relay scan list|release`: through the running relay's admin socket when it
//! answers (a release then reaches online devices at once), else directly on the data
//! directory.

use std::path::Path;

use anyhow::bail;

use super::user::ask;
use crate::admin::AdminRequest;
use crate::cli::ScanAction;

/// Runs a scan command and prints its answer.
pub(crate) fn run(data: &Path, action: ScanAction) -> anyhow::Result<()> {
    let request = match action {
        ScanAction::List { user, all } => AdminRequest::ListVerdicts { user, all },
        ScanAction::Release { user, content } => AdminRequest::Release { user, content },
    };
    let answer = ask(data, request)?;
    if !answer.ok {
        bail!("{}", answer.error.unwrap_or_else(|| "failed".into()));
    }
    for line in answer.lines {
        println!("{line}");
    }
    Ok(())
}
