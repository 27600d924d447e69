//! Counters exported at `/metrics` in the Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// The relay's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open WebSocket connections (authenticated or not).
    pub connections: AtomicU64,
    /// Authenticated devices connected now.
    pub devices_online: AtomicU64,
    /// Messages received.
    pub messages_in: AtomicU64,
    /// Messages sent.
    pub messages_out: AtomicU64,
    /// Bytes received.
    pub bytes_in: AtomicU64,
    /// Bytes sent.
    pub bytes_out: AtomicU64,
    /// Blobs stored.
    pub chunks_stored: AtomicU64,
    /// Failed handshakes.
    pub auth_failures: AtomicU64,
    /// Connections dropped for breaking limits or the protocol.
    pub dropped: AtomicU64,
}

impl Metrics {
    /// Adds to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Subtracts from a gauge.
    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }

    /// The Prometheus text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for (name, kind, help, value) in [
            (
                "cloud3_connections",
                "gauge",
                "open websocket connections",
                &self.connections,
            ),
            (
                "cloud3_devices_online",
                "gauge",
                "authenticated devices connected",
                &self.devices_online,
            ),
            (
                "cloud3_messages_in_total",
                "counter",
                "messages received",
                &self.messages_in,
            ),
            (
                "cloud3_messages_out_total",
                "counter",
                "messages sent",
                &self.messages_out,
            ),
            (
                "cloud3_bytes_in_total",
                "counter",
                "bytes received",
                &self.bytes_in,
            ),
            (
                "cloud3_bytes_out_total",
                "counter",
                "bytes sent",
                &self.bytes_out,
            ),
            (
                "cloud3_chunks_stored_total",
                "counter",
                "blobs stored",
                &self.chunks_stored,
            ),
            (
                "cloud3_auth_failures_total",
                "counter",
                "failed handshakes",
                &self.auth_failures,
            ),
            (
                "cloud3_dropped_total",
                "counter",
                "connections dropped for limits or protocol errors",
                &self.dropped,
            ),
        ] {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}",
                value.load(Ordering::Relaxed)
            );
        }
        out
    }
}
