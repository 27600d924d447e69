//! A real ClamAV daemon for the malware-scan tests and the benchmark: `clamd --foreground -c
//! CONF` in a temp dir, listening on a Unix socket there, with a signature database the test
//! writes itself (no freshclam, no network): a `.ndb` body signature for the EICAR test string
//! and a `.hsb` SHA-256 entry per file the caller names. The EICAR string is assembled from two
//! halves at run time so this repository never contains it.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cloud3_engine::ids::ChunkId;

/// The signature name clamd reports for the EICAR body signature (clamd adds `.UNOFFICIAL`
/// to signatures outside its official databases).
pub const EICAR_SIGNATURE: &str = "Cloud3.Test.Eicar.UNOFFICIAL";
/// The signature name of the `.hsb` entries.
pub const HASH_SIGNATURE: &str = "Cloud3.Test.Hash.UNOFFICIAL";

/// Bytes clamd always flags by their SHA-256 (the `.hsb` entry every test database has).
pub fn hash_listed() -> Vec<u8> {
    b"cloud3 test file listed by its sha-256\n".to_vec()
}

/// The EICAR anti-virus test string.
pub fn eicar() -> Vec<u8> {
    let first = ["X5O!P%@AP[4\\PZX54(P^)", "7CC)7}$"].concat();
    let second = ["EICAR-STANDARD-ANTIVIRUS", "-TEST-FILE!$H+H*"].concat();
    [first, second].concat().into_bytes()
}

/// The clamd binary, if ClamAV's daemon is installed.
pub fn clamd_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").into_iter().flat_map(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("clamd"))
            .collect::<Vec<_>>()
    });
    on_path
        .chain([PathBuf::from("/usr/sbin/clamd")])
        .find(|path| path.exists())
}

/// A running clamd.
pub struct Clamd {
    dir: PathBuf,
    /// Its Unix socket.
    pub socket: PathBuf,
    child: Option<Child>,
}

impl Clamd {
    /// Writes the configuration and signatures into `dir` and starts clamd; `flag_hashes` are
    /// files whose SHA-256 clamd flags as [`HASH_SIGNATURE`] (besides [`hash_listed`]);
    /// `max_stream` is `StreamMaxLength` (such as `"25M"`), and `MaxFileSize` and `MaxScanSize`
    /// too: clamd answers OK, unscanned, for a stream over those.
    pub fn start(dir: &Path, flag_hashes: &[&[u8]], max_stream: &str) -> Result<Clamd> {
        let Some(binary) = clamd_binary() else {
            bail!("clamd is not installed: apt-get install clamav-daemon (scripts/test-all does)");
        };
        let db = dir.join("db");
        std::fs::create_dir_all(&db).context("create clamd db dir")?;
        std::fs::write(
            db.join("cloud3.ndb"),
            format!("Cloud3.Test.Eicar:0:*:{}\n", hex(&eicar())),
        )
        .context("write ndb")?;
        let listed = hash_listed();
        let hsb: String = flag_hashes
            .iter()
            .chain([&listed[..]].iter())
            .map(|bytes| {
                format!(
                    "{}:{}:Cloud3.Test.Hash\n",
                    ChunkId::of(bytes).to_hex(),
                    bytes.len()
                )
            })
            .collect();
        std::fs::write(db.join("cloud3.hsb"), hsb).context("write hsb")?;
        let socket = dir.join("clamd.sock");
        let conf = dir.join("clamd.conf");
        std::fs::write(
            &conf,
            format!(
                "LocalSocket {}\nDatabaseDirectory {}\nForeground yes\nLogFile {}\n\
                 StreamMaxLength {max_stream}\nMaxFileSize {max_stream}\nMaxScanSize {max_stream}\n\
                 MaxThreads 4\nTemporaryDirectory {}\n\
                 PidFile {}\n",
                socket.display(),
                db.display(),
                dir.join("clamd.log").display(),
                dir.display(),
                dir.join("clamd.pid").display(),
            ),
        )
        .context("write clamd.conf")?;
        let mut clamd = Clamd {
            dir: dir.to_owned(),
            socket,
            child: None,
        };
        clamd.child = Some(
            Command::new(binary)
                .args(["--foreground", "-c"])
                .arg(&conf)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("spawn clamd")?,
        );
        clamd.wait_ready()?;
        Ok(clamd)
    }

    /// A `clamdscan` configuration file for this clamd (for the benchmark's reference).
    pub fn clamdscan_conf(&self) -> Result<PathBuf> {
        let path = self.dir.join("clamdscan.conf");
        std::fs::write(&path, format!("LocalSocket {}\n", self.socket.display()))?;
        Ok(path)
    }

    /// `--clamd` for the relay.
    pub fn addr(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// Kills clamd with SIGKILL (a crash).
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(&self.socket);
    }

    /// Starts clamd again with the same configuration and signatures.
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let binary = clamd_binary().context("clamd vanished")?;
        self.child = Some(
            Command::new(binary)
                .args(["--foreground", "-c"])
                .arg(self.dir.join("clamd.conf"))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("spawn clamd")?,
        );
        self.wait_ready()
    }

    /// clamd's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Waits until clamd answers `PING` (loading signatures takes a moment).
    fn wait_ready(&mut self) -> Result<()> {
        let ready = crate::wait_until(Duration::from_secs(60), "clamd to answer PING", || {
            ping(&self.socket).is_ok_and(|answer| answer == "PONG")
        });
        if ready.is_err() {
            let log = std::fs::read_to_string(self.dir.join("clamd.log")).unwrap_or_default();
            bail!("clamd did not start: {log}");
        }
        Ok(())
    }
}

impl Drop for Clamd {
    fn drop(&mut self) {
        self.kill();
    }
}

fn ping(socket: &Path) -> Result<String> {
    let mut stream = UnixStream::connect(socket)?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    stream.write_all(b"zPING\0")?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    Ok(String::from_utf8_lossy(&answer)
        .trim_end_matches('\0')
        .trim()
        .to_owned())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
