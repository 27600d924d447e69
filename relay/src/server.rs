//! The relay server: one listener for HTTP and WebSocket (axum). `/ws` for devices, `/healthz`,
//! `/metrics`, and everything else from the browser viewer's directory (`/` is its page), over
//! plain TCP or TLS. The accept loop is ours (hyper per connection) so that every socket is
//! counted and held to a deadline from its first byte.
//! [`run`] takes an already-bound listener and a shutdown future, so tests can bind port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{ConnectInfo, Request, State, WebSocketUpgrade};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Extension, Router};
use cloud3_engine::time::WallTime;
use cloud3_engine::wire::limits::MAX_MESSAGE_BYTES;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tower_http::services::ServeDir;
use tower_service::Service;

use crate::disk::DiskSpace;
use crate::guessing::Guessing;
use crate::hub::Hub;
use crate::limits::{Admission, Gate, Limits};
use crate::metrics::Metrics;
use crate::scan::ScanService;
use crate::scan::service::{ScanSettings, ScanSetupError};
use crate::store::Storage;

/// Everything a connection needs.
pub struct Relay {
    /// Storage.
    pub store: Arc<dyn Storage>,
    /// Live per-user state.
    pub hub: Hub,
    /// Limits and rate limiters.
    pub gate: Gate,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Back-off for wrong one-time codes.
    pub guessing: Guessing,
    /// This relay's identity.
    pub relay_id: [u8; 32],
    /// The malware scan.
    pub scan: Arc<ScanService>,
    /// The data directory's free-space reserve.
    pub disk: Arc<DiskSpace>,
    /// How garbage is collected.
    pub gc: crate::store::GcSettings,
}

impl Relay {
    /// A relay over `store` with `limits`, collecting garbage as `gc` says, scanning as `scan`
    /// says (its workers start with [`ScanService::start`]).
    pub fn new(
        store: Arc<dyn Storage>,
        limits: Limits,
        gc: crate::store::GcSettings,
        scan: ScanSettings,
    ) -> Result<Arc<Relay>, ScanSetupError> {
        let metrics = Arc::new(Metrics::default());
        let scan = Arc::new(ScanService::new(store.clone(), metrics.clone(), scan)?);
        let disk = Arc::new(DiskSpace::new(store.data_dir(), limits.min_free_bytes));
        disk.observe(&metrics);
        Ok(Arc::new(Relay {
            disk,
            relay_id: store.relay_id()?,
            hub: Hub::new(store.clone(), metrics.clone(), scan.clone())?,
            scan,
            gate: Gate::new(limits),
            guessing: Guessing::default(),
            metrics,
            store,
            gc,
        }))
    }
}

/// What the page may load and run: its own scripts (and the wasm engine), its own styles,
/// images from itself and from the blob URLs it makes, and connections to its own origin only.
/// Nothing inline, nothing framed, no plugins: a file opened in the viewer can never run script
/// on the relay's origin, where the browser's device key lives.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self' \
     'wasm-unsafe-eval'; style-src 'self'; img-src 'self' blob: data:; connect-src 'self'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'; object-src 'none'";

/// Every HTTP response says not to sniff content types and carries the page's CSP.
async fn security_headers(mut response: axum::response::Response) -> axum::response::Response {
    use axum::http::{HeaderValue, header};
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// How long shutdown waits for connections to take their close frames before it returns.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(3);

/// The connection's place under the caps on unauthenticated connections, handed from the
/// accept loop to the WebSocket upgrade through the request's extensions.
#[derive(Clone, Debug)]
struct PendingAdmission(Arc<Mutex<Option<Admission>>>);

/// Serves until `shutdown` resolves, then closes every device connection with "going away" and
/// returns within a few seconds whatever clients do. Every accepted socket counts against the
/// caps on unauthenticated connections (total and per address) until its device has
/// authenticated; over the caps it is closed at once. A request head (after the TLS handshake,
/// which has the same deadline) must arrive within `head_timeout`. With `tls`, the listener
/// speaks only TLS.
pub async fn run(
    listener: TcpListener,
    relay: Arc<Relay>,
    viewer: &Path,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/ws", get(websocket))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .fallback_service(ServeDir::new(viewer))
        .layer(axum::middleware::map_response(security_headers))
        .with_state(relay.clone());
    let head_timeout = relay.gate.limits.head_timeout;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors, most likely: wait for some to close.
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(admission) = relay.gate.admit(peer.ip()) else {
            relay.metrics.refused.inc();
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let pending = PendingAdmission(Arc::new(Mutex::new(Some(admission))));
        let (app, tls) = (app.clone(), tls.clone());
        connections.spawn(async move {
            match tls {
                None => http(TokioIo::new(stream), peer, pending, app, head_timeout).await,
                Some(acceptor) => {
                    match tokio::time::timeout(head_timeout, tls_handshake(acceptor, stream)).await
                    {
                        Ok(Ok(Some(stream))) => {
                            http(TokioIo::new(stream), peer, pending, app, head_timeout).await;
                        }
                        Ok(Ok(None)) => tracing::debug!(%peer, "plain HTTP on the TLS port"),
                        Ok(Err(error)) => tracing::debug!(%peer, %error, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    // Connections not upgraded (requests in flight or awaited) are cut; devices get their close
    // frames.
    connections.abort_all();
    let closing = async {
        relay.hub.close_all().await;
        while relay.metrics.connections.get() > 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, closing).await.is_err() {
        tracing::info!("shutdown grace over: remaining connections are cut");
    }
    Ok(())
}

/// The answer to plain HTTP on the TLS port, so that a `ws://` client says what is wrong.
const PLAIN_ON_TLS: &str = "this relay speaks TLS: use wss:// (https:// for the viewer)\n";

/// The TLS handshake; a client that starts with anything but a TLS handshake record (plain HTTP)
/// is answered `400` in plain text saying so, and closed (none).
async fn tls_handshake(
    acceptor: TlsAcceptor,
    mut stream: TcpStream,
) -> std::io::Result<Option<tokio_rustls::server::TlsStream<TcpStream>>> {
    /// The first byte of a TLS handshake record.
    const TLS_HANDSHAKE: u8 = 0x16;
    let mut first = [0u8; 1];
    if stream.peek(&mut first).await? == 1 && first[0] != TLS_HANDSHAKE {
        // Take the request that is here: closing with unread bytes would reset the connection
        // and could discard the answer.
        let mut request = [0u8; 4096];
        let _ = stream.try_read(&mut request);
        let answer = format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
             connection: close\r\n\r\n{PLAIN_ON_TLS}",
            PLAIN_ON_TLS.len()
        );
        stream.write_all(answer.as_bytes()).await?;
        stream.shutdown().await?;
        return Ok(None);
    }
    acceptor.accept(stream).await.map(Some)
}

/// Serves HTTP/1.1 on one connection until it ends or is upgraded to a WebSocket.
async fn http<I>(
    io: I,
    peer: SocketAddr,
    pending: PendingAdmission,
    app: Router,
    head_timeout: Duration,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(pending.clone());
        let mut app = app.clone();
        async move { app.call(request).await }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(head_timeout)
        .serve_connection(io, service)
        .with_upgrades();
    if let Err(error) = connection.await {
        tracing::debug!(%peer, %error, "HTTP connection ended");
    }
}

async fn websocket(
    State(relay): State<Arc<Relay>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    pending: Option<Extension<PendingAdmission>>,
    upgrade: WebSocketUpgrade,
) -> impl IntoResponse {
    let admission = pending.and_then(|Extension(PendingAdmission(slot))| {
        slot.lock().unwrap_or_else(|p| p.into_inner()).take()
    });
    // Frames and messages are capped well below tungstenite's 16/64 MiB defaults, which it
    // would otherwise reserve on arrival. Its read buffer is reserved per connection up front
    // (128 KiB by default): most connections sit idle, so start small; it grows for large
    // messages.
    upgrade
        .max_message_size(MAX_MESSAGE_BYTES + 1024)
        .max_frame_size(MAX_MESSAGE_BYTES + 1024)
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .on_upgrade(move |socket| crate::connection::serve(relay, socket, peer, admission))
}

async fn metrics(State(relay): State<Arc<Relay>>) -> impl IntoResponse {
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        relay.metrics.render(),
    )
}

/// Wall time now.
pub fn wall_now() -> WallTime {
    WallTime(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0),
    )
}
