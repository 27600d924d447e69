//! Safety rails: one mistake on one device must not empty every device. A folder emptied at
//! once holds its deletions until `cloud3 confirm-deletes` (putting the files back cancels
//! them); a folder whose root is no longer the one the device synced (an unmounted disk's
//! mount point) stops syncing instead of deleting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cloud3_tests::{Device, Entry, check, wait_until};

use crate::setup;

/// Files in the folder that gets emptied.
const FILES: usize = 1000;

/// Generous bound for the daemons to notice and exchange a change.
const SETTLE: Duration = Duration::from_secs(60);

fn paused(device: &Device) -> Result<u64> {
    device.status_json()?["paused_deletes"]
        .as_u64()
        .context("paused_deletes in status --json")
}

/// Runs a command that must succeed; returns its stdout.
fn run(device: &Device, args: &[&str]) -> Result<String> {
    let output = device.command(args)?;
    check(&output, &format!("cloud3 {}", args.join(" ")))?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// `FILES` small files in 10 directories.
fn fill(device: &Device) {
    for idx in 0..FILES {
        device.write(
            &format!("d{}/file{idx:04}.txt", idx % 10),
            format!("file {idx}\n"),
        );
    }
}

/// Moves everything but `.cloud3/` from `dir` into `to` (a new directory).
fn move_contents(dir: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_name() == ".cloud3" {
            continue;
        }
        std::fs::rename(entry.path(), to.join(entry.file_name()))?;
    }
    Ok(())
}

/// Copies the tree `from` into `dir` (new inodes, as a restore from a backup makes).
fn copy_back(from: &BTreeMap<String, Entry>, dir: &Path) -> Result<()> {
    for (path, entry) in from {
        match entry {
            Entry::Dir => std::fs::create_dir_all(dir.join(path))?,
            Entry::File(bytes, _) => std::fs::write(dir.join(path), bytes)?,
            Entry::Symlink(_) => bail!("no symlinks expected"),
        }
    }
    Ok(())
}

/// Sets `key = value` in the device's config (replacing it if present).
fn set_config(device: &Device, key: &str, value: &str) -> Result<()> {
    let path = device.dir.join(".cloud3/config.toml");
    let text = std::fs::read_to_string(&path)?;
    let mut lines: Vec<String> = text
        .lines()
        .filter(|line| !line.starts_with(&format!("{key} =")))
        .map(str::to_owned)
        .collect();
    // Top-level keys go before any table.
    let at = lines
        .iter()
        .position(|line| line.starts_with('['))
        .unwrap_or(lines.len());
    lines.insert(at, format!("{key} = {value}"));
    std::fs::write(&path, lines.join("\n") + "\n")?;
    Ok(())
}

#[test]
fn an_emptied_folder_deletes_nothing_elsewhere_until_confirmed() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, devices) = setup(tmp.path(), 2)?;
    let (a, b) = (&devices[0], &devices[1]);
    fill(a);
    a.sync()?;
    b.sync()?;
    let full = a.tree();
    assert_eq!(b.tree(), full, "B holds A's {FILES} files");

    move_contents(&a.dir, &tmp.path().join("away"))?;
    let said = run(a, &["sync"])?;
    assert!(said.contains("deletions paused"), "sync says so: {said}");
    let held = paused(a)?;
    assert!(
        held >= FILES as u64,
        "{held} deletions paused, expected at least {FILES}"
    );
    let text = run(a, &["status"])?;
    assert!(
        text.contains("deletions paused") && text.contains("confirm-deletes"),
        "status explains the pause: {text}"
    );
    // The rest of syncing goes on both ways while the deletions wait.
    a.write("new-on-a.txt", "made while paused\n");
    a.sync()?;
    b.write("new-on-b.txt", "from b\n");
    b.write("d0/file0000.txt", "edited on b\n");
    b.sync()?;
    a.sync()?;
    let mut expected_b = full.clone();
    expected_b.insert(
        "new-on-a.txt".into(),
        Entry::File(b"made while paused\n".to_vec(), false),
    );
    expected_b.insert(
        "new-on-b.txt".into(),
        Entry::File(b"from b\n".to_vec(), false),
    );
    expected_b.insert(
        "d0/file0000.txt".into(),
        Entry::File(b"edited on b\n".to_vec(), false),
    );
    assert_eq!(b.tree(), expected_b, "B deleted nothing");
    let on_a = a.tree();
    assert_eq!(
        on_a.get("new-on-b.txt"),
        Some(&Entry::File(b"from b\n".to_vec(), false)),
        "B's new file reached A"
    );
    assert!(
        !on_a.contains_key("d1/file0001.txt"),
        "A's emptied files are not written back while paused"
    );

    let said = run(a, &["confirm-deletes"])?;
    assert!(
        said.contains("sent"),
        "confirm-deletes says what it did: {said}"
    );
    assert_eq!(paused(a)?, 0, "nothing paused after confirming");
    b.sync()?;
    let left: Vec<String> = b
        .tree()
        .keys()
        .filter(|path| path.contains("file"))
        .cloned()
        .collect();
    // B's edit of d0/file0000.txt happened after A last saw it: edit beats delete.
    assert_eq!(
        left,
        vec!["d0/file0000.txt".to_owned()],
        "confirming propagated every deletion except the one edited on B"
    );
    assert!(b.tree().contains_key("new-on-a.txt") && b.tree().contains_key("new-on-b.txt"));
    Ok(())
}

#[test]
fn a_partial_restore_keeps_the_rest_held_across_restarts() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, devices) = setup(tmp.path(), 2)?;
    let (a, b) = (&devices[0], &devices[1]);
    fill(a);
    a.sync()?;
    b.sync()?;
    let full = a.tree();
    let away = tmp.path().join("away");
    move_contents(&a.dir, &away)?;
    // Each `sync` is a new process: the pause is kept in the database, not in memory.
    a.sync()?;
    assert!(paused(a)? >= FILES as u64);
    // Nine of the ten directories come back: 100 files (and their directory) stay missing,
    // fewer than the thresholds, yet they stay held while the pause lasts.
    for idx in 1..10 {
        std::fs::rename(away.join(format!("d{idx}")), a.dir.join(format!("d{idx}")))?;
    }
    a.sync()?;
    assert_eq!(paused(a)?, 101, "d0 and its 100 files are still held");
    b.sync()?;
    assert_eq!(b.tree(), full, "B deleted nothing");
    // Once confirmed, exactly those go.
    run(a, &["confirm-deletes"])?;
    b.sync()?;
    let mut expected = full.clone();
    expected.retain(|path, _| path != "d0" && !path.starts_with("d0/"));
    assert_eq!(b.tree(), expected, "only d0 was deleted");
    Ok(())
}

#[test]
fn undo_writes_the_held_files_back_from_the_relay_without_a_daemon() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, devices) = setup(tmp.path(), 2)?;
    let (a, b) = (&devices[0], &devices[1]);
    fill(a);
    a.sync()?;
    b.sync()?;
    let full = a.tree();
    // Gone for good on this device: no copy left to put back.
    move_contents(&a.dir, &tmp.path().join("away"))?;
    std::fs::remove_dir_all(tmp.path().join("away"))?;
    a.sync()?;
    assert!(paused(a)? >= FILES as u64);
    let said = run(a, &["confirm-deletes", "--undo"])?;
    assert!(
        said.contains("brought back"),
        "--undo says what it did: {said}"
    );
    assert_eq!(a.tree(), full, "A holds every file again");
    assert_eq!(paused(a)?, 0, "nothing paused any more");
    b.sync()?;
    a.sync()?;
    assert_eq!(b.tree(), full, "B deleted nothing");
    assert_eq!(a.tree(), full);
    Ok(())
}

#[test]
fn with_the_daemon_restoring_or_undoing_cancels_held_deletions_and_confirming_sends_them()
-> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, mut devices) = setup(tmp.path(), 2)?;
    fill(&devices[0]);
    devices[0].sync()?;
    devices[1].sync()?;
    let full = devices[0].tree();
    for device in &mut devices {
        device.start_daemon()?;
    }
    for device in &devices {
        device.wait_connected(SETTLE)?;
    }
    let (a, b) = (&devices[0], &devices[1]);
    let wait_paused = |what: &str, check: &dyn Fn(u64) -> bool| {
        wait_until(SETTLE, what, || {
            std::thread::sleep(Duration::from_millis(100));
            paused(a).is_ok_and(check)
        })
    };

    // Emptied, then restored from a copy: nothing is deleted anywhere.
    move_contents(&a.dir, &tmp.path().join("away"))?;
    wait_paused("A's daemon to pause the deletions", &|n| n >= FILES as u64)?;
    run(b, &["sync"])?;
    assert_eq!(b.tree(), full, "B deleted nothing");
    copy_back(&full, &a.dir)?;
    wait_paused("the pause to end once the files are back", &|n| n == 0)?;
    run(a, &["sync"])?;
    run(b, &["sync"])?;
    assert_eq!(a.tree(), full, "A holds its files again");
    assert_eq!(b.tree(), full, "B still holds everything");

    // Emptied again, and undone: the daemon writes everything back from the relay.
    move_contents(&a.dir, &tmp.path().join("away2"))?;
    std::fs::remove_dir_all(tmp.path().join("away2"))?;
    wait_paused("A's daemon to pause the deletions again", &|n| {
        n >= FILES as u64
    })?;
    let said = run(a, &["confirm-deletes", "--undo"])?;
    assert!(
        said.contains("brought back"),
        "--undo says what it did: {said}"
    );
    assert_eq!(a.tree(), full, "A holds its files again, from the relay");
    assert_eq!(paused(a)?, 0);
    run(b, &["sync"])?;
    assert_eq!(b.tree(), full, "B still holds everything");

    // Emptied again and confirmed with the daemon running: B is emptied too.
    move_contents(&a.dir, &tmp.path().join("away3"))?;
    wait_paused("A's daemon to pause the deletions a third time", &|n| {
        n >= FILES as u64
    })?;
    let said = run(a, &["confirm-deletes"])?;
    assert!(
        said.contains("sent"),
        "confirm-deletes says what it did: {said}"
    );
    wait_until(SETTLE, "B to apply the confirmed deletions", || {
        std::thread::sleep(Duration::from_millis(100));
        b.tree().is_empty()
    })?;
    assert_eq!(paused(a)?, 0);
    assert!(a.tree().is_empty(), "nothing came back on A");
    Ok(())
}

#[test]
fn a_folder_replaced_by_an_empty_directory_stops_syncing_instead_of_deleting() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, mut devices) = setup(tmp.path(), 2)?;
    fill(&devices[0]);
    devices[0].sync()?;
    devices[1].sync()?;
    let full = devices[0].tree();
    // A quick safety-net rescan, so the daemon looks at its root soon after it is swapped.
    set_config(&devices[0], "rescan_interval_ms", "1000")?;
    devices[0].start_daemon()?;
    devices[0].wait_connected(SETTLE)?;

    // What an unmounted disk looks like from the daemon: the folder's path now names an
    // empty directory (the mount point), with none of the state the database describes.
    let away = tmp.path().join("dev0.mounted");
    std::fs::rename(&devices[0].dir, &away)?;
    std::fs::create_dir(&devices[0].dir)?;
    let exit = devices[0].wait_daemon_exit(SETTLE)?;
    assert!(!exit.success(), "the daemon stops with an error: {exit}");
    let log = devices[0].daemon_log();
    assert!(
        log.contains("stopped syncing") && log.contains("nothing was deleted"),
        "the daemon says why it stopped: {log}"
    );
    let b = &devices[1];
    b.sync()?;
    assert_eq!(b.tree(), full, "B deleted nothing");
    assert!(
        std::fs::read_dir(&devices[0].dir)?.next().is_none(),
        "nothing was written into the empty directory"
    );

    // The disk is back: syncing resumes and nothing was lost.
    std::fs::remove_dir(&devices[0].dir)?;
    std::fs::rename(&away, &devices[0].dir)?;
    devices[0].sync()?;
    devices[1].sync()?;
    assert_eq!(devices[0].tree(), full);
    assert_eq!(devices[1].tree(), full);
    Ok(())
}

/// A case-insensitive directory made for the test: an ext4 image with casefold, loop-mounted,
/// or, on a kernel without casefold, `tests/casefs/casefs.py` (a case-insensitive FUSE
/// passthrough) over a temporary directory. Unmounted (and the FUSE process ended) on drop.
struct CaseInsensitiveDir {
    mount_point: PathBuf,
    fuse: Option<std::process::Child>,
}

impl CaseInsensitiveDir {
    /// Makes one under `dir`; `Err` says why neither way works here (no permission to mount,
    /// no FUSE) so the test can skip with that reason.
    fn make(dir: &Path) -> std::result::Result<CaseInsensitiveDir, String> {
        let ext4 = match CaseInsensitiveDir::ext4(dir) {
            Ok(made) => return Ok(made),
            Err(why) => why,
        };
        CaseInsensitiveDir::fuse(dir)
            .map_err(|fuse| format!("ext4 casefold: {ext4}; FUSE casefs: {fuse}"))
    }

    fn ext4(dir: &Path) -> std::result::Result<CaseInsensitiveDir, String> {
        let image = dir.join("casefold.img");
        let mount_point = dir.join("casefold");
        std::fs::File::create(&image)
            .and_then(|file| file.set_len(64 << 20))
            .map_err(|e| format!("cannot make the image: {e}"))?;
        let result = run_tool(
            "mkfs.ext4",
            &[
                "-q".as_ref(),
                "-O".as_ref(),
                "casefold".as_ref(),
                image.as_os_str(),
            ],
        )
        .and_then(|()| std::fs::create_dir(&mount_point).map_err(|e| e.to_string()))
        .and_then(|()| {
            run_tool(
                "mount",
                &[
                    "-o".as_ref(),
                    "loop".as_ref(),
                    image.as_os_str(),
                    mount_point.as_os_str(),
                ],
            )
        });
        // A mounted image stays open through its loop device.
        let _ = std::fs::remove_file(&image);
        result?;
        let made = CaseInsensitiveDir {
            mount_point,
            fuse: None,
        };
        // The mount's root holds lost+found: the folder is a fresh casefold directory.
        let folder = made.folder();
        std::fs::create_dir(&folder).map_err(|e| e.to_string())?;
        run_tool("chattr", &["+F".as_ref(), folder.as_os_str()])?;
        Ok(made)
    }

    fn fuse(dir: &Path) -> std::result::Result<CaseInsensitiveDir, String> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("casefs/casefs.py");
        let backing = dir.join("casefs-backing");
        let mount_point = dir.join("casefs");
        for made in [&backing, &mount_point] {
            std::fs::create_dir(made).map_err(|e| e.to_string())?;
        }
        let child = std::process::Command::new("/usr/bin/python3")
            .arg(&script)
            .args([&backing, &mount_point])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", script.display()))?;
        let mut made = CaseInsensitiveDir {
            mount_point,
            fuse: Some(child),
        };
        let mounted = wait_until(Duration::from_secs(20), "the FUSE mount", || {
            std::thread::sleep(Duration::from_millis(50));
            let exited = made
                .fuse
                .as_mut()
                .is_none_or(|child| child.try_wait().ok().flatten().is_some());
            exited || is_mount_point(&made.mount_point)
        });
        if mounted.is_err() || !is_mount_point(&made.mount_point) {
            let mut stderr = String::new();
            if let Some(mut child) = made.fuse.take() {
                let _ = child.kill();
                let _ = child.wait();
                if let Some(mut pipe) = child.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut pipe, &mut stderr);
                }
            }
            return Err(format!("the mount did not appear: {}", stderr.trim()));
        }
        std::fs::create_dir(made.folder()).map_err(|e| e.to_string())?;
        Ok(made)
    }

    fn folder(&self) -> PathBuf {
        self.mount_point.join("folder")
    }
}

impl Drop for CaseInsensitiveDir {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg(&self.mount_point)
            .status();
        if let Some(mut child) = self.fuse.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir(&self.mount_point);
    }
}

/// Whether `path` is a mount point: its device differs from its parent's.
fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let (Ok(own), Some(Ok(parent))) = (
        std::fs::metadata(path),
        path.parent().map(std::fs::metadata),
    ) else {
        return false;
    };
    own.dev() != parent.dev()
}

/// Runs a system tool; `Err` carries its complaint.
fn run_tool(program: &str, args: &[&std::ffi::OsStr]) -> std::result::Result<(), String> {
    let output = std::process::Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{program} failed: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

#[test]
fn names_differing_only_in_case_both_survive_on_a_case_insensitive_device() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let mount = match CaseInsensitiveDir::make(tmp.path()) {
        Ok(mount) => mount,
        Err(why) => {
            eprintln!("SKIPPED: no case-insensitive directory can be made here: {why}");
            return Ok(());
        }
    };
    // The test proves the directory is case-insensitive before relying on it.
    std::fs::write(mount.folder().join("Probe"), b"")?;
    assert!(
        mount.folder().join("PROBE").exists(),
        "the directory made for the test is case-insensitive"
    );
    std::fs::remove_file(mount.folder().join("Probe"))?;

    let (relay, devices) = setup(tmp.path(), 1)?;
    let a = &devices[0];
    a.write("Readme.md", "lower\n");
    a.write("README.md", "upper\n");
    a.write("docs/Notes.txt", "notes\n");
    a.sync()?;
    let on_a = a.tree();
    let code = a.pair(false)?;
    let c = Device::init(
        &mount.folder(),
        &relay,
        "alice",
        "--pair",
        &code,
        "insensitive",
    )?;
    c.sync()?;
    let on_c = c.tree();
    let contents: Vec<&[u8]> = on_c
        .values()
        .filter_map(|entry| match entry {
            Entry::File(bytes, _) => Some(bytes.as_slice()),
            _ => None,
        })
        .collect();
    assert!(
        contents.contains(&&b"lower\n"[..]) && contents.contains(&&b"upper\n"[..]),
        "both files survive on the case-insensitive device: {on_c:?}"
    );
    assert_eq!(on_c.len(), on_a.len(), "one entry each: {on_c:?}");
    assert!(
        on_c.keys().any(|path| path.contains("(case clash 2)")),
        "the second is kept under a clash name: {on_c:?}"
    );
    let clashes = c.status_json()?["name_clashes"].to_string();
    assert!(clashes.contains("case clash"), "status lists it: {clashes}");
    // Syncing back changes nothing: no rename or new file reaches the other device.
    c.sync()?;
    c.sync()?;
    a.sync()?;
    assert_eq!(a.tree(), on_a, "the case-sensitive device is unchanged");
    assert_eq!(c.tree(), on_c, "the case-insensitive device is unchanged");
    // An edit of the clash copy reaches the original name elsewhere.
    let clash_path = on_c
        .keys()
        .find(|path| path.contains("(case clash 2)"))
        .cloned()
        .context("clash copy")?;
    std::fs::write(c.dir.join(&clash_path), "edited on c\n")?;
    c.sync()?;
    a.sync()?;
    let edited: Vec<String> = a
        .tree()
        .into_iter()
        .filter(|(_, entry)| *entry == Entry::File(b"edited on c\n".to_vec(), false))
        .map(|(path, _)| path)
        .collect();
    assert_eq!(edited.len(), 1, "one file edited on A: {edited:?}");
    assert!(
        edited[0] == "Readme.md" || edited[0] == "README.md",
        "under its own name: {edited:?}"
    );
    Ok(())
}

/// A loop-mounted ext4 image, lazily unmounted on drop if still mounted.
struct LoopMount {
    image: PathBuf,
    mount_point: PathBuf,
}

impl LoopMount {
    fn make(dir: &Path) -> std::result::Result<LoopMount, String> {
        let made = LoopMount {
            image: dir.join("disk.img"),
            mount_point: dir.join("disk"),
        };
        std::fs::File::create(&made.image)
            .and_then(|file| file.set_len(64 << 20))
            .map_err(|e| format!("cannot make the image: {e}"))?;
        run_tool("mkfs.ext4", &["-q".as_ref(), made.image.as_os_str()])?;
        std::fs::create_dir(&made.mount_point).map_err(|e| e.to_string())?;
        made.mount()?;
        // A fresh file system's root holds lost+found: not part of the user's files.
        std::fs::remove_dir(made.mount_point.join("lost+found")).map_err(|e| e.to_string())?;
        Ok(made)
    }

    fn mount(&self) -> std::result::Result<(), String> {
        run_tool(
            "mount",
            &[
                "-o".as_ref(),
                "loop".as_ref(),
                self.image.as_os_str(),
                self.mount_point.as_os_str(),
            ],
        )
    }

    /// Unmounts at once even while files are open (as a disk pulled out or a mount that
    /// failed at boot leaves the empty mount point behind).
    fn unmount(&self) -> std::result::Result<(), String> {
        run_tool("umount", &["-l".as_ref(), self.mount_point.as_os_str()])
    }
}

impl Drop for LoopMount {
    fn drop(&mut self) {
        if is_mount_point(&self.mount_point) {
            let _ = self.unmount();
        }
    }
}

#[test]
fn a_folder_on_a_disk_unmounted_under_the_daemon_stops_syncing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let disk = match LoopMount::make(tmp.path()) {
        Ok(disk) => disk,
        Err(why) => {
            eprintln!("SKIPPED: cannot loop-mount an ext4 image here: {why}");
            return Ok(());
        }
    };
    let relay = cloud3_tests::Relay::start(&tmp.path().join("relay"))?;
    let invite = relay.add_user("alice")?;
    // The folder is the mount point itself, as for a data disk mounted at /mnt/sync.
    let mut a = Device::init(&disk.mount_point, &relay, "alice", "--invite", &invite, "a")?;
    let code = a.pair(false)?;
    let b = Device::init(&tmp.path().join("b"), &relay, "alice", "--pair", &code, "b")?;
    for idx in 0..200 {
        a.write(&format!("photos/{idx:03}.jpg"), format!("photo {idx}\n"));
    }
    a.sync()?;
    b.sync()?;
    let full = b.tree();
    assert_eq!(full.len(), 201, "B holds A's files");
    set_config(&a, "rescan_interval_ms", "1000")?;
    a.start_daemon()?;
    a.wait_connected(SETTLE)?;

    disk.unmount().map_err(anyhow::Error::msg)?;
    let exit = a.wait_daemon_exit(SETTLE)?;
    assert!(!exit.success(), "the daemon stops with an error: {exit}");
    let log = a.daemon_log();
    assert!(
        log.contains("stopped syncing") && log.contains("is its disk mounted"),
        "the daemon says why it stopped: {log}"
    );
    b.sync()?;
    assert_eq!(b.tree(), full, "B deleted nothing");
    let left: Vec<_> = std::fs::read_dir(&disk.mount_point)?.collect();
    assert!(
        left.is_empty(),
        "nothing was written onto the mount point: {left:?}"
    );
    let said = a.command(&["status"])?;
    assert!(
        !said.status.success(),
        "status on the empty mount point finds no folder"
    );

    // Mounted again: syncing resumes where it stopped, nothing lost on either side.
    disk.mount().map_err(anyhow::Error::msg)?;
    a.start_daemon()?;
    a.wait_connected(SETTLE)?;
    a.stop_daemon()?;
    a.sync()?;
    b.sync()?;
    assert_eq!(a.tree(), full);
    assert_eq!(b.tree(), full);
    Ok(())
}
