//! cloud3's end-to-end benchmark: real relay and agent processes (release builds) on loopback,
//! with rsync over the same data in the same run as the reference. Each workload prints one JSON
//! line. Run with `scripts/bench-e2e` (builds the release binaries first), or:
//!
//! ```text
//! cargo build --release --workspace
//! cargo run --release -p cloud3-tests --bin bench -- [W1 W1-TLS W2 W2-TLS W2b W3 W4 W5 I1 | all]
//!     [--quick]
//! ```
//!
//! Device workloads: W1 initial sync (with the CPU floor of its byte path, see `ByteFloor`), W2
//! propagation latency (W1-TLS and W2-TLS: W1 and W2 over `wss://`, a private CA made here), W2b
//! bursts of same-size rewrites, W3 1-byte insert, W4 source tree
//! upgrade, W5 100,000 files, I1 an idle daemon's CPU (and after every file is read). Relay
//! workloads: R1 idle connections (1,000; `R1-10k` 10,000), R2 fan-out to 100 devices, R3 relay
//! disk usage after 2 GiB, G1 garbage collection and compaction (1 % of a 100 MiB file
//! rewritten 50 times and 10,000 small files deleted, the clock moved past the 30-day window,
//! `cloud3-relay gc` while W2-style edits run), D1 the folder document's growth over 100,000
//! edits (engine only). Malware-scan workloads (named only, not in `all`: they need
//! `clamav-daemon` and `clamdscan`): S1 scan throughput next to `clamdscan`, S2 relay memory
//! while scanning 1 GiB, S3 W2 under `flag` and `hold` (`bench/scan.rs`). `--quick` shrinks
//! every workload
//! (a smoke run, not figures for BENCHMARKS.md).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cloud3_engine::auth::DeviceKey;
use cloud3_engine::chunk::{cdc, compress, open};
use cloud3_engine::ids::{ChunkId, FolderId, NodeId, ShortDeviceId};
use cloud3_engine::time::WallTime;
use cloud3_engine::tree::{FolderDoc, NodeKind};
use cloud3_engine::wire::{ClientMessage, ServerMessage};
use cloud3_tests::client::{Client, enrol};
use cloud3_tests::pki::{Ca, start_tls_relay};
use cloud3_tests::{Device, Proxy, Relay, binary, cpu_share, wait_until};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::json;

#[path = "bench/scan.rs"]
mod scan;

/// Wall time, CPU time and peak RSS of one finished process.
#[derive(Clone, Copy, Debug)]
struct Run {
    wall_s: f64,
    cpu_s: f64,
    peak_rss_mib: f64,
}

impl Run {
    fn json(self) -> serde_json::Value {
        json!({
            "wall_s": round(self.wall_s),
            "cpu_s": round(self.cpu_s),
            "peak_rss_mib": round(self.peak_rss_mib),
        })
    }
}

fn round(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Runs `program args` under GNU time; fails unless it exits 0.
fn timed(program: &Path, args: &[&str]) -> Result<Run> {
    let report = tempfile::NamedTempFile::new()?;
    let output = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%e %U %S %M")
        .arg("-o")
        .arg(report.path())
        .arg(program)
        .args(args)
        .env("RUST_LOG", "error")
        .output()
        .with_context(|| format!("run {} under /usr/bin/time", program.display()))?;
    if !output.status.success() {
        bail!(
            "{} {args:?} failed: {}",
            program.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    read_report(report.path())
}

/// Reads GNU time's `%e %U %S %M` line.
fn read_report(path: &Path) -> Result<Run> {
    let text = std::fs::read_to_string(path)?;
    let fields: Vec<f64> = text
        .lines()
        .last()
        .context("no time report")?
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let [wall_s, user, sys, rss_kib] = fields[..] else {
        bail!("unexpected time report {text:?}");
    };
    Ok(Run {
        wall_s,
        cpu_s: user + sys,
        peak_rss_mib: rss_kib / 1024.0,
    })
}

fn sync(device: &Device) -> Result<Run> {
    timed(
        &binary("cloud3"),
        &["sync", "--dir", path_str(&device.dir)?],
    )
}

fn path_str(path: &Path) -> Result<&str> {
    path.to_str().context("utf-8 path")
}

/// `rsync -a [extra] SRC/ DST/`; returns its run and the bytes it sent plus received.
fn rsync(src: &Path, dst: &Path, extra: &[&str]) -> Result<(Run, u64)> {
    let report = tempfile::NamedTempFile::new()?;
    let output = Command::new("/usr/bin/time")
        .args(["-f", "%e %U %S %M", "-o"])
        .arg(report.path())
        .args(["rsync", "-a", "--stats"])
        .args(extra)
        .arg(format!("{}/", src.display()))
        .arg(format!("{}/", dst.display()))
        .output()
        .context("rsync (apt install rsync)")?;
    if !output.status.success() {
        bail!("rsync failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let stats = String::from_utf8_lossy(&output.stdout);
    let number = |label: &str| -> u64 {
        stats
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .map(|rest| {
                rest.split_whitespace()
                    .next()
                    .unwrap_or("0")
                    .replace(',', "")
                    .parse()
                    .unwrap_or(0)
            })
            .unwrap_or(0)
    };
    let bytes = number("Total bytes sent:") + number("Total bytes received:");
    Ok((read_report(report.path())?, bytes))
}

/// A relay with two enrolled devices, each behind its own byte-counting proxy.
struct Setup {
    _relay: Relay,
    a: Device,
    b: Device,
    proxy_a: Proxy,
    proxy_b: Proxy,
}

/// Plain WebSocket or TLS between the devices and the relay.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Transport {
    Plain,
    Tls,
}

impl Transport {
    fn name(self) -> &'static str {
        match self {
            Transport::Plain => "ws",
            Transport::Tls => "wss",
        }
    }
}

fn setup(root: &Path) -> Result<Setup> {
    setup_over(root, Transport::Plain, &[])
}

/// Two devices of one user behind byte-counting proxies; `flags` go to the relay (plain
/// transport only).
fn setup_over(root: &Path, transport: Transport, flags: &[&str]) -> Result<Setup> {
    let (relay, url, ca) = match transport {
        Transport::Plain => {
            let relay = Relay::start_with(&root.join("relay"), "127.0.0.1:0", flags)?;
            let url = relay.url.clone();
            (relay, url, None)
        }
        Transport::Tls => {
            // A private CA made here; the devices pin it (the proxies pass TLS through).
            let ca = Ca::new("bench CA")?;
            let ca_file = ca.write(root, "ca.pem")?;
            let (cert, key) = ca.issue(root, false)?;
            let (relay, url) = start_tls_relay(root, &cert, &key)?;
            (relay, url, Some(ca_file))
        }
    };
    let ca_flag: Vec<&str> = match &ca {
        Some(path) => vec!["--ca", path_str(path)?],
        None => Vec::new(),
    };
    let invite = relay.add_user("bench")?;
    let a = Device::init_at(
        &root.join("a"),
        &url,
        "bench",
        "--invite",
        &invite,
        "a",
        &ca_flag,
    )?;
    let code = a.pair(false)?;
    let b = Device::init_at(
        &root.join("b"),
        &url,
        "bench",
        "--pair",
        &code,
        "b",
        &ca_flag,
    )?;
    let (proxy_a, proxy_b) = (Proxy::start(&relay.addr)?, Proxy::start(&relay.addr)?);
    let scheme = format!("{}://", transport.name());
    a.set_relay(&proxy_a.url.replacen("ws://", &scheme, 1))?;
    b.set_relay(&proxy_b.url.replacen("ws://", &scheme, 1))?;
    Ok(Setup {
        _relay: relay,
        a,
        b,
        proxy_a,
        proxy_b,
    })
}

/// Mixed bytes: random halves and text-like halves, like a folder of documents and media.
fn mixed(rng: &mut ChaCha8Rng, len: usize) -> Vec<u8> {
    const WORDS: &[&str] = &[
        "sync", "the", "folder", "of", "chunk", "a", "relay", "device",
    ];
    let mut bytes = vec![0u8; len / 2];
    rng.fill_bytes(&mut bytes);
    while bytes.len() < len {
        bytes.extend_from_slice(WORDS[rng.random_range(0..WORDS.len())].as_bytes());
        bytes.push(b' ');
    }
    bytes.truncate(len);
    bytes
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    std::fs::create_dir_all(path.parent().context("parent")?)?;
    std::fs::write(path, bytes).with_context(|| format!("write {}", path.display()))
}

/// Fills `dir` with `small` small files in nested directories and `large` files of `large_mib`.
fn fill(dir: &Path, seed: u64, small: usize, large: usize, large_mib: usize) -> Result<u64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut total = 0u64;
    for i in 0..small {
        let len = rng.random_range(100..8192);
        let path = dir.join(format!(
            "src/m{:02}/d{:03}/file-{i:06}.txt",
            i / 10_000,
            (i / 100) % 100
        ));
        write(&path, &mixed(&mut rng, len))?;
        total += len as u64;
    }
    for i in 0..large {
        let bytes = mixed(&mut rng, large_mib << 20);
        write(&dir.join(format!("media/large-{i:02}.bin")), &bytes)?;
        total += bytes.len() as u64;
    }
    Ok(total)
}

fn w1(root: &Path, quick: bool, transport: Transport) -> Result<serde_json::Value> {
    let (small, large, mib) = if quick { (500, 2, 5) } else { (10_000, 20, 50) };
    let s = setup_over(root, transport, &[])?;
    let bytes = fill(&s.a.dir, 1, small, large, mib)?;
    let upload = sync(&s.a)?;
    let download = sync(&s.b)?;
    let (reference, _) = rsync(&s.a.dir, &root.join("rsync-dst"), &["--exclude", ".cloud3"])?;
    let floor = ByteFloor::measure(&s.a.dir)?;
    let cloud3 = upload.wall_s + download.wall_s;
    Ok(json!({
        "workload": "W1 initial sync",
        "transport": transport.name(),
        "files": small + large,
        "bytes": bytes,
        "upload": upload.json(),
        "download": download.json(),
        "wire_bytes": s.proxy_a.total() + s.proxy_b.total(),
        "cloud3_s": round(cloud3),
        "rsync": reference.json(),
        "ratio_time_vs_rsync": round(cloud3 / reference.wall_s),
        "byte_path_floor": floor.json(),
        "ratio_floor_vs_rsync": round(floor.wall_s() / reference.wall_s),
    }))
}

/// The CPU time the design's byte path needs for a folder, measured on one thread over the same
/// bytes: chunking and SHA-256 for the ids, zstd as stored, and opening every blob (bounded
/// inflate and SHA-256 check) twice, once at the relay and once at the receiving device. No
/// I/O, no file creation, no document, no network: spread perfectly over every core, a sync
/// cannot be faster than this.
#[derive(Default)]
struct ByteFloor {
    chunk_hash_s: f64,
    compress_s: f64,
    open_s: f64,
}

impl ByteFloor {
    fn measure(dir: &Path) -> Result<ByteFloor> {
        let mut floor = ByteFloor::default();
        let mut seen = std::collections::HashSet::new();
        for entry in cloud3_tests::snapshot(dir).values() {
            let cloud3_tests::Entry::File(data, _) = entry else {
                continue;
            };
            let started = Instant::now();
            let chunks: Vec<_> = cdc::cut(data)
                .map(|range| (ChunkId::of(&data[range.clone()]), range))
                .collect();
            floor.chunk_hash_s += started.elapsed().as_secs_f64();
            for (id, range) in chunks {
                if !seen.insert(id) {
                    continue;
                }
                let started = Instant::now();
                let encoded = compress(&data[range.clone()]);
                floor.compress_s += started.elapsed().as_secs_f64();
                let started = Instant::now();
                let raw_len = u32::try_from(range.len()).unwrap_or(u32::MAX);
                let opened = open(id, encoded.codec, &encoded.bytes, raw_len);
                floor.open_s += started.elapsed().as_secs_f64();
                opened.with_context(|| format!("blob {id} did not open"))?;
            }
        }
        Ok(floor)
    }

    fn cpu_s(&self) -> f64 {
        self.chunk_hash_s + self.compress_s + 2.0 * self.open_s
    }

    fn cores() -> f64 {
        std::thread::available_parallelism().map_or(1.0, |n| n.get() as f64)
    }

    fn wall_s(&self) -> f64 {
        self.cpu_s() / Self::cores()
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "chunk_and_hash_cpu_s": round(self.chunk_hash_s),
            "compress_cpu_s": round(self.compress_s),
            "open_cpu_s_each": round(self.open_s),
            "cpu_s": round(self.cpu_s()),
            "cores": Self::cores(),
            "wall_s_on_all_cores": round(self.wall_s()),
        })
    }
}

fn w2(root: &Path, quick: bool, transport: Transport) -> Result<serde_json::Value> {
    w2_with(root, quick, transport, &[])
}

/// W2 with `flags` for the relay (the malware scan's policies, see `scan.rs`).
fn w2_with(
    root: &Path,
    quick: bool,
    transport: Transport,
    flags: &[&str],
) -> Result<serde_json::Value> {
    let edits = if quick { 5 } else { 50 };
    let mut s = setup_over(root, transport, flags)?;
    s.a.start_daemon()?;
    s.b.start_daemon()?;
    std::thread::sleep(Duration::from_secs(1));
    let mut latencies = Vec::new();
    for i in 0..edits {
        let content = format!("edit {i} at {:?}", Instant::now());
        let path = format!("notes/edit-{i}.txt");
        let started = Instant::now();
        s.a.write(&path, &content);
        wait_until(Duration::from_secs(10), "the edit on b", || {
            s.b.read(&path).as_deref() == Some(content.as_bytes())
        })?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(200));
    }
    s.a.stop_daemon()?;
    s.b.stop_daemon()?;
    let mut figures = percentiles(&latencies);
    figures["workload"] = json!("W2 propagation latency");
    figures["transport"] = json!(transport.name());
    figures["edits"] = json!(edits);
    Ok(figures)
}

/// p50, p90, p99 and max of latencies in milliseconds.
fn percentiles(latencies: &[f64]) -> serde_json::Value {
    let mut sorted = latencies.to_vec();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() as f64 - 1.0) * q).round() as usize];
    json!({
        "p50_ms": round(at(0.5)),
        "p90_ms": round(at(0.9)),
        "p99_ms": round(at(0.99)),
        "max_ms": round(at(1.0)),
    })
}

/// W2b: bursts as editors, formatters and build tools make them: five small files each
/// rewritten three times in a row, 0-5 ms apart, every write the same size; then a pause of
/// 0.2-0.6 s. The latency of a round runs from its last write until b holds every file's last
/// bytes.
fn w2b(root: &Path, quick: bool) -> Result<serde_json::Value> {
    let rounds = if quick { 4 } else { 30 };
    let mut s = setup(root)?;
    s.a.start_daemon()?;
    s.b.start_daemon()?;
    std::thread::sleep(Duration::from_secs(1));
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let files: Vec<String> = (0..5).map(|i| format!("src/mod{i}.rs")).collect();
    let mut latencies = Vec::new();
    for round in 0..rounds {
        let mut last = Vec::new();
        for file in &files {
            let mut text = String::new();
            for write in 0..3 {
                text = format!(
                    "// round {round:03} write {write} of {file}: {:08}\n",
                    rng.random_range(0..100_000_000u32)
                );
                s.a.write(file, &text);
                std::thread::sleep(Duration::from_millis(rng.random_range(0..6)));
            }
            last.push((file.clone(), text));
        }
        let started = Instant::now();
        wait_until(
            Duration::from_secs(30),
            "the round's last bytes on b",
            || {
                last.iter()
                    .all(|(file, text)| s.b.read(file).as_deref() == Some(text.as_bytes()))
            },
        )?;
        latencies.push(started.elapsed().as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(rng.random_range(200..600)));
    }
    s.a.stop_daemon()?;
    s.b.stop_daemon()?;
    let mut figures = percentiles(&latencies);
    figures["workload"] = json!("W2b burst propagation");
    figures["rounds"] = json!(rounds);
    Ok(figures)
}

/// I1: a running daemon's CPU in a folder of 10,000 files and 1 GiB with nothing changing, for
/// 60 s; then every file is read (`cat` of the whole folder) and its CPU is measured over the
/// 5 s that follow and the 5 s after those.
fn i1(root: &Path, quick: bool) -> Result<serde_json::Value> {
    let (small, large, mib, idle_s) = if quick {
        (1_000, 2, 50, 10)
    } else {
        (10_000, 20, 50, 60)
    };
    let mut s = setup(root)?;
    let bytes = fill(&s.a.dir, 3, small, large, mib)?;
    sync(&s.a)?;
    s.a.start_daemon()?;
    let pid = s.a.daemon_pid().context("daemon pid")?;
    // The daemon's start: its first scan and the exchange with the relay.
    std::thread::sleep(Duration::from_secs(10));
    let idle = cpu_share(pid, Duration::from_secs(idle_s))?;
    let files: Vec<PathBuf> = cloud3_tests::snapshot(&s.a.dir)
        .into_iter()
        .filter(|(_, e)| matches!(e, cloud3_tests::Entry::File(..)))
        .map(|(p, _)| s.a.dir.join(p))
        .collect();
    let cat = Command::new("cat")
        .args(&files)
        .stdout(Stdio::null())
        .status()
        .context("cat")?;
    anyhow::ensure!(cat.success(), "cat failed");
    let first = cpu_share(pid, Duration::from_secs(5))?;
    let second = cpu_share(pid, Duration::from_secs(5))?;
    s.a.stop_daemon()?;
    Ok(json!({
        "workload": "I1 idle daemon",
        "files": files.len(),
        "bytes": bytes,
        "idle_s": idle_s,
        "idle_cpu_pct": round(idle * 100.0),
        "after_cat_0_5s_cpu_pct": round(first * 100.0),
        "after_cat_5_10s_cpu_pct": round(second * 100.0),
    }))
}

fn w3(root: &Path, quick: bool) -> Result<serde_json::Value> {
    let mib = if quick { 10 } else { 100 };
    let s = setup(root)?;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut bytes = vec![0u8; mib << 20];
    rng.fill_bytes(&mut bytes);
    let file = s.a.dir.join("big.bin");
    write(&file, &bytes)?;
    sync(&s.a)?;
    sync(&s.b)?;
    let rsync_dst = root.join("rsync-dst");
    rsync(&s.a.dir, &rsync_dst, &["--exclude", ".cloud3"])?;
    let (before_a, before_b) = (s.proxy_a.total(), s.proxy_b.total());
    bytes.insert(bytes.len() / 2, b'!');
    write(&file, &bytes)?;
    let upload = sync(&s.a)?;
    let download = sync(&s.b)?;
    let (up, down) = (s.proxy_a.total() - before_a, s.proxy_b.total() - before_b);
    let wire = up + down;
    let (reference, rsync_bytes) = rsync(
        &s.a.dir,
        &rsync_dst,
        &["--exclude", ".cloud3", "--no-whole-file"],
    )?;
    if s.b.read("big.bin").as_deref() != Some(bytes.as_slice()) {
        bail!("b does not have the edited file");
    }
    Ok(json!({
        "workload": "W3 1-byte insert",
        "file_mib": mib,
        "wire_bytes": wire,
        "uploading_device_bytes": up,
        "downloading_device_bytes": down,
        "upload": upload.json(),
        "download": download.json(),
        "rsync_bytes": rsync_bytes,
        "rsync": reference.json(),
        "ratio_bytes_vs_rsync": round(wire as f64 / rsync_bytes as f64),
        "ratio_one_hop_vs_rsync": round(up as f64 / rsync_bytes as f64),
    }))
}

/// Two releases of a real project's source, fetched once into `target/bench-data`.
fn releases() -> Result<(PathBuf, PathBuf, String, String)> {
    let (name, old, new) = ("tokio", "1.40.0", "1.41.0");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-data");
    std::fs::create_dir_all(&data)?;
    let mut dirs = Vec::new();
    for version in [old, new] {
        let dir = data.join(format!("{name}-{version}"));
        if !dir.exists() {
            let archive = data.join(format!("{name}-{version}.crate"));
            let url = format!("https://static.crates.io/crates/{name}/{name}-{version}.crate");
            let status = Command::new("curl")
                .args(["-sSfL", "-o"])
                .arg(&archive)
                .arg(&url)
                .status()
                .context("curl")?;
            if !status.success() {
                bail!("cannot fetch {url}");
            }
            let status = Command::new("tar")
                .arg("xzf")
                .arg(&archive)
                .arg("-C")
                .arg(&data)
                .status()?;
            if !status.success() {
                bail!("cannot unpack {}", archive.display());
            }
        }
        dirs.push(dir);
    }
    let new_dir = dirs.pop().context("two releases")?;
    let old_dir = dirs.pop().context("two releases")?;
    Ok((
        old_dir,
        new_dir,
        format!("{name} {old}"),
        format!("{name} {new}"),
    ))
}

/// Replaces everything in `dir` but `.cloud3` with a copy of `with`.
fn replace_tree(dir: &Path, with: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == ".cloud3" {
            continue;
        }
        if entry.file_type()?.is_dir() {
            std::fs::remove_dir_all(entry.path())?;
        } else {
            std::fs::remove_file(entry.path())?;
        }
    }
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", with.display()))
        .arg(dir)
        .status()?;
    if !status.success() {
        bail!("cp failed");
    }
    Ok(())
}

fn w4(root: &Path) -> Result<serde_json::Value> {
    let (old, new, old_name, new_name) = releases()?;
    let s = setup(root)?;
    replace_tree(&s.a.dir, &old)?;
    sync(&s.a)?;
    sync(&s.b)?;
    let rsync_dst = root.join("rsync-dst");
    rsync(&old, &rsync_dst, &[])?;
    let (before_a, before_b) = (s.proxy_a.total(), s.proxy_b.total());
    replace_tree(&s.a.dir, &new)?;
    let upload = sync(&s.a)?;
    let download = sync(&s.b)?;
    let up = s.proxy_a.total() - before_a;
    let wire = up + s.proxy_b.total() - before_b;
    let (reference, rsync_bytes) = rsync(&new, &rsync_dst, &["--delete", "--no-whole-file"])?;
    let (got, want) = (
        cloud3_tests::snapshot(&s.b.dir),
        cloud3_tests::snapshot(&new),
    );
    if got != want {
        let differing: Vec<&String> = got
            .keys()
            .chain(want.keys())
            .filter(|p| got.get(*p) != want.get(*p))
            .take(10)
            .collect();
        bail!("b's tree differs from {new_name}: {differing:?}");
    }
    Ok(json!({
        "workload": "W4 source tree upgrade",
        "from": old_name,
        "to": new_name,
        "wire_bytes": wire,
        "cloud3_s": round(upload.wall_s + download.wall_s),
        "upload": upload.json(),
        "download": download.json(),
        "rsync_bytes": rsync_bytes,
        "rsync": reference.json(),
        "uploading_device_bytes": up,
        "ratio_bytes_vs_rsync": round(wire as f64 / rsync_bytes as f64),
        "ratio_one_hop_vs_rsync": round(up as f64 / rsync_bytes as f64),
    }))
}

fn w5(root: &Path, quick: bool) -> Result<serde_json::Value> {
    let files = if quick { 5_000 } else { 100_000 };
    let s = setup(root)?;
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    for i in 0..files {
        let len = rng.random_range(10..200);
        let path =
            s.a.dir
                .join(format!("d{:03}/e{:02}/f{i:06}", i / 1000, (i / 10) % 100));
        write(&path, &mixed(&mut rng, len))?;
    }
    let upload = sync(&s.a)?;
    let download = sync(&s.b)?;
    let rescan = sync(&s.a)?;
    let (reference, _) = rsync(&s.a.dir, &root.join("rsync-dst"), &["--exclude", ".cloud3"])?;
    Ok(json!({
        "workload": "W5 many files",
        "files": files,
        "upload": upload.json(),
        "download": download.json(),
        "unchanged_resync": rescan.json(),
        "peak_rss_mib": round(upload.peak_rss_mib.max(download.peak_rss_mib)),
        "rsync": reference.json(),
        "ratio_time_vs_rsync": round((upload.wall_s + download.wall_s) / reference.wall_s),
    }))
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")
}

fn device_key(user: usize, device: usize) -> DeviceKey {
    let mut secret = [0u8; 32];
    secret[..8].copy_from_slice(&(user as u64).to_le_bytes());
    secret[8..16].copy_from_slice(&(device as u64).to_le_bytes());
    secret[31] = 1;
    DeviceKey::from_secret(secret)
}

/// `devices` authenticated connections of one user (the first enrolled by invite).
fn devices_of(relay: &Relay, user: usize, devices: usize) -> Result<Vec<Client>> {
    let name = format!("user{user}");
    let invite = relay.add_user(&name)?;
    let mut clients = vec![Client::login(
        &relay.url,
        &device_key(user, 0),
        &name,
        enrol(&invite, "d0"),
    )?];
    for device in 1..devices {
        let code = clients[0].pair_code(false)?;
        clients.push(Client::login(
            &relay.url,
            &device_key(user, device),
            &name,
            enrol(&code, &format!("d{device}")),
        )?);
    }
    Ok(clients)
}

/// R1: idle authenticated connections held, and relay memory per connection.
fn r1(root: &Path, connections: usize) -> Result<serde_json::Value> {
    const PER_USER: usize = 10;
    let relay = Relay::start(&root.join("relay"))?;
    let mut held = devices_of(&relay, 0, 1)?;
    std::thread::sleep(Duration::from_millis(500));
    let base = rss_kib(relay.pid())?;
    let started = Instant::now();
    let mut user = 1;
    let mut pinged = Instant::now();
    while held.len() < connections {
        let n = PER_USER.min(connections - held.len());
        held.extend(devices_of(&relay, user, n)?);
        user += 1;
        // Idle, as an agent is: it pings every 20 s (the relay drops a connection silent for
        // 90 s), and enrolling 10,000 devices takes minutes.
        if pinged.elapsed() > Duration::from_secs(20) {
            ping_all(&mut held)?;
            pinged = Instant::now();
        }
    }
    let enrol_s = started.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(2));
    let after = rss_kib(relay.pid())?;
    // Every connection is still served.
    for (i, client) in held.iter_mut().enumerate().step_by(97) {
        client.send(&ClientMessage::Ping(i as u64))?;
        client.until(|m| matches!(m, ServerMessage::Pong(v) if *v == i as u64).then_some(()))?;
    }
    Ok(json!({
        "workload": "R1 idle connections",
        "connections": held.len(),
        "users": user,
        "enrol_and_connect_s": round(enrol_s),
        "relay_rss_mib": round(after as f64 / 1024.0),
        "relay_kib_per_connection": round((after.saturating_sub(base)) as f64 / held.len() as f64),
    }))
}

/// An agent's keep-alive on every connection.
fn ping_all(clients: &mut [Client]) -> Result<()> {
    for (i, client) in clients.iter_mut().enumerate() {
        client.send(&ClientMessage::Ping(i as u64))?;
    }
    for (i, client) in clients.iter_mut().enumerate() {
        client.until(|m| matches!(m, ServerMessage::Pong(v) if *v == i as u64).then_some(()))?;
    }
    Ok(())
}

/// R2: one device's change reaching all 100 other online devices of the same user.
fn r2(root: &Path) -> Result<serde_json::Value> {
    const RECEIVERS: usize = 100;
    const ROUNDS: usize = 10;
    let relay = Relay::start_with(
        &root.join("relay"),
        "127.0.0.1:0",
        &["--max-connections-per-account", "256"],
    )?;
    let mut clients = devices_of(&relay, 0, RECEIVERS + 1)?;
    let mut sender = clients.remove(0);
    let (tx, rx) = std::sync::mpsc::channel::<(usize, Instant)>();
    let mut threads = Vec::new();
    for mut client in clients {
        let tx = tx.clone();
        threads.push(std::thread::spawn(move || -> Result<()> {
            for round in 0..ROUNDS {
                client.until(|m| matches!(m, ServerMessage::DocChanges { .. }).then_some(()))?;
                let _ = tx.send((round, Instant::now()));
            }
            Ok(())
        }));
    }
    drop(tx);
    std::thread::sleep(Duration::from_secs(1));
    let mut doc = FolderDoc::new(&[1; 16]);
    let mut all_ms = Vec::new();
    let mut last_ms = Vec::new();
    for round in 0..ROUNDS {
        let before = doc.heads();
        doc.create_node(
            NodeId([round as u8 + 1; 16]),
            NodeId::ROOT,
            &format!("dir{round}"),
            NodeKind::Dir,
            0o755,
            None,
            ShortDeviceId([1; 8]),
            WallTime(1),
        )?;
        doc.commit(WallTime(1));
        let changes = doc.changes_since(&before);
        let sent = Instant::now();
        sender.send(&ClientMessage::DocChanges {
            folder: FolderId::default_folder(),
            changes,
        })?;
        let mut latest = Duration::ZERO;
        for _ in 0..RECEIVERS {
            let (r, at) = rx.recv_timeout(Duration::from_secs(10))?;
            if r != round {
                bail!("round {r} arrived during round {round}");
            }
            let took = at.duration_since(sent);
            latest = latest.max(took);
            all_ms.push(took.as_secs_f64() * 1000.0);
        }
        last_ms.push(latest.as_secs_f64() * 1000.0);
        std::thread::sleep(Duration::from_millis(100));
    }
    for thread in threads {
        thread
            .join()
            .map_err(|_| anyhow::anyhow!("receiver panicked"))??;
    }
    all_ms.sort_by(f64::total_cmp);
    last_ms.sort_by(f64::total_cmp);
    Ok(json!({
        "workload": "R2 fan-out",
        "receivers": RECEIVERS,
        "rounds": ROUNDS,
        "per_device_p50_ms": round(all_ms[all_ms.len() / 2]),
        "all_devices_p50_ms": round(last_ms[last_ms.len() / 2]),
        "all_devices_max_ms": round(last_ms[last_ms.len() - 1]),
    }))
}

/// Bytes of all files under `dir`.
fn disk_usage(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            disk_usage(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

/// R3: relay disk usage after uploading `gib` GiB of mixed files, next to the compressed payload.
fn r3(root: &Path, gib: usize) -> Result<serde_json::Value> {
    let s = setup(root)?;
    let bytes = fill(&s.a.dir, 33, 1000, gib * 16, 64)?;
    let mut seen = std::collections::HashSet::new();
    let mut payload = 0u64;
    for entry in cloud3_tests::snapshot(&s.a.dir).values() {
        if let cloud3_tests::Entry::File(data, _) = entry {
            for range in cdc::cut(data) {
                let raw = &data[range];
                if seen.insert(ChunkId::of(raw)) {
                    payload += compress(raw).bytes.len() as u64;
                }
            }
        }
    }
    let upload = sync(&s.a)?;
    let used = disk_usage(&root.join("relay"))?;
    Ok(json!({
        "workload": "R3 relay disk usage",
        "file_bytes": bytes,
        "compressed_payload_bytes": payload,
        "relay_disk_bytes": used,
        "ratio_disk_vs_payload": round(used as f64 / payload as f64),
        "upload": upload.json(),
    }))
}

/// Compressed bytes of the distinct chunks of every file under `dir`.
fn compressed_payload(dir: &Path) -> u64 {
    let mut seen = std::collections::HashSet::new();
    let mut payload = 0u64;
    for entry in cloud3_tests::snapshot(dir).values() {
        if let cloud3_tests::Entry::File(data, _) = entry {
            for range in cdc::cut(data) {
                let raw = &data[range];
                if seen.insert(ChunkId::of(raw)) {
                    payload += compress(raw).bytes.len() as u64;
                }
            }
        }
    }
    payload
}

/// One W2-style edit on `a` and its propagation latency to `b`, in milliseconds.
fn edit_latency(a: &Device, b: &Device, tag: &str, i: usize) -> Result<f64> {
    let content = format!("{tag} edit {i} at {:?}", Instant::now());
    let path = format!("notes/{tag}-{i}.txt");
    let started = Instant::now();
    a.write(&path, &content);
    wait_until(Duration::from_secs(30), "the edit on b", || {
        b.read(&path).as_deref() == Some(content.as_bytes())
    })?;
    Ok(started.elapsed().as_secs_f64() * 1000.0)
}

/// G1: the storage lifecycle. A 100 MiB file has 1 % of it rewritten 50 times (each synced) and
/// 10,000 small files are made and deleted; the relay restarts with its clock 31 days on (past
/// the 30-day window), W2 edits give a baseline, then `cloud3-relay gc` runs (through the
/// running relay) while the edits go on. Reports the collection's time, the relay's pack bytes
/// before and after against the live compressed data, and W2 p99 during collection and
/// compaction against its baseline.
fn g1(root: &Path, quick: bool) -> Result<serde_json::Value> {
    let (mib, rewrites, small) = if quick {
        (10, 5, 1_000)
    } else {
        (100, 50, 10_000)
    };
    let data = root.join("relay");
    let flags = ["--gc-interval-secs", "0"];
    let mut relay = Relay::start_with(&data, "127.0.0.1:0", &flags)?;
    let invite = relay.add_user("bench")?;
    let mut a = Device::init(&root.join("a"), &relay, "bench", "--invite", &invite, "a")?;
    let code = a.pair(false)?;
    let mut b = Device::init(&root.join("b"), &relay, "bench", "--pair", &code, "b")?;
    let mut rng = ChaCha8Rng::seed_from_u64(17);
    let mut big = mixed(&mut rng, mib << 20);
    a.write("big.bin", &big);
    for i in 0..small {
        let len = rng.random_range(100..4000);
        a.write(
            &format!("small/{:02}/f{i}.txt", i % 100),
            mixed(&mut rng, len),
        );
    }
    sync(&a)?;
    let region = big.len() / 100;
    for _ in 0..rewrites {
        let at = rng.random_range(0..big.len() - region);
        rng.fill_bytes(&mut big[at..at + region]);
        a.write("big.bin", &big);
        sync(&a)?;
    }
    std::fs::remove_dir_all(a.dir.join("small"))?;
    sync(&a)?;
    let packs_before = disk_usage(&data.join("packs"))?;

    // 31 days later.
    let addr = relay.addr.clone();
    relay.stop()?;
    let skew = (31 * 86_400).to_string();
    let flags = [
        "--gc-interval-secs",
        "0",
        "--clock-skew-secs",
        skew.as_str(),
    ];
    let relay = Relay::start_with(&data, &addr, &flags)?;
    a.start_daemon()?;
    b.start_daemon()?;
    wait_until(Duration::from_secs(300), "b to hold big.bin", || {
        b.read("big.bin").as_deref() == Some(big.as_slice())
    })?;
    let edits = if quick { 10 } else { 40 };
    let mut baseline = Vec::new();
    for i in 0..edits {
        baseline.push(edit_latency(&a, &b, "baseline", i)?);
        std::thread::sleep(Duration::from_millis(200));
    }
    let started = Instant::now();
    let mut gc = Command::new(binary("cloud3-relay"))
        .args(["gc", "--data", path_str(&data)?])
        .stdout(Stdio::piped())
        .spawn()
        .context("spawn cloud3-relay gc")?;
    let mut during = Vec::new();
    let mut i = 0;
    let status = loop {
        if let Some(status) = gc.try_wait()? {
            break status;
        }
        during.push(edit_latency(&a, &b, "during", i)?);
        i += 1;
        std::thread::sleep(Duration::from_millis(200));
    };
    let gc_wall = started.elapsed().as_secs_f64();
    let mut report = String::new();
    std::io::Read::read_to_string(&mut gc.stdout.take().context("gc stdout")?, &mut report)?;
    if !status.success() {
        bail!("cloud3-relay gc failed: {status}");
    }
    a.stop_daemon()?;
    b.stop_daemon()?;
    let packs_after = disk_usage(&data.join("packs"))?;
    let live = compressed_payload(&a.dir);
    drop(relay);
    let base = percentiles(&baseline);
    let mut during_figures = if during.is_empty() {
        json!(null)
    } else {
        percentiles(&during)
    };
    if let (Some(d), Some(b)) = (during_figures["p99_ms"].as_f64(), base["p99_ms"].as_f64()) {
        during_figures["p99_vs_baseline"] = json!(round(d / b));
    }
    Ok(json!({
        "workload": "G1 garbage collection and compaction",
        "big_file_mib": mib,
        "rewrites_of_1_percent": rewrites,
        "small_files_deleted": small,
        "relay_pack_bytes_before": packs_before,
        "relay_pack_bytes_after": packs_after,
        "live_compressed_bytes": live,
        "ratio_after_vs_live": round(packs_after as f64 / live as f64),
        "gc_wall_s": round(gc_wall),
        "gc_report": report.lines().collect::<Vec<_>>(),
        "w2_baseline": base,
        "w2_during_gc": during_figures,
        "w2_edits_during_gc": during.len(),
    }))
}

/// D1: the folder document's size as one folder is edited 100,000 times (1,000 files, each
/// edit a new content of one of them, committed on its own as a device's scan commits it),
/// saved whole as the relay and devices store it; bytes per edit.
fn d1(quick: bool) -> serde_json::Value {
    let (files, edits) = if quick {
        (100, 10_000)
    } else {
        (1_000, 100_000)
    };
    let author = ShortDeviceId([1; 8]);
    let mut doc = FolderDoc::new(&[1; 16]);
    let mut rng = ChaCha8Rng::seed_from_u64(5);
    let content = |rng: &mut ChaCha8Rng, at: i64| {
        let mut raw = [0u8; 64];
        rng.fill_bytes(&mut raw);
        let id = ChunkId::of(&raw);
        cloud3_engine::tree::Content {
            size: 64,
            mtime: WallTime(at),
            written_at: WallTime(at),
            author,
            body: cloud3_engine::tree::ContentBody::Inline(cloud3_engine::chunk::Manifest {
                entries: vec![cloud3_engine::chunk::ManifestEntry { id, len: 64 }],
            }),
        }
    };
    let nodes: Vec<NodeId> = (0..files)
        .map(|n: u32| {
            let mut id = [0u8; 16];
            id[..4].copy_from_slice(&n.to_be_bytes());
            id[15] = 1;
            NodeId(id)
        })
        .collect();
    let start = 1_700_000_000_000i64;
    for (n, node) in nodes.iter().enumerate() {
        let body = content(&mut rng, start);
        doc.create_node(
            *node,
            NodeId::ROOT,
            &format!("file-{n}.txt"),
            NodeKind::File,
            0o644,
            Some(body),
            author,
            WallTime(start),
        )
        .expect("create");
    }
    doc.commit(WallTime(start));
    let created = doc.save().len();
    let started = Instant::now();
    let mut sizes = Vec::new();
    for edit in 1..=edits {
        let at = start + edit as i64 * 1000;
        let node = nodes[rng.random_range(0..nodes.len())];
        doc.set_content(node, content(&mut rng, at)).expect("edit");
        doc.commit(WallTime(at));
        if edit % (edits / 4) == 0 {
            sizes.push(json!({"edits": edit, "saved_bytes": doc.save().len()}));
        }
    }
    let edit_s = started.elapsed().as_secs_f64();
    let saved = doc.save().len();
    let loaded = Instant::now();
    let _ = FolderDoc::load(&doc.save(), &[2; 16]).expect("load");
    let load_s = loaded.elapsed().as_secs_f64();
    json!({
        "workload": "D1 folder document growth",
        "files": files,
        "edits": edits,
        "saved_bytes_after_create": created,
        "saved_bytes_after_edits": saved,
        "bytes_per_edit": round((saved - created) as f64 / edits as f64),
        "growth": sizes,
        "edit_and_commit_s": round(edit_s),
        "load_s": round(load_s),
    })
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let quick = args.iter().any(|a| a == "--quick");
    let mut chosen: Vec<&str> = args
        .iter()
        .map(String::as_str)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if chosen.is_empty() || chosen.contains(&"all") {
        chosen = vec![
            "W1", "W1-TLS", "W2", "W2-TLS", "W2b", "W3", "W4", "W5", "I1", "R1", "R1-10k", "R2",
            "R3", "G1", "D1",
        ];
    }
    for workload in chosen {
        let tmp = tempfile::tempdir()?;
        let result = match workload {
            "W1" => w1(tmp.path(), quick, Transport::Plain),
            "W1-TLS" => w1(tmp.path(), quick, Transport::Tls),
            "W2" => w2(tmp.path(), quick, Transport::Plain),
            "W2-TLS" => w2(tmp.path(), quick, Transport::Tls),
            "W2b" => w2b(tmp.path(), quick),
            "I1" => i1(tmp.path(), quick),
            "W3" => w3(tmp.path(), quick),
            "W4" => w4(tmp.path()),
            "W5" => w5(tmp.path(), quick),
            "R1" => r1(tmp.path(), if quick { 100 } else { 1000 }),
            "R1-10k" => r1(tmp.path(), 10_000),
            "R2" => r2(tmp.path()),
            "R3" => r3(tmp.path(), if quick { 1 } else { 2 }),
            "G1" => g1(tmp.path(), quick),
            "D1" => Ok(d1(quick)),
            "S1" => scan::s1(tmp.path(), quick),
            "S2" => scan::s2(tmp.path(), quick),
            "S3" => scan::s3(tmp.path(), quick),
            other => bail!(
                "unknown workload {other}: W1..W5, W1-TLS, W2-TLS, W2b, I1, R1, R1-10k, R2, R3, \
                 G1, D1, S1, S2, S3 or all"
            ),
        }
        .with_context(|| format!("workload {workload}"))?;
        println!("{result}");
    }
    Ok(())
}
