//! The relay's settings: defaults, overridden by the TOML file given with `--config`, overridden
//! by flags. The file's keys are the flags' names without `--`, for example:
//!
//! ```toml
//! listen = "0.0.0.0:443"
//! data = "/var/lib/cloud3-relay"
//! tls-cert = "/etc/cloud3-relay/fullchain.pem"
//! tls-key = "/etc/cloud3-relay/privkey.pem"
//! quota-gib = 100
//! min-free-mib = 1024
//! retention-days = 30
//! gc-grace-secs = 86400
//! gc-interval-secs = 3600
//! clamd = "unix:/run/clamav/clamd.ctl"
//! deny-list = "/etc/cloud3-relay/deny.txt"
//! scan-policy = "flag"
//!
//! [scan-policy-accounts]     # per-account overrides of scan-policy
//! alice = "hold"
//! ```

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::cli::Cli;
use crate::clock::Clock;
use crate::limits::Limits;
use crate::scan::ScanPolicy;
use crate::scan::clamd::ClamdAddr;
use crate::scan::service::ScanSettings;
use crate::store::GcSettings;

/// Why the settings file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// It does not read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// It is not valid TOML or has an unknown key or a wrong type.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, where.
        message: String,
    },
    /// Only one of the certificate and the key is set.
    #[error("tls-cert and tls-key go together: set both or neither")]
    HalfTls,
}

/// The settings file (every key optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct FileSettings {
    listen: Option<SocketAddr>,
    data: Option<PathBuf>,
    quota_gib: Option<u64>,
    quota_mib: Option<u64>,
    min_free_mib: Option<u64>,
    max_connections_per_account: Option<usize>,
    viewer: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    head_timeout_secs: Option<u64>,
    handshake_timeout_secs: Option<u64>,
    max_unauthenticated: Option<usize>,
    max_unauthenticated_per_ip: Option<usize>,
    retention_days: Option<u32>,
    gc_grace_secs: Option<u64>,
    gc_interval_secs: Option<u64>,
    clock_skew_secs: Option<i64>,
    clamd: Option<ClamdAddr>,
    clamd_max_stream_mib: Option<u64>,
    clamd_timeout_secs: Option<u64>,
    scan_concurrency: Option<usize>,
    clamd_version_check_secs: Option<u64>,
    deny_list: Option<PathBuf>,
    scan_policy: Option<ScanPolicy>,
    #[serde(default)]
    scan_policy_accounts: HashMap<String, ScanPolicy>,
}

/// The background collector runs this often unless told otherwise.
const GC_INTERVAL: Duration = Duration::from_secs(3600);

/// The resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory.
    pub data: PathBuf,
    /// The viewer's directory.
    pub viewer: PathBuf,
    /// Certificate chain and key files, for TLS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Limits.
    pub limits: Limits,
    /// How garbage is collected.
    pub gc: GcSettings,
    /// Time between background collections; `None`: none.
    pub gc_interval: Option<Duration>,
    /// The lifecycle clock.
    pub clock: Clock,
    /// The malware scan.
    pub scan: ScanSettings,
}

impl Settings {
    /// Defaults, then the file named by `--config`, then the flags.
    pub fn resolve(cli: &Cli) -> Result<Settings, ConfigError> {
        let file = match &cli.config {
            Some(path) => read(path)?,
            None => FileSettings::default(),
        };
        let defaults = Limits::default();
        let gc_defaults = GcSettings::default();
        let secs = |flag: Option<u64>, key: Option<u64>, default: Duration| {
            flag.or(key).map_or(default, Duration::from_secs)
        };
        let limits = Limits {
            head_timeout: secs(
                cli.head_timeout_secs,
                file.head_timeout_secs,
                defaults.head_timeout,
            ),
            handshake_timeout: secs(
                cli.handshake_timeout_secs,
                file.handshake_timeout_secs,
                defaults.handshake_timeout,
            ),
            max_unauthenticated: cli
                .max_unauthenticated
                .or(file.max_unauthenticated)
                .unwrap_or(defaults.max_unauthenticated),
            max_unauthenticated_per_ip: cli
                .max_unauthenticated_per_ip
                .or(file.max_unauthenticated_per_ip)
                .unwrap_or(defaults.max_unauthenticated_per_ip),
            max_connections_per_account: cli
                .max_connections_per_account
                .or(file.max_connections_per_account)
                .unwrap_or(defaults.max_connections_per_account),
            quota_bytes: match cli.quota_mib.or(file.quota_mib) {
                Some(mib) => mib.saturating_mul(1 << 20),
                None => cli
                    .quota_gib
                    .or(file.quota_gib)
                    .map_or(defaults.quota_bytes, |gib| gib.saturating_mul(1 << 30)),
            },
            min_free_bytes: cli
                .min_free_mib
                .or(file.min_free_mib)
                .map_or(defaults.min_free_bytes, |mib| mib.saturating_mul(1 << 20)),
            ..defaults
        };
        let tls = match (
            cli.tls_cert.clone().or(file.tls_cert),
            cli.tls_key.clone().or(file.tls_key),
        ) {
            (Some(cert), Some(key)) => Some((cert, key)),
            (None, None) => None,
            _ => return Err(ConfigError::HalfTls),
        };
        let scan_defaults = ScanSettings::default();
        let scan = ScanSettings {
            policy: cli
                .scan_policy
                .or(file.scan_policy)
                .unwrap_or(scan_defaults.policy),
            accounts: file
                .scan_policy_accounts
                .into_iter()
                .chain(cli.scan_policy_account.iter().cloned())
                .collect(),
            deny_list: cli.deny_list.clone().or(file.deny_list),
            clamd: cli.clamd.clone().or(file.clamd),
            clamd_max_stream: cli
                .clamd_max_stream_mib
                .or(file.clamd_max_stream_mib)
                .map_or(scan_defaults.clamd_max_stream, |mib| {
                    mib.saturating_mul(1 << 20)
                }),
            clamd_timeout: secs(
                cli.clamd_timeout_secs,
                file.clamd_timeout_secs,
                scan_defaults.clamd_timeout,
            ),
            concurrency: cli.scan_concurrency.or(file.scan_concurrency),
            version_check: secs(
                cli.clamd_version_check_secs,
                file.clamd_version_check_secs,
                scan_defaults.version_check,
            ),
        };
        Ok(Settings {
            listen: cli
                .listen
                .or(file.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8787))),
            data: cli
                .data
                .clone()
                .or(file.data)
                .unwrap_or_else(|| PathBuf::from("./cloud3-relay-data")),
            viewer: cli.viewer.clone().or(file.viewer).unwrap_or_else(|| {
                PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../viewer"))
            }),
            tls,
            limits,
            gc: GcSettings {
                retention_days: cli
                    .retention_days
                    .or(file.retention_days)
                    .unwrap_or(gc_defaults.retention_days),
                grace: cli
                    .gc_grace_secs
                    .or(file.gc_grace_secs)
                    .map_or(gc_defaults.grace, Duration::from_secs),
                ..gc_defaults
            },
            gc_interval: match cli.gc_interval_secs.or(file.gc_interval_secs) {
                Some(0) => None,
                Some(secs) => Some(Duration::from_secs(secs)),
                None => Some(GC_INTERVAL),
            },
            clock: Clock::skewed(cli.clock_skew_secs.or(file.clock_skew_secs).unwrap_or(0)),
            scan,
        })
    }
}

fn read(path: &Path) -> Result<FileSettings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|e| ConfigError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn resolve(file: &str, args: &[&str]) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.toml");
        std::fs::write(&path, file).unwrap();
        let mut argv = vec!["cloud3-relay", "--config", path.to_str().unwrap()];
        argv.extend_from_slice(args);
        Settings::resolve(&Cli::parse_from(argv))
    }

    #[test]
    fn the_file_sets_and_flags_override() {
        let settings = resolve(
            "listen = \"127.0.0.1:9000\"\nquota-gib = 5\nhead-timeout-secs = 3\nmin-free-mib = 7\n\
             tls-cert = \"c.pem\"\ntls-key = \"k.pem\"\n",
            &["--listen", "127.0.0.1:9001", "serve"],
        )
        .unwrap();
        assert_eq!(settings.listen, "127.0.0.1:9001".parse().unwrap());
        assert_eq!(settings.limits.quota_bytes, 5 << 30);
        assert_eq!(settings.limits.head_timeout, Duration::from_secs(3));
        assert_eq!(settings.limits.min_free_bytes, 7 << 20);
        assert_eq!(
            settings.tls,
            Some((PathBuf::from("c.pem"), PathBuf::from("k.pem")))
        );
        assert_eq!(settings.data, PathBuf::from("./cloud3-relay-data"));
        assert_eq!(settings.gc.retention_days, 30);
        assert_eq!(settings.gc_interval, Some(GC_INTERVAL));
        let settings = resolve(
            "retention-days = 90\ngc-interval-secs = 0\n",
            &["--retention-days", "7"],
        )
        .unwrap();
        assert_eq!(settings.gc.retention_days, 7);
        assert_eq!(settings.gc_interval, None);
        assert_eq!(settings.scan.policy, ScanPolicy::Flag);
    }

    #[test]
    fn the_scan_policy_has_a_relay_default_and_per_account_overrides() {
        let settings = resolve(
            "scan-policy = \"hold\"\nclamd = \"tcp:127.0.0.1:3310\"\n\
             [scan-policy-accounts]\nbob = \"flag\"\n",
            &[
                "--clamd",
                "unix:/tmp/c.sock",
                "--scan-policy-account",
                "carol=hold",
            ],
        )
        .unwrap();
        assert_eq!(settings.scan.policy, ScanPolicy::Hold);
        assert_eq!(settings.scan.accounts.get("bob"), Some(&ScanPolicy::Flag));
        assert_eq!(settings.scan.accounts.get("carol"), Some(&ScanPolicy::Hold));
        assert_eq!(
            settings.scan.clamd,
            Some(ClamdAddr::Unix("/tmp/c.sock".into()))
        );
        let error = resolve("clamd = \"/tmp/c.sock\"\n", &[]).unwrap_err();
        assert!(error.to_string().contains("unix:PATH"), "{error}");
    }

    #[test]
    fn unknown_keys_and_half_tls_are_refused() {
        let error = resolve("listne = \"127.0.0.1:1\"\n", &[]).unwrap_err();
        assert!(error.to_string().contains("listne"), "{error}");
        let error = resolve("tls-cert = \"c.pem\"\n", &[]).unwrap_err();
        assert!(matches!(error, ConfigError::HalfTls), "{error}");
    }
}
