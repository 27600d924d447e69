//! Certificates for TLS tests and benchmarks, made on the spot with rcgen: a private CA and
//! relay certificates for localhost and 127.0.0.1 issued by it.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};

use crate::Relay;

/// A private CA.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    /// A new CA with common name `name`.
    pub fn new(name: &str) -> Result<Ca> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        Ok(Ca {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate()?)?,
        })
    }

    /// Writes the CA certificate (PEM) to `dir/name`.
    pub fn write(&self, dir: &Path, name: &str) -> Result<PathBuf> {
        let path = dir.join(name);
        std::fs::write(&path, self.issuer.pem())?;
        Ok(path)
    }

    /// Issues a certificate for localhost and 127.0.0.1 and writes `cert.pem` (leaf, then the
    /// CA) and `key.pem` into `dir`; `expired` makes it end in 2020.
    pub fn issue(&self, dir: &Path, expired: bool) -> Result<(PathBuf, PathBuf)> {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        if expired {
            params.not_before = rcgen::date_time_ymd(2019, 1, 1);
            params.not_after = rcgen::date_time_ymd(2020, 1, 1);
        }
        let key = KeyPair::generate()?;
        let leaf = params.signed_by(&key, &self.issuer)?;
        let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert_path, leaf.pem() + &self.issuer.pem())?;
        std::fs::write(&key_path, key.serialize_pem())?;
        Ok((cert_path, key_path))
    }
}

/// Starts a relay serving TLS with `cert` and `key` (data in `root/relay`); returns it and its
/// `wss://` URL.
pub fn start_tls_relay(root: &Path, cert: &Path, key: &Path) -> Result<(Relay, String)> {
    let relay = Relay::start_with(
        &root.join("relay"),
        "127.0.0.1:0",
        &[
            "--tls-cert",
            cert.to_str().context("utf-8 path")?,
            "--tls-key",
            key.to_str().context("utf-8 path")?,
        ],
    )?;
    let url = format!("wss://{}", relay.addr);
    Ok((relay, url))
}
