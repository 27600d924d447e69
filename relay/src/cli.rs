//! The relay's command line, as clap definitions only. Every setting of `serve` can also come
//! from a TOML file (`--config`, see [`crate::config`]); a flag given overrides the file.

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
    /// TOML file with settings (keys are the flags' names without `--`); flags override it.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8787).
    #[arg(long, global = true)]
    pub listen: Option<SocketAddr>,
    /// Data directory: database and chunk packs (default ./cloud3-relay-data).
    #[arg(long, global = true)]
    pub data: Option<PathBuf>,
    /// Storage quota per account, in GiB (default 100).
    #[arg(long, global = true)]
    pub quota_gib: Option<u64>,
    /// Free space, in MiB, the data directory's file system keeps: uploads that would take it
    /// below this are refused as "relay storage full" until there is room again (default 1024).
    #[arg(long, global = true)]
    pub min_free_mib: Option<u64>,
    /// Most simultaneous connections of one account (default 64).
    #[arg(long, global = true)]
    pub max_connections_per_account: Option<usize>,
    /// Directory of the browser viewer page served at `/` (built by `scripts/build-viewer`).
    #[arg(long, global = true)]
    pub viewer: Option<PathBuf>,
    /// PEM certificate chain (leaf first) to serve TLS with; needs --tls-key. Reloaded on
    /// SIGHUP.
    #[arg(long, global = true, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate; needs --tls-cert. Reloaded on SIGHUP.
    #[arg(long, global = true, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Seconds a connection has for its TLS handshake and for each HTTP request head
    /// (default 10).
    #[arg(long, global = true)]
    pub head_timeout_secs: Option<u64>,
    /// Seconds a device has from the WebSocket upgrade to authenticating (default 10).
    #[arg(long, global = true)]
    pub handshake_timeout_secs: Option<u64>,
    /// Connections not yet authenticated, in total (default 1024).
    #[arg(long, global = true)]
    pub max_unauthenticated: Option<usize>,
    /// Connections not yet authenticated, per source address (default 64).
    #[arg(long, global = true)]
    pub max_unauthenticated_per_ip: Option<usize>,
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
