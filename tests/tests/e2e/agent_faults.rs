//! The agent under real faults and at scale: bytes on the wire for renames and copies (measured by
//! a proxy), long offline periods, kill -9 of an agent or of the relay mid-transfer, revocation.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use cloud3_tests::small_disk::SmallDisk;
use cloud3_tests::{Entry, Relay, binary, random_bytes, wait_until};

use crate::setup;

/// Files (not directories) of a tree whose path is not inside `.cloud3`.
fn files(tree: &std::collections::BTreeMap<String, Entry>) -> usize {
    tree.values()
        .filter(|e| matches!(e, Entry::File(..)))
        .count()
}

#[test]
fn renaming_a_directory_of_1000_files_sends_almost_nothing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (relay, devices) = setup(tmp.path(), 2)?;
    let (a, b) = (&devices[0], &devices[1]);
    for i in 0..1000 {
        a.write(
            &format!("photos/2024/img-{i:04}.txt"),
            format!("picture {i}"),
        );
    }
    a.sync()?;
    b.sync()?;
    assert_eq!(files(&b.tree()), 1000);

    let (proxy_a, proxy_b) = (a.behind_proxy(&relay)?, b.behind_proxy(&relay)?);
    std::fs::rename(a.dir.join("photos"), a.dir.join("pictures"))?;
    a.sync()?;
    b.sync()?;
    let (sent, received) = (proxy_a.total(), proxy_b.total());
    eprintln!("directory rename of 1000 files: {sent} bytes from a, {received} bytes to b");
    assert_eq!(b.tree(), a.tree());
    assert_eq!(
        b.read("pictures/2024/img-0999.txt"),
        Some(b"picture 999".to_vec())
    );
    assert!(!b.dir.join("photos").exists());
    // Handshake, heads and one small change each way: no file bytes, no per-file metadata.
    assert!(sent < 16 * 1024, "renaming device sent {sent} bytes");
    assert!(
        received < 16 * 1024,
        "other device exchanged {received} bytes"
    );
    Ok(())
}

#[test]
fn a_thousand_files_download_in_groups_asked_for_ahead() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (relay, devices) = setup(tmp.path(), 2)?;
    let (a, b) = (&devices[0], &devices[1]);
    // Files are installed in groups of 256, each group's chunks asked for while the one before
    // is installed. Files 256-511 repeat files 0-255: the group before brings them. The third
    // group also holds a file large enough for a manifest of its own, fetched in its turn.
    for i in 0..1000u64 {
        let seed = if (256..512).contains(&i) { i - 256 } else { i };
        let bytes = random_bytes(seed, 2048);
        a.write(&format!("docs/f-{i:04}.bin"), &bytes);
    }
    let big = random_bytes(5000, 2 << 20);
    a.write("docs/f-0600-big.bin", &big);
    a.sync()?;
    let proxy_b = b.behind_proxy(&relay)?;
    b.sync()?;
    assert_eq!(b.tree(), a.tree());
    assert_eq!(b.read("docs/f-0300.bin"), Some(random_bytes(44, 2048)));
    assert_eq!(b.read("docs/f-0600-big.bin"), Some(big.clone()));
    let received = proxy_b.total();
    eprintln!("1000 files of 2 KiB and one of 2 MiB: {received} bytes to b");
    let unique = 744 * 2048 + big.len() as u64;
    assert!(received >= unique, "b received {received} bytes");
    // Every distinct blob once, plus the document and the protocol.
    assert!(
        received < unique + 384 * 1024,
        "b received {received} bytes"
    );
    Ok(())
}

#[test]
fn a_copied_50_mib_file_is_not_uploaded_or_downloaded_again() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (relay, devices) = setup(tmp.path(), 2)?;
    let (a, b) = (&devices[0], &devices[1]);
    let big = random_bytes(50, 50 << 20);
    a.write("video.bin", &big);
    a.sync()?;
    b.sync()?;

    let (proxy_a, proxy_b) = (a.behind_proxy(&relay)?, b.behind_proxy(&relay)?);
    std::fs::copy(a.dir.join("video.bin"), a.dir.join("video copy.bin"))?;
    a.sync()?;
    b.sync()?;
    let (sent, received) = (proxy_a.total(), proxy_b.total());
    eprintln!("50 MiB copy: {sent} bytes from a, {received} bytes to b");
    assert_eq!(b.read("video copy.bin").as_deref(), Some(big.as_slice()));
    assert!(sent < 64 * 1024, "copying device sent {sent} bytes");
    assert!(
        received < 64 * 1024,
        "other device exchanged {received} bytes"
    );
    Ok(())
}

#[test]
fn many_offline_changes_on_two_devices_heal_at_once() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, devices) = setup(tmp.path(), 2)?;
    let (a, b) = (&devices[0], &devices[1]);
    for i in 0..100 {
        a.write(&format!("shared/f{i:03}.txt"), format!("base {i}"));
    }
    a.sync()?;
    b.sync()?;
    // Offline on both sides: each edits, creates, renames and deletes its own share.
    for i in 0..50 {
        a.write(&format!("shared/f{i:03}.txt"), format!("a edited {i}"));
        a.write(&format!("from-a/new-{i}.txt"), format!("a new {i}"));
        b.write(
            &format!("shared/f{:03}.txt", 50 + i),
            format!("b edited {i}"),
        );
        b.write(&format!("from-b/deep/new-{i}.txt"), format!("b new {i}"));
    }
    std::fs::rename(a.dir.join("shared/f000.txt"), a.dir.join("a-moved.txt"))?;
    std::fs::remove_file(b.dir.join("shared/f099.txt"))?;
    std::fs::create_dir_all(b.dir.join("b-empty"))?;
    a.sync()?;
    b.sync()?;
    a.sync()?;
    let tree = a.tree();
    assert_eq!(tree, b.tree(), "devices differ after healing");
    assert_eq!(a.read("a-moved.txt"), Some(b"a edited 0".to_vec()));
    assert_eq!(a.read("shared/f049.txt"), Some(b"a edited 49".to_vec()));
    assert_eq!(a.read("shared/f098.txt"), Some(b"b edited 48".to_vec()));
    assert_eq!(a.read("shared/f099.txt"), None);
    assert_eq!(a.read("from-b/deep/new-7.txt"), Some(b"b new 7".to_vec()));
    assert_eq!(b.read("from-a/new-49.txt"), Some(b"a new 49".to_vec()));
    assert_eq!(tree.get("b-empty"), Some(&Entry::Dir));
    assert_eq!(files(&tree), 99 + 100);
    Ok(())
}

/// Every visible path is one of `expect`, with all its bytes: no temp, staging or partial file.
fn assert_no_partial(tree: &std::collections::BTreeMap<String, Entry>, expect: &[(&str, &[u8])]) {
    for (path, entry) in tree {
        let Some((_, bytes)) = expect.iter().find(|(p, _)| p == path) else {
            panic!("unexpected path {path} in the folder");
        };
        assert_eq!(
            entry,
            &Entry::File(bytes.to_vec(), false),
            "{path} is partial"
        );
    }
}

#[test]
fn an_agent_killed_mid_download_converges_without_a_partial_file() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (relay, mut devices) = setup(tmp.path(), 2)?;
    let big = random_bytes(7, 40 << 20);
    devices[0].write("big.bin", &big);
    devices[0].sync()?;

    // Slow b's link so the kill lands mid-download.
    let b = &mut devices[1];
    let proxy = b.behind_proxy(&relay)?;
    proxy.set_delay(Duration::from_millis(20));
    b.start_daemon()?;
    wait_until(Duration::from_secs(60), "b downloading", || {
        proxy.bytes().1 > 4 << 20
    })?;
    b.kill_daemon();
    let received = proxy.bytes().1;
    assert!(received < 40 << 20, "download finished before the kill");
    assert_no_partial(&b.tree(), &[("big.bin", &big)]);

    proxy.set_delay(Duration::ZERO);
    b.sync()?;
    assert_eq!(b.read("big.bin").as_deref(), Some(big.as_slice()));
    assert_eq!(b.tree(), devices[0].tree());
    Ok(())
}

/// A 200 MiB download killed at about a quarter fetches, when it starts again, at most what it
/// did not yet hold plus one chunk: the chunks it had written and verified are kept.
#[test]
fn a_download_killed_at_a_quarter_resumes_where_it_stopped() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (relay, mut devices) = setup(tmp.path(), 2)?;
    let size = 200usize << 20;
    let big = random_bytes(11, size);
    devices[0].write("big.bin", &big);
    devices[0].sync()?;

    let b = &mut devices[1];
    let proxy = b.behind_proxy(&relay)?;
    proxy.set_delay(Duration::from_millis(5));
    b.start_daemon()?;
    wait_until(Duration::from_secs(120), "a quarter downloaded", || {
        proxy.bytes().1 > (size / 4) as u64
    })?;
    b.kill_daemon();
    let before = proxy.bytes().1;
    assert!(before < size as u64, "download finished before the kill");
    // What the killed run left verified on disk, chunk by chunk.
    let partials: Vec<_> = std::fs::read_dir(b.dir.join(".cloud3/partial"))?
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(partials.len(), 1, "one partial download: {partials:?}");
    let partial = std::fs::read(&partials[0])?;
    let mut held = 0u64;
    let mut largest = 0u64;
    let mut offset = 0usize;
    cloud3_engine::chunk::cdc::for_each_chunk(big.as_slice(), size as u64, |chunk| {
        let end = offset + chunk.len();
        if partial.get(offset..end) == Some(chunk) {
            held += chunk.len() as u64;
        }
        largest = largest.max(chunk.len() as u64);
        offset = end;
    })?;
    assert!(held > (size / 8) as u64, "kept only {held} bytes");

    proxy.set_delay(Duration::ZERO);
    b.sync()?;
    assert_eq!(b.read("big.bin").as_deref(), Some(big.as_slice()));
    let again = proxy.bytes().1 - before;
    let remaining = size as u64 - held;
    eprintln!(
        "received {before} bytes before the kill, {held} verified on disk; after the restart {again} bytes for the remaining {remaining} (largest chunk {largest})"
    );
    assert!(
        again <= remaining + largest + (remaining / 100),
        "fetched {again} bytes again, remaining was {remaining}"
    );
    assert!(
        !b.dir.join(".cloud3/partial").read_dir()?.any(|_| true),
        "the partial download is gone once installed"
    );
    Ok(())
}

#[test]
fn a_relay_killed_mid_upload_loses_nothing_acknowledged() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (mut relay, devices) = setup(tmp.path(), 2)?;
    let (a, b) = (&devices[0], &devices[1]);
    a.write("small.txt", "acknowledged before the crash");
    a.sync()?;
    let big = random_bytes(9, 40 << 20);
    a.write("big.bin", &big);

    let proxy = a.behind_proxy(&relay)?;
    proxy.set_delay(Duration::from_millis(20));
    let mut upload = Command::new(binary("cloud3"))
        .args(["sync", "--dir"])
        .arg(&a.dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawn cloud3 sync")?;
    wait_until(Duration::from_secs(60), "a uploading", || {
        proxy.bytes().0 > 4 << 20
    })?;
    relay.kill();
    let status = wait_until(Duration::from_secs(60), "the sync to notice", || {
        matches!(upload.try_wait(), Ok(Some(_)))
    });
    if status.is_err() {
        let _ = upload.kill();
    }
    status?;
    let status = upload.wait()?;
    assert!(!status.success(), "sync cannot succeed without its relay");

    let addr = relay.addr.clone();
    let data = relay.data.clone();
    drop(relay);
    let _relay = Relay::start_on(&data, &addr)?;
    proxy.set_delay(Duration::ZERO);
    b.sync()?;
    assert_eq!(
        b.read("small.txt"),
        Some(b"acknowledged before the crash".to_vec())
    );
    assert_no_partial(
        &b.tree(),
        &[
            ("small.txt", b"acknowledged before the crash"),
            ("big.bin", &big),
        ],
    );
    let sent_before = proxy.bytes().0;
    a.sync()?;
    // The upload resumes: blobs the relay stored before it died are not sent again (at most
    // the batch it was storing when killed, up to 8 MiB, goes twice).
    let sent_again = proxy.bytes().0 - sent_before;
    eprintln!("uploaded {sent_before} bytes before the relay died, {sent_again} after");
    assert!(
        sent_before + sent_again <= (40 << 20) + (9 << 20),
        "{sent_before} + {sent_again} bytes uploaded for a 40 MiB file"
    );
    b.sync()?;
    assert_eq!(b.read("big.bin").as_deref(), Some(big.as_slice()));
    assert_eq!(b.tree(), a.tree());
    Ok(())
}

#[test]
fn a_revoked_device_stops_its_daemon_and_keeps_its_files() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, mut devices) = setup(tmp.path(), 2)?;
    devices[0].write("notes.txt", "mine");
    devices[0].sync()?;
    devices[1].sync()?;
    devices[1].start_daemon()?;
    wait_until(Duration::from_secs(10), "dev1 online", || {
        devices[0]
            .command(&["devices"])
            .map(|o| {
                String::from_utf8_lossy(&o.stdout).contains("dev1")
                    && String::from_utf8_lossy(&o.stdout)
                        .lines()
                        .any(|l| l.contains("dev1") && l.contains("online"))
            })
            .unwrap_or(false)
    })?;
    let before = devices[1].tree();
    let output = devices[0].command(&["revoke", "dev1"])?;
    cloud3_tests::check(&output, "cloud3 revoke")?;
    let status = devices[1].wait_daemon_exit(Duration::from_secs(5))?;
    assert!(!status.success(), "a revoked daemon exits with an error");
    assert!(
        devices[1].daemon_log().contains("revoked"),
        "daemon said why: {}",
        devices[1].daemon_log()
    );
    assert_eq!(devices[1].tree(), before, "local files untouched");
    let again = devices[1].command(&["sync"])?;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("revoked"));
    Ok(())
}

#[test]
fn a_full_disk_lands_what_fits_and_loses_nothing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let Some(small_disk) = SmallDisk::mount(&tmp.path().join("small"), 6)? else {
        return Ok(());
    };
    let relay = Relay::start(&tmp.path().join("relay"))?;
    let invite = relay.add_user("alice")?;
    let a = cloud3_tests::Device::init(
        &tmp.path().join("a"),
        &relay,
        "alice",
        "--invite",
        &invite,
        "a",
    )?;
    let code = a.pair(false)?;
    let b = cloud3_tests::Device::init(
        &small_disk.dir.join("b"),
        &relay,
        "alice",
        "--pair",
        &code,
        "b",
    )?;
    let big = random_bytes(11, 12 << 20);
    a.write("small.txt", "fits");
    a.write("big.bin", &big);
    a.sync()?;
    // b's disk cannot hold the big file: the sync writes what fits and says what it could not.
    let output = b.command(&["sync"])?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stderr.contains("no room on this disk for big.bin"),
        "the sync says why: {stderr}"
    );
    assert_eq!(b.read("small.txt").as_deref(), Some(b"fits".as_slice()));
    assert!(b.read("big.bin").is_none(), "no partial big.bin");
    // Room again: the next sync completes.
    small_disk.resize(64)?;
    b.sync()?;
    assert_eq!(b.read("big.bin").as_deref(), Some(big.as_slice()));
    assert_eq!(b.tree(), a.tree());
    Ok(())
}

#[test]
fn symlinks_out_of_the_folder_are_never_followed_in_either_direction() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, devices) = setup(tmp.path(), 2)?;
    let (a, b) = (&devices[0], &devices[1]);
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside)?;
    std::fs::write(outside.join("secret.txt"), "never synced")?;
    // A link out of the folder on a syncs as a link; what it points at is not read.
    std::os::unix::fs::symlink(&outside, a.dir.join("escape"))?;
    a.write("docs/readme.txt", "inside");
    a.sync()?;
    b.sync()?;
    let target = outside.to_string_lossy().into_owned();
    assert_eq!(b.tree().get("escape"), Some(&Entry::Symlink(target)));
    assert!(!b.tree().keys().any(|p| p.contains("secret")));
    // On b, a synced directory is replaced by a link out of the folder; a's new file for that
    // directory must not be written through it.
    std::fs::remove_dir_all(b.dir.join("docs"))?;
    std::os::unix::fs::symlink(&outside, b.dir.join("docs"))?;
    a.write("docs/new.txt", "must not escape");
    a.sync()?;
    let _ = b.command(&["sync"])?;
    let _ = b.command(&["sync"])?;
    let mut names: Vec<String> = std::fs::read_dir(&outside)?
        .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<_>>()?;
    names.sort();
    assert_eq!(
        names,
        ["secret.txt"],
        "nothing was written outside the folder"
    );
    assert_eq!(std::fs::read(outside.join("secret.txt"))?, b"never synced");
    Ok(())
}

#[test]
fn a_device_with_a_skewed_clock_loses_nothing_in_a_conflict() -> Result<()> {
    if Command::new("faketime").arg("--version").output().is_err() {
        eprintln!("SKIPPED: faketime is not installed (scripts/test-all installs it)");
        return Ok(());
    }
    let tmp = tempfile::tempdir()?;
    let (_relay, devices) = setup(tmp.path(), 2)?;
    let (a, b) = (&devices[0], &devices[1]);
    // b's clock runs three days behind (and another run: a year ahead).
    let skewed_sync = |offset: &str| -> Result<()> {
        let output = Command::new("faketime")
            .args(["-m", "-f", offset])
            .arg(binary("cloud3"))
            .args(["sync", "--dir"])
            .arg(&b.dir)
            .output()?;
        cloud3_tests::check(&output, "skewed cloud3 sync")
    };
    for (round, offset) in ["-3d", "+365d"].into_iter().enumerate() {
        let name = format!("report-{round}.txt");
        a.write(&name, "base");
        a.sync()?;
        skewed_sync(offset)?;
        a.write(&name, format!("from a, true clock, round {round}"));
        b.write(&name, format!("from b, clock {offset}, round {round}"));
        a.sync()?;
        skewed_sync(offset)?;
        a.sync()?;
        let tree = a.tree();
        assert_eq!(tree, b.tree(), "devices differ after round {round}");
        eprintln!("clock {offset}: {:?}", tree.keys().collect::<Vec<_>>());
        let contents: Vec<&Entry> = tree
            .iter()
            .filter(|(p, _)| p.starts_with(&format!("report-{round}")))
            .map(|(_, e)| e)
            .collect();
        assert_eq!(
            contents.len(),
            2,
            "the file and one conflict copy: {tree:?}"
        );
        let a_text = format!("from a, true clock, round {round}").into_bytes();
        let b_text = format!("from b, clock {offset}, round {round}").into_bytes();
        assert!(contents.contains(&&Entry::File(a_text, false)));
        assert!(contents.contains(&&Entry::File(b_text, false)));
    }
    Ok(())
}
