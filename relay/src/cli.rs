//! The relay's command line, as clap definitions only.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// cloud3-relay: the server your cloud3 devices sync through.
#[derive(Debug, Parser)]
#[command(name = "cloud3-relay", version, about, long_about = None)]
pub struct Cli {
    /// What to do (default: serve).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Address to listen on (for serve).
    #[arg(long, default_value = "127.0.0.1:8787", global = true)]
    pub listen: SocketAddr,
    /// Data directory (database and chunk packs).
    #[arg(long, default_value = "./cloud3-relay-data", global = true)]
    pub data: PathBuf,
    /// Storage quota per account, in GiB (for serve).
    #[arg(long, default_value_t = 100, global = true)]
    pub quota_gib: u64,
    /// Most simultaneous connections of one account (for serve).
    #[arg(long, default_value_t = 64, global = true)]
    pub max_connections_per_account: usize,
    /// Directory of the browser viewer page served at `/` (built by `scripts/build-viewer`).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../viewer"), global = true)]
    pub viewer: PathBuf,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve devices over WebSocket (the default).
    Serve,
    /// Manage accounts (works whether or not the relay is running).
    User {
        /// What to do with users.
        #[command(subcommand)]
        action: UserAction,
    },
}

/// `user` subcommands.
#[derive(Debug, Subcommand)]
pub enum UserAction {
    /// Create an account; prints a one-time invite code as the last line.
    Add {
        /// The account name.
        name: String,
    },
    /// List accounts.
    List,
    /// Remove an account and all its data.
    Remove {
        /// The account name.
        name: String,
    },
}
