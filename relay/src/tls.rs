//! TLS for the relay's listener (rustls, TLS 1.2 and 1.3): the certificate chain and key come
//! from PEM files and are reloaded on SIGHUP. A reload swaps the certificate the next handshake
//! gets; connections already open keep theirs.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// Why the certificate or key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file does not read or parse.
    #[error("cannot read {what} from {}: {reason}", path.display())]
    Pem {
        /// "certificate chain" or "private key".
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The chain has no certificate.
    #[error("{} holds no certificate", .0.display())]
    NoCertificate(PathBuf),
    /// The key is unsupported or does not match the certificate.
    #[error("the key in {} does not fit the certificate: {reason}", key.display())]
    Key {
        /// The key file.
        key: PathBuf,
        /// Why.
        reason: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The certificate the next handshake is given, swapped whole on reload.
#[derive(Debug)]
pub struct ReloadingCert {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadingCert {
    /// Loads the chain (`cert`, leaf first) and the key (`key`).
    pub fn load(cert: &Path, key: &Path) -> Result<ReloadingCert, TlsError> {
        Ok(ReloadingCert {
            current: RwLock::new(Arc::new(load_pair(cert, key)?)),
            cert: cert.to_owned(),
            key: key.to_owned(),
        })
    }

    /// Reads the files again; on error the current certificate stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = Arc::new(load_pair(&self.cert, &self.key)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn provider() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

fn load_pair(cert: &Path, key: &Path) -> Result<CertifiedKey, TlsError> {
    let pem = |what: &'static str, path: &Path, e: &dyn std::fmt::Display| TlsError::Pem {
        what,
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem("certificate chain", cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem("certificate chain", cert, &e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(cert.to_owned()));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| pem("private key", key, &e))?;
    CertifiedKey::from_der(chain, private, &provider()).map_err(|e| TlsError::Key {
        key: key.to_owned(),
        reason: e.to_string(),
    })
}

/// A server configuration over `certs`: TLS 1.2 and 1.3, HTTP/1.1 only.
pub fn server_config(certs: Arc<ReloadingCert>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
