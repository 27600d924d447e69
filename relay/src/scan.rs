//! The malware scan (shared/DESIGN.md section 12). When a document change that names a new
//! file version is accepted, the version is recorded and queued
//! ([`service::ScanService::record`], then `queue`); workers stream its chunks in order through
//! every [`scanner::Scanner`] (the SHA-256 deny list, and clamd when configured) and record a
//! [`cloud3_engine::wire::Verdict`] per user per content hash. [`gate::Refusals`] refuses the
//! chunks of flagged versions (and, under the `hold` policy, of versions not yet clean) to
//! every device and the viewer; devices are told each verdict that is not plainly clean
//! (`ServerMessage::Verdicts`).

pub mod clamd;
pub mod denylist;
pub mod gate;
pub mod scanner;
pub mod service;

use serde::Deserialize;

pub use scanner::{ScanError, ScanPass, Scanner};
pub use service::ScanService;

/// What the relay does with a version while and after it is scanned.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum ScanPolicy {
    /// The version syncs at once; when flagged, its chunks are refused and devices quarantine it.
    #[default]
    Flag,
    /// Other devices and the viewer get a version's chunks only once it is scanned clean.
    Hold,
}
