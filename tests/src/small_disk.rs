//! Small file systems a test mounts for itself (a tmpfs of a few MiB), to fill a relay's or a
//! device's disk without touching the machine's. Mounting needs root (or the capability); where
//! it is not permitted, [`SmallDisk::mount`] says so on stderr and the test skips itself. The
//! mount is taken down when the guard is dropped, whatever the test's outcome.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

/// A mounted tmpfs, unmounted on drop.
#[derive(Debug)]
pub struct SmallDisk {
    /// Where it is mounted.
    pub dir: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `mib` MiB at `dir` (created); `None`, after printing why, when this
    /// machine does not let the test mount one.
    pub fn mount(dir: &Path, mib: u64) -> Result<Option<SmallDisk>> {
        std::fs::create_dir_all(dir).context("create mount point")?;
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir)
            .output();
        match output {
            Ok(output) if output.status.success() => Ok(Some(SmallDisk {
                dir: dir.to_owned(),
            })),
            Ok(output) => {
                eprintln!(
                    "SKIPPED: cannot mount a {mib} MiB tmpfs here (not root?): {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                );
                Ok(None)
            }
            Err(error) => {
                eprintln!("SKIPPED: cannot run mount: {error}");
                Ok(None)
            }
        }
    }

    /// Grows (or shrinks) the file system to `mib` MiB in place, as an operator adding space.
    pub fn resize(&self, mib: u64) -> Result<()> {
        let output = Command::new("mount")
            .args(["-o", &format!("remount,size={mib}m")])
            .arg(&self.dir)
            .output()
            .context("run mount")?;
        if !output.status.success() {
            bail!("remount: {}", String::from_utf8_lossy(&output.stderr));
        }
        Ok(())
    }

    /// Bytes still free.
    pub fn free(&self) -> Result<u64> {
        let stat = rustix::fs::statvfs(&self.dir).context("statvfs")?;
        Ok(stat.f_bavail * stat.f_frsize)
    }

    /// Fills what is free with a file at `path` (on this disk) until the disk refuses more.
    pub fn fill(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        let mut file = std::fs::File::create(path).context("create filler")?;
        let block = vec![0xa5u8; 64 << 10];
        loop {
            match file.write(&block) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => return Ok(()),
                Err(e) => return Err(e).context("fill the disk"),
            }
        }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let done = Command::new("umount")
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !done {
            // Something still holds a file there (a process being killed): detach it now, the
            // kernel frees it when the last user goes.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
    }
}
