//! The agent's drivers: `run` (sync continuously, online or offline) and `sync` (one exchange).
//!
//! Everything that can wake the daemon is one `Event`, handled in one loop: a message from the
//! relay, changes reported by the watcher, a request from the command line (see `control`), the
//! periodic full rescan, and shutdown. Keep-alives are the connection's own
//! (see `Connection`), so a busy loop never lets the link go idle.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use cloud3_engine::tree::name::conflict_original;
use cloud3_engine::wire::{ServerMessage, Verdict};

use crate::cmd::Folder;
use crate::control::{self, Control};
use crate::error::AgentError;
use crate::session::{QUIET_TIMEOUT, Session};
use crate::state::STATE_DIR;
use crate::status::{ConflictCopy, Status, StatusFile};
use crate::syncer::{BlobSource, Syncer};
use crate::transfer::Link;
use crate::watch::FolderWatch;

/// How soon a file found changing while it was read is looked at again (its writer's next
/// event usually comes first).
const UNSETTLED_RETRY: Duration = Duration::from_millis(200);

/// How many times `sync` waits for files still being written before it ends without them.
const UNSETTLED_TRIES: u32 = 25;

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Shortest wait before uploading again to a relay whose storage was full (then doubling to
/// [`MAX_BACKOFF`]): its operator has to free space first.
const RELAY_FULL_BACKOFF: Duration = Duration::from_secs(5);

/// What woke the daemon.
enum Event {
    /// A message from the relay.
    Message(ServerMessage),
    /// Paths the watcher reported (after debouncing).
    Changed(HashSet<String>),
    /// A request from the command line.
    Control(control::Pending),
    /// Time for the safety-net full rescan.
    Rescan,
    /// SIGINT or SIGTERM.
    Shutdown,
}

/// One exchange with the relay: scan, upload, pull, materialise, until both sides agree.
pub async fn sync_once(folder: Folder) -> Result<Status, AgentError> {
    let root = folder_root(&folder);
    let mut syncer = Syncer::open(&root, folder.config.clone(), folder.key.device_id())?;
    let mut status = Status::resumed(&syncer.state);
    recover(&mut syncer).await?;
    syncer.scan(&HashSet::new())?;
    let connection = folder.connect().await?;
    status.connected = true;
    let mut session = Session::start(&mut syncer, Link::new(connection)).await?;
    session.materialise(&mut syncer).await?;
    let mut unsettled_tries = UNSETTLED_TRIES;
    loop {
        if !syncer.pending.is_empty() {
            session.push(&mut syncer).await?;
        }
        if session.in_sync(&mut syncer) {
            // Nothing in flight: a last scan catches edits made meanwhile.
            if syncer.scan(&HashSet::new())? {
                session.push(&mut syncer).await?;
            } else if syncer.unsettled.is_empty() || unsettled_tries == 0 {
                break;
            } else {
                // Files still being written: give them a moment to settle.
                unsettled_tries -= 1;
                tokio::time::sleep(UNSETTLED_RETRY).await;
                continue;
            }
        }
        let message = tokio::time::timeout(QUIET_TIMEOUT, session.recv())
            .await
            .map_err(|_| AgentError::Protocol("the relay stopped answering".into()))??;
        session.handle(&mut syncer, message, &mut status).await?;
    }
    session.materialise(&mut syncer).await?;
    status.sync.last_in_sync = Some(crate::syncer::wall_now().0);
    fill_status(&mut syncer, &mut status);
    status.offline(crate::syncer::wall_now().0);
    status.save(&syncer.state)?;
    session.link.close().await;
    Ok(status)
}

/// Runs until SIGINT/SIGTERM: watches the folder, stays connected (reconnecting with backoff and
/// jitter), and keeps working offline.
pub async fn run(folder: Folder) -> Result<(), AgentError> {
    let root = folder_root(&folder);
    let syncer = Syncer::open(&root, folder.config.clone(), folder.key.device_id())?;
    let root_check = syncer.root_check().clone();
    // Whatever failed first once the disk went away (a write into `.cloud3/`, say), the
    // reason to give is that the folder is gone.
    serve(folder, root, syncer)
        .await
        .map_err(|error| root_check.explain(error))
}

async fn serve(folder: Folder, root: PathBuf, mut syncer: Syncer) -> Result<(), AgentError> {
    // Bound only now that this process holds the folder's database.
    let mut control = Control::start(&syncer.state)?;
    let mut status = Status::resumed(&syncer.state);
    let debounce = Duration::from_millis(folder.config.debounce_ms);
    let mut watch = FolderWatch::start(&root, debounce)?;
    let rescan_every = Duration::from_millis(folder.config.rescan_interval_ms.max(1000));
    let mut shutdown = Box::pin(shutdown_signal());
    let mut status_file = StatusFile::default();

    recover(&mut syncer).await?;
    syncer.scan(&HashSet::new())?;
    let mut backoff = Duration::from_millis(200);
    loop {
        status.offline(crate::syncer::wall_now().0);
        fill_status(&mut syncer, &mut status);
        status_file.save(&status, &syncer.state)?;
        control.publish(&status);
        let connecting = folder.connect();
        tokio::pin!(connecting);
        let session = loop {
            tokio::select! {
                result = &mut connecting => break result,
                () = &mut shutdown => return Ok(()),
                Some(pending) = control.next() => control.answer(pending, &mut syncer, None).await?,
            }
        };
        let session = match session {
            Ok(connection) => {
                let link = Link::new(connection).with_activity(control.activity());
                Session::start(&mut syncer, link).await
            }
            Err(error) => Err(error),
        };
        let mut session = match session {
            Ok(session) => session,
            Err(
                error @ (AgentError::Revoked
                | AgentError::AuthRefused(_)
                | AgentError::Tls { .. }
                | AgentError::FolderGone { .. }),
            ) => return Err(error),
            Err(error) => {
                status.quota_full = matches!(error, AgentError::QuotaFull);
                if matches!(error, AgentError::RelayFull | AgentError::QuotaFull) {
                    // Uploads wait for the relay's operator or its collector: no retry storm.
                    backoff = backoff.max(RELAY_FULL_BACKOFF);
                    status.relay_storage_full = matches!(error, AgentError::RelayFull);
                    tracing::warn!(?backoff, %error, "uploads wait, working offline meanwhile");
                } else {
                    tracing::warn!(%error, ?backoff, "relay unreachable, working offline");
                }
                status.last_error = Some(error.to_string());
                let wake = tokio::time::sleep(jitter(backoff));
                tokio::pin!(wake);
                // Offline: local changes are still recorded while waiting.
                loop {
                    tokio::select! {
                        () = &mut wake => break,
                        () = &mut shutdown => return Ok(()),
                        Some(pending) = control.next() => {
                            control.answer(pending, &mut syncer, None).await?;
                        }
                        paths = watch.changes() => {
                            syncer.hold = watch.holding();
                            if !paths.is_empty() {
                                syncer.scan(&paths)?;
                            }
                        }
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        status.connected = true;
        status.last_error = None;
        // The session's start uploaded everything pending.
        status.relay_storage_full = false;
        status.quota_full = false;
        session.materialise(&mut syncer).await?;
        let mut rescan = tokio::time::interval(rescan_every);
        rescan.tick().await;
        let outcome: Result<(), AgentError> = async {
            loop {
                fill_status(&mut syncer, &mut status);
                status_file.save(&status, &syncer.state)?;
                control.publish(&status);
                let event = tokio::select! {
                    message = session.recv() => Event::Message(message?),
                    paths = watch.changes() => Event::Changed(paths),
                    () = tokio::time::sleep(UNSETTLED_RETRY), if !syncer.unsettled.is_empty() => {
                        Event::Changed(syncer.unsettled.clone())
                    }
                    Some(pending) = control.next() => Event::Control(pending),
                    _ = rescan.tick() => Event::Rescan,
                    () = &mut shutdown => Event::Shutdown,
                };
                match event {
                    Event::Message(message) => {
                        control.take(&message);
                        session.handle(&mut syncer, message, &mut status).await?;
                    }
                    Event::Control(pending) => {
                        control
                            .answer(pending, &mut syncer, Some(&mut session))
                            .await?;
                    }
                    Event::Changed(paths) => {
                        syncer.hold = watch.holding();
                        if !paths.is_empty() {
                            let changed = syncer.scan(&paths)?;
                            session.scanned(&mut syncer, changed).await?;
                        }
                    }
                    Event::Rescan => {
                        syncer.prune_trash()?;
                        let changed = syncer.scan(&HashSet::new())?;
                        session.scanned(&mut syncer, changed).await?;
                    }
                    Event::Shutdown => return Ok(()),
                }
                control.after_event(&session, &mut syncer);
            }
        }
        .await;
        control.disconnected();
        match outcome {
            Ok(()) => {
                session.link.close().await;
                status.offline(crate::syncer::wall_now().0);
                status_file.save(&status, &syncer.state)?;
                return Ok(());
            }
            Err(
                error @ (AgentError::Revoked
                | AgentError::AuthRefused(_)
                | AgentError::FolderGone { .. }),
            ) => return Err(error),
            Err(error) => {
                tracing::warn!(%error, "connection lost, reconnecting");
                status.relay_storage_full = matches!(error, AgentError::RelayFull);
                status.quota_full = matches!(error, AgentError::QuotaFull);
                status.last_error = Some(error.to_string());
                if syncer.doc.is_broken() {
                    drop(session);
                    syncer = syncer.reload()?;
                }
            }
        }
    }
}

/// Finishes what a crash interrupted: entries left in staging are moved to where they belong.
async fn recover(syncer: &mut Syncer) -> Result<(), AgentError> {
    let staged = syncer.index.keys().any(|path| path.starts_with(STATE_DIR));
    if staged {
        let actions = syncer.plan();
        crate::apply::apply(syncer, None, actions).await?;
    }
    Ok(())
}

fn fill_status(syncer: &mut Syncer, status: &mut Status) {
    status.waiting_to_join = !syncer.joined;
    status.scan = scan_status(syncer);
    status.paused_deletes = syncer.paused_deletes.len();
    status.paused_delete_paths = syncer
        .paused_deletes
        .iter()
        .take(crate::status::PAUSED_EXAMPLES)
        .cloned()
        .collect();
    status.name_clashes_total = syncer.name_notes.len();
    status.name_clashes = syncer
        .name_notes
        .iter()
        .take(crate::status::NAME_EXAMPLES)
        .cloned()
        .collect();
    status.no_room = syncer.no_room.clone();
    let mut files = HashSet::new();
    let mut bytes = 0;
    for source in syncer.pending.values() {
        bytes += match source {
            BlobSource::File { path, len, .. } => {
                files.insert(path.as_str());
                u64::from(*len)
            }
            BlobSource::Bytes(bytes) => bytes.len() as u64,
        };
    }
    status.pending.upload_files = files.len();
    status.pending.upload_bytes = bytes;
    status.conflicts = conflict_copies(syncer.index.keys());
}

/// The conflict copies among the folder's paths, each with the path of its original.
fn conflict_copies<'a>(paths: impl Iterator<Item = &'a String>) -> Vec<ConflictCopy> {
    paths
        .filter(|path| !path.starts_with(STATE_DIR))
        .filter_map(|path| {
            let (dir, name) = match path.rsplit_once('/') {
                Some((dir, name)) => (Some(dir), name),
                None => (None, path.as_str()),
            };
            let original = conflict_original(name)?;
            Some(ConflictCopy {
                copy: path.clone(),
                original: match dir {
                    Some(dir) => format!("{dir}/{original}"),
                    None => original,
                },
            })
        })
        .collect()
}

/// The scan's verdicts on the folder's current files, and what sits in quarantine.
fn scan_status(syncer: &mut Syncer) -> crate::status::ScanStatus {
    let mut files = Vec::new();
    if !syncer.verdicts.is_empty() || !syncer.refused.is_empty() {
        let remote = syncer.remote();
        for entry in remote.values() {
            let Some(content) = &entry.content else {
                continue;
            };
            let hash = content.hash();
            let refused = syncer.refused.contains(&hash);
            let Some(verdict) = syncer.verdicts.get(&hash) else {
                continue;
            };
            let (engine, signature) = match verdict {
                Verdict::Flagged { engine, signature } => {
                    (Some(engine.clone()), Some(signature.clone()))
                }
                _ => (None, None),
            };
            files.push(crate::status::ScanNote {
                path: entry.path.clone(),
                verdict: verdict.to_string(),
                engine,
                signature,
                refused,
            });
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
    }
    let quarantined = crate::quarantine::QuarantineList::load(&syncer.state)
        .map(|list| list.held().cloned().collect())
        .unwrap_or_default();
    crate::status::ScanStatus { files, quarantined }
}

fn folder_root(folder: &Folder) -> PathBuf {
    folder
        .state
        .root()
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

fn jitter(base: Duration) -> Duration {
    let mut byte = [0u8; 1];
    let _ = getrandom::fill(&mut byte);
    base + base * u32::from(byte[0]) / 512
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
