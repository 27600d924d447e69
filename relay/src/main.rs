//! `cloud3-relay`: parses arguments and hands over to `cmd`.

use std::io::IsTerminal;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colour only on a terminal: escapes in a log file or the journal are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
    let cli = cloud3_relay::cli::Cli::parse();
    match cloud3_relay::cmd::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cloud3-relay: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
