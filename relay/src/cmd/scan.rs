//! `cloud3-relay scan list|release`: through the running relay's admin socket when it
//! answers (a release then reaches online devices at once), else directly on the data
//! directory.

use crate::admin::AdminRequest;
use crate::cli::ScanAction;
use crate::config::Settings;

/// Runs a scan command and prints its answer.
pub(crate) fn run(settings: &Settings, action: ScanAction) -> anyhow::Result<()> {
    let request = match action {
        ScanAction::List { user, all } => AdminRequest::ListVerdicts { user, all },
        ScanAction::Release { user, content } => AdminRequest::Release { user, content },
    };
    super::admin_client::request_answer(settings, request)
}
