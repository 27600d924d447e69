//! The relay's malware scan with a real clamd (issue 16): what `hold` and `flag` do with a
//! flagged version on the devices, the deny list without clamd, releasing a false positive,
//! clamd killed and restarted, and a version over clamd's stream limit.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cloud3_tests::clamd::{Clamd, EICAR_SIGNATURE, HASH_SIGNATURE, eicar, hash_listed};
use cloud3_tests::{Device, Relay, check, wait_until};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

/// Generous: a scan retried after clamd returns waits out its back-off (up to a minute).
const SCAN_WAIT: Duration = Duration::from_secs(120);

/// A relay started with `flags`, and user `user` with two devices.
fn two_devices(root: &Path, flags: &[&str], user: &str) -> Result<(Relay, Device, Device)> {
    let relay = Relay::start_with(&root.join("relay"), "127.0.0.1:0", flags)?;
    let (a, b) = devices_of(&relay, root, user)?;
    Ok((relay, a, b))
}

fn devices_of(relay: &Relay, root: &Path, user: &str) -> Result<(Device, Device)> {
    let invite = relay.add_user(user)?;
    let a = Device::init(
        &root.join(format!("{user}-a")),
        relay,
        user,
        "--invite",
        &invite,
        "a",
    )?;
    let code = a.pair(false)?;
    let b = Device::init(
        &root.join(format!("{user}-b")),
        relay,
        user,
        "--pair",
        &code,
        "b",
    )?;
    Ok((a, b))
}

/// `cloud3-relay scan list --all` on the relay.
fn scan_list(relay: &Relay) -> Result<String> {
    let output = relay.admin(&["scan", "list", "--all"])?;
    check(&output, "cloud3-relay scan list")?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Waits until `scan list` has `n` lines containing `needle`; returns the list.
fn wait_for_verdicts(relay: &Relay, needle: &str, n: usize) -> Result<String> {
    let mut last = String::new();
    let waited = wait_until(SCAN_WAIT, needle, || {
        last = scan_list(relay).unwrap_or_default();
        last.lines().filter(|l| l.contains(needle)).count() >= n
    });
    if waited.is_err() {
        bail!("no {n} verdicts {needle:?} in time; scan list:\n{last}");
    }
    Ok(last)
}

fn status_json(device: &Device) -> Result<Value> {
    let output = device.command(&["status", "--json"])?;
    check(&output, "cloud3 status --json")?;
    serde_json::from_slice(&output.stdout).context("status json")
}

/// The scan note `status --json` gives for `path`.
fn scan_note(device: &Device, path: &str) -> Result<Value> {
    let status = status_json(device)?;
    status["scan"]["files"]
        .as_array()
        .and_then(|files| files.iter().find(|f| f["path"] == path).cloned())
        .with_context(|| format!("no scan note for {path} in {status}"))
}

/// A zip archive holding `name` with `bytes`, made by Debian's `zip`.
fn zip_of(dir: &Path, name: &str, bytes: &[u8]) -> Result<Vec<u8>> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(name), bytes)?;
    let output = std::process::Command::new("zip")
        .current_dir(dir)
        .args(["-q", "archive.zip", name])
        .output()
        .context("run zip (apt-get install zip)")?;
    check(&output, "zip")?;
    Ok(std::fs::read(dir.join("archive.zip"))?)
}

#[test]
fn hold_mode_never_serves_eicar_even_zipped_and_a_clean_file_next_to_it_syncs() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let clamd = Clamd::start(&tmp.path().join("clamd"), &[], "25M")?;
    let (relay, a, b) = two_devices(
        tmp.path(),
        &["--clamd", &clamd.addr(), "--scan-policy", "hold"],
        "alice",
    )?;
    let zipped = zip_of(&tmp.path().join("zip"), "inner.txt", &eicar())?;
    a.write("eicar.txt", eicar());
    a.write("docs/archive.zip", &zipped);
    a.write("notes.txt", "a clean file next to it\n");
    a.write("listed.bin", hash_listed());
    a.sync()?;
    // B may ask before or after the scan: under hold it is never served either way.
    b.sync()?;
    assert_eq!(b.read("eicar.txt"), None, "held while unscanned");
    let flagged = format!("Flagged {{ engine: clamav, signature: {EICAR_SIGNATURE} }}");
    wait_for_verdicts(&relay, &flagged, 2)?;
    wait_for_verdicts(&relay, HASH_SIGNATURE, 1)?;
    b.sync()?;
    assert_eq!(b.read("listed.bin"), None, "flagged by clamd's .hsb entry");
    assert_eq!(
        b.read("notes.txt").as_deref(),
        Some(&b"a clean file next to it\n"[..])
    );
    assert_eq!(b.read("eicar.txt"), None, "flagged: never reaches B");
    assert_eq!(b.read("docs/archive.zip"), None, "zipped: never reaches B");
    for path in ["eicar.txt", "docs/archive.zip"] {
        let note = scan_note(&b, path)?;
        assert_eq!(note["engine"], "clamav", "{note}");
        assert_eq!(note["signature"], EICAR_SIGNATURE, "{note}");
        assert_eq!(note["verdict"], flagged.as_str(), "{note}");
    }
    let text = b.command(&["status"])?;
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("eicar.txt") && text.contains(EICAR_SIGNATURE),
        "{text}"
    );
    // The uploader is told the same: its copy goes to quarantine, kept, not deleted.
    a.sync()?;
    assert_eq!(a.read("eicar.txt"), None);
    assert_eq!(
        std::fs::read(a.dir.join(".cloud3/quarantine/eicar.txt"))?,
        eicar()
    );
    // The document still names the file (nothing was deleted): B still reports it.
    b.sync()?;
    scan_note(&b, "eicar.txt")?;
    Ok(())
}

#[test]
fn flag_mode_syncs_while_clamd_is_down_then_quarantines_what_it_flags() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let clamd_dir = tmp.path().join("clamd");
    // clamd is configured but not running yet: versions stay pending and syncing goes on.
    let socket = clamd_dir.join("clamd.sock");
    let addr = format!("unix:{}", socket.display());
    let (relay, a, b) = two_devices(tmp.path(), &["--clamd", &addr], "alice")?;
    a.write("eicar.txt", eicar());
    a.write("clean.txt", "fine\n");
    a.sync()?;
    b.sync()?;
    assert_eq!(
        b.read("eicar.txt"),
        Some(eicar()),
        "flag mode syncs at once"
    );
    let list = scan_list(&relay)?;
    assert!(list.contains("Unscanned { pending }"), "{list}");
    let _clamd = Clamd::start(&clamd_dir, &[], "25M")?;
    let flagged = format!("Flagged {{ engine: clamav, signature: {EICAR_SIGNATURE} }}");
    wait_for_verdicts(&relay, &flagged, 1)?;
    wait_for_verdicts(&relay, "\tClean\t", 1)?;
    b.sync()?;
    assert_eq!(b.read("eicar.txt"), None, "moved out of the folder");
    assert_eq!(b.read("clean.txt").as_deref(), Some(&b"fine\n"[..]));
    assert_eq!(
        std::fs::read(b.dir.join(".cloud3/quarantine/eicar.txt"))?,
        eicar(),
        "kept in quarantine, never deleted"
    );
    let status = status_json(&b)?;
    let quarantined = &status["scan"]["quarantined"][0];
    assert_eq!(quarantined["path"], "eicar.txt", "{status}");
    assert_eq!(quarantined["engine"], "clamav", "{status}");
    assert_eq!(quarantined["signature"], EICAR_SIGNATURE, "{status}");
    let listed = b.command(&["quarantine", "list"])?;
    check(&listed, "quarantine list")?;
    assert!(String::from_utf8_lossy(&listed.stdout).contains("eicar.txt\tclamav"));
    // Quarantine is local: A's next sync records no deletion, so the file stays in the
    // document (A quarantines its own copy too).
    a.sync()?;
    b.sync()?;
    scan_note(&b, "eicar.txt")?;
    // One command brings it back, and it stays.
    let restored = b.command(&["quarantine", "restore", "eicar.txt"])?;
    check(&restored, "quarantine restore")?;
    assert_eq!(b.read("eicar.txt"), Some(eicar()));
    b.sync()?;
    assert_eq!(b.read("eicar.txt"), Some(eicar()), "not quarantined again");
    Ok(())
}

#[test]
fn the_deny_list_catches_a_file_without_clamd_and_release_lets_it_through() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let report = b"quarterly numbers, wrongly listed\n".to_vec();
    let deny = tmp.path().join("deny.txt");
    std::fs::write(
        &deny,
        format!(
            "# operator's list\n{} Known.Bad.Report\n",
            cloud3_engine::ids::ChunkId::of(&report).to_hex()
        ),
    )?;
    let deny_arg = deny.to_str().context("utf-8")?;
    let (relay, a, b) = two_devices(
        tmp.path(),
        &["--deny-list", deny_arg, "--scan-policy", "hold"],
        "alice",
    )?;
    a.write("report.txt", &report);
    a.write("ok.txt", "ok\n");
    a.sync()?;
    let flagged = "Flagged { engine: deny-list, signature: Known.Bad.Report }";
    let list = wait_for_verdicts(&relay, flagged, 1)?;
    wait_for_verdicts(&relay, "\tClean\t", 1)?;
    b.sync()?;
    assert_eq!(b.read("ok.txt").as_deref(), Some(&b"ok\n"[..]));
    assert_eq!(b.read("report.txt"), None);
    let note = scan_note(&b, "report.txt")?;
    assert_eq!(note["engine"], "deny-list", "{note}");
    // The operator releases the false positive: B gets it on its next sync.
    let content = list
        .lines()
        .find(|l| l.contains(flagged))
        .and_then(|l| l.split('\t').nth(1))
        .context("content hash in scan list")?;
    let released = relay.admin(&["scan", "release", "alice", content])?;
    check(&released, "scan release")?;
    let list = scan_list(&relay)?;
    assert!(list.contains("Clean (released)"), "{list}");
    b.sync()?;
    assert_eq!(b.read("report.txt"), Some(report));
    assert!(
        status_json(&b)?["scan"]["files"]
            .as_array()
            .is_none_or(|f| f.is_empty()),
        "nothing left to report"
    );
    // A wrong hash is a clear error.
    let wrong = relay.admin(&["scan", "release", "alice", "beef"])?;
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("content hash"));
    Ok(())
}

#[test]
fn a_reloaded_deny_list_flags_a_version_devices_already_hold() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let deny = tmp.path().join("deny.txt");
    std::fs::write(&deny, "")?;
    let deny_arg = deny.to_str().context("utf-8")?;
    let (relay, a, b) = two_devices(tmp.path(), &["--deny-list", deny_arg], "alice")?;
    let bytes = b"turned out to be bad\n".to_vec();
    a.write("late.txt", &bytes);
    a.sync()?;
    wait_for_verdicts(&relay, "\tClean\t", 1)?;
    b.sync()?;
    assert_eq!(b.read("late.txt"), Some(bytes.clone()));
    std::fs::write(
        &deny,
        format!(
            "{} Late.Listing\n",
            cloud3_engine::ids::ChunkId::of(&bytes).to_hex()
        ),
    )?;
    relay.hangup();
    wait_for_verdicts(&relay, "Late.Listing", 1)?;
    b.sync()?;
    assert_eq!(b.read("late.txt"), None);
    assert_eq!(
        std::fs::read(b.dir.join(".cloud3/quarantine/late.txt"))?,
        bytes
    );
    Ok(())
}

#[test]
fn clamd_killed_mid_scan_and_restarted_scans_later_and_other_users_go_on() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let mut clamd = Clamd::start(&tmp.path().join("clamd"), &[], "100M")?;
    let config = tmp.path().join("relay.toml");
    std::fs::write(&config, "[scan-policy-accounts]\nbob = \"flag\"\n")?;
    let config_arg = config.to_str().context("utf-8")?;
    let (relay, a, b) = two_devices(
        tmp.path(),
        &[
            "--clamd",
            &clamd.addr(),
            "--clamd-max-stream-mib",
            "100",
            "--scan-policy",
            "hold",
            "--config",
            config_arg,
        ],
        "alice",
    )?;
    let (c, d) = devices_of(&relay, tmp.path(), "bob")?;
    // Large enough that clamd is still reading it when it is killed right after the upload.
    let seed = 16u64;
    let mut big = vec![0u8; 60 << 20];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut big);
    a.write("big.bin", &big);
    a.sync()?;
    clamd.kill();
    // Meanwhile bob (flag policy) syncs as usual, and alice's B waits and says why.
    c.write("bob.txt", "bob's file\n");
    c.sync()?;
    d.sync()?;
    assert_eq!(d.read("bob.txt").as_deref(), Some(&b"bob's file\n"[..]));
    b.sync()?;
    assert_eq!(b.read("big.bin"), None, "held while clamd is down");
    let note = scan_note(&b, "big.bin")?;
    assert_eq!(note["verdict"], "Unscanned { pending }", "{note}");
    assert_eq!(note["refused"], true, "{note}");
    clamd.restart()?;
    let list = wait_for_verdicts(&relay, "alice\t", 1)
        .and_then(|_| wait_for_verdicts(&relay, "\tClean\t", 2))?;
    assert!(!list.contains("pending"), "{list}");
    b.sync()?;
    assert!(
        b.read("big.bin") == Some(big),
        "scanned later, nothing lost (seed {seed})"
    );
    Ok(())
}

#[test]
fn a_version_over_the_stream_limit_is_reported_unscanned_too_large() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let clamd = Clamd::start(&tmp.path().join("clamd"), &[], "1M")?;
    let (relay, a, b) = two_devices(
        tmp.path(),
        &["--clamd", &clamd.addr(), "--clamd-max-stream-mib", "1"],
        "alice",
    )?;
    let big = vec![7u8; 2 << 20];
    a.write("big.bin", &big);
    a.sync()?;
    wait_for_verdicts(&relay, "Unscanned { too large }", 1)?;
    b.sync()?;
    assert!(b.read("big.bin") == Some(big), "flag mode serves it");
    let note = scan_note(&b, "big.bin")?;
    assert_eq!(note["verdict"], "Unscanned { too large }", "{note}");
    a.sync()?;
    let note = scan_note(&a, "big.bin")?;
    assert_eq!(note["verdict"], "Unscanned { too large }", "{note}");
    Ok(())
}
