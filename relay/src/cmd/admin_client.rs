//! The admin commands' way to the relay (`user`, `gc`, `scan`): through the running relay's
//! admin socket when it answers (with its settings, and what changes reaches online devices at
//! once), else directly on the data directory.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;

use anyhow::{Context, bail};

use crate::admin::{AdminAnswer, AdminRequest, run_request, socket_path};
use crate::config::Settings;
use crate::store::Store;

/// Sends `request` to the running relay, or runs it on the data directory, and prints the
/// answer.
pub(crate) fn request_answer(settings: &Settings, request: AdminRequest) -> anyhow::Result<()> {
    let answer = ask(settings, request)?;
    if !answer.ok {
        bail!("{}", answer.error.unwrap_or_else(|| "failed".into()));
    }
    for line in answer.lines {
        println!("{line}");
    }
    Ok(())
}

/// Sends `request` to the running relay, or runs it on the data directory when none runs.
fn ask(settings: &Settings, request: AdminRequest) -> anyhow::Result<AdminAnswer> {
    let data = settings.data.as_path();
    Ok(match UnixStream::connect(socket_path(data)) {
        Ok(stream) => through_socket(stream, &request)?,
        Err(_) => {
            let store = Store::open_with_clock(data, settings.clock.clone())
                .with_context(|| format!("open {}", data.display()))?;
            run_request(&store, request, &settings.gc)
        }
    })
}

fn through_socket(mut stream: UnixStream, request: &AdminRequest) -> anyhow::Result<AdminAnswer> {
    let mut line = serde_json::to_string(request)?;
    line.push('\n');
    stream.write_all(line.as_bytes())?;
    let mut answer = String::new();
    BufReader::new(stream).read_line(&mut answer)?;
    serde_json::from_str(&answer).context("malformed answer from the relay")
}
