//! The agent's drivers: `run` (sync continuously, online or offline) and `sync` (one exchange).
//!
//! Everything that can wake the daemon is one `Event`, handled in one loop: a message from the
//! relay, changes reported by the watcher, the periodic full rescan, the keep-alive tick, and
//! shutdown.

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use cloud3_engine::scan::split_path;
use cloud3_engine::wire::ServerMessage;
use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use crate::cmd::Folder;
use crate::error::AgentError;
use crate::session::{QUIET_TIMEOUT, Session};
use crate::state::STATE_DIR;
use crate::status::Status;
use crate::syncer::Syncer;
use crate::transfer::Link;
use crate::walk::relative_path;

/// Keep-alive interval while connected.
const PING_INTERVAL: Duration = Duration::from_secs(20);

/// Longest wait between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What woke the daemon.
enum Event {
    /// A message from the relay.
    Message(ServerMessage),
    /// Paths the watcher reported (after debouncing).
    Changed(HashSet<String>),
    /// Time for the safety-net full rescan.
    Rescan,
    /// Time for a keep-alive.
    Ping,
    /// SIGINT or SIGTERM.
    Shutdown,
}

/// One exchange with the relay: scan, upload, pull, materialise, until both sides agree.
pub async fn sync_once(folder: Folder) -> Result<Status, AgentError> {
    let root = folder_root(&folder);
    let mut syncer = Syncer::open(&root, folder.config.clone(), folder.key.device_id())?;
    let mut status = Status {
        pid: std::process::id(),
        ..Status::default()
    };
    recover(&mut syncer).await?;
    syncer.scan(&HashSet::new())?;
    let connection = folder.connect().await?;
    status.connected = true;
    let mut session = Session::start(&mut syncer, Link::new(connection)).await?;
    session.materialise(&mut syncer).await?;
    loop {
        if !syncer.pending.is_empty() {
            session.push(&mut syncer).await?;
        }
        if session.in_sync(&mut syncer) {
            // Nothing in flight: a last scan catches edits made meanwhile.
            if !syncer.scan(&HashSet::new())? {
                break;
            }
            session.push(&mut syncer).await?;
        }
        let message = tokio::time::timeout(QUIET_TIMEOUT, session.recv())
            .await
            .map_err(|_| AgentError::Protocol("the relay stopped answering".into()))??;
        session.handle(&mut syncer, message, &mut status).await?;
    }
    session.materialise(&mut syncer).await?;
    status.last_sync = Some(crate::syncer::wall_now().0);
    fill_status(&mut syncer, &mut status);
    status.connected = false;
    status.save(&syncer.state)?;
    session.link.close().await;
    Ok(status)
}

/// Runs until SIGINT/SIGTERM: watches the folder, stays connected (reconnecting with backoff and
/// jitter), and keeps working offline.
pub async fn run(folder: Folder) -> Result<(), AgentError> {
    let root = folder_root(&folder);
    let mut syncer = Syncer::open(&root, folder.config.clone(), folder.key.device_id())?;
    let mut status = Status {
        pid: std::process::id(),
        ..Status::default()
    };
    let (changes_tx, mut changes_rx) = mpsc::unbounded_channel::<PathBuf>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            for path in event.paths {
                let _ = changes_tx.send(path);
            }
        }
    })
    .map_err(|e| AgentError::Protocol(format!("cannot watch {}: {e}", root.display())))?;
    watcher
        .watch(&root, RecursiveMode::Recursive)
        .map_err(|e| AgentError::Protocol(format!("cannot watch {}: {e}", root.display())))?;
    let debounce = Duration::from_millis(folder.config.debounce_ms);
    let rescan_every = Duration::from_millis(folder.config.rescan_interval_ms.max(1000));
    let mut shutdown = Box::pin(shutdown_signal());

    recover(&mut syncer).await?;
    syncer.scan(&HashSet::new())?;
    let mut backoff = Duration::from_millis(200);
    loop {
        status.connected = false;
        fill_status(&mut syncer, &mut status);
        status.save(&syncer.state)?;
        let session = tokio::select! {
            result = folder.connect() => result,
            () = &mut shutdown => return Ok(()),
        };
        let session = match session {
            Ok(connection) => Session::start(&mut syncer, Link::new(connection)).await,
            Err(error) => Err(error),
        };
        let mut session = match session {
            Ok(session) => session,
            Err(
                error @ (AgentError::Revoked | AgentError::AuthRefused(_) | AgentError::Tls { .. }),
            ) => return Err(error),
            Err(error) => {
                tracing::warn!(%error, ?backoff, "relay unreachable, working offline");
                status.last_error = Some(error.to_string());
                let wake = tokio::time::sleep(jitter(backoff));
                tokio::pin!(wake);
                // Offline: local changes are still recorded while waiting.
                loop {
                    tokio::select! {
                        () = &mut wake => break,
                        () = &mut shutdown => return Ok(()),
                        Some(path) = changes_rx.recv() => {
                            let paths = collect_changes(&root, path, &mut changes_rx, debounce).await;
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
        session.materialise(&mut syncer).await?;
        let mut rescan = tokio::time::interval(rescan_every);
        rescan.tick().await;
        let mut ping = tokio::time::interval(PING_INTERVAL);
        ping.tick().await;
        let outcome: Result<(), AgentError> = async {
            loop {
                fill_status(&mut syncer, &mut status);
                status.save(&syncer.state)?;
                let event = tokio::select! {
                    message = session.recv() => Event::Message(message?),
                    Some(path) = changes_rx.recv() => {
                        Event::Changed(collect_changes(&root, path, &mut changes_rx, debounce).await)
                    }
                    _ = rescan.tick() => Event::Rescan,
                    _ = ping.tick() => Event::Ping,
                    () = &mut shutdown => Event::Shutdown,
                };
                match event {
                    Event::Message(message) => {
                        session.handle(&mut syncer, message, &mut status).await?;
                    }
                    Event::Changed(paths) => {
                        if !paths.is_empty() && syncer.scan(&paths)? {
                            session.push(&mut syncer).await?;
                        }
                    }
                    Event::Rescan => {
                        if syncer.scan(&HashSet::new())? {
                            session.push(&mut syncer).await?;
                        }
                    }
                    Event::Ping => session.ping().await?,
                    Event::Shutdown => return Ok(()),
                }
            }
        }
        .await;
        match outcome {
            Ok(()) => {
                session.link.close().await;
                status.connected = false;
                status.save(&syncer.state)?;
                return Ok(());
            }
            Err(error @ (AgentError::Revoked | AgentError::AuthRefused(_))) => return Err(error),
            Err(error) => {
                tracing::warn!(%error, "connection lost, reconnecting");
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

/// Collects watcher events until `debounce` passes without a new one.
async fn collect_changes(
    root: &std::path::Path,
    first: PathBuf,
    rx: &mut mpsc::UnboundedReceiver<PathBuf>,
    debounce: Duration,
) -> HashSet<String> {
    let mut paths = HashSet::new();
    let mut add = |path: PathBuf| {
        if let Some(relative) = relative_path(root, &path)
            && relative != STATE_DIR
            && !relative.starts_with(&format!("{STATE_DIR}/"))
        {
            paths.insert(relative);
        }
    };
    add(first);
    while let Ok(Some(path)) = tokio::time::timeout(debounce, rx.recv()).await {
        add(path);
    }
    // A change inside a directory may mean its parent listing changed too.
    let parents: Vec<String> = paths
        .iter()
        .filter_map(|p| split_path(p).0.map(str::to_owned))
        .collect();
    paths.extend(parents);
    paths
}

fn fill_status(syncer: &mut Syncer, status: &mut Status) {
    status.waiting_to_join = !syncer.joined;
    status.pending_uploads = syncer.pending.len();
    status.pending_upload_bytes = syncer
        .pending
        .values()
        .map(|source| match source {
            crate::syncer::BlobSource::File { len, .. } => u64::from(*len),
            crate::syncer::BlobSource::Bytes(bytes) => bytes.len() as u64,
        })
        .sum();
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
