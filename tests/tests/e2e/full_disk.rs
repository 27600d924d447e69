//! Full disks (issue 20), on small file systems the tests mount themselves: a relay whose disk
//! fills refuses new blobs cleanly and keeps serving, then resumes once it has room; a device
//! whose disk cannot hold a file writes the rest, removes the partial bytes and says in
//! `status` what is missing and how much room it needs.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use cloud3_tests::small_disk::SmallDisk;
use cloud3_tests::{Device, Relay, binary, random_bytes, wait_until};

const MIB: u64 = 1 << 20;

/// The value of a counter or gauge on the relay's `/metrics` page.
fn metric(relay: &Relay, name: &str) -> Result<f64> {
    let mut socket = std::net::TcpStream::connect(&relay.addr)?;
    socket.write_all(b"GET /metrics HTTP/1.1\r\nHost: relay\r\nConnection: close\r\n\r\n")?;
    let mut page = String::new();
    socket.read_to_string(&mut page)?;
    let line = page
        .lines()
        .find(|line| line.split_whitespace().next() == Some(name))
        .with_context(|| format!("no {name} in the metrics"))?;
    line.split_whitespace()
        .nth(1)
        .context("metric value")?
        .parse()
        .context("metric number")
}

/// A device `name` of `user`, enrolled as its first (`--invite`) or next (`--pair`) device.
fn device(
    root: &Path,
    relay: &Relay,
    user: &str,
    name: &str,
    code: (&str, &str),
) -> Result<Device> {
    Device::init(&root.join(name), relay, user, code.0, code.1, name)
}

#[test]
fn a_full_relay_refuses_cleanly_keeps_serving_and_resumes_when_it_has_room() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let Some(disk) = SmallDisk::mount(&tmp.path().join("relay-disk"), 40)? else {
        return Ok(());
    };
    let relay = Relay::start_with(
        &disk.dir.join("data"),
        "127.0.0.1:0",
        &["--min-free-mib", "8"],
    )?;
    let alice_invite = relay.add_user("alice")?;
    let bob_invite = relay.add_user("bob")?;
    let folders = tmp.path().join("devices");
    let mut laptop = device(
        &folders,
        &relay,
        "alice",
        "laptop",
        ("--invite", &alice_invite),
    )?;
    let code = laptop.pair(false)?;
    let desktop = device(&folders, &relay, "alice", "desktop", ("--pair", &code))?;
    let bob = device(&folders, &relay, "bob", "bob", ("--invite", &bob_invite))?;

    // Acknowledged before the disk fills.
    laptop.write("notes.txt", b"written before the relay filled up");
    laptop.sync()?;
    bob.write("b.txt", b"bob's file");
    bob.sync()?;
    desktop.sync()?;

    // 60 MB on a 40 MiB disk: refused with the specific reason, and the disk keeps its reserve
    // (the bytes of the refused upload are not left behind).
    let big = random_bytes(1, (60 * MIB) as usize);
    laptop.write("big.bin", &big);
    let refused = laptop.command(&["sync"])?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    ensure!(!refused.status.success(), "a sync to a full relay fails");
    ensure!(
        stderr.contains("relay storage full"),
        "the reason: {stderr}"
    );
    // No blob goes into the 8 MiB reserve; the database's own small writes (claims, pending
    // scan records, its file growing) may, which is what the reserve is for. A refused upload
    // left behind would leave the disk full instead.
    let free = disk.free()?;
    ensure!(
        free >= 7 * MIB,
        "the relay keeps its reserve free of blobs: {free} bytes free"
    );
    ensure!(metric(&relay, "cloud3_storage_full")? == 1.0);

    // The relay keeps serving: reads, changes needing no new blob, the other user.
    std::fs::rename(desktop.dir.join("notes.txt"), desktop.dir.join("moved.txt"))?;
    desktop.sync()?;
    let code = bob.pair(false)?;
    let bob_phone = device(&folders, &relay, "bob", "phone", ("--pair", &code))?;
    bob_phone.sync()?;
    ensure!(bob_phone.read("b.txt").as_deref() == Some(b"bob's file".as_slice()));

    // The daemon says so in status and backs off instead of retrying at once.
    laptop.start_daemon()?;
    wait_until(
        Duration::from_secs(30),
        "status to show the full relay",
        || {
            laptop
                .status_json()
                .is_ok_and(|s| s["relay_storage_full"] == true)
        },
    )?;
    let text = laptop.command(&["status"])?;
    ensure!(
        String::from_utf8_lossy(&text.stdout).contains("relay storage full"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
    let asked = laptop.command(&["sync"])?;
    ensure!(
        !asked.status.success()
            && String::from_utf8_lossy(&asked.stderr).contains("relay storage full"),
        "sync through the daemon says why: {}",
        String::from_utf8_lossy(&asked.stderr)
    );
    let before = metric(&relay, "cloud3_storage_full_refusals_total")?;
    std::thread::sleep(Duration::from_secs(20));
    let refusals = metric(&relay, "cloud3_storage_full_refusals_total")? - before;
    eprintln!("uploads refused in 20 s of the device's back-off: {refusals}");
    ensure!(
        refusals <= 6.0,
        "{refusals} refused uploads in 20 s: the device must back off"
    );

    // The operator adds space: the upload goes through without restarting anything.
    disk.resize(200)?;
    let took = wait_until(
        Duration::from_secs(120),
        "the big file to reach the relay",
        || {
            laptop.status_json().is_ok_and(|s| {
                s["relay_storage_full"] == false
                    && s["pending"]["upload_files"] == 0
                    && s["connected"] == true
            })
        },
    )?;
    eprintln!("the upload went through {took:?} after the disk grew");
    wait_until(
        Duration::from_secs(60),
        "the big file on the other device",
        || desktop.sync().is_ok() && desktop.read("big.bin").as_deref() == Some(big.as_slice()),
    )?;
    ensure!(metric(&relay, "cloud3_storage_full")? == 0.0);
    laptop.stop_daemon()?;
    laptop.sync()?;
    ensure!(
        laptop.read("moved.txt").as_deref()
            == Some(b"written before the relay filled up".as_slice())
    );
    ensure!(
        laptop.read("notes.txt").is_none(),
        "the rename made while full arrived"
    );
    drop(relay);
    Ok(())
}

/// Sets `key` of a device's `config.toml` to `value`.
fn configure(device: &Device, key: &str, value: &str) -> Result<()> {
    let path = device.dir.join(".cloud3/config.toml");
    let config: String = std::fs::read_to_string(&path)?
        .lines()
        .filter(|line| line.split('=').next().map(str::trim) != Some(key))
        .map(|line| format!("{line}\n"))
        .chain(std::iter::once(format!("{key} = {value}\n")))
        .collect();
    std::fs::write(&path, config)?;
    Ok(())
}

/// Files left in `.cloud3/tmp/` and `.cloud3/partial/`.
fn leftovers(device: &Device) -> Vec<String> {
    ["tmp", "partial"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(device.dir.join(".cloud3").join(dir)).into_iter())
        .flatten()
        .flatten()
        .map(|entry| entry.path().display().to_string())
        .collect()
}

/// The `no_room` entries of a status: (path, size, short_by).
fn no_room(status: &serde_json::Value) -> Vec<(String, u64, u64)> {
    status["no_room"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|file| {
            (
                file["path"].as_str().unwrap_or_default().to_owned(),
                file["size"].as_u64().unwrap_or_default(),
                file["short_by"].as_u64().unwrap_or_default(),
            )
        })
        .collect()
}

#[test]
fn a_full_device_writes_what_fits_removes_partial_data_and_says_what_is_missing() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let Some(disk) = SmallDisk::mount(&tmp.path().join("device-disk"), 30)? else {
        return Ok(());
    };
    let relay = Relay::start(&tmp.path().join("relay"))?;
    let invite = relay.add_user("alice")?;
    let source = Device::init(
        &tmp.path().join("source"),
        &relay,
        "alice",
        "--invite",
        &invite,
        "source",
    )?;
    let code = source.pair(false)?;
    let small = Device::init(
        &disk.dir.join("folder"),
        &relay,
        "alice",
        "--pair",
        &code,
        "small",
    )?;
    configure(&small, "min_free_mib", "2")?;
    let proxy = small.behind_proxy(&relay)?;

    // A 50 MB file cannot land on a 30 MiB disk; the small files that come with it do.
    let big = random_bytes(2, (50 * MIB) as usize);
    source.write("big.bin", &big);
    source.write("small.txt", b"a small file");
    source.write("docs/readme.md", b"another");
    source.sync()?;
    let output = small.command(&["sync"])?;
    cloud3_tests::check(&output, "cloud3 sync on the full device")?;
    ensure!(String::from_utf8_lossy(&output.stderr).contains("no room on this disk for big.bin"));
    ensure!(small.read("small.txt").as_deref() == Some(b"a small file".as_slice()));
    ensure!(small.read("docs/readme.md").as_deref() == Some(b"another".as_slice()));
    ensure!(small.read("big.bin").is_none());
    ensure!(
        leftovers(&small).is_empty(),
        "partial data left: {:?}",
        leftovers(&small)
    );
    let missing = no_room(&small.status_json()?);
    ensure!(
        missing.len() == 1 && missing[0].0 == "big.bin",
        "{missing:?}"
    );
    ensure!(missing[0].1 == 50 * MIB, "the size: {missing:?}");
    ensure!(
        missing[0].2 >= 20 * MIB && missing[0].2 <= 50 * MIB,
        "how much more room it needs: {missing:?}"
    );
    let text = small.command(&["status"])?;
    ensure!(String::from_utf8_lossy(&text.stdout).contains("no room on this disk for:"));

    // A file that fits when its download starts, but the disk fills while it arrives: given
    // up, its partial bytes removed, reported.
    let medium = random_bytes(3, (12 * MIB) as usize);
    source.write("medium.bin", &medium);
    source.sync()?;
    proxy.set_delay(Duration::from_millis(30));
    let mut sync = Command::new(binary("cloud3"))
        .args(["sync", "--dir"])
        .arg(&small.dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    // Filled once the download holds a few MiB, which giving it up frees for the index.
    let partial = small.dir.join(".cloud3/partial");
    wait_until(
        Duration::from_secs(60),
        "the download to be under way",
        || {
            std::fs::read_dir(&partial).is_ok_and(|entries| {
                entries
                    .flatten()
                    .filter_map(|entry| entry.metadata().ok())
                    .any(|meta| std::os::unix::fs::MetadataExt::blocks(&meta) * 512 >= 2 * MIB)
            })
        },
    )?;
    let filler = disk.dir.join("filler");
    disk.fill(&filler)?;
    proxy.set_delay(Duration::ZERO);
    let finished = sync.wait()?;
    let mut stderr = String::new();
    sync.stderr
        .take()
        .context("stderr")?
        .read_to_string(&mut stderr)?;
    ensure!(finished.success(), "the sync ends cleanly: {stderr}");
    ensure!(
        stderr.contains("the disk is full: giving this download up"),
        "the write ran out of space: {stderr}"
    );
    ensure!(small.read("medium.bin").is_none());
    ensure!(
        leftovers(&small).is_empty(),
        "partial data left: {:?}",
        leftovers(&small)
    );
    let missing = no_room(&small.status_json()?);
    ensure!(
        missing
            .iter()
            .any(|(path, size, _)| path == "medium.bin" && *size == 12 * MIB),
        "{missing:?}"
    );

    // Room again: what fits now lands.
    std::fs::remove_file(&filler)?;
    small.sync()?;
    ensure!(small.read("medium.bin").as_deref() == Some(medium.as_slice()));
    let missing = no_room(&small.status_json()?);
    ensure!(
        missing.len() == 1 && missing[0].0 == "big.bin",
        "{missing:?}"
    );

    // The big file deleted on the other device: no longer wanted, never fetched again.
    std::fs::remove_file(source.dir.join("big.bin"))?;
    source.sync()?;
    let (_, down_before) = proxy.bytes();
    small.sync()?;
    let (_, down_after) = proxy.bytes();
    ensure!(no_room(&small.status_json()?).is_empty());
    ensure!(
        down_after - down_before < MIB,
        "{} bytes fetched after the big file was deleted",
        down_after - down_before
    );
    ensure!(leftovers(&small).is_empty());
    drop(small);
    drop(relay);
    Ok(())
}

#[test]
fn a_running_daemon_lists_what_does_not_fit_and_fetches_it_once_there_is_room() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let Some(disk) = SmallDisk::mount(&tmp.path().join("device-disk"), 20)? else {
        return Ok(());
    };
    let relay = Relay::start(&tmp.path().join("relay"))?;
    let invite = relay.add_user("alice")?;
    let source = Device::init(
        &tmp.path().join("source"),
        &relay,
        "alice",
        "--invite",
        &invite,
        "source",
    )?;
    let code = source.pair(false)?;
    let mut small = Device::init(
        &disk.dir.join("folder"),
        &relay,
        "alice",
        "--pair",
        &code,
        "small",
    )?;
    configure(&small, "rescan_interval_ms", "1000")?;
    let big = random_bytes(4, (30 * MIB) as usize);
    source.write("big.bin", &big);
    source.write("small.txt", b"fits");
    source.sync()?;

    small.start_daemon()?;
    wait_until(
        Duration::from_secs(60),
        "the daemon to list big.bin",
        || {
            small.status_json().is_ok_and(|s| {
                s["source"] == "daemon" && no_room(&s).iter().any(|(path, ..)| path == "big.bin")
            })
        },
    )?;
    ensure!(small.read("small.txt").as_deref() == Some(b"fits".as_slice()));
    ensure!(leftovers(&small).is_empty(), "{:?}", leftovers(&small));

    // Room outside the folder (the operator grows the disk): nothing in the folder changes,
    // the periodic rescan tries again.
    disk.resize(100)?;
    wait_until(Duration::from_secs(60), "big.bin to land", || {
        small.read("big.bin").as_deref() == Some(big.as_slice())
    })?;
    wait_until(Duration::from_secs(10), "status to forget big.bin", || {
        small.status_json().is_ok_and(|s| no_room(&s).is_empty())
    })?;
    small.stop_daemon()?;
    Ok(())
}
