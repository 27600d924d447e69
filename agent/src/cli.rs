//! The command line, as clap definitions only (behaviour lives in `cmd/`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// cloud3 keeps a folder in sync across your devices through your own relay.
#[derive(Debug, Parser)]
#[command(name = "cloud3", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The folder a command works on.
#[derive(Debug, Args)]
pub struct DirArg {
    /// The synced folder (default: the current directory).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Set up DIR as a synced folder: enrol this device with an invite or pairing code.
    Init {
        /// The folder to sync (created if missing).
        dir: PathBuf,
        /// The relay, e.g. wss://relay.example.org or ws://127.0.0.1:8787.
        #[arg(long)]
        relay: String,
        /// Your account name on the relay.
        #[arg(long)]
        user: String,
        /// The one-time invite code from `cloud3-relay user add` (first device).
        #[arg(long, conflicts_with = "pair", required_unless_present = "pair")]
        invite: Option<String>,
        /// A pairing code from `cloud3 pair` on an enrolled device (further devices).
        #[arg(long)]
        pair: Option<String>,
        /// A name for this device (default: the host name).
        #[arg(long)]
        device_name: Option<String>,
        /// Trust only this CA certificate (PEM) for a `wss://` relay instead of the system's
        /// roots (a home server with a private CA). Copied into `.cloud3/` and used for every
        /// later connection.
        #[arg(long)]
        ca: Option<PathBuf>,
    },
    /// Print a one-time code (valid 10 minutes) that enrols another device.
    Pair {
        /// Folder selection.
        #[command(flatten)]
        dir: DirArg,
        /// The new device may only read (for the browser viewer).
        #[arg(long)]
        read_only: bool,
    },
    /// Keep the folder in sync until interrupted (SIGINT/SIGTERM).
    Run {
        /// Folder selection.
        #[command(flatten)]
        dir: DirArg,
    },
    /// Sync once: scan, exchange with the relay until both are up to date, exit.
    Sync {
        /// Folder selection.
        #[command(flatten)]
        dir: DirArg,
    },
    /// Show whether the folder is in sync.
    Status {
        /// Folder selection.
        #[command(flatten)]
        dir: DirArg,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// List the account's devices.
    Devices {
        /// Folder selection.
        #[command(flatten)]
        dir: DirArg,
    },
    /// Cut a device off at once and for good.
    Revoke {
        /// The device's id (or a unique prefix of it) or its name.
        device: String,
        /// Folder selection.
        #[command(flatten)]
        dir: DirArg,
    },
    /// List the versions of a file.
    History {
        /// The file, relative to the folder.
        path: String,
        /// Folder selection.
        #[command(flatten)]
        dir: DirArg,
    },
    /// Send the deletions held back because one scan would have deleted much of the folder
    /// (see `cloud3 status`); putting the files back instead cancels them.
    ConfirmDeletes {
        /// Cancel them instead: write the entries back from the relay (nothing is deleted).
        #[arg(long)]
        undo: bool,
        /// Folder selection.
        #[command(flatten)]
        dir: DirArg,
    },
    /// Bring back a deleted file, or an earlier version of a file.
    Restore {
        /// The file, relative to the folder.
        path: String,
        /// The version number from `cloud3 history` (default: the latest non-deleted one).
        #[arg(long)]
        version: Option<usize>,
        /// Folder selection.
        #[command(flatten)]
        dir: DirArg,
    },
    /// Files the relay's malware scan flagged, moved into `.cloud3/quarantine/`.
    Quarantine {
        /// What to do.
        #[command(subcommand)]
        action: QuarantineAction,
    },
}

/// `quarantine` subcommands.
#[derive(Debug, Subcommand)]
pub enum QuarantineAction {
    /// List quarantined files: path, engine, signature.
    List {
        /// Folder selection.
        #[command(flatten)]
        dir: DirArg,
    },
    /// Put a quarantined file back at its path (your decision: this device then keeps it).
    Restore {
        /// The file's path in the folder, as `quarantine list` prints it.
        path: String,
        /// Folder selection.
        #[command(flatten)]
        dir: DirArg,
    },
}
