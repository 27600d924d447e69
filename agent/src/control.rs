//! The local control channel between the command line and a running `cloud3 run`.
//!
//! The daemon holds the folder's database, so `history`, `restore`, `status` and `devices` ask
//! it instead of opening the database themselves. The channel is a Unix domain socket,
//! `.cloud3/control.sock` (mode 0600 inside the 0700 state directory); a connection from another
//! user is refused after checking the peer's credentials (`SO_PEERCRED`), whatever the file
//! modes say.
//!
//! One request per connection, as JSON lines: the client sends a [`Request`]; the daemon answers
//! [`Reply::Accepted`] at once (from a task of its own, whatever the daemon is doing), then the
//! answer. `status` is answered from a live snapshot the daemon publishes, so it answers even in
//! the middle of a long transfer; the others are handed to the daemon's event loop
//! ([`Control::next`]) and answered between its other events with full access to its state.
//!
//! A socket left by a killed daemon is not trusted: nobody accepts on it (the connection is
//! refused) or nobody acknowledges within [`ACCEPT_TIMEOUT`], and the command then works directly
//! on the folder. A new daemon removes the stale file before binding (it holds the database lock
//! by then, so no other daemon can be serving it).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use cloud3_engine::wire::{ClientMessage, DeviceInfo, ServerMessage};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{mpsc, oneshot};

use crate::activity::{Activity, Transfers};
use crate::error::AgentError;
use crate::session::Session;
use crate::state::StateDir;
use crate::status::Status;
use crate::syncer::Syncer;
use crate::versions::{self, History};

/// How long a command waits for a daemon to acknowledge its request before deciding that no
/// daemon serves the socket (a stale socket, or a stopped process).
pub const ACCEPT_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a command waits for the answer once the daemon has acknowledged (it answers between
/// its other events: a scan or transfer in progress finishes first).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(300);

/// How long the daemon waits for a connected client to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Longest request line the daemon reads.
const MAX_REQUEST: u64 = 64 * 1024;

/// Requests waiting for the event loop.
const QUEUE: usize = 16;

/// What a command asks the daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "request", rename_all = "snake_case")]
pub enum Request {
    /// The live status.
    Status,
    /// The versions of a file.
    History {
        /// Relative path.
        path: String,
    },
    /// Undelete a file and optionally bring back one of its versions.
    Restore {
        /// Relative path.
        path: String,
        /// The version number from `history`.
        version: Option<usize>,
    },
    /// The account's devices, from the relay.
    Devices,
    /// Scan now, and answer once the relay holds exactly this device's document.
    Sync,
    /// Send the deletions the mass-delete guard holds back.
    ConfirmDeletes,
    /// Bring back the entries whose deletion the mass-delete guard holds back.
    UndoDeletes,
}

/// What the daemon answers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum Reply {
    /// The request was read; the answer follows.
    Accepted,
    /// The live status and what is transferring now.
    Status {
        /// Connection, pending work, devices, conflicts, last error (boxed: the largest
        /// answer by far).
        status: Box<Status>,
        /// Transfers in progress.
        transfers: Transfers,
    },
    /// A file's versions.
    History {
        /// The versions.
        history: History,
    },
    /// The restore is in the document. `synced`: it was also sent to the relay (other devices
    /// get it like any edit); else the daemon is offline and sends it when the relay returns.
    Restored {
        /// Whether the relay has it.
        synced: bool,
    },
    /// The account's devices.
    Devices {
        /// As the relay listed them.
        devices: Vec<DeviceInfo>,
    },
    /// The folder and the relay agree.
    Synced,
    /// The held entries are written again (`synced`), or will be once the relay is
    /// reachable (offline, when this device lacks their bytes).
    DeletesUndone {
        /// How many entries come back.
        count: usize,
        /// Whether they are all written.
        synced: bool,
    },
    /// The held deletions are in the document. `synced`: sent to the relay too; else the
    /// daemon is offline and sends them when the relay returns.
    DeletesConfirmed {
        /// How many deletions were recorded.
        count: usize,
        /// Whether the relay has them.
        synced: bool,
    },
    /// The request failed.
    Error {
        /// Why.
        message: String,
    },
}

/// A request handed to the daemon's event loop, with where its answer goes.
pub struct Pending {
    request: Request,
    reply: oneshot::Sender<Reply>,
}

/// The daemon's side of the channel: owns the socket (removed on drop).
pub struct Control {
    requests: mpsc::Receiver<Pending>,
    status: Arc<Mutex<Status>>,
    activity: Activity,
    /// `devices` requests waiting for the relay's answer on the live connection.
    devices_waiting: Vec<oneshot::Sender<Reply>>,
    /// `sync` requests waiting for the folder and the relay to agree.
    sync_waiting: Vec<oneshot::Sender<Reply>>,
    path: PathBuf,
    accepting: tokio::task::JoinHandle<()>,
}

impl Control {
    /// Binds `.cloud3/control.sock` (replacing a stale one) and starts accepting. Call it only
    /// while holding the folder's database, so no other daemon serves the folder.
    pub fn start(state: &StateDir) -> Result<Control, AgentError> {
        let path = socket_path(state);
        match std::fs::remove_file(&path) {
            Ok(()) => tracing::info!(path = %path.display(), "removed a stale control socket"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(AgentError::io("remove", &path, e)),
        }
        let listener = UnixListener::bind(&path).map_err(|e| AgentError::io("bind", &path, e))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| AgentError::io("chmod", &path, e))?;
        let (tx, requests) = mpsc::channel(QUEUE);
        let status = Arc::new(Mutex::new(Status::default()));
        let activity = Activity::default();
        let accepting = tokio::spawn(accept(listener, tx, status.clone(), activity.clone()));
        Ok(Control {
            requests,
            status,
            activity,
            devices_waiting: Vec::new(),
            sync_waiting: Vec::new(),
            path,
            accepting,
        })
    }

    /// The next request for the event loop.
    pub async fn next(&mut self) -> Option<Pending> {
        self.requests.recv().await
    }

    /// Makes `status` what `cloud3 status` reports.
    pub fn publish(&self, status: &Status) {
        let mut live = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        if *live != *status {
            *live = status.clone();
        }
    }

    /// Where transfers report their progress.
    pub fn activity(&self) -> Activity {
        self.activity.clone()
    }

    /// Answers a request between the daemon's other events. `session` is `None` while offline.
    /// Errors are the connection's (the session is over); the request's own failures are
    /// answered to the command.
    pub async fn answer(
        &mut self,
        pending: Pending,
        syncer: &mut Syncer,
        session: Option<&mut Session>,
    ) -> Result<(), AgentError> {
        let Pending { request, reply } = pending;
        tracing::debug!(?request, "control request");
        match request {
            Request::Status => {
                let _ = reply.send(live_status(&self.status, &self.activity));
            }
            Request::History { path } => {
                let answer = match versions::history(syncer, &path) {
                    Ok(history) => Reply::History { history },
                    Err(error) => error_reply(&error),
                };
                let _ = reply.send(answer);
            }
            Request::Restore { path, version } => {
                if let Err(error) = versions::restore(syncer, &path, version) {
                    let _ = reply.send(error_reply(&error));
                    return Ok(());
                }
                tracing::info!(path, ?version, "restored on request");
                match session {
                    Some(session) => {
                        // Sent first, so other devices get it at once; then written here, and
                        // only then answered (the command returns with the file in place).
                        if let Err(error) = session.push(syncer).await {
                            let _ = reply.send(Reply::Restored { synced: false });
                            return Err(error);
                        }
                        let written = session.materialise(syncer).await;
                        let _ = reply.send(match &written {
                            Ok(()) => Reply::Restored { synced: true },
                            Err(error) => error_reply(error),
                        });
                        written?;
                    }
                    None => {
                        // Offline: written here from local chunks if it can be; the relay (and
                        // any chunks missing here) when it returns. The restore is committed
                        // either way: a failed write is retried by the next session.
                        let actions = syncer.plan();
                        if let Err(error) = crate::apply::apply(syncer, None, actions).await {
                            tracing::warn!(%error, path, "cannot write the restored file yet");
                        }
                        let _ = reply.send(Reply::Restored { synced: false });
                    }
                }
            }
            Request::Sync => match session {
                Some(session) => {
                    self.sync_waiting.push(reply);
                    let changed = syncer.scan(&Default::default())?;
                    session.scanned(syncer, changed).await?;
                    self.after_event(session, syncer);
                }
                None => {
                    let full = self
                        .status
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .relay_storage_full;
                    let message = if full {
                        AgentError::RelayFull.to_string()
                    } else {
                        "the daemon is offline (the relay is unreachable); \
                         it syncs when the relay returns"
                            .into()
                    };
                    let _ = reply.send(Reply::Error { message });
                }
            },
            Request::ConfirmDeletes => {
                syncer.confirm_deletes = true;
                let changed = match syncer.scan(&Default::default()) {
                    Ok(changed) => changed,
                    Err(error) => {
                        let _ = reply.send(error_reply(&error));
                        return Err(error);
                    }
                };
                let count = syncer.last_scan_deletes;
                tracing::info!(count, "deletions confirmed on request");
                match session {
                    Some(session) => {
                        let sent = session.scanned(syncer, changed).await;
                        let _ = reply.send(match &sent {
                            Ok(()) => Reply::DeletesConfirmed {
                                count,
                                synced: true,
                            },
                            Err(error) => error_reply(error),
                        });
                        sent?;
                    }
                    None => {
                        let _ = reply.send(Reply::DeletesConfirmed {
                            count,
                            synced: false,
                        });
                    }
                }
            }
            Request::UndoDeletes => {
                let count = match syncer.undo_deletes() {
                    Ok(count) => count,
                    Err(error) => {
                        let _ = reply.send(error_reply(&error));
                        return Err(error);
                    }
                };
                tracing::info!(count, "held deletions undone on request");
                match session {
                    Some(session) => {
                        let written = session.materialise(syncer).await;
                        let _ = reply.send(match &written {
                            Ok(()) => Reply::DeletesUndone {
                                count,
                                synced: true,
                            },
                            Err(error) => error_reply(error),
                        });
                        written?;
                    }
                    None => {
                        // Offline: what local chunks can rebuild is written now, the rest
                        // when the relay returns.
                        let actions = syncer.plan();
                        if let Err(error) = crate::apply::apply(syncer, None, actions).await {
                            tracing::warn!(%error, "cannot write the entries back yet");
                        }
                        let _ = reply.send(Reply::DeletesUndone {
                            count,
                            synced: false,
                        });
                    }
                }
            }
            Request::Devices => match session {
                Some(session) => {
                    if let Err(error) = session.link.send(&ClientMessage::ListDevices).await {
                        let _ = reply.send(error_reply(&error));
                        return Err(error);
                    }
                    self.devices_waiting.push(reply);
                }
                None => {
                    let _ = reply.send(Reply::Error {
                        message: "the daemon is offline (the relay is unreachable): \
                                  the device list comes from the relay"
                            .into(),
                    });
                }
            },
        }
        Ok(())
    }

    /// Answers the requests waiting for a relay message (the device list). The message goes on
    /// to the session too (the device list names the devices in `status`).
    pub fn take(&mut self, message: &ServerMessage) {
        if let ServerMessage::Devices(devices) = message {
            for waiting in self.devices_waiting.drain(..) {
                let _ = waiting.send(Reply::Devices {
                    devices: devices.clone(),
                });
            }
        }
    }

    /// Called after each event while connected: answers `sync` requests once the folder and
    /// the relay agree.
    pub fn after_event(&mut self, session: &Session, syncer: &mut Syncer) {
        if !self.sync_waiting.is_empty() && session.in_sync(syncer) {
            for waiting in self.sync_waiting.drain(..) {
                let _ = waiting.send(Reply::Synced);
            }
        }
    }

    /// The connection to the relay ended: requests waiting for it are told.
    pub fn disconnected(&mut self) {
        for waiting in self
            .devices_waiting
            .drain(..)
            .chain(self.sync_waiting.drain(..))
        {
            let _ = waiting.send(Reply::Error {
                message: "the daemon lost its connection to the relay; try again".into(),
            });
        }
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        self.accepting.abort();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The socket of the folder whose state is `state`.
pub fn socket_path(state: &StateDir) -> PathBuf {
    state.root().join("control.sock")
}

async fn accept(
    listener: UnixListener,
    requests: mpsc::Sender<Pending>,
    status: Arc<Mutex<Status>>,
    activity: Activity,
) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let (requests, status, activity) =
                    (requests.clone(), status.clone(), activity.clone());
                tokio::spawn(async move {
                    if let Err(error) = serve(stream, requests, status, activity).await {
                        tracing::debug!(%error, "control connection ended");
                    }
                });
            }
            Err(error) => {
                tracing::warn!(%error, "control socket: cannot accept");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// One connection: check who it is, read the request, acknowledge, answer.
async fn serve(
    mut stream: UnixStream,
    requests: mpsc::Sender<Pending>,
    status: Arc<Mutex<Status>>,
    activity: Activity,
) -> std::io::Result<()> {
    let peer = stream.peer_cred()?.uid();
    if let Err(message) = check_peer(peer, own_uid()) {
        tracing::warn!(peer, "refused a control connection from another user");
        return send(&mut stream, &Reply::Error { message }).await;
    }
    let (read, mut write) = stream.split();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(read.take(MAX_REQUEST));
    match tokio::time::timeout(REQUEST_TIMEOUT, reader.read_line(&mut line)).await {
        Ok(read) => read?,
        Err(_) => return Ok(()),
    };
    let request: Request = match serde_json::from_str(&line) {
        Ok(request) => request,
        Err(error) => {
            let message = format!("not a control request: {error}");
            return send(&mut write, &Reply::Error { message }).await;
        }
    };
    send(&mut write, &Reply::Accepted).await?;
    let answer = match request {
        Request::Status => live_status(&status, &activity),
        request => {
            let (reply, answer) = oneshot::channel();
            match requests.send(Pending { request, reply }).await {
                Ok(()) => answer.await.unwrap_or_else(|_| Reply::Error {
                    message: "the daemon stopped before answering".into(),
                }),
                Err(_) => Reply::Error {
                    message: "the daemon is stopping".into(),
                },
            }
        }
    };
    send(&mut write, &answer).await
}

async fn send(write: &mut (impl AsyncWriteExt + Unpin), reply: &Reply) -> std::io::Result<()> {
    let mut line = serde_json::to_vec(reply).map_err(std::io::Error::other)?;
    line.push(b'\n');
    write.write_all(&line).await?;
    write.flush().await
}

/// Only the daemon's own user may use its control socket (root included: it can read the
/// folder anyway, but it would act with this user's device key).
fn check_peer(peer: u32, own: u32) -> Result<(), String> {
    if peer == own {
        Ok(())
    } else {
        Err(format!(
            "refused: this control socket serves only uid {own}, not uid {peer}"
        ))
    }
}

fn own_uid() -> u32 {
    rustix::process::getuid().as_raw()
}

fn live_status(status: &Mutex<Status>, activity: &Activity) -> Reply {
    let mut status = status
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let transfers = activity.snapshot();
    // The download figures and the progress come from the transfers in progress (the status
    // file has none).
    status.pending.download_files = transfers.download_files;
    status.pending.download_bytes = transfers.download_bytes;
    status.pending.downloaded_bytes = transfers.downloaded_bytes;
    status.pending.uploaded_bytes = transfers.uploaded_bytes;
    Reply::Status {
        status: Box::new(status),
        transfers,
    }
}

fn error_reply(error: &AgentError) -> Reply {
    Reply::Error {
        message: error.to_string(),
    }
}

/// Asks the daemon serving the folder. `Ok(None)`: no daemon answers (no socket, a stale one,
/// or no acknowledgement within [`ACCEPT_TIMEOUT`]), so the caller works directly on the
/// folder. A failure the daemon reports is [`AgentError::Daemon`].
pub fn ask(state: &StateDir, request: &Request) -> Result<Option<Reply>, AgentError> {
    let path = socket_path(state);
    let stream = match std::os::unix::net::UnixStream::connect(&path) {
        Ok(stream) => stream,
        Err(error) => {
            if path.exists() {
                tracing::debug!(%error, "stale control socket: working directly");
            }
            return Ok(None);
        }
    };
    let io = |e| AgentError::io("use", &path, e);
    stream.set_read_timeout(Some(ACCEPT_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(ACCEPT_TIMEOUT)).map_err(io)?;
    let mut line = serde_json::to_vec(request).map_err(|e| io(std::io::Error::other(e)))?;
    line.push(b'\n');
    if let Err(error) = (&stream).write_all(&line) {
        tracing::debug!(%error, "no daemon on the control socket: working directly");
        return Ok(None);
    }
    let mut reader = BufReader::new(&stream);
    match read_reply(&mut reader) {
        Ok(Some(Reply::Accepted)) => {}
        Ok(Some(Reply::Error { message })) => return Err(AgentError::Daemon(message)),
        Ok(other) => {
            tracing::debug!(
                ?other,
                "no acknowledgement on the control socket: working directly"
            );
            return Ok(None);
        }
        Err(error) => {
            tracing::debug!(%error, "no daemon answered on the control socket: working directly");
            return Ok(None);
        }
    }
    stream.set_read_timeout(Some(ANSWER_TIMEOUT)).map_err(io)?;
    match read_reply(&mut reader) {
        Ok(Some(Reply::Error { message })) => Err(AgentError::Daemon(message)),
        Ok(Some(reply)) => Ok(Some(reply)),
        Ok(None) => Err(AgentError::Daemon(
            "the daemon stopped before answering".into(),
        )),
        Err(error) => Err(AgentError::Daemon(format!(
            "the daemon did not answer: {error}"
        ))),
    }
}

/// One reply line; `None` at the end of the stream or for a line that is not a reply.
fn read_reply(reader: &mut impl BufRead) -> std::io::Result<Option<Reply>> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    Ok(serde_json::from_str(&line).ok())
}

/// An answer of another kind than the request's.
pub fn unexpected(reply: &Reply) -> AgentError {
    AgentError::Daemon(format!("unexpected answer from the daemon: {reply:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_are_one_json_line_each() {
        let request = Request::Restore {
            path: "a b/c.txt".into(),
            version: Some(0),
        };
        let text = serde_json::to_string(&request).unwrap();
        assert_eq!(
            text,
            r#"{"request":"restore","path":"a b/c.txt","version":0}"#
        );
        assert_eq!(serde_json::from_str::<Request>(&text).unwrap(), request);
        let reply = Reply::Restored { synced: true };
        let text = serde_json::to_string(&reply).unwrap();
        assert!(!text.contains('\n'));
        assert_eq!(serde_json::from_str::<Reply>(&text).unwrap(), reply);
    }

    #[test]
    fn only_the_same_user_is_served() {
        assert!(check_peer(1000, 1000).is_ok());
        let refused = check_peer(65534, 1000).unwrap_err();
        assert!(refused.contains("65534"), "{refused}");
        assert!(check_peer(0, 1000).is_err(), "not even root");
    }
}
