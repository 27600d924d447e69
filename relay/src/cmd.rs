//! One file per subcommand; [`run`] dispatches.

mod serve;
mod user;

use crate::cli::{Cli, Command};

/// Runs one command.
pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve::run(
            cli.listen,
            &cli.data,
            cli.quota_gib,
            cli.max_connections_per_account,
        ),
        Command::User { action } => user::run(&cli.data, action),
    }
}
