//! A WebSocket connection to the relay, authenticated by the challenge-response handshake.
//!
//! The relay speaks first (a `Challenge`); this device answers with a signed `Hello` and gets a
//! `Welcome` or a close code, which is turned into an [`AgentError`] the user can act on.
//!
//! `wss://` relays are verified against the system's root certificates, or only against the CA
//! pinned with `cloud3 init --ca`. TLS failures (untrusted or expired certificate, TLS spoken to a
//! plain port or plain WebSocket to a TLS port) are [`AgentError::Tls`]: one line that says what
//! to do, and the daemon stops rather than retrying.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cloud3_engine::auth::DeviceKey;
use cloud3_engine::auth::challenge::sign_hello;
use cloud3_engine::ids::DeviceId;
use cloud3_engine::wire::{
    self, AuthProof, ClientMessage, CloseCode, ServerMessage, limits::MAX_MESSAGE_BYTES,
};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode as WsCloseCode;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::error::AgentError;
use crate::syncer::wall_now;
use crate::versions::Window;

/// How long connecting plus the handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a send may wait for the relay to take the bytes before the link counts as dead.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(30);

/// How long the relay may stay silent before the link counts as dead. A connection pings after 20 s
/// and the relay answers each ping, so a healthy link is never this quiet.
pub const SILENCE_TIMEOUT: Duration = Duration::from_secs(65);

/// A connection that has sent nothing for this long sends a WebSocket ping (the relay closes one
/// silent for 90 s, and answers each ping).
pub const KEEPALIVE: Duration = Duration::from_secs(20);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The socket's sending half, shared by the connection and its keep-alive task.
type Sink = Arc<tokio::sync::Mutex<SplitSink<Socket, Message>>>;

/// An authenticated connection.
///
/// Its keep-alive runs on its own task: a device whose event loop is busy for a long while (a
/// scan hashing a large folder, a long materialise) still pings, so its link never goes idle
/// while it has work in flight.
pub struct Connection {
    sink: Sink,
    stream: SplitStream<Socket>,
    /// When anything was last sent (shared with the keep-alive task).
    last_sent: Arc<std::sync::Mutex<Instant>>,
    keepalive: tokio::task::JoinHandle<()>,
    url: String,
    /// Whether the relay treats this device as read-only.
    pub read_only: bool,
    /// This device.
    pub device: DeviceId,
    /// The account's retention window and the relay's clock, from its `Welcome`.
    pub window: Window,
    /// When the relay last sent anything.
    last_heard: Instant,
}

impl Connection {
    /// Connects to `relay` (`ws://HOST:PORT` or `wss://HOST:PORT`; with `ca`, a `wss://` relay
    /// must chain to that PEM CA certificate) and authenticates as `user` with `key`.
    pub async fn open(
        relay: &str,
        ca: Option<&Path>,
        user: &str,
        key: &DeviceKey,
        proof: AuthProof,
    ) -> Result<Connection, AgentError> {
        let url = format!("{}/ws", relay.trim_end_matches('/'));
        let tls = if url.starts_with("wss://") {
            Some(tls_config(&url, ca)?)
        } else {
            None
        };
        tokio::time::timeout(
            HANDSHAKE_TIMEOUT,
            Self::handshake(&url, tls, user, key, proof),
        )
        .await
        .map_err(|_| AgentError::Unreachable {
            url: url.clone(),
            message: "handshake timed out".into(),
        })?
    }

    async fn handshake(
        url: &str,
        tls: Option<Arc<rustls::ClientConfig>>,
        user: &str,
        key: &DeviceKey,
        proof: AuthProof,
    ) -> Result<Connection, AgentError> {
        let mut config = WebSocketConfig::default();
        config.max_message_size = Some(MAX_MESSAGE_BYTES + 1024);
        config.max_frame_size = Some(MAX_MESSAGE_BYTES + 1024);
        let connector = tls.map(tokio_tungstenite::Connector::Rustls);
        let (socket, _) =
            tokio_tungstenite::connect_async_tls_with_config(url, Some(config), true, connector)
                .await
                .map_err(|e| connect_error(url, e))?;
        let (sink, stream) = socket.split();
        let sink: Sink = Arc::new(tokio::sync::Mutex::new(sink));
        let last_sent = Arc::new(std::sync::Mutex::new(Instant::now()));
        let keepalive = tokio::spawn(keep_alive(sink.clone(), last_sent.clone(), KEEPALIVE));
        let mut connection = Connection {
            sink,
            stream,
            last_sent,
            keepalive,
            url: url.to_owned(),
            read_only: false,
            device: key.device_id(),
            // Set from the `Welcome` below (a connection is handed out only after it).
            window: Window {
                days: 0,
                relay_ahead_ms: 0,
            },
            last_heard: Instant::now(),
        };
        let (relay_id, nonce) = match connection.recv().await? {
            ServerMessage::Challenge {
                version,
                relay_id,
                nonce,
            } if version >= wire::PROTOCOL_VERSION => (relay_id, nonce),
            ServerMessage::Challenge { version, .. } => {
                return Err(AgentError::UnsupportedVersion(format!(
                    "relay speaks version {version}, this agent {}",
                    wire::PROTOCOL_VERSION
                )));
            }
            other => return Err(unexpected(&other)),
        };
        let hello = sign_hello(key, &relay_id, &nonce, user, proof);
        connection.send(&ClientMessage::Hello(hello)).await?;
        match connection.recv().await? {
            ServerMessage::Welcome {
                read_only,
                now,
                retention_days,
                ..
            } => {
                connection.read_only = read_only;
                connection.window = Window::learnt(retention_days, now, wall_now());
                Ok(connection)
            }
            other => Err(unexpected(&other)),
        }
    }

    /// Sends one message.
    pub async fn send(&mut self, message: &ClientMessage) -> Result<(), AgentError> {
        let frame = Message::Binary(wire::encode_client(message).into());
        let sent = tokio::time::timeout(SEND_TIMEOUT, async {
            self.sink.lock().await.send(frame).await
        })
        .await;
        if let Ok(mut last) = self.last_sent.lock() {
            *last = Instant::now();
        }
        match sent {
            Ok(sent) => sent.map_err(|e| self.broken(e)),
            Err(_) => Err(AgentError::Protocol(format!(
                "{}: the relay took nothing for {} s",
                self.url,
                SEND_TIMEOUT.as_secs()
            ))),
        }
    }

    /// Receives the next message; a close frame becomes the error its code means.
    pub async fn recv(&mut self) -> Result<ServerMessage, AgentError> {
        loop {
            let left = SILENCE_TIMEOUT.saturating_sub(self.last_heard.elapsed());
            let Ok(next) = tokio::time::timeout(left, self.stream.next()).await else {
                return Err(AgentError::Protocol(format!(
                    "{}: the relay was silent for {} s",
                    self.url,
                    SILENCE_TIMEOUT.as_secs()
                )));
            };
            self.last_heard = Instant::now();
            let frame = match next {
                Some(Ok(frame)) => frame,
                Some(Err(e)) => return Err(self.broken(e)),
                None => return Err(AgentError::Protocol("relay closed the connection".into())),
            };
            match frame {
                Message::Binary(bytes) => {
                    return wire::decode_server(&bytes)
                        .map_err(|e| AgentError::Protocol(e.to_string()));
                }
                Message::Close(frame) => return Err(close_error(frame)),
                Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => continue,
                Message::Text(_) => {
                    return Err(AgentError::Protocol("relay sent a text frame".into()));
                }
            }
        }
    }

    /// Closes politely.
    pub async fn close(self) {
        self.keepalive.abort();
        let _ = self.sink.lock().await.close().await;
    }

    fn broken(&self, error: tungstenite::Error) -> AgentError {
        AgentError::Protocol(format!("{}: {error}", self.url))
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.keepalive.abort();
    }
}

/// Sends a WebSocket ping whenever the connection has sent nothing for `every` ([`KEEPALIVE`]).
async fn keep_alive(sink: Sink, last_sent: Arc<std::sync::Mutex<Instant>>, every: Duration) {
    loop {
        let quiet = last_sent
            .lock()
            .map(|last| last.elapsed())
            .unwrap_or_default();
        if quiet < every {
            tokio::time::sleep(every - quiet).await;
            continue;
        }
        let ping = async {
            sink.lock()
                .await
                .send(Message::Ping(Vec::new().into()))
                .await
        };
        match tokio::time::timeout(SEND_TIMEOUT, ping).await {
            Ok(Ok(())) => {
                if let Ok(mut last) = last_sent.lock() {
                    *last = Instant::now();
                }
            }
            // The connection's own reads and sends report a broken link.
            _ => return,
        }
    }
}

/// The TLS client configuration: TLS 1.2 and 1.3, trusting only the pinned CA `ca` when given,
/// else the system's roots.
fn tls_config(url: &str, ca: Option<&Path>) -> Result<Arc<rustls::ClientConfig>, AgentError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;

    let failed = |message: String| AgentError::Tls {
        url: url.to_owned(),
        message,
    };
    let mut roots = rustls::RootCertStore::empty();
    match ca {
        Some(path) => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| {
                    failed(format!("cannot read the pinned CA {}: {e}", path.display()))
                })?;
            for cert in certs {
                roots.add(cert).map_err(|e| {
                    failed(format!("the pinned CA {} is unusable: {e}", path.display()))
                })?;
            }
            if roots.is_empty() {
                return Err(failed(format!(
                    "the pinned CA file {} holds no certificate",
                    path.display()
                )));
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(failed(
                    "this system has no root certificates to check the relay against: install \
                     them (ca-certificates) or pin the relay's CA with `cloud3 init --ca FILE`"
                        .into(),
                ));
            }
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
    .map_err(|e| failed(e.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Why connecting failed: TLS problems apart (they need the user), the rest is "unreachable"
/// (retried).
fn connect_error(url: &str, error: tungstenite::Error) -> AgentError {
    let tls = |message: String| AgentError::Tls {
        url: url.to_owned(),
        message,
    };
    let rustls_error = match &error {
        tungstenite::Error::Io(io) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
        _ => None,
    };
    match (rustls_error, &error) {
        (
            Some(rustls::Error::InvalidCertificate(
                why @ (rustls::CertificateError::Expired
                | rustls::CertificateError::ExpiredContext { .. }),
            )),
            _,
        ) => tls(format!(
            "the relay's certificate is not accepted ({why}): its operator must renew it"
        )),
        (Some(rustls::Error::InvalidCertificate(why)), _) => tls(format!(
            "the relay's certificate is not accepted ({why}); if the relay uses a private CA, \
             pin it with `cloud3 init --ca FILE`"
        )),
        (Some(rustls::Error::InvalidMessage(_)), _) => {
            tls("the relay does not answer in TLS: it may serve plain WebSocket (use ws://)".into())
        }
        (Some(other), _) => tls(other.to_string()),
        (None, tungstenite::Error::Tls(e)) => tls(e.to_string()),
        (None, tungstenite::Error::Http(response)) if url.starts_with("ws://") => {
            let body = response
                .body()
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            if body.contains("wss://") {
                tls(body.trim().to_owned())
            } else {
                AgentError::Unreachable {
                    url: url.to_owned(),
                    message: format!("the relay answered HTTP {}", response.status()),
                }
            }
        }
        _ => AgentError::Unreachable {
            url: url.to_owned(),
            message: error.to_string(),
        },
    }
}

fn close_error(frame: Option<tungstenite::protocol::CloseFrame>) -> AgentError {
    let Some(frame) = frame else {
        return AgentError::Protocol("relay closed the connection".into());
    };
    let reason = frame.reason.to_string();
    let code = match frame.code {
        WsCloseCode::Library(code) => CloseCode::from_code(code),
        _ => None,
    };
    match code {
        Some(CloseCode::BadAuth) => AgentError::AuthRefused(reason),
        Some(CloseCode::Revoked) => AgentError::Revoked,
        Some(CloseCode::UnsupportedVersion) => AgentError::UnsupportedVersion(reason),
        _ => AgentError::Protocol(format!("relay closed the connection: {reason}")),
    }
}

fn unexpected(message: &ServerMessage) -> AgentError {
    match message {
        ServerMessage::Error { message, .. } => AgentError::Refused(message.clone()),
        other => AgentError::Protocol(format!("unexpected message from relay: {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keep-alive pings from its own task while the connection's owner is busy (here a
    /// thread blocked as a long scan blocks the daemon's loop).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_busy_owner_still_keeps_its_link_alive() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let server = tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let mut socket = tokio_tungstenite::accept_async(tcp).await.expect("upgrade");
            let mut pings = 0;
            let until = tokio::time::Instant::now() + Duration::from_millis(800);
            while let Ok(Some(Ok(frame))) = tokio::time::timeout_at(until, socket.next()).await {
                if matches!(frame, Message::Ping(_)) {
                    pings += 1;
                }
            }
            pings
        });
        let (socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}"))
            .await
            .expect("connect");
        let (sink, _stream) = socket.split();
        let sink: Sink = Arc::new(tokio::sync::Mutex::new(sink));
        let last_sent = Arc::new(std::sync::Mutex::new(Instant::now()));
        let keepalive = tokio::spawn(keep_alive(sink, last_sent, Duration::from_millis(100)));
        // Busy for 700 ms without yielding.
        std::thread::sleep(Duration::from_millis(700));
        let pings = server.await.expect("server");
        keepalive.abort();
        assert!(pings >= 3, "{pings} pings while the owner was busy");
    }
}
