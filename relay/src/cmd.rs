//! One file per subcommand; [`run`] dispatches.

mod admin_client;
mod gc;
mod scan;
mod serve;
mod user;

use crate::cli::{Cli, Command};
use crate::config::Settings;

/// Runs one command.
pub fn run(mut cli: Cli) -> anyhow::Result<()> {
    let settings = Settings::resolve(&cli)?;
    match cli.command.take().unwrap_or(Command::Serve) {
        Command::Serve => serve::run(&settings),
        Command::User { action } => user::run(&settings, action),
        Command::Gc => gc::run(&settings),
        Command::Scan { action } => scan::run(&settings, action),
    }
}
