//! `cloud3`: the agent's command line. Parses arguments and hands over to `cmd`.

use clap::Parser;

// mimalloc returns freed memory to the system where glibc's heap kept it: a 100k-file sync
// peaked at 2x its live heap with glibc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = cloud3_agent::cli::Cli::parse();
    let daemon = matches!(cli.command, cloud3_agent::cli::Command::Run { .. });
    cloud3_agent::logging::init(daemon);
    match cloud3_agent::cmd::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("cloud3: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}
