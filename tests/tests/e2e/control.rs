//! The command line while `cloud3 run` holds the folder: `history`, `restore`, `status` and
//! `devices` ask the daemon over its control socket; a stale socket is not trusted; another user
//! is refused. Also: a daemon started with a relative `--dir` (found while testing these).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cloud3_tests::{Device, check, wait_until};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{logged, setup, versions};

/// How long a daemon may take to answer, connected to the relay.
const CONNECTED: Duration = Duration::from_secs(30);

/// Generous bound for a change to reach the other daemon (the figure is printed).
const PROPAGATION: Duration = Duration::from_secs(10);

fn socket(device: &Device) -> PathBuf {
    device.dir.join(".cloud3/control.sock")
}

/// Whether `device` holds `bytes` at `path`. Read only once the size matches: polling reads
/// of a watched folder used to starve its daemon (every open was an event, before the watcher
/// dropped opens and reads), and reading a large file every few milliseconds is waste anyway.
fn holds(device: &Device, path: &str, bytes: &[u8]) -> bool {
    std::fs::symlink_metadata(device.dir.join(path)).is_ok_and(|m| m.len() == bytes.len() as u64)
        && device.read(path).as_deref() == Some(bytes)
}

/// Runs a command that must succeed; returns its stdout.
fn run(device: &Device, args: &[&str]) -> Result<String> {
    let output = device.command(args)?;
    check(&output, &format!("cloud3 {}", args.join(" ")))?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[test]
fn restore_and_undelete_with_both_daemons_running_reach_the_other_device() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, mut devices) = setup(tmp.path(), 2)?;
    for device in &mut devices {
        device.start_daemon()?;
    }
    logged(&devices, restore_and_undelete(&devices[0], &devices[1]))
}

fn restore_and_undelete(a: &Device, b: &Device) -> Result<()> {
    a.wait_connected(CONNECTED)?;
    b.wait_connected(CONNECTED)?;
    let version = |n: usize| format!("version {n} of the notes\n{}", "x".repeat(n * 10));
    for n in 0..4 {
        a.write("notes.txt", version(n));
        wait_until(PROPAGATION, &format!("version {n} on B"), || {
            holds(b, "notes.txt", version(n).as_bytes())
        })?;
    }
    let history = run(a, &["history", "notes.txt"])?;
    assert_eq!(versions(&history), 4, "history while running:\n{history}");

    let start = Instant::now();
    let restored = run(a, &["restore", "notes.txt", "--version", "0"])?;
    let command = start.elapsed();
    assert!(restored.contains("restored notes.txt"), "{restored}");
    assert!(
        !restored.contains("locally"),
        "it reached the relay: {restored}"
    );
    wait_until(PROPAGATION, "version 0 back on B", || {
        holds(b, "notes.txt", version(0).as_bytes())
    })?;
    eprintln!(
        "restore --version 0 on A to version 0 on B: {:?} (the command took {command:?})",
        start.elapsed(),
    );
    assert_eq!(a.read("notes.txt"), Some(version(0).into_bytes()));
    let history = run(b, &["history", "notes.txt"])?;
    assert_eq!(
        versions(&history),
        5,
        "the restore is a new version:\n{history}"
    );

    std::fs::remove_file(a.dir.join("notes.txt"))?;
    wait_until(PROPAGATION, "the delete on B", || {
        std::fs::symlink_metadata(b.dir.join("notes.txt")).is_err()
    })?;
    let history = run(a, &["history", "notes.txt"])?;
    assert!(history.contains("(deleted"), "{history}");
    let start = Instant::now();
    let restored = run(a, &["restore", "notes.txt"])?;
    assert!(restored.contains("restored notes.txt"), "{restored}");
    wait_until(PROPAGATION, "the undeleted file on B", || {
        holds(b, "notes.txt", version(0).as_bytes())
    })?;
    eprintln!("undelete on A to the file on B: {:?}", start.elapsed());
    assert_eq!(a.read("notes.txt"), Some(version(0).into_bytes()));

    let listed = run(a, &["devices"])?;
    assert!(
        listed.contains("dev0") && listed.contains("(this device)"),
        "{listed}"
    );
    assert!(
        listed
            .lines()
            .any(|line| line.contains("dev1") && line.contains("online")),
        "B's daemon is online: {listed}"
    );
    let unknown = a.command(&["history", "nothing-here.txt"])?;
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("not in the folder's history"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );
    // `sync` with the daemon running: it scans now and returns once the relay agrees.
    a.write("late.txt", "written just before sync");
    assert!(run(a, &["sync"])?.contains("in sync"));
    wait_until(PROPAGATION, "late.txt on B", || {
        holds(b, "late.txt", b"written just before sync")
    })?;
    assert!(run(b, &["sync"])?.contains("in sync"));
    assert_eq!(a.tree(), b.tree());
    Ok(())
}

#[test]
fn status_answers_live_from_the_daemons_with_the_transfers_in_progress() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, mut devices) = setup(tmp.path(), 2)?;
    for device in &mut devices {
        device.start_daemon()?;
    }
    let outside = tmp.path().join("big.bin");
    let result = live_transfers(&mut devices, &outside);
    logged(&devices, result)
}

fn live_transfers(devices: &mut [Device], outside: &std::path::Path) -> Result<()> {
    let (a, b) = (&devices[0], &devices[1]);
    a.wait_connected(CONNECTED)?;
    b.wait_connected(CONNECTED)?;
    let mode = std::fs::symlink_metadata(socket(a))?.permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    let live = a.status_json()?;
    assert_eq!(live["daemon_running"], true);
    assert_eq!(live["pid"], a.daemon_pid().context("daemon pid")?);

    // A large file: while A uploads it and B downloads it, their status names it with its size.
    let size = 192usize << 20;
    let mut bytes = vec![0u8; size];
    ChaCha8Rng::seed_from_u64(14).fill_bytes(&mut bytes);
    // Written beside the folder and moved in, so the daemon never sees it half-written.
    std::fs::write(outside, &bytes)?;
    std::fs::rename(outside, a.dir.join("big.bin"))?;
    let find = |live: &serde_json::Value, list: &str| {
        live["transfers"][list]
            .as_array()
            .and_then(|files| files.iter().find(|f| f["path"] == "big.bin").cloned())
    };
    let (mut uploading, mut downloading) = (None, None);
    wait_until(
        Duration::from_secs(120),
        "status to show big.bin uploading on A and downloading on B",
        || {
            if uploading.is_none() {
                uploading = a
                    .status_json()
                    .ok()
                    .and_then(|live| find(&live, "uploading"));
            }
            if downloading.is_none() {
                downloading = b.status_json().ok().and_then(|live| {
                    let file = find(&live, "downloading")?;
                    Some((file, live["pending"]["download_files"].clone()))
                });
            }
            uploading.is_some() && downloading.is_some()
        },
    )?;
    let uploading = uploading.expect("seen");
    let (downloading, pending) = downloading.expect("seen");
    eprintln!("A during the upload: {uploading}; B during the download: {downloading}");
    assert_eq!(uploading["size"], size as u64, "the file's bytes");
    assert_eq!(downloading["size"], size as u64, "the file's bytes");
    assert_eq!(pending, 1, "one file to download");
    wait_until(Duration::from_secs(120), "big.bin on B", || {
        holds(b, "big.bin", &bytes)
    })?;
    for device in [a, b] {
        wait_until(Duration::from_secs(30), "the transfers to end", || {
            device.status_json().is_ok_and(|s| {
                s["pending"]["upload_files"] == 0
                    && s["pending"]["download_files"] == 0
                    && s["transfers"]["uploading"]
                        .as_array()
                        .is_some_and(Vec::is_empty)
                    && s["transfers"]["downloading"]
                        .as_array()
                        .is_some_and(Vec::is_empty)
            })
        })?;
    }

    // Stopped: the socket is gone and status reads the file again.
    devices[0].stop_daemon()?;
    let a = &devices[0];
    assert!(!socket(a).exists(), "the daemon removes its socket");
    let offline = a.status_json()?;
    assert_eq!(offline["source"], "file");
    assert_eq!(offline["daemon_running"], false);
    Ok(())
}

#[test]
fn a_socket_left_by_a_killed_daemon_is_not_trusted() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, mut devices) = setup(tmp.path(), 1)?;
    let a = &mut devices[0];
    a.write("kept.txt", "one");
    a.sync()?;
    a.start_daemon()?;
    a.wait_connected(CONNECTED)?;
    a.kill_daemon();
    assert!(socket(a).exists(), "kill -9 leaves the socket file behind");
    // Nobody serves it: every command works directly, promptly.
    let start = Instant::now();
    let offline = a.status_json()?;
    assert_eq!(offline["source"], "file");
    assert_eq!(offline["daemon_running"], false);
    let history = run(a, &["history", "kept.txt"])?;
    assert_eq!(versions(&history), 1, "{history}");
    a.write("kept.txt", "two, longer");
    a.sync()?;
    let restored = run(a, &["restore", "kept.txt", "--version", "0"])?;
    assert!(restored.contains("restored kept.txt"), "{restored}");
    assert_eq!(a.read("kept.txt"), Some(b"one".to_vec()));
    let direct = start.elapsed();
    eprintln!("status, history, sync and restore past a stale socket: {direct:?}");
    assert!(
        direct < Duration::from_secs(30),
        "a stale socket must not stall commands: {direct:?}"
    );
    // A new daemon replaces the stale socket and answers on it.
    a.start_daemon()?;
    a.wait_connected(CONNECTED)?;
    let history = run(a, &["history", "kept.txt"])?;
    assert_eq!(versions(&history), 3, "{history}");
    Ok(())
}

#[test]
fn another_user_is_refused_on_the_control_socket() -> Result<()> {
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("SKIPPED: needs root to connect as another user; the uid check is unit-tested");
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let (_relay, mut devices) = setup(tmp.path(), 1)?;
    let a = &mut devices[0];
    a.start_daemon()?;
    a.wait_connected(CONNECTED)?;
    let path = socket(a);
    // As it is: the file modes keep another user out.
    let denied = as_nobody(&path)?;
    assert!(
        denied.starts_with("connect failed: "),
        "another user cannot even connect: {denied}"
    );
    // Modes loosened by mistake: the daemon checks the peer's uid itself.
    let state = a.dir.join(".cloud3");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o711))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666))?;
    let answer = as_nobody(&path)?;
    assert!(
        answer.contains("\"reply\":\"error\"") && answer.contains("refused"),
        "refused, not served: {answer}"
    );
    assert!(!answer.contains("status"), "no status leaked: {answer}");
    // The owner is still served.
    assert_eq!(a.status_json()?["source"], "daemon");
    Ok(())
}

/// Connects to `path` from a thread running as uid 65534 and sends a status request; returns
/// everything the daemon answered, or "connect failed: ...".
fn as_nobody(path: &std::path::Path) -> Result<String> {
    let path = path.to_owned();
    std::thread::spawn(move || -> Result<String> {
        // Only this thread changes its uid (the raw syscall is per thread).
        let nobody = rustix::process::Uid::from_raw(65534);
        rustix::thread::set_thread_res_uid(nobody, nobody, nobody)?;
        let mut stream = match UnixStream::connect(&path) {
            Ok(stream) => stream,
            Err(error) => return Ok(format!("connect failed: {error}")),
        };
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        // The daemon may have answered and closed already: a failed write is no failure.
        let _ = stream.write_all(b"{\"request\":\"status\"}\n");
        let mut answer = String::new();
        for line in BufReader::new(stream).lines() {
            match line {
                Ok(line) => answer.push_str(&line),
                // Closed with our request unread: the answer before it counts.
                Err(_) if !answer.is_empty() => break,
                Err(error) => bail!("reading the answer: {error}"),
            }
        }
        Ok(answer)
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the nobody thread panicked"))?
}

#[test]
fn an_offline_daemon_answers_and_syncs_a_restore_when_the_relay_returns() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (mut relay, mut devices) = setup(tmp.path(), 2)?;
    for device in &mut devices {
        device.start_daemon()?;
    }
    logged(
        &devices,
        offline_restore(&mut relay, &devices[0], &devices[1]),
    )
}

fn offline_restore(relay: &mut cloud3_tests::Relay, a: &Device, b: &Device) -> Result<()> {
    a.wait_connected(CONNECTED)?;
    b.wait_connected(CONNECTED)?;
    a.write("plan.txt", "first plan");
    wait_until(PROPAGATION, "the first plan on B", || {
        holds(b, "plan.txt", b"first plan")
    })?;
    a.write("plan.txt", "second plan, longer");
    wait_until(PROPAGATION, "the second plan on B", || {
        holds(b, "plan.txt", b"second plan, longer")
    })?;

    let (data, addr) = (relay.data.clone(), relay.addr.clone());
    relay.kill();
    wait_until(Duration::from_secs(30), "A to notice it is offline", || {
        a.status_json()
            .is_ok_and(|s| s["source"] == "daemon" && s["connected"] == false)
    })?;
    let history = run(a, &["history", "plan.txt"])?;
    assert_eq!(versions(&history), 2, "{history}");
    let restored = run(a, &["restore", "plan.txt", "--version", "0"])?;
    assert!(
        restored.contains("when the relay is reachable"),
        "offline, it says so: {restored}"
    );
    // The first plan's bytes are not on A any more: they come with the relay.
    assert_eq!(a.read("plan.txt"), Some(b"second plan, longer".to_vec()));
    let devices_offline = a.command(&["devices"])?;
    assert!(!devices_offline.status.success());
    assert!(
        String::from_utf8_lossy(&devices_offline.stderr).contains("offline"),
        "{}",
        String::from_utf8_lossy(&devices_offline.stderr)
    );

    // The relay returns: the restore reaches B like any edit made offline.
    let _relay = cloud3_tests::Relay::start_on(&data, &addr)?;
    // One device at a time, so A's file is not read in a loop while waiting for B.
    wait_until(Duration::from_secs(60), "the restore written on A", || {
        holds(a, "plan.txt", b"first plan")
    })?;
    wait_until(Duration::from_secs(60), "the restore on B", || {
        holds(b, "plan.txt", b"first plan")
    })?;
    assert_eq!(a.tree(), b.tree());
    Ok(())
}

#[test]
fn a_daemon_started_with_a_relative_dir_sees_changes_at_once() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, mut devices) = setup(tmp.path(), 2)?;
    devices[1].start_daemon()?;
    let (a, b) = (&devices[0], &devices[1]);
    // `cloud3 run --dir dev0` from the folder's parent.
    let log = std::fs::File::create(tmp.path().join("relative.log"))?;
    let mut daemon = std::process::Command::new(cloud3_tests::binary("cloud3"))
        .args(["run", "--dir", "dev0"])
        .current_dir(tmp.path())
        .stderr(log)
        .spawn()?;
    let result = (|| -> Result<()> {
        a.wait_connected(CONNECTED)?;
        b.wait_connected(CONNECTED)?;
        a.write("seen.txt", "by the watcher");
        // Well under the 60 s rescan: the watcher's event did it.
        wait_until(PROPAGATION, "seen.txt on B", || {
            holds(b, "seen.txt", b"by the watcher")
        })?;
        Ok(())
    })();
    let _ = daemon.kill();
    let _ = daemon.wait();
    if result.is_err() {
        eprintln!(
            "daemon log:\n{}",
            std::fs::read_to_string(tmp.path().join("relative.log")).unwrap_or_default()
        );
    }
    result
}
