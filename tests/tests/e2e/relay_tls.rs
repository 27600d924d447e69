//! The relay over TLS, with certificates made here (rcgen): devices sync over `wss://` with a
//! pinned private CA, a wrong CA or an expired certificate is refused in one clear line, and
//! SIGHUP swaps the certificate for new connections while open ones stay.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cloud3_tests::pki::{Ca, start_tls_relay};
use cloud3_tests::{Device, wait_until};

/// `GET path` over TLS with only `version`, trusting `ca`; returns the response.
fn https_get(
    addr: &str,
    ca: &Path,
    version: &'static rustls::SupportedProtocolVersion,
    path: &str,
) -> Result<String> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(ca)? {
        roots.add(cert?)?;
    }
    let config = rustls::ClientConfig::builder_with_provider(
        rustls::crypto::ring::default_provider().into(),
    )
    .with_protocol_versions(&[version])?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1")?.to_owned();
    let connection = rustls::ClientConnection::new(Arc::new(config), name)?;
    let mut tls = rustls::StreamOwned::new(connection, TcpStream::connect(addr)?);
    write!(
        tls,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    match tls.read_to_string(&mut response) {
        Ok(_) => {}
        // The relay may close without a TLS close_notify after `Connection: close`.
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => {}
        Err(e) => return Err(e.into()),
    }
    Ok(response)
}

#[test]
fn devices_sync_over_tls_with_a_pinned_private_ca() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let ca = Ca::new("home CA")?;
    let ca_file = ca.write(tmp.path(), "ca.pem")?;
    let (cert, key) = ca.issue(tmp.path(), false)?;
    let (relay, url) = start_tls_relay(tmp.path(), &cert, &key)?;

    // The HTTP side (health, metrics, the viewer's files) is on the same TLS listener, in
    // TLS 1.2 and 1.3.
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let health = https_get(&relay.addr, &ca_file, version, "/healthz")?;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        assert!(health.ends_with("ok\n"), "{health}");
    }

    let invite = relay.add_user("alice")?;
    let ca_arg = ca_file.to_str().context("utf-8")?;
    let a = Device::init_at(
        &tmp.path().join("a"),
        &url,
        "alice",
        "--invite",
        &invite,
        "a",
        &["--ca", ca_arg],
    )?;
    let code = a.pair(false)?;
    let b = Device::init_at(
        &tmp.path().join("b"),
        &url,
        "alice",
        "--pair",
        &code,
        "b",
        &["--ca", ca_arg],
    )?;
    // The pinned CA was copied: the original can go.
    std::fs::remove_file(&ca_file)?;
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    a.write("big.bin", &bytes);
    a.write("notes/plan.txt", b"over TLS");
    a.sync()?;
    b.sync()?;
    assert_eq!(b.read("big.bin"), Some(bytes));
    assert_eq!(b.read("notes/plan.txt").as_deref(), Some(&b"over TLS"[..]));
    let metrics = https_get(
        &relay.addr,
        &tmp.path().join("a/.cloud3/ca.pem"),
        &rustls::version::TLS13,
        "/metrics",
    )?;
    assert!(
        metrics.contains("cloud3_handshake_seconds_count"),
        "{metrics}"
    );
    Ok(())
}

/// Runs `cloud3 init` expecting it to fail; returns its stderr.
fn init_fails(dir: &Path, url: &str, code: &str, extra: &[&str]) -> Result<String> {
    // Invites and pairing codes are alike to the relay.
    let Err(error) = Device::init_at(dir, url, "alice", "--invite", code, "x", extra) else {
        bail!("init against {url} with {extra:?} succeeded");
    };
    eprintln!("init {url} {extra:?}: {error:#}");
    // The folder is left uninitialised, ready for a retry.
    assert!(!dir.join(".cloud3").exists());
    Ok(format!("{error:#}"))
}

#[test]
fn a_wrong_ca_an_expired_certificate_or_the_wrong_scheme_is_one_clear_error() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let ca = Ca::new("home CA")?;
    let other = Ca::new("someone else's CA")?;
    let other_file = other.write(tmp.path(), "other.pem")?;
    let ca_file = ca.write(tmp.path(), "ca.pem")?;
    let (cert, key) = ca.issue(tmp.path(), false)?;
    let (mut relay, url) = start_tls_relay(tmp.path(), &cert, &key)?;
    let invite = relay.add_user("alice")?;

    let pinned_elsewhere = init_fails(
        &tmp.path().join("x1"),
        &url,
        &invite,
        &["--ca", other_file.to_str().context("utf-8")?],
    )?;
    assert!(
        pinned_elsewhere.contains("certificate is not accepted")
            && pinned_elsewhere.contains("UnknownIssuer"),
        "{pinned_elsewhere}"
    );
    // The system's roots do not know a private CA either.
    let unpinned = init_fails(&tmp.path().join("x2"), &url, &invite, &[])?;
    assert!(
        unpinned.contains("certificate is not accepted") || unpinned.contains("root certificates"),
        "{unpinned}"
    );
    // ws:// to the TLS port says to use wss://.
    let plain = init_fails(
        &tmp.path().join("x3"),
        &format!("ws://{}", relay.addr),
        &invite,
        &[],
    )?;
    assert!(plain.contains("use wss://"), "{plain}");

    // A device whose relay's certificate turns out not to be trusted: the daemon says so once
    // and stops instead of retrying.
    let ca_arg = ca_file.to_str().context("utf-8")?;
    let mut device = Device::init_at(
        &tmp.path().join("d"),
        &url,
        "alice",
        "--invite",
        &invite,
        "d",
        &["--ca", ca_arg],
    )?;
    std::fs::copy(&other_file, tmp.path().join("d/.cloud3/ca.pem"))?;
    device.start_daemon()?;
    let status = device.wait_daemon_exit(Duration::from_secs(20))?;
    assert!(!status.success());
    let log = device.daemon_log();
    eprintln!("daemon log: {log}");
    assert_eq!(
        log.matches("certificate is not accepted").count(),
        1,
        "{log}"
    );

    // An expired certificate from the right CA.
    relay.stop()?;
    let expired_dir = tmp.path().join("expired");
    std::fs::create_dir(&expired_dir)?;
    let (cert, key) = ca.issue(&expired_dir, true)?;
    let (relay, url) = start_tls_relay(&expired_dir, &cert, &key)?;
    let invite = relay.add_user("alice")?;
    let expired = init_fails(&tmp.path().join("x4"), &url, &invite, &["--ca", ca_arg])?;
    assert!(expired.to_lowercase().contains("expired"), "{expired}");
    Ok(())
}

#[test]
fn sighup_serves_a_new_certificate_to_new_connections_and_keeps_open_ones() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (old_ca, new_ca) = (Ca::new("old CA")?, Ca::new("new CA")?);
    let old_file = old_ca.write(tmp.path(), "old.pem")?;
    let new_file = new_ca.write(tmp.path(), "new.pem")?;
    let (cert, key) = old_ca.issue(tmp.path(), false)?;
    let (relay, url) = start_tls_relay(tmp.path(), &cert, &key)?;
    let invite = relay.add_user("alice")?;
    let mut a = Device::init_at(
        &tmp.path().join("a"),
        &url,
        "alice",
        "--invite",
        &invite,
        "a",
        &["--ca", old_file.to_str().context("utf-8")?],
    )?;
    let code = a.pair(false)?;
    a.start_daemon()?;
    a.write("before.txt", b"before the renewal");
    wait_until(Duration::from_secs(20), "a's daemon online", || {
        a.command(&["status"])
            .map(|o| String::from_utf8_lossy(&o.stdout).contains("running, connected"))
            .unwrap_or(false)
    })?;

    // The certificate is renewed (by another CA, so the test can tell them apart).
    new_ca.issue(tmp.path(), false)?;
    relay.hangup();
    // A new connection gets the new certificate: a device pinned to the new CA enrols...
    let b = wait_for_new_certificate(&tmp.path().join("b"), &url, &code, &new_file)?;
    // ...and one pinned to the old CA is refused.
    let refused = init_fails(
        &tmp.path().join("c"),
        &url,
        &b.pair(false)?,
        &["--ca", old_file.to_str().context("utf-8")?],
    )?;
    assert!(refused.contains("certificate is not accepted"), "{refused}");
    // a's daemon kept its connection: its new file reaches b through it.
    a.write("after.txt", b"after the renewal");
    wait_until(Duration::from_secs(30), "after.txt at b", || {
        b.sync().is_ok() && b.read("after.txt").is_some()
    })?;
    assert_eq!(
        b.read("before.txt").as_deref(),
        Some(&b"before the renewal"[..])
    );
    let log = a.daemon_log();
    assert!(
        !log.contains("reconnecting") && !log.contains("unreachable"),
        "{log}"
    );
    a.stop_daemon()?;
    Ok(())
}

/// Enrols a device pinned to `ca` once the relay serves the new certificate (SIGHUP is
/// handled asynchronously).
fn wait_for_new_certificate(dir: &Path, url: &str, code: &str, ca: &Path) -> Result<Device> {
    let ca = ca.to_str().context("utf-8")?;
    let mut last = None;
    for _ in 0..50 {
        match Device::init_at(dir, url, "alice", "--pair", code, "b", &["--ca", ca]) {
            Ok(device) => return Ok(device),
            Err(error) => last = Some(error),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the new certificate was never served: {last:?}")
}
