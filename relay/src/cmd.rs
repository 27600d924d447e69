//! One file per subcommand; [`run`] dispatches.

mod serve;
mod user;

use crate::cli::{Cli, Command};

/// Runs one command.
pub fn run(mut cli: Cli) -> anyhow::Result<()> {
    match cli.command.take().unwrap_or(Command::Serve) {
        Command::Serve => serve::run(&cli),
        Command::User { action } => user::run(&cli.data, action),
    }
}
