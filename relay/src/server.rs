//! The relay server: one listener for HTTP and WebSocket (axum). `/ws` for devices, `/healthz`,
//! `/metrics`, and everything else from the browser viewer's directory (`/` is its page).
//! [`run`] takes an already-bound listener and a shutdown future, so tests can bind port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{ConnectInfo, State, WebSocketUpgrade};
use axum::response::IntoResponse;
use axum::routing::get;
use cloud3_engine::time::WallTime;
use cloud3_engine::wire::limits::MAX_MESSAGE_BYTES;
use tokio::net::TcpListener;
use tower_http::services::ServeDir;

use crate::hub::Hub;
use crate::limits::{Gate, Limits};
use crate::metrics::Metrics;
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
    /// This relay's identity.
    pub relay_id: [u8; 32],
}

impl Relay {
    /// A relay over `store` with `limits`.
    pub fn new(
        store: Arc<dyn Storage>,
        limits: Limits,
    ) -> Result<Arc<Relay>, crate::error::StoreError> {
        let metrics = Arc::new(Metrics::default());
        Ok(Arc::new(Relay {
            relay_id: store.relay_id()?,
            hub: Hub::new(store.clone(), metrics.clone())?,
            gate: Gate::new(limits),
            metrics,
            store,
        }))
    }
}

/// Serves until `shutdown` resolves, then closes every device connection with "going away".
pub async fn run(
    listener: TcpListener,
    relay: Arc<Relay>,
    viewer: &Path,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/ws", get(websocket))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .fallback_service(ServeDir::new(viewer))
        .with_state(relay.clone());
    let closing = relay.clone();
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        closing.hub.close_all().await;
    })
    .await
}

async fn websocket(
    State(relay): State<Arc<Relay>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    upgrade: WebSocketUpgrade,
) -> impl IntoResponse {
    // Frames and messages are capped well below tungstenite's 16/64 MiB defaults, which it
    // would otherwise reserve on arrival. Its read buffer is reserved per connection up front
    // (128 KiB by default): most connections sit idle, so start small; it grows for large
    // messages.
    upgrade
        .max_message_size(MAX_MESSAGE_BYTES + 1024)
        .max_frame_size(MAX_MESSAGE_BYTES + 1024)
        .read_buffer_size(8 * 1024)
        .write_buffer_size(8 * 1024)
        .on_upgrade(move |socket| crate::connection::serve(relay, socket, peer))
}

async fn metrics(State(relay): State<Arc<Relay>>) -> impl IntoResponse {
    (
        [("content-type", "text/plain; version=0.0.4")],
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
