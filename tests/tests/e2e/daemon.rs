//! A daemon left running: bursts of same-size rewrites milliseconds apart reach the other device
//! round after round, and a file still being written is published once, whole.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use cloud3_tests::wait_until;
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::setup;

/// Editors, formatters and build tools rewrite several small files a few times in a row, each
/// write the same size, milliseconds apart. Every round's last bytes must reach the other device.
#[test]
fn bursts_of_same_size_rewrites_reach_the_other_device_every_round() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, mut devices) = setup(tmp.path(), 2)?;
    for device in devices.iter_mut() {
        device.start_daemon()?;
    }
    std::thread::sleep(Duration::from_millis(700));
    let seed = seed();
    eprintln!("burst seed {seed}");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let files: Vec<String> = (0..5).map(|i| format!("src/mod{i}.rs")).collect();
    let mut late = Vec::new();
    for round in 0..12 {
        let mut last = Vec::new();
        for file in &files {
            for write in 0..3 {
                // Same size every time: only the bytes differ.
                let text = format!(
                    "// round {round:02} write {write} of {file}: {:08}\n",
                    rng.random_range(0..100_000_000u32)
                );
                devices[0].write(file, &text);
                last.push((file.clone(), text));
                std::thread::sleep(Duration::from_millis(rng.random_range(0..6)));
            }
        }
        let wanted: Vec<(String, String)> = files
            .iter()
            .map(|file| {
                let text = last
                    .iter()
                    .rev()
                    .find(|(f, _)| f == file)
                    .map(|(_, t)| t.clone());
                (file.clone(), text.unwrap_or_default())
            })
            .collect();
        let started = Instant::now();
        let b = &devices[1];
        let arrived = wait_until(
            Duration::from_secs(15),
            "the round's last bytes on B",
            || {
                wanted
                    .iter()
                    .all(|(file, text)| b.read(file).as_deref() == Some(text.as_bytes()))
            },
        );
        if arrived.is_err() {
            bail!(
                "seed {seed}: round {round}: B still lacks the last bytes after 15 s\nA's log:\n{}\nB's log:\n{}",
                devices[0].daemon_log(),
                devices[1].daemon_log()
            );
        }
        late.push(started.elapsed());
        std::thread::sleep(Duration::from_millis(rng.random_range(200..600)));
    }
    eprintln!("seed {seed}: each round on B after {late:?}");
    for device in devices.iter_mut() {
        device.stop_daemon()?;
    }
    Ok(())
}

/// A daemon with nothing to do sleeps: the watcher's reports of opens and reads (its own
/// hashing, or a user reading every file) start no scan, and the status file is not rewritten.
#[test]
fn an_idle_daemon_sleeps_even_after_every_file_is_read() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, mut devices) = setup(tmp.path(), 2)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed());
    let big: Vec<u8> = (0..20 << 20).map(|_| rng.random::<u8>()).collect();
    devices[0].write("big.bin", &big);
    for i in 0..10 {
        devices[0].write(&format!("notes/n{i}.txt"), format!("note {i}"));
    }
    for device in devices.iter_mut() {
        device.start_daemon()?;
    }
    let b = &devices[1];
    wait_until(Duration::from_secs(60), "the folder on B", || {
        b.read("big.bin").as_deref() == Some(big.as_slice())
    })?;
    // Past the racy window of the files just written and read.
    std::thread::sleep(Duration::from_secs(4));
    let pid = devices[0].daemon_pid().expect("daemon running");
    let idle = cloud3_tests::cpu_share(pid, Duration::from_secs(5))?;
    for path in cloud3_tests::snapshot(&devices[0].dir).keys() {
        let _ = std::fs::read(devices[0].dir.join(path));
    }
    std::thread::sleep(Duration::from_secs(2));
    let after_reads = cloud3_tests::cpu_share(pid, Duration::from_secs(5))?;
    eprintln!(
        "idle daemon: {:.2}% of a core; after reading every file: {:.2}%",
        idle * 100.0,
        after_reads * 100.0
    );
    // Generous: a busy loop costs tens of percent.
    assert!(
        idle < 0.05,
        "idle daemon used {:.1}% of a core",
        idle * 100.0
    );
    assert!(
        after_reads < 0.05,
        "after reads the daemon used {:.1}% of a core",
        after_reads * 100.0
    );
    for device in devices.iter_mut() {
        device.stop_daemon()?;
    }
    Ok(())
}

/// A large file copied in by a slow writer is one new version, of the file's whole size, on the
/// other device and in `history`: never a string of partial versions.
#[test]
fn a_file_written_slowly_is_published_once_whole() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, mut devices) = setup(tmp.path(), 2)?;
    for device in devices.iter_mut() {
        device.start_daemon()?;
    }
    std::thread::sleep(Duration::from_millis(700));
    let size = 100usize << 20;
    let mut rng = ChaCha8Rng::seed_from_u64(seed());
    let piece: Vec<u8> = (0..1 << 20).map(|_| rng.random::<u8>()).collect();
    let path = devices[0].dir.join("big.bin");
    {
        let mut file = std::fs::File::create(&path)?;
        for n in 0..size >> 20 {
            let mut bytes = piece.clone();
            bytes[..8].copy_from_slice(&(n as u64).to_le_bytes());
            file.write_all(&bytes)?;
            file.flush()?;
            std::thread::sleep(Duration::from_millis(40));
        }
    }
    let b = &devices[1];
    wait_until(Duration::from_secs(120), "big.bin whole on B", || {
        std::fs::metadata(b.dir.join("big.bin")).is_ok_and(|m| m.len() == size as u64)
            && b.read("big.bin") == std::fs::read(&path).ok()
    })?;
    // Give any straggling partial version time to show.
    std::thread::sleep(Duration::from_secs(2));
    for device in devices.iter_mut() {
        device.stop_daemon()?;
    }
    let history = devices[1].command(&["history", "big.bin"])?;
    cloud3_tests::check(&history, "cloud3 history")?;
    let text = String::from_utf8_lossy(&history.stdout).into_owned();
    let versions: Vec<&str> = text.lines().filter(|l| l.contains("bytes")).collect();
    assert_eq!(versions.len(), 1, "one version, not partial ones:\n{text}");
    assert!(
        versions[0].contains(&format!("{size} bytes")),
        "the version's size is the file's:\n{text}"
    );
    Ok(())
}

fn seed() -> u64 {
    std::env::var("CLOUD3_E2E_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(1)
        })
}
