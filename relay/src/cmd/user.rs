//! `cloud3-relay user add|list|remove`: through the running relay's admin socket when it
//! answers, else directly on the data directory.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use anyhow::{Context, bail};

use crate::admin::{AdminAnswer, AdminRequest, run_request, socket_path};
use crate::cli::UserAction;
use crate::store::Store;

/// Runs a user command and prints its answer.
pub(crate) fn run(data: &Path, action: UserAction) -> anyhow::Result<()> {
    let request = match action {
        UserAction::Add { name } => AdminRequest::AddUser { name },
        UserAction::List => AdminRequest::ListUsers,
        UserAction::Remove { name } => AdminRequest::RemoveUser { name },
    };
    let answer = ask(data, request)?;
    if !answer.ok {
        bail!("{}", answer.error.unwrap_or_else(|| "failed".into()));
    }
    for line in answer.lines {
        println!("{line}");
    }
    Ok(())
}

/// Sends `request` to the running relay, or runs it on the data directory when none runs.
pub(crate) fn ask(data: &Path, request: AdminRequest) -> anyhow::Result<AdminAnswer> {
    Ok(match UnixStream::connect(socket_path(data)) {
        Ok(stream) => through_socket(stream, &request)?,
        Err(_) => {
            let store = Store::open(data).with_context(|| format!("open {}", data.display()))?;
            run_request(&store, request)
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
