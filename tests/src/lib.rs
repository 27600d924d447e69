//! Support for cloud3's end-to-end tests and benchmarks: start real `cloud3-relay` and `cloud3`
//! processes on loopback in temporary directories, and compare folders.
//!
//! The binaries are looked up next to the running test executable (`target/<profile>/`); the
//! workspace's test command builds them first (`cargo build --workspace --bins`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

pub mod clamd;
pub mod client;
pub mod pki;
pub mod proxy;
pub mod small_disk;
pub use proxy::Proxy;

/// Path of a workspace binary built in the same profile as the running executable.
pub fn binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let mut dir = exe
        .parent()
        .expect("the test executable has a directory")
        .to_owned();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        path.display()
    );
    path
}

/// A running relay process with its own data directory.
pub struct Relay {
    /// The data directory.
    pub data: PathBuf,
    /// `ws://127.0.0.1:PORT`.
    pub url: String,
    /// The listening address.
    pub addr: String,
    child: Child,
}

impl Relay {
    /// Starts a relay on a free loopback port.
    pub fn start(data: &Path) -> Result<Relay> {
        Self::start_on(data, "127.0.0.1:0")
    }

    /// Starts a relay on `listen`.
    pub fn start_on(data: &Path, listen: &str) -> Result<Relay> {
        Self::start_with(data, listen, &[])
    }

    /// Starts a relay on `listen` with extra `serve` flags.
    pub fn start_with(data: &Path, listen: &str, flags: &[&str]) -> Result<Relay> {
        let mut child = Command::new(binary("cloud3-relay"))
            .args(["serve", "--listen", listen, "--data"])
            .arg(data)
            .args(flags)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawn cloud3-relay")?;
        let stdout = child.stdout.take().context("relay stdout")?;
        let mut lines = BufReader::new(stdout).lines();
        let addr = loop {
            let line = lines
                .next()
                .context("relay exited before listening")?
                .context("read relay stdout")?;
            if let Some(addr) = line.strip_prefix("listening on ") {
                break addr.trim().to_owned();
            }
        };
        // Keep draining stdout so the relay never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Ok(Relay {
            data: data.to_owned(),
            url: format!("ws://{addr}"),
            addr,
            child,
        })
    }

    /// Adds a user and returns the invite code (the last stdout line).
    pub fn add_user(&self, name: &str) -> Result<String> {
        let output = Command::new(binary("cloud3-relay"))
            .args(["user", "add", name, "--data"])
            .arg(&self.data)
            .output()
            .context("run cloud3-relay user add")?;
        last_line(&output)
    }

    /// Runs a `cloud3-relay` admin subcommand (`scan list`, ...) on this relay's data.
    pub fn admin(&self, args: &[&str]) -> Result<Output> {
        Command::new(binary("cloud3-relay"))
            .args(args)
            .arg("--data")
            .arg(&self.data)
            .output()
            .context("run cloud3-relay")
    }

    /// The relay's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends the relay SIGHUP (it reloads its TLS certificate and its scan deny list).
    pub fn hangup(&self) {
        signal(&self.child, "HUP");
    }

    /// Kills the relay with SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the relay with SIGTERM and waits for it.
    pub fn stop(&mut self) -> Result<()> {
        signal(&self.child, "TERM");
        wait_with_timeout(&mut self.child, Duration::from_secs(20))
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One device: a synced folder and its `cloud3` commands.
pub struct Device {
    /// The synced folder.
    pub dir: PathBuf,
    daemon: Option<Child>,
}

impl Device {
    /// `cloud3 status --json`, parsed.
    pub fn status_json(&self) -> Result<serde_json::Value> {
        let output = self.command(&["status", "--json"])?;
        check(&output, "cloud3 status --json")?;
        serde_json::from_slice(&output.stdout).context("status JSON")
    }

    /// Waits up to `timeout` until this device's daemon answers `status` and is connected to
    /// the relay.
    pub fn wait_connected(&self, timeout: Duration) -> Result<()> {
        wait_until(timeout, "the daemon to answer, connected", || {
            std::thread::sleep(Duration::from_millis(100));
            self.status_json()
                .is_ok_and(|s| s["source"] == "daemon" && s["connected"] == true)
        })?;
        Ok(())
    }

    /// `cloud3 init` with an invite or pairing code.
    pub fn init(
        dir: &Path,
        relay: &Relay,
        user: &str,
        code_flag: &str,
        code: &str,
        name: &str,
    ) -> Result<Device> {
        Device::init_at(dir, &relay.url, user, code_flag, code, name, &[])
    }

    /// `cloud3 init` against the relay URL `url` (a [`Proxy`]'s, or `wss://`), with `extra`
    /// flags (such as `--ca FILE`).
    pub fn init_at(
        dir: &Path,
        url: &str,
        user: &str,
        code_flag: &str,
        code: &str,
        name: &str,
        extra: &[&str],
    ) -> Result<Device> {
        let mut args = vec![
            "init",
            dir.to_str().context("utf-8 dir")?,
            "--relay",
            url,
            "--user",
            user,
            code_flag,
            code,
            "--device-name",
            name,
        ];
        args.extend_from_slice(extra);
        let output = cloud3(&args)?;
        check(&output, "cloud3 init")?;
        Ok(Device {
            dir: dir.to_owned(),
            daemon: None,
        })
    }

    /// Routes this device through a new byte-counting [`Proxy`] to `relay`.
    pub fn behind_proxy(&self, relay: &Relay) -> Result<Proxy> {
        let proxy = Proxy::start(&relay.addr)?;
        self.set_relay(&proxy.url)?;
        Ok(proxy)
    }

    /// Points this device at another relay URL (for example a [`Proxy`]'s).
    pub fn set_relay(&self, url: &str) -> Result<()> {
        let path = self.dir.join(".cloud3/config.toml");
        let config = std::fs::read_to_string(&path).context("read agent config")?;
        let config: String = config
            .lines()
            .map(|line| {
                if line.starts_with("relay =") || line.starts_with("relay=") {
                    format!("relay = \"{url}\"\n")
                } else {
                    format!("{line}\n")
                }
            })
            .collect();
        std::fs::write(&path, config).context("write agent config")
    }

    /// Runs a `cloud3` subcommand with `--dir` for this folder.
    pub fn command(&self, args: &[&str]) -> Result<Output> {
        let mut all: Vec<&str> = args.to_vec();
        all.push("--dir");
        all.push(self.dir.to_str().context("utf-8 dir")?);
        cloud3(&all)
    }

    /// `cloud3 sync`, which must succeed.
    pub fn sync(&self) -> Result<()> {
        let output = self.command(&["sync"])?;
        check(&output, "cloud3 sync")
    }

    /// `cloud3 pair`, returning the code.
    pub fn pair(&self, read_only: bool) -> Result<String> {
        let output = if read_only {
            self.command(&["pair", "--read-only"])?
        } else {
            self.command(&["pair"])?
        };
        last_line(&output)
    }

    /// Starts `cloud3 run` in the background; its stderr goes to [`Device::daemon_log`].
    pub fn start_daemon(&mut self) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .context("open daemon log")?;
        let child = Command::new(binary("cloud3"))
            .args(["run", "--dir"])
            .arg(&self.dir)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("spawn cloud3 run")?;
        self.daemon = Some(child);
        Ok(())
    }

    /// The running daemon's process id.
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(Child::id)
    }

    fn log_path(&self) -> PathBuf {
        self.dir.with_extension("daemon.log")
    }

    /// Everything the daemons of this device wrote to stderr.
    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Waits for the daemon to exit on its own and returns its exit status.
    pub fn wait_daemon_exit(&mut self, timeout: Duration) -> Result<std::process::ExitStatus> {
        let mut child = self.daemon.take().context("no daemon running")?;
        let start = Instant::now();
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if start.elapsed() > timeout {
                self.daemon = Some(child);
                bail!("daemon still running after {timeout:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the daemon with SIGTERM.
    pub fn stop_daemon(&mut self) -> Result<()> {
        if let Some(mut child) = self.daemon.take() {
            signal(&child, "TERM");
            wait_with_timeout(&mut child, Duration::from_secs(20))?;
        }
        Ok(())
    }

    /// Kills the daemon with SIGKILL.
    pub fn kill_daemon(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Writes a file (creating parents).
    pub fn write(&self, path: &str, bytes: impl AsRef<[u8]>) {
        let full = self.dir.join(path);
        std::fs::create_dir_all(full.parent().expect("file has a parent")).expect("mkdir");
        std::fs::write(full, bytes).expect("write file");
    }

    /// Reads a file.
    pub fn read(&self, path: &str) -> Option<Vec<u8>> {
        std::fs::read(self.dir.join(path)).ok()
    }

    /// The folder's tree (see [`snapshot`]).
    pub fn tree(&self) -> BTreeMap<String, Entry> {
        snapshot(&self.dir)
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        self.kill_daemon();
    }
}

/// What a folder holds at a path, for comparisons.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// A directory.
    Dir,
    /// A file: bytes and whether it is executable.
    File(Vec<u8>, bool),
    /// A symlink and its target.
    Symlink(String),
}

/// Every path under `dir` except `.cloud3/`, with its contents.
pub fn snapshot(dir: &Path) -> BTreeMap<String, Entry> {
    let mut tree = BTreeMap::new();
    walk(dir, dir, &mut tree);
    tree
}

fn walk(root: &Path, dir: &Path, tree: &mut BTreeMap<String, Entry>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let relative = path
            .strip_prefix(root)
            .expect("walk stays under root")
            .to_string_lossy()
            .into_owned();
        if relative == ".cloud3" {
            continue;
        }
        let Ok(meta) = path.symlink_metadata() else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).expect("read link");
            tree.insert(
                relative,
                Entry::Symlink(target.to_string_lossy().into_owned()),
            );
        } else if meta.is_dir() {
            tree.insert(relative, Entry::Dir);
            walk(root, &path, tree);
        } else {
            let bytes = std::fs::read(&path).unwrap_or_default();
            tree.insert(
                relative,
                Entry::File(bytes, meta.permissions().mode() & 0o111 != 0),
            );
        }
    }
}

/// Waits until `check` holds, polling; fails with `what` after `timeout`.
pub fn wait_until(
    timeout: Duration,
    what: &str,
    mut check: impl FnMut() -> bool,
) -> Result<Duration> {
    let start = Instant::now();
    loop {
        if check() {
            return Ok(start.elapsed());
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `cloud3` with `args`.
pub fn cloud3(args: &[&str]) -> Result<Output> {
    Command::new(binary("cloud3"))
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .output()
        .context("run cloud3")
}

/// `len` incompressible bytes, the same for the same `seed`.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    use rand::{Rng, SeedableRng};
    let mut bytes = vec![0u8; len];
    rand_chacha::ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut bytes);
    bytes
}

/// Fails with the command's stderr unless it exited 0.
pub fn check(output: &Output, what: &str) -> Result<()> {
    if !output.status.success() {
        bail!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout)
        );
    }
    Ok(())
}

fn last_line(output: &Output) -> Result<String> {
    check(output, "command")?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .map(|line| line.trim().to_owned())
        .context("no output")
}

fn signal(child: &Child, name: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status();
}

fn wait_with_timeout(child: &mut Child, timeout: Duration) -> Result<()> {
    let start = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            bail!("process {} did not exit within {timeout:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// CPU time (user + system) a process has used so far, in seconds, from `/proc/PID/stat`.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("read /proc/{pid}/stat"))?;
    // Fields after the command name (which is in parentheses and may hold spaces): state is
    // field 3, utime 14 and stime 15.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .context("stat field")
    };
    Ok((ticks(11)? + ticks(12)?) as f64 / clock_ticks_per_second()?)
}

fn clock_ticks_per_second() -> Result<f64> {
    let output = Command::new("getconf").arg("CLK_TCK").output()?;
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .context("getconf CLK_TCK")
}

/// The share of one core a process used over `window`, measured from now.
pub fn cpu_share(pid: u32, window: Duration) -> Result<f64> {
    let before = cpu_seconds(pid)?;
    std::thread::sleep(window);
    Ok((cpu_seconds(pid)? - before) / window.as_secs_f64())
}
