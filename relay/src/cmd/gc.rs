//! `cloud3-relay gc`: one collection and compaction now, through the running relay's admin
//! socket (with its settings) when it answers, else directly on the data directory.

use crate::admin::AdminRequest;
use crate::config::Settings;

/// Collects and prints what was freed.
pub(crate) fn run(settings: &Settings) -> anyhow::Result<()> {
    super::admin_client::request_answer(settings, AdminRequest::Collect)
}
