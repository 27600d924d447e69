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
    /// Storage quota per account, in MiB (overrides --quota-gib when given).
    #[arg(long, global = true)]
    pub quota_mib: Option<u64>,
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
    /// Days every replaced or deleted version stays restorable (default 30); an account's own
    /// window (`user retention`) overrides it. The current version of a live file stays forever.
    #[arg(long, global = true)]
    pub retention_days: Option<u32>,
    /// Seconds a blob a device uploaded, or was told the relay has, is spared by the collector
    /// before the change naming it must have arrived (default 86400).
    #[arg(long, global = true)]
    pub gc_grace_secs: Option<u64>,
    /// Seconds between background collections while serving; 0 turns them off (default 3600).
    #[arg(long, global = true)]
    pub gc_interval_secs: Option<u64>,
    /// Moves the relay's lifecycle clock (retention, claims, grace) by this many seconds: for
    /// tests and benchmarks that need time to pass a retention window.
    #[arg(long, global = true, hide = true, allow_hyphen_values = true)]
    pub clock_skew_secs: Option<i64>,
    /// Scan new file versions with ClamAV's clamd (INSTREAM) at unix:PATH or tcp:HOST:PORT.
    #[arg(long, global = true)]
    pub clamd: Option<crate::scan::clamd::ClamdAddr>,
    /// clamd's StreamMaxLength in MiB: larger versions are reported unscanned (default 25).
    #[arg(long, global = true)]
    pub clamd_max_stream_mib: Option<u64>,
    /// Seconds clamd has to accept, read or answer before a scan is retried (default 30).
    #[arg(long, global = true)]
    pub clamd_timeout_secs: Option<u64>,
    /// Scans at once (default: clamd's MaxThreads as STATS reports it, else 2).
    #[arg(long, global = true)]
    pub scan_concurrency: Option<usize>,
    /// Seconds between asking clamd's VERSION, to re-scan after a signature update (default 60).
    #[arg(long, global = true)]
    pub clamd_version_check_secs: Option<u64>,
    /// File of SHA-256 hashes of whole files to flag (one hex hash per line, optionally a
    /// name after it). Reloaded on SIGHUP.
    #[arg(long, global = true)]
    pub deny_list: Option<PathBuf>,
    /// What happens while a version is scanned: flag (syncs at once, refused once flagged) or
    /// hold (served only once scanned clean). Default flag; per account in the config file
    /// (`[scan-policy-accounts]`).
    #[arg(long, global = true, value_enum)]
    pub scan_policy: Option<crate::scan::ScanPolicy>,
    /// One account's scan policy, as USER=flag or USER=hold (repeatable; adds to and overrides
    /// the config file's `[scan-policy-accounts]`).
    #[arg(long, global = true, value_parser = account_policy)]
    pub scan_policy_account: Vec<(String, crate::scan::ScanPolicy)>,
}

/// `USER=flag|hold`.
fn account_policy(text: &str) -> Result<(String, crate::scan::ScanPolicy), String> {
    let (user, policy) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: use USER=flag or USER=hold"))?;
    let policy = <crate::scan::ScanPolicy as clap::ValueEnum>::from_str(policy, false)
        .map_err(|_| format!("{policy:?}: the policy is flag or hold"))?;
    Ok((user.to_owned(), policy))
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
    /// Collect garbage now: free blobs no restorable version references, then compact sparse
    /// packs (through the running relay when it runs, with its settings).
    Gc,
    /// The malware scan's verdicts (works whether or not the relay is running).
    Scan {
        /// What to do.
        #[command(subcommand)]
        action: ScanAction,
    },
}

/// `scan` subcommands.
#[derive(Debug, Subcommand)]
pub enum ScanAction {
    /// List verdicts: user, content hash, verdict, size (all users, or one).
    List {
        /// Only this account.
        user: Option<String>,
        /// Also list versions scanned clean.
        #[arg(long)]
        all: bool,
    },
    /// Release a false positive: the version is served from now on and never scanned again.
    Release {
        /// The account.
        user: String,
        /// The version's content hash (hex, as `scan list` prints it).
        content: String,
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
    /// Set an account's own retention window in days, or `default` for the relay's.
    Retention {
        /// The account name.
        name: String,
        /// Days, or `default`.
        days: String,
    },
}
