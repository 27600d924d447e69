//! The malware scan's workloads, with a real clamd (`cloud3_tests::clamd`, its own signature
//! database): S1 scan throughput through the relay on mixed data next to `clamdscan --stream`
//! (the same INSTREAM protocol) on the same files, S2 the relay's resident memory while it scans
//! a 1 GiB file (it streams chunk by chunk, so it stays flat), S3 W2 under the `flag` and `hold`
//! policies.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use cloud3_tests::clamd::Clamd;
use cloud3_tests::{Device, Relay, check, wait_until};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::json;

use super::{Transport, mixed, round, rss_kib, w2_with, write};

/// A relay scanning with `clamd` (and `extra` flags), one user, one device.
fn relay_and_device(root: &Path, clamd: &Clamd, extra: &[&str]) -> Result<(Relay, Device)> {
    let addr = clamd.addr();
    let mut flags = vec!["--clamd", addr.as_str()];
    flags.extend_from_slice(extra);
    let relay = Relay::start_with(&root.join("relay"), "127.0.0.1:0", &flags)?;
    let invite = relay.add_user("bench")?;
    let device = Device::init(&root.join("a"), &relay, "bench", "--invite", &invite, "a")?;
    Ok((relay, device))
}

/// One value of the relay's `/metrics` (the first line naming it).
fn metric(relay: &Relay, name: &str) -> Result<f64> {
    let mut stream = std::net::TcpStream::connect(&relay.addr)?;
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        relay.addr
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no {name} in /metrics"))
}

/// S1: MB/s the relay scans through clamd (one scan at a time: the sum of scan latencies over
/// the bytes), and `clamdscan --stream` on the same files.
pub(super) fn s1(root: &Path, quick: bool) -> Result<serde_json::Value> {
    let (files, mib) = if quick { (2, 8) } else { (8, 32) };
    let clamd = Clamd::start(&root.join("clamd"), &[], "100M")?;
    let (relay, a) = relay_and_device(
        root,
        &clamd,
        &["--clamd-max-stream-mib", "100", "--scan-concurrency", "1"],
    )?;
    let mut rng = ChaCha8Rng::seed_from_u64(161);
    let mut paths = Vec::new();
    for i in 0..files {
        let path = a.dir.join(format!("data/file-{i}.bin"));
        write(&path, &mixed(&mut rng, mib << 20))?;
        paths.push(path);
    }
    let bytes = (files * (mib << 20)) as f64;
    // clamd's first scans after it starts are slower: both sides are measured warm.
    let conf = clamd.clamdscan_conf()?;
    let clamdscan = |paths: &[std::path::PathBuf]| -> Result<f64> {
        let started = Instant::now();
        let output = std::process::Command::new("clamdscan")
            .arg("-c")
            .arg(&conf)
            .args(["--stream", "--no-summary"])
            .args(paths)
            .output()
            .context("run clamdscan (apt-get install clamdscan)")?;
        check(&output, "clamdscan")?;
        Ok(started.elapsed().as_secs_f64())
    };
    clamdscan(&paths)?;
    a.sync()?;
    wait_until(Duration::from_secs(600), "every version scanned", || {
        metric(&relay, "cloud3_scan_seconds_count").is_ok_and(|n| n >= files as f64)
    })?;
    let relay_s = metric(&relay, "cloud3_scan_seconds_sum")?;
    let clamdscan_s = clamdscan(&paths)?;
    Ok(json!({
        "workload": "S1 scan throughput through clamd",
        "files": files,
        "mib_each": mib,
        "relay_scan_s": round(relay_s),
        "relay_mb_per_s": round(bytes / 1e6 / relay_s),
        "clamdscan_stream_s": round(clamdscan_s),
        "clamdscan_mb_per_s": round(bytes / 1e6 / clamdscan_s),
        "ratio_relay_vs_clamdscan": round(relay_s / clamdscan_s),
    }))
}

/// S2: the relay's resident memory before the upload, while a device uploads a 1 GiB file, and
/// while the relay scans it (sampled every 20 ms).
pub(super) fn s2(root: &Path, quick: bool) -> Result<serde_json::Value> {
    let mib: usize = if quick { 64 } else { 1024 };
    let clamd = Clamd::start(&root.join("clamd"), &[], "1200M")?;
    let (relay, a) = relay_and_device(root, &clamd, &["--clamd-max-stream-mib", "1200"])?;
    let mut rng = ChaCha8Rng::seed_from_u64(162);
    write(&a.dir.join("big.bin"), &mixed(&mut rng, mib << 20))?;
    let pid = relay.pid();
    let before_kib = rss_kib(pid)?;
    let peak = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop) = (peak.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Ok(kib) = rss_kib(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
    };
    a.sync()?;
    let upload_peak_kib = peak.swap(0, Ordering::Relaxed);
    let started = Instant::now();
    wait_until(
        Duration::from_secs(1200),
        "the 1 GiB version scanned",
        || metric(&relay, "cloud3_scan_seconds_count").is_ok_and(|n| n >= 1.0),
    )?;
    let scan_s = started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let scan_peak_kib = peak.load(Ordering::Relaxed);
    let verdict = relay.admin(&["scan", "list", "--all"])?;
    Ok(json!({
        "workload": "S2 relay RSS while scanning a large file",
        "file_mib": mib,
        "rss_before_mib": round(before_kib as f64 / 1024.0),
        "rss_peak_during_upload_mib": round(upload_peak_kib as f64 / 1024.0),
        "rss_peak_during_scan_mib": round(scan_peak_kib as f64 / 1024.0),
        "scan_s_after_upload": round(scan_s),
        "verdict": String::from_utf8_lossy(&verdict.stdout).trim(),
    }))
}

/// S3: W2 (one small edit reaching the other device) with clamd scanning, under `flag` and
/// under `hold`.
pub(super) fn s3(root: &Path, quick: bool) -> Result<serde_json::Value> {
    let clamd = Clamd::start(&root.join("clamd"), &[], "25M")?;
    let addr = clamd.addr();
    let flag = w2_with(
        &root.join("flag"),
        quick,
        Transport::Plain,
        &["--clamd", &addr, "--scan-policy", "flag"],
    )?;
    let hold = w2_with(
        &root.join("hold"),
        quick,
        Transport::Plain,
        &["--clamd", &addr, "--scan-policy", "hold"],
    )?;
    Ok(json!({
        "workload": "S3 W2 under the scan policies (clamd scanning)",
        "flag": flag,
        "hold": hold,
    }))
}
