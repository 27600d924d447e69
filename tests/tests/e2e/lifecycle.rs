//! Storage lifecycle (issue 17) with real processes: a device over its account's quota is
//! refused with a clear status, keeps every local file, and syncs on its own once the relay's
//! garbage collection frees space.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use cloud3_tests::{Device, Relay, binary, random_bytes, wait_until};

const MIB: usize = 1 << 20;

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
        || laptop.status_json().is_ok_and(|s| s["quota_full"] == true),
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
            laptop.status_json().is_ok_and(|s| {
                s["quota_full"] == false
                    && s["pending"]["upload_files"] == 0
                    && s["connected"] == true
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

/// Three versions of a file, and two deleted files; the relay restarts with its clock moved so
/// that the first replacement (and the first deletion) is outside a one-day window and the
/// second inside; after `cloud3-relay gc`, on a device that never held any of them: `history`
/// lists only what can be restored and says what was dropped, a dropped version or file is
/// refused with the reason (nothing changes), and what is inside the window restores.
#[test]
fn a_version_inside_the_window_restores_after_gc_and_one_outside_is_freed() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let data = tmp.path().join("relay");
    let flags = ["--gc-interval-secs", "0", "--retention-days", "1"];
    let mut relay = Relay::start_with(&data, "127.0.0.1:0", &flags)?;
    let code = relay.add_user("alice")?;
    let laptop = Device::init(
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
    let versions: Vec<Vec<u8>> = (0..3).map(|n| random_bytes(10 + n, 300_000)).collect();
    let early_gone = random_bytes(20, 200_000);
    let late_gone = random_bytes(21, 200_000);
    laptop.write("early-gone.bin", &early_gone);
    laptop.write("late-gone.bin", &late_gone);
    // Change times are whole seconds and the relay's cutoff runs on with real time after its
    // restart: the second replacement comes 25 s after the first, so the cutoff (5 s after
    // the first) stays between them while the device's checks run.
    let mut replaced_at = Vec::new();
    for (n, bytes) in versions.iter().enumerate() {
        match n {
            1 => {
                std::thread::sleep(Duration::from_secs(10));
                std::fs::remove_file(laptop.dir.join("early-gone.bin"))?;
            }
            2 => {
                std::thread::sleep(Duration::from_secs(25));
                std::fs::remove_file(laptop.dir.join("late-gone.bin"))?;
            }
            _ => {}
        }
        if n > 0 {
            replaced_at.push(std::time::SystemTime::now());
        }
        laptop.write("doc.bin", bytes);
        laptop.sync()?;
    }
    let packs = |dir: &std::path::Path| -> u64 { walk_bytes(&dir.join("packs")) };
    let before = packs(&data);

    // Move the relay's clock so that now minus one day falls 5 s after the first replacement
    // (it then runs on with real time: the checks below must come within about 20 s).
    let addr = relay.addr.clone();
    relay.stop()?;
    let cutoff = replaced_at[0] + Duration::from_secs(5);
    let skew = 86_400
        - i64::try_from(
            std::time::SystemTime::now()
                .duration_since(cutoff)?
                .as_secs(),
        )?;
    let skew = skew.to_string();
    let flags = [
        "--gc-interval-secs",
        "0",
        "--retention-days",
        "1",
        "--gc-grace-secs",
        "60",
        "--clock-skew-secs",
        skew.as_str(),
    ];
    let relay = Relay::start_with(&data, &addr, &flags)?;
    let checks_started = std::time::Instant::now();
    let report = relay_admin(&relay, &["gc"])?;
    eprintln!("{report}");
    ensure!(
        !report.contains("freed 0 blobs"),
        "the first version is freed: {report}"
    );
    let after = packs(&data);
    ensure!(
        after + 250_000 <= before,
        "its space is reclaimed on disk: {before} -> {after} bytes"
    );

    // The desktop never held any of it; its sync learns the window and the relay's clock.
    desktop.sync()?;
    ensure!(desktop.read("doc.bin").as_deref() == Some(versions[2].as_slice()));
    let listed = history(&desktop, "doc.bin")?;
    eprintln!("history doc.bin:\n{listed}");
    ensure!(
        numbers(&listed) == [1, 2],
        "only versions 1 and 2 are listed:\n{listed}"
    );
    ensure!(
        listed.contains("1 older version was dropped")
            && listed.contains("outside the relay's 1-day retention window"),
        "history says what was dropped:\n{listed}"
    );
    let refused = desktop.command(&["restore", "doc.bin", "--version", "0"])?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        !refused.status.success() && stderr.contains("version 0 of doc.bin was dropped"),
        "a dropped version is refused with the reason: {stderr}"
    );
    ensure!(
        desktop.read("doc.bin").as_deref() == Some(versions[2].as_slice()),
        "a refused restore changes nothing"
    );

    // The file deleted outside the window: history says so, restore refuses.
    let history_early = history(&desktop, "early-gone.bin")?;
    ensure!(
        numbers(&history_early).is_empty()
            && history_early.contains("its content was dropped and cannot be restored"),
        "{history_early}"
    );
    let refused = desktop.command(&["restore", "early-gone.bin"])?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure!(
        !refused.status.success() && stderr.contains("early-gone.bin was deleted before"),
        "a file deleted outside the window is refused: {stderr}"
    );
    ensure!(desktop.read("early-gone.bin").is_none());

    // Inside the window: the deleted file and version 1 come back from the relay.
    let history_late = history(&desktop, "late-gone.bin")?;
    ensure!(
        numbers(&history_late) == [0] && history_late.contains("(deleted; "),
        "{history_late}"
    );
    let restored = desktop.command(&["restore", "late-gone.bin"])?;
    cloud3_tests::check(&restored, "cloud3 restore late-gone.bin")?;
    ensure!(
        desktop.read("late-gone.bin").as_deref() == Some(late_gone.as_slice()),
        "the file deleted inside the window restores"
    );
    let restored = desktop.command(&["restore", "doc.bin", "--version", "1"])?;
    cloud3_tests::check(&restored, "cloud3 restore --version 1")?;
    ensure!(
        desktop.read("doc.bin").as_deref() == Some(versions[1].as_slice()),
        "the version inside the window restores"
    );
    // Had they taken 20 s, version 1 would have been dropped too and a check above failed.
    eprintln!(
        "the checks after the relay's restart took {:?}",
        checks_started.elapsed()
    );
    Ok(())
}

/// `cloud3 history PATH` on `device`, its standard output.
fn history(device: &Device, path: &str) -> Result<String> {
    let output = device.command(&["history", path])?;
    cloud3_tests::check(&output, &format!("cloud3 history {path}"))?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The version numbers `cloud3 history` lists.
fn numbers(history: &str) -> Vec<usize> {
    history
        .lines()
        .filter_map(|line| line.split_whitespace().next()?.parse().ok())
        .collect()
}

fn walk_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => walk_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}
