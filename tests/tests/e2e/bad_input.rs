//! Hostile input reaching real agents through a real relay: node names no file system path may
//! come from, written by a hostile device of the same account, and a folder whose directory is
//! swapped for a symlink out of the folder while a download is on its way.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cloud3_engine::auth::DeviceKey;
use cloud3_engine::chunk::{Manifest, ManifestEntry};
use cloud3_engine::ids::{FolderId, NodeId, ShortDeviceId};
use cloud3_engine::time::WallTime;
use cloud3_engine::tree::{Content, ContentBody, FolderDoc, NodeKind};
use cloud3_engine::wire::{ClientMessage, ServerMessage};
use cloud3_tests::client::{Client, Incoming, enrol};
use cloud3_tests::{Device, Entry, binary, snapshot};

use crate::setup;

/// Names DESIGN.md section 3 says never reach a path.
const HOSTILE: [&str; 8] = [
    "..",
    ".",
    "",
    "a/b",
    "../../escaped",
    "/etc/cloud3-escaped",
    "nul\0byte",
    "long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-long-name-end",
];

/// Everything the relay has of the default folder, as the hostile device's document.
fn pull(client: &mut Client) -> Result<FolderDoc> {
    client.send(&ClientMessage::DocHeads {
        folder: FolderId::default_folder(),
        heads: Vec::new(),
    })?;
    let mut doc = FolderDoc::new(&[66; 16]);
    loop {
        match client.recv()? {
            Incoming::Message(ServerMessage::DocChanges { changes, .. }) => {
                doc.apply_changes(changes)?;
            }
            Incoming::Message(ServerMessage::DocHeads { heads, .. }) => {
                if heads.iter().all(|h| doc.has_change(h)) {
                    return Ok(doc);
                }
            }
            Incoming::Message(_) => {}
            Incoming::Closed(code) => bail!("closed: {code:?}"),
        }
    }
}

#[test]
fn hostile_names_from_another_device_never_reach_a_path() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (relay, devices) = setup(tmp.path(), 1)?;
    let a = &devices[0];
    a.write("mine.txt", "a's own file");
    a.sync()?;
    let before_root: Vec<_> = std::fs::read_dir(tmp.path())?.collect::<Result<_, _>>()?;

    // A hostile device of the same account: a file under each hostile name, a directory under
    // one (with a file inside), and one honest file, all with real uploaded bytes.
    let code = a.pair(false)?;
    let key = DeviceKey::from_secret([66; 32]);
    let mut hostile = Client::login(&relay.url, &key, "alice", enrol(&code, "hostile"))?;
    let mut doc = pull(&mut hostile)?;
    let base = doc.heads();
    let raw = b"bytes from the hostile device".to_vec();
    let id = hostile.put_chunk(&raw)?;
    let content = Content {
        size: raw.len() as u64,
        mtime: WallTime(1),
        written_at: WallTime(1),
        author: ShortDeviceId([66; 8]),
        body: ContentBody::Inline(Manifest {
            entries: vec![ManifestEntry {
                id,
                len: raw.len() as u32,
            }],
        }),
    };
    let author = ShortDeviceId([66; 8]);
    let mut create = |n: u8, parent: NodeId, name: &str, kind: NodeKind| -> Result<NodeId> {
        let node = NodeId([n; 16]);
        let body = (kind == NodeKind::File).then(|| content.clone());
        doc.create_node(
            node,
            parent,
            "placeholder",
            kind,
            0o755,
            body,
            author,
            WallTime(1),
        )?;
        doc.force_name_for_test(node, name);
        Ok(node)
    };
    for (n, name) in HOSTILE.iter().enumerate() {
        create(100 + n as u8, NodeId::ROOT, name, NodeKind::File)?;
    }
    let dir = create(120, NodeId::ROOT, "..", NodeKind::Dir)?;
    create(121, dir, "inside-a-hostile-dir.txt", NodeKind::File)?;
    create(122, NodeId::ROOT, "honest.txt", NodeKind::File)?;
    doc.commit(WallTime(2));
    hostile.send(&ClientMessage::DocChanges {
        folder: FolderId::default_folder(),
        changes: doc.changes_since(&base),
    })?;
    hostile.until(|m| match m {
        ServerMessage::DocHeads { heads, .. } if heads == &doc.heads() => Some(()),
        ServerMessage::Error { message, .. } => panic!("refused: {message}"),
        _ => None,
    })?;

    // The running agent and a device enrolled afterwards both sync cleanly: the honest file
    // arrives, every hostile node is skipped (and logged), nothing appears outside the folder.
    let output = a.command(&["sync"])?;
    cloud3_tests::check(&output, "sync with hostile names")?;
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        log.contains("invalid name"),
        "skipped nodes are logged: {log}"
    );
    let late = Device::init(
        &tmp.path().join("late"),
        &relay,
        "alice",
        "--pair",
        &a.pair(false)?,
        "late",
    )?;
    late.sync()?;
    for device in [a, &late] {
        let tree = device.tree();
        let names: Vec<&str> = tree.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["honest.txt", "mine.txt"],
            "{}",
            device.dir.display()
        );
        assert_eq!(tree["honest.txt"], Entry::File(raw.clone(), true));
        assert_eq!(
            device.read("mine.txt").as_deref(),
            Some(b"a's own file".as_slice())
        );
    }
    let after_root: Vec<_> = std::fs::read_dir(tmp.path())?.collect::<Result<_, _>>()?;
    assert_eq!(
        after_root.len(),
        before_root.len() + 1,
        "only the late device's folder is new beside the others"
    );
    assert!(!std::path::Path::new("/etc/cloud3-escaped").exists());
    Ok(())
}

#[test]
fn a_directory_swapped_for_a_symlink_during_a_download_is_never_written_through() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (relay, devices) = setup(tmp.path(), 2)?;
    let (a, b) = (&devices[0], &devices[1]);
    a.write("shared/dir/old.txt", "synced before");
    a.sync()?;
    b.sync()?;
    // Several MiB behind a slow link on b, so the download is still running when the swap
    // happens.
    let mut big = vec![0u8; 6 << 20];
    for (i, byte) in big.iter_mut().enumerate() {
        *byte = (i.wrapping_mul(2_654_435_761) >> 11) as u8;
    }
    a.write("shared/dir/big.bin", &big);
    a.write("shared/dir/small.txt", "next to it");
    a.sync()?;
    let proxy = b.behind_proxy(&relay)?;
    proxy.set_delay(Duration::from_millis(40));

    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&outside)?;
    let mut sync = std::process::Command::new(binary("cloud3"))
        .args(["sync", "--dir"])
        .arg(&b.dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    // Swap once the download has started (a temp file exists) and the sync still runs. The
    // agent empties its temp directory by removing and making it again when it starts.
    let temp = b.dir.join(".cloud3/tmp");
    let deadline = Instant::now() + Duration::from_secs(60);
    let downloading = || std::fs::read_dir(&temp).is_ok_and(|mut d| d.next().is_some());
    while !downloading() {
        assert!(Instant::now() < deadline, "the download never started");
        assert!(
            sync.try_wait()?.is_none(),
            "the sync ended before the download was seen"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    // The running sync may make the directory again between the two steps: the user moves it
    // away again, as often as it takes.
    let dir = b.dir.join("shared/dir");
    for attempt in 0.. {
        if dir.symlink_metadata().is_ok_and(|m| m.is_dir()) {
            std::fs::rename(&dir, tmp.path().join(format!("moved-away-{attempt}")))?;
        }
        match std::os::unix::fs::symlink(&outside, &dir) {
            Ok(()) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 20 => continue,
            Err(e) => return Err(e.into()),
        }
    }
    assert!(
        sync.try_wait()?.is_none(),
        "the swap happened during the sync"
    );
    let status = sync.wait()?;
    let mut stderr = String::new();
    std::io::Read::read_to_string(sync.stderr.as_mut().context("stderr")?, &mut stderr)?;
    // A safe result, not an error: the refused write is skipped and logged, the swap is
    // recorded by the next scan.
    assert!(status.success(), "sync during the swap: {status}\n{stderr}");
    assert!(stderr.contains("refusing unsafe path"), "{stderr}");

    assert_eq!(
        std::fs::read_dir(&outside)?.count(),
        0,
        "nothing was written through the symlink"
    );
    // Nothing lost: after the swap settles, both devices converge and a still has every byte.
    proxy.set_delay(Duration::ZERO);
    for _ in 0..2 {
        b.sync()?;
        a.sync()?;
    }
    let tree = a.tree();
    assert_eq!(tree, b.tree());
    // The symlink and the directory now share a name: one of them may carry a conflict name,
    // but every file a wrote is still there with its bytes.
    let holding = |bytes: &[u8]| {
        tree.iter()
            .filter(|(_, e)| matches!(e, Entry::File(b, _) if b.as_slice() == bytes))
            .map(|(p, _)| p.clone())
            .collect::<Vec<_>>()
    };
    for bytes in [big.as_slice(), b"next to it"] {
        assert!(
            !holding(bytes).is_empty(),
            "lost a file; tree: {:?}",
            tree.keys().collect::<Vec<_>>()
        );
    }
    assert_eq!(std::fs::read_dir(&outside)?.count(), 0);
    assert_eq!(snapshot(&outside).len(), 0);
    Ok(())
}
