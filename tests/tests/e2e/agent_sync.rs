//! The agent syncing folders through the relay: trees, edits, deletes, renames, conflicts.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::Result;
use cloud3_tests::{Device, Entry, wait_until};

use crate::setup;

#[test]
fn nested_tree_with_empty_dirs_exec_bits_and_symlinks_syncs() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, devices) = setup(tmp.path(), 2)?;
    let a = &devices[0];
    a.write("docs/notes/today.txt", "hello");
    a.write("docs/a.bin", vec![7u8; 300_000]);
    // Written a day ago: the other device shows the same modification time.
    let day_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(86_400);
    std::fs::File::options()
        .write(true)
        .open(a.dir.join("docs/a.bin"))?
        .set_modified(day_ago)?;
    std::fs::create_dir_all(a.dir.join("empty/inner"))?;
    a.write("bin/tool.sh", "#!/bin/sh\necho hi\n");
    std::fs::set_permissions(
        a.dir.join("bin/tool.sh"),
        std::fs::Permissions::from_mode(0o755),
    )?;
    std::os::unix::fs::symlink("docs/a.bin", a.dir.join("link"))?;
    a.sync()?;
    devices[1].sync()?;
    let tree = devices[1].tree();
    assert_eq!(tree, a.tree());
    assert_eq!(
        tree["bin/tool.sh"],
        Entry::File(b"#!/bin/sh\necho hi\n".to_vec(), true)
    );
    assert_eq!(tree["link"], Entry::Symlink("docs/a.bin".into()));
    assert_eq!(tree["empty/inner"], Entry::Dir);
    let mtime = |dir: &std::path::Path| -> Result<u128> {
        let modified = std::fs::metadata(dir.join("docs/a.bin"))?.modified()?;
        Ok(modified.duration_since(std::time::UNIX_EPOCH)?.as_millis())
    };
    assert_eq!(mtime(&devices[1].dir)?, mtime(&a.dir)?);
    Ok(())
}

#[test]
fn edits_deletes_and_renames_propagate() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, devices) = setup(tmp.path(), 2)?;
    let (a, b) = (&devices[0], &devices[1]);
    a.write("keep.txt", "v1");
    a.write("gone.txt", "bye");
    a.write("dir/old-name.txt", "moving");
    a.sync()?;
    b.sync()?;
    a.write("keep.txt", "v2 longer");
    std::fs::remove_file(a.dir.join("gone.txt"))?;
    std::fs::rename(a.dir.join("dir"), a.dir.join("renamed-dir"))?;
    a.sync()?;
    b.sync()?;
    assert_eq!(b.read("keep.txt"), Some(b"v2 longer".to_vec()));
    assert_eq!(b.read("gone.txt"), None);
    assert_eq!(b.read("renamed-dir/old-name.txt"), Some(b"moving".to_vec()));
    assert_eq!(b.tree(), a.tree());
    Ok(())
}

#[test]
fn concurrent_offline_edits_keep_both_versions_everywhere() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, devices) = setup(tmp.path(), 2)?;
    let (a, b) = (&devices[0], &devices[1]);
    a.write("report.txt", "base");
    a.sync()?;
    b.sync()?;
    a.write("report.txt", "from a");
    b.write("report.txt", "from b, later");
    a.sync()?;
    b.sync()?;
    a.sync()?;
    let tree = a.tree();
    assert_eq!(tree, b.tree(), "devices differ");
    let contents: Vec<&Entry> = tree
        .iter()
        .filter(|(path, _)| path.starts_with("report"))
        .map(|(_, entry)| entry)
        .collect();
    assert_eq!(
        contents.len(),
        2,
        "expected the file and one conflict copy: {tree:?}"
    );
    assert!(contents.contains(&&Entry::File(b"from a".to_vec(), false)));
    assert!(contents.contains(&&Entry::File(b"from b, later".to_vec(), false)));
    assert!(
        tree.keys()
            .any(|p| p.starts_with("report (conflict from ") && p.ends_with(".txt")),
        "conflict copy name: {:?}",
        tree.keys().collect::<Vec<_>>()
    );
    Ok(())
}

#[test]
fn the_same_bytes_saved_on_two_offline_devices_are_one_file() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, devices) = setup(tmp.path(), 2)?;
    let (a, b) = (&devices[0], &devices[1]);
    a.write("report.txt", "base");
    a.sync()?;
    b.sync()?;
    // Both devices make the same edit offline (the same file from an e-mail, a formatter's
    // output), at different times.
    a.write("report.txt", "the agreed text");
    std::thread::sleep(std::time::Duration::from_millis(20));
    b.write("report.txt", "the agreed text");
    a.sync()?;
    b.sync()?;
    a.sync()?;
    let tree = a.tree();
    assert_eq!(tree, b.tree(), "devices differ");
    assert_eq!(
        tree.keys().collect::<Vec<_>>(),
        ["report.txt"],
        "one file, no conflict copy"
    );
    assert_eq!(a.read("report.txt"), Some(b"the agreed text".to_vec()));
    Ok(())
}

#[test]
fn edit_beats_concurrent_delete() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, devices) = setup(tmp.path(), 2)?;
    let (a, b) = (&devices[0], &devices[1]);
    a.write("f.txt", "base");
    a.sync()?;
    b.sync()?;
    std::fs::remove_file(a.dir.join("f.txt"))?;
    b.write("f.txt", "edited");
    a.sync()?;
    b.sync()?;
    a.sync()?;
    assert_eq!(a.read("f.txt"), Some(b"edited".to_vec()));
    assert_eq!(a.tree(), b.tree());
    Ok(())
}

#[test]
fn edit_follows_a_concurrent_rename() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, devices) = setup(tmp.path(), 2)?;
    let (a, b) = (&devices[0], &devices[1]);
    a.write("draft.txt", "v1");
    a.sync()?;
    b.sync()?;
    std::fs::rename(a.dir.join("draft.txt"), a.dir.join("final.txt"))?;
    b.write("draft.txt", "v2 edited");
    a.sync()?;
    b.sync()?;
    a.sync()?;
    assert_eq!(a.read("final.txt"), Some(b"v2 edited".to_vec()));
    assert_eq!(a.read("draft.txt"), None);
    assert_eq!(a.tree(), b.tree());
    Ok(())
}

#[test]
fn ignored_files_stay_local() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, devices) = setup(tmp.path(), 2)?;
    let (a, b) = (&devices[0], &devices[1]);
    a.write(".cloud3ignore", "*.tmp\nbuild/\n");
    a.write("keep.txt", "k");
    a.write("scratch.tmp", "s");
    a.write("build/out.o", "o");
    a.sync()?;
    b.sync()?;
    assert_eq!(b.read("keep.txt"), Some(b"k".to_vec()));
    assert_eq!(b.read("scratch.tmp"), None);
    assert_eq!(b.read("build/out.o"), None);
    Ok(())
}

#[test]
fn running_daemons_propagate_a_small_file_within_a_second() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, mut devices) = setup(tmp.path(), 2)?;
    for device in devices.iter_mut() {
        device.start_daemon()?;
    }
    // Let both connect and settle.
    std::thread::sleep(Duration::from_millis(700));
    devices[0].write("hello.txt", "hi there");
    let b = &devices[1];
    wait_until(
        Duration::from_secs(1),
        "hello.txt on the other device",
        || b.read("hello.txt").as_deref() == Some(b"hi there"),
    )?;
    for device in devices.iter_mut() {
        device.stop_daemon()?;
    }
    Ok(())
}

#[test]
fn a_rewrite_that_keeps_size_and_mtime_is_still_noticed() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, devices) = setup(tmp.path(), 2)?;
    let (a, b) = (&devices[0], &devices[1]);
    let touch = |path: &std::path::Path| {
        let status = std::process::Command::new("touch")
            .args(["-d", "2020-01-01 00:00:00"])
            .arg(path)
            .status()
            .expect("touch");
        assert!(status.success());
    };
    a.write("same.txt", "aaaa");
    touch(&a.dir.join("same.txt"));
    a.sync()?;
    b.sync()?;
    // Same size, same inode, mtime put back (as `cp -a` or an unpacked archive does): only the
    // ctime tells.
    a.write("same.txt", "bbbb");
    touch(&a.dir.join("same.txt"));
    a.sync()?;
    b.sync()?;
    assert_eq!(b.read("same.txt"), Some(b"bbbb".to_vec()));
    Ok(())
}

#[test]
fn status_says_a_device_is_waiting_to_join_until_it_reaches_the_relay() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (relay, devices) = setup(tmp.path(), 1)?;
    let laptop = &devices[0];
    laptop.write("a.txt", "from the laptop");
    laptop.sync()?;
    let code = laptop.pair(false)?;
    let dir = tmp.path().join("desktop");
    let mut desktop = Device::init(&dir, &relay, "alice", "--pair", &code, "desktop")?;
    let status = |device: &Device| -> Result<(serde_json::Value, String)> {
        let json = device.command(&["status", "--json"])?;
        let text = device.command(&["status"])?;
        Ok((
            serde_json::from_slice(&json.stdout)?,
            String::from_utf8_lossy(&text.stdout).into_owned(),
        ))
    };
    // Nothing listens on the discard port: the daemon works offline before it ever joined.
    desktop.set_relay("ws://127.0.0.1:9")?;
    desktop.start_daemon()?;
    wait_until(
        Duration::from_secs(10),
        "the offline daemon's status",
        || {
            status(&desktop).is_ok_and(|(json, _)| {
                json["daemon_running"] == true && json["waiting_to_join"] == true
            })
        },
    )?;
    let (_, text) = status(&desktop)?;
    assert!(text.contains("joining:  not yet"), "{text}");
    desktop.stop_daemon()?;
    desktop.set_relay(&relay.url)?;
    desktop.sync()?;
    let (json, text) = status(&desktop)?;
    assert_eq!(json["waiting_to_join"], false, "{json}");
    assert!(!text.contains("joining"), "{text}");
    assert_eq!(
        desktop.read("a.txt").as_deref(),
        Some(&b"from the laptop"[..])
    );
    Ok(())
}

#[test]
fn a_folder_that_already_holds_a_copy_joins_without_duplicates() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (relay, devices) = setup(tmp.path(), 1)?;
    let laptop = &devices[0];
    laptop.write("photos/x.jpg", "the same bytes");
    laptop.write("photos/2024/y.jpg", "also the same");
    laptop.write("notes.txt", "the laptop's notes");
    laptop.sync()?;
    // The desktop already holds a copy made before it joined: the same photos, one more, and
    // its own notes.
    let dir = tmp.path().join("desktop");
    for (path, text) in [
        ("photos/x.jpg", "the same bytes"),
        ("photos/2024/y.jpg", "also the same"),
        ("photos/z.jpg", "only on the desktop"),
        ("notes.txt", "the desktop's notes"),
    ] {
        std::fs::create_dir_all(dir.join(path).parent().expect("parent"))?;
        std::fs::write(dir.join(path), text)?;
    }
    let code = laptop.pair(false)?;
    let desktop = Device::init(&dir, &relay, "alice", "--pair", &code, "desktop")?;
    desktop.sync()?;
    laptop.sync()?;
    let tree = desktop.tree();
    assert_eq!(tree, laptop.tree());
    let files: Vec<&str> = tree
        .iter()
        .filter(|(_, entry)| matches!(entry, Entry::File(..)))
        .map(|(path, _)| path.as_str())
        .collect();
    // One photos directory, each photo once; both notes kept, one under a conflict name.
    assert_eq!(files.len(), 5, "{files:?}");
    for photo in ["photos/x.jpg", "photos/2024/y.jpg", "photos/z.jpg"] {
        assert!(files.contains(&photo), "{photo} in {files:?}");
    }
    let copy = files
        .iter()
        .find(|p| p.starts_with("notes (conflict from "))
        .expect("one of the notes under a conflict name");
    let mut notes = vec![
        desktop.read("notes.txt").expect("notes.txt"),
        desktop.read(copy).expect("the conflict copy"),
    ];
    notes.sort();
    assert_eq!(
        notes,
        vec![
            b"the desktop's notes".to_vec(),
            b"the laptop's notes".to_vec()
        ]
    );
    Ok(())
}
