//! `cloud3 status` as a person reads it (issue 21): conflict copies with the file each is a copy
//! of, when changes last went each way (kept across a restart), the other devices by name with
//! when they were last seen ("unknown while offline" when the relay is unreachable), and what is
//! pending with its size.

use std::time::Duration;

use anyhow::{Context, Result};
use cloud3_tests::{Device, Relay, check, wait_until};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use crate::{logged, setup};

const WAIT: Duration = Duration::from_secs(30);

fn status_text(device: &Device) -> Result<String> {
    let output = device.command(&["status"])?;
    check(&output, "cloud3 status")?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The entry for the device named `name` in `status`'s device list.
fn device_named(status: &Value, name: &str) -> Option<Value> {
    status["devices"]
        .as_array()?
        .iter()
        .find(|device| device["name"] == name)
        .cloned()
}

#[test]
fn status_names_conflicts_sync_times_devices_and_pending_work() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (relay, mut devices) = setup(tmp.path(), 2)?;
    let result = status_story(tmp.path(), relay, &mut devices);
    logged(&devices, result)
}

fn status_story(root: &std::path::Path, mut relay: Relay, devices: &mut [Device]) -> Result<()> {
    // A conflict: both devices change report.txt before hearing of the other's change.
    devices[0].write("report.txt", "from a");
    devices[0].sync()?;
    devices[1].sync()?;
    devices[0].write("report.txt", "from a, again");
    devices[1].write("report.txt", "from b, later");
    devices[0].sync()?;
    devices[1].sync()?;
    devices[0].sync()?;
    let a = &devices[0];
    let copy = a
        .tree()
        .into_keys()
        .find(|path| path.starts_with("report (conflict from "))
        .context("a conflict copy on A")?;

    // Without a daemon: what the last `sync` recorded.
    let status = a.status_json()?;
    assert_eq!(
        status["conflicts"],
        serde_json::json!([{ "copy": copy, "original": "report.txt" }]),
        "{status}"
    );
    let text = status_text(a)?;
    assert!(
        text.contains(&format!("  {copy}  (a copy of report.txt)")),
        "{text}"
    );
    let sent = status["sync"]["last_upload"]
        .as_i64()
        .context("last upload")?;
    assert!(
        status["sync"]["last_download"].is_i64(),
        "A applied B's change: {status}"
    );
    assert!(!text.contains("never"), "both ways and in sync: {text}");
    let dev1 = device_named(&status, "dev1").context("dev1 listed by name")?;
    assert!(dev1["online"].is_null(), "no daemon: unknown ({status})");
    assert!(text.contains("devices:  unknown while offline"), "{text}");

    // Both daemons: B is online by name, since when A saw it come.
    devices[0].start_daemon()?;
    devices[1].start_daemon()?;
    let (a, b) = (&devices[0], &devices[1]);
    let b_id = b.status_json()?["device"]
        .as_str()
        .context("B's id")?
        .to_owned();
    wait_until(WAIT, "A to see dev1 online", || {
        a.status_json().is_ok_and(|s| {
            device_named(&s, "dev1").is_some_and(|d| d["online"] == true && d["id"] == *b_id)
        })
    })?;
    let text = status_text(a)?;
    assert!(
        text.contains(&format!("  dev1 ({b_id}): online since ")),
        "{text}"
    );
    assert!(!text.contains("unknown while offline"), "{text}");
    // A restart keeps when changes last went each way.
    devices[0].stop_daemon()?;
    devices[0].start_daemon()?;
    let a = &devices[0];
    wait_until(WAIT, "A's new daemon to see dev1 online", || {
        a.status_json().is_ok_and(|s| {
            s["source"] == "daemon" && device_named(&s, "dev1").is_some_and(|d| d["online"] == true)
        })
    })?;
    let status = a.status_json()?;
    assert_eq!(status["sync"]["last_upload"], sent, "{status}");
    assert!(status["sync"]["last_download"].is_i64(), "{status}");

    // B stops: A shows when it last saw it.
    devices[1].stop_daemon()?;
    let a = &devices[0];
    wait_until(WAIT, "A to see dev1 gone", || {
        a.status_json().is_ok_and(|s| {
            device_named(&s, "dev1")
                .is_some_and(|d| d["online"] == false && d["last_seen"].is_i64())
        })
    })?;
    let text = status_text(a)?;
    assert!(
        text.contains(&format!("  dev1 ({b_id}): last seen ")),
        "{text}"
    );

    // The relay goes away: whether B is online is unknown, not "offline" or "online".
    let addr = relay.addr.clone();
    relay.kill();
    wait_until(WAIT, "A to notice the relay is gone", || {
        a.status_json().is_ok_and(|s| s["connected"] == false)
    })?;
    let status = a.status_json()?;
    let dev1 = device_named(&status, "dev1").context("dev1 still listed")?;
    assert!(dev1["online"].is_null(), "{status}");
    assert!(dev1["last_seen"].is_i64(), "{status}");
    let text = status_text(a)?;
    assert!(text.contains("devices:  unknown while offline"), "{text}");

    // Written while offline: pending, with its size.
    let size = 300_000u64;
    let mut bytes = vec![0u8; size as usize];
    ChaCha8Rng::seed_from_u64(21).fill_bytes(&mut bytes);
    let outside = root.join("offline.bin");
    std::fs::write(&outside, &bytes)?;
    std::fs::rename(&outside, a.dir.join("offline.bin"))?;
    wait_until(WAIT, "the offline file to be pending", || {
        a.status_json()
            .is_ok_and(|s| s["pending"]["upload_files"] == 1)
    })?;
    let status = a.status_json()?;
    assert_eq!(status["pending"]["upload_bytes"], size, "{status}");
    let text = status_text(a)?;
    assert!(
        text.contains("pending:  to send 1 file (292.97 KiB)"),
        "{text}"
    );

    // The relay returns: sent, nothing pending, a later upload time.
    let _relay = Relay::start_on(&relay.data, &addr)?;
    wait_until(WAIT, "the offline file to be sent", || {
        a.status_json().is_ok_and(|s| {
            s["connected"] == true
                && s["pending"]["upload_files"] == 0
                && s["sync"]["last_upload"].as_i64().is_some_and(|t| t > sent)
        })
    })?;
    let text = status_text(a)?;
    assert!(
        text.contains("pending:  nothing to send or fetch"),
        "{text}"
    );
    Ok(())
}
