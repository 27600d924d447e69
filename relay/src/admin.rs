//! The admin socket (`DATA/admin.sock`, mode 0600): while `serve` runs it holds the database, so
//! `cloud3-relay user ...` and `scan ...` send its request here instead. One JSON request per line, one JSON
//! answer per line.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use cloud3_engine::ids::ChunkId;
use cloud3_engine::wire::Verdict;

use crate::scan::service::release_record;
use crate::server::{Relay, wall_now};
use crate::store::GcSettings;

/// A request.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum AdminRequest {
    /// Create a user; answer carries the invite code.
    AddUser {
        /// The name.
        name: String,
    },
    /// List users.
    ListUsers,
    /// Remove a user and their data.
    RemoveUser {
        /// The name.
        name: String,
    },
    /// Set (or with `None` clear) a user's own retention window in days.
    SetRetention {
        /// The name.
        name: String,
        /// Days.
        days: Option<u32>,
    },
    /// Collect garbage and compact now, with the relay's own settings.
    Collect,
    /// List the scan's verdicts.
    ListVerdicts {
        /// Only this user's.
        user: Option<String>,
        /// Clean ones too.
        all: bool,
    },
    /// Release a flagged (or unscanned) version.
    Release {
        /// The user.
        user: String,
        /// The content hash, hex.
        content: String,
    },
}

/// An answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct AdminAnswer {
    /// Whether it worked.
    pub ok: bool,
    /// Lines to print.
    pub lines: Vec<String>,
    /// The error, if not ok.
    pub error: Option<String>,
}

/// The socket path for a data directory.
pub fn socket_path(data: &Path) -> PathBuf {
    data.join("admin.sock")
}

/// Binds the admin socket (replacing a stale one) so `user` commands reach this process from
/// the moment the relay announces itself.
pub fn bind(data: &Path) -> std::io::Result<UnixListener> {
    let path = socket_path(data);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(listener)
}

/// Serves admin requests until the task is dropped.
pub async fn serve(relay: Arc<Relay>, listener: UnixListener) -> std::io::Result<()> {
    loop {
        let (stream, _) = listener.accept().await?;
        let relay = relay.clone();
        tokio::spawn(async move {
            if let Err(error) = answer(relay, stream).await {
                tracing::warn!(%error, "admin request failed");
            }
        });
    }
}

async fn answer(relay: Arc<Relay>, stream: UnixStream) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let answer = match serde_json::from_str::<AdminRequest>(&line) {
            Ok(request) => execute(&relay, request).await,
            Err(error) => failure(format!("bad request: {error}")),
        };
        let mut text = serde_json::to_string(&answer).unwrap_or_default();
        text.push('\n');
        write.write_all(text.as_bytes()).await?;
    }
    Ok(())
}

/// Runs a request against the running relay.
async fn execute(relay: &Relay, request: AdminRequest) -> AdminAnswer {
    let store = relay.store.clone();
    let result = match request {
        AdminRequest::RemoveUser { name } => {
            let removed = {
                let name = name.clone();
                let gc = relay.gc.clone();
                tokio::task::spawn_blocking(move || {
                    run_request(store.as_ref(), AdminRequest::RemoveUser { name }, &gc)
                })
                .await
            };
            relay.hub.forget_user(&name).await;
            removed
        }
        AdminRequest::Release { user, content } => {
            let scan = relay.scan.clone();
            tokio::task::spawn_blocking(move || {
                let released = parse_content(&content).and_then(|content| {
                    scan.release(&user, content)
                        .map(|()| content)
                        .map_err(|e| e.to_string())
                });
                match released {
                    Ok(content) => success(vec![format!("released {content} of {user}")]),
                    Err(error) => failure(error),
                }
            })
            .await
        }
        other => {
            let gc = relay.gc.clone();
            tokio::task::spawn_blocking(move || run_request(store.as_ref(), other, &gc)).await
        }
    };
    result.unwrap_or_else(|_| failure("admin task failed".into()))
}

/// Runs a request directly against the storage (the relay is not running, or from the socket).
pub fn run_request(
    store: &dyn crate::store::Storage,
    request: AdminRequest,
    gc: &GcSettings,
) -> AdminAnswer {
    let result = match request {
        AdminRequest::AddUser { name } => store.add_user(&name, wall_now()).map(|code| {
            vec![
                format!("user {name} created; invite code (valid 7 days, single use):"),
                code.as_str().to_owned(),
            ]
        }),
        AdminRequest::ListUsers => store.list_users().map(|users| {
            users
                .into_iter()
                .map(|(name, record)| format!("{name}\tcreated {}", record.created.0))
                .collect()
        }),
        AdminRequest::RemoveUser { name } => store
            .remove_user(&name)
            .map(|devices| vec![format!("removed user {name} and {} devices", devices.len())]),
        AdminRequest::SetRetention { name, days } => {
            store.set_retention(&name, days).map(|()| match days {
                Some(days) => vec![format!("user {name} keeps versions for {days} days")],
                None => vec![format!(
                    "user {name} keeps versions for the relay's window ({} days)",
                    gc.retention_days
                )],
            })
        }
        AdminRequest::Collect => store.collect(gc).map(|report| report.lines()),
        AdminRequest::ListVerdicts { user, all } => store.all_verdicts().map(|verdicts| {
            verdicts
                .into_iter()
                .filter(|(u, _, r)| {
                    user.as_ref().is_none_or(|only| only == u)
                        && (all || r.released || r.verdict != Verdict::Clean)
                })
                .map(|(u, content, r)| {
                    let released = if r.released { " (released)" } else { "" };
                    format!("{u}\t{content}\t{}{released}\t{} bytes", r.verdict, r.size)
                })
                .collect()
        }),
        AdminRequest::Release { user, content } => {
            let content = match parse_content(&content) {
                Ok(content) => content,
                Err(error) => return failure(error),
            };
            release_record(store, &user, content)
                .map(|_| vec![format!("released {content} of {user}")])
        }
    };
    match result {
        Ok(lines) => success(lines),
        Err(error) => failure(error.to_string()),
    }
}

fn parse_content(hex_hash: &str) -> Result<ChunkId, String> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(hex_hash, &mut bytes)
        .map_err(|_| format!("{hex_hash:?} is not a content hash (64 hex digits)"))?;
    Ok(ChunkId(bytes))
}

fn success(lines: Vec<String>) -> AdminAnswer {
    AdminAnswer {
        ok: true,
        lines,
        error: None,
    }
}

fn failure(error: String) -> AdminAnswer {
    AdminAnswer {
        ok: false,
        lines: Vec::new(),
        error: Some(error),
    }
}
