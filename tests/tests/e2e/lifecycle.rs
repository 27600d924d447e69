//! Storage lifecycle (issue 17) with real processes: a device over its account's quota is
//! refused with a clear status, keeps every local file, and syncs on its own once the relay's
//! garbage collection frees space.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use cloud3_tests::{Device, Relay, binary, wait_until};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const MIB: usize = 1 << 20;

/// Incompressible bytes.
fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

fn status(device: &Device) -> Result<serde_json::Value> {
    let output = device.command(&["status", "--json"])?;
    cloud3_tests::check(&output, "cloud3 status --json")?;
    serde_json::from_slice(&output.stdout).context("status JSON")
}

/// Runs `cloud3-relay ARGS --data DATA` (through the running relay's admin socket).
fn relay_admin(relay: &Relay, args: &[&str]) -> Result<String> {
    let output = Command::new(binary("cloud3-relay"))
        .args(args)
        .arg("--data")
        .arg(&relay.data)
        .output()
        .context("run cloud3-relay")?;
    cloud3_tests::check(&output, &format!("cloud3-relay {args:?}"))?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn a_device_over_quota_keeps_its_files_and_syncs_once_gc_frees_space() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let relay = Relay::start_with(
        &tmp.path().join("relay"),
        "127.0.0.1:0",
        &[
            "--quota-mib",
            "3",
            "--gc-interval-secs",
            "0",
            "--gc-grace-secs",
            "1",
        ],
    )?;
    let code = relay.add_user("alice")?;
    let mut laptop = Device::init(
        &tmp.path().join("laptop"),
        &relay,
        "alice",
        "--invite",
        &code,
        "laptop",
    )?;
    let code = laptop.pair(false)?;
    let desktop = Device::init(
        &tmp.path().join("desktop"),
        &relay,
        "alice",
        "--pair",
        &code,
        "desktop",
    )?;

    // 2 MiB stored, then deleted: inside the 30-day window it still counts.
    let old = random_bytes(1, 2 * MIB);
    laptop.write("old.bin", &old);
    laptop.sync()?;
    std::fs::remove_file(laptop.dir.join("old.bin"))?;
    laptop.sync()?;

    // 2 MiB more does not fit in 3 MiB: refused, said so, and the file stays.
    let new = random_bytes(2, 2 * MIB);
    laptop.write("new.bin", &new);
    let refused = laptop.command(&["sync"])?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure!(!refused.status.success(), "sync over quota must fail");
    ensure!(
        stderr.contains("storage quota full"),
        "the reason: {stderr}"
    );
    laptop.start_daemon()?;
    wait_until(
        Duration::from_secs(30),
        "status to show the full quota",
        || status(&laptop).is_ok_and(|s| s["quota_full"] == true),
    )?;
    let text = laptop.command(&["status"])?;
    let text = String::from_utf8_lossy(&text.stdout);
    ensure!(text.contains("storage quota full"), "{text}");
    ensure!(
        laptop.read("new.bin").as_deref() == Some(new.as_slice()),
        "the local file is kept"
    );

    // The account's window is shortened to 0 days and the operator collects: the deleted
    // file's 2 MiB are freed and the daemon's next try goes through.
    std::thread::sleep(Duration::from_secs(2)); // past the 1 s grace of old.bin's upload
    relay_admin(&relay, &["user", "retention", "alice", "0"])?;
    let report = relay_admin(&relay, &["gc"])?;
    eprintln!("{report}");
    ensure!(
        report.contains("freed ") && !report.contains("freed 0 blobs"),
        "the deleted file's blobs are freed: {report}"
    );
    wait_until(
        Duration::from_secs(90),
        "the upload once space is freed",
        || {
            status(&laptop).is_ok_and(|s| {
                s["quota_full"] == false && s["pending_uploads"] == 0 && s["connected"] == true
            })
        },
    )?;
    wait_until(
        Duration::from_secs(60),
        "new.bin on the other device",
        || desktop.sync().is_ok() && desktop.read("new.bin").as_deref() == Some(new.as_slice()),
    )?;
    ensure!(desktop.read("old.bin").is_none());
    laptop.stop_daemon()?;
    Ok(())
}
