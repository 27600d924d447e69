//! kill -9 during compaction, at every step over 100 runs: the store must open, serve every
//! retained version (read back and compared), and finish or roll back the compaction.
//!
//! A template store is built through the library (three users, each with files whose earlier
//! versions are long outside the retention window); each run copies it, runs
//! `cloud3-relay gc` with `CLOUD3_COMPACT_PAUSE_AT=N` (a random step, or past the last one),
//! kills the process with SIGKILL once it pauses, then checks the store, collects again to the
//! end and checks once more. `CLOUD3_SEED` picks the steps (printed on failure).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use cloud3_engine::chunk::{Manifest, ManifestEntry};
use cloud3_engine::ids::{ChunkId, DeviceId, NodeId, ShortDeviceId};
use cloud3_engine::time::WallTime;
use cloud3_engine::tree::{Content, ContentBody, FolderDoc, NodeKind};
use cloud3_engine::wire::ChunkCodec;
use cloud3_relay::store::chunks::VerifiedBlob;
use cloud3_relay::store::{Accounts, Chunks, Documents, Store};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const USERS: [&str; 3] = ["ann", "bob", "cat"];
const FILES: u8 = 12;
const BLOB: usize = 40_000;
const AUTHOR: ShortDeviceId = ShortDeviceId([1; 8]);

/// Each user's current blobs (with their bytes) and replaced ones.
type Expected = Vec<(Vec<(ChunkId, Vec<u8>)>, Vec<ChunkId>)>;

fn blob(seed: u64) -> (ChunkId, Vec<u8>) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let raw: Vec<u8> = (0..BLOB).map(|_| rng.random()).collect();
    (ChunkId::of(&raw), raw)
}

fn content(id: ChunkId, at: WallTime) -> Content {
    Content {
        size: BLOB as u64,
        mtime: at,
        written_at: at,
        author: AUTHOR,
        body: ContentBody::Inline(Manifest {
            entries: vec![ManifestEntry {
                id,
                len: BLOB as u32,
            }],
        }),
    }
}

/// Builds the template store in `dir`.
fn template(dir: &Path) -> Expected {
    let store = Store::open(dir).unwrap();
    let mut expected = Vec::new();
    for (u, user) in USERS.iter().enumerate() {
        let device = DeviceId([u as u8 + 1; 32]);
        let code = store.add_user(user, WallTime(0)).unwrap();
        store
            .enrol(user, code.as_str(), device, "laptop", WallTime(0))
            .unwrap()
            .unwrap();
        let mut doc = FolderDoc::new(&[u as u8 + 1; 16]);
        let (mut current, mut replaced) = (Vec::new(), Vec::new());
        for f in 0..FILES {
            let seed = (u as u64) * 1000 + u64::from(f) * 2;
            let (old, new) = (blob(seed), blob(seed + 1));
            let verified: Vec<VerifiedBlob> = [&old, &new]
                .iter()
                .map(|(id, raw)| {
                    VerifiedBlob::verify(*id, ChunkCodec::Raw, BLOB as u32, raw.clone()).unwrap()
                })
                .collect();
            store.put_chunks(user, device, &verified, u64::MAX).unwrap();
            // Written in the first seconds of 1970: far outside any window today.
            let node = NodeId([f + 1; 16]);
            let first = content(old.0, WallTime(1000));
            doc.create_node(
                node,
                NodeId::ROOT,
                &format!("f{f}"),
                NodeKind::File,
                0o644,
                Some(first),
                AUTHOR,
                WallTime(1000),
            )
            .unwrap();
            doc.commit(WallTime(1000));
            doc.set_content(node, content(new.0, WallTime(2000)))
                .unwrap();
            doc.commit(WallTime(2000));
            let bytes = doc.save_incremental();
            store
                .append_doc(user, "main", Some(device), &bytes, &[old.0, new.0])
                .unwrap();
            replaced.push(old.0);
            current.push(new);
        }
        expected.push((current, replaced));
    }
    expected
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Runs `gc` on `data`; with `pause_at`, kills it with SIGKILL if it pauses there. Returns
/// whether it was killed.
fn gc(data: &Path, pause_at: Option<u64>) -> bool {
    let mut command = Command::new(env!("CARGO_BIN_EXE_cloud3-relay"));
    command
        .args(["gc", "--gc-grace-secs", "0", "--data"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if let Some(step) = pause_at {
        command.env("CLOUD3_COMPACT_PAUSE_AT", step.to_string());
    }
    let mut child = command.spawn().unwrap();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let mut killed = false;
    for line in stderr.lines() {
        if line.unwrap().starts_with("compaction paused at step") {
            child.kill().unwrap(); // SIGKILL
            killed = true;
            break;
        }
    }
    let status = child.wait().unwrap();
    assert!(killed || status.success(), "gc failed: {status}");
    killed
}

/// Opens the store and checks every current blob is served with its bytes; returns the pack
/// bytes on disk of all users.
fn check(data: &Path, expected: &Expected) -> u64 {
    let store = Store::open(data).unwrap();
    let mut disk = 0;
    for (user, (current, _)) in USERS.iter().zip(expected) {
        let ids: Vec<ChunkId> = current.iter().map(|(id, _)| *id).collect();
        let served = store.get_chunks(user, &ids, u64::MAX).unwrap();
        for ((id, raw), blob) in current.iter().zip(served) {
            let blob = blob
                .unwrap_or_else(|e| panic!("{user}: {id} unreadable: {e}"))
                .unwrap_or_else(|| panic!("{user}: {id} not served"));
            let bytes =
                cloud3_engine::chunk::open(*id, blob.codec, &blob.bytes, blob.raw_len).unwrap();
            assert_eq!(&bytes, raw, "{user}: {id} read back different bytes");
        }
        disk += store.pack_disk_bytes(user);
    }
    disk
}

#[test]
fn kill_9_during_compaction_leaves_a_store_that_serves_every_retained_version() {
    let seed: u64 = std::env::var("CLOUD3_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(17);
    let tmp = tempfile::tempdir().unwrap();
    let template_dir = tmp.path().join("template");
    let expected = template(&template_dir);
    let live = (USERS.len() * usize::from(FILES) * BLOB) as u64;
    assert_eq!(check(&template_dir, &expected), 2 * live);
    // Three users, one sparse pack each, one copy batch each: 3 steps per user.
    let steps = 3 * USERS.len() as u64;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut kills = 0;
    for run in 0..100 {
        let data = tmp.path().join(format!("run{run}"));
        copy_dir(&template_dir, &data);
        let pause_at = rng.random_range(1..=steps + 1);
        let context = format!("seed {seed}, run {run}, killed at step {pause_at}");
        let killed = gc(&data, Some(pause_at));
        kills += u64::from(killed);
        assert_eq!(killed, pause_at <= steps, "{context}");
        let disk = std::panic::catch_unwind(|| check(&data, &expected))
            .unwrap_or_else(|_| panic!("{context}: the store does not serve every version"));
        assert!(disk >= live, "{context}");
        // Collect again to the end: the compaction finishes and every dead byte goes.
        assert!(!gc(&data, None), "{context}");
        let disk = check(&data, &expected);
        assert!(
            disk as f64 <= 1.15 * live as f64,
            "{context}: {disk} bytes on disk for {live} live"
        );
        let store = Store::open(&data).unwrap();
        for (user, (_, replaced)) in USERS.iter().zip(&expected) {
            let served = store.get_chunks(user, replaced, u64::MAX).unwrap();
            assert!(
                served.iter().all(|b| matches!(b, Ok(None))),
                "{context}: a version outside the window is still served"
            );
        }
        drop(store);
        std::fs::remove_dir_all(&data).unwrap();
    }
    assert!(
        kills >= 80,
        "most runs were killed mid-compaction ({kills})"
    );
}
