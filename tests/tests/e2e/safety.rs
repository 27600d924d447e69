//! Safety rails: one mistake on one device must not empty every device. A folder emptied at
//! once holds its deletions until `cloud3 confirm-deletes` (putting the files back cancels
//! them); a folder whose root is no longer the one the device synced (an unmounted disk's
//! mount point) stops syncing instead of deleting.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use cloud3_tests::{Device, Entry, check, wait_until};

use crate::setup;

/// Files in the folder that gets emptied.
const FILES: usize = 1000;

/// Generous bound for the daemons to notice and exchange a change.
const SETTLE: Duration = Duration::from_secs(60);

/// `status --json` of `device`.
fn status(device: &Device) -> Result<serde_json::Value> {
    let output = device.command(&["status", "--json"])?;
    check(&output, "cloud3 status --json")?;
    serde_json::from_slice(&output.stdout).context("status JSON")
}

/// Waits until the daemon of `device` answers on its socket, connected to the relay.
fn wait_connected(device: &Device) -> Result<()> {
    wait_until(SETTLE, "the daemon to answer, connected", || {
        std::thread::sleep(Duration::from_millis(100));
        status(device).is_ok_and(|s| s["source"] == "daemon" && s["connected"] == true)
    })?;
    Ok(())
}

fn paused(device: &Device) -> Result<u64> {
    status(device)?["paused_deletes"]
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
    assert!(said.contains("sent"), "confirm-deletes says what it did: {said}");
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
fn restoring_the_files_cancels_held_deletions_and_confirming_works_with_the_daemon() -> Result<()>
{
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
        wait_connected(device)?;
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

    // Emptied again and confirmed with the daemon running: B is emptied too.
    move_contents(&a.dir, &tmp.path().join("away2"))?;
    wait_paused("A's daemon to pause the deletions again", &|n| {
        n >= FILES as u64
    })?;
    let said = run(a, &["confirm-deletes"])?;
    assert!(said.contains("sent"), "confirm-deletes says what it did: {said}");
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
    wait_connected(&devices[0])?;

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
