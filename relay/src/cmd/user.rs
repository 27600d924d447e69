//! `cloud3-relay user add|list|remove|retention`: through the running relay's admin socket when
//! it answers, else directly on the data directory.

use anyhow::Context;

use super::admin_client::request_answer;
use crate::admin::AdminRequest;
use crate::cli::UserAction;
use crate::config::Settings;

/// Runs a user command and prints its answer.
pub(crate) fn run(settings: &Settings, action: UserAction) -> anyhow::Result<()> {
    let request = match action {
        UserAction::Add { name } => AdminRequest::AddUser { name },
        UserAction::List => AdminRequest::ListUsers,
        UserAction::Remove { name } => AdminRequest::RemoveUser { name },
        UserAction::Retention { name, days } => AdminRequest::SetRetention {
            name,
            days: match days.as_str() {
                "default" => None,
                number => Some(number.parse().with_context(|| {
                    format!("retention {number:?}: give a number of days or \"default\"")
                })?),
            },
        },
    };
    request_answer(settings, request)
}
