//! What a person meets day to day on the command line (issue 21): commands find the folder from
//! any subdirectory and take paths as the shell gives them; a second daemon names the first; a
//! failed `init` leaves nothing behind; codes survive chat and Markdown; stdout holds the result
//! alone and logs carry no colour escapes when they go to a file or a pipe.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use cloud3_tests::{Device, Relay, binary, check, wait_until};

use crate::{setup, versions};

/// `cloud3 ARGS` run from `cwd`, with `RUST_LOG` as the user has it (unset unless `log`).
fn cloud3_in(cwd: &Path, args: &[&str], log: Option<&str>) -> Result<Output> {
    let mut command = Command::new(binary("cloud3"));
    command.args(args).current_dir(cwd).env_remove("RUST_LOG");
    if let Some(log) = log {
        command.env("RUST_LOG", log);
    }
    command.output().context("run cloud3")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A file with two versions at `sub/deeper/a.txt` (synced, so the relay has both).
fn two_versions(device: &Device) -> Result<()> {
    device.write("sub/deeper/a.txt", "first");
    device.sync()?;
    device.write("sub/deeper/a.txt", "second, longer");
    device.sync()
}

#[test]
fn commands_find_the_folder_from_any_subdirectory_and_take_paths_as_given() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, devices) = setup(tmp.path(), 1)?;
    let device = &devices[0];
    two_versions(device)?;
    let root = device.dir.to_str().context("utf-8")?;
    let deeper = device.dir.join("sub/deeper");

    // From a subdirectory: status finds the folder's root, as git does.
    let status = cloud3_in(&deeper, &["status"], None)?;
    check(&status, "cloud3 status from a subdirectory")?;
    assert!(
        stdout(&status).contains(&format!("folder:   {root}\n")),
        "{}",
        stdout(&status)
    );
    // `--dir` naming a subdirectory, from outside the folder.
    let deeper_arg = deeper.to_str().context("utf-8")?;
    check(
        &cloud3_in(tmp.path(), &["status", "--json", "--dir", deeper_arg], None)?,
        "cloud3 status --dir SUBDIR",
    )?;

    // Paths relative to the current directory, `..` included, and absolute inside the folder.
    let absolute = format!("{root}/sub/deeper/a.txt");
    let sub = device.dir.join("sub");
    for (cwd, path) in [
        (deeper.as_path(), "a.txt"),
        (deeper.as_path(), "../deeper/a.txt"),
        (sub.as_path(), "deeper/a.txt"),
        (tmp.path(), absolute.as_str()),
        (deeper.as_path(), absolute.as_str()),
    ] {
        let mut args = vec!["history", path];
        if !cwd.starts_with(&device.dir) {
            args.extend(["--dir", root]);
        }
        let history = cloud3_in(cwd, &args, None)?;
        check(&history, &format!("history {path} from {}", cwd.display()))?;
        assert_eq!(
            versions(&stdout(&history)),
            2,
            "history {path} from {}: {}",
            cwd.display(),
            stdout(&history)
        );
    }

    // A directory: a plain message and a failure, not silence and success.
    let history = cloud3_in(&device.dir, &["history", "sub"], None)?;
    assert!(
        !history.status.success(),
        "history of a directory succeeded"
    );
    assert!(
        stderr(&history).contains("sub is a directory"),
        "{}",
        stderr(&history)
    );
    // A path outside the folder is named as such.
    let history = cloud3_in(&deeper, &["history", "/etc/hostname"], None)?;
    assert!(!history.status.success());
    assert!(
        stderr(&history).contains("outside the folder"),
        "{}",
        stderr(&history)
    );

    // Restore from the subdirectory, by a relative path: the first version comes back.
    let restore = cloud3_in(&deeper, &["restore", "a.txt", "--version", "0"], None)?;
    check(&restore, "restore from a subdirectory")?;
    assert_eq!(
        device.read("sub/deeper/a.txt").as_deref(),
        Some(&b"first"[..])
    );
    Ok(())
}

#[test]
fn a_second_run_on_the_same_folder_names_the_running_daemon() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, mut devices) = setup(tmp.path(), 1)?;
    let device = &mut devices[0];
    device.start_daemon()?;
    let pid = device.daemon_pid().context("daemon pid")?;
    wait_until(Duration::from_secs(30), "the daemon to answer", || {
        device.command(&["status", "--json"]).is_ok_and(|output| {
            serde_json::from_slice::<serde_json::Value>(&output.stdout)
                .is_ok_and(|s| s["source"] == "daemon")
        })
    })?;

    let mut second = Command::new(binary("cloud3"))
        .args(["run", "--dir"])
        .arg(&device.dir)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawn the second cloud3 run")?;
    // Generous: it must give up at once rather than wait for the lock.
    let start = Instant::now();
    let status = loop {
        if let Some(status) = second.try_wait()? {
            break status;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = second.kill();
            let _ = second.wait();
            bail!("a second `cloud3 run` kept running next to the first");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut message = String::new();
    for line in BufReader::new(second.stderr.take().context("stderr")?).lines() {
        message.push_str(&line?);
        message.push('\n');
    }
    assert!(!status.success(), "the second daemon exited 0: {message}");
    assert!(
        message.contains(&format!("cloud3 daemon (pid {pid}) is already running")),
        "the message does not name the running daemon's pid {pid}: {message}"
    );
    assert!(!message.contains("Database"), "{message}");
    // The first daemon is untouched.
    assert!(device.daemon_pid().is_some());
    check(
        &device.command(&["status"])?,
        "status after the refused run",
    )?;
    device.stop_daemon()
}

#[test]
fn a_failed_init_leaves_nothing_behind() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let relay = Relay::start(&tmp.path().join("relay"))?;
    let invite = relay.add_user("alice")?;
    // A port nobody listens on.
    let unreachable = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        format!("ws://{}", listener.local_addr()?)
    };

    // An existing folder with the user's files, and a relay that is not there.
    let existing = tmp.path().join("existing");
    std::fs::create_dir_all(existing.join("photos"))?;
    std::fs::write(existing.join("notes.txt"), "mine")?;
    let before = cloud3_tests::snapshot(&existing);
    let existing_arg = existing.to_str().context("utf-8")?;
    let init = |dir: &str, relay: &str, code: &str| {
        cloud3_in(
            tmp.path(),
            &[
                "init", dir, "--relay", relay, "--user", "alice", "--invite", code,
            ],
            None,
        )
    };
    let output = init(existing_arg, &unreachable, &invite)?;
    assert!(!output.status.success(), "init against no relay succeeded");
    assert!(!existing.join(".cloud3").exists(), ".cloud3 left behind");
    assert_eq!(
        cloud3_tests::snapshot(&existing),
        before,
        "user files changed"
    );

    // A wrong code into a folder (and parent) that did not exist: neither is left behind.
    let new = tmp.path().join("new");
    let nested = new.join("inner");
    let output = init(nested.to_str().context("utf-8")?, &relay.url, "00000-00000")?;
    assert!(!output.status.success(), "init with a wrong code succeeded");
    assert!(!new.exists(), "{} left behind", new.display());

    // Retried with the right code and a reachable relay, init simply works.
    check(&init(existing_arg, &relay.url, &invite)?, "init retried")?;
    assert!(existing.join(".cloud3/config.toml").is_file());
    assert_eq!(std::fs::read(existing.join("notes.txt"))?, b"mine");
    Ok(())
}

/// Whether `code` survives chat apps and Markdown: capitals and digits, `-` only inside.
fn chat_safe(code: &str) -> bool {
    let symbols = code.replace('-', "");
    code.bytes()
        .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase() || b == b'-')
        && !code.starts_with('-')
        && !code.ends_with('-')
        && !code.contains("--")
        // 5 bits a symbol: at least 50 bits.
        && symbols.len() >= 10
}

#[test]
fn invite_and_pairing_codes_survive_chat_and_markdown() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (relay, devices) = setup(tmp.path(), 1)?;
    let mut codes = Vec::new();
    for idx in 0..30 {
        codes.push(relay.add_user(&format!("user{idx}"))?);
        codes.push(devices[0].pair(idx % 2 == 0)?);
    }
    // With the old alphabet, 600 symbols held no `_` with probability (31/32)^600, about 1e-8.
    let unsafe_codes: Vec<&String> = codes.iter().filter(|code| !chat_safe(code)).collect();
    assert!(
        unsafe_codes.is_empty(),
        "codes chat would alter: {unsafe_codes:?}"
    );
    // A code typed back in lower case with spaces still enrols.
    let typed = codes[1].to_lowercase().replace('-', " ");
    Device::init(
        &tmp.path().join("dev1"),
        &relay,
        "alice",
        "--pair",
        &typed,
        "dev1",
    )?;
    Ok(())
}

#[test]
fn stdout_holds_the_result_alone_and_logs_have_no_colour_off_a_terminal() -> Result<()> {
    let tmp = tempfile::tempdir()?;
    let (_relay, devices) = setup(tmp.path(), 1)?;
    let device = &devices[0];
    let root = device.dir.to_str().context("utf-8")?;
    device.write("a.txt", "kept");
    device.sync()?;
    std::fs::remove_file(device.dir.join("a.txt"))?;
    device.sync()?;

    // With the default log filter, restore prints its result and nothing else on stdout, and
    // no log lines on stderr either.
    let restore = cloud3_in(tmp.path(), &["restore", "a.txt", "--dir", root], None)?;
    check(&restore, "restore")?;
    assert_eq!(stdout(&restore), "restored a.txt\n");
    assert_eq!(stderr(&restore), "", "log lines from a one-shot command");
    assert_eq!(device.read("a.txt").as_deref(), Some(&b"kept"[..]));

    // Logs asked for go to stderr, without escapes when stderr is a pipe.
    device.write("b.txt", "new");
    let sync = cloud3_in(tmp.path(), &["sync", "--dir", root], Some("debug"))?;
    check(&sync, "sync")?;
    assert_eq!(stdout(&sync), "in sync\n");
    assert!(stderr(&sync).contains("DEBUG"), "{}", stderr(&sync));
    assert!(!stderr(&sync).contains('\u{1b}'), "{:?}", stderr(&sync));

    // The relay too: its log to a file has no escapes.
    let log_path = tmp.path().join("relay2.log");
    let mut relay = Command::new(binary("cloud3-relay"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data"])
        .arg(tmp.path().join("relay2"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&log_path)?)
        .spawn()
        .context("spawn cloud3-relay")?;
    let lines = BufReader::new(relay.stdout.take().context("relay stdout")?).lines();
    let mut listening = false;
    for line in lines {
        if line?.starts_with("listening on ") {
            listening = true;
            break;
        }
    }
    let started = wait_until(
        Duration::from_secs(20),
        "the relay's first log line",
        || std::fs::read_to_string(&log_path).is_ok_and(|log| log.contains("relay started")),
    );
    let _ = relay.kill();
    let _ = relay.wait();
    assert!(listening, "the relay never listened");
    started?;
    let log = std::fs::read_to_string(&log_path)?;
    assert!(!log.contains('\u{1b}'), "{log:?}");
    Ok(())
}
